"""Nurturing write use cases: enrolments, the scheduler tick, sending, tracking, unsubscribing."""

from __future__ import annotations

import json
import logging
import re
import select
import smtplib
import time
from collections import abc, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.mail import get_connection
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.http import QueryDict
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import override

from contacts import broker
from contacts.bulk import bulk_update_fast
from contacts.events import event_record
from contacts.forms import ContactFilterForm
from contacts.machine_signals import is_machine_signal
from contacts.models import Contact, Event, StageChange
from contacts.reasons import coded
from contacts.services import contact_update
from contacts.stages import StageMoveError, stage_changes_send_on_commit, stage_move
from nurturing import engine, mime, rendering, safe_html
from nurturing.mime import BuiltEmail
from nurturing.models import Enrollment, Message, Sequence, SplitBranch, Step
from scoring.services import Adjustment, scores_adjust

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
MAX_STEPS_PER_RUN = 50  # a loop of steps without a wait stops here and resumes next tick
SEND_BATCH_SIZE = 100
TICK_BUDGET_SECONDS = 40.0
ENDED = "ended"


def site_timezone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def _zone(name: str) -> ZoneInfo | None:
    """A contact's time zone; None when it has none (or one this system's tzdata lacks)."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


# --- Enrolling --------------------------------------------------------------------------------


def _may_enter(
    sequence: Sequence, previous: list[tuple[str, datetime, datetime | None]], as_of: datetime
) -> bool:
    """Re-entry policy, given the contact's earlier (status, entered, ended) in this sequence."""
    if any(status == Enrollment.Status.ACTIVE for status, _, _ in previous):
        return False
    if not previous:
        return True
    if sequence.reentry == Sequence.Reentry.ONCE:
        return False
    if sequence.reentry == Sequence.Reentry.COOLDOWN:
        last = max((ended or entered) for _, entered, ended in previous)
        return as_of - last >= timedelta(days=sequence.cooldown_days)
    return True


@transaction.atomic
def enrollments_start(
    *,
    sequence: Sequence,
    contact_ids: Iterable[int],
    source: str = "",
    as_of: datetime | None = None,
) -> list[Enrollment]:
    """Enrol contacts the re-entry policy lets in (anonymous ones cannot receive email and are
    left out). They run on the next tick; one is kicked after commit."""
    as_of = as_of or timezone.now()
    ids = set(contact_ids)
    if not sequence.active or not ids:
        return []
    first = sequence.steps.order_by("position", "id").first()
    emailable = set(
        Contact.objects.filter(pk__in=ids, email__isnull=False).values_list("pk", flat=True)
    )
    previous: dict[int, list[tuple[str, datetime, datetime | None]]] = defaultdict(list)
    for contact_id, status, entered, ended in Enrollment.objects.filter(
        sequence=sequence, contact_id__in=emailable
    ).values_list("contact_id", "status", "entered_at", "ended_at"):
        previous[contact_id].append((status, entered, ended))
    new = [
        Enrollment(
            contact_id=contact_id,
            sequence=sequence,
            step=first,
            next_run_at=as_of,
            entered_at=as_of,
            step_entered_at=as_of,
            source=source[:100],
        )
        for contact_id in sorted(emailable)
        if _may_enter(sequence, previous[contact_id], as_of)
    ]
    # The partial unique index settles a race with a concurrent enrolment: the loser is skipped.
    created = Enrollment.objects.bulk_create(new, ignore_conflicts=True)
    if created:
        transaction.on_commit(_kick_tick, robust=True)
    return created


def enrollment_start(
    *, sequence: Sequence, contact: Contact, source: str = "", as_of: datetime | None = None
) -> Enrollment | None:
    """Enrol one contact; None when the re-entry policy (or a missing email) refuses."""
    created = enrollments_start(
        sequence=sequence, contact_ids=[contact.pk], source=source, as_of=as_of
    )
    if not created:
        return None
    return Enrollment.objects.active().filter(sequence=sequence, contact=contact).first()


def segment_contacts(query: str) -> Any:
    """The contacts a saved segment (the contact list's filters as a query string) selects."""
    form = ContactFilterForm(QueryDict(query))
    return form.filter(Contact.objects.filter(email__isnull=False))


def segment_selects_everyone(query: str) -> bool:
    """True when the query sets no filter that takes effect (empty, only a sort, or values
    the contact list ignores): as a segment it would mean every contact."""
    return ContactFilterForm(QueryDict(query)).selects_everyone()


def segment_enroll(
    *, sequence: Sequence, query: str | None = None, source: str = "", everyone: bool = False
) -> int:
    """Enrol the contacts the query (else the sequence's segment) selects. A query without a
    filter enrols nobody unless ``everyone`` says that every contact is meant."""
    query = query if query is not None else sequence.segment_query
    if not everyone and segment_selects_everyone(query):
        return 0
    contact_ids = list(segment_contacts(query).order_by().values_list("pk", flat=True))
    total = 0
    for start in range(0, len(contact_ids), 5000):
        total += len(
            enrollments_start(
                sequence=sequence,
                contact_ids=contact_ids[start : start + 5000],
                source=source or "segment",
            )
        )
    return total


