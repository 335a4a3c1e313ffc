"""What happens to an email after it left: bounces, deferrals, spam complaints and unsubscribes
that mail servers and email services report, from wherever they come (a refusal at RCPT in
``nurturing.sending``, the bounce mailbox, an email service's tracking webhook).

Each source turns what it reads into ``Report``s and calls ``record_reports``. A report finds
its message by ``message_id`` (then the message's contact), else its contact by address
(whatever the case) and the latest email sent to it. It is stored once per (source, reference)
as a ``Bounce``, becomes an event on the contact's timeline (``email_bounced``,
``email_complaint``: score rules apply) and acts:

- HARD: the address is refused marketing email at once (``Contact.email_status``);
- SOFT: counted; ``NURTURING_SOFT_BOUNCE_LIMIT`` of them within ``NURTURING_SOFT_BOUNCE_DAYS``
  days do the same (soft bounces before a person cleared the address do not count);
- COMPLAINT: refused at once, and every active enrolment of the contact ends;
- UNSUBSCRIBED: as our own one-click unsubscribe (``nurturing.tracking.contact_unsubscribe``);
- DEFERRED: noted on the message only (the service is still trying).

The message takes its final state (bounced, marked as spam) and the report in its
``delivery_note``. An address that changed since the email went is not refused for the old
one's bounces. Reports are handled a batch at a time, in a few statements per batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import (
    Case,
    Count,
    F,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Concat, Left, Trim
from django.utils import timezone

from contacts.email_status import contacts_email_status_set
from contacts.events import NewEvent, events_record_many
from contacts.models import Contact, Event, Notification, normalize_email
from contacts.notifications import notify
from contacts.services import contact_ids_by_email
from nurturing.enrolment import enrollments_end
from nurturing.models import Bounce, Enrollment, Message
from nurturing.outbox import owner_bounce_message

Kind = Bounce.Kind

BATCH_SIZE = 1000

# The reason recorded on the enrolments a complaint ends (a code: see nurturing.models.REASONS).
COMPLAINT_REASON = "spam complaint"


@dataclass(frozen=True, slots=True)
class Report:
    """One delivery report, as a source read it."""

    kind: str  # a Kind value
    email: str = ""  # the recipient as reported
    message_id: int | None = None  # our Message's pk when known (VERP token, ESP metadata)
    status: str = ""  # enhanced status "5.1.1" (RFC 3463) or SMTP code "550"
    diagnostic: str = ""  # the server's or the service's words (truncated when stored)
    source: str = ""  # "smtp" (refused at RCPT), "mailbox", "esp:<esp_name>"
    reference: str = ""  # the provider's id of this report: the same (source, reference) once
    occurred_at: datetime | None = None  # None: now


@dataclass
class Recorded:
    recorded: int = 0  # reports newly recorded
    duplicates: int = 0  # already recorded (same source and reference)
    unmatched: list[Report] = field(default_factory=list)  # no message, no contact: for review
    # The ids of the contacts whose address was refused by this call (hard, soft, complaint).
    suppressed: list[int] = field(default_factory=list)


def record_reports(reports: Iterable[Report]) -> Recorded:
    """Record delivery reports and act on them (see the module docstring), ``BATCH_SIZE`` at a
    time, each batch in its own transaction. Idempotent: a report seen before (same source
    and reference) is counted as a duplicate and changes nothing."""
    reports = list(reports)
    unknown = {report.kind for report in reports} - set(Kind.values)
    if unknown:  # a caller's mistake: nothing is recorded
        raise ValueError(f"unknown report kinds {sorted(unknown)}")
    result = Recorded()
    for batch in _batches(reports, BATCH_SIZE):
        _record_batch(batch, result)
    return result


def _batches(reports: Iterable[Report], size: int) -> Iterator[list[Report]]:
    batch: list[Report] = []
    for report in reports:
        batch.append(report)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(slots=True)
class _Matched:
    report: Report
    bounce: Bounce
    message: dict[str, Any] | None
    contact: dict[str, Any] | None


@transaction.atomic
def _record_batch(batch: list[Report], result: Recorded) -> None:
    now = timezone.now()
    fresh = _new_reports(batch, result)
    matched = _match(fresh, now, result)
    stored = _store(matched, result)
    if not stored:
        return
    _mark_messages(stored, now)
    result.suppressed += _act_on_contacts(stored, now)
    _record_events(stored)


# --- Which reports are new, and what they are about -------------------------------------------


def _new_reports(batch: list[Report], result: Recorded) -> list[Report]:
    """The reports of the batch not recorded before (nor twice in the batch)."""
    keys = {(r.source[:100], r.reference[:200]) for r in batch if r.reference}
    stored = set(
        Bounce.objects.filter(reference__in={reference for _, reference in keys})
        .values_list("source", "reference")
        .order_by()
    )
    fresh = []
    for report in batch:
        key = (report.source[:100], report.reference[:200])
        if report.reference and key in stored:
            result.duplicates += 1
            continue
        if report.reference:
            stored.add(key)
        fresh.append(report)
    return fresh


MESSAGE_VALUES = ("pk", "contact_id", "to", "status", "enrollment_id", "step_id", "internal")
CONTACT_VALUES = (
    "pk", "email", "email_status", "email_status_at", "owner_id", "owner__email",
    "first_name", "last_name",
)  # fmt: skip


def _match(reports: list[Report], now: datetime, result: Recorded) -> list[_Matched]:
    """Each report with its message and contact (the unmatched go to ``result``), in a few
    queries for the batch."""
    messages = {
        values["pk"]: values
        for values in Message.objects.filter(
            pk__in={r.message_id for r in reports if r.message_id is not None}
        ).values(*MESSAGE_VALUES)
    }
    by_email = contact_ids_by_email(
        [r.email for r in reports if r.email and r.message_id not in messages],
        create_missing=False,
    )
    latest = dict(
        Message.objects.filter(
            contact_id__in=set(by_email.values()), internal=False, sent_at__isnull=False
        )
        .values("contact_id")
        .annotate(last=Max("pk"))
        .values_list("contact_id", "last")
        .order_by()
    )
    for values in Message.objects.filter(pk__in=set(latest.values())).values(*MESSAGE_VALUES):
        messages[values["pk"]] = values
    contacts = {
        values["pk"]: values
        for values in Contact.objects.filter(
            pk__in={m["contact_id"] for m in messages.values()} | set(by_email.values())
        ).values(*CONTACT_VALUES)
    }
    matched = []
    for report in reports:
        message = messages.get(report.message_id) if report.message_id is not None else None
        contact_id = message["contact_id"] if message else by_email.get(_address(report.email))
        if message is None and contact_id is not None:
            message = messages.get(latest.get(contact_id))
        contact = contacts.get(contact_id) if contact_id is not None else None
        if message is not None and message["internal"]:
            contact = None  # a note to the contact's owner: about the owner's address
        if message is None and contact is None:
            result.unmatched.append(report)
            continue
        bounce = Bounce(
            contact_id=contact and contact["pk"],
            message_id=message and message["pk"],
            email=(normalize_email(report.email) or (message and message["to"]) or "")[:254],
            kind=report.kind,
            status=report.status[:20],
            diagnostic=report.diagnostic[:500],
            source=report.source[:100],
            reference=report.reference[:200],
            occurred_at=report.occurred_at or now,
            recorded_at=now,
        )
        matched.append(_Matched(report, bounce, message, contact))
    return matched


def _address(email: str) -> str:
    return (normalize_email(email) or "").lower()


def _store(matched: list[_Matched], result: Recorded) -> list[_Matched]:
    """Insert the reports' rows at once; if another process stored one of them meanwhile (the
    same webhook delivered twice at the same moment), one at a time, keeping the others."""
    try:
        with transaction.atomic():
            Bounce.objects.bulk_create([m.bounce for m in matched])
    except IntegrityError:
        stored = []
        for item in matched:
            item.bounce.pk = None
            try:
                with transaction.atomic():
                    item.bounce.save(force_insert=True)
            except IntegrityError:
                result.duplicates += 1
                continue
            stored.append(item)
        matched = stored
    result.recorded += len(matched)
    return matched


# --- What the reports change ------------------------------------------------------------------

# The message statuses a report may replace (a message still queued or being sent is the
# sender's business: nurturing.sending records its own refusals).
AFTER_SENDING = {Message.Status.SENT, Message.Status.IN_DOUBT, Message.Status.FAILED}
BOUNCES_FROM = AFTER_SENDING
COMPLAINS_FROM = {*AFTER_SENDING, Message.Status.BOUNCED}
BOUNCED, COMPLAINED = Message.Status.BOUNCED.value, Message.Status.COMPLAINED.value


def _mark_messages(stored: list[_Matched], now: datetime) -> None:
    """The messages' final state, and their latest report of this batch as their note, in one
    statement for the batch (the note comes from the rows just stored). A message that bounced
    and was marked as spam in one batch was marked as spam; one in doubt that a report is about
    was received by the mail server."""
    bounced, complained, noted = set(), set(), set()
    for item in stored:
        if item.message is None:
            continue
        noted.add(item.message["pk"])
        if item.report.kind in (Kind.HARD, Kind.SOFT):
            bounced.add(item.message["pk"])
        elif item.report.kind == Kind.COMPLAINT:
            complained.add(item.message["pk"])
    latest = _latest_of_batch(now, message=OuterRef("pk"))
    in_doubt = Q(status=Message.Status.IN_DOUBT)
    Message.objects.filter(pk__in=noted).update(
        status=Case(
            When(Q(pk__in=complained, status__in=COMPLAINS_FROM), then=Value(COMPLAINED)),
            When(Q(pk__in=bounced, status__in=BOUNCES_FROM), then=Value(BOUNCED)),
            # Any report proves the mail server had it: no longer in doubt, never resent.
            When(in_doubt, then=Value(Message.Status.SENT.value)),
            default=F("status"),
        ),
        sent_at=Case(
            When(in_doubt, then=Coalesce("handed_over_at", Value(now))), default=F("sent_at")
        ),
        delivery_note=Subquery(latest.values(note=Left(NOTE, 500))[:1]),
    )


# A message's note: the kind as a code (``Message.delivery_note_text`` translates it), then the
# words; a contact's detail: the words.
NOTE = Trim(Concat("kind", Value(": "), "status", Value(" "), "diagnostic"))
DETAIL = Trim(Concat("status", Value(" "), "diagnostic"))


def _latest_of_batch(now: datetime, **about: Any) -> QuerySet[Bounce]:
    """For a subquery: the latest report of this batch (``recorded_at``) about the outer row."""
    return Bounce.objects.filter(recorded_at=now, **about).order_by("-occurred_at", "-pk")


def _same_address(item: _Matched) -> bool:
    """Whether the report is about the contact's current address (not one it had before)."""
    contact = item.contact
    if contact is None or not contact["email"]:
        return False
    address = item.bounce.email or (item.message and item.message["to"]) or ""
    if address.lower() != contact["email"].lower():
        return False
    # Not about a state a person cleared after the report's time (a late report).
    cleared_at = contact["email_status_at"]
    return (
        bool(contact["email_status"]) or cleared_at is None or item.bounce.occurred_at > cleared_at
    )


