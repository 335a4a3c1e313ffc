"""Rescoring everyone from the events table, in set-based SQL: one INSERT … SELECT per rule.

Caps become window functions: the n-th matching event of a contact (in its day/week/month for a
points cap) is numbered by ROW_NUMBER(), so "at most N times" and "at most N points per period"
are arithmetic on that number. The same rules, fed event by event to ``scoring.engine``, give
the same ledger; a test holds the two together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection
from django.db.models import F, Q, QuerySet, TextField, Window
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, RowNumber, Trunc

from contacts.models import Event
from scoring import engine

MACHINE_REASON = "{name} (not scored: machine signal)"


def matching_events(rule: engine.Rule, *, machine: bool) -> QuerySet[Event]:
    """The events a rule applies to, as engine.Rule.matches decides it, in SQL."""
    events = Event.objects.filter(type=rule.event_type)
    if rule.url_contains:
        events = events.filter(properties__url__icontains=rule.url_contains)
    if rule.url_pattern:
        events = events.filter(properties__url__iregex=rule.url_pattern)
    for key, value in (
        ("content_tag", rule.content_tag),
        ("form", rule.form),
        (rule.property_name, rule.property_value),
    ):
        if key and value:
            # Compared as text, as the engine does: 5 and "5" are the same property value.
            as_text = Cast(KeyTextTransform(key, "properties"), output_field=TextField())
            events = events.alias(**{f"_{key}_text": as_text}).filter(**{f"_{key}_text": value})
    if rule.starts_at:
        events = events.filter(occurred_at__gte=rule.starts_at)
    if rule.ends_at:
        events = events.filter(occurred_at__lt=rule.ends_at)
    # has_key first: comparing a missing key gives NULL, and NOT NULL would drop the event.
    is_machine = Q(properties__has_key="machine") & Q(properties__machine=True)
    return events.filter(is_machine) if machine else events.exclude(is_machine)


def _points_sql(rule: engine.Rule) -> tuple[str, list[object]]:
    if rule.max_times:
        return "CASE WHEN rn <= %s THEN %s ELSE 0 END", [rule.max_times, rule.points]
    if rule.max_points and rule.cap_period:
        # The n-th event of the period may still take what the first n-1 left of the cap.
        size, cap = abs(rule.points), rule.max_points
        sign = 1 if rule.points > 0 else -1
        left = "(%s - (rn - 1) * %s)"
        return (
            f"(CASE WHEN {left} >= %s THEN %s WHEN {left} > 0 THEN {left} ELSE 0 END) * %s",
            [cap, size, size, size, cap, size, cap, size, sign],
        )
    return "%s", [rule.points]


UPDATE_SCORES = """
UPDATE contacts_contact SET score = COALESCE(
    (SELECT SUM(points) FROM scoring_scoreentry e WHERE e.contact_id = contacts_contact.id), 0)
WHERE score <> COALESCE(
    (SELECT SUM(points) FROM scoring_scoreentry e WHERE e.contact_id = contacts_contact.id), 0)
