"""The stage machine: moving contacts through the funnel, one at a time or many at once,
with every move recorded (StageChange) and announced (a ``stage_changed`` event)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from contacts.bulk import bulk_copy
from contacts.events import event_insert, events_enqueue_on_commit
from contacts.lookups import array_param
from contacts.models import (
    ALLOWED_TRANSITIONS,
    Contact,
    Event,
    PendingEvent,
    StageChange,
)

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
) -> StageChange:
    """Move ``contact`` from the stage it was read in to ``to``, and record why.

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
    event_insert(contact=contact, **change.event_fields())
    return change


@dataclass(frozen=True)
class PlannedMove:
    """One step of a contact's way through the funnel, for ``stage_move_many``."""

    contact_id: int
    from_stage: str
    to: str
    reason: str = ""
    actor_name: str = ""


@transaction.atomic
def stage_move_many(
    *, moves: Sequence[PlannedMove], cause: str, at: datetime | None = None
) -> list[StageChange]:
    """Many moves at once (thresholds over a batch or a rescore), with stage_move's guarantees.

    Moves of one contact are given in path order (lead → MQL → SQL). Each contact jumps to the
    end of its path in one compare-and-set on the stage it started from, so a contact someone
    else moved, or an anonymous one, is left out whole. Then one INSERT of the StageChanges (one
    per stage crossed) and one of their ``stage_changed`` events.
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
    return stage_changes_record(moves=applied, cause=cause, at=now)


def _stages_compare_and_set(ends: dict[int, tuple[str, str]], now: datetime) -> set[int]:
    """Move each contact from its first stage to its last, if it is still in the first; returns
    the contacts moved."""
    if not ends:
        return set()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE contacts_contact AS c "
                "SET stage = v.last, stage_entered_at = %s, updated_at = %s "
                "FROM unnest(%s::bigint[], %s::varchar[], %s::varchar[]) AS v(id, first, last) "
                "WHERE c.id = v.id AND c.stage = v.first AND c.email IS NOT NULL RETURNING c.id",
                [
                    now, now, array_param(list(ends)),
                    [first for first, _ in ends.values()], [last for _, last in ends.values()],
                ],
            )  # fmt: skip
            return {pk for (pk,) in cursor.fetchall()}
    groups: dict[tuple[str, str], set[int]] = defaultdict(set)
    for pk, pair in ends.items():
        groups[pair].add(pk)
    moved: set[int] = set()
    for (first, last), ids in groups.items():
        count = Contact.objects.filter(pk__any=ids, stage=first, email__isnull=False).update(
            stage=last, stage_entered_at=now, updated_at=now
        )
        if count == len(ids):
            moved |= ids
        else:
            moved |= set(
                Contact.objects.filter(pk__any=ids, stage=last, stage_entered_at=now).values_list(
                    "pk", flat=True
                )
            )
    return moved


# The StageChanges of moves already applied, their stage_changed events (as
# StageChange.event_fields has them) and the events' queue rows, in one statement.
STAGE_CHANGES_SQL = """
WITH changes AS (
    INSERT INTO contacts_stagechange
        (contact_id, from_stage, to_stage, outcome, cause, actor_id, actor_name, reason, at)
    SELECT m.contact_id, m.from_stage, m.to_stage, '', %(cause)s, NULL, m.actor_name, m.reason,
        %(at)s
    FROM unnest(%(contacts)s::bigint[], %(froms)s::varchar[], %(tos)s::varchar[],
                %(actor_names)s::varchar[], %(reasons)s::text[])
        WITH ORDINALITY AS m(contact_id, from_stage, to_stage, actor_name, reason, position)
    ORDER BY m.position
    RETURNING id, contact_id, from_stage, to_stage, cause, outcome, actor_name, reason, at
),
events AS (
    INSERT INTO contacts_event
        (contact_id, type, occurred_at, received_at, properties, source, idempotency_key)
    SELECT contact_id, %(type)s, at, %(at)s,
        jsonb_build_object('from', from_stage, 'to', to_stage, 'cause', cause,
                           'outcome', outcome, 'stage_change_id', id),
        'system', 'stage_change:' || id
    FROM changes ORDER BY id
    RETURNING id
),
queued AS (
    INSERT INTO contacts_pendingevent (event_id, received_at, attempts, last_error)
    SELECT id, %(at)s, 0, '' FROM events
)
SELECT 'change', id, contact_id, from_stage, to_stage, actor_name, reason FROM changes
UNION ALL SELECT 'event', id, NULL, NULL, NULL, NULL, NULL FROM events
"""


def stage_changes_record(
    *, moves: Sequence[PlannedMove], cause: str, at: datetime, objects: bool = True
) -> list[StageChange]:
    """The StageChange rows of moves already applied, and their ``stage_changed`` events.
    Returns the StageChanges, unless ``objects`` is False (an import's thousands of leads)."""
    if not moves:
        return []
    if connection.vendor == "postgresql":
        return _stage_changes_insert(moves, cause, at, objects=objects)
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
    bulk_copy(changes)
    events = [Event(contact_id=change.contact_id, **change.event_fields()) for change in changes]
    bulk_copy(events)
    bulk_copy([PendingEvent(event_id=event.pk, received_at=at) for event in events])
    events_enqueue_on_commit([event.pk for event in events])
    return changes


def _stage_changes_insert(
    moves: Sequence[PlannedMove], cause: str, at: datetime, *, objects: bool
) -> list[StageChange]:
    with connection.cursor() as cursor:
        cursor.execute(
            STAGE_CHANGES_SQL,
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
    events_enqueue_on_commit([pk for kind, pk, *_ in rows if kind == "event"])
    if not objects:
        return []
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
    return sorted(changes, key=lambda change: change.pk)
