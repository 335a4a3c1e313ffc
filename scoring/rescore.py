"""Rescoring everyone from the events table after a rule change: queued, run by a worker, one
transaction per rule, progress shown in the admin; swept if its task never reached a worker.

The work is set-based SQL, one pass over each rule's events. Caps become window functions: the
n-th matching event of a contact (in its day/week/month for a points cap) is numbered by
ROW_NUMBER(), so "at most N times" and "at most N points per period" are arithmetic on that
number. The same rules, fed event by event to ``scoring.engine``, give the same ledger; a test
holds the two together.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Case, F, Q, QuerySet, TextField, Value, When, Window
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, RowNumber, Trunc
from django.utils import timezone
from django.utils.module_loading import import_string

from contacts import broker
from contacts.models import Contact, Event
from scoring import engine
from scoring.live import active_rules, active_thresholds, contacts_lock, thresholds_apply
from scoring.models import Rescore, ScoreEntry

BATCH_SIZE = 1000
# Sent by name, looked up when sent: scoring.tasks imports this module, not the other way.
RESCORE_TASK = "scoring.tasks.rescore_task"
MACHINE_REASON = "{name} (not scored: machine signal)"
logger = logging.getLogger(__name__)


@transaction.atomic
def rescore_start(*, reason: str, requested_by: object = None) -> Rescore:
    """Queue a full rescore; it runs in the worker after this transaction commits."""
    run = Rescore.objects.create(reason=reason[:300], requested_by=requested_by)
    transaction.on_commit(lambda: broker.send(import_string(RESCORE_TASK), run.pk), robust=True)
    return run


def rescore_run(*, rescore_id: int, move_stages: bool = True) -> Rescore | None:
    """Rebuild every rule line of the ledger from the events, then scores, then stages.

    Each rule is rebuilt in its own transaction so progress can be shown; scores move to the
    new ledger in one statement at the end. Safe to run twice: a finished run is not redone.
    """
    claimed = Rescore.objects.filter(pk=rescore_id, status=Rescore.Status.QUEUED).update(
        status=Rescore.Status.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return None
    run = Rescore.objects.get(pk=rescore_id)
    rules = active_rules()
    run.steps_total = len(rules) + 3
    run.save(update_fields=["steps_total"])
    try:
        _rebuild(run, rules, move_stages=move_stages)
    except Exception as error:
        logger.exception("Rescore %s failed", run.pk)
        run.status, run.error = Rescore.Status.FAILED, str(error)[:2000]
    else:
        run.status = Rescore.Status.DONE
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "error", "finished_at"])
    return run


def _rebuild(run: Rescore, rules: Sequence[engine.Rule], *, move_stages: bool) -> None:
    now = timezone.now()
    ScoreEntry.objects.filter(event__isnull=False).exclude(
        rule_id__in=[rule.id for rule in rules]
    ).delete()
    _step(run)
    for rule in rules:
        with transaction.atomic():
            run.lines += rebuild_rule_lines(rule, now=now)
        _step(run, "lines")
    run.contacts_changed = update_scores()
    _step(run, "contacts_changed")
    run.stage_moves = stages_apply() if move_stages else 0
    _step(run, "stage_moves")


def _step(run: Rescore, *fields: str) -> None:
    run.steps_done += 1
    run.save(update_fields=["steps_done", *fields])


def stages_apply() -> int:
    """Move every marketing-stage contact whose score now crosses a threshold. Returns moves."""
    thresholds = active_thresholds()
    due = stage_candidates(thresholds)
    moved = 0
    for start in range(0, len(due), BATCH_SIZE):
        chunk = due[start : start + BATCH_SIZE]
        with transaction.atomic():
            # Lock, then re-read: a live event may have moved some of them meanwhile.
            current = [
                (pk, row.stage, row.score, ())
                for pk, row in contacts_lock(pk for pk, *_ in chunk).items()
            ]
            moved += len(thresholds_apply(candidates=current, thresholds=thresholds))
    return moved


def rescore_sweep() -> int:
    """Run rescores whose task never reached a worker (broker down). Returns how many ran."""
    stale = Rescore.objects.filter(
        status=Rescore.Status.QUEUED, created_at__lte=timezone.now() - timedelta(minutes=1)
    ).values_list("pk", flat=True)
    return sum(1 for pk in list(stale) if rescore_run(rescore_id=pk))


# --- The set-based SQL ------------------------------------------------------------------------


def _names(model: type[models.Model], *fields: str) -> SimpleNamespace:
    """The model's table and the columns of these fields, for the SQL below."""
    columns = {name: model._meta.get_field(name).column for name in fields}
    return SimpleNamespace(table=model._meta.db_table, **columns)


