"""How long leads take: the velocity panel (time spent in each stage) and the SLA panel (how
fast reps claim new SQLs), with their medians and percentiles. Plain ORM queries.

Percentiles are where PostgreSQL and SQLite differ, and ``aggregate`` alone holds that
difference: PostgreSQL computes them in the same query (``percentile_cont``); SQLite lacks it,
so the values are read and interpolated the same way in Python (``percentile_cont`` below).

Measured (bench ``dashboard``, same run, p95 server time over the bare SQL that the panels used
to send): see VELOCITY_FIGURES and SLA_FIGURES in the notes of the merge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
)
from django.db.models.functions import Cast, Round

from contacts.models import Contact, StageChange, StageStay
from contacts.reports.dashboard import STAGES, Period, share

# --- Percentiles ------------------------------------------------------------------------------


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


def percentile_cont(values: Sequence[float], fraction: float) -> float | None:
    """PostgreSQL's ``percentile_cont`` (linear interpolation between the two nearest ranks),
    for databases that lack it. ``values`` must be sorted."""
    if not values:
        return None
    position = fraction * (len(values) - 1)
    lower, upper = math.floor(position), math.ceil(position)
    return values[lower] + (values[upper] - values[lower]) * (position - lower)


def percentiles_in_the_database() -> bool:
    """PostgreSQL computes percentiles in the query (``percentile_cont``); SQLite lacks it, so
    the panels read the values there and compute the same figures in Python. The one place
    where the two differ; each panel's figures are one query on either."""
    return connection.vendor == "postgresql"


# --- Velocity ---------------------------------------------------------------------------------


def velocity(period: Period) -> list[dict[str, Any]]:
    """Per stage: stays that ended in the period, and their median and 90th-percentile length
    in seconds (whole seconds, interpolated like PostgreSQL's ``percentile_cont``)."""
    start, end = period.bounds()
    stays = StageStay.objects.filter(left_at__gte=start, left_at__lt=end).annotate(
        seconds=Cast(Round(Seconds("left_at", "entered_at")), FloatField())
    )
    figures: dict[str, tuple[int, float | None, float | None]] = {}
    if percentiles_in_the_database():
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
    else:
        lengths: dict[str, list[float]] = {}
        for stage, seconds in stays.values_list("stage", "seconds"):
            lengths.setdefault(stage, []).append(seconds)
        for stage, values in lengths.items():
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


def work_mem(size: str) -> None:
    """PostgreSQL's memory for sorts and hashes, for the rest of this transaction."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('work_mem', %s, true)", [size])


# --- SLA --------------------------------------------------------------------------------------


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
    """Contacts that entered SQL in the period (their last entry in it) and how fast a rep
    claimed them: the median wait of those claimed, and the share claimed within
    ``SLA_HOURS`` among those whose fate is known (claimed, or unclaimed past the limit)."""
    limit = timedelta(hours=settings.SLA_HOURS)
    entries = sql_entries(period)
    if percentiles_in_the_database():
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
        on_time, late, waiting = figures["on_time"], figures["late"], figures["waiting"]
        claims, median = figures["claims"], figures["median"]
    else:
        waits: list[float] = []
        on_time = late = waiting = 0
        for entered, claimed_at in entries.values_list("entered", "claimed"):
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
        claims, median = len(waits), percentile_cont(waits, 0.5)
    return {
        "entered": on_time + late + waiting,
        "claimed": claims,
        "on_time": on_time,
        "late": late,
        "waiting": waiting,
        "median": median,
        "share_on_time": share(on_time, on_time + late),
        "sla_hours": settings.SLA_HOURS,
    }
