"""What a rescore does to every contact's score and stage: the plan the admin's preview shows
and the rescore applies, computed once by the same function (``plan_build``).

The policy (README, "Scoring"): a contact's stage is a function of its history and of the
rules and thresholds as they are now, never of the order they were edited in.

- The history is, in time order: its scored events (the sum of their ledger lines under the
  rules now), the ledger lines without event (decay, a sequence's points), the events a
  threshold qualifies on (a demo request, high-intent content), and the stages given by
  anything but a threshold: a person's move or outcome, a sequence's move, a form, an import,
  and a claim (a claimed contact is an SQL).
- ``engine.stages_walk`` goes through it from the contact's first stage (the ``from`` of its
  first recorded move, or its stage when it has none), looking at the thresholds after every
  step: up to the highest stage reached, MQL and HMQL back to lead below their exit score,
  SQL never down while the history goes on. Live scoring takes the same steps as events
  arrive; a rescore takes them all again with the rules now. A threshold move that only a
  rule since changed made is undone by the rescore (also out of SQL); what a person did is a
  step of the history, never undone: a moved, claimed or recycled contact keeps the stage the
  person gave it, and thresholds carry on from there as they do live. A contact someone owns
  and an anonymous one are never moved by a rescore.
- Live scoring follows the order events arrive in, a rescore the order they happened in: the
  two agree when events arrive in time order (the usual case); a rescore settles late ones.

A ledger line of no points (a faded page view, a machine signal's filtered line) is not a
step: it changes neither the score nor what a threshold qualifies on, and live scoring makes
no step of it either. Leaving them out read 0.83 million lines instead of 1.23 million in the
rescore benchmark's ledger under the shipped rules (a third of the stages phase).

Raw SQL: the history is one UNION ALL of ORM querysets and the ledger lines' SELECT (the
rescore's own ``lines_sql`` for a preview, the stored ledger after a rescore), sorted by the
database and read in chunks, so that a million lines never sit in memory at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from itertools import groupby
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.db.models import ExpressionWrapper, OuterRef, Q, Subquery, TextField, Value
from django.db.models.fields import BooleanField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.utils.dateparse import parse_datetime

from contacts.models import ALLOWED_TRANSITIONS, Contact, ContactAudit, Event, StageChange
from contacts.reasons import coded
from contacts.stages import PlannedMove, stage_move_many
from scoring import engine
from scoring.models import ScoreEntry

BATCH_SIZE = 1000
CHUNK = 10_000
SQL = Contact.Stage.SQL


class PlannedContact(NamedTuple):
    """One contact's score and stage now, and as the rules and thresholds of the plan make
    them; ``threshold`` and ``reason`` say why the new stage (none: a person gave it)."""

    contact_id: int
    stage: str
    score: int
    new_stage: str
    new_score: int
    threshold: engine.Threshold | None = None
    reason: str = ""

    @property
    def moves(self) -> bool:
        return self.new_stage != self.stage


@dataclass
class Plan:
    """Every contact's new score and stage (``contacts``), and the counts people read."""

    contacts: list[PlannedContact] = field(default_factory=list)

    @property
    def moving(self) -> list[PlannedContact]:
        return [c for c in self.contacts if c.moves]

    @property
    def scores_changed(self) -> list[PlannedContact]:
        return [c for c in self.contacts if c.new_score != c.score]

    def move_counts(self) -> list[tuple[str, str, int]]:
        """(from, to, how many), in funnel order."""
        counts = Counter((c.stage, c.new_stage) for c in self.moving)
        order = Contact.Stage.values
        return [(a, b, n) for (a, b), n in sorted(
            counts.items(), key=lambda item: (order.index(item[0][0]), order.index(item[0][1]))
        )]  # fmt: skip

    @property
    def new_sqls(self) -> int:
        """Contacts the plan brings into SQL: the sales queue's newcomers."""
        return sum(1 for c in self.moving if c.new_stage == SQL)

    @property
    def sqls_leaving(self) -> int:
        return sum(1 for c in self.moving if c.stage == SQL)