LEDGER = _names(
    ScoreEntry, "id", "contact", "points", "rule", "event", "reason", "filtered", "at",
    "created_at",
)  # fmt: skip
CONTACTS = _names(Contact, "id", "stage", "score")
EVENTS = _names(Event, "id", "contact", "occurred_at")
COLUMNS = ", ".join(
    getattr(LEDGER, name)
    for name in ("contact", "points", "rule", "event", "reason", "filtered", "at", "created_at")
)


def matching_events(rule: engine.Rule) -> QuerySet[Event]:
    """The events a rule applies to, as engine.Rule.matches decides it, in SQL (machine signals
    included: ``lines_sql`` tells them apart)."""
    matched = Event.objects.filter(type=rule.event_type)
    if rule.url_contains:
        matched = matched.filter(properties__url__icontains=rule.url_contains)
    if rule.url_pattern:
        matched = matched.filter(properties__url__iregex=rule.url_pattern)
    for key, value in (
        ("content_tag", rule.content_tag),
        ("form", rule.form),
        (rule.property_name, rule.property_value),
    ):
        if key and value:
            # Compared as text, as the engine does: 5 and "5" are the same property value.
            as_text = Cast(KeyTextTransform(key, "properties"), output_field=TextField())
            matched = matched.alias(**{f"_{key}_text": as_text}).filter(**{f"_{key}_text": value})
    if rule.starts_at:
        matched = matched.filter(occurred_at__gte=rule.starts_at)
    if rule.ends_at:
        matched = matched.filter(occurred_at__lt=rule.ends_at)
    # No ORDER BY: the window numbers the rows in its own order, Event's default one is a sort
    # of every matching event for nothing.
    return matched.order_by()


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


def lines_sql(rule: engine.Rule, *, now: datetime) -> tuple[str, list[object]]:
    """SELECT {COLUMNS}: the ledger lines the rule gives over every stored event.

    One pass over the rule's events: unless machine signals count (``SCORE_MACHINE_SIGNALS``),
    each machine signal gets its filtered 0-point line and is numbered apart, so it takes
    nothing from a cap, as in the engine.
    """
    matched = matching_events(rule)
    partition = [F("contact_id")]
    if settings.SCORE_MACHINE_SIGNALS:
        matched = matched.annotate(machine=Value(False))
    else:
        matched = matched.annotate(
            machine=Case(When(is_machine_signal(), then=Value(True)), default=Value(False))
        )
        partition.append(F("machine"))
    if rule.cap_period and rule.max_points:
        partition.append(Trunc("occurred_at", rule.cap_period, tzinfo=_tz()))
    numbered = matched.annotate(
        rn=Window(RowNumber(), partition_by=partition, order_by=[F("occurred_at"), F("id")])
    ).values("id", "contact_id", "occurred_at", "machine", "rn")
    inner, inner_params = numbered.query.sql_with_params()
    points, points_params = _points_sql(rule)
    reason = MACHINE_REASON.format(name=rule.name)
    sql = (
        f"SELECT {EVENTS.contact} AS {LEDGER.contact}, "
        f"CASE WHEN machine THEN 0 ELSE {points} END AS {LEDGER.points}, "
        f"%s AS {LEDGER.rule}, {EVENTS.id} AS {LEDGER.event}, "
        f"CASE WHEN machine THEN %s ELSE %s END AS {LEDGER.reason}, "
        f"machine AS {LEDGER.filtered}, {EVENTS.occurred_at} AS {LEDGER.at}, "
        f"%s AS {LEDGER.created_at} "
        f"FROM ({inner}) matched WHERE machine OR {points} <> 0"
    )
    params = [*points_params, rule.id, reason, rule.name, now, *inner_params, *points_params]
    return sql, params


