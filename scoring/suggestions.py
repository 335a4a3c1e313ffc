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
from django.utils.formats import number_format
from django.utils.text import capfirst
from django.utils.translation import gettext as _

from contacts import broker
from contacts.models import Contact, ContactOutcome
from contacts.reasons import coded
from scoring.fit import fit_recompute
from scoring.fit_models import FitRule
from scoring.models import ScoreEntry, ScoreRule, Suggestion
from scoring.rescore import rescore_start
from scoring.suggest import Known, TooFewOutcomes, features, outcome_events, suggest
from scoring.suggest_fit import FieldCondition, fit_features, outcome_people

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
    run.rules = _entries(suggested.rules)
    _step(run)
    # Fit, on its own axis: the same contacts and the same held-out part (same seed).
    found_fit = fit_features(outcome_people(events.contact_ids.tolist()))
    if found_fit.matrix.shape[1]:
        fit_suggested = suggest(found_fit, won)
        run.auc_fit = fit_suggested.auc_suggested
        run.auc_fit_current = _current_fit_auc(held_out, won[suggested.held_out])
        run.rules += _entries(fit_suggested.rules, kind="fit")
    _step(run)


def _entries(suggested: Sequence[Any], kind: str = "score") -> list[dict[str, Any]]:
    return [
        {"kind": kind, "condition": rule.condition.describe(), "points": rule.points,
         "support": round(rule.support, 4), "lift": round(rule.lift, 2)}
        for rule in suggested
    ]  # fmt: skip


def _current_fit_auc(contact_ids: list[int], won: np.ndarray) -> float | None:
    """How today's fit scores rank the same held-out contacts."""
    from sklearn.metrics import roc_auc_score

    if len(set(won.tolist())) < 2:
        return None
    fit = dict(Contact.objects.filter(pk__any=set(contact_ids)).values_list("pk", "fit_score"))
    return float(roc_auc_score(won, [fit.get(pk, 0) for pk in contact_ids]))


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


def is_fit(entry: dict[str, Any]) -> bool:
    return entry.get("kind") == "fit"


def suggested_rule(entry: dict[str, Any]) -> ScoreRule | FitRule:
    """The score rule, or fit rule, (not saved) a suggestion stands for, named in plain
    words."""
    if is_fit(entry):
        return suggested_fit_rule(entry)
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


def suggested_fit_rule(entry: dict[str, Any]) -> FitRule:
    condition = FieldCondition(**entry["condition"])
    rule = FitRule(
        field=condition.field, operator=condition.operator, value=condition.value,
        number_min=condition.minimum, number_max=condition.maximum, points=entry["points"],
    )  # fmt: skip
    rule.name = _fit_rule_name(condition)[: FitRule._meta.get_field("name").max_length]
    return rule


def _fit_rule_name(condition: FieldCondition) -> str:
    """ "Job title contains director", "Country is France", "Company size at least 50"."""
    label = capfirst(Contact._meta.get_field(condition.field).verbose_name)
    if condition.operator == "contains":
        return _("%(field)s contains %(value)s") % {"field": label, "value": condition.value}
    if condition.operator == "equals":
        return _("%(field)s is %(value)s") % {"field": label, "value": condition.value}
    if condition.minimum is not None:
        return _("%(field)s at least %(number)s") % {
            "field": label, "number": number_format(condition.minimum, force_grouping=True)
        }  # fmt: skip
    return _("%(field)s at most %(number)s") % {
        "field": label, "number": number_format(condition.maximum, force_grouping=True)
    }  # fmt: skip


@transaction.atomic
def suggestions_apply(
    *, suggestion: Suggestion, indexes: Sequence[int], requested_by: object = None
) -> list[ScoreRule]:
    """Save the chosen suggestions as active score and fit rules (each once: applying twice
    adds nothing), rescore everyone with the score rules and recompute everyone's fit with
    the fit rules. Returns the rules created."""
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
    scoring = [rule for rule in created if isinstance(rule, ScoreRule)]
    if scoring:
        rescore_start(
            reason=coded("rescore_suggested", count=len(scoring)), requested_by=requested_by
        )
    if len(scoring) < len(created):
        fit_recompute()
    return created