def _act_on_contacts(stored: list[_Matched], now: datetime) -> list[int]:
    """Refuse the addresses that complained, bounced hard or too often softly (a few
    statements per kind for the batch); end the complainers' enrolments; tell the owners of
    those that bounced hard; unsubscribe those an email service unsubscribed."""
    acting: dict[str, set[int]] = {kind: set() for kind in Kind.values}
    unsubscribed: dict[int, int | None] = {}
    for item in stored:
        if _same_address(item):
            acting[item.report.kind].add(item.contact["pk"])  # type: ignore[index]
            if item.report.kind == Kind.UNSUBSCRIBED:
                unsubscribed[item.contact["pk"]] = item.message and item.message["pk"]  # type: ignore[index]
    # The strongest first: a contact that complained and bounced in one batch has complained.
    refused: dict[str, list[int]] = {}
    for status, kind, ids in (
        (Contact.EmailStatus.COMPLAINT, Kind.COMPLAINT, acting[Kind.COMPLAINT]),
        (Contact.EmailStatus.HARD_BOUNCE, Kind.HARD, acting[Kind.HARD]),
        (Contact.EmailStatus.SOFT_BOUNCES, Kind.SOFT, _too_many_soft(acting[Kind.SOFT], now)),
    ):
        if not ids:
            continue
        latest = Bounce.objects.filter(contact=OuterRef("pk"), kind=kind).order_by(
            "-occurred_at", "-pk"
        )
        refused[status] = contacts_email_status_set(
            contact_ids=ids,
            status=status,
            at=Subquery(latest.values("occurred_at")[:1]),
            detail=Subquery(latest.values(detail=Left(DETAIL, 300))[:1]),
        )
    _tell_owners(stored, set(refused.get(Contact.EmailStatus.HARD_BOUNCE, [])), now)
    if acting[Kind.COMPLAINT]:
        enrollments_end(
            enrollments=Enrollment.objects.filter(contact_id__in=acting[Kind.COMPLAINT]),
            status=Enrollment.Status.EXITED,
            reason=COMPLAINT_REASON,
            as_of=now,
        )
    if unsubscribed:
        _unsubscribe(unsubscribed)
    return sorted({pk for ids in refused.values() for pk in ids})


