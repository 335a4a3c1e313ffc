"""Event handlers the tests plug into LEADFUNNEL_EVENT_HANDLERS."""

from collections.abc import Sequence

from contacts.models import Event, EventRow

SEEN: list[EventRow] = []


def remember(events: Sequence[EventRow]) -> None:
    SEEN.extend(events)


def tag(events: Sequence[EventRow]) -> None:
    """Leaves a mark in the database, so a test in another process can see the handler ran."""
    for event in events:
        Event.objects.filter(pk=event.pk).update(properties={**event.properties, "tagged": True})


def fail_on_poison(events: Sequence[EventRow]) -> None:
    for event in events:
        if event.properties.get("poison"):
            raise RuntimeError("this event breaks the handler")
    SEEN.extend(events)