@transaction.atomic
def enrollments_end(
    *, enrollments: Any, status: str, reason: str = "", as_of: datetime | None = None
) -> int:
    """End active enrolments at once (goal, unsubscribe, by hand); their unsent mail stays
    unsent."""
    as_of = as_of or timezone.now()
    ids = list(enrollments.filter(status=Enrollment.Status.ACTIVE).values_list("pk", flat=True))
    if not ids:
        return 0
    ended = Enrollment.objects.filter(pk__in=ids, status=Enrollment.Status.ACTIVE).update(
        status=status, next_run_at=None, ended_at=as_of, end_reason=reason[:200]
    )
    Message.objects.filter(enrollment_id__in=ids, status=Message.Status.QUEUED).update(
        status=Message.Status.SUPPRESSED, error=reason[:500]
    )
    return ended


def _kick_tick() -> None:
    from nurturing.tasks import nurturing_tick_task

    broker.send(nurturing_tick_task)


def _kick_send(count: int) -> None:
    from nurturing.tasks import send_messages_task

    # A few tasks, so that idle workers share a large batch; each loops until nothing is due.
    for _number in range(max(1, min(4, count // 500))):
        broker.send(send_messages_task)


# --- The scheduler ----------------------------------------------------------------------------


@dataclass
class _Run:
    """An enrolment being advanced (plain values, written back in one statement per batch)."""

    row: Enrollment
    contact: dict[str, Any] | None
    facts: engine.ContactFacts


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
    tz = site_timezone()

    out = _Outbox(as_of=as_of, sequences=sequences, steps=steps, tz=tz)
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
    _write_enrollments(rows)
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
        transaction.on_commit(lambda: _kick_send(sendable), robust=True)
    return len(rows)


def _insert_messages(messages: list[Message]) -> None:
    """Insert the batch's messages; one already written for its (enrolment, step), when a
    sequence loops back to an email step, is kept and the new one dropped."""
    if not messages:
        return
    if connection.vendor != "postgresql":
        Message.objects.bulk_create(messages, ignore_conflicts=True)
        return
    # COPY into a scratch table, then one INSERT … ON CONFLICT: a multi-row INSERT of thousands
    # of parameters costs more in query building than in the database.
    meta = Message._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS incoming_messages "
            "(LIKE nurturing_message INCLUDING DEFAULTS INCLUDING IDENTITY) ON COMMIT DELETE ROWS"
        )
        with cursor.cursor.copy(f"COPY incoming_messages ({columns}) FROM STDIN") as copy:
            for message in messages:
                copy.write_row(
                    [f.get_db_prep_save(getattr(message, f.attname), connection) for f in fields]
                )
        cursor.execute(
            f"INSERT INTO nurturing_message ({columns}) SELECT {columns} "  # noqa: S608
            "FROM incoming_messages ON CONFLICT DO NOTHING"
        )
        cursor.execute("DELETE FROM incoming_messages")


ENROLLMENT_FIELDS = (
    "step", "status", "next_run_at", "step_entered_at", "previous_step_at", "ended_at",
    "end_reason", "branch", "offer", "history",
)  # fmt: skip


def _write_enrollments(rows: list[Enrollment]) -> None:
    """The batch's new state in one UPDATE … FROM unnest (JSON travels as text: psycopg dumps
    a text array many times faster than an array of JSON values)."""
    if connection.vendor != "postgresql":
        bulk_update_fast(rows, ENROLLMENT_FIELDS)
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE nurturing_enrollment AS e SET step_id = v.step_id, status = v.status,
                next_run_at = v.next_run_at, step_entered_at = v.step_entered_at,
                previous_step_at = v.previous_step_at, ended_at = v.ended_at,
                end_reason = v.end_reason, branch = v.branch, offer = v.offer::jsonb,
                history = v.history::jsonb
            FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::timestamptz[],
                        %s::timestamptz[], %s::timestamptz[], %s::timestamptz[], %s::text[],
                        %s::text[], %s::text[], %s::text[])
                AS v(id, step_id, status, next_run_at, step_entered_at, previous_step_at,
                     ended_at, end_reason, branch, offer, history)
            WHERE e.id = v.id
            """,
            [
                [r.pk for r in rows],
                [r.step_id for r in rows],
                [r.status for r in rows],
                [r.next_run_at for r in rows],
                [r.step_entered_at for r in rows],
                [r.previous_step_at for r in rows],
                [r.ended_at for r in rows],
                [r.end_reason for r in rows],
                [r.branch for r in rows],
                [json.dumps(r.offer) for r in rows],
                [json.dumps(r.history) for r in rows],
            ],
        )


@dataclass
class _Outbox:
    as_of: datetime
    sequences: dict[int, Sequence]
    steps: dict[int, Step]
    tz: ZoneInfo
    messages: list[Message] = None  # type: ignore[assignment]
    adjustments: list[Adjustment] = None  # type: ignore[assignment]
    moves: list[tuple[int, Step, Sequence]] = None  # type: ignore[assignment]
    branches: list[SplitBranch] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.messages, self.adjustments, self.moves, self.branches = [], [], [], []


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
    "do_not_email", "consent", "owner__email", "owner__first_name", "time_zone",
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
            message = _email_message(out, row, step, contact)
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
            note = _owner_message(out, row, step, run.contact or {})
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


def emailable(contact: dict[str, Any]) -> str:
    """Why marketing email may not go to this contact now ("" if it may)."""
    if not contact.get("email"):
        return "no email address"
    if contact.get("do_not_email"):
        return "do not email"
    if contact.get("consent") == Contact.Consent.WITHDRAWN:
        return "consent withdrawn"
    if settings.NURTURING_REQUIRE_CONSENT and contact.get("consent") != Contact.Consent.GRANTED:
        return "no consent"
    return ""


def _email_message(out: _Outbox, row: Enrollment, step: Step, contact: dict[str, Any]) -> Message:
    sequence = out.sequences[row.sequence_id]
    context = rendering.contact_context(
        first_name=contact.get("first_name", ""),
        last_name=contact.get("last_name", ""),
        email=contact.get("email") or "",
        company=contact.get("company", ""),
        job_title=contact.get("job_title", ""),
        stage=Contact.Stage(contact["stage"]).label if contact.get("stage") else "",
        score=contact.get("score", 0),
        sequence=sequence.name,
        offer=row.offer,
        tz=out.tz,
    )
    rendered = rendering.render_email(
        rendering.EmailTemplates(step.subject, step.body_text, step.body_html),
        context,
        enrollment_id=row.pk,
        step_id=step.pk,
    )
    refused = emailable(contact)
    return Message(
        enrollment_id=row.pk,
        step=step,
        contact_id=row.contact_id,
        to=contact.get("email") or "",
        subject=rendered.subject[:300],
        body_text=rendered.body_text,
        body_html=rendered.body_html,
        links=rendered.links,
        message_id=rendering.message_id_header(row.pk, step.pk),
        status=Message.Status.SUPPRESSED if refused else Message.Status.QUEUED,
        error=refused,
        next_attempt_at=out.as_of,
        created_at=out.as_of,
    )


def _owner_message(
    out: _Outbox, row: Enrollment, step: Step, contact: dict[str, Any]
) -> Message | None:
    if not contact.get("owner__email"):
        return None
    sequence = out.sequences[row.sequence_id]
    name = f"{contact.get('first_name', '')} {contact.get('last_name', '')}".strip()
    with override(settings.LANGUAGE_CODE):
        subject = _("%(contact)s: %(step)s (sequence “%(sequence)s”)") % {
            "contact": name or contact.get("email"), "step": step, "sequence": sequence.name,
        }  # fmt: skip
        body = _("%(contact)s reached the step “%(step)s” of “%(sequence)s”.\n\n%(url)s\n") % {
            "contact": name or contact.get("email"),
            "step": step,
            "sequence": sequence.name,
            "url": rendering.absolute(reverse("contact-detail", args=[row.contact_id])),
        }
    return Message(
        enrollment_id=row.pk, step=step, contact_id=row.contact_id, internal=True,
        to=contact["owner__email"], subject=subject[:300], body_text=body,
        message_id=rendering.message_id_header(row.pk, step.pk),
        next_attempt_at=out.as_of, created_at=out.as_of,
    )  # fmt: skip


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


# --- Sending ----------------------------------------------------------------------------------


def messages_send(*, batch_size: int = SEND_BATCH_SIZE, budget: float = TICK_BUDGET_SECONDS) -> int:
    """Deliver due queued messages a batch at a time over one SMTP connection. Returns how
    many were sent. Several can run at once: each claims its own batch."""
    started = time.monotonic()
    lease = settings.NURTURING_SEND_LEASE_SECONDS
    margin = send_margin_seconds()
    sender = _Sender(get_connection(fail_silently=False))
    _commit_without_flush(True)
    try:
        while time.monotonic() - started < budget:
            claimed_at = time.monotonic()
            batch = _claim(batch_size, lease)
            if not batch:
                break
            _checkpoint("claimed")
            for index, message in enumerate(batch):
                if time.monotonic() - claimed_at > lease - margin:
                    sender.flush()
                    _release([m.pk for m in batch[index:]])
                    break
                sender.deliver(message, following=batch[index + 1 : index + 2])
            sender.flush()
            sender.prepared.clear()
    finally:
        try:
            sender.flush()
        finally:
            _commit_without_flush(False)
            sender.backend.close()
    return sender.sent


def send_margin_seconds() -> int:
    """How long before its lease runs out a send stops taking messages: it never starts one that
    could still be going when the reaper hands it to someone else (the longest SMTP exchange:
    the data, then the answer, each up to EMAIL_TIMEOUT). A lease must be longer (checks.py)."""
    return 2 * (settings.EMAIL_TIMEOUT or 30) + 5


def _commit_without_flush(on: bool) -> None:
    """The hand-over and "sent" marks are one commit per message; waiting for its WAL flush
    would cost more than the SMTP exchange. A killed worker loses nothing committed this way;
    only a crash of PostgreSQL itself could forget the last fraction of a second of marks (a
    message whose hand-over mark was lost would go again, with the same Message-ID)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO OFF" if on else "RESET synchronous_commit")


def _checkpoint(name: str) -> None:
    """Where the crash tests make a sending process die ("claimed": a batch is leased, nothing
    sent; "handed over": a message is marked, the end of its data has not gone; "accepted": the
    server said 250, no "sent" mark yet)."""


class _NoReply(Exception):
    """The end of the data may have reached the server, but its answer did not reach us."""


# Marks the message accepted before (if any) sent and the next one handed over, in one
# statement: the "sent" mark waits for the next message's hand-over (or the end of the batch),
# which saves a round trip per message and leaves a dead worker at most two messages in doubt.
_MARK = """
    UPDATE nurturing_message SET
        status = CASE WHEN id = %s THEN 'sent' ELSE status END,
        sent_at = CASE WHEN id = %s THEN %s ELSE sent_at END,
        lease_until = CASE WHEN id = %s THEN NULL ELSE lease_until END,
        error = CASE WHEN id = %s THEN '' ELSE error END,
        handed_over_at = CASE WHEN id = %s THEN %s ELSE handed_over_at END
    WHERE id IN (%s, %s) AND status = 'sending'
"""
_MARK_POSTGRESQL = b"""
    UPDATE nurturing_message SET
        status = CASE WHEN id = $1::bigint THEN 'sent' ELSE status END,
        sent_at = CASE WHEN id = $1::bigint THEN $2::timestamptz ELSE sent_at END,
        lease_until = CASE WHEN id = $1::bigint THEN NULL ELSE lease_until END,
        error = CASE WHEN id = $1::bigint THEN '' ELSE error END,
        handed_over_at = CASE WHEN id = $3::bigint THEN $4::timestamptz ELSE handed_over_at END
    WHERE id IN ($1::bigint, $3::bigint) AND status = 'sending'
"""


class _Sender:
    """Delivers claimed messages one at a time over one SMTP session.

    Each message is committed as "handed over" before the end of its data goes to the server
    (the statement leaves with DATA; its answer is awaited after the 354), and "sent" once the
    server's 250 has come back. A worker that dies
    before the hand-over leaves a message that goes again after its lease; one that dies after
    it leaves a message "in doubt", which only a person sends again.
    """

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        # Django's SMTP backend is driven command by command (the hand-over needs the moment
        # between DATA and the end of the data); other backends get the message whole.
        self.smtp = isinstance(backend, SMTPBackend)
        self.envelope_from = smtplib.quoteaddr(mime.address(settings.DEFAULT_FROM_EMAIL))
        self.accepted: tuple[int, datetime] | None = None
        self.marks = _Marks()
        self.sent = 0
        self.prepared: dict[int, bytes] = {}

    def deliver(self, message: Outgoing, following: list[Outgoing] | None = None) -> None:
        try:
            if self.smtp:
                self._smtp_send(message, following or [])
            else:
                self._mark(handed_over=message.pk)
                self.marks.wait()  # committed before the message goes
                self.backend.send_messages([email_for(message)])
        except _NoReply as error:
            self.flush()
            _in_doubt(message, str(error.__cause__ or error))
            _reset(self.backend)
            return
        except smtplib.SMTPRecipientsRefused as error:
            self.flush()
            code, reason = next(iter(error.recipients.values()), (550, b""))
            _failed_or_retry(message, code, _smtp_text(code, reason), self.backend)
            return
        except smtplib.SMTPResponseException as error:
            self.flush()
            reason = _smtp_text(error.smtp_code, error.smtp_error)
            _failed_or_retry(message, error.smtp_code, reason, self.backend)
            return
        except (*TRANSIENT, smtplib.SMTPException) as error:
            self.flush()
            _retry(message, f"{type(error).__name__}: {error}", self.backend)
            return
        _checkpoint("accepted")
        self.accepted = (message.pk, timezone.now())
        self.sent += 1

    def _smtp_send(self, message: Outgoing, following: list[Outgoing]) -> None:
        """What ``smtplib.SMTP.sendmail`` does, with the hand-over mark before the end of
        the data."""
        payload = self.prepared.pop(message.pk, None) or _payload(message)
        # Opened here, not by send_messages, which would close a connection it opened itself
        # after every message (a new SMTP session each time).
        self.backend.open()
        smtp = self.backend.connection
        smtp.ehlo_or_helo_if_needed()
        # MAIL and RCPT as smtplib.SMTP.mail and .rcpt send them, without parsing the
        # addresses again (email.utils.parseaddr costs more than the exchange).
        smtp.putcmd("mail", f"FROM:{self.envelope_from}")
        code, reply = smtp.getreply()
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, reply, self.envelope_from)
        recipient = mime.address(message.to)
        quoted = smtplib.quoteaddr(recipient) if "<" in recipient else f"<{recipient}>"
        smtp.putcmd("rcpt", f"TO:{quoted}")
        code, reply = smtp.getreply()
        if code not in (250, 251):
            raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
        self._mark(handed_over=message.pk)  # its answer is read after DATA's
        smtp.putcmd("data")
        code, reply = smtp.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        self.marks.wait()
        _checkpoint("handed over")
        try:
            smtp.send(payload)
            # The next message's bytes are made while the server reads these.
            for upcoming in following:
                self.prepared[upcoming.pk] = _payload(upcoming)
            code, reply = smtp.getreply()
        except OSError as error:  # smtplib's errors are OSErrors too
            raise _NoReply from error
        if code != 250:
            raise smtplib.SMTPDataError(code, reply)

    def _mark(self, *, handed_over: int | None) -> None:
        self.marks.wait()
        sent, sent_at = self.accepted or (None, None)
        if sent is None and handed_over is None:
            return
        self.accepted = None
        self.marks.send(sent, sent_at, handed_over, timezone.now())

    def flush(self) -> None:
        """Mark the message the server accepted last as sent, and wait for the marks."""
        self._mark(handed_over=None)
        self.marks.wait()


