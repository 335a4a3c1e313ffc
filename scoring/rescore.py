"""Rescoring everyone from the events table after a rule change: queued, run by a worker, one
transaction per rule, progress shown in the admin; swept if its task never reached a worker.

The work is set-based SQL, one pass over each rule's events. Caps become window functions: the
n-th matching event of a contact (in its day/week/month for a points cap) is numbered by
ROW_NUMBER(), so "at most N times" and "at most N points per period" are arithmetic on that
number. A count condition is a window too (COUNT over the D days up to each event, a RANGE
over whole microseconds), taken before the caps number what it lets through; a fading rule's
points are worth what they are on the rescore's day (``rule_sql.faded_sql``). The same rules,
fed event by event to ``scoring.engine``, give the same ledger; tests hold the two together
(``tests/test_rescore.py``, ``tests/test_rule_conditions_rescore.py``,
``tests/test_rule_recency.py``).

What is raw SQL here, and why (measured 6 December 2026 on the rescore benchmark's data,
100,000 contacts x 1,000,000 events, the Download rule changed, both versions in one run, on a
2-core machine shared with other runs, so seconds are inflated and only the ratios count):
- ``rebuild_rule_lines``: the wanted lines (``lines_sql``, an ORM window query wrapped in the
  points arithmetic) are diffed with the present ones in a temporary table and applied with
  INSERT ... SELECT. The ORM twin (rows to Python, diff, ``delete()``, ``bulk_create``) took
  144 s and 85 s where this took 24 s and 21 s: 4 to 6 times slower.
- ``rules_lines`` (the admin's preview, through ``scoring.plan``) unites the same ``lines_sql``
  of every rule in one query: its ORM twin would be the same rows-to-Python pass.
- The score update went back to the ORM (a correlated sum): 13.7 s and 18.7 s against 12.9 s and
  15.8 s for the hashed raw UPDATE, within the 15 % allowed on the whole rescore. Without that
  hash, ``SET LOCAL work_mem``/``jit`` no longer paid either (rule lines 31.5 s and 31.9 s with
  them, 24.6 s and 29.4 s without): the rescore runs on the server's settings.
Table and column names come from the models (``LEDGER``, ``CONTACTS``, ``EVENTS`` below).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, models, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import (
    Case,
    Count,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
    Window,
)
from django.db.models.functions import Coalesce, RowNumber, Trunc
from django.utils import timezone

from contacts import broker
from contacts.models import Contact, Event
from scoring import engine
from scoring.live import (
    LEDGER_FIELDS,
    active_rules,
    active_thresholds,
)
from scoring.models import Rescore, ScoreEntry
from scoring.plan import plan_apply, plan_build, stored_lines
from scoring.rule_sql import CountWindow, DayNumber, EpochMicros, faded_sql, matching_events

BATCH_SIZE = 1000
# Sent by name, looked up when sent: scoring.tasks imports this module, not the other way.
RESCORE_TASK = "scoring.tasks.rescore_task"
MACHINE_REASON = "{name} (not scored: machine signal)"
logger = logging.getLogger(__name__)


@transaction.atomic
def rescore_start(*, reason: str, requested_by: object = None) -> Rescore:
    """Queue a full rescore; it runs in the worker after this transaction commits."""
    run = Rescore.objects.create(reason=reason[:300], requested_by=requested_by)
    transaction.on_commit(lambda: broker.send(RESCORE_TASK, run.pk), robust=True)
    return run


def rescore_run(*, rescore_id: int, move_stages: bool = True) -> Rescore | None:
    """Rebuild every rule line of the ledger from the events, then scores, then stages.

    Each rule is rebuilt in its own transaction so progress can be shown; scores move to the
    new ledger in one statement at the end. Safe to run twice: a finished run is not redone.
    """
    run = Rescore.claim(rescore_id)
    if run is None:
        return None
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
    """Give every contact the stage its history leads to under the thresholds now (the plan
    the preview showed, ``scoring.plan``), from the ledger just rebuilt. Returns moves."""
    return plan_apply(plan_build(stored_lines(), active_thresholds()))


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
COLUMNS = ", ".join(getattr(LEDGER, name) for name in LEDGER_FIELDS)


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
    fields = ["id", "contact_id", "occurred_at", "machine"]
    if rule.fades:
        matched = matched.annotate(fade_day=DayNumber("occurred_at", _tz()))
        fields.append("fade_day")
    if rule.counts:
        inner, inner_params = _counted_sql(rule, matched, partition, fields)
    else:
        if rule.cap_period and rule.max_points:
            partition.append(Trunc("occurred_at", rule.cap_period, tzinfo=_tz()))
        numbered = matched.annotate(
            rn=Window(RowNumber(), partition_by=partition, order_by=[F("occurred_at"), F("id")])
        ).values(*fields, "rn")
        inner, inner_params = numbered.query.sql_with_params()
    points, points_params = _points_sql(rule)
    # A line exists for the points earned; a fading rule's line says what they are worth now.
    worth, worth_params = points, points_params
    if rule.fades:
        as_of_day = engine.day_number(now, _tz())
        worth, worth_params = faded_sql(rule, (points, points_params), "fade_day", as_of_day)
    reason = MACHINE_REASON.format(name=rule.name)
    sql = (
        f"SELECT {EVENTS.contact} AS {LEDGER.contact}, "
        f"CASE WHEN machine THEN 0 ELSE {worth} END AS {LEDGER.points}, "
        f"%s AS {LEDGER.rule}, {EVENTS.id} AS {LEDGER.event}, "
        f"CASE WHEN machine THEN %s ELSE %s END AS {LEDGER.reason}, "
        f"machine AS {LEDGER.filtered}, {EVENTS.occurred_at} AS {LEDGER.at}, "
        f"%s AS {LEDGER.created_at} "
        f"FROM ({inner}) matched WHERE machine OR {points} <> 0"
    )
    params = [*worth_params, rule.id, reason, rule.reason, now, *inner_params, *points_params]
    return sql, params


def _counted_sql(
    rule: engine.Rule, matched: QuerySet[Event], partition: list, fields: list[str]
) -> tuple[str, list[object]]:
    """A count rule's events numbered for its caps: only those whose count of matching events
    (a window over the D days up to each, same-moment events included, machine signals apart
    unless they count) reaches N, and every machine signal for its filtered line."""
    counted = matched.annotate(
        counted=Window(
            Count("id"),
            partition_by=partition,
            order_by=EpochMicros("occurred_at").asc(),
            frame=CountWindow(rule),
        )
    )
    fields = [*fields, "counted"]
    if rule.cap_period and rule.max_points:
        counted = counted.annotate(period=Trunc("occurred_at", rule.cap_period, tzinfo=_tz()))
        fields.append("period")
    sql, params = counted.values(*fields).query.sql_with_params()
    by = ", ".join(
        [f"q.{EVENTS.contact}", "q.machine", *(["q.period"] if "period" in fields else [])]
    )
    order = f"q.{EVENTS.occurred_at}, q.{EVENTS.id}"
    return (
        f"SELECT q.*, ROW_NUMBER() OVER (PARTITION BY {by} ORDER BY {order}) AS rn "
        f"FROM ({sql}) q WHERE q.machine OR q.counted >= %s",
        [*params, rule.count_at_least],
    )


def update_scores() -> int:
    """Set every contact's score to its ledger's sum; returns how many changed.

    Live scoring locks its contacts in id order; an UPDATE locks them in the order its plan
    meets them. Locking the changed ones in id order first means the two wait for each other
    instead of deadlocking, and the UPDATE that follows (a new snapshot) sums every line a live
    batch committed meanwhile. Only scores that change are written: every write of a contact
    row goes through all of its indexes.
    """
    ledger_sum = Coalesce(
        Subquery(
            ScoreEntry.objects.filter(contact=OuterRef("pk"))
            .order_by()
            .values("contact")
            .annotate(total=Sum("points"))
            .values("total")
        ),
        Value(0),
    )
    with transaction.atomic():
        changed = list(
            Contact.objects.alias(total=ledger_sum)
            .exclude(score=F("total"))
            .order_by("pk")
            .select_for_update(no_key=True)
            .values_list("pk", flat=True)
        )
        size = connection.ops.bulk_batch_size(["pk"], changed) or 1
        return sum(
            Contact.objects.filter(pk__any=set(changed[start : start + size])).update(
                score=ledger_sum
            )
            for start in range(0, len(changed), size)
        )


def rebuild_rule_lines(rule: engine.Rule, *, now: datetime) -> int:
    """Make the rule's ledger lines what the events say they should be; returns lines written.

    Writing is what costs (indexes), so the difference between the wanted lines and the present
    ones goes to a temporary table first and only that is applied: a rule that did not change
    writes nothing.
    """
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS rescore_wanted")
        written = _unwanted_delete(cursor, rule, *lines_sql(rule, now=now))
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


def _unwanted_delete(cursor: CursorWrapper, rule: engine.Rule, select: str, params: list) -> int:
    """Fill ``rescore_wanted`` with the rule's wanted lines (``select``) and delete its present
    lines that are not wanted; returns how many went. The one place PostgreSQL and SQLite
    differ: SQLite has no full join, nor DELETE ... USING."""
    same_line = " AND ".join(
        f"{{a}}.{column} = {{b}}.{column}"
        for column in (LEDGER.event, LEDGER.points, LEDGER.filtered, LEDGER.reason)
    )
    rule_lines = f"{LEDGER.rule} = %s AND {LEDGER.event} IS NOT NULL"
    if connection.vendor != "postgresql":
        cursor.execute(f"CREATE TEMPORARY TABLE rescore_wanted AS {select}", params)
        cursor.execute(
            f"DELETE FROM {LEDGER.table} WHERE {rule_lines} AND NOT EXISTS ("
            f"SELECT 1 FROM rescore_wanted w WHERE {same_line.format(a='w', b=LEDGER.table)})",
            [rule.id],
        )
        return max(cursor.rowcount, 0)
    # Only the difference is kept: one full join of the wanted lines with the rule's present
    # ones. A rule that did not change leaves an empty table, instead of a copy of all its
    # lines then joined twice.
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
    return max(cursor.rowcount, 0)


def rules_lines(rules: Sequence[engine.Rule], *, now: datetime) -> tuple[str, list[object]]:
    """The ledger as these rules would make it, without writing anything, as
    ``scoring.plan.plan_build`` reads lines (l0 to l4: contact, at, event, points, line id):
    every active rule's ``lines_sql``, and the lines a rescore keeps (decay, manual, whatever
    has no event)."""
    selects, params = [], []
    for rule in rules:
        if rule.active:
            sql, rule_params = lines_sql(rule, now=now)
            selects.append(
                f"SELECT {LEDGER.contact} AS l0, {LEDGER.at} AS l1, {LEDGER.event} AS l2, "
                f"{LEDGER.points} AS l3, CAST(NULL AS bigint) AS l4 FROM ({sql}) r{len(selects)}"
            )
            params += rule_params
    selects.append(
        f"SELECT {LEDGER.contact} AS l0, {LEDGER.at} AS l1, CAST(NULL AS bigint) AS l2, "
        f"{LEDGER.points} AS l3, {LEDGER.id} AS l4 FROM {LEDGER.table} "
        f"WHERE {LEDGER.event} IS NULL"
    )
    return " UNION ALL ".join(selects), params


def _tz() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)
