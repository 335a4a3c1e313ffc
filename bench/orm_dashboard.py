"""The ORM versions of the dashboard's PostgreSQL statements, measured against them in the
same run (bench_dashboard.orm_against_bare): they cost more than the 15 % allowed, so the
panels keep their hand-written SQL (contacts/reports/dashboard.py, timing.py). Kept here so
that the comparison can be run again; and the list search as it was (a RawSQL subquery), the
comparison for the search through the contact_search model."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    Aggregate,
    Count,
    F,
    FloatField,
    Func,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast, Round

from contacts.models import Contact, StageChange, StageStay
from contacts.reports.dashboard import STAGES, Period
from contacts.reports.timing import work_mem


class PercentileCont(Aggregate):
    """PostgreSQL's ``percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)``."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, fraction: float, **extra: Any) -> None:
        super().__init__(expression, fraction=float(fraction), **extra)


class Seconds(Func):
    """Seconds from ``earlier`` to ``later`` (two datetimes), fractions kept."""

    output_field = FloatField()

    def __init__(self, later: Any, earlier: Any) -> None:
        super().__init__(later, earlier)

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # numeric (not float8), so that ROUND rounds halves away from zero, as SQLite does.
        return self.as_sql(compiler, connection, template="EXTRACT(EPOCH FROM (%(expressions)s))",
                           arg_joiner=" - ", **extra)  # fmt: skip

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        template = "((julianday(%(expressions)s)) * 86400.0)"
        return self.as_sql(compiler, connection, template=template, arg_joiner=") - julianday(",
                           **extra)  # fmt: skip


def conversion_counts(start: datetime, end: datetime) -> QuerySet[Any]:
    """(stage, entries, moved on) rows, in one query. Entries: arrivals into each stage (stays
    that ended with a move to it) and the contacts created, who "enter" suspect. Moved on: the
    stays begun in the period that have since ended with a move to a later stage (a purchase
    may skip stages). Range scans of the narrow stay table (contacts 0009)."""
    none = Value(0)
    arrivals = (
        StageStay.objects.filter(left_at__gte=start, left_at__lt=end)
        .values_list("next_stage")
        .annotate(entered=Count("*"), later=none)
    )
    created = (
        Contact.objects.filter(created_at__gte=start, created_at__lt=end)
        .annotate(arrived_in=Value(Contact.Stage.SUSPECT.value))
        .values_list("arrived_in")
        .annotate(entered=Count("*"), later=none)
    )
    later = Q()
    for rank, stage in enumerate(STAGES):
        later |= Q(stage=stage, next_stage__in=STAGES[rank + 1 :])
    moved_on = (
        StageStay.objects.filter(later, entered_at__gte=start, entered_at__lt=end)
        .values_list("stage")
        .annotate(entered=none, later=Count("*"))
    )
    return arrivals.order_by().union(created.order_by(), moved_on.order_by(), all=True)


def velocity(period: Period) -> dict[str, tuple[int, float, float]]:
    start, end = period.bounds()
    stays = StageStay.objects.filter(left_at__gte=start, left_at__lt=end).annotate(
        seconds=Cast(Round(Seconds("left_at", "entered_at")), FloatField())
    )
    per_stage = (
        stays.values("stage")
        .annotate(
            n=Count("stage"),
            median=PercentileCont("seconds", 0.5),
            p90=PercentileCont("seconds", 0.9),
        )  # fmt: skip
        .values_list("stage", "n", "median", "p90")
        .order_by()
    )
    with transaction.atomic():
        # Sorting a quarter's stays for the percentiles fits in memory, not in the
        # default 4MB.
        work_mem("64MB")
        figures = {stage: (n, median, p90) for stage, n, median, p90 in per_stage}
    return figures


def sql_entries(period: Period) -> QuerySet[Any]:
    """Each contact that became SQL in the period: its last entry in the period (``entered``)
    and when a rep claimed it (``claimed``, None if nobody has). Claimed contacts are a small
    part of the table: PostgreSQL reads their claim times from a partial covering index
    (contacts 0009)."""
    start, end = period.bounds()
    claims = Contact.objects.filter(pk=OuterRef("contact_id"), claimed_at__isnull=False)
    return (
        StageChange.objects.filter(to_stage=Contact.Stage.SQL, at__gte=start, at__lt=end)
        .values("contact_id")
        .annotate(entered=Max("at"), claimed=Subquery(claims.order_by().values("claimed_at")))
        .order_by()
    )


def sla(period: Period, now: datetime) -> dict[str, Any]:
    limit = timedelta(hours=settings.SLA_HOURS)
    entries = sql_entries(period)
    claimed = Q(claimed__gte=F("entered"))  # a claim before the entry was an earlier one's
    unclaimed = Q(claimed__isnull=True) | Q(claimed__lt=F("entered"))
    in_time, overdue = Q(claimed__lte=F("entered") + limit), Q(entered__lt=now - limit)
    figures = entries.annotate(wait=Seconds("claimed", "entered")).aggregate(
        on_time=Count("contact_id", filter=claimed & in_time),
        late=Count("contact_id", filter=(claimed & ~in_time) | (unclaimed & overdue)),
        waiting=Count("contact_id", filter=unclaimed & ~overdue),
        claims=Count("contact_id", filter=claimed),
        median=PercentileCont(Cast("wait", FloatField()), 0.5, filter=claimed),
    )
    return figures


def search_raw(text: str) -> list[int]:
    """50 ids of the list search as it was: a hand-written subquery of contact_search (the
    search now goes through its model, contacts/models/people.py)."""
    clauses, params = [], []
    for word in text.split():
        pattern = f"%{connection.ops.prep_for_like_query(word)}%"
        columns = ("email", "first_name", "last_name", "company", "external_id")
        clauses.append("(" + " OR ".join(f"UPPER({c}::text) LIKE UPPER(%s)" for c in columns) + ")")
        params.extend([pattern] * len(columns))
    sql = f"SELECT contact_id FROM contact_search WHERE {' AND '.join(clauses)}"  # noqa: S608
    found = Contact.objects.filter(pk__in=RawSQL(sql, params))  # noqa: S611
    return list(found.order_by("-pk").values_list("pk", flat=True)[:50])