def _too_many_soft(contact_ids: set[int], now: datetime) -> set[int]:
    """The contacts among these with enough recent soft bounces to be refused: those of the
    last NURTURING_SOFT_BOUNCE_DAYS days, and since a person last cleared the address."""
    if not contact_ids:
        return set()
    return set(
        soft_bounces_counting(contact_ids, now)
        .values("contact_id")
        .annotate(count=Count("pk"))
        .filter(count__gte=settings.NURTURING_SOFT_BOUNCE_LIMIT)
        .values_list("contact_id", flat=True)
        .order_by()
    )


def _tell_owners(stored: list[_Matched], suppressed: set[int], now: datetime) -> None:
    """A notification to the owner of each contact whose address has just bounced hard, and a
    note through the outbox (filed with the enrolment of the email that bounced: a bounce
    about no email of ours sends no note)."""
    notes = {}
    told: set[int] = set()
    for item in stored:
        contact = item.contact
        if (
            item.report.kind == Kind.HARD
            and contact is not None
            and contact["pk"] in suppressed
            and contact["pk"] not in told
        ):
            # The owner's bell (and digest), whether or not the email was one of ours.
            told.add(contact["pk"])
            notify(
                user_ids=[contact["owner_id"]],
                kind=Notification.Kind.HARD_BOUNCE,
                contact_id=contact["pk"],
                params={
                    "email": item.bounce.email or contact["email"],
                    "detail": f"{item.report.status} {item.report.diagnostic}".strip()[:300],
                },
                at=now,
            )
        if (
            item.report.kind == Kind.HARD
            and contact is not None
            and contact["pk"] in suppressed
            and contact["pk"] not in notes
            and item.message is not None
        ):
            note = owner_bounce_message(
                contact=contact,
                enrollment_id=item.message["enrollment_id"],
                bounce_id=item.bounce.pk,
                detail=f"{item.report.status} {item.report.diagnostic}".strip(),
                as_of=now,
            )
            if note is not None:
                notes[contact["pk"]] = note
    Message.objects.bulk_create(notes.values())