def plan_build(
    lines: tuple[str, Sequence[Any]],
    thresholds: Sequence[engine.Threshold],
    contact_ids: Collection[int] | None = None,
) -> Plan:
    """Walk every contact's history (or only these contacts') under ``thresholds``, with its
    fit grade now, its ledger lines being ``lines`` (a SELECT of contact, at, event, points,
    line id: ``stored_lines`` or the rescore's ``rules_lines``). Writes nothing."""
    which = None if contact_ids is None else Q(contact_id__in=list(contact_ids))
    contacts = _contacts(None if contact_ids is None else Q(pk__in=list(contact_ids)))
    plan = Plan()
    seen: set[int] = set()
    for contact_id, rows in groupby(_history(lines, thresholds, which), key=lambda row: row[0]):
        seen.add(contact_id)
        now = contacts.get(contact_id)
        if now is not None:
            walk = engine.stages_walk(now.start, 0, _steps(rows), thresholds, now.fit_grade)
            plan.contacts.append(_planned(contact_id, now, walk))
    for contact_id, now in contacts.items():
        if contact_id not in seen:
            plan.contacts.append(_planned(contact_id, now, engine.Walk(now.start, 0)))
    plan.contacts.sort(key=lambda c: c.contact_id)
    return plan


def plan_apply(plan: Plan) -> int:
    """Move the contacts the plan moves, in batches, each from the stage the plan saw (one a
    live event moved meanwhile is left to that event). Returns the moves made."""
    moving = plan.moving
    moved = 0
    for start in range(0, len(moving), BATCH_SIZE):
        with transaction.atomic():
            moves = [
                PlannedMove(
                    contact_id=c.contact_id,
                    from_stage=c.stage,
                    to=c.new_stage,
                    reason=c.reason or coded("stage_recomputed", score=c.new_score),
                    actor_name=c.threshold.actor_name if c.threshold else coded("rescore"),
                )
                for c in moving[start : start + BATCH_SIZE]
            ]
            moved += len(stage_move_many(moves=moves, cause=StageChange.Cause.THRESHOLD))
    return moved


def ledger_columns() -> list[str]:
    """The ledger's contact, at, event, points and id columns, quoted, as lines are read."""
    quote = connection.ops.quote_name
    return [quote(ScoreEntry._meta.get_field(name).column)
            for name in ("contact", "at", "event", "points", "id")]  # fmt: skip


def stored_lines(contact_id: int | Collection[int] | None = None) -> tuple[str, list[Any]]:
    """The ledger as stored (one contact's, some contacts', or everyone's), as ``plan_build``
    reads lines: columns l0 to l4 (contact, at, event, points, line id)."""
    columns = ledger_columns()
    select = ", ".join(f"{column} AS l{n}" for n, column in enumerate(columns))
    sql = f"SELECT {select} FROM {connection.ops.quote_name(ScoreEntry._meta.db_table)}"
    if contact_id is None:
        return sql, []
    if isinstance(contact_id, int):
        return f"{sql} WHERE {columns[0]} = %s", [contact_id]
    ids = sorted(contact_id)
    return f"{sql} WHERE {columns[0]} IN ({', '.join(['%s'] * len(ids))})", ids


def contact_walk(contact: Contact, thresholds: Sequence[engine.Threshold]) -> engine.Walk:
    """One contact's history walked under ``thresholds``, its ledger as stored: why it has the
    stage it has, with the figures that hold now (the contact page)."""
    now = _contacts(Q(pk=contact.pk)).get(contact.pk)
    if now is None:
        return engine.Walk(contact.stage, contact.score)
    rows = _history(stored_lines(contact.pk), thresholds, Q(contact_id=contact.pk))
    return engine.stages_walk(now.start, 0, _steps(rows), thresholds, now.fit_grade)


# --- Reading the history -------------------------------------------------------------------


class _Now(NamedTuple):
    stage: str
    score: int
    start: str
    movable: bool  # known (an email or an external id) and no owner: a rescore may move it
    fit_grade: str


def _contacts(which: Q | None = None) -> dict[int, _Now]:
    which = which or Q()
    first = StageChange.objects.filter(contact=OuterRef("pk")).order_by("at", "id")
    rows = (
        Contact.objects.filter(which)
        .order_by()
        .annotate(
            first_stage=Subquery(first.values("from_stage")[:1]),
            movable=ExpressionWrapper(
                (Q(email__isnull=False) | Q(external_id__isnull=False)) & Q(owner__isnull=True),
                output_field=BooleanField(),
            ),
        )
        .values_list("pk", "stage", "score", "first_stage", "movable", "fit_grade")
    )
    return {pk: _Now(stage, score, first or stage, bool(movable), grade)
            for pk, stage, score, first, movable, grade in rows}  # fmt: skip


