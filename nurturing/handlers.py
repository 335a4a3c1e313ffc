from contacts.pipeline import EventBatch
from nurturing.models import Sequence
from nurturing.triggers import events_apply


def on_event(batch: EventBatch) -> None:
    """LEADFUNNEL_EVENT_HANDLERS entry (after scoring): goals end enrolments, triggers start
    them. Records no events and gives no points."""
    events_apply(
        events=batch.events,
        sequences=batch.once(
            "nurturing.sequences", lambda: list(Sequence.objects.filter(active=True))
        ),
    )