class _Marks:
    """Runs the mark statement. On PostgreSQL it is sent without waiting for its answer, which
    is read only when the mark must have been committed (before the end of the next data, or
    before anything else uses the connection): the database works while the SMTP server does."""

    def __init__(self) -> None:
        self.pending: Any = None
        self.postgresql = connection.vendor == "postgresql"
        self.pgconn: Any = None  # libpq's connection under Django's, for one send loop

    def send(self, *params: Any) -> None:
        sent, sent_at, handed_over, now = params
        if not self.postgresql:
            with connection.cursor() as cursor:
                cursor.execute(
                    _MARK, [sent, sent, sent_at, sent, sent, handed_over, now, sent, handed_over]
                )
            return
        if self.pgconn is None:
            connection.ensure_connection()
            self.pgconn = connection.connection.pgconn
        pgconn = self.pgconn
        values = [
            None if value is None else str(value).encode()
            for value in (sent, sent_at and sent_at.isoformat(), handed_over, now.isoformat())
        ]
        pgconn.send_query_params(_MARK_POSTGRESQL, values)
        while pgconn.flush():
            select.select([], [pgconn.socket], [])
        self.pending = pgconn

    def wait(self) -> None:
        pgconn, self.pending = self.pending, None
        if pgconn is None:
            return
        error = None
        pgconn.consume_input()  # the answer has usually arrived: no need to poll first
        while True:
            while pgconn.is_busy():
                select.select([pgconn.socket], [], [])
                pgconn.consume_input()
            result = pgconn.get_result()
            if result is None:
                break
            if result.status != 1:  # PGRES_COMMAND_OK
                error = result.error_message.decode(errors="replace")
        if error:
            raise DatabaseError(error)