def soft_bounces_counting(contact_ids: Iterable[int], as_of: datetime) -> QuerySet[Bounce]:
    """The soft bounces of these contacts that count toward refusing their address: those of
    the last NURTURING_SOFT_BOUNCE_DAYS days, after a person last cleared it."""
    since = as_of - timedelta(days=settings.NURTURING_SOFT_BOUNCE_DAYS)
    return Bounce.objects.filter(
        contact_id__in=contact_ids, kind=Kind.SOFT, occurred_at__gte=since
    ).filter(
        Q(contact__email_status_at__isnull=True) | Q(occurred_at__gt=F("contact__email_status_at"))
    )


def _unsubscribe(unsubscribed: dict[int, int | None]) -> None:
    """As if each had used our own unsubscribe link (rare: one at a time)."""
    from nurturing.tracking import contact_unsubscribe

    messages = Message.objects.in_bulk([pk for pk in unsubscribed.values() if pk])
    for contact in Contact.objects.filter(pk__in=unsubscribed).order_by("pk"):
        contact_unsubscribe(contact=contact, message=messages.get(unsubscribed[contact.pk]))


EVENT_TYPES = {Kind.HARD: Event.Type.EMAIL_BOUNCED, Kind.SOFT: Event.Type.EMAIL_BOUNCED,
               Kind.COMPLAINT: Event.Type.EMAIL_COMPLAINT}  # fmt: skip


def _record_events(stored: list[_Matched]) -> None:
    """Bounces and complaints on the contacts' timelines, through the event path (score rules
    apply), in one statement for the batch."""
    events = []
    for item in stored:
        kind = item.report.kind
        if item.contact is None or kind not in EVENT_TYPES:
            continue
        properties = {
            "kind": kind,
            "status": item.bounce.status,
            "diagnostic": item.bounce.diagnostic,
            "source": item.bounce.source,
            "message_id": item.bounce.message_id,
        }
        if item.message is not None:
            properties["step_id"] = item.message["step_id"]
        events.append(
            NewEvent(
                contact_id=item.contact["pk"],
                type=EVENT_TYPES[kind],
                occurred_at=item.bounce.occurred_at,
                properties=properties,
                source="email",
                idempotency_key=f"bounce:{item.bounce.pk}",
            )
        )
    events_record_many(events=events)
