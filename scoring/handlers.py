from contacts.pipeline import Changes, EventBatch
from scoring import live


def on_event(batch: EventBatch) -> Changes:
    """LEADFUNNEL_EVENT_HANDLERS entry: score new events (ledger lines), move the stages their
    scores reach; returns the points given (the pipeline adds them to the scores with the
    contacts' last activity, one write per contact) and the ``stage_changed`` events recorded,
    which the pipeline handles next."""
    scored = live.events_score(
        events=batch.events,
        contacts=batch.contacts,
        rules=batch.once("scoring.rules", live.active_rules),
        thresholds=batch.once("scoring.thresholds", live.active_thresholds),
    )
    return Changes(points=scored.points, events=scored.event_ids)
