"""Scoring write use cases: live scoring of new events, daily decay, threshold moves."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef
from django.utils import timezone

from contacts import broker
from contacts.lookups import array_param
from contacts.machine_signals import flag_machine_signal
from contacts.models import Contact, Event, EventRow, StageChange
from contacts.pipeline import BatchContact
from contacts.stages import PlannedMove, stage_move_many, stage_moves_apply
from scoring import engine, rescore
from scoring.models import DecayRule, Rescore, ScoreEntry, ScoreRule, Threshold

BATCH_SIZE = 1000
NOTHING_EARNED = engine.Earned()
logger = logging.getLogger(__name__)


def site_timezone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def active_rules() -> list[engine.Rule]:
    return [r.to_engine() for r in ScoreRule.objects.filter(active=True)]


def active_thresholds() -> list[engine.Threshold]:
    return [t.to_engine() for t in Threshold.objects.filter(active=True)]


def event_fact(event: Event | EventRow) -> engine.EventFact:
    properties = event.properties if isinstance(event.properties, dict) else {}
    return engine.EventFact(
        id=event.pk,
        contact_id=event.contact_id,
        type=event.type,
        occurred_at=event.occurred_at,
        properties=properties,
        key=event.idempotency_key or "",
    )


class Scored(NamedTuple):
    """What scoring a batch changed: points given per contact (written to their scores) and
    the ids of the ``stage_changed`` events its threshold moves recorded (not sent)."""

    points: dict[int, int]
    event_ids: list[int]


@transaction.atomic
def events_score(
    *,
    events: Sequence[EventRow],
    contacts: Mapping[int, BatchContact],
    rules: Sequence[engine.Rule],
    thresholds: Sequence[engine.Threshold],
) -> Scored:
    """Score a batch of new events: ledger lines and score in one transaction, then thresholds.

    ``contacts`` are the batch's contacts, locked by the pipeline (stage and score as now). A
    handful of queries per batch, not per event: caps are read once, lines inserted in one
    statement, scores written in one UPDATE per distinct number of points.
    """
    _flag_machine_signals(events)
    # Only events some rule or threshold looks at: a stage_changed event, usually, none does.
    types = {rule.event_type for rule in rules}
    types.update(kind for threshold in thresholds for kind in threshold.event_types)
    tags = {threshold.content_tag for threshold in thresholds if threshold.content_tag}
    facts_by_contact: dict[int, list[engine.EventFact]] = defaultdict(list)
    for event in events:
        properties = event.properties if isinstance(event.properties, dict) else {}
        tag = properties.get("content_tag")
        if event.type in types or (isinstance(tag, str) and tag in tags):
            facts_by_contact[event.contact_id].append(event_fact(event))
    if not facts_by_contact:
        return Scored({}, [])
    held = contacts
    contacts = {
        pk: _Locked(held[pk].stage, held[pk].score) for pk in facts_by_contact if pk in held
    }
    by_type = engine.rules_by_type(rules)
    earned = _earned(contacts.keys(), by_type, [f for fs in facts_by_contact.values() for f in fs])
    tz = site_timezone()
    lines: list[engine.Line] = []
    for contact_id, facts in facts_by_contact.items():
        if contact_id not in contacts:  # deleted meanwhile
            continue
        contact_lines, _ = engine.score_events(
            by_type,
            facts,
            earned.get(contact_id, NOTHING_EARNED),
            tz=tz,
            count_machine_signals=settings.SCORE_MACHINE_SIGNALS,
        )
        lines.extend(contact_lines)
    _insert_lines(lines)
    points = _add_points(contacts, lines)
    planned = _thresholds_planned(
        candidates=[
            (contact_id, row.stage, row.score, facts_by_contact[contact_id])
            for contact_id, row in contacts.items()
        ],
        thresholds=thresholds,
    )
    if not planned:
        return Scored(points, [])
    moved = stage_moves_apply(moves=planned, cause=StageChange.Cause.THRESHOLD)
    return Scored(points, moved.event_ids)


@dataclass(frozen=True)
class Adjustment:
    contact_id: int
    points: int
    reason: str


@transaction.atomic
def scores_adjust(*, adjustments: Sequence[Adjustment], at: datetime | None = None) -> int:
    """Points given or taken by something other than a rule (a sequence step): ledger lines
    without rule or event, which a rescore keeps, then thresholds. Returns lines written."""
    at = at or timezone.now()
    wanted = [a for a in adjustments if a.points]
    if not wanted:
        return 0
    contacts = _lock({a.contact_id for a in wanted})
    lines = [
        engine.Line(contact_id=a.contact_id, points=a.points, rule_id=None, event_id=None,
                    reason=a.reason[:300], at=at)
        for a in wanted
        if a.contact_id in contacts
    ]  # fmt: skip
    _insert_lines(lines)
    _add_points(contacts, lines)
    thresholds_apply(candidates=[(pk, row.stage, row.score, []) for pk, row in contacts.items()])
    return len(lines)


@dataclass
class _Locked:
    stage: str
    score: int


def _lock(contact_ids: Iterable[int]) -> dict[int, _Locked]:
    """Lock these contacts in id order (FOR NO KEY UPDATE: event inserts for them don't wait)
    and read their stage and score, as plain rows: only the few contacts that change stage
    become model instances."""
    return {
        pk: _Locked(stage, score)
        for pk, stage, score in Contact.objects.select_for_update(no_key=True)
        .filter(pk__any=set(contact_ids))
        .order_by("pk")
        .values_list("pk", "stage", "score")
    }


def _flag_machine_signals(events: Sequence[EventRow]) -> None:
    """Opens and clicks stored without their machine flag (recorded before it was decided at
    intake): decide it once and store it, so live scoring and rescoring agree."""
    flagged: dict[bool, list[int]] = {True: [], False: []}
    for event in events:
        properties = flag_machine_signal(event.type, event.properties)
        if properties is not event.properties:
            event.properties = properties
            flagged[properties["machine"]].append(event.pk)
    for machine, ids in flagged.items():
        if ids:
            _set_machine_flag(ids, machine)


def _set_machine_flag(event_ids: list[int], machine: bool) -> None:
    # One statement per value: merging a key into JSON in place beats rewriting each row.
    params: list[object]
    if connection.vendor == "postgresql":
        sql = (
            "UPDATE contacts_event SET properties = properties || "
            "jsonb_build_object('machine', %s) WHERE id = ANY(%s::bigint[])"
        )
        params = [machine, array_param(event_ids)]
    else:
        placeholders = ", ".join(["%s"] * len(event_ids))
        merge = "json_set(properties, '$.machine', json(%s))"
        sql = f"UPDATE contacts_event SET properties = {merge} WHERE id IN ({placeholders})"  # noqa: S608
        params = ["true" if machine else "false", *event_ids]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _earned(
    contact_ids: Iterable[int], rules: engine.RulesByType, facts: Sequence[engine.EventFact]
) -> dict[int, engine.Earned]:
    """What each contact already earned, as far as caps and double-scoring need to know."""
    contact_ids = list(contact_ids)
    times: dict[int, dict[int, int]] = defaultdict(dict)
    period_points: dict[int, dict[tuple[int, object], int]] = defaultdict(dict)
    scored: dict[int, set[tuple[int, str]]] = defaultdict(set)

    # Only caps a new event can hit are read: the (contact, rule) pairs this batch matches.
    hits = [
        (fact, rule) for fact in facts for rule in rules.get(fact.type, ()) if rule.matches(fact)
    ]
    counted = {rule.id for _, rule in hits if rule.max_times}
    if counted:
        rows = (
            ScoreEntry.objects.filter(
                contact_id__any={f.contact_id for f, rule in hits if rule.id in counted},
                rule_id__in=counted,
            )
            .exclude(points=0)
            .values_list("contact_id", "rule_id")
            .annotate(n=Count("id"))
        )
        for contact_id, rule_id, n in rows:
            times[contact_id][rule_id] = n

    periodic = {rule.id: rule for _, rule in hits if rule.cap_period}
    if periodic:
        capped = [fact for fact, rule in hits if rule.id in periodic]
        since = min(f.occurred_at for f in capped) - timedelta(days=32)
        tz = site_timezone()
        rows = ScoreEntry.objects.filter(
            contact_id__any={f.contact_id for f in capped},
            rule_id__in=periodic,
            at__gte=since,
            at__lte=max(f.occurred_at for f in capped) + timedelta(days=32),
        ).values_list("contact_id", "rule_id", "at", "points")
        for contact_id, rule_id, at, points in rows:
            key = (rule_id, engine.period_start(at, periodic[rule_id].cap_period, tz))
            period_points[contact_id][key] = period_points[contact_id].get(key, 0) + points

    identity = {f.id: f.identity for f in facts}
    rows = ScoreEntry.objects.filter(event_id__any=identity.keys(), rule__isnull=False).values_list(
        "contact_id", "rule_id", "event_id"
    )
    for contact_id, rule_id, event_id in rows:
        scored[contact_id].add((rule_id, identity[event_id]))

    # Only contacts with something earned: the others start from an empty Earned().
    return {
        contact_id: engine.Earned(
            times=times.get(contact_id, {}),
            period_points=period_points.get(contact_id, {}),
            scored=frozenset(scored.get(contact_id, ())),
        )
        for contact_id in contact_ids
        if contact_id in times or contact_id in period_points or contact_id in scored
    }


def _insert_lines(lines: Sequence[engine.Line]) -> None:
    """The batch's ledger lines in one go: COPY on PostgreSQL, one executemany elsewhere."""
    if not lines:
        return
    now = timezone.now()
    rows = [
        (line.contact_id, line.points, line.rule_id, line.event_id, line.reason, line.filtered,
         line.at, now)
        for line in lines
    ]  # fmt: skip
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(
                f"COPY scoring_scoreentry ({rescore.COLUMNS}) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(
                f"INSERT INTO scoring_scoreentry ({rescore.COLUMNS}) "  # noqa: S608
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )


def _add_points(contacts: dict[int, _Locked], lines: Iterable[engine.Line]) -> dict[int, int]:
    """Add the lines' points to the (locked) contacts' scores; returns the points per contact.
    One UPDATE per distinct number of points: a batch's lines come from a few rules. (The ORM:
    an ``unnest`` UPDATE was 2.0× faster for 1,000 contacts, 166 against 327 ms on a loaded
    machine, a few ms of a batch; see the scoring benchmark.)"""
    deltas: dict[int, int] = defaultdict(int)
    for line in lines:
        deltas[line.contact_id] += line.points
    changed = {contact_id: delta for contact_id, delta in deltas.items() if delta}
    by_delta: dict[int, set[int]] = defaultdict(set)
    for contact_id, delta in changed.items():
        contacts[contact_id].score += delta
        by_delta[delta].add(contact_id)
    for delta, ids in sorted(by_delta.items()):
        Contact.objects.filter(pk__any=ids).update(score=F("score") + delta)
    return changed


def thresholds_apply(
    *,
    candidates: Iterable[tuple[int, str, int, Sequence[engine.EventFact]]],
    thresholds: Sequence[engine.Threshold] | None = None,
) -> list[StageChange]:
    """Move every (contact id, stage, score, new events) through the stages its score or
    events reach (or back to lead), one recorded StageChange per stage crossed."""
    if thresholds is None:
        thresholds = active_thresholds()
    planned = _thresholds_planned(candidates=candidates, thresholds=thresholds)
    if not planned:
        return []
    return stage_move_many(moves=planned, cause=StageChange.Cause.THRESHOLD)


def _thresholds_planned(
    *,
    candidates: Iterable[tuple[int, str, int, Sequence[engine.EventFact]]],
    thresholds: Sequence[engine.Threshold],
) -> list[PlannedMove]:
    planned = []
    for contact_id, stage, score, facts in candidates:
        here = stage
        for move in engine.stage_moves(stage, score, facts, thresholds):
            planned.append(
                PlannedMove(
                    contact_id=contact_id,
                    from_stage=here,
                    to=move.to,
                    reason=move.reason,
                    actor_name=move.threshold.actor_name,
                )
            )
            here = move.to
    return planned


def decay_apply(*, as_of: datetime | None = None) -> int:
    """Apply every active decay rule to contacts quiet for long enough. Returns entries made.

    A contact gets one entry per rule and quiet spell (keyed by its last activity), so running
    this twice on a day, or every day of a long silence, takes the points once.
    """
    as_of = as_of or timezone.now()
    made = 0
    for rule in DecayRule.objects.filter(active=True):
        already = ScoreEntry.objects.filter(
            contact=OuterRef("pk"), decay_rule=rule, inactive_since=OuterRef("last_activity_at")
        )
        due = (
            Contact.objects.filter(
                last_activity_at__lte=as_of - timedelta(days=rule.inactive_days), score__gt=0
            )
            .exclude(Exists(already))
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        ids = list(due)
        for start in range(0, len(ids), BATCH_SIZE):
            made += _decay_batch(rule, ids[start : start + BATCH_SIZE], as_of)
    return made


@transaction.atomic
def _decay_batch(rule: DecayRule, contact_ids: list[int], as_of: datetime) -> int:
    decay = rule.to_engine()
    thresholds = active_thresholds()
    contacts = (
        Contact.objects.select_for_update(no_key=True).filter(pk__in=contact_ids).order_by("pk")
    )
    entries, changed = [], []
    for contact in contacts:
        points = engine.decay_points(
            decay, score=contact.score, last_activity=contact.last_activity_at, as_of=as_of
        )
        if not points:
            continue
        entries.append(
            ScoreEntry(
                contact=contact,
                points=points,
                decay_rule=rule,
                reason=rule.name,
                inactive_since=contact.last_activity_at,
                at=as_of,
            )
        )
        contact.score += points
        changed.append(contact)
    ScoreEntry.objects.bulk_create(entries, ignore_conflicts=True)
    Contact.objects.bulk_update(changed, ["score"])
    thresholds_apply(
        candidates=[(c.pk, c.stage, c.score, ()) for c in changed], thresholds=thresholds
    )
    return len(entries)


# --- Rescoring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    contacts_changed: int
    gained: int
    lost: int
    stage_changes: int
    moves: list[tuple[str, str, int]]  # from, to, how many
    sample: list[tuple[Contact, int, int, str]]  # contact, old score, new score, new stage


def rules_with(rule: engine.Rule, *, removed: bool = False) -> list[engine.Rule]:
    """The active rules as they would be with ``rule`` saved (or deleted)."""
    others = [r for r in active_rules() if r.id != rule.id]
    return others if removed or not rule.active else [*others, rule]


def rescore_preview(*, rules: Sequence[engine.Rule], sample_size: int = 8) -> Preview:
    """What a rescore with these rules would do, computed over the stored events; writes nothing."""
    changes = rescore.new_scores(rules, now=timezone.now())
    thresholds = active_thresholds()
    moves: Counter[tuple[str, str]] = Counter()
    movers = []
    for change in changes:
        steps = engine.stage_moves(change.stage, change.new, [], thresholds)
        if steps:
            moves[(change.stage, steps[-1].to)] += 1
            movers.append((change, steps[-1].to))
    shown = movers[:sample_size] or [(c, c.stage) for c in changes[:sample_size]]
    people = Contact.objects.in_bulk([change.contact_id for change, _ in shown])
    return Preview(
        contacts_changed=len(changes),
        gained=sum(1 for c in changes if c.new > c.old),
        lost=sum(1 for c in changes if c.new < c.old),
        stage_changes=len(movers),
        moves=[(a, b, n) for (a, b), n in sorted(moves.items())],
        sample=[
            (people[change.contact_id], change.old, change.new, stage)
            for change, stage in shown
            if change.contact_id in people
        ],
    )


@transaction.atomic
def rescore_start(*, reason: str, requested_by: object = None) -> Rescore:
    """Queue a full rescore; it runs in the worker after this transaction commits."""
    from scoring.tasks import rescore_task

    run = Rescore.objects.create(reason=reason[:300], requested_by=requested_by)
    transaction.on_commit(lambda: broker.send(rescore_task, run.pk), robust=True)
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
            run.lines += rescore.rebuild_rule_lines(rule, now=now)
        _step(run, "lines")
    run.contacts_changed = rescore.update_scores()
    _step(run, "contacts_changed")
    run.stage_moves = stages_apply() if move_stages else 0
    _step(run, "stage_moves")


def _step(run: Rescore, *fields: str) -> None:
    run.steps_done += 1
    run.save(update_fields=["steps_done", *fields])


def stages_apply() -> int:
    """Move every marketing-stage contact whose score now crosses a threshold. Returns moves."""
    thresholds = active_thresholds()
    due = rescore.stage_candidates(thresholds)
    moved = 0
    for start in range(0, len(due), BATCH_SIZE):
        chunk = due[start : start + BATCH_SIZE]
        with transaction.atomic():
            # Lock, then re-read: a live event may have moved some of them meanwhile.
            current = [
                (pk, row.stage, row.score, ()) for pk, row in _lock(pk for pk, *_ in chunk).items()
            ]
            moved += len(thresholds_apply(candidates=current, thresholds=thresholds))
    return moved


def rescore_sweep() -> int:
    """Run rescores whose task never reached a worker (broker down). Returns how many ran."""
    stale = Rescore.objects.filter(
        status=Rescore.Status.QUEUED, created_at__lte=timezone.now() - timedelta(minutes=1)
    ).values_list("pk", flat=True)
    return sum(1 for pk in list(stale) if rescore_run(rescore_id=pk))
