"""The marketer dashboard's figures: plain functions over contacts, the stage history and the
daily event rollup, returning plain values for the panels (``dashboard_views.py``)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.translation import gettext as _

from contacts.models import (
    Contact,
    Event,
    EventDailyCount,
    LeadSource,
    StageStay,
    source_costs,
)

STAGES: list[str] = list(Contact.Stage.values)
DEFAULT_DAYS = 30
PRESETS = (30, 90, 365)
# Dates outside these are typing mistakes, and would overflow datetime arithmetic at the edges.
EARLIEST, LATEST = date(1970, 1, 1), date(2100, 12, 31)
# The stages whose arrivals the sources panel counts, in funnel order.
SOURCE_STAGES = (Contact.Stage.LEAD, Contact.Stage.MQL, Contact.Stage.SQL, Contact.Stage.CLIENT)


# --- The period -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Whole days in the site's time zone, both ends included."""

    start: date
    end: date

    @classmethod
    def last(cls, days: int, today: date) -> Period:
        return cls(today - timedelta(days=days - 1), today)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def bounds(self) -> tuple[datetime, datetime]:
        """[first midnight, the midnight after the last day) as aware datetimes."""
        zone = timezone.get_default_timezone()
        return (
            datetime.combine(self.start, time.min, tzinfo=zone),
            datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=zone),
        )

    def query(self) -> str:
        return urlencode({"from": self.start.isoformat(), "to": self.end.isoformat()})


def period_from(params: Mapping[str, str], today: date) -> tuple[Period, list[str]]:
    """The period a query string asks for (``from``, ``to``: YYYY-MM-DD), and a notice for each
    thing that had to be corrected. No dates: the last 30 days; one date: the other is filled."""
    notices: list[str] = []
    start = _day(params.get("from", ""), notices)
    end = _day(params.get("to", ""), notices)
    if start is None and end is None:
        return Period.last(DEFAULT_DAYS, today), notices
    if start is None:
        assert end is not None
        start = end - timedelta(days=DEFAULT_DAYS - 1)
    if end is None:
        end = max(today, start)
    if end < start:
        start, end = end, start
        notices.append(_("The end date was before the start date: the two were swapped."))
    return Period(max(start, EARLIEST), min(end, LATEST)), notices


def _day(value: str, notices: list[str]) -> date | None:
    value = value.strip()
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        day = None
    if day is None or not EARLIEST <= day <= LATEST or len(value) != 10:
        notices.append(
            _("“%(value)s” is not a date between 1970 and 2100 (YYYY-MM-DD): it was ignored.")
            % {"value": value[:40]}
        )
        return None
    return day


def percentile_cont(values: Sequence[float], fraction: float) -> float | None:
    """PostgreSQL's ``percentile_cont`` (linear interpolation between the two nearest ranks),
    for databases that lack it. ``values`` must be sorted."""
    if not values:
        return None
    position = fraction * (len(values) - 1)
    lower, upper = math.floor(position), math.ceil(position)
    return values[lower] + (values[upper] - values[lower]) * (position - lower)


def _rank_sql(column: str) -> str:
    # Funnel order as a number, from the one list of stages (values are ours, not the user's).
    whens = " ".join(f"WHEN '{stage}' THEN {rank}" for rank, stage in enumerate(STAGES))
    return f"(CASE {column} {whens} END)"


def _seconds_sql(later: str, earlier: str) -> str:
    if connection.vendor == "postgresql":
        return f"EXTRACT(EPOCH FROM ({later} - {earlier}))"
    return f"((julianday({later}) - julianday({earlier})) * 86400.0)"


