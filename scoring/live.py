"""Live scoring: a batch of new events becomes ledger lines, scores and threshold moves.

The event pipeline hands each batch to ``events_score`` (through ``scoring.handlers``); other
apps give or take points with ``scores_adjust`` (a sequence step). Both lock their contacts
once, write the batch's ledger lines together, add the points and move the contacts through
the stages their score or events reach, looking at the thresholds after every event as a
rescore does (``engine.stages_walk``; the policy is in ``scoring.plan``), in one move each.

The ledger lines go in by COPY on PostgreSQL (``ledger_write``). Its ORM twin, ``bulk_create``,
was measured on 6 December 2026 on the scoring benchmark's stream, on a 2-core machine shared
with other runs: the write alone (400 lines, interleaved, rolled back) took 125 ms against
50 ms by COPY (18 ms against 3 ms of Python), 2.5 times slower; the whole benchmark, with it,
kept 0.32 and 0.26 of the raw insert where the base kept 0.44 and 0.35 in the same sittings
(26 % less; the foreign keys the database checks again are in those figures, and cost 21 to
29 ms of the write). The machine flag is an ORM update with one vendor expression.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Func, JSONField, Value
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import JSONObject
from django.utils import timezone

from contacts.machine_signals import flag_machine_signal
from contacts.models import Contact, Event, EventRow, StageChange
from contacts.pipeline import BatchContact
from contacts.stages import PlannedMove, stage_move_many, stage_moves_apply
from scoring import engine
from scoring.models import ScoreEntry, ScoreRule, Threshold
from scoring.rule_sql import matching_events

NOTHING_EARNED = engine.Earned()
# The ledger columns COPY writes, in the order of ledger_write's rows.
LEDGER_FIELDS = ("contact", "points", "rule", "event", "reason", "filtered", "at", "created_at")


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
    """What scoring a batch changed: points given per contact (for the pipeline to add to
    their scores) and the ids of the ``stage_changed`` events its threshold moves recorded
    (not sent)."""

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
    handful of queries per batch, not per event: caps are read once, the stored events count
    conditions need once (only when a rule has one), lines inserted in one statement; the
    scores are written by the pipeline, with the contacts' last activity.
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
        pk: Locked(held[pk].stage, held[pk].score, held[pk].fit_grade)
        for pk in facts_by_contact
        if pk in held
    }
    by_type = engine.rules_by_type(rules)
    new_facts = [f for fs in facts_by_contact.values() for f in fs]
    counting = [rule for rule in rules if rule.count_at_least]
    prior = _prior_events(counting, new_facts) if counting else {}
    earned = _earned(contacts.keys(), by_type, new_facts, prior)
    tz = site_timezone()
    now = timezone.now()
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
            prior=prior.get(contact_id, ()),
            as_of=now,
        )
        lines.extend(contact_lines)
    ledger_write(lines)
    walks = _batch_steps(contacts, facts_by_contact, lines, thresholds)
    # The pipeline adds these points to the scores in its one write of the batch's contacts.
    points = _points_tally(contacts, lines)
    planned = _walks_planned(walks, thresholds)
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
    contacts = contacts_lock({a.contact_id for a in wanted})
    lines = [
        engine.Line(contact_id=a.contact_id, points=a.points, rule_id=None, event_id=None,
                    reason=a.reason[:300], at=at)
        for a in wanted
        if a.contact_id in contacts
    ]  # fmt: skip
    ledger_write(lines)
    scores_write(contacts, lines)
    thresholds_apply(
        candidates=[(pk, row.stage, row.score, [], row.fit_grade) for pk, row in contacts.items()]
    )
    return len(lines)


@dataclass
class Locked:
    stage: str
    score: int
    fit_grade: str = ""


def contacts_lock(contact_ids: Iterable[int]) -> dict[int, Locked]:
    """Lock these contacts in id order (FOR NO KEY UPDATE: event inserts for them don't wait)
    and read their stage, score and fit grade, as plain rows: only the few contacts that
    change stage become model instances."""
    return {
        pk: Locked(stage, score, grade)
        for pk, stage, score, grade in Contact.objects.select_for_update(no_key=True)
        .filter(pk__any=set(contact_ids))
        .order_by("pk")
        .values_list("pk", "stage", "score", "fit_grade")
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
            # One statement per value: merging a key into the JSON in place, rather than
            # sending each row's whole properties back.
            Event.objects.filter(pk__any=set(ids)).update(properties=_with_machine_flag(machine))


def _with_machine_flag(machine: bool) -> Func | CombinedExpression:
    """``properties`` with its "machine" key set: the one place PostgreSQL (jsonb ``||``) and
    SQLite (``json_set``) need different SQL."""
    if connection.vendor == "postgresql":
        merged = JSONObject(machine=Value(machine))
        return CombinedExpression(F("properties"), "||", merged, output_field=JSONField())
    flag = Func(Value("true" if machine else "false"), function="json")
    return Func(F("properties"), Value("$.machine"), flag, function="json_set",
                output_field=JSONField())  # fmt: skip


def _prior_events(
    counting: Sequence[engine.Rule], facts: Sequence[engine.EventFact]
) -> dict[int, list[engine.EventFact]]:
    """The stored events count conditions need, in one query for the batch: for each count
    rule a new event matches, the events meeting its conditions (the rescore's SQL) of the
    contacts concerned, from its count window before the batch's first such event to the
    window after its last one (a new event may complete the count of a later event that
    arrived first)."""
    wanted = []
    for rule in counting:
        hits = [fact for fact in facts if rule.matches(fact)]
        if hits:
            span = engine.count_window(rule)
            wanted.append(
                matching_events(rule)
                .filter(
                    contact_id__any={fact.contact_id for fact in hits},
                    occurred_at__gte=min(fact.occurred_at for fact in hits) - span,
                    occurred_at__lte=max(fact.occurred_at for fact in hits) + span,
                )
                .values_list(*PRIOR_FIELDS)
            )
    if not wanted:
        return {}
    rows = wanted[0].union(*wanted[1:], all=True) if len(wanted) > 1 else wanted[0]
    prior: dict[int, dict[int, engine.EventFact]] = defaultdict(dict)
    for pk, contact_id, kind, occurred_at, properties, key in rows:
        prior[contact_id][pk] = engine.EventFact(
            id=pk, contact_id=contact_id, type=kind, occurred_at=occurred_at,
            properties=properties if isinstance(properties, dict) else {}, key=key or "",
        )  # fmt: skip
    return {contact_id: list(events.values()) for contact_id, events in prior.items()}


PRIOR_FIELDS = ("id", "contact_id", "type", "occurred_at", "properties", "idempotency_key")


def _earned(
    contact_ids: Iterable[int],
    rules: engine.RulesByType,
    facts: Sequence[engine.EventFact],
    prior: Mapping[int, Sequence[engine.EventFact]],
) -> dict[int, engine.Earned]:
    """What each contact already earned, as far as caps and double-scoring need to know."""
    contact_ids = list(contact_ids)
    times: dict[int, dict[int, int]] = defaultdict(dict)
    period_points: dict[int, dict[tuple[int, object], int]] = defaultdict(dict)
    scored: dict[int, set[tuple[int, str]]] = defaultdict(set)

    # Only caps a new event can hit are read: the (contact, rule) pairs this batch matches, and
    # those of count rules on the stored events a new one may complete the count of.
    hits = [
        (fact, rule) for fact in facts for rule in rules.get(fact.type, ()) if rule.matches(fact)
    ]
    stored = [fact for contact_facts in prior.values() for fact in contact_facts]
    hits += [
        (fact, rule)
        for fact in stored
        for rule in rules.get(fact.type, ())
        if rule.count_at_least and rule.matches(fact)
    ]
    counted = {rule.id for _, rule in hits if rule.max_times}
    if counted:
        rows = (
            ScoreEntry.objects.filter(
                contact_id__any={f.contact_id for f, rule in hits if rule.id in counted},
                rule_id__in=counted,
            )
            .exclude(filtered=True)  # a line faded to 0 still counts (recency)
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

    identity = {f.id: f.identity for f in (*facts, *stored)}
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


def ledger_write(lines: Sequence[engine.Line]) -> None:
    """The batch's ledger lines in one go: COPY on PostgreSQL, ``bulk_create`` elsewhere (the
    one place the two differ; the figures that keep COPY are in this module's docstring)."""
    if not lines:
        return
    now = timezone.now()
    if connection.vendor != "postgresql":
        ScoreEntry.objects.bulk_create(
            ScoreEntry(contact_id=line.contact_id, points=line.points, rule_id=line.rule_id,
                       event_id=line.event_id, reason=line.reason, filtered=line.filtered,
                       at=line.at, created_at=now)
            for line in lines
        )  # fmt: skip
        return
    columns = ", ".join(ScoreEntry._meta.get_field(name).column for name in LEDGER_FIELDS)
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {ScoreEntry._meta.db_table} ({columns}) FROM STDIN") as copy,
    ):
        for line in lines:
            copy.write_row((line.contact_id, line.points, line.rule_id, line.event_id,
                            line.reason, line.filtered, line.at, now))  # fmt: skip


def _points_tally(contacts: dict[int, Locked], lines: Iterable[engine.Line]) -> dict[int, int]:
    """The lines' points per contact, added to the (locked) contacts' scores as read here."""
    deltas: dict[int, int] = defaultdict(int)
    for line in lines:
        deltas[line.contact_id] += line.points
    changed = {contact_id: delta for contact_id, delta in deltas.items() if delta}
    for contact_id, delta in changed.items():
        contacts[contact_id].score += delta
    return changed


def scores_write(contacts: dict[int, Locked], lines: Iterable[engine.Line]) -> dict[int, int]:
    """``_points_tally``, written to the scores: one UPDATE per distinct number of points (a
    sequence's adjustments come from a few steps)."""
    changed = _points_tally(contacts, lines)
    by_delta: dict[int, set[int]] = defaultdict(set)
    for contact_id, delta in changed.items():
        by_delta[delta].add(contact_id)
    for delta, ids in sorted(by_delta.items()):
        Contact.objects.filter(pk__any=ids).update(score=F("score") + delta)
    return changed


def thresholds_apply(
    *,
    candidates: Iterable[tuple[int, str, int, Sequence[engine.EventFact], str]],
    thresholds: Sequence[engine.Threshold] | None = None,
) -> list[StageChange]:
    """Move every (contact id, stage, score, new events, fit grade) through the stages its
    score or events reach (or back to lead), one recorded StageChange per stage crossed."""
    if thresholds is None:
        thresholds = active_thresholds()
    planned = _thresholds_planned(candidates=candidates, thresholds=thresholds)
    if not planned:
        return []
    return stage_move_many(moves=planned, cause=StageChange.Cause.THRESHOLD)


def _thresholds_planned(
    *,
    candidates: Iterable[tuple[int, str, int, Sequence[engine.EventFact], str]],
    thresholds: Sequence[engine.Threshold],
) -> list[PlannedMove]:
    """Each (contact id, stage, score now, new events, fit grade) as one step of its
    history."""
    now = timezone.now()
    walks = [
        (contact_id, stage, score, [engine.Step(now, 0, tuple(facts))], grade)
        for contact_id, stage, score, facts, grade in candidates
    ]
    return _walks_planned(walks, thresholds)


def _batch_steps(
    contacts: Mapping[int, Locked],
    facts_by_contact: Mapping[int, Sequence[engine.EventFact]],
    lines: Sequence[engine.Line],
    thresholds: Sequence[engine.Threshold],
) -> list[tuple[int, str, int, list[engine.Step], str]]:
    """Each contact's new events as the steps a rescore will see in its history: one per
    event that has a ledger line of some points or that a threshold may qualify on, in time
    order, from the contact's stage and score before the batch (a line of no points, such as
    a faded or filtered one, changes nothing a threshold looks at: ``scoring.plan``).
    Thresholds are looked at after every event, as a rescore does, not once for the batch."""
    points: dict[int, int] = defaultdict(int)
    lined: set[int] = set()
    for line in lines:
        points[line.event_id] += line.points
        if line.points:
            lined.add(line.event_id)
    walks = []
    for contact_id, row in contacts.items():
        facts = sorted(facts_by_contact[contact_id], key=lambda f: (f.occurred_at, f.id))
        steps = [
            engine.Step(fact.occurred_at, points.get(fact.id, 0), (fact,))
            for fact in facts
            if fact.id in lined or any(t.qualifies(fact) for t in thresholds)
        ]
        if steps:
            walks.append((contact_id, row.stage, row.score, steps, row.fit_grade))
    return walks


def _walks_planned(
    walks: Iterable[tuple[int, str, int, Sequence[engine.Step], str]],
    thresholds: Sequence[engine.Threshold],
) -> list[PlannedMove]:
    """One move per contact whose steps lead to another stage: from where it is to where
    they lead (``engine.stages_walk``)."""
    planned = []
    for contact_id, stage, score, steps, grade in walks:
        walk = engine.stages_walk(stage, score, steps, thresholds, grade)
        if walk.stage != stage and walk.threshold is not None:
            planned.append(
                PlannedMove(
                    contact_id=contact_id,
                    from_stage=stage,
                    to=walk.stage,
                    reason=walk.reason,
                    actor_name=walk.threshold.actor_name,
                )
            )
    return planned