def _payload(message: Message | Outgoing) -> bytes:
    """The message's bytes as they go after DATA: dots doubled at line starts, then the final
    dot (``smtplib.SMTP.data``)."""
    data = mime.build(
        from_email=settings.DEFAULT_FROM_EMAIL, to=message.to, subject=message.subject,
        text=message.body_text, html=message.body_html, headers=_headers(message),
    )  # fmt: skip
    data = _LEADING_DOT.sub(b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


_LEADING_DOT = re.compile(rb"(?m)^\.")


@dataclass(slots=True)
class Outgoing:
    """A claimed message: what sending it needs (a model instance costs more to make than
    its delivery on a local server)."""

    pk: int
    enrollment_id: int
    step_id: int | None
    internal: bool
    to: str
    subject: str
    body_text: str
    body_html: str
    message_id: str
    attempts: int


def _claim(batch_size: int, lease: int) -> list[Outgoing]:
    """Take due queued messages (status checked under row lock), mark them sending with a
    lease, and re-check consent and do-not-email now, at send time."""
    now = timezone.now()
    lease_until = now + timedelta(seconds=lease)
    if connection.vendor == "postgresql":
        rows = _claim_postgresql(now, lease_until, batch_size)
    else:
        rows = _claim_orm(now, lease_until, batch_size)
    suppressed: dict[str, list[int]] = defaultdict(list)
    claimed = []
    for message, contact in rows:
        if contact is None:
            suppressed["contact deleted"].append(message.pk)
        elif not message.internal and (reason := emailable(contact)):
            suppressed[reason].append(message.pk)
        elif not message.internal and contact["email"].lower() != message.to.lower():
            suppressed["email address changed"].append(message.pk)
        else:
            claimed.append(message)
    for reason, ids in suppressed.items():
        Message.objects.filter(pk__in=ids, status=Message.Status.SENDING).update(
            status=Message.Status.SUPPRESSED,
            error=reason,
            lease_until=None,
            attempts=F("attempts") - 1,
        )
    return claimed


# One statement (so one round trip, and atomic by itself): lock due rows others have not
# locked, lease them, and return them with what the send-time checks read from their contact.
# A message waits while an earlier one of its enrolment is unfinished (Message.UNFINISHED,
# as MessageQuerySet.sendable): one contact's emails of a sequence go in order.
_CLAIM = """
    WITH due AS (
        SELECT id FROM nurturing_message AS m
        WHERE status = 'queued' AND next_attempt_at <= %s
            AND (internal OR NOT EXISTS (
                SELECT 1 FROM nurturing_message AS earlier
                WHERE earlier.enrollment_id = m.enrollment_id AND earlier.id < m.id
                    AND NOT earlier.internal
                    AND earlier.status = ANY(%s)
            ))
        ORDER BY next_attempt_at, id LIMIT %s
        FOR UPDATE OF m SKIP LOCKED
    ), claimed AS (
        UPDATE nurturing_message AS m
        SET status = 'sending', lease_until = %s, handed_over_at = NULL,
            attempts = m.attempts + 1
        FROM due WHERE m.id = due.id
        RETURNING m.id, m.enrollment_id, m.step_id, m.contact_id, m.internal, m."to",
            m.subject, m.body_text, m.body_html, m.message_id, m.attempts, m.next_attempt_at
    )
    SELECT claimed.*, c.id, c.email, c.do_not_email, c.consent
    FROM claimed LEFT JOIN contacts_contact AS c ON c.id = claimed.contact_id
    ORDER BY claimed.next_attempt_at, claimed.id
"""


def _claim_postgresql(
    now: datetime, lease_until: datetime, batch_size: int
) -> list[tuple[Outgoing, dict[str, Any] | None]]:
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM, [now, list(Message.UNFINISHED), batch_size, lease_until])
        rows = cursor.fetchall()
    found = []
    for row in rows:
        message = Outgoing(
            pk=row[0], enrollment_id=row[1], step_id=row[2], internal=row[4], to=row[5],
            subject=row[6], body_text=row[7], body_html=row[8], message_id=row[9],
            attempts=row[10],
        )  # fmt: skip
        contact = (
            {"email": row[13], "do_not_email": row[14], "consent": row[15]}
            if row[12] is not None
            else None
        )
        found.append((message, contact))
    return found


