"""Event handlers the tests plug into LEADFUNNEL_EVENT_HANDLERS."""

from contacts.models import Event, EventRow
from contacts.pipeline import EventBatch

SEEN: list[EventRow] = []


def remember(batch: EventBatch) -> None:
    SEEN.extend(batch.events)


def tag(batch: EventBatch) -> None:
    """Leaves a mark in the database, so a test in another process can see the handler ran."""
    for event in batch.events:
        Event.objects.filter(pk=event.pk).update(properties={**event.properties, "tagged": True})


def fail_on_poison(batch: EventBatch) -> None:
    for event in batch.events:
        if event.properties.get("poison"):
            raise RuntimeError("this event breaks the handler")
    SEEN.extend(batch.events)
