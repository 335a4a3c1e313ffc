"""The marketer dashboard's figures: plain functions over contacts, the stage history and the
daily event rollup, returning plain values for the panels (``dashboard_views.py``)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.translation import gettext as _

from contacts.models import (
    Contact,
    Event,
    EventDailyCount,
    EventRow,
    LeadSource,
    StageChange,
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

# Contacts entering each stage in the period: their first arrival there (from the stage history;
# a contact "enters" suspect when it is created). One of them moved on if the history shows it
# reaching any later stage afterwards (a purchase may skip stages).
CONVERSION_SQL = """
WITH entries AS (
    SELECT contact_id, to_stage AS stage, MIN(at) AS entered
    FROM contacts_stagechange WHERE at >= %s AND at < %s
    GROUP BY contact_id, to_stage
    UNION ALL
    SELECT id, 'suspect', created_at FROM contacts_contact
    WHERE created_at >= %s AND created_at < %s
)
SELECT stage, COUNT(*), 0 FROM entries GROUP BY stage
UNION ALL
SELECT e.stage, 0, COUNT(*) FROM entries e
WHERE EXISTS (
    SELECT 1 FROM contacts_stagechange n
    WHERE n.contact_id = e.contact_id AND n.at >= e.entered
      AND {next_rank} > {entry_rank}
)
GROUP BY e.stage
"""


def conversion_sql() -> str:
    return CONVERSION_SQL.format(next_rank=_rank_sql("n.to_stage"), entry_rank=_rank_sql("e.stage"))


def conversion(period: Period) -> list[dict[str, Any]]:
    """Per stage (ambassador aside, the end of the road): contacts that entered it in the period,
    how many went on to a later stage, and that share in percent."""
    start, end = period.bounds()
    entered: Counter[str] = Counter()
    moved_on: Counter[str] = Counter()
    for stage, count, later in _fetch(conversion_sql(), [start, end, start, end]):
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

# Each stay that ended in the period: from the contact's previous move (or its creation, for
# suspects) to the move that ended it. Only contacts that moved in the period are read.
STAYS_SQL = """
SELECT h.from_stage, {seconds} AS seconds
FROM (
    SELECT s.contact_id, s.from_stage, s.at,
           LAG(s.at) OVER (PARTITION BY s.contact_id ORDER BY s.at, s.id) AS previous_at
    FROM contacts_stagechange s
    WHERE s.at < %s AND s.contact_id IN (
        SELECT contact_id FROM contacts_stagechange WHERE at >= %s AND at < %s
    )
) h
JOIN contacts_contact k ON k.id = h.contact_id
WHERE h.at >= %s
"""

VELOCITY_SQL_POSTGRES = """
SELECT from_stage, COUNT(*),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds)
FROM ({stays}) stays GROUP BY from_stage
"""


def velocity_sql() -> str:
    seconds = _seconds_sql("h.at", "COALESCE(h.previous_at, k.created_at)")
    if connection.vendor == "postgresql":
        stays = STAYS_SQL.format(seconds=f"ROUND({seconds})::float8")
        return VELOCITY_SQL_POSTGRES.format(stays=stays)
    return STAYS_SQL.format(seconds=seconds)


def velocity(period: Period) -> list[dict[str, Any]]:
    """Per stage: stays that ended in the period, and their median and 90th-percentile length
    in seconds (whole seconds, interpolated like PostgreSQL's ``percentile_cont``)."""
    start, end = period.bounds()
    params = [end, start, end, start]
    figures: dict[str, tuple[int, float | None, float | None]] = {}
    if connection.vendor == "postgresql":
        for stage, count, median, p90 in _fetch(velocity_sql(), params):
            figures[stage] = (count, median, p90)
    else:
        stays: dict[str, list[float]] = {}
        for stage, seconds in _fetch(velocity_sql(), params):
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
    """Per lead source: contacts that became leads, MQLs, SQLs and clients in the period, what
    the source cost over the period, and the cost per lead and per client."""
    start, end = period.bounds()
    counts = (
        StageChange.objects.filter(at__gte=start, at__lt=end, to_stage__in=SOURCE_STAGES)
        .values_list("contact__source_id", "to_stage")
        .annotate(n=Count("contact_id", distinct=True))
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


def sla(period: Period, now: datetime) -> dict[str, Any]:
    """Contacts that entered SQL in the period (their last entry in it) and how fast a rep
    claimed them: the median wait of those claimed, and the share claimed within
    ``SLA_HOURS`` among those whose fate is known (claimed, or unclaimed past the limit)."""
    start, end = period.bounds()
    limit = timedelta(hours=settings.SLA_HOURS)
    rows = (
        StageChange.objects.filter(to_stage=Contact.Stage.SQL, at__gte=start, at__lt=end)
        .values_list("contact_id", "contact__claimed_at")
        .annotate(entered=Max("at"))
        .order_by()
    )
    waits: list[float] = []
    on_time = late = waiting = 0
    for _contact_id, claimed_at, entered in rows:
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
    return {
        "entered": on_time + late + waiting,
        "claimed": len(waits),
        "on_time": on_time,
        "late": late,
        "waiting": waiting,
        "median": percentile_cont(waits, 0.5),
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
            {"source": source or "—", "count": count} for source, count in per_source.most_common()
        ],
        "total": sum(per_type.values()),
    }


def _local_day(moment: datetime) -> date:
    return timezone.localtime(moment, timezone.get_default_timezone()).date()


def event_rollup_add(events: Sequence[EventRow]) -> None:
    """Count a batch of processed events into the daily rollup: one upsert per batch. Called by
    ``events_process`` in the transaction that marks them processed, so each event is counted
    exactly once even when its task is delivered twice."""
    counts = Counter((_local_day(e.occurred_at), e.type, e.source or "") for e in events)
    if not counts:
        return
    # Sorted keys: two workers upserting overlapping days lock rows in the same order.
    rows = sorted(counts.items())
    table = EventDailyCount._meta.db_table
    values = ", ".join(["(%s, %s, %s, %s)"] * len(rows))
    params: list[Any] = []
    for (day, kind, source), count in rows:
        params += [connection.ops.adapt_datefield_value(day), kind, source, count]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (day, type, source, count) VALUES {values} "  # noqa: S608
            f"ON CONFLICT (day, type, source) DO UPDATE SET count = {table}.count + EXCLUDED.count",
            params,
        )


@transaction.atomic
def event_rollup_rebuild() -> int:
    """Recompute the daily rollup from the processed events (reconciliation after a restore, a
    bulk load or a bug). Returns the number of rollup rows."""
    table = EventDailyCount._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Workers adding batches wait for the rebuild, and the rebuild's read starts after
            # every batch already counted has committed: no event is counted twice or lost.
            cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute(f"DELETE FROM {table}")  # noqa: S608
        counts = (
            Event.objects.filter(pending__isnull=True)
            .annotate(local_day=TruncDate("occurred_at", tzinfo=timezone.get_default_timezone()))
            .values("local_day", "type", "source")
            .annotate(n=Count("id"))
            .values_list("local_day", "type", "source", "n")
            .order_by()
        )
        sql, params = counts.query.sql_with_params()
        cursor.execute(f"INSERT INTO {table} (day, type, source, count) {sql}", params)  # noqa: S608
    return EventDailyCount.objects.count()