@transaction.atomic
def _claim_orm(
    now: datetime, lease_until: datetime, batch_size: int
) -> list[tuple[Outgoing, dict[str, Any] | None]]:
    messages = list(
        Message.objects.sendable(now)
        .select_for_update(skip_locked=True, of=("self",))
        .order_by("next_attempt_at", "pk")[:batch_size]
    )
    if not messages:
        return []
    contacts = _contacts({m.contact_id for m in messages if m.contact_id})
    Message.objects.filter(pk__in=[m.pk for m in messages]).update(
        status=Message.Status.SENDING,
        lease_until=lease_until,
        handed_over_at=None,
        attempts=F("attempts") + 1,
    )
    return [
        (
            Outgoing(
                pk=m.pk, enrollment_id=m.enrollment_id, step_id=m.step_id, internal=m.internal,
                to=m.to, subject=m.subject, body_text=m.body_text, body_html=m.body_html,
                message_id=m.message_id, attempts=m.attempts + 1,
            ),
            contacts.get(m.contact_id) if m.contact_id else None,
        )
        for m in messages
    ]  # fmt: skip


def _release(ids: list[int]) -> None:
    Message.objects.filter(pk__in=ids, status=Message.Status.SENDING).update(
        status=Message.Status.QUEUED, lease_until=None, attempts=F("attempts") - 1
    )


