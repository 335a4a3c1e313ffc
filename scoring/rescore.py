"""Rescoring everyone from the events table, in set-based SQL: one pass over each rule's events.

Caps become window functions: the n-th matching event of a contact (in its day/week/month for a
points cap) is numbered by ROW_NUMBER(), so "at most N times" and "at most N points per period"
are arithmetic on that number. The same rules, fed event by event to ``scoring.engine``, give
the same ledger; a test holds the two together.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, F, Q, QuerySet, TextField, Value, When, Window
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, RowNumber, Trunc

from contacts.models import Contact, Event
from scoring import engine

MACHINE_REASON = "{name} (not scored: machine signal)"


def matching_events(rule: engine.Rule) -> QuerySet[Event]:
    """The events a rule applies to, as engine.Rule.matches decides it, in SQL (machine signals
    included: ``lines_sql`` tells them apart)."""
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
    # No ORDER BY: the window numbers the rows in its own order, Event's default one is a sort
    # of every matching event for nothing.
    return events.order_by()


def is_machine_signal() -> Q:
    # has_key first: comparing a missing key gives NULL, and NOT NULL would drop the event.
    return Q(properties__has_key="machine") & Q(properties__machine=True)


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


COLUMNS = "contact_id, points, rule_id, event_id, reason, filtered, at, created_at"


def lines_sql(rule: engine.Rule, *, now: datetime) -> tuple[str, list[object]]:
    """SELECT {COLUMNS}: the ledger lines the rule gives over every stored event.

    One pass over the rule's events: unless machine signals count (``SCORE_MACHINE_SIGNALS``),
    each machine signal gets its filtered 0-point line and is numbered apart, so it takes
    nothing from a cap, as in the engine.
    """
    events = matching_events(rule)
    partition = [F("contact_id")]
    if settings.SCORE_MACHINE_SIGNALS:
        events = events.annotate(machine=Value(False))
    else:
        events = events.annotate(
            machine=Case(When(is_machine_signal(), then=Value(True)), default=Value(False))
        )
        partition.append(F("machine"))
    if rule.cap_period and rule.max_points:
        partition.append(Trunc("occurred_at", rule.cap_period, tzinfo=_tz()))
    numbered = events.annotate(
        rn=Window(RowNumber(), partition_by=partition, order_by=[F("occurred_at"), F("id")])
    ).values("id", "contact_id", "occurred_at", "machine", "rn")
    inner, inner_params = numbered.query.sql_with_params()
    points, points_params = _points_sql(rule)
    reason = MACHINE_REASON.format(name=rule.name)
    sql = (
        f"SELECT contact_id, CASE WHEN machine THEN 0 ELSE {points} END AS points, "
        f"%s AS rule_id, id AS event_id, CASE WHEN machine THEN %s ELSE %s END AS reason, "
        f"machine AS filtered, occurred_at AS at, %s AS created_at "
        f"FROM ({inner}) matched WHERE machine OR {points} <> 0"
    )
    params = [*points_params, rule.id, reason, rule.name, now, *inner_params, *points_params]
    return sql, params


UPDATE_SCORES = """
UPDATE contacts_contact SET score = COALESCE(
    (SELECT SUM(points) FROM scoring_scoreentry e WHERE e.contact_id = contacts_contact.id), 0)
WHERE score <> COALESCE(
    (SELECT SUM(points) FROM scoring_scoreentry e WHERE e.contact_id = contacts_contact.id), 0)
"""

# The ledger summed once (one pass, hashed), not once per contact: a correlated sum per contact
# reads the ledger through its index a hundred thousand times. Only scores that change are
# written: every write of a contact row goes through all of its indexes.
LEDGER_TOTALS = (
    "SELECT contact_id, SUM(points) AS total FROM scoring_scoreentry GROUP BY contact_id"
)
# Live scoring locks its contacts in id order; an UPDATE locks them in the order its plan meets
# them. Locking in id order first means the two wait for each other instead of deadlocking, and
# the UPDATE that follows (a new snapshot) sums every line a live batch committed meanwhile.
LOCK_CHANGED_POSTGRESQL = f"""
WITH locked AS (
    SELECT c.id FROM contacts_contact c LEFT JOIN ({LEDGER_TOTALS}) t ON t.contact_id = c.id
    WHERE c.score <> COALESCE(t.total, 0) ORDER BY c.id FOR NO KEY UPDATE OF c
) SELECT count(*) FROM locked
"""
UPDATE_SCORES_POSTGRESQL = f"""
UPDATE contacts_contact c SET score = changed.total
FROM (
    SELECT c.id, COALESCE(t.total, 0) AS total
    FROM contacts_contact c LEFT JOIN ({LEDGER_TOTALS}) t ON t.contact_id = c.id
    WHERE c.score <> COALESCE(t.total, 0)
) changed
WHERE c.id = changed.id
"""


@contextmanager
def tuned() -> Iterator[None]:
    """A transaction with room for the rescore's sorts and hashes.

    The window sorts a rule's events and the score update hashes the whole ledger: with the
    default 4 MB they spill to disk (a few tens of MB each at 100,000 contacts x 1,000,000
    events). Just-in-time compilation took 0.3 s on the score update and saves nothing on
    these plans.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL work_mem = '64MB'")
                cursor.execute("SET LOCAL jit = off")
        yield


