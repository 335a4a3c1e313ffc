"""Decay: points taken from contacts who went quiet, once per rule and quiet spell (beat runs
``decay_apply`` daily through ``scoring.tasks.apply_decay_task``)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from contacts.models import Contact
from scoring import engine
from scoring.live import active_thresholds, thresholds_apply
from scoring.models import DecayRule, ScoreEntry

BATCH_SIZE = 1000


def decay_apply(*, as_of: datetime | None = None) -> int:
    """Apply every active decay rule to contacts quiet for long enough. Returns entries made.

    A contact gets one entry per rule and quiet spell (keyed by its last activity), so running
    this twice on a day, or every day of a long silence, takes the points once.
    """
    as_of = as_of or timezone.now()
    made = 0
    for rule in DecayRule.objects.filter(active=True):
        already = ScoreEntry.objects.filter(
            contact=OuterRef("pk"), decay_rule=rule, inactive_since=OuterRef("last_activity_at")
        )
        due = (
            Contact.objects.filter(
                last_activity_at__lte=as_of - timedelta(days=rule.inactive_days), score__gt=0
            )
            .exclude(Exists(already))
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        ids = list(due)
        for start in range(0, len(ids), BATCH_SIZE):
            made += _decay_batch(rule, ids[start : start + BATCH_SIZE], as_of)
    return made


@transaction.atomic
def _decay_batch(rule: DecayRule, contact_ids: list[int], as_of: datetime) -> int:
    decay = rule.to_engine()
    thresholds = active_thresholds()
    contacts = (
        Contact.objects.select_for_update(no_key=True).filter(pk__in=contact_ids).order_by("pk")
    )
    entries, changed = [], []
    for contact in contacts:
        points = engine.decay_points(
            decay, score=contact.score, last_activity=contact.last_activity_at, as_of=as_of
        )
        if not points:
            continue
        entries.append(
            ScoreEntry(
                contact=contact,
                points=points,
                decay_rule=rule,
                reason=rule.name,
                inactive_since=contact.last_activity_at,
                at=as_of,
            )
        )
        contact.score += points
        changed.append(contact)
    ScoreEntry.objects.bulk_create(entries, ignore_conflicts=True)
    Contact.objects.bulk_update(changed, ["score"])
    thresholds_apply(
        candidates=[(c.pk, c.stage, c.score, (), c.fit_grade) for c in changed],
        thresholds=thresholds,
    )
    return len(entries)
