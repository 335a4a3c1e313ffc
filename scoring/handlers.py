from collections.abc import Collection

from contacts.pipeline import Changes, EventBatch
from scoring import fit, fit_engine, live


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


def on_contacts_changed(*, contact_ids: Collection[int], fields: Collection[str] | None) -> None:
    """LEADFUNNEL_CONTACT_HANDLERS entry: contacts created (``fields`` None) or whose fields
    changed get their fit score and grade again, and a new grade its stage."""
    if fields is not None and not set(fields) & {*fit_engine.FIELDS, "custom_fields"}:
        return
    fit.fit_recompute(contact_ids=contact_ids)