def update_scores() -> int:
    """Set every contact's score to its ledger's sum; returns how many changed."""
    with tuned(), connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute(UPDATE_SCORES)
            return max(cursor.rowcount, 0)
        cursor.execute(LOCK_CHANGED_POSTGRESQL)
        cursor.execute(UPDATE_SCORES_POSTGRESQL)
        return max(cursor.rowcount, 0)


def rebuild_rule_lines(rule: engine.Rule, *, now: datetime) -> int:
    """Make the rule's ledger lines what the events say they should be; returns lines written.

    Writing is what costs (indexes), so the difference between the wanted lines and the present
    ones goes to a temporary table first and only that is applied: a rule that did not change
    writes nothing.
    """
    written = 0
    with tuned(), connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS rescore_wanted")
        select, params = lines_sql(rule, now=now)
        if connection.vendor == "postgresql":
            # Only the difference is kept: one full join of the wanted lines with the rule's
            # present ones. A rule that did not change leaves an empty table, instead of a copy
            # of all its lines then joined twice.
            cursor.execute(
                f"""
                CREATE TEMPORARY TABLE rescore_wanted AS
                SELECT w.*, e.id AS unwanted_id FROM ({select}) w
                FULL JOIN (
                    SELECT id, event_id, points, filtered, reason FROM scoring_scoreentry
                    WHERE rule_id = %s AND event_id IS NOT NULL
                ) e ON e.event_id = w.event_id AND e.points = w.points
                    AND e.filtered = w.filtered AND e.reason = w.reason
                WHERE w.event_id IS NULL OR e.id IS NULL
                """,
                [*params, rule.id],
            )
            # Through the rule's lines (one index range), not an id lookup per unwanted line.
            cursor.execute(
                "DELETE FROM scoring_scoreentry USING rescore_wanted w "
                "WHERE scoring_scoreentry.rule_id = %s AND scoring_scoreentry.event_id IS NOT NULL "
                "AND scoring_scoreentry.id = w.unwanted_id",
                [rule.id],
            )
        else:
            cursor.execute(f"CREATE TEMPORARY TABLE rescore_wanted AS {select}", params)
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
        # In contact order, the (contact, at) index takes the new lines page by page: in the
        # full join's order the same insert took twice as long.
        cursor.execute(
            f"""
            INSERT INTO scoring_scoreentry ({COLUMNS}) SELECT {COLUMNS} FROM rescore_wanted w
            WHERE w.event_id IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM scoring_scoreentry e WHERE e.rule_id = %s AND e.event_id = w.event_id)
            ORDER BY w.contact_id, w.at
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
            sql, rule_params = lines_sql(rule, now=now)
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
    with tuned(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [NewScore(*row) for row in cursor.fetchall()]


def stage_candidates(thresholds: Sequence[engine.Threshold]) -> list[tuple[int, str, int]]:
    """(id, stage, score) of every marketing-stage contact whose score calls for a stage move,
    in id order.

    Without new events a move depends on the stage and the score alone, so the engine decides
    once per distinct pair (a few hundred) rather than once per contact, and the database
    returns only the contacts of the pairs that move.
    """
    pairs = (
        Contact.objects.filter(stage__in=engine.MARKETING_STAGES)
        .order_by()
        .values_list("stage", "score")
        .distinct()
    )
    moving: dict[str, list[int]] = {}
    for stage, score in pairs:
        if engine.stage_moves(stage, score, [], thresholds):
            moving.setdefault(stage, []).append(score)
    if not moving:
        return []
    which = Q()
    for stage, scores in moving.items():
        which |= Q(stage=stage, score__in=scores)
    return list(Contact.objects.filter(which).order_by("pk").values_list("pk", "stage", "score"))


def _tz() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)
