from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.humanize.templatetags.humanize import intcomma
from django.db.models import Case, CharField, Count, F, Max, Q, Sum, Value, When, Window
from django.db.models.functions import RowNumber
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _

from contacts import reasons
from contacts.models import Contact, Event, StageChange
from contacts.roles import MARKETING, SALES, role_required
from contacts.views import partial_or_page, visible_contact_or_404
from scoring import engine
from scoring.fit import contact_fit
from scoring.fit_models import FitGrades, field_label
from scoring.live import active_thresholds
from scoring.models import ScoreEntry, Threshold
from scoring.plan import contact_walk

LINES_PER_GROUP = 20

# Where a contact may go next on its own: scoring climbs lead/MQL/HMQL through the funnel and
# turns a client into an ambassador; SQL and client moves are people's work.
NEXT_STAGES = {
    Contact.Stage.LEAD: ("mql", "hmql", "sql"),
    Contact.Stage.MQL: ("hmql", "sql"),
    Contact.Stage.HMQL: ("sql",),
    Contact.Stage.CLIENT: ("ambassador",),
}

# One group per cause. Machine signals (worth nothing) form one group whatever their rule; a
# line whose rule or decay rule was deleted keeps its ``reason`` as the only name it has left.
SCORED = Q(filtered=False)
ORPHAN = SCORED & Q(rule__isnull=True, decay_rule__isnull=True)
GROUP_FIELDS = {
    "group_machine": F("filtered"),
    "group_rule": Case(When(SCORED, then=F("rule_id"))),
    "group_decay": Case(When(SCORED, then=F("decay_rule_id"))),
    "group_reason": Case(
        When(ORPHAN, then=F("reason")), default=Value(""), output_field=CharField()
    ),
}
GROUP_KEY = tuple(GROUP_FIELDS)


@dataclass
class Group:
    kind: str  # rule, decay, adjustment, deleted or machine
    name: str
    total: int
    times: int
    lines: list[ScoreEntry] = field(default_factory=list)
    description: str = ""  # a rule's conditions in plain words

    @property
    def signed_total(self) -> str:
        return signed(self.total)

    @property
    def more(self) -> int:
        return self.times - len(self.lines)


def signed(points: int) -> str:
    """+15, −5 (a real minus sign), 0."""
    sign = "+" if points > 0 else "−" if points < 0 else ""
    return f"{sign}{intcomma(abs(points))}"


@role_required(MARKETING, SALES)
def score_explanation(request: HttpRequest, pk: int) -> HttpResponse:
    """Why a contact has its score (the ledger by cause) and its stage (the move that put it
    there, and what the next stage asks for)."""
    contact = visible_contact_or_404(request, pk)
    groups = ledger_groups(contact)
    scored = [group for group in groups if group.kind != "machine"]
    machine = next((group for group in groups if group.kind == "machine"), None)
    ledger_total = sum(group.total for group in groups)
    move = (
        contact.stage_changes.filter(to_stage=contact.stage)
        .select_related("actor")
        .order_by("-at", "-id")
        .first()
    )
    context = {
        **stage_reasons_now(contact, move),
        "contact": contact,
        "score_groups": scored,
        "machine_group": machine,
        "ledger_total": ledger_total,
        "ledger_differs": ledger_total != contact.score,
        "move": move,
        "next_stages": next_stage_hints(contact.stage),
        **fit_explanation(contact),
    }
    response = render(
        request,
        partial_or_page(request, "scoring/score_explanation.html", "explanation"),
        context,
    )
    patch_vary_headers(response, ["HX-Request"])
    return response


def fit_explanation(contact: Contact) -> dict[str, object]:
    """Why this fit: each fit rule that holds for the contact's fields, with the value it
    read and its points (the rules as they are now), and the grade cut-offs."""
    points, lines = contact_fit(contact)
    return {
        "fit_lines": [
            {
                "rule": line.rule,
                "field": field_label(line.field),
                "value": intcomma(line.value) if isinstance(line.value, int) else line.value,
                "points": line.points,
                "signed_points": signed(line.points),
            }
            for line in lines
        ],
        "fit_total": points,
        "fit_differs": points != contact.fit_score,
        "fit_grades": FitGrades.current(),
    }


