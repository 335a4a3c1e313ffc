"""Assignment beside the pull queue: a sweep hands new SQLs to reps, by each team's choice.

Every minute (beat, ``assign_sqls_task``) the sweep reads the SQLs waiting in the queue, routes
each with the active rules (``contacts.sales.routing``: first rule that holds → its team, or a
named rep of it; none → the default team; no team → the pull queue), and gives the leads of
teams in ``round_robin`` or ``rules`` mode to their reps on duty with room under their capacity
(``max_open_leads`` counts the SQLs they own). A team in ``pull`` mode, a lead no team takes,
and a lead no rep can take now (all off duty or full) stay in the queue, tried again at the next
sweep. With no team out of pull mode, the sweep stops at its first query: the queue is as before.

Several workers may sweep at once. A batch locks only the leads it will give
(``FOR UPDATE SKIP LOCKED``: a lead another worker or a rep is taking is left to them), then
its teams' rows (id order), so that the choice of reps, their loads and the round robin's
place (``Team.last_assigned``) are read and written by one worker at a time per team: with
four reps, 10,000 leads assigned by five workers at once give each 2,500 (± 1). The owner is
set by compare-and-set (still waiting, no owner), as a claim does; each lead given gets one
``assigned`` audit row saying which rule chose, and one notification to its rep.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from contacts.models import AssignmentRule, Contact, ContactAudit, Notification, SalesRep, Team
from contacts.models.assignment import FIELDS
from contacts.notifications import notify_each
from contacts.reasons import coded
from contacts.roles import SALES, SALES_MANAGER
from contacts.sales import routing

logger = logging.getLogger(__name__)

# Leads read, and given, per transaction: the team lock is held for one batch's writes.
BATCH_SIZE = 500


@dataclass(frozen=True)
class Plan:
    """What a sweep reads once: the active rules in order, and the teams."""

    rules: tuple[routing.Rule, ...]
    modes: dict[int, str]  # team id → assignment mode
    names: dict[int, str]  # team id → name
    default_team: int | None
    notes: dict[int, dict[str, object]]  # rule id → the parameters of its audit note


def sqls_assign(*, batch_size: int = BATCH_SIZE) -> int:
    """Give the waiting SQLs their reps, as the teams' assignment says; how many were given.
    Each batch is its own transaction, so that a worker holds its locks for one batch only."""
    plan = _plan()
    if plan is None:
        return 0
    # The waiting SQLs' ids in the queue's order (highest score, then longest wait: when reps
    # are short of room, the best leads get it), from its partial index (contact_sql_queue:
    # its size is the queue's, not the contacts'); then batch by batch.
    waiting = list(Contact.objects.sql_queue().values_list("pk", flat=True))
    return sum(
        _assign_batch(plan=plan, ids=waiting[start : start + batch_size])
        for start in range(0, len(waiting), batch_size)
    )


def _plan() -> Plan | None:
    teams = list(Team.objects.values_list("pk", "assignment", "name", "is_default"))
    if all(mode == Team.Assignment.PULL for _pk, mode, _name, _default in teams):
        return None
    modes = {pk: mode for pk, mode, _name, _default in teams}
    rules: list[routing.Rule] = []
    notes: dict[int, dict[str, object]] = {}
    labels = dict(_custom_labels())
    reps = dict(_rep_names())
    names = {pk: name for pk, _mode, name, _default in teams}
    for rule in AssignmentRule.objects.filter(active=True).order_by("position", "pk"):
        # A named rep counts only in a team assigning by rules (``AssignmentRule.clean``).
        rep_id = rule.rep_id if modes.get(rule.team_id) == Team.Assignment.RULES else None
        rules.append(
            routing.Rule(
                id=rule.pk,
                position=rule.position,
                field=rule.field,
                operator=rule.operator,
                team_id=rule.team_id,
                rep_id=rep_id,
                value=rule.value,
                values=rule.value_list(),
                number_min=rule.number_min,
                number_max=rule.number_max,
            )  # fmt: skip
        )
        notes[rule.pk] = _rule_params(rule, labels, names, reps.get(rep_id or 0, ""))
    default = next((pk for pk, _mode, _name, is_default in teams if is_default), None)
    return Plan(tuple(rules), modes, names, default, notes)


def _custom_labels() -> list[tuple[str, str]]:
    from contacts.models import CustomField

    return [
        (f"{routing.CUSTOM_PREFIX}{key}", label)
        for key, label in CustomField.objects.values_list("key", "label")
    ]


def _rep_names() -> list[tuple[int, str]]:
    users = SalesRep.objects.filter(assignment_rules__isnull=False).select_related("user")
    return [(rep.pk, rep.user.get_full_name() or rep.user.get_username()) for rep in users]


def _rule_params(
    rule: AssignmentRule, labels: dict[str, str], teams: dict[int, str], rep: str
) -> dict[str, object]:
    """The audit note's parameters: the rule as it reads today (names, not ids: the note
    stays true when the rule changes later)."""
    params: dict[str, object] = {
        "position": rule.position,
        "field": rule.field,
        "operator": rule.operator,
        "team": teams.get(rule.team_id, ""),
    }
    if rule.field in labels:
        params["label"] = labels[rule.field]
    if rule.operator == AssignmentRule.Operator.BETWEEN:
        params.update(min=rule.number_min, max=rule.number_max)
    elif rule.operator == AssignmentRule.Operator.IN:
        params["values"] = list(rule.value_list())
    else:
        params["value"] = rule.value.strip()
    if rep:
        params["rep"] = rep
    return params


@transaction.atomic
def _assign_batch(*, plan: Plan, ids: list[int]) -> int:
    """Route these SQLs, if they still wait, and give those a rep can take; how many."""
    rows = list(
        Contact.objects.filter(pk__in=ids, stage=Contact.Stage.SQL, owner__isnull=True).values_list(
            "pk", *FIELDS, "custom_fields"
        )
    )
    # Lead id → (team, named rep or None, rule or None), for the teams that hand leads out.
    routed: dict[int, tuple[int, int | None, routing.Rule | None]] = {}
    for pk, *values, custom in rows:
        rule = routing.route(routing.contact_fields(FIELDS, values, custom), plan.rules)
        team = rule.team_id if rule is not None else plan.default_team
        if team is not None and plan.modes.get(team, Team.Assignment.PULL) != Team.Assignment.PULL:
            routed[pk] = (team, rule.rep_id if rule else None, rule)
    if not routed:
        return 0
    # The leads still waiting that nobody else holds: another worker's batch, a rep claiming
    # one now, the scoring of its events; those are theirs (or the next sweep's).
    locked = set(
        Contact.objects.filter(pk__in=routed, stage=Contact.Stage.SQL, owner__isnull=True)
        .select_for_update(skip_locked=True)
        .values_list("pk", flat=True)
    )
    by_team: dict[int, list[int]] = defaultdict(list)
    for pk in ids:  # in the queue's order
        if pk in locked:
            by_team[routed[pk][0]].append(pk)
    if not by_team:
        return 0
    # The teams' rows, in id order (two workers never wait on each other crosswise): from
    # here to the commit, this worker alone chooses reps for these teams.
    places = dict(
        Team.objects.select_for_update()
        .filter(pk__in=by_team)
        .order_by("pk")
        .values_list("pk", "last_assigned_id")
    )
    room, members = _reps_with_room(list(places))
    now = timezone.now()
    given: dict[int, int] = {}  # lead → rep
    for team, leads in by_team.items():
        waiting = []
        for pk in leads:  # a named rep first, while they have room
            rep = routed[pk][1]
            if routing.take(room, rep):
                given[pk] = rep  # type: ignore[assignment]
            else:
                waiting.append(pk)
        reps = routing.round_robin(
            members.get(team, []), after=places.get(team), room=room, count=len(waiting)
        )
        given.update(zip(waiting, reps, strict=False))
        if reps:
            Team.objects.filter(pk=team).update(last_assigned_id=reps[-1])
    return _write(given=given, routed=routed, plan=plan, now=now)


def _reps_with_room(teams: list[int]) -> tuple[dict[int, int | None], dict[int, list[int]]]:
    """The reps of ``teams`` who take leads now (on duty, active, in the sales role) and the
    room each has under their capacity (None: no limit); and each team's such reps."""
    eligible = (
        SalesRep.objects.filter(team_id__in=teams, on_duty=True, user__is_active=True)
        .filter(Q(user__is_staff=True) | Q(user__groups__name__in=[SALES, SALES_MANAGER]))
        .values_list("user_id", "team_id", "max_open_leads")
        .distinct()
    )
    members: dict[int, list[int]] = defaultdict(list)
    limits: dict[int, int | None] = {}
    for rep, team, limit in eligible:
        members[team].append(rep)
        limits[rep] = limit
    capped = [rep for rep, limit in limits.items() if limit is not None]
    open_leads = dict(
        Contact.objects.filter(owner_id__in=capped, stage=Contact.Stage.SQL)
        .values_list("owner_id")
        .annotate(n=Count("*"))
        .order_by()
    )
    room = {
        rep: None if limit is None else max(0, limit - open_leads.get(rep, 0))
        for rep, limit in limits.items()
    }
    return room, members


