from collections.abc import Sequence

from contacts.models import EventRow
from scoring import live


def on_event(events: Sequence[EventRow]) -> None:
    """LEADFUNNEL_EVENT_HANDLERS entry: score new events, move stages their scores reach."""
    live.events_score(events=events)