def _headers(message: Message | Outgoing) -> dict[str, str]:
    headers = {"Message-ID": message.message_id}
    if not message.internal:
        assert message.step_id is not None
        token = rendering.make_token("unsubscribe", message.enrollment_id, message.step_id)
        url = rendering.token_url("nurturing-unsubscribe", token)
        headers["List-Unsubscribe"] = f"<{url}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers


def email_for(message: Message | Outgoing) -> BuiltEmail:
    email = BuiltEmail(
        subject=message.subject,
        body=message.body_text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[message.to],
        headers=_headers(message),
    )
    if message.body_html:
        email.attach_alternative(message.body_html, "text/html")
    return email


TRANSIENT = (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError)


def _smtp_text(code: int, reason: bytes | str) -> str:
    text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
    return f"{code} {text}".strip()


def _in_doubt(message: Outgoing, reason: str) -> None:
    Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
        status=Message.Status.IN_DOUBT, lease_until=None, error=reason[:2000]
    )


def _failed_or_retry(message: Outgoing, code: int, reason: str, smtp: Any) -> None:
    if 400 <= code < 500:
        _retry(message, reason, smtp)
        return
    # A permanent refusal (5xx): this message will never go; the rest of the batch goes on.
    Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
        status=Message.Status.FAILED, lease_until=None, error=reason[:2000]
    )
    # After a refusal mid-transaction the server expects a fresh one: reset the connection.
    _reset(smtp)


def _retry(message: Outgoing, reason: str, smtp: Any) -> None:
    _reset(smtp)
    if message.attempts >= settings.NURTURING_MAX_ATTEMPTS:
        Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
            status=Message.Status.FAILED, lease_until=None, error=reason[:2000]
        )
        return
    Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
        status=Message.Status.QUEUED,
        lease_until=None,
        error=reason[:2000],
        next_attempt_at=timezone.now() + engine.retry_delay(message.attempts),
    )


def _reset(smtp: Any) -> None:
    try:
        smtp.close()
    except Exception:  # noqa: S110 (a broken connection is being thrown away anyway)
        pass


@transaction.atomic
def messages_reap(*, as_of: datetime | None = None) -> int:
    """Messages a dead worker held when its lease ran out: those it had not handed to the mail
    server yet go back to the queue; the one it was handing over (and the one accepted just
    before, whose "sent" mark had not been written yet) may have been delivered, so they are
    "in doubt" and wait for a person. Returns how many went back to the queue."""
    as_of = as_of or timezone.now()
    expired = Message.objects.filter(status=Message.Status.SENDING, lease_until__lt=as_of)
    expired.filter(handed_over_at__isnull=False).update(
        status=Message.Status.IN_DOUBT, lease_until=None
    )
    return expired.filter(handed_over_at__isnull=True).update(
        status=Message.Status.QUEUED, lease_until=None, next_attempt_at=as_of
    )


@transaction.atomic
def messages_retry(*, messages: Any, as_of: datetime | None = None) -> int:
    """A person sends in-doubt or failed messages again (consent and do-not-email are checked
    again when they go; the Message-ID stays, so a mail system can spot a duplicate)."""
    as_of = as_of or timezone.now()
    return messages.filter(status__in=[Message.Status.IN_DOUBT, Message.Status.FAILED]).update(
        status=Message.Status.QUEUED,
        next_attempt_at=as_of,
        handed_over_at=None,
        lease_until=None,
        attempts=0,
    )


