"""The marketer dashboard's figures: the period asked for, and plain functions over contacts,
the stage stays and the daily event rollup (funnel, conversion, sources and cost,
touchpoints), returning plain values for the panels (``contacts/reports/views.py``). How long
leads take (velocity, SLA) is in ``timing.py``.

All ORM but conversion, one hand-written statement that works on both databases (its
docstring has the figures); ``sql_names`` gives such statements their names from the models."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Model, Sum
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from contacts.models import (
    Contact,
    ContactOutcome,
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


def period_presets(
    period: Period, today: date, days: Sequence[int] = PRESETS
) -> list[dict[str, Any]]:
    """The "last N days" links of a period form: label, query string, whether it is shown now."""
    presets = []
    for n in days:
        preset = Period.last(n, today)
        label = ngettext("Last %(days)s day", "Last %(days)s days", n) % {"days": n}
        presets.append({"label": label, "query": preset.query(), "current": preset == period})
    return presets


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


# How the sources panel groups contacts: by their source as it is now, or by the first one.
SOURCE_GROUPINGS = ("source", "first_source")


def sources(period: Period, by: str = "source") -> dict[str, Any]:
    """Per lead source: the people who arrived as lead, MQL, SQL and client in the period (each
    contact counted once per stage, at its first move up into it: going back and forth between
    lead and MQL is not a new lead), what the source cost over the period, and the cost per
    lead and per client; the deals won in the period, their revenue and average in the site's
    currency, and the return on cost (revenue / cost). Contacts are grouped by their source
    as it is now, so a source set after the moves counts (``by="first_source"``: by the first
    source they had). Won deals in other currencies are counted apart, never converted."""
    if by not in SOURCE_GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}")
    start, end = period.bounds()
    # One range of the partial index stagestay_first_arrival (the stays carry the sources).
    counts = (
        StageStay.objects.filter(
            first_arrival=True, left_at__gte=start, left_at__lt=end, next_stage__in=SOURCE_STAGES
        )
        .values_list(by, "next_stage")
        .annotate(n=Count("*"))
        .order_by()
    )
    arrivals: dict[int | None, Counter[str]] = {}
    for source_id, stage, n in counts:
        arrivals.setdefault(source_id, Counter())[stage] = n
    deals = won_deals(start, end, by)
    costs = source_costs(period.start, period.end)
    names = dict(
        LeadSource.objects.filter(pk__in=set(arrivals) | set(costs) | set(deals)).values_list(
            "pk", "name"
        )
    )
    rows = [
        _source_row(names[pk], arrivals.get(pk, Counter()), costs.get(pk), deals.get(pk))
        for pk in sorted(names, key=lambda pk: names[pk].lower())
    ]
    if None in arrivals or None in deals:
        rows.append(
            _source_row(_("No source"), arrivals.get(None, Counter()), None, deals.get(None))
        )
    total_arrivals: Counter[str] = Counter()
    for counter in arrivals.values():
        total_arrivals.update(counter)
    total_deals = Deals()
    for won in deals.values():
        total_deals.add(won)
    total_cost = sum(costs.values(), Decimal(0)) if costs else None
    return {
        "rows": rows,
        "total": _source_row(_("Total"), total_arrivals, total_cost, total_deals),
        "currency": settings.DEFAULT_CURRENCY,
        "other_currencies": sorted(total_deals.other_currencies),
    }


@dataclass
class Deals:
    """Won deals of a source: in the site's currency (count, revenue), and elsewhere (count
    per currency, not summed with the rest)."""

    won: int = 0
    revenue: Decimal = Decimal(0)
    other_currencies: Counter[str] = field(default_factory=Counter)

    def add(self, other: Deals) -> None:
        self.won += other.won
        self.revenue += other.revenue
        self.other_currencies.update(other.other_currencies)


def won_deals(start: datetime, end: datetime, by: str = "source") -> dict[int | None, Deals]:
    """Won outcomes with an amount dated in [start, end), per source (``by``: the contact's
    source now, or its first) and currency: a range of the outcomes' date index, grouped by the
    source each outcome carries (kept in step with its contact's, see ``ContactOutcome``)."""
    column = "lead_source" if by == "source" else "first_lead_source"
    rows = (
        ContactOutcome.objects.filter(
            result=ContactOutcome.Result.WON, at__gte=start, at__lt=end, amount__isnull=False
        )
        .values_list(column, "currency")
        .annotate(n=Count("*"), revenue=Sum("amount"))
        .order_by()
    )
    deals: dict[int | None, Deals] = {}
    for source_id, currency, n, revenue in rows:
        won = deals.setdefault(source_id, Deals())
        if currency == settings.DEFAULT_CURRENCY:
            won.won += n
            won.revenue += revenue
        else:
            won.other_currencies[currency] += n
    return deals


def _source_row(
    name: str, arrivals: Counter[str], cost: Decimal | None, deals: Deals | None = None
) -> dict[str, Any]:
    deals = deals or Deals()
    return {
        "name": name,
        "leads": arrivals[Contact.Stage.LEAD],
        "mqls": arrivals[Contact.Stage.MQL],
        "sqls": arrivals[Contact.Stage.SQL],
        "clients": arrivals[Contact.Stage.CLIENT],
        "cost": cost,
        "cost_per_lead": _per(cost, arrivals[Contact.Stage.LEAD]),
        "cost_per_client": _per(cost, arrivals[Contact.Stage.CLIENT]),
        "won": deals.won,
        "revenue": deals.revenue if deals.won else None,
        "average_deal": _per(deals.revenue, deals.won),
        "return_on_cost": (deals.revenue / cost).quantize(Decimal("0.01")) if cost else None,
        "other_currencies": sorted(deals.other_currencies.items()),
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
