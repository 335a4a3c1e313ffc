"""The stage machine: moving contacts through the funnel, one at a time or many at once,
with every move recorded (StageChange) and announced (a ``stage_changed`` event)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from contacts.events import event_insert, events_send_on_commit
from contacts.lookups import array_param
from contacts.models import (
    ALLOWED_TRANSITIONS,
    Contact,
    Event,
    PendingEvent,
    StageChange,
)
from contacts.webhooks.outbox import webhooks_stages_entered

logger = logging.getLogger(__name__)


class StageMoveError(Exception):
    """A stage move that was refused; the message says why, for the person who asked."""


class TransitionNotAllowed(StageMoveError):
    pass


class StageConflict(StageMoveError):
    """Someone else moved the contact between our read and our write."""


@transaction.atomic
def stage_move(
    *,
    contact: Contact,
    to: str,
    cause: str,
    actor: AbstractBaseUser | None = None,
    actor_name: str = "",
    reason: str = "",
    outcome: str = "",
    at: datetime | None = None,
    send: bool = True,
) -> StageChange:
    """Move ``contact`` from the stage it was read in to ``to``, and record why (a StageChange
    and its ``stage_changed`` event, sent to the handlers after commit; with ``send=False``,
    by the caller's ``stage_changes_send_on_commit``: a loop of moves sends one task).

    Compare-and-set on the stage the caller saw: if another process moved the contact meanwhile,
    nothing is written and ``StageConflict`` is raised, so two concurrent moves never both apply.
    """
    from_stage = contact.stage
    if to not in Contact.Stage.values:
        raise TransitionNotAllowed(_("“%(stage)s” is not a stage.") % {"stage": to})
    if to not in ALLOWED_TRANSITIONS[from_stage]:
        raise TransitionNotAllowed(
            _("A contact cannot move from %(from)s to %(to)s.")
            % {"from": Contact.Stage(from_stage).label, "to": Contact.Stage(to).label}
        )
    if contact.is_anonymous:
        raise TransitionNotAllowed(_("An anonymous contact needs an email before it can move on."))
    if cause not in StageChange.Cause.values:
        raise ValueError(f"unknown cause {cause!r}")

    now = at or timezone.now()
    moved = Contact.objects.filter(pk=contact.pk, stage=from_stage).update(
        stage=to, stage_entered_at=now, updated_at=now
    )
    if moved != 1:
        raise StageConflict(
            _("%(contact)s was moved by someone else meanwhile; reload and try again.")
            % {"contact": contact.display_name}
        )
    change = StageChange.objects.create(
        contact=contact,
        from_stage=from_stage,
        to_stage=to,
        outcome=outcome,
        cause=cause,
        actor=actor,
        actor_name=actor_name,
        reason=reason,
        at=now,
    )
    contact.stage, contact.stage_entered_at = to, now
    # Its key names a StageChange created just now: it cannot exist yet, no need to look.
    event_insert(contact=contact, **change.event_fields(), send=send)
    webhooks_stages_entered([change])
    return change


def stage_changes_send_on_commit(changes: Sequence[StageChange]) -> None:
    """Send the ``stage_changed`` events of moves made with ``stage_move(send=False)`` to the
    handlers after commit, as one task (one query finds them by their keys)."""
    keys = [str(change.event_fields()["idempotency_key"]) for change in changes]
    if keys:
        found = Event.objects.filter(idempotency_key__in=keys).values_list("pk", flat=True)
        events_send_on_commit(sorted(found))


@dataclass(frozen=True)
class PlannedMove:
    """One step of a contact's way through the funnel, for ``stage_move_many``."""

    contact_id: int
    from_stage: str
    to: str
    reason: str = ""
    actor_name: str = ""


class StageMoves(NamedTuple):
    """Moves applied: their StageChanges, and the ids of their ``stage_changed`` events."""

    changes: list[StageChange]
    event_ids: list[int]


@transaction.atomic
def stage_move_many(
    *, moves: Sequence[PlannedMove], cause: str, at: datetime | None = None
) -> list[StageChange]:
    """Many moves at once (a rescore, an import), with stage_move's guarantees; their events
    go to the handlers after commit, as one task. See ``stage_moves_apply``."""
    moved = stage_moves_apply(moves=moves, cause=cause, at=at)
    events_send_on_commit(moved.event_ids)
    return moved.changes


@transaction.atomic
def stage_moves_apply(
    *, moves: Sequence[PlannedMove], cause: str, at: datetime | None = None
) -> StageMoves:
    """Many moves at once, their events not sent: for an event handler (thresholds over a
    batch), which returns the event ids to the pipeline.

    Moves of one contact are given in path order (lead → MQL → SQL). Each contact jumps to the
    end of its path in one compare-and-set on the stage it started from, so a contact someone
    else moved, or an anonymous one (no email, no external id), is left out whole. Then one
    INSERT of the StageChanges (one per stage crossed) and one of their ``stage_changed`` events.
    """
    if cause not in StageChange.Cause.values:
        raise ValueError(f"unknown cause {cause!r}")
    now = at or timezone.now()
    paths: dict[int, list[PlannedMove]] = defaultdict(list)
    for move in moves:
        if move.to not in ALLOWED_TRANSITIONS[move.from_stage]:
            raise TransitionNotAllowed(f"{move.from_stage} → {move.to}")
        paths[move.contact_id].append(move)
    ends = {pk: (path[0].from_stage, path[-1].to) for pk, path in paths.items()}
    moved = _stages_compare_and_set(ends, now)
    applied = [move for move in moves if move.contact_id in moved]
    return stage_changes_record(moves=applied, cause=cause, at=now, send=False)


def _stages_compare_and_set(ends: dict[int, tuple[str, str]], now: datetime) -> set[int]:
    """Move each contact from its first stage to its last, if it is still in the first; returns
    the contacts moved. PostgreSQL: one UPDATE from three arrays. Kept raw by measurement: in
    the scoring benchmark's workers the ORM version (one UPDATE per (first, last) pair) took
    4.5 % of the samples where this takes about 2 % (py-spy, 6 December 2026), and live scoring
    was short of its target. Elsewhere the ORM version."""
    if not ends:
        return set()
    if connection.vendor == "postgresql":
        return _stages_compare_and_set_arrays(ends, now)
    groups: dict[tuple[str, str], set[int]] = defaultdict(set)
    for pk, pair in ends.items():
        groups[pair].add(pk)
    moved: set[int] = set()
    for (first, last), ids in sorted(groups.items()):
        known = Q(email__isnull=False) | Q(external_id__isnull=False)  # not anonymous
        count = Contact.objects.filter(known, pk__any=ids, stage=first).update(
            stage=last, stage_entered_at=now, updated_at=now
        )
        if count == len(ids):
            moved |= ids
        elif count:
            moved |= set(
                Contact.objects.filter(pk__any=ids, stage=last, stage_entered_at=now).values_list(
                    "pk", flat=True
                )
            )
    return moved


def _stages_compare_and_set_arrays(ends: dict[int, tuple[str, str]], now: datetime) -> set[int]:
    quote = connection.ops.quote_name
    column = {name: quote(Contact._meta.get_field(name).column)
              for name in ("stage", "stage_entered_at", "updated_at", "email",
                           "external_id")}  # fmt: skip
    pk = quote(Contact._meta.pk.column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(Contact._meta.db_table)} AS c "  # noqa: S608 (names from the model)
            f"SET {column['stage']} = v.last, {column['stage_entered_at']} = %s, "
            f"{column['updated_at']} = %s "
            "FROM unnest(%s::bigint[], %s::varchar[], %s::varchar[]) AS v(id, first, last) "
            f"WHERE c.{pk} = v.id AND c.{column['stage']} = v.first "
            f"AND (c.{column['email']} IS NOT NULL OR c.{column['external_id']} IS NOT NULL) "
            f"RETURNING c.{pk}",
            [
                now, now, array_param(list(ends)),
                [first for first, _ in ends.values()], [last for _, last in ends.values()],
            ],
        )  # fmt: skip
        return {row[0] for row in cursor.fetchall()}