def stage_reasons_now(contact: Contact, move: StageChange | None) -> dict[str, object]:
    """Why the contact has its stage, in the figures that hold now: when a threshold put it
    there, the contact's history walked under today's thresholds (``scoring.plan``) names the
    threshold and the score or event that reaches it, not the figures of the day it moved
    (a rule since changed may have given those). A person's move is shown as recorded."""
    if move is None or move.cause != StageChange.Cause.THRESHOLD:
        return {"stage_now": None}
    walk = contact_walk(contact, active_thresholds())
    if walk.stage != contact.stage or walk.threshold is None:
        # Today's rules lead elsewhere (a rescore is due, or a late event): say so.
        return {"stage_now": None, "stage_due": walk.stage}
    return {
        "stage_now": {
            "by": reasons.text(walk.threshold.actor_name),
            "why": reasons.text(walk.reason),
            "at": walk.at,
        }
    }


def ledger_groups(contact: Contact) -> list[Group]:
    """The contact's ledger grouped by cause, largest contribution first.

    Two queries whatever the ledger's size: the totals per group, then at most
    LINES_PER_GROUP lines of each group (a window function numbers them within their group).
    """
    entries = ScoreEntry.objects.filter(contact=contact).annotate(**GROUP_FIELDS)
    totals = (
        entries.values(*GROUP_KEY)
        .annotate(
            total=Sum("points"),
            times=Count("id"),
            last_at=Max("at"),
            rule_name=Max("rule__name"),
            decay_name=Max("decay_rule__name"),
        )
        .order_by()
    )
    groups: dict[tuple[object, ...], Group] = {}
    for row in totals:
        key = tuple(row[name] for name in GROUP_KEY)
        if row["group_machine"]:
            kind, name = "machine", _("Not scored: machine signals")
        elif row["group_rule"] is not None:
            kind, name = "rule", row["rule_name"]
        elif row["group_decay"] is not None:
            kind, name = "decay", row["decay_name"]
        else:
            # Points without a rule: a sequence's "adjust score" step, or a deleted rule's.
            reason = row["group_reason"]
            kind = "adjustment" if reasons.code(reason) == "sequence_points" else "deleted"
            name = reasons.text(reason)
        groups[key] = Group(kind=kind, name=name, total=row["total"], times=row["times"])

    if groups:
        lines = (
            entries.select_related("event", "rule", "decay_rule")
            .annotate(
                position=Window(
                    RowNumber(),
                    partition_by=[F(name) for name in GROUP_KEY],
                    order_by=[F("at").desc(), F("id").desc()],
                )
            )
            .filter(position__lte=LINES_PER_GROUP)
            .order_by("-at", "-id")
        )
        for line in lines:
            line.signed_points = signed(line.points)
            group = groups[tuple(getattr(line, name) for name in GROUP_KEY)]
            group.lines.append(line)
            if group.kind == "rule" and line.rule and not group.description:
                group.description = line.rule.description()

    return sorted(groups.values(), key=lambda g: (-abs(g.total), -g.times, str(g.name)))


def next_stage_hints(stage: str) -> list[dict[str, str]]:
    """What each stage the contact may reach next asks for, in funnel order."""
    stages = NEXT_STAGES.get(stage, ())
    if not stages:
        return []
    thresholds = sorted(
        Threshold.objects.filter(active=True, stage__in=stages),
        key=lambda t: engine.STAGES.index(t.stage),
    )
    return [
        {"stage": threshold.stage, "label": threshold.get_stage_display(), "conditions": c}
        for threshold in thresholds
        if (c := _conditions(threshold))
    ]


def _conditions(threshold: Threshold) -> str:
    parts = []
    if threshold.min_score is not None:
        parts.append(_("score ≥ %(score)s") % {"score": intcomma(threshold.min_score)})
    for event_type in threshold.event_type_list():
        parts.append(
            str(Event.Type(event_type).label) if event_type in Event.Type.values else event_type
        )
    if threshold.content_tag:
        parts.append(_("“%(tag)s” content") % {"tag": threshold.content_tag})
    # Translators: joins the conditions of a threshold, e.g. "score ≥ 60 or Demo requested".
    separator = _("or")
    conditions = f" {separator} ".join(parts)
    if conditions and threshold.min_fit_grade:
        return _("%(conditions)s and fit %(grade)s or better") % {
            "conditions": conditions,
            "grade": threshold.min_fit_grade,
        }
    return conditions
