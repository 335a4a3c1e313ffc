"""The scheduler: each tick advances every due enrolment through its steps, a batch at a time.

A batch's enrolments are locked (``SKIP LOCKED``: several ticks may run at once), each is run
through ``engine.decide`` until it waits, and everything the batch decided is written at the
end, in one transaction: the messages to the outbox, the enrolments' new state, split branches,
score adjustments, stage moves. Sending the outbox is ``nurturing.sending``'s job, kicked after
commit.

The batch's writes are the ORM's (``bulk_create``, and ``bulk_update_fast``, the shared
``UPDATE … FROM unnest`` helper). They replaced a ``COPY`` into a scratch table and a
hand-written ``unnest`` with JSON as text: measured on 10,000 due enrolments (6 December, a
loaded 2-core machine, two rounds), inserting and updating took 16.8 s and 13.0 s against
12.3 s and 10.8 s, 6 to 12 % of the whole advance (37 to 48 s there; 2.4 s on a quiet machine,
the target being 10 s): within the 15 % allowed.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from contacts import broker
from contacts.bulk import bulk_update_fast
from contacts.models import Contact, Event, StageChange
from contacts.reasons import coded
from contacts.stages import StageMoveError, stage_changes_send_on_commit, stage_move
from nurturing import engine
from nurturing.enrolment import segments_enroll
from nurturing.models import Enrollment, Message, Sequence, SplitBranch, Step
from nurturing.outbox import email_message, owner_message
from nurturing.sending import messages_reap
from scoring.live import Adjustment, scores_adjust

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
MAX_STEPS_PER_RUN = 50  # a loop of steps without a wait stops here and resumes next tick
TICK_BUDGET_SECONDS = 40.0
# Sent by name (the tasks module imports the services, never the other way round).
SEND_TASK = "nurturing.tasks.send_messages_task"


def site_timezone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def nurturing_tick() -> dict[str, int]:
    """What beat runs every few seconds: free dead workers' leases, take in segments' new
    contacts, advance due enrolments, and make sure a send task runs while messages are due."""
    reaped = messages_reap()
    segmented = segments_enroll()
    advanced = enrollments_advance(budget=TICK_BUDGET_SECONDS)
    due = Message.objects.sendable(timezone.now()).exists()
    if due:
        kick_send(0)
    return {"reaped": reaped, "segmented": segmented, "advanced": advanced, "send_due": int(due)}


def kick_send(count: int) -> None:
    """Queue send tasks for ``count`` new messages: a few, so that idle workers share a large
    batch; each loops until nothing is due. (The seam a test or benchmark replaces to send
    in its own time.)"""
    for _number in range(max(1, min(4, count // 500))):
        broker.send(SEND_TASK)


def enrollments_advance(
    *, as_of: datetime | None = None, batch_size: int = BATCH_SIZE, budget: float | None = None
) -> int:
    """The scheduler tick: advance every due active enrolment, a batch at a time. Returns how
    many were advanced. Safe to run in several processes at once (SKIP LOCKED)."""
    started = time.monotonic()
    total = 0
    while True:
        advanced = _advance_batch(as_of=as_of or timezone.now(), batch_size=batch_size)
        total += advanced
        if advanced < batch_size:
            return total
        if budget is not None and time.monotonic() - started > budget:
            return total


@dataclass
class _Outbox:
    """What a batch decided, written together at its end."""

    as_of: datetime
    sequences: dict[int, Sequence]
    steps: dict[int, Step]
    tz: ZoneInfo
    messages: list[Message] = field(default_factory=list)
    adjustments: list[Adjustment] = field(default_factory=list)
    moves: list[tuple[int, Step, Sequence]] = field(default_factory=list)
    branches: list[SplitBranch] = field(default_factory=list)


@dataclass
class _Run:
    """An enrolment being advanced (plain values, written back in one statement per batch)."""

    row: Enrollment
    contact: dict[str, Any] | None
    facts: engine.ContactFacts


@transaction.atomic
def _advance_batch(*, as_of: datetime, batch_size: int) -> int:
    # Locked rows stay locked until this batch commits: a killed worker's batch is rolled back
    # whole (its messages with it) and the next tick does it again.
    rows = list(
        Enrollment.objects.due(as_of)
        .select_for_update(skip_locked=True, of=("self",))
        .order_by("next_run_at", "pk")[:batch_size]
    )
    if not rows:
        return 0
    sequences = {s.pk: s for s in Sequence.objects.filter(pk__in={r.sequence_id for r in rows})}
    steps = {s.pk: s for s in Step.objects.filter(sequence_id__in=sequences)}
    specs = _specs(steps)
    contacts = _contacts({r.contact_id for r in rows if r.contact_id})
    needs_facts = {s.sequence_id for s in steps.values() if s.kind == Step.Kind.CONDITION}
    events = _events(rows, steps, needs_facts)
    emails = _emails([r for r in rows if r.sequence_id in needs_facts])
    cap = settings.NURTURING_DAILY_EMAIL_CAP
    recent = (
        _recent_sends([r.contact_id for r in rows if r.contact_id], as_of)
        if cap
        else defaultdict(list)
    )

    out = _Outbox(as_of=as_of, sequences=sequences, steps=steps, tz=site_timezone())
    for row in rows:
        contact = contacts.get(row.contact_id) if row.contact_id else None
        if contact is None:
            _finish(row, Enrollment.Status.EXITED, "contact deleted", as_of)
            continue
        facts = engine.ContactFacts(
            stage=contact["stage"],
            score=contact["score"],
            events=tuple(events.get(row.contact_id, ())),
            emails=tuple(emails.get(row.pk, ())),
            time_zone=_zone(contact["time_zone"]),
        )
        _run(out, _Run(row=row, contact=contact, facts=facts), specs, recent, cap)

    _insert_messages(out.messages)
    bulk_update_fast(rows, ENROLLMENT_FIELDS)
    if out.branches:
        SplitBranch.objects.bulk_create(out.branches, ignore_conflicts=True)
    if out.adjustments:
        scores_adjust(adjustments=out.adjustments, at=as_of)
    moved = [
        _move_stage(contact_id, step, sequence, as_of) for contact_id, step, sequence in out.moves
    ]
    stage_changes_send_on_commit([change for change in moved if change is not None])
    sendable = sum(1 for m in out.messages if m.status == Message.Status.QUEUED)
    if sendable:
        transaction.on_commit(lambda: kick_send(sendable), robust=True)
    return len(rows)


ENROLLMENT_FIELDS = (
    "step", "status", "next_run_at", "step_entered_at", "previous_step_at", "ended_at",
    "end_reason", "branch", "offer", "history",
)  # fmt: skip


def _insert_messages(messages: list[Message]) -> None:
    """Insert the batch's messages; one already written for its (enrolment, step), when a
    sequence loops back to an email step, is kept and the new one dropped."""
    Message.objects.bulk_create(messages, ignore_conflicts=True)


def _specs(steps: dict[int, Step]) -> dict[int, engine.StepSpec]:
    by_sequence: dict[int, list[Step]] = defaultdict(list)
    for step in steps.values():
        by_sequence[step.sequence_id].append(step)
    specs = {}
    for ordered in by_sequence.values():
        ordered.sort(key=lambda s: (s.position, s.pk))
        for index, step in enumerate(ordered):
            following = ordered[index + 1].pk if index + 1 < len(ordered) else None
            specs[step.pk] = engine.StepSpec(
                id=step.pk,
                kind=step.kind,
                next_id=following,
                delay=step.delay,
                weekdays=step.weekdays,
                start_hour=step.window_start_hour,
                end_hour=step.window_end_hour,
                contact_time_zone=step.window_time_zone == Step.WindowZone.CONTACT,
                condition=step.condition,
                event_type=step.condition_event_type,
                tag=step.condition_tag,
                score=step.condition_score,
                stage=step.condition_stage,
                yes_id=step.yes_step_id,
                no_id=step.no_step_id,
                split_percent=step.split_percent,
                points=step.points,
                offer_percent=step.offer_percent,
                offer_code=step.offer_code,
                offer_valid_hours=step.offer_valid_hours,
            )
    return specs


CONTACT_VALUES = (
    "pk", "email", "first_name", "last_name", "company", "job_title", "stage", "score",
    "do_not_email", "email_status", "consent", "owner__email", "owner__first_name", "time_zone",
)  # fmt: skip


def _contacts(ids: set[int]) -> dict[int, dict[str, Any]]:
    return {
        values["pk"]: values
        for values in Contact.objects.filter(pk__in=ids).order_by().values(*CONTACT_VALUES)
    }


def _events(
    rows: list[Enrollment], steps: dict[int, Step], sequence_ids: set[int]
) -> dict[int, list[engine.EventFact]]:
    """Events of the types conditions look at, since the enrolments began (one query)."""
    types = {
        s.condition_event_type
        for s in steps.values()
        if s.kind == Step.Kind.CONDITION and s.condition_event_type
    }
    wanted = [r for r in rows if r.sequence_id in sequence_ids and r.contact_id]
    if not types or not wanted:
        return {}
    since = min(r.entered_at for r in wanted)
    found: dict[int, list[engine.EventFact]] = defaultdict(list)
    for contact_id, kind, occurred_at, properties in Event.objects.filter(
        contact_id__in={r.contact_id for r in wanted}, type__in=types, occurred_at__gte=since
    ).values_list("contact_id", "type", "occurred_at", "properties"):
        tags = engine.event_tags(properties if isinstance(properties, dict) else {})
        found[contact_id].append(engine.EventFact(kind, occurred_at, tags))
    return found


def _emails(rows: list[Enrollment]) -> dict[int, list[engine.EmailFact]]:
    found: dict[int, list[engine.EmailFact]] = defaultdict(list)
    if not rows:
        return found
    for enrollment_id, step_id, created_at, opened_at, clicked_at in Message.objects.filter(
        enrollment_id__in=[r.pk for r in rows], internal=False
    ).values_list("enrollment_id", "step_id", "created_at", "opened_at", "clicked_at"):
        found[enrollment_id].append(
            engine.EmailFact(
                step_id or 0, created_at, opened_at is not None, clicked_at is not None
            )
        )
    return found


def _recent_sends(contact_ids: list[int], as_of: datetime) -> dict[int, list[datetime]]:
    recent: dict[int, list[datetime]] = defaultdict(list)
    for contact_id, created_at in Message.objects.counting_for_cap(
        contact_ids, as_of - timedelta(hours=24)
    ).values_list("contact_id", "created_at"):
        recent[contact_id].append(created_at)
    return recent


def _finish(row: Enrollment, status: str, reason: str, as_of: datetime) -> None:
    row.status, row.next_run_at, row.ended_at, row.end_reason = status, None, as_of, reason


def _log(row: Enrollment, step: Step | None, as_of: datetime, result: str) -> None:
    line = {"step": step.pk if step else None, "kind": step.kind if step else ""}
    row.history = [*row.history, {**line, "at": as_of.isoformat(), "result": result}]


def _run(
    out: _Outbox,
    run: _Run,
    specs: dict[int, engine.StepSpec],
    recent: dict[int, list[datetime]],
    cap: int,
) -> None:
    row, as_of = run.row, out.as_of
    facts = run.facts
    for _step_number in range(MAX_STEPS_PER_RUN):
        step = out.steps.get(row.step_id) if row.step_id else None
        spec = specs.get(row.step_id) if row.step_id else None
        state = engine.EnrollmentState(
            id=row.pk,
            entered_at=row.entered_at,
            step_entered_at=row.step_entered_at,
            previous_step_at=row.previous_step_at,
        )
        decision = engine.decide(spec, state, facts, as_of=as_of, tz=out.tz)
        if decision.action == engine.COMPLETE:
            _finish(row, Enrollment.Status.COMPLETED, "", as_of)
            return
        if decision.action == engine.WAIT:
            row.next_run_at = decision.run_at
            return
        assert step is not None
        result = decision.branch or decision.action
        if decision.action == engine.EXIT:
            _log(row, step, as_of, "exit")
            _finish(row, Enrollment.Status.EXITED, "exit step", as_of)
            return
        if decision.action == engine.EMAIL:
            contact = run.contact or {}
            free_at = engine.cap_free_at(recent.get(row.contact_id, []), cap=cap, as_of=as_of)
            if free_at is not None:
                # Over the daily cap: this step waits until a slot frees, it is not skipped.
                row.next_run_at = free_at
                return
            if "offer" in decision.details:
                row.offer = decision.details["offer"]
            message = email_message(
                row,
                step,
                contact,
                sequence=out.sequences[row.sequence_id],
                as_of=as_of,
                tz=out.tz,
            )
            out.messages.append(message)
            recent[row.contact_id].append(as_of)
            facts = replace(facts, emails=(*facts.emails, engine.EmailFact(step.pk, as_of)))
            result = message.status
        elif decision.action == engine.SCORE:
            out.adjustments.append(
                Adjustment(
                    contact_id=row.contact_id,
                    points=step.points or 0,
                    reason=coded(
                        "sequence_points",
                        sequence=out.sequences[row.sequence_id].name,
                        step=_step_name(step),
                    ),
                )
            )
        elif decision.action == engine.STAGE:
            out.moves.append((row.contact_id, step, out.sequences[row.sequence_id]))
        elif decision.action == engine.NOTIFY_OWNER:
            note = owner_message(
                row,
                step,
                run.contact or {},
                sequence=out.sequences[row.sequence_id],
                as_of=as_of,
            )
            if note is not None:
                out.messages.append(note)
            else:
                result = "no owner"
        if decision.action == engine.GOTO and step.kind == Step.Kind.SPLIT:
            row.branch = decision.branch
            out.branches.append(
                SplitBranch(enrollment_id=row.pk, step_id=step.pk, branch=row.branch, at=as_of)
            )
        _log(row, step, as_of, result)
        row.previous_step_at, row.step_entered_at = row.step_entered_at, as_of
        row.step_id = decision.next_step_id
        if row.step_id is None:
            _finish(row, Enrollment.Status.COMPLETED, "", as_of)
            return
    row.next_run_at = as_of  # a loop without a wait: go on at the next tick


def _step_name(step: Step) -> str:
    # An unnamed step is known by its position: "Step 3", in the reader's language.
    return step.name or coded("sequence_step", position=step.position)


def _move_stage(
    contact_id: int, step: Step, sequence: Sequence, as_of: datetime
) -> StageChange | None:
    # Its event is sent with the batch's others, in one task (send=False).
    contact = Contact.objects.filter(pk=contact_id).first()
    if contact is None or contact.stage == step.stage:
        return None
    try:
        return stage_move(
            contact=contact,
            to=step.stage,
            cause="system",
            actor_name=coded("sequence", sequence=sequence.name),
            reason=_step_name(step),
            at=as_of,
            send=False,
        )
    except StageMoveError as error:
        # The funnel refuses this move for this contact (e.g. a client back to MQL): skip it.
        logger.info("Sequence %s: stage move refused for %s: %s", sequence.pk, contact_id, error)
        return None


def _zone(name: str) -> ZoneInfo | None:
    """A contact's time zone; None when it has none (or one this system's tzdata lacks)."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