# The StageChanges of moves already applied, their stage_changed events (as
# StageChange.event_fields has them) and the events' queue rows, in one statement. The names in
# braces are the models' tables and columns (``_names``). Kept raw: for 150 threshold moves it
# took 74 ms against 370 ms for the ORM's three ``bulk_create`` (which SQLite keeps), 5.0×
# (median of 10 alternated runs in one process, 2026-12-06, machine loaded by other benchmarks:
# the ratio is the figure; on the scoring and rescore benchmarks' hot path, and the import's).
STAGE_CHANGES_SQL = """
WITH changes AS (
    INSERT INTO {stagechange}
        ({sc_contact}, {sc_from}, {sc_to}, {sc_outcome}, {sc_cause}, {sc_actor},
         {sc_actor_name}, {sc_reason}, {sc_at})
    SELECT m.contact_id, m.from_stage, m.to_stage, '', %(cause)s, NULL, m.actor_name, m.reason,
        %(at)s
    FROM unnest(%(contacts)s::bigint[], %(froms)s::varchar[], %(tos)s::varchar[],
                %(actor_names)s::varchar[], %(reasons)s::text[])
        WITH ORDINALITY AS m(contact_id, from_stage, to_stage, actor_name, reason, position)
    ORDER BY m.position
    RETURNING {sc_pk} AS id, {sc_contact} AS contact_id, {sc_from} AS from_stage,
        {sc_to} AS to_stage, {sc_cause} AS cause, {sc_outcome} AS outcome,
        {sc_actor_name} AS actor_name, {sc_reason} AS reason, {sc_at} AS at
),
events AS (
    INSERT INTO {event}
        ({ev_contact}, {ev_type}, {ev_occurred_at}, {ev_received_at}, {ev_properties},
         {ev_source}, {ev_idempotency_key})
    SELECT contact_id, %(type)s, at, %(at)s,
        jsonb_build_object('from', from_stage, 'to', to_stage, 'cause', cause,
                           'outcome', outcome, 'stage_change_id', id),
        'system', 'stage_change:' || id
    FROM changes ORDER BY id
    RETURNING {ev_pk} AS id
),
queued AS (
    INSERT INTO {pendingevent} ({pe_event}, {pe_received_at}, {pe_attempts}, {pe_last_error})
    SELECT id, %(at)s, 0, '' FROM events
)
SELECT 'change', id, contact_id, from_stage, to_stage, actor_name, reason FROM changes
UNION ALL SELECT 'event', id, NULL, NULL, NULL, NULL, NULL FROM events
"""


