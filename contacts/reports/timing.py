"""How long leads take: the velocity panel (time spent in each stage) and the SLA panel (how
fast reps claim new SQLs), with their medians and percentiles.

Percentiles are where PostgreSQL and SQLite differ, and ``percentiles_in_the_database`` says
which way a panel goes: PostgreSQL computes them in one hand-written statement
(``percentile_cont``; names from the models); SQLite lacks it, so the ORM reads the values and
the same figures are computed here (``percentile_cont`` below).

The statements stay hand-written because their ORM versions (a ``percentile_cont`` aggregate,
``bench/orm_dashboard.py``) cost more than the 15 % allowed, measured in the same run (bench
``dashboard``, scale 0.1, ORM and SQL timed in turn, shared machine at load 18), p50:
velocity 110.5 ms against 62.6 ms over 30 days (1.77x), 135.5 against 95.5 ms over 90 days
(1.42x); SLA 89.8 against 29.9 ms (3.0x), 100.9 against 52.5 ms (1.9x). A second run, the
machine quieter: velocity 27.9 against 17.1 ms (1.63x), 46.1 against 36.0 ms (1.28x); SLA
23.1 against 11.1 ms (2.1x), 56.0 against 25.6 ms (2.2x).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, OuterRef, QuerySet, Subquery

from contacts.models import Contact, StageChange, StageStay
from contacts.reports.dashboard import STAGES, Period, fetch, share, sql_names


def percentiles_in_the_database() -> bool:
    """PostgreSQL computes percentiles in the query; SQLite lacks ``percentile_cont``."""
    return connection.vendor == "postgresql"


def percentile_cont(values: Sequence[float], fraction: float) -> float | None:
    """PostgreSQL's ``percentile_cont`` (linear interpolation between the two nearest ranks),
    for databases that lack it. ``values`` must be sorted."""
    if not values:
        return None
    position = fraction * (len(values) - 1)
    lower, upper = math.floor(position), math.ceil(position)
    return values[lower] + (values[upper] - values[lower]) * (position - lower)


def work_mem(size: str) -> None:
    """PostgreSQL's memory for sorts and hashes, for the rest of this transaction."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('work_mem', %s, true)", [size])


# --- Velocity ---------------------------------------------------------------------------------


def velocity_sql() -> str:
    """PostgreSQL: one index range scan per stage (stage, left_at: contacts 0009), so the stays
    never need sorting by stage; each stage's lengths are sorted once, for its percentiles."""
    s = sql_names(StageStay)
    return f"""
SELECT s.stage, v.stays, v.median, v.p90
FROM unnest(%s::text[]) AS s(stage)
CROSS JOIN LATERAL (
    SELECT COUNT(*) AS stays,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS median,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) AS p90
    FROM (
        SELECT ROUND(EXTRACT(EPOCH FROM ({s["left_at"]} - {s["entered_at"]})))::float8 AS seconds
        FROM {s["table"]}
        WHERE {s["stage"]} = s.stage AND {s["left_at"]} >= %s AND {s["left_at"]} < %s
    ) stays
) v
WHERE v.stays > 0
"""  # noqa: S608 (names from the models, values are parameters)


def velocity(period: Period) -> list[dict[str, Any]]:
    """Per stage: stays that ended in the period, and their median and 90th-percentile length
    in seconds (whole seconds, interpolated like PostgreSQL's ``percentile_cont``)."""
    start, end = period.bounds()
    figures: dict[str, tuple[int, float | None, float | None]] = {}
    if percentiles_in_the_database():
        with transaction.atomic():
            # Sorting a quarter's stays for the percentiles fits in memory, not in the default 4MB.
            work_mem("64MB")
            for stage, count, median, p90 in fetch(velocity_sql(), [STAGES, start, end]):
                figures[stage] = (count, median, p90)
    else:
        stays: dict[str, list[float]] = {}
        ended = StageStay.objects.filter(left_at__gte=start, left_at__lt=end)
        for stage, entered, left in ended.values_list("stage", "entered_at", "left_at"):
            stays.setdefault(stage, []).append(float(round((left - entered).total_seconds())))
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


# --- SLA --------------------------------------------------------------------------------------


def sql_entries(period: Period) -> QuerySet[Any]:
    """Each contact that became SQL in the period: its last entry in the period (``entered``)
    and when a rep claimed it (``claimed``, None if nobody has)."""
    start, end = period.bounds()
    claims = Contact.objects.filter(pk=OuterRef("contact_id"), claimed_at__isnull=False)
    return (
        StageChange.objects.filter(to_stage=Contact.Stage.SQL, at__gte=start, at__lt=end)
        .values("contact_id")
        .annotate(entered=Max("at"), claimed=Subquery(claims.order_by().values("claimed_at")))
        .order_by()
    )


def sla_sql() -> str:
    """PostgreSQL sums it all up in the statement (a single row back instead of thousands).
    Claimed contacts are a small part of the table: their claim times come from a partial
    covering index (contacts 0009)."""
    h, c = sql_names(StageChange), sql_names(Contact)
    return f"""
WITH entries AS (
    SELECT e.entered, c.{c["claimed_at"]} AS claimed_at
    FROM (
        SELECT {h["contact"]} AS contact_id, MAX({h["at"]}) AS entered FROM {h["table"]}
        WHERE {h["to_stage"]} = %s AND {h["at"]} >= %s AND {h["at"]} < %s
        GROUP BY {h["contact"]}
    ) e
    LEFT JOIN {c["table"]} c ON c.{c["id"]} = e.contact_id AND c.{c["claimed_at"]} IS NOT NULL
), waits AS (
    SELECT entered, CASE WHEN claimed_at >= entered
                         THEN EXTRACT(EPOCH FROM (claimed_at - entered))::float8 END AS wait
    FROM entries
)
SELECT COUNT(*) FILTER (WHERE wait <= %s),
       COUNT(*) FILTER (WHERE wait > %s OR (wait IS NULL AND entered < %s)),
       COUNT(*) FILTER (WHERE wait IS NULL AND entered >= %s),
       COUNT(wait),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY wait)
FROM waits
"""  # noqa: S608 (names from the models, values are parameters)


def sla(period: Period, now: datetime) -> dict[str, Any]:
    """Contacts that entered SQL in the period (their last entry in it) and how fast a rep
    claimed them: the median wait of those claimed, and the share claimed within
    ``SLA_HOURS`` among those whose fate is known (claimed, or unclaimed past the limit)."""
    limit = timedelta(hours=settings.SLA_HOURS)
    if percentiles_in_the_database():
        start, end = period.bounds()
        seconds, overdue = limit.total_seconds(), now - limit
        params = [Contact.Stage.SQL.value, start, end, seconds, seconds, overdue, overdue]
        [(on_time, late, waiting, claimed, median)] = fetch(sla_sql(), params)
    else:
        waits: list[float] = []
        on_time = late = waiting = 0
        for entered, claimed_at in sql_entries(period).values_list("entered", "claimed"):
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
        "share_on_time": share(on_time, on_time + late),
        "sla_hours": settings.SLA_HOURS,
    }