def _write(
    *,
    given: dict[int, int],
    routed: dict[int, tuple[int, int | None, routing.Rule | None]],
    plan: Plan,
    now: datetime,
) -> int:
    """Owners by compare-and-set (one UPDATE per rep), then an audit row and a notification
    for each lead given. Returns how many."""
    by_rep: dict[int, list[int]] = defaultdict(list)
    for pk, rep in given.items():
        by_rep[rep].append(pk)
    done: dict[int, int] = {}
    for rep, leads in by_rep.items():
        waiting = Contact.objects.filter(pk__in=leads, owner__isnull=True, stage=Contact.Stage.SQL)
        if waiting.update(owner_id=rep, claimed_at=now, updated_at=now) != len(leads):
            # Cannot happen while the rows are locked; if it does, write only what we won.
            won = Contact.objects.filter(pk__in=leads, owner_id=rep, claimed_at=now)
            leads = list(won.values_list("pk", flat=True))
            logger.warning("assignment lost leads to another writer (rep %s)", rep)
        done.update(dict.fromkeys(leads, rep))
    audits = ContactAudit.objects.bulk_create(
        ContactAudit(
            contact_id=pk,
            action=ContactAudit.Action.ASSIGNED,
            owner_id=rep,
            note=_note(routed[pk], plan, rep),
            at=now,
        )
        for pk, rep in done.items()
    )
    notify_each(
        kind=Notification.Kind.ASSIGNED,
        items=((audit.owner_id, audit.contact_id, {"rule": audit.note}, audit) for audit in audits),
        at=now,
    )
    return len(audits)


def _note(route: tuple[int, int | None, routing.Rule | None], plan: Plan, rep: int) -> str:
    """Which rule gave the lead, coded (``contacts.reasons``: read in the reader's language)."""
    team, named, rule = route
    if rule is None:
        return coded("assigned_default_team", team=plan.names.get(team, ""))
    params = plan.notes[rule.id]
    if named is not None and named == rep:
        return coded("assigned_rule_rep", **params)
    return coded("assigned_rule_round_robin", **{k: v for k, v in params.items() if k != "rep"})