def _names() -> dict[str, str]:
    """The quoted table and column names STAGE_CHANGES_SQL needs, from the models."""
    quote = connection.ops.quote_name
    names = {}
    for prefix, model, fields in (
        ("sc", StageChange, {"contact": "contact", "from": "from_stage", "to": "to_stage",
                             "outcome": "outcome", "cause": "cause", "actor": "actor",
                             "actor_name": "actor_name", "reason": "reason", "at": "at"}),
        ("ev", Event, {name: name for name in ("contact", "type", "occurred_at", "received_at",
                                               "properties", "source", "idempotency_key")}),
        ("pe", PendingEvent, {name: name for name in ("event", "received_at", "attempts",
                                                      "last_error")}),
    ):  # fmt: skip
        names[model._meta.model_name] = quote(model._meta.db_table)
        names[f"{prefix}_pk"] = quote(model._meta.pk.column)
        for key, field in fields.items():
            names[f"{prefix}_{key}"] = quote(model._meta.get_field(field).column)
    return names


def stage_changes_record(
    *,
    moves: Sequence[PlannedMove],
    cause: str,
    at: datetime,
    objects: bool = True,
    send: bool = True,
) -> StageMoves:
    """The StageChange rows of moves already applied, and their ``stage_changed`` events (sent
    after commit as one task, unless ``send`` is False). Returns the StageChanges (none if
    ``objects`` is False: an import's thousands of leads) and the events' ids."""
    if not moves:
        return StageMoves([], [])
    moved = _stage_changes_insert(moves, cause, at, objects=objects)
    webhooks_stages_entered(
        moved.changes
        if objects
        else (
            StageChange(
                contact_id=move.contact_id,
                from_stage=move.from_stage,
                to_stage=move.to,
                cause=cause,
                at=at,
            )
            for move in moves
        )  # fmt: skip
    )
    if send:
        events_send_on_commit(moved.event_ids)
    return moved


def _stage_changes_insert(
    moves: Sequence[PlannedMove], cause: str, at: datetime, *, objects: bool
) -> StageMoves:
    """Where PostgreSQL and the others differ: one statement there, three bulk inserts
    elsewhere."""
    if connection.vendor == "postgresql":
        return _stage_changes_sql(moves, cause, at, objects=objects)
    changes = [
        StageChange(
            contact_id=move.contact_id,
            from_stage=move.from_stage,
            to_stage=move.to,
            cause=cause,
            actor_name=move.actor_name,
            reason=move.reason,
            at=at,
        )
        for move in moves
    ]
    StageChange.objects.bulk_create(changes, batch_size=1000)
    events = [Event(contact_id=change.contact_id, **change.event_fields()) for change in changes]
    Event.objects.bulk_create(events, batch_size=1000)
    PendingEvent.objects.bulk_create(
        [PendingEvent(event_id=event.pk, received_at=at) for event in events], batch_size=1000
    )
    return StageMoves(changes, [event.pk for event in events])


def _stage_changes_sql(
    moves: Sequence[PlannedMove], cause: str, at: datetime, *, objects: bool
) -> StageMoves:
    with connection.cursor() as cursor:
        cursor.execute(
            STAGE_CHANGES_SQL.format(**_names()),
            {
                "cause": cause,
                "at": at,
                "type": Event.Type.STAGE_CHANGED,
                "contacts": array_param([move.contact_id for move in moves]),
                "froms": [move.from_stage for move in moves],
                "tos": [move.to for move in moves],
                "actor_names": [str(move.actor_name) for move in moves],
                "reasons": [str(move.reason) for move in moves],
            },
        )
        rows = cursor.fetchall()
    event_ids = [pk for kind, pk, *_ in rows if kind == "event"]
    if not objects:
        return StageMoves([], event_ids)
    changes = [
        StageChange(
            pk=pk, contact_id=contact_id, from_stage=from_stage, to_stage=to_stage,
            cause=cause, actor_name=actor_name, reason=reason, at=at,
        )
        for kind, pk, contact_id, from_stage, to_stage, actor_name, reason in rows
        if kind == "change"
    ]  # fmt: skip
    for change in changes:
        change._state.adding, change._state.db = False, connection.alias
    return StageMoves(sorted(changes, key=lambda change: change.pk), event_ids)
