"""The dashboard's aggregates as bare SQL on one cursor: no view, no template, no ORM. The
baseline each page's server time is compared with."""

from __future__ import annotations

from datetime import date, timedelta

from django.db import connection, transaction
from django.utils import timezone

from contacts.reports.dashboard import (
    SLA_SQL,
    SLA_SUMMARY_SQL_POSTGRES,
    STAGES,
    Period,
    conversion_sql,
    velocity_sql,
)


def fetch(sql: str, params: list[object] | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall() if cursor.description else []


def conversion(start: date, end: date) -> None:
    low, high = Period(start, end).bounds()
    fetch(conversion_sql(), [low, high] * 3)


def velocity(start: date, end: date) -> None:
    low, high = Period(start, end).bounds()
    with transaction.atomic():
        fetch("SET LOCAL work_mem = '64MB'")
        fetch(velocity_sql(), [STAGES, low, high])


def sources(start: date, end: date) -> None:
    low, high = Period(start, end).bounds()
    fetch(
        "SELECT source_id, next_stage, count(*) FROM contacts_stagestay "
        "WHERE left_at >= %s AND left_at < %s "
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
    sql = SLA_SUMMARY_SQL_POSTGRES.format(entries=SLA_SQL)
    fetch(sql, ["sql", low, high, 4 * 3600.0, 4 * 3600.0, limit, limit])


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