"""


def update_scores() -> int:
    """Set every contact's score to its ledger's sum; returns how many changed."""
    with connection.cursor() as cursor:
        cursor.execute(UPDATE_SCORES)
        return max(cursor.rowcount, 0)


def scored_lines_sql(rule: engine.Rule, *, now: datetime) -> tuple[str, list[object]]:
    """SELECT contact_id, points, rule_id, event_id, reason, filtered, at, created_at."""
    partition = [F("contact_id")]
    if rule.cap_period and rule.max_points:
        partition.append(Trunc("occurred_at", rule.cap_period, tzinfo=_tz()))
    numbered = (
        matching_events(rule, machine=False)
        .annotate(
            rn=Window(RowNumber(), partition_by=partition, order_by=[F("occurred_at"), F("id")])
        )
        .values("id", "contact_id", "occurred_at", "rn")
    )
    inner, inner_params = numbered.query.sql_with_params()
    points, points_params = _points_sql(rule)
    sql = (
        f"SELECT contact_id, {points} AS points, %s AS rule_id, id AS event_id, %s AS reason, "
        f"%s AS filtered, occurred_at AS at, %s AS created_at "
        f"FROM ({inner}) matched WHERE {points} <> 0"
    )
    return sql, [*points_params, rule.id, rule.name, False, now, *inner_params, *points_params]


def machine_lines_sql(rule: engine.Rule, *, now: datetime) -> tuple[str, list[object]]:
    machine = matching_events(rule, machine=True).values("id", "contact_id", "occurred_at")
    inner, inner_params = machine.query.sql_with_params()
    reason = MACHINE_REASON.format(name=rule.name)
    sql = (
        f"SELECT contact_id, 0 AS points, %s AS rule_id, id AS event_id, %s AS reason, "
        f"%s AS filtered, occurred_at AS at, %s AS created_at FROM ({inner}) matched WHERE 1 = 1"
    )
    return sql, [rule.id, reason, True, now, *inner_params]


def lines_sql(rule: engine.Rule, *, now: datetime) -> list[tuple[str, list[object]]]:
    statements = [scored_lines_sql(rule, now=now)]
    if not settings.SCORE_MACHINE_SIGNALS:
        statements.append(machine_lines_sql(rule, now=now))
    return statements


COLUMNS = "contact_id, points, rule_id, event_id, reason, filtered, at, created_at"


def rebuild_rule_lines(rule: engine.Rule, *, now: datetime) -> int:
    """Make the rule's ledger lines what the events say they should be; returns lines written.

    Writing is what costs (indexes, foreign keys), so the wanted lines go to a temporary table
    first and only the difference is applied: a rule that did not change writes nothing.
    """
    written = 0
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS rescore_wanted")
        statements = lines_sql(rule, now=now)
        first, params = statements[0]
        cursor.execute(f"CREATE TEMPORARY TABLE rescore_wanted AS {first}", params)
        for select, more in statements[1:]:
            cursor.execute(f"INSERT INTO rescore_wanted {select}", more)
        cursor.execute(
            """
            DELETE FROM scoring_scoreentry WHERE rule_id = %s AND event_id IS NOT NULL
            AND NOT EXISTS (
                SELECT 1 FROM rescore_wanted w WHERE w.event_id = scoring_scoreentry.event_id
                AND w.points = scoring_scoreentry.points
                AND w.filtered = scoring_scoreentry.filtered
                AND w.reason = scoring_scoreentry.reason)
            """,
            [rule.id],
        )
        written += max(cursor.rowcount, 0)
        # A live event scored meanwhile already has its line: ON CONFLICT keeps that one.
        cursor.execute(
            f"""
            INSERT INTO scoring_scoreentry ({COLUMNS}) SELECT {COLUMNS} FROM rescore_wanted w
            WHERE NOT EXISTS (
                SELECT 1 FROM scoring_scoreentry e WHERE e.rule_id = %s AND e.event_id = w.event_id)
            ON CONFLICT DO NOTHING
            """,
            [rule.id],
        )
        written += max(cursor.rowcount, 0)
        cursor.execute("DROP TABLE rescore_wanted")
    return written


@dataclass(frozen=True)
class NewScore:
    contact_id: int
    stage: str
    old: int
    new: int


def new_scores(rules: Sequence[engine.Rule], *, now: datetime) -> list[NewScore]:
    """Every contact whose score the given rules would change, without writing anything."""
    selects, params = [], []
    for rule in rules:
        if rule.active:
            sql, rule_params = scored_lines_sql(rule, now=now)
            selects.append(f"SELECT contact_id, points FROM ({sql}) r{len(selects)}")
            params += rule_params
    # Lines that rescoring keeps: decay, manual, and whatever has no event.
    selects.append("SELECT contact_id, points FROM scoring_scoreentry WHERE event_id IS NULL")
    union = " UNION ALL ".join(selects)
    sql = (
        "SELECT c.id, c.stage, c.score, COALESCE(t.total, 0) FROM contacts_contact c "
        f"LEFT JOIN (SELECT contact_id, SUM(points) AS total FROM ({union}) lines "
        "GROUP BY contact_id) t ON t.contact_id = c.id "
        "WHERE c.score <> COALESCE(t.total, 0)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [NewScore(*row) for row in cursor.fetchall()]


def _tz() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)