def _fetch(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- Funnel -----------------------------------------------------------------------------------


def funnel() -> list[dict[str, Any]]:
    """Contacts per stage now, in funnel order."""
    counts = Contact.objects.stage_counts()
    return [
        {"stage": stage, "label": Contact.Stage(stage).label, "count": count}
        for stage, count in counts.items()
    ]


# --- Conversion -------------------------------------------------------------------------------

# Entries into each stage in the period (a contact "enters" suspect when it is created), and
# how many of those stays have since ended with a move to a later stage (a purchase may skip
# stages). Both are range scans of the narrow stay table.
CONVERSION_SQL = """
SELECT next_stage, COUNT(*), 0 FROM contacts_stagestay
WHERE left_at >= %s AND left_at < %s GROUP BY next_stage
UNION ALL
SELECT 'suspect', COUNT(*), 0 FROM contacts_contact WHERE created_at >= %s AND created_at < %s
UNION ALL
SELECT stage, 0, COUNT(*) FROM contacts_stagestay
WHERE entered_at >= %s AND entered_at < %s AND {next_rank} > {rank} GROUP BY stage
"""


def conversion_sql() -> str:
    return CONVERSION_SQL.format(next_rank=_rank_sql("next_stage"), rank=_rank_sql("stage"))


def conversion(period: Period) -> list[dict[str, Any]]:
    """Per stage (ambassador aside, the end of the road): entries into it in the period, how
    many of those went on to a later stage, and that share in percent."""
    start, end = period.bounds()
    entered: Counter[str] = Counter()
    moved_on: Counter[str] = Counter()
    for stage, count, later in _fetch(conversion_sql(), [start, end] * 3):
        entered[stage] += count
        moved_on[stage] += later
    rows = []
    for stage, following in zip(STAGES, STAGES[1:], strict=False):
        rows.append(
            {
                "stage": stage,
                "label": Contact.Stage(stage).label,
                "next_label": Contact.Stage(following).label,
                "entered": entered[stage],
                "moved_on": moved_on[stage],
                "rate": _share(moved_on[stage], entered[stage]),
            }
        )
    return rows


def _share(part: int, whole: int) -> Decimal | None:
    if not whole:
        return None
    return (Decimal(100) * part / whole).quantize(Decimal("0.1"))


# --- Velocity ---------------------------------------------------------------------------------

# One index range scan per stage (stage, left_at: an index of 0009), so the stays never need
# sorting by stage; each stage's lengths are sorted once, for its percentiles.
VELOCITY_SQL_POSTGRES = """
SELECT s.stage, v.stays, v.median, v.p90
FROM unnest(%s::text[]) AS s(stage)
CROSS JOIN LATERAL (
    SELECT COUNT(*) AS stays,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS median,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) AS p90
    FROM (
        SELECT ROUND(EXTRACT(EPOCH FROM (left_at - entered_at)))::float8 AS seconds
        FROM contacts_stagestay
        WHERE stage = s.stage AND left_at >= %s AND left_at < %s
    ) stays
) v
WHERE v.stays > 0
"""
STAYS_SQL_OTHERS = """
SELECT stage, (julianday(left_at) - julianday(entered_at)) * 86400.0
FROM contacts_stagestay WHERE left_at >= %s AND left_at < %s
"""


def velocity_sql() -> str:
    return VELOCITY_SQL_POSTGRES if connection.vendor == "postgresql" else STAYS_SQL_OTHERS


def velocity(period: Period) -> list[dict[str, Any]]:
    """Per stage: stays that ended in the period, and their median and 90th-percentile length
    in seconds (whole seconds, interpolated like PostgreSQL's ``percentile_cont``)."""
    start, end = period.bounds()
    figures: dict[str, tuple[int, float | None, float | None]] = {}
    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            # Sorting a quarter's stays for the percentiles fits in memory, not in the default 4MB.
            cursor.execute("SET LOCAL work_mem = '64MB'")
            cursor.execute(velocity_sql(), [STAGES, start, end])
            for stage, count, median, p90 in cursor.fetchall():
                figures[stage] = (count, median, p90)
    else:
        stays: dict[str, list[float]] = {}
        for stage, seconds in _fetch(velocity_sql(), [start, end]):
            stays.setdefault(stage, []).append(float(round(seconds)))
        for stage, values in stays.items():
            values.sort()
            figures[stage] = (
                len(values),
                percentile_cont(values, 0.5),
                percentile_cont(values, 0.9),
            )
    return [
        {
            "stage": stage,
            "label": Contact.Stage(stage).label,
            "stays": figures.get(stage, (0, None, None))[0],
            "median": figures.get(stage, (0, None, None))[1],
            "p90": figures.get(stage, (0, None, None))[2],
        }
        for stage in STAGES
    ]


# --- Sources and cost -------------------------------------------------------------------------


def sources(period: Period) -> dict[str, Any]:
    """Per lead source: arrivals as lead, MQL, SQL and client in the period, what
    the source cost over the period, and the cost per lead and per client."""
    start, end = period.bounds()
    counts = (
        StageStay.objects.filter(left_at__gte=start, left_at__lt=end, next_stage__in=SOURCE_STAGES)
        .values_list("source_id", "next_stage")
        .annotate(n=Count("*"))
        .order_by()
    )
    arrivals: dict[int | None, Counter[str]] = {}
    for source_id, stage, n in counts:
        arrivals.setdefault(source_id, Counter())[stage] = n
    costs = source_costs(period.start, period.end)
    names = dict(
        LeadSource.objects.filter(pk__in=set(arrivals) | set(costs)).values_list("pk", "name")
    )
    rows = [
        _source_row(names[pk], arrivals.get(pk, Counter()), costs.get(pk))
        for pk in sorted(names, key=lambda pk: names[pk].lower())
    ]
    if None in arrivals:
        rows.append(_source_row(_("No source"), arrivals[None], None))
    total_arrivals: Counter[str] = Counter()
    for counter in arrivals.values():
        total_arrivals.update(counter)
    total_cost = sum(costs.values(), Decimal(0)) if costs else None
    return {"rows": rows, "total": _source_row(_("Total"), total_arrivals, total_cost)}


def _source_row(name: str, arrivals: Counter[str], cost: Decimal | None) -> dict[str, Any]:
    return {
        "name": name,
        "leads": arrivals[Contact.Stage.LEAD],
        "mqls": arrivals[Contact.Stage.MQL],
        "sqls": arrivals[Contact.Stage.SQL],
        "clients": arrivals[Contact.Stage.CLIENT],
        "cost": cost,
        "cost_per_lead": _per(cost, arrivals[Contact.Stage.LEAD]),
        "cost_per_client": _per(cost, arrivals[Contact.Stage.CLIENT]),
    }


def _per(cost: Decimal | None, count: int) -> Decimal | None:
    if cost is None or not count:
        return None
    return (cost / count).quantize(Decimal("0.01"))


# --- SLA --------------------------------------------------------------------------------------


# The claim of each contact that became SQL in the period. Claimed contacts are a small part
# of the table: PostgreSQL reads their claim times from a partial covering index (0009).
SLA_SQL = """
SELECT e.entered, c.claimed_at
FROM (
    SELECT contact_id, MAX(at) AS entered FROM contacts_stagechange
    WHERE to_stage = %s AND at >= %s AND at < %s GROUP BY contact_id
) e
LEFT JOIN contacts_contact c ON c.id = e.contact_id AND c.claimed_at IS NOT NULL
"""


def _aware(value: datetime | str | None) -> datetime | None:
    # Raw SQL on SQLite returns text for expressions; the ORM's converters are not in the way.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value


# PostgreSQL sums it all up in the query (a single row back instead of thousands).
SLA_SUMMARY_SQL_POSTGRES = """
WITH waits AS (
    SELECT entered, CASE WHEN claimed_at >= entered
                         THEN EXTRACT(EPOCH FROM (claimed_at - entered))::float8 END AS wait
    FROM ({entries}) entries
)
SELECT COUNT(*) FILTER (WHERE wait <= %s),
       COUNT(*) FILTER (WHERE wait > %s OR (wait IS NULL AND entered < %s)),
       COUNT(*) FILTER (WHERE wait IS NULL AND entered >= %s),
       COUNT(wait),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY wait)
FROM waits
"""


def sla(period: Period, now: datetime) -> dict[str, Any]:
    """Contacts that entered SQL in the period (their last entry in it) and how fast a rep
    claimed them: the median wait of those claimed, and the share claimed within
    ``SLA_HOURS`` among those whose fate is known (claimed, or unclaimed past the limit)."""
    start, end = period.bounds()
    limit = timedelta(hours=settings.SLA_HOURS)
    params: list[Any] = [Contact.Stage.SQL, start, end]
    if connection.vendor == "postgresql":
        seconds = limit.total_seconds()
        sql = SLA_SUMMARY_SQL_POSTGRES.format(entries=SLA_SQL)
        [(on_time, late, waiting, claimed, median)] = _fetch(
            sql, [*params, seconds, seconds, now - limit, now - limit]
        )
    else:
        waits: list[float] = []
        on_time = late = waiting = 0
        for entered, claimed_at in _fetch(SLA_SQL, params):
            entered, claimed_at = _aware(entered), _aware(claimed_at)
            if claimed_at is not None and claimed_at >= entered:
                wait = claimed_at - entered
                waits.append(wait.total_seconds())
                if wait <= limit:
                    on_time += 1
                else:
                    late += 1
            elif now - entered > limit:
                late += 1
            else:
                waiting += 1
        waits.sort()
        claimed, median = len(waits), percentile_cont(waits, 0.5)
    return {
        "entered": on_time + late + waiting,
        "claimed": claimed,
        "on_time": on_time,
        "late": late,
        "waiting": waiting,
        "median": median,
        "share_on_time": _share(on_time, on_time + late),
        "sla_hours": settings.SLA_HOURS,
    }


# --- Touchpoints (daily rollup) ---------------------------------------------------------------


def touchpoints(period: Period) -> dict[str, Any]:
    """Touchpoints (events, stage changes aside) per day, per type and per channel, read from
    the daily rollup: a few thousand rows whatever the size of the event table."""
    rows = (
        EventDailyCount.objects.filter(day__gte=period.start, day__lte=period.end)
        .exclude(type__in=Event.SYSTEM_TYPES)
        .values_list("day", "type", "source", "count")
    )
    per_day: Counter[date] = Counter()
    per_type: Counter[str] = Counter()
    per_source: Counter[str] = Counter()
    for day, kind, source, count in rows:
        per_day[day] += count
        per_type[kind] += count
        per_source[source] += count
    labels = dict(Event.Type.choices)
    return {
        "days": [
            {"day": day, "count": per_day[day]}
            for day in (period.start + timedelta(days=n) for n in range(period.days))
        ],
        "types": [
            {"type": kind, "label": labels.get(kind, kind), "count": count}
            for kind, count in per_type.most_common()
        ],
        "sources": [
            {"source": source, "label": source_label(source), "count": count}
            for source, count in per_source.most_common()
        ],
        "total": sum(per_type.values()),
    }


def source_label(source: str) -> str:
    """A channel's label in the reader's language; a name an integration chose, as it is."""
    label = Event.SOURCE_LABELS.get(source)
    return str(label) if label is not None else (source or "—")
