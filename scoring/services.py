"""Scoring write use cases: live scoring of new events, daily decay, threshold moves."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext as _

from contacts.models import Contact, Event, StageChange
from contacts.services import StageMoveError, stage_move
from scoring import engine
from scoring.models import DecayRule, ScoreEntry, ScoreRule, Threshold

BATCH_SIZE = 1000


def site_timezone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def active_rules() -> list[engine.Rule]:
    return [rule.to_engine() for rule in ScoreRule.objects.filter(active=True)]


def active_thresholds() -> list[engine.Threshold]:
    return [threshold.to_engine() for threshold in Threshold.objects.filter(active=True)]


def event_fact(event: Event) -> engine.EventFact:
    properties = event.properties if isinstance(event.properties, dict) else {}
    return engine.EventFact(
        id=event.pk,
        contact_id=event.contact_id,
        type=event.type,
        occurred_at=event.occurred_at,
        properties=properties,
        key=event.idempotency_key or "",
    )


@transaction.atomic
def events_score(*, events: Sequence[Event]) -> list[ScoreEntry]:
    """Score a batch of new events: ledger lines and score in one transaction, then thresholds.

    A handful of queries per batch, not per event: contacts are locked once (in id order, so two
    batches never deadlock), caps are read once, lines inserted in one statement.
    """
    facts_by_contact: dict[int, list[engine.EventFact]] = defaultdict(list)
    for event in events:
        facts_by_contact[event.contact_id].append(event_fact(event))
    if not facts_by_contact:
        return []
    rules = active_rules()
    contacts = {
        contact.pk: contact
        for contact in Contact.objects.select_for_update()
        .filter(pk__in=facts_by_contact)
        .order_by("pk")
    }
    earned = _earned(contacts.keys(), rules, [f for fs in facts_by_contact.values() for f in fs])
    tz = site_timezone()
    lines: list[engine.Line] = []
    for contact_id, facts in facts_by_contact.items():
        if contact_id not in contacts:  # deleted meanwhile
            continue
        contact_lines, _ = engine.score_events(
            rules,
            facts,
            earned.get(contact_id, engine.Earned()),
            tz=tz,
            count_machine_signals=settings.SCORE_MACHINE_SIGNALS,
        )
        lines.extend(contact_lines)
    entries = ScoreEntry.objects.bulk_create(
        [
            ScoreEntry(
                contact_id=line.contact_id,
                points=line.points,
                rule_id=line.rule_id,
                event_id=line.event_id,
                reason=line.reason,
                filtered=line.filtered,
                at=line.at,
            )
            for line in lines
        ],
        batch_size=BATCH_SIZE,
    )
    changed = _add_points(contacts, lines)
    thresholds = active_thresholds()
    for contact_id, facts in facts_by_contact.items():
        contact = contacts.get(contact_id)
        if contact is not None and (contact_id in changed or facts):
            apply_thresholds(contact=contact, events=facts, thresholds=thresholds)
    return entries


def _earned(
    contact_ids: Iterable[int], rules: Sequence[engine.Rule], facts: Sequence[engine.EventFact]
) -> dict[int, engine.Earned]:
    """What each contact already earned, as far as caps and double-scoring need to know."""
    contact_ids = list(contact_ids)
    times: dict[int, dict[int, int]] = defaultdict(dict)
    period_points: dict[int, dict[tuple[int, object], int]] = defaultdict(dict)
    scored: dict[int, set[tuple[int, str]]] = defaultdict(set)

    counted = [rule.id for rule in rules if rule.max_times]
    if counted:
        rows = (
            ScoreEntry.objects.filter(contact_id__in=contact_ids, rule_id__in=counted)
            .exclude(points=0)
            .values_list("contact_id", "rule_id")
            .annotate(n=Count("id"))
        )
        for contact_id, rule_id, n in rows:
            times[contact_id][rule_id] = n

    periodic = {rule.id: rule for rule in rules if rule.cap_period}
    if periodic and facts:
        since = min(f.occurred_at for f in facts) - timedelta(days=32)
        tz = site_timezone()
        rows = ScoreEntry.objects.filter(
            contact_id__in=contact_ids, rule_id__in=periodic, at__gte=since
        ).values_list("contact_id", "rule_id", "at", "points")
        for contact_id, rule_id, at, points in rows:
            key = (rule_id, engine.period_start(at, periodic[rule_id].cap_period, tz))
            period_points[contact_id][key] = period_points[contact_id].get(key, 0) + points

    identity = {f.id: f.identity for f in facts}
    rows = ScoreEntry.objects.filter(event_id__in=identity, rule__isnull=False).values_list(
        "contact_id", "rule_id", "event_id"
    )
    for contact_id, rule_id, event_id in rows:
        scored[contact_id].add((rule_id, identity[event_id]))

    return {
        contact_id: engine.Earned(
            times=times[contact_id],
            period_points=period_points[contact_id],
            scored=frozenset(scored[contact_id]),
        )
        for contact_id in contact_ids
    }


def _add_points(contacts: dict[int, Contact], lines: Iterable[engine.Line]) -> set[int]:
    deltas: dict[int, int] = defaultdict(int)
    for line in lines:
        deltas[line.contact_id] += line.points
    changed = [contacts[cid] for cid, delta in deltas.items() if delta]
    for contact in changed:
        contact.score += deltas[contact.pk]
    Contact.objects.bulk_update(changed, ["score"], batch_size=BATCH_SIZE)
    return {contact.pk for contact in changed}


def apply_thresholds(
    *,
    contact: Contact,
    events: Sequence[engine.EventFact] = (),
    thresholds: Sequence[engine.Threshold] | None = None,
) -> list[StageChange]:
    """Move the contact through every stage its score or new events reach (or back to lead)."""
    if thresholds is None:
        thresholds = active_thresholds()
    changes = []
    for move in engine.stage_moves(contact.stage, contact.score, events, thresholds):
        try:
            changes.append(
                stage_move(
                    contact=contact,
                    to=move.to,
                    cause=StageChange.Cause.THRESHOLD,
                    actor_name=_("Threshold %(label)s") % {"label": move.threshold.label},
                    reason=move.reason,
                )
            )
        except StageMoveError:
            break  # e.g. an anonymous suspect: it has to leave an email first
    return changes


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
    contacts = Contact.objects.select_for_update().filter(pk__in=contact_ids).order_by("pk")
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
    for contact in changed:
        apply_thresholds(contact=contact, thresholds=thresholds)
    return len(entries)