def _planned(contact_id: int, now: _Now, walk: engine.Walk) -> PlannedContact:
    stage = walk.stage
    if stage != now.stage and not (now.movable and stage in ALLOWED_TRANSITIONS[now.stage]):
        stage = now.stage  # kept: someone owns it, it is anonymous, or the funnel refuses
    threshold, reason = (walk.threshold, walk.reason) if stage == walk.stage else (None, "")
    return PlannedContact(contact_id, now.stage, now.score, stage, walk.score, threshold, reason)


# Kinds of history rows, in the order they take at the same instant: a person's stage first
# (a form makes a lead, then its event is scored), then events, then lines without event.
PERSON, EVENT, LINE = 0, 1, 2


def _history(
    lines: tuple[str, Sequence[Any]],
    thresholds: Sequence[engine.Threshold],
    which: Q | None = None,
) -> Iterator[tuple[Any, ...]]:
    """(contact, at, kind, reference, points, stage, event type, content tag) rows, sorted by
    contact, time, kind and reference, read in chunks."""
    which = which or Q()
    parts: list[tuple[str, Sequence[Any]]] = []
    given = (
        StageChange.objects.filter(which)
        .exclude(cause=StageChange.Cause.THRESHOLD)
        .order_by()
        .values_list("contact_id", "at", Value(PERSON), "id", Value(0), "to_stage",
                     Value(""), Value(""))
    )  # fmt: skip
    claimed = (
        ContactAudit.objects.filter(which, action=ContactAudit.Action.CLAIMED)
        .order_by()
        .values_list("contact_id", "at", Value(PERSON), "id", Value(0), Value(SQL),
                     Value(""), Value(""))
    )  # fmt: skip
    for query in (given, claimed):
        parts.append(query.query.sql_with_params())
    lines_sql, lines_params = lines
    parts.append((
        f"SELECT l0, l1, CASE WHEN l2 IS NULL THEN {LINE} ELSE {EVENT} END, COALESCE(l2, l4), "
        f"l3, '', '', '' FROM ({lines_sql}) AS lines WHERE l3 <> 0",
        lines_params,
    ))  # fmt: skip
    qualifying = _qualifying_events(thresholds, which)
    if qualifying is not None:
        parts.append(qualifying.query.sql_with_params())
    sql = " UNION ALL ".join(f"SELECT * FROM ({part}) AS p{n}" for n, (part, _) in enumerate(parts))
    params = [param for _, part_params in parts for param in part_params]
    with connection.chunked_cursor() as cursor:
        cursor.execute(f"{sql} ORDER BY 1, 2, 3, 4", params)
        while rows := cursor.fetchmany(CHUNK):
            yield from rows


def _qualifying_events(thresholds: Sequence[engine.Threshold], which: Q) -> Any:
    types = {kind for t in thresholds if t.active for kind in t.event_types}
    tags = {t.content_tag for t in thresholds if t.active and t.content_tag}
    if not types and not tags:
        return None
    tag = Cast(KeyTextTransform("content_tag", "properties"), output_field=TextField())
    events = Event.objects.filter(which).order_by().annotate(tag_text=tag)
    wanted = Q(type__in=types) | Q(tag_text__in=tags)
    return events.filter(wanted).values_list(
        "contact_id", "occurred_at", Value(EVENT), "id", Value(0), Value(""), "type", "tag_text"
    )


def _steps(rows: Iterable[tuple[Any, ...]]) -> Iterator[engine.Step]:
    """One contact's rows as the walk's steps: an event's lines and its qualifying row make
    one step; a stage given and a line without event, one each."""
    for (at, kind, reference), group in groupby(rows, key=lambda row: (row[1], row[2], row[3])):
        if isinstance(at, str):  # SQLite gives a raw SELECT's dates as text, in UTC
            at = parse_datetime(at)
        if at.tzinfo is None:  # or as naive UTC datetimes
            at = at.replace(tzinfo=UTC)
        points, facts, stage = 0, [], ""
        for _contact, _at, _kind, _ref, line_points, given, event_type, tag in group:
            points += line_points or 0
            stage = given or stage
            if event_type:
                properties = {"content_tag": tag} if tag else {}
                facts.append(engine.EventFact(reference, _contact, event_type, at, properties))
        yield engine.Step(at, points, tuple(facts), stage if kind == PERSON else "")
