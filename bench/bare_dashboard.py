"""The dashboard's aggregates as bare SQL on one cursor: no view, no template, no ORM. The
baseline each page's server time is compared with."""

from __future__ import annotations

from datetime import date, timedelta

from django.db import connection, transaction
from django.utils import timezone

from contacts.reports.dashboard import STAGES, Period

# The statements the panels sent before they went back to the ORM (hand-written, PostgreSQL).
RANK = "(CASE {} " + " ".join(f"WHEN '{s}' THEN {r}" for r, s in enumerate(STAGES)) + " END)"
CONVERSION_SQL = f"""
SELECT next_stage, COUNT(*), 0 FROM contacts_stagestay
WHERE left_at >= %s AND left_at < %s GROUP BY next_stage
UNION ALL
SELECT 'suspect', COUNT(*), 0 FROM contacts_contact WHERE created_at >= %s AND created_at < %s
UNION ALL
SELECT stage, 0, COUNT(*) FROM contacts_stagestay
WHERE entered_at >= %s AND entered_at < %s AND {RANK.format("next_stage")} > {RANK.format("stage")}
GROUP BY stage
"""
# One index range scan per stage (stage, left_at).
VELOCITY_SQL = """
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
SLA_SQL = """
WITH waits AS (
    SELECT entered, CASE WHEN claimed_at >= entered
                         THEN EXTRACT(EPOCH FROM (claimed_at - entered))::float8 END AS wait
    FROM (
        SELECT e.entered, c.claimed_at
        FROM (
            SELECT contact_id, MAX(at) AS entered FROM contacts_stagechange
            WHERE to_stage = %s AND at >= %s AND at < %s GROUP BY contact_id
        ) e
        LEFT JOIN contacts_contact c ON c.id = e.contact_id AND c.claimed_at IS NOT NULL
    ) entries
)
SELECT COUNT(*) FILTER (WHERE wait <= %s),
       COUNT(*) FILTER (WHERE wait > %s OR (wait IS NULL AND entered < %s)),
       COUNT(*) FILTER (WHERE wait IS NULL AND entered >= %s),
       COUNT(wait),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY wait)
FROM waits
"""


def fetch(sql: str, params: list[object] | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall() if cursor.description else []


def conversion(start: date, end: date) -> None:
    low, high = Period(start, end).bounds()
    fetch(CONVERSION_SQL, [low, high] * 3)


def velocity(start: date, end: date) -> None:
    low, high = Period(start, end).bounds()
    with transaction.atomic():
        fetch("SET LOCAL work_mem = '64MB'")
        fetch(VELOCITY_SQL, [STAGES, low, high])


def sources(start: date, end: date) -> None:
    low, high = Period(start, end).bounds()
    # People, not moves: first arrivals only (the stays carry the contact's source now).
    fetch(
        "SELECT source_id, next_stage, count(*) FROM contacts_stagestay "
        "WHERE first_arrival AND left_at >= %s AND left_at < %s "
        "AND next_stage IN ('lead', 'mql', 'sql', 'client') GROUP BY 1, 2",
        [low, high],
    )
    fetch(
        "SELECT source_id, starts_on, ends_on, amount FROM contacts_leadsourcecost "
        "WHERE starts_on <= %s AND ends_on >= %s",
        [end, start],
    )
    fetch("SELECT id, name FROM contacts_leadsource")


def sla(start: date, end: date) -> None:
    low, high = Period(start, end).bounds()
    limit = timezone.now() - timedelta(hours=4)
    fetch(SLA_SQL, ["sql", low, high, 4 * 3600.0, 4 * 3600.0, limit, limit])


def touchpoints(start: date, end: date) -> None:
    fetch(
        "SELECT day, type, source, count FROM contacts_eventdailycount "
        "WHERE day >= %s AND day <= %s AND type <> 'stage_changed'",
        [start, end],
    )


def funnel() -> None:
    fetch("SELECT stage, count(*) FROM contacts_contact GROUP BY stage")


def score_distribution() -> None:
    fetch(
        "SELECT CASE WHEN score < 0 THEN -1 WHEN score >= 200 THEN 10 ELSE score / 20 END, "
        "count(*) FROM contacts_contact GROUP BY 1"
    )


def contact_list(where: str, params: list[object]) -> None:
    # Counted up to 10,001 rows, as the list's pager does (it shows "more than 10,000").
    fetch(
        f"SELECT count(*) FROM (SELECT 1 FROM contacts_contact c WHERE {where} LIMIT 10001) n",
        params,
    )
    fetch(
        "SELECT c.*, s.name, u.username FROM contacts_contact c "
        "LEFT JOIN contacts_leadsource s ON s.id = c.source_id "
        "LEFT JOIN auth_user u ON u.id = c.owner_id "
        f"WHERE {where} ORDER BY c.last_activity_at DESC NULLS LAST, c.id DESC LIMIT 50",
        params,
    )


def queue() -> None:
    fetch(
        "SELECT c.*, s.name FROM contacts_contact c "
        "LEFT JOIN contacts_leadsource s ON s.id = c.source_id "
        "WHERE c.stage = 'sql' AND c.owner_id IS NULL "
        "ORDER BY c.score DESC, c.stage_entered_at LIMIT 100"
    )
