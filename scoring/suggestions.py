"""Rule suggestions as the admin uses them: queued, run by a worker with its progress shown,
then reviewed, previewed and applied as ordinary score rules (the model is ``scoring.suggest``).

A suggested rule becomes a ``ScoreRule`` that gives its points once per contact
(``max_times = 1``) when the contact's events meet its conditions, or for recent activity for
each such event while it is at most D days old: the same sum the model ranks by, so the
figures shown before applying are what the rules do after.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from contacts import broker
from contacts.models import ContactOutcome
from contacts.reasons import coded
from scoring.models import ScoreEntry, ScoreRule, Suggestion
from scoring.rescore import rescore_start
from scoring.suggest import Known, TooFewOutcomes, features, outcome_events, suggest

SUGGEST_TASK = "scoring.tasks.suggest_rules_task"
logger = logging.getLogger(__name__)


@transaction.atomic
def suggestion_start(*, requested_by: object = None) -> Suggestion:
    """Queue a suggestion run; a worker runs it after this transaction commits."""
    run = Suggestion.objects.create(requested_by=requested_by)
    transaction.on_commit(lambda: broker.send(SUGGEST_TASK, run.pk), robust=True)
    return run


def suggestion_run(*, suggestion_id: int) -> Suggestion | None:
    """Read the outcomes and their contacts' events, fit, measure; the steps are saved as
    they pass so the admin page can show them. Safe to run twice."""
    run = Suggestion.claim(suggestion_id)
    if run is None:
        return None
    try:
        _run(run)
    except TooFewOutcomes as refusal:
        run.status, run.message = Suggestion.Status.REFUSED, str(refusal)
    except Exception as error:
        logger.exception("Rule suggestion %s failed", run.pk)
        run.status, run.message = Suggestion.Status.FAILED, str(error)[:2000]
    else:
        run.status = Suggestion.Status.DONE
    run.finished_at = timezone.now()
    run.save()
    return run


def known_outcomes() -> dict[int, Known]:
    return {
        pk: Known(won=result == ContactOutcome.Result.WON, at=at)
        for pk, result, at in ContactOutcome.objects.values_list("contact_id", "result", "at")
    }


def _run(run: Suggestion) -> None:
    outcomes = known_outcomes()
    run.won = sum(1 for known in outcomes.values() if known.won)
    run.lost = len(outcomes) - run.won
    _step(run)
    TooFewOutcomes.check(won=run.won, lost=run.lost)
    events, won = outcome_events(outcomes)
    _step(run)
    found = features(events)
    _step(run)
    suggested = suggest(found, won)
    held_out = events.contact_ids[suggested.held_out].tolist()
    run.held_out = len(held_out)
    run.auc_suggested = suggested.auc_suggested
    run.auc_current = _current_auc(held_out, won[suggested.held_out])
    run.rules = [
        {"condition": rule.condition.describe(), "points": rule.points,
         "support": round(rule.support, 4), "lift": round(rule.lift, 2)}
        for rule in suggested.rules
    ]  # fmt: skip
    _step(run)


def _step(run: Suggestion) -> None:
    run.steps_done += 1
    run.save()


def _current_auc(contact_ids: list[int], won: np.ndarray) -> float | None:
    """How today's rules rank the same held-out contacts, each with the points its ledger had
    just before its outcome: the suggestions learnt only from events before it too, and a
    client's later points would flatter today's rules."""
    from sklearn.metrics import roc_auc_score

    if len(set(won.tolist())) < 2:
        return None
    before = (
        ScoreEntry.objects.filter(contact=OuterRef("contact"), at__lt=OuterRef("at"))
        .order_by()
        .values("contact")
        .annotate(total=Sum("points"))
        .values("total")
    )
    scores = dict(
        ContactOutcome.objects.filter(contact_id__any=set(contact_ids))
        .annotate(before=Coalesce(Subquery(before), 0))
        .values_list("contact_id", "before")
    )
    return float(roc_auc_score(won, [scores.get(pk, 0) for pk in contact_ids]))


# --- From suggestion to rule ----------------------------------------------------------------


def suggested_rule(entry: dict[str, Any]) -> ScoreRule:
    """The score rule (not saved) a suggestion stands for, named in plain words."""
    condition = entry["condition"]
    rule = ScoreRule(
        event_type=condition["event_type"],
        points=entry["points"],
        url_contains=condition.get("url_contains", ""),
        property_name=condition.get("property_name", ""),
        max_times=1,
        active=True,
    )
    if "property_value" in condition:
        rule.property_value = condition["property_value"]
    elif "at_least" in condition:
        rule.property_operator = ScoreRule.Comparison.AT_LEAST
        rule.property_number = Decimal(str(condition["at_least"]))
    if condition.get("count", 1) > 1:
        rule.count_at_least = condition["count"]
        rule.count_within_days = condition["within_days"]
    if condition.get("recent_days") is not None:
        rule.max_times = None
        rule.fade_full_days = condition["recent_days"]
        rule.fade_zero_days = condition["recent_days"] + 1
    rule.name = rule.description()[: ScoreRule._meta.get_field("name").max_length]
    return rule


@transaction.atomic
def suggestions_apply(
    *, suggestion: Suggestion, indexes: Sequence[int], requested_by: object = None
) -> list[ScoreRule]:
    """Save the chosen suggestions as active score rules (each once: applying twice adds
    nothing) and rescore everyone with them. Returns the rules created."""
    suggestion = Suggestion.objects.select_for_update().get(pk=suggestion.pk)
    created = []
    for index in sorted(set(indexes)):
        if not 0 <= index < len(suggestion.rules) or suggestion.rules[index].get("applied"):
            continue
        rule = suggested_rule(suggestion.rules[index])
        rule.full_clean()
        rule.save()
        suggestion.rules[index]["applied"] = rule.pk
        created.append(rule)
    if created:
        suggestion.save(update_fields=["rules"])
        rescore_start(
            reason=coded("rescore_suggested", count=len(created)), requested_by=requested_by
        )
    return created