@transaction.atomic
def messages_mark_delivered(*, messages: Any, as_of: datetime | None = None) -> int:
    """A person confirms that in-doubt messages did arrive (the mail server's log, the
    recipient): they count as sent, and their enrolments' later emails, which waited for
    them, may go."""
    as_of = as_of or timezone.now()
    return messages.filter(status=Message.Status.IN_DOUBT).update(
        status=Message.Status.SENT,
        sent_at=Coalesce("handed_over_at", Value(as_of)),
        lease_until=None,
    )


SEGMENT_EVERY = timedelta(minutes=15)


def segments_enroll(*, as_of: datetime | None = None) -> int:
    """Segment-triggered sequences take in the contacts that newly match, every SEGMENT_EVERY.
    A compare-and-set on ``segment_enrolled_at`` lets one tick do it when several run."""
    as_of = as_of or timezone.now()
    total = 0
    due = Sequence.objects.filter(active=True, trigger=Sequence.Trigger.SEGMENT).filter(
        Q(segment_enrolled_at__isnull=True) | Q(segment_enrolled_at__lte=as_of - SEGMENT_EVERY)
    )
    for sequence in due:
        won = Sequence.objects.filter(
            pk=sequence.pk, segment_enrolled_at=sequence.segment_enrolled_at
        ).update(segment_enrolled_at=as_of)
        if won and sequence.segment_query.strip():
            total += segment_enroll(sequence=sequence, source="segment")
    return total


def nurturing_tick() -> dict[str, int]:
    """What beat runs every few seconds: free dead workers' leases, take in segments' new
    contacts, advance due enrolments, and make sure a send task runs while messages are due."""
    reaped = messages_reap()
    segmented = segments_enroll()
    advanced = enrollments_advance(budget=TICK_BUDGET_SECONDS)
    due = Message.objects.sendable(timezone.now()).exists()
    if due:
        _kick_send(0)
    return {"reaped": reaped, "segmented": segmented, "advanced": advanced, "send_due": int(due)}


# --- Events: triggers and goals ---------------------------------------------------------------


@transaction.atomic
def events_apply(*, events: abc.Sequence[Any], sequences: list[Sequence] | None = None) -> None:
    """Goals first (an enrolment that began before the event ends as a conversion), then
    triggers. A few queries per batch of events, whatever its size. ``sequences``: the active
    ones, when the caller has read them already."""
    if sequences is None:
        sequences = list(Sequence.objects.filter(active=True))
    if not sequences or not events:
        return
    _apply_goals(events, [s for s in sequences if s.goal_event_type])
    _apply_triggers(events, [s for s in sequences if s.trigger in (
        Sequence.Trigger.STAGE_ENTERED, Sequence.Trigger.EVENT)])  # fmt: skip


def _props(event: Any) -> dict[str, Any]:
    return event.properties if isinstance(event.properties, dict) else {}


def _apply_goals(events: abc.Sequence[Any], sequences: list[Sequence]) -> None:
    hits: dict[int, list[tuple[int, datetime, int]]] = defaultdict(list)
    for event in events:
        for sequence in sequences:
            if engine.trigger_matches(
                event.type,
                _props(event),
                wanted_type=sequence.goal_event_type,
                wanted_tag=sequence.goal_tag,
            ):
                hits[sequence.pk].append((event.contact_id, event.occurred_at, event.pk))
    ended: list[int] = []
    for sequence_id, found in hits.items():
        contacts = {contact_id for contact_id, _, _ in found}
        for pk, contact_id, entered_at in (
            Enrollment.objects.active()
            .filter(sequence_id=sequence_id, contact_id__in=contacts)
            .values_list("pk", "contact_id", "entered_at")
        ):
            # Only an event from after the enrolment began counts as its conversion.
            if any(c == contact_id and at >= entered_at for c, at, _ in found):
                ended.append(pk)
    if ended:
        enrollments_end(
            enrollments=Enrollment.objects.filter(pk__in=ended),
            status=Enrollment.Status.GOAL_REACHED,
            reason="goal event",
        )


def _apply_triggers(events: abc.Sequence[Any], sequences: list[Sequence]) -> None:
    for sequence in sequences:
        if sequence.trigger == Sequence.Trigger.STAGE_ENTERED:
            contact_ids = {
                e.contact_id
                for e in events
                if e.type == Event.Type.STAGE_CHANGED
                and _props(e).get("to") == sequence.trigger_stage
            }
        else:
            contact_ids = {
                e.contact_id
                for e in events
                if engine.trigger_matches(
                    e.type,
                    _props(e),
                    wanted_type=sequence.trigger_event_type,
                    wanted_tag=sequence.trigger_tag,
                )
            }
            if contact_ids and sequence.trigger_count > 1:
                contact_ids = _with_enough_events(sequence, contact_ids)
        if contact_ids:
            enrollments_start(sequence=sequence, contact_ids=contact_ids, source="trigger")


