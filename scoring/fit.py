"""Fit scores and grades on the contacts: written when a contact is created or its fields
change (``scoring.handlers.on_contacts_changed``, through ``contacts.changes``) and for
everyone when the fit rules or the grade cut-offs change (admin); a contact whose grade
changes goes through its history again (``scoring.plan``), since thresholds may ask for a
grade.

One definition of fit: the pure ``scoring.fit_engine``, fed the contacts' fields in chunks,
its results written grouped: one ``UPDATE … WHERE id IN (…)`` per distinct (score, grade)
pair (a handful: sums of a few rules' points), only for contacts whose fit changed. No SQL
twin of the rules to keep in step with Python (SQLite's LIKE folds ASCII case only).
Measured on PostgreSQL, 100,000 contacts, four rules (contains, between, one of, equals),
6 December 2026, on the 2-core machine shared with other sessions (load 2.8): everyone
recomputed with 83,092 changing in 3.1 s; nothing to change, 0.75 s (one read, no write); one
rule's points changed for 66,667 contacts, 3.7 s; with an SQL threshold asking for fit B, the
83,092 regraded contacts' stages planned too (no events: the plan's read only), 5.9 s.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from django.db import transaction

from contacts.models import Contact
from scoring import fit_engine
from scoring.fit_models import FitGrades, FitRule
from scoring.live import active_thresholds
from scoring.plan import plan_apply, plan_build, stored_lines

CHUNK = 5000
# Above this many regraded contacts, their stages are planned from one read of everyone's
# history (a rescore's plan, filtered) rather than an IN list of their ids.
TARGETED_PLAN_LIMIT = 2000


def active_fit_rules() -> list[fit_engine.FitRule]:
    return [rule.to_engine() for rule in FitRule.objects.filter(active=True).order_by("pk")]


@dataclass
class FitChanges:
    """What a recompute changed: contacts whose fit score changed, and whose grade did."""

    scored: int = 0
    regraded: list[int] = field(default_factory=list)
    stage_moves: int = 0


def contact_fit(contact: Contact) -> tuple[int, list[fit_engine.FitLine]]:
    """One contact's fit points with its lines ("why this fit", the contact page)."""
    fields = {name: getattr(contact, name) for name in fit_engine.FIELDS}
    fields.update(fit_engine.custom_fields_flat(contact.custom_fields))
    return fit_engine.fit_score(fields, active_fit_rules())


@transaction.atomic
def fit_recompute(*, contact_ids: Collection[int] | None = None) -> FitChanges:
    """Write the fit score and grade of these contacts (None: everyone) as the rules and
    cut-offs now give them, then move the stages of the contacts whose grade changed where
    their history now leads. Only what changed is written."""
    rules = active_fit_rules()
    grades = FitGrades.current()
    changes = FitChanges()
    groups: dict[tuple[int, str], list[int]] = defaultdict(list)
    custom = any(rule.field.startswith(fit_engine.CUSTOM_PREFIX) for rule in rules)
    for pk, fields, score, grade in _fit_rows(contact_ids, custom=custom):
        new_score, new_grade = fit_engine.fit(fields, rules, grades)
        if (new_score, new_grade) != (score, grade):
            groups[(new_score, new_grade)].append(pk)
            if new_grade != grade:
                changes.regraded.append(pk)
    for (score, grade), ids in groups.items():
        changes.scored += len(ids)
        for start in range(0, len(ids), CHUNK):
            Contact.objects.filter(pk__in=ids[start : start + CHUNK]).update(
                fit_score=score, fit_grade=grade
            )
    if changes.regraded:
        changes.stage_moves = stages_follow_grades(changes.regraded)
    return changes


def _fit_rows(
    contact_ids: Collection[int] | None, *, custom: bool = True
) -> Iterable[tuple[int, dict[str, object], int, str]]:
    """(id, fields, fit score, grade) of these contacts (None: everyone), in chunks. Their
    custom field values only when ``custom`` (a rule reads one): decoding them costs more than
    the other columns together. 100,000 contacts with four custom values each, PostgreSQL,
    6 December 2026, shared machine at load 7: reading the columns 0.4 s, with the custom
    values 1.3 s; everyone recomputed with nothing to change, two rules on contact fields
    2.5 s, two more on custom fields 5.1 s."""
    names = (*fit_engine.FIELDS, "custom_fields") if custom else fit_engine.FIELDS
    columns = ("pk", *names, "fit_score", "fit_grade")
    if contact_ids is None:
        chunks: Iterable[Collection[int] | None] = [None]
    else:
        ids = sorted(contact_ids)
        chunks = [ids[start : start + CHUNK] for start in range(0, len(ids), CHUNK)]
    for chunk in chunks:
        query = Contact.objects.order_by()
        if chunk is not None:
            query = query.filter(pk__in=chunk)
        for pk, *values, score, grade in query.values_list(*columns).iterator(chunk_size=CHUNK):
            fields = dict(zip(names, values, strict=True))
            if custom:
                fields.update(fit_engine.custom_fields_flat(fields.pop("custom_fields")))
            yield pk, fields, score, grade


def stages_follow_grades(contact_ids: Collection[int]) -> int:
    """Move the contacts whose fit grade changed to the stage their history leads to with
    the grade they have now (nothing to do while no threshold asks for a grade). Returns the
    moves made."""
    thresholds = active_thresholds()
    if not any(t.min_fit_grade for t in thresholds):
        return 0
    if len(contact_ids) <= TARGETED_PLAN_LIMIT:
        plan = plan_build(stored_lines(contact_ids), thresholds, contact_ids)
    else:
        plan = plan_build(stored_lines(), thresholds)
        wanted = set(contact_ids)
        plan.contacts = [c for c in plan.contacts if c.contact_id in wanted]
    return plan_apply(plan)
