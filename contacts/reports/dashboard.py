"""The marketer dashboard's figures: the period asked for, and plain functions over contacts,
the stage stays and the daily event rollup (funnel, conversion, sources and cost,
touchpoints), returning plain values for the panels (``contacts/reports/views.py``). How long
leads take (velocity, SLA) is in ``timing.py``.

All ORM but conversion, one hand-written statement that works on both databases (its
docstring has the figures); ``sql_names`` gives such statements their names from the models."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Model
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


# --- Funnel -----------------------------------------------------------------------------------


def funnel() -> list[dict[str, Any]]:
    """Contacts per stage now, in funnel order."""
    counts = Contact.objects.stage_counts()
    return [
        {"stage": stage, "label": Contact.Stage(stage).label, "count": count}
        for stage, count in counts.items()
    ]


# --- Conversion -------------------------------------------------------------------------------


def sql_names(model: type[Model]) -> dict[str, str]:
    """The model's table (``table``) and its columns by field name, quoted: the names of the
    few hand-written statements come from the models, never typed."""
    quote = connection.ops.quote_name
    names = {field.name: quote(field.column) for field in model._meta.concrete_fields}
    return {**names, "table": quote(model._meta.db_table)}


def stage_rank_sql(column: str) -> str:
    """Funnel order as a number, from the one list of stages (values are ours, not the user's)."""
    whens = " ".join(f"WHEN '{stage}' THEN {rank}" for rank, stage in enumerate(STAGES))
    return f"(CASE {column} {whens} END)"


def conversion_sql() -> str:
    """(stage, entries, moved on) rows, in one statement. Entries: arrivals into each stage
    (stays that ended with a move to it) and the contacts created, who "enter" suspect. Moved
    on: the stays begun in the period that have since ended with a move to a later stage (a
    purchase may skip stages). Range scans of the narrow stay table (contacts 0009).

    Hand-written: the ORM version (a union of three querysets, ``bench/orm_dashboard.py``)
    cost more than the 15 % allowed, measured in the same run (bench ``dashboard``, scale 0.1,
    ORM and SQL timed in turn, shared machine at load 18), p50: 60.8 ms against 45.1 ms over
    30 days (1.35x), 129.9 ms against 103.0 ms over 90 days (1.26x); a second run, the
    machine quieter: 25.2 against 18.9 ms (1.33x), 95.3 against 85.0 ms (1.12x)."""
    s, c = sql_names(StageStay), sql_names(Contact)
    return f"""
SELECT {s["next_stage"]}, COUNT(*), 0 FROM {s["table"]}
WHERE {s["left_at"]} >= %s AND {s["left_at"]} < %s GROUP BY {s["next_stage"]}
UNION ALL
SELECT %s, COUNT(*), 0 FROM {c["table"]} WHERE {c["created_at"]} >= %s AND {c["created_at"]} < %s
UNION ALL
SELECT {s["stage"]}, 0, COUNT(*) FROM {s["table"]}
WHERE {s["entered_at"]} >= %s AND {s["entered_at"]} < %s
  AND {stage_rank_sql(s["next_stage"])} > {stage_rank_sql(s["stage"])}
GROUP BY {s["stage"]}
"""  # noqa: S608 (names from the models, values are parameters)


def conversion_counts(start: datetime, end: datetime) -> list[tuple[str, int, int]]:
    params = [start, end, Contact.Stage.SUSPECT.value, start, end, start, end]
    return fetch(conversion_sql(), params)


def fetch(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def conversion(period: Period) -> list[dict[str, Any]]:
    """Per stage (ambassador aside, the end of the road): entries into it in the period, how
    many of those went on to a later stage, and that share in percent."""
    entered: Counter[str] = Counter()
    moved_on: Counter[str] = Counter()
    for stage, count, later in conversion_counts(*period.bounds()):
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
                "rate": share(moved_on[stage], entered[stage]),
            }
        )
    return rows


def share(part: int, whole: int) -> Decimal | None:
    if not whole:
        return None
    return (Decimal(100) * part / whole).quantize(Decimal("0.1"))


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


def _local_day(moment: datetime) -> date:
    return timezone.localtime(moment, timezone.get_default_timezone()).date()


def rollups_add(events: Sequence[EventRow]) -> None:
    """Count a batch of processed events into the daily rollup (one upsert per batch) and add
    the stays their ``stage_changed`` events record. Called by ``events_process`` in the
    transaction that marks them processed, so each event counts exactly once even when its task
    is delivered twice."""
    _event_counts_add(events)
    changes = [
        e.properties["stage_change_id"]
        for e in events
        if e.type == Event.Type.STAGE_CHANGED and isinstance(e.properties, dict)
        and e.properties.get("stage_change_id")
    ]  # fmt: skip
    if changes:
        _stays_add(changes)


def _event_counts_add(events: Sequence[EventRow]) -> None:
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


# Each stage change as the stay it ended: since the contact's previous change (or its creation)
# until this one. Read from the stage history itself, so the order in which workers process the
# events does not matter.
STAYS_SQL = """
INSERT INTO contacts_stagestay
    (stage_change_id, source_id, stage, entered_at, left_at, next_stage)
SELECT h.id, k.source_id, h.from_stage, COALESCE(h.previous_at, k.created_at), h.at, h.to_stage
FROM (
    SELECT s.id, s.contact_id, s.from_stage, s.to_stage, s.at,
           LAG(s.at) OVER (PARTITION BY s.contact_id ORDER BY s.at, s.id) AS previous_at
    FROM contacts_stagechange s {contacts}
) h
JOIN contacts_contact k ON k.id = h.contact_id
WHERE {changes}
"""


def _stays_add(change_ids: Sequence[int]) -> None:
    marks = ", ".join(["%s"] * len(change_ids))
    # Only placeholders are interpolated; the ids travel as parameters.
    within = "WHERE s.contact_id IN (SELECT contact_id FROM contacts_stagechange WHERE id IN ({}))"
    sql = STAYS_SQL.format(
        contacts=within.format(marks),
        changes=f"h.id IN ({marks}) ON CONFLICT (stage_change_id) DO NOTHING",
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*change_ids, *change_ids])


@transaction.atomic
def rollups_rebuild() -> tuple[int, int]:
    """Recompute the daily event counts and the stage stays from the processed events and the
    stage history (reconciliation after a restore, a bulk load or a bug). Returns the number
    of rows of each."""
    counts_table = EventDailyCount._meta.db_table
    stays_table = StageStay._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Workers adding batches wait for the rebuild, and the rebuild's reads start after
            # every batch already counted has committed: nothing is counted twice or lost.
            cursor.execute(f"LOCK TABLE {counts_table}, {stays_table} IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute(f"DELETE FROM {counts_table}")  # noqa: S608
        cursor.execute(f"DELETE FROM {stays_table}")  # noqa: S608
        counts = (
            Event.objects.filter(pending__isnull=True)
            .annotate(local_day=TruncDate("occurred_at", tzinfo=timezone.get_default_timezone()))
            .values("local_day", "type", "source")
            .annotate(n=Count("id"))
            .values_list("local_day", "type", "source", "n")
            .order_by()
        )
        sql, params = counts.query.sql_with_params()
        cursor.execute(
            f"INSERT INTO {counts_table} (day, type, source, count) {sql}",  # noqa: S608
            params,
        )
        cursor.execute(STAYS_SQL.format(contacts="", changes="true"))
    return EventDailyCount.objects.count(), StageStay.objects.count()
