"""What a rule change would do before it is saved: the admin's preview of a rescore, computed
over the stored events by the rescore's own SQL, writing nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils import timezone

from contacts.models import Contact
from scoring import engine
from scoring.live import active_rules, active_thresholds
from scoring.quality import RankingChange, auc_for_scores
from scoring.rescore import new_scores


@dataclass(frozen=True)
class Preview:
    contacts_changed: int
    gained: int
    lost: int
    stage_changes: int
    moves: list[tuple[str, str, int]]  # from, to, how many
    sample: list[tuple[Contact, int, int, str]]  # contact, old score, new score, new stage
    ranking: RankingChange | None = None  # how the rules now and after rank known outcomes


def rules_with(rule: engine.Rule, *, removed: bool = False) -> list[engine.Rule]:
    """The active rules as they would be with ``rule`` saved (or deleted)."""
    others = [r for r in active_rules() if r.id != rule.id]
    return others if removed or not rule.active else [*others, rule]


def rescore_preview(*, rules: Sequence[engine.Rule], sample_size: int = 8) -> Preview:
    """What a rescore with these rules would do, computed over the stored events; writes nothing."""
    changes = new_scores(rules, now=timezone.now())
    thresholds = active_thresholds()
    moves: Counter[tuple[str, str]] = Counter()
    movers = []
    for change in changes:
        steps = engine.stage_moves(change.stage, change.new, [], thresholds)
        if steps:
            moves[(change.stage, steps[-1].to)] += 1
            movers.append((change, steps[-1].to))
    shown = movers[:sample_size] or [(c, c.stage) for c in changes[:sample_size]]
    people = Contact.objects.in_bulk([change.contact_id for change, _ in shown])
    return Preview(
        contacts_changed=len(changes),
        gained=sum(1 for c in changes if c.new > c.old),
        lost=sum(1 for c in changes if c.new < c.old),
        stage_changes=len(movers),
        moves=[(a, b, n) for (a, b), n in sorted(moves.items())],
        sample=[
            (people[change.contact_id], change.old, change.new, stage)
            for change, stage in shown
            if change.contact_id in people
        ],
        ranking=auc_for_scores(
            {change.contact_id: change.new for change in changes}, today=timezone.localdate()
        ),
    )
