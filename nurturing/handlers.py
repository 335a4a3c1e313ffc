from collections.abc import Sequence

from contacts.models import EventRow
from nurturing import services


def on_event(events: Sequence[EventRow]) -> None:
    """LEADFUNNEL_EVENT_HANDLERS entry (after scoring): goals end enrolments, triggers start
    them."""
    services.events_apply(events=events)
