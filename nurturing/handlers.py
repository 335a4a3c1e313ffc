from collections.abc import Sequence

from contacts.models import EventRow
from nurturing.triggers import events_apply


def on_event(events: Sequence[EventRow]) -> None:
    """LEADFUNNEL_EVENT_HANDLERS entry (after scoring): goals end enrolments, triggers start
    them."""
    events_apply(events=events)
