"""Enrolling contacts in sequences and ending their enrolments; segments as enrolment sources.

An enrolment starts at its sequence's first step and runs on the next scheduler tick
(``nurturing.scheduler``); a tick is kicked after commit so that it does not wait for beat.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.http import QueryDict
from django.utils import timezone

from contacts import broker
from contacts.forms import ContactFilterForm
from contacts.models import Contact
from nurturing.models import Enrollment, Message, Sequence

# Sent by name (the tasks module imports the services, never the other way round).
TICK_TASK = "nurturing.tasks.nurturing_tick_task"
SEGMENT_EVERY = timedelta(minutes=15)
SEGMENT_CHUNK = 5000


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
        transaction.on_commit(kick_tick, robust=True)
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


def kick_tick() -> None:
    """Queue a scheduler tick now (beat runs one every few seconds anyway)."""
    broker.send(TICK_TASK)


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


# --- Segments ---------------------------------------------------------------------------------


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
    for start in range(0, len(contact_ids), SEGMENT_CHUNK):
        total += len(
            enrollments_start(
                sequence=sequence,
                contact_ids=contact_ids[start : start + SEGMENT_CHUNK],
                source=source or "segment",
            )
        )
    return total


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
