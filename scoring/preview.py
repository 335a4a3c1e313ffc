"""What a rule change would do before it is saved: the admin's preview of a rescore.

``rescore_plan(rules, thresholds)`` is the plan a rescore applies (``scoring.plan``): every
contact's new score and stage, computed over the stored events by the rescore's own SQL and
walked through the thresholds by the same function, writing nothing. The preview's counts are
that plan's, so they are what saving will do (a live event arriving meanwhile aside). Other
reports may call it to judge a rule change before it is saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from contacts.models import Contact
from scoring import engine
from scoring.live import active_rules, active_thresholds
from scoring.plan import Plan, plan_build
from scoring.quality import RankingChange, auc_for_scores
from scoring.rescore import rules_lines


@dataclass(frozen=True)
class Preview:
    contacts_changed: int
    gained: int
    lost: int
    stage_changes: int
    moves: list[tuple[str, str, int]]  # from, to, how many
    new_sqls: int  # contacts the change sends to the sales queue
    sqls_leaving: int
    sample: list[tuple[Contact, int, int, str]]  # contact, old score, new score, new stage
    ranking: RankingChange | None = None  # how the rules now and after rank known outcomes

    @property
    def needs_confirmation(self) -> bool:
        """More new SQLs than ``SCORING_CONFIRM_NEW_SQLS``: saving asks to confirm first."""
        return self.new_sqls > settings.SCORING_CONFIRM_NEW_SQLS


def rules_with(rule: engine.Rule, *, removed: bool = False) -> list[engine.Rule]:
    """The active rules as they would be with ``rule`` saved (or deleted)."""
    others = [r for r in active_rules() if r.id != rule.id]
    return others if removed or not rule.active else [*others, rule]


def rescore_plan(
    rules: Sequence[engine.Rule], thresholds: Sequence[engine.Threshold] | None = None
) -> Plan:
    """Every contact's score and stage as a rescore with these rules and thresholds (the
    active ones by default) would leave them; writes nothing."""
    if thresholds is None:
        thresholds = active_thresholds()
    return plan_build(rules_lines(rules, now=timezone.now()), thresholds)


def rescore_preview(
    *,
    rules: Sequence[engine.Rule],
    thresholds: Sequence[engine.Threshold] | None = None,
    sample_size: int = 8,
) -> Preview:
    """What a rescore with these rules would do, computed over the stored events."""
    plan = rescore_plan(rules, thresholds)
    changed = plan.scores_changed
    moving = plan.moving
    # New SQLs first in the sample: they are what a sales team notices.
    shown = sorted(moving, key=lambda c: c.new_stage != Contact.Stage.SQL)[:sample_size]
    shown = shown or changed[:sample_size]
    people = Contact.objects.in_bulk([c.contact_id for c in shown])
    return Preview(
        contacts_changed=len(changed),
        gained=sum(1 for c in changed if c.new_score > c.score),
        lost=sum(1 for c in changed if c.new_score < c.score),
        stage_changes=len(moving),
        moves=plan.move_counts(),
        new_sqls=plan.new_sqls,
        sqls_leaving=plan.sqls_leaving,
        sample=[
            (people[c.contact_id], c.score, c.new_score, c.new_stage)
            for c in shown
            if c.contact_id in people
        ],
        ranking=auc_for_scores(
            {c.contact_id: c.new_score for c in changed}, today=timezone.localdate()
        ),
    )