# The ledger summed once (one pass, hashed), not once per contact: a correlated sum per contact
# reads the ledger through its index a hundred thousand times. Only scores that change are
# written: every write of a contact row goes through all of its indexes.
LEDGER_TOTALS = (
    f"SELECT {LEDGER.contact}, SUM({LEDGER.points}) AS total FROM {LEDGER.table} "
    f"GROUP BY {LEDGER.contact}"
)
CHANGED = (
    f"FROM {CONTACTS.table} c LEFT JOIN ({LEDGER_TOTALS}) t "
    f"ON t.{LEDGER.contact} = c.{CONTACTS.id} "
    f"WHERE c.{CONTACTS.score} <> COALESCE(t.total, 0)"
)
# Live scoring locks its contacts in id order; an UPDATE locks them in the order its plan meets
# them. Locking in id order first means the two wait for each other instead of deadlocking, and
# the UPDATE that follows (a new snapshot) sums every line a live batch committed meanwhile.
LOCK_CHANGED_POSTGRESQL = (
    f"WITH locked AS (SELECT c.{CONTACTS.id} {CHANGED} "
    f"ORDER BY c.{CONTACTS.id} FOR NO KEY UPDATE OF c) SELECT count(*) FROM locked"
)
UPDATE_SCORES_POSTGRESQL = (
    f"UPDATE {CONTACTS.table} c SET {CONTACTS.score} = changed.total "
    f"FROM (SELECT c.{CONTACTS.id}, COALESCE(t.total, 0) AS total {CHANGED}) changed "
    f"WHERE c.{CONTACTS.id} = changed.{CONTACTS.id}"
)
_SUM = (
    f"COALESCE((SELECT SUM({LEDGER.points}) FROM {LEDGER.table} e "
    f"WHERE e.{LEDGER.contact} = {CONTACTS.table}.{CONTACTS.id}), 0)"
)
UPDATE_SCORES = (
    f"UPDATE {CONTACTS.table} SET {CONTACTS.score} = {_SUM} WHERE {CONTACTS.score} <> {_SUM}"
)


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
    same_line = " AND ".join(
        f"{{a}}.{column} = {{b}}.{column}"
        for column in (LEDGER.event, LEDGER.points, LEDGER.filtered, LEDGER.reason)
    )
    rule_lines = f"{LEDGER.rule} = %s AND {LEDGER.event} IS NOT NULL"
    with tuned(), connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS rescore_wanted")
        select, params = lines_sql(rule, now=now)
        if connection.vendor == "postgresql":
            # Only the difference is kept: one full join of the wanted lines with the rule's
            # present ones. A rule that did not change leaves an empty table, instead of a copy
            # of all its lines then joined twice.
            cursor.execute(
                f"CREATE TEMPORARY TABLE rescore_wanted AS "
                f"SELECT w.*, e.{LEDGER.id} AS unwanted_id FROM ({select}) w FULL JOIN ("
                f"SELECT {LEDGER.id}, {LEDGER.event}, {LEDGER.points}, {LEDGER.filtered}, "
                f"{LEDGER.reason} FROM {LEDGER.table} WHERE {rule_lines}"
                f") e ON {same_line.format(a='e', b='w')} "
                f"WHERE w.{LEDGER.event} IS NULL OR e.{LEDGER.id} IS NULL",
                [*params, rule.id],
            )
            # Through the rule's lines (one index range), not an id lookup per unwanted line.
            cursor.execute(
                f"DELETE FROM {LEDGER.table} e USING rescore_wanted w "
                f"WHERE e.{LEDGER.rule} = %s AND e.{LEDGER.event} IS NOT NULL "
                f"AND e.{LEDGER.id} = w.unwanted_id",
                [rule.id],
            )
        else:
            cursor.execute(f"CREATE TEMPORARY TABLE rescore_wanted AS {select}", params)
            cursor.execute(
                f"DELETE FROM {LEDGER.table} WHERE {rule_lines} AND NOT EXISTS ("
                f"SELECT 1 FROM rescore_wanted w WHERE "
                f"{same_line.format(a='w', b=LEDGER.table)})",
                [rule.id],
            )
        written += max(cursor.rowcount, 0)
        # A live event scored meanwhile already has its line: ON CONFLICT keeps that one.
        # In contact order, the (contact, at) index takes the new lines page by page: in the
        # full join's order the same insert took twice as long.
        cursor.execute(
            f"INSERT INTO {LEDGER.table} ({COLUMNS}) SELECT {COLUMNS} FROM rescore_wanted w "
            f"WHERE w.{LEDGER.event} IS NOT NULL AND NOT EXISTS ("
            f"SELECT 1 FROM {LEDGER.table} e WHERE e.{LEDGER.rule} = %s "
            f"AND e.{LEDGER.event} = w.{LEDGER.event}) "
            f"ORDER BY w.{LEDGER.contact}, w.{LEDGER.at} "
            f"ON CONFLICT DO NOTHING",
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
            selects.append(f"SELECT {LEDGER.contact}, {LEDGER.points} FROM ({sql}) r{len(selects)}")
            params += rule_params
    # Lines that rescoring keeps: decay, manual, and whatever has no event.
    selects.append(
        f"SELECT {LEDGER.contact}, {LEDGER.points} FROM {LEDGER.table} WHERE {LEDGER.event} IS NULL"
    )
    union = " UNION ALL ".join(selects)
    sql = (
        f"SELECT c.{CONTACTS.id}, c.{CONTACTS.stage}, c.{CONTACTS.score}, "
        f"COALESCE(t.total, 0) FROM {CONTACTS.table} c "
        f"LEFT JOIN (SELECT {LEDGER.contact}, SUM({LEDGER.points}) AS total FROM ({union}) lines "
        f"GROUP BY {LEDGER.contact}) t ON t.{LEDGER.contact} = c.{CONTACTS.id} "
        f"WHERE c.{CONTACTS.score} <> COALESCE(t.total, 0)"
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
