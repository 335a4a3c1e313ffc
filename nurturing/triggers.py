"""Events that end enrolments (a sequence's goal) or start them (its trigger).

``events_apply`` is nurturing's entry in ``LEADFUNNEL_EVENT_HANDLERS`` (``nurturing.handlers``),
run after scoring for each batch of events.
"""

from __future__ import annotations

from collections import abc, defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from contacts.models import Event
from nurturing import engine
from nurturing.enrolment import enrollments_end, enrollments_start
from nurturing.models import Enrollment, Sequence


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
