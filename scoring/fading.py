"""Recency: the points of fading rules follow the age of their events, applied each night by
beat (``scoring.tasks.apply_fading_task``, just after midnight, when ages change).

A fading rule's ledger line keeps the points its event earned, worth what
``engine.faded_points`` says on the day of the last run: live scoring writes them as worth now,
this brings them to the new day, and a rescore writes them as worth on its day, so the three
agree for the same moment. The line's reason names the rule and how it fades; its points and its
event's date say how far.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from django.db import transaction
from django.db.models import Case, F, IntegerField, Value, When
from django.utils import timezone

from scoring import engine
from scoring.live import active_rules, contacts_lock, scores_write, site_timezone, thresholds_apply
from scoring.models import ScoreEntry
from scoring.rule_sql import DayNumber

BATCH_SIZE = 1000


def fade_apply(*, as_of: datetime | None = None) -> int:
    """Bring every fading rule's lines to what they are worth at ``as_of``; returns lines
    changed. Safe to run at any time and twice: a line already right is not written."""
    as_of = as_of or timezone.now()
    changed = 0
    for rule in (rule for rule in active_rules() if rule.fades):
        due = sorted(set(_stale(rule, as_of).values_list("contact_id", flat=True)))
        for start in range(0, len(due), BATCH_SIZE):
            changed += _fade_batch(rule, due[start : start + BATCH_SIZE], as_of)
    return changed


def _stale(rule: engine.Rule, as_of: datetime, contact_ids: list[int] | None = None):  # type: ignore[no-untyped-def]
    """The rule's lines whose points are not what their event's age makes them worth, with
    the points they should have (``worth``). Every line holds the rule's points as earned (a
    fading rule has no points cap; "at most N times" keeps or drops whole lines)."""
    age = Value(engine.day_number(as_of, site_timezone())) - DayNumber(
        "event__occurred_at", site_timezone()
    )
    full, zero = rule.fade_full_days or 0, rule.fade_zero_days or 0
    size = Value(abs(rule.points)) * (Value(zero) - F("age")) / Value(zero - full)
    worth = Case(
        When(age__lte=full, then=Value(rule.points)),
        When(age__gte=zero, then=Value(0)),
        default=size if rule.points > 0 else -size,
        output_field=IntegerField(),
    )
    lines = ScoreEntry.objects.filter(rule_id=rule.id, event__isnull=False, filtered=False)
    if contact_ids is not None:
        lines = lines.filter(contact_id__any=set(contact_ids))
    return lines.alias(age=age).annotate(worth=worth).exclude(points=F("worth")).order_by()


@transaction.atomic
def _fade_batch(rule: engine.Rule, contact_ids: list[int], as_of: datetime) -> int:
    contacts = contacts_lock(contact_ids)
    # Read again under the lock: live scoring may have written lines meanwhile.
    stale = list(
        _stale(rule, as_of, list(contacts)).values_list("pk", "contact_id", "points", "worth")
    )
    by_worth: dict[int, list[int]] = defaultdict(list)
    deltas = []
    for pk, contact_id, points, worth in stale:
        by_worth[worth].append(pk)
        deltas.append(engine.Line(contact_id, rule.id, 0, worth - points, as_of, ""))
    for worth, ids in by_worth.items():
        ScoreEntry.objects.filter(pk__any=set(ids)).update(points=worth)
    moved = scores_write(contacts, deltas)
    thresholds_apply(
        candidates=[
            (pk, contacts[pk].stage, contacts[pk].score, (), contacts[pk].fit_grade) for pk in moved
        ]
    )
    return len(stale)