def _with_enough_events(sequence: Sequence, contact_ids: set[int]) -> set[int]:
    """Contacts with at least ``trigger_count`` matching events (within the window)."""
    events = Event.objects.filter(contact_id__in=contact_ids, type=sequence.trigger_event_type)
    if sequence.trigger_within_days:
        events = events.filter(
            occurred_at__gte=timezone.now() - timedelta(days=sequence.trigger_within_days)
        )
    counts: dict[int, int] = defaultdict(int)
    for contact_id, properties in events.values_list("contact_id", "properties"):
        if engine.trigger_matches(
            sequence.trigger_event_type,
            properties if isinstance(properties, dict) else {},
            wanted_type=sequence.trigger_event_type,
            wanted_tag=sequence.trigger_tag,
        ):
            counts[contact_id] += 1
    return {c for c, n in counts.items() if n >= sequence.trigger_count}


# --- Tracking and unsubscribe ----------------------------------------------------------------


def message_for_token(kind: str, token: str) -> tuple[Message, list[int]] | None:
    parts = rendering.read_token(kind, token)
    if parts is None or len(parts) < 2:
        return None
    message = (
        Message.objects.select_related("contact", "enrollment")
        .filter(enrollment_id=parts[0], step_id=parts[1], internal=False)
        .first()
    )
    return (message, parts) if message is not None else None


def _signal_properties(message: Message, user_agent: str, as_of: datetime) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "message_id": message.pk,
        "sequence_id": message.enrollment.sequence_id,
        "step_id": message.step_id,
        "user_agent": user_agent[:300],
    }
    if message.sent_at:
        properties["sent_at"] = message.sent_at.isoformat()
        properties["seconds_after_send"] = round((as_of - message.sent_at).total_seconds(), 1)
    properties["machine"] = is_machine_signal(properties)
    return properties


@transaction.atomic
def message_open(*, message: Message, user_agent: str = "") -> None:
    now = timezone.now()
    properties = _signal_properties(message, user_agent, now)
    if not properties["machine"]:
        Message.objects.filter(pk=message.pk, opened_at__isnull=True).update(opened_at=now)
    if message.contact_id:
        kind = "machine" if properties["machine"] else "person"
        event_record(
            contact=message.contact,
            type=Event.Type.EMAIL_OPEN,
            occurred_at=now,
            properties=properties,
            source="email",
            idempotency_key=f"email_open:{message.pk}:{kind}",
        )


@transaction.atomic
def message_click(*, message: Message, link: int, user_agent: str = "") -> str | None:
    """The stored URL of that link of that message (None if there is no such link)."""
    if not 0 <= link < len(message.links):
        return None
    url = message.links[link]
    if safe_html.unsafe_address(url):  # stored before links were checked: never followed
        return None
    now = timezone.now()
    properties = {**_signal_properties(message, user_agent, now), "url": url, "link": link}
    properties["machine"] = is_machine_signal(properties)
    if not properties["machine"]:
        # A click proves an open too (images are often blocked).
        Message.objects.filter(pk=message.pk, clicked_at__isnull=True).update(clicked_at=now)
        Message.objects.filter(pk=message.pk, opened_at__isnull=True).update(opened_at=now)
    if message.contact_id:
        kind = "machine" if properties["machine"] else "person"
        event_record(
            contact=message.contact, type=Event.Type.EMAIL_CLICK, occurred_at=now,
            properties=properties, source="email",
            idempotency_key=f"email_click:{message.pk}:{link}:{kind}",
        )  # fmt: skip
    return url


@transaction.atomic
def contact_unsubscribe(*, contact: Contact, message: Message | None = None) -> bool:
    """Do-not-email at once, every active enrolment ended and its unsent mail suppressed.
    Returns False if the contact had already unsubscribed."""
    contact = Contact.objects.select_for_update().get(pk=contact.pk)
    already = contact.do_not_email
    if not already:
        contact_update(contact=contact, do_not_email=True)
    enrollments_end(
        enrollments=Enrollment.objects.filter(contact=contact),
        status=Enrollment.Status.UNSUBSCRIBED,
        reason="unsubscribed",
    )
    Message.objects.filter(contact=contact, status=Message.Status.QUEUED, internal=False).update(
        status=Message.Status.SUPPRESSED, error="unsubscribed"
    )
    if not already:
        event_record(
            contact=contact,
            type=Event.Type.NEWSLETTER_UNSUBSCRIBE,
            properties={"message_id": message.pk if message else None, "via": "email link"},
            source="email",
            idempotency_key=f"unsubscribe:{contact.pk}:{message.pk if message else 'page'}",
        )
    return not already


def email_preview(*, step: Step, contact: Contact) -> rendering.Rendered:
    """The email of ``step`` as ``contact`` would get it now (a sample offer if it has one);
    nothing is stored or sent."""
    now = timezone.now()
    offer = {}
    if step.offer_percent and step.offer_valid_hours:
        offer = {
            "code": engine.offer_code(step.offer_code, 0, step.pk),
            "percent": step.offer_percent,
            "expires_at": (now + timedelta(hours=step.offer_valid_hours)).isoformat(),
        }
    context = rendering.contact_context(
        first_name=contact.first_name, last_name=contact.last_name, email=contact.email or "",
        company=contact.company, job_title=contact.job_title,
        stage=contact.get_stage_display(), score=contact.score, sequence=step.sequence.name,
        offer=offer,
    )  # fmt: skip
    return rendering.render_email(
        rendering.EmailTemplates(step.subject, step.body_text, step.body_html),
        context,
        enrollment_id=0,
        step_id=step.pk,
        tracking=False,
    )
