"""Write use cases for contacts: each is one atomic function; views, admin, tasks call these."""

from __future__ import annotations

import csv
import gc
import importlib
import json
import logging
import operator
import secrets
import threading
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Case, Exists, F, Max, OuterRef, Q, Sum, Value, When
from django.db.models.functions import MD5, Coalesce, Concat, Greatest, Lower
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from redis.exceptions import RedisError

from contacts import broker, csv_import, dashboard, tracking
from contacts.lookups import array_param
from contacts.machine_signals import flag_machine_signal
from contacts.models import (
    ALLOWED_TRANSITIONS,
    AnonymousView,
    ApiKey,
    Consent,
    Contact,
    ContactAudit,
    ContactMerge,
    Event,
    EventRow,
    Form,
    ImportJob,
    ImportRowError,
    LeadSource,
    Notification,
    PendingEvent,
    StageChange,
    Suppression,
    Visitor,
    canonical_time_zone,
    normalize_email,
)
from contacts.reasons import coded

logger = logging.getLogger(__name__)
T = TypeVar("T")

EventHandler = Callable[[Sequence[EventRow]], None]


class StageMoveError(Exception):
    """A stage move that was refused; the message says why, for the person who asked."""


class TransitionNotAllowed(StageMoveError):
    pass


class StageConflict(StageMoveError):
    """Someone else moved the contact between our read and our write."""


class DuplicateContact(Exception):
    pass


class ContactErased(Exception):
    """Personal data offered for a contact whose personal data was erased."""

    def __init__(self) -> None:
        super().__init__(
            _("This contact’s personal data was erased: it cannot be edited or typed back in.")
        )


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
    _event_insert(contact=contact, **change.event_fields())
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


JSON_ENCODER = DjangoJSONEncoder()


def bulk_copy(objects: Sequence[Any]) -> None:
    """Insert new model objects and give them their ids, fast: COPY on PostgreSQL (ids drawn from
    the table's sequence first), ``bulk_create`` elsewhere. For big batches (imports)."""
    if not objects:
        return
    model = type(objects[0])
    if connection.vendor != "postgresql":
        model.objects.bulk_create(objects, batch_size=1000)
        return
    meta = model._meta
    fields = meta.concrete_fields
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        if meta.auto_field is None:  # the objects carry their own keys
            ids = [obj.pk for obj in objects]
        else:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                [meta.db_table, meta.pk.column, len(objects)],
            )
            ids = [row[0] for row in cursor.fetchall()]
        columns = ", ".join(quote(field.column) for field in fields)
        values = [_copy_value(field) for field in fields]
        with cursor.cursor.copy(f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN") as copy:
            for obj, pk in zip(objects, ids, strict=True):
                obj.pk = pk
                copy.write_row([value(obj) for value in values])
                obj._state.adding, obj._state.db = False, connection.alias


# Columns whose Python value COPY takes as it is: Django's per-field preparation (a dozen calls
# a value) would cost more than the COPY itself.
PLAIN_FIELDS = frozenset({
    "AutoField", "BigAutoField", "BigIntegerField", "BooleanField", "DateTimeField", "ForeignKey",
    "IntegerField", "OneToOneField", "PositiveIntegerField", "PositiveSmallIntegerField",
    "SmallIntegerField",
})  # fmt: skip
TEXT_FIELDS = frozenset({"CharField", "TextField"})


def _text_or_none(value: Any) -> str | None:
    return value if value is None or type(value) is str else str(value)


def _copy_value(field: Any) -> Callable[[Any], Any]:
    """How to read one column of an object for COPY."""
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return lambda obj: field.get_db_prep_save(field.pre_save(obj, True), connection)
    if field.get_internal_type() == "JSONField":
        encoder = field.encoder() if field.encoder else JSON_ENCODER
        return lambda obj: encoder.encode(getattr(obj, field.attname))
    if field.get_internal_type() in TEXT_FIELDS:  # a lazy translation becomes its text
        name = field.attname
        return lambda obj: _text_or_none(getattr(obj, name))
    if field.get_internal_type() in PLAIN_FIELDS:
        return operator.attrgetter(field.attname)
    return lambda obj: field.get_db_prep_save(field.pre_save(obj, True), connection)


def bulk_update_fast(objects: Sequence[Any], names: Sequence[str]) -> None:
    """``bulk_update`` in one statement per batch on PostgreSQL: each column travels as one
    array (``UPDATE … FROM unnest(…)``), instead of a CASE WHEN per row and per field."""
    if not objects:
        return
    model = type(objects[0])
    if connection.vendor != "postgresql":
        model.objects.bulk_update(objects, names, batch_size=1000)
        return
    meta = model._meta
    fields = [meta.get_field(name) for name in names]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in fields)
    arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in [meta.pk, *fields])
    columns = ", ".join(quote(f.column) for f in [meta.pk, *fields])
    pk = quote(meta.pk.column)
    # Names come from the model's own fields; every value is a parameter.
    sql = (
        f"UPDATE {quote(meta.db_table)} AS t SET {assignments} "  # noqa: S608
        f"FROM unnest({arrays}) AS v({columns}) WHERE t.{pk} = v.{pk}"
    )
    with connection.cursor() as cursor:
        for start in range(0, len(objects), 1000):
            chunk = objects[start : start + 1000]
            params = [[obj.pk for obj in chunk]] + [
                [f.get_db_prep_save(getattr(obj, f.attname), connection) for obj in chunk]
                for f in fields
            ]
            cursor.execute(sql, params)


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


@transaction.atomic
def event_record(
    *,
    contact: Contact,
    type: str,
    occurred_at: datetime | None = None,
    properties: dict[str, Any] | None = None,
    source: str = "",
    idempotency_key: str | None = None,
) -> tuple[Event, bool]:
    """Store an event once per idempotency key; returns (event, created).

    After commit the new event is handed to the handlers in ``LEADFUNNEL_EVENT_HANDLERS``.
    """
    if type not in Event.Type.values:
        raise ValueError(f"unknown event type {type!r}")
    if idempotency_key:
        existing = Event.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
    fields = {
        "contact": contact,
        "type": type,
        "occurred_at": occurred_at or timezone.now(),
        "properties": properties,
        "source": source,
        "idempotency_key": idempotency_key,
    }
    if not idempotency_key:  # nothing to collide with: no savepoint needed
        event = _event_insert(**fields)
    else:
        try:
            # A savepoint, so a concurrent insert of the same key does not spoil the caller's
            # transaction: we return the row that won instead.
            with transaction.atomic():
                event = _event_insert(**fields)
        except IntegrityError:
            return Event.objects.get(idempotency_key=idempotency_key), False
    if properties and any(key in properties for key in REFERRER_KEYS):
        _link_referrals([(contact.pk, properties)])
    return event, True


class NewEvent(NamedTuple):
    """An event to store (a tuple: an API batch builds a thousand of them)."""

    contact_id: int
    type: str
    occurred_at: datetime
    properties: dict[str, Any]
    source: str = ""
    idempotency_key: str | None = None


EVENT_COLUMNS = (
    "contact_id", "type", "occurred_at", "received_at", "properties", "source", "idempotency_key",
)  # fmt: skip


@transaction.atomic
def events_record_many(*, events: Sequence[NewEvent]) -> list[int]:
    """Store a batch of events (an API call, an import) in a few statements, once per
    idempotency key, and hand the new ones to the workers after commit. Returns their ids;
    an event whose key is already stored (or repeated in the batch) is left out."""
    unknown = {event.type for event in events} - set(Event.Type.values)
    if unknown:
        raise ValueError(f"unknown event types {sorted(unknown)}")
    seen: set[str] = set()
    fresh = []
    for event in events:
        key = event.idempotency_key or None  # blank is no key, as in event_record
        if key:
            if key in seen:
                continue
            seen.add(key)
        properties = flag_machine_signal(event.type, event.properties)
        if key != event.idempotency_key or properties is not event.properties:
            event = event._replace(idempotency_key=key, properties=properties)
        fresh.append(event)
    now = timezone.now()
    if connection.vendor == "postgresql":
        ids = _copy_events(fresh, now)
    else:
        ids = _create_events(fresh, seen, now)
    events_enqueue_on_commit(ids)
    # Linking is idempotent, so events that were already stored may pass through again.
    _link_referrals(
        (event.contact_id, event.properties)
        for event in fresh
        if isinstance(event.properties, dict)
        and any(key in event.properties for key in REFERRER_KEYS)
    )
    return ids


def _create_events(events: Sequence[NewEvent], keys: set[str], now: datetime) -> list[int]:
    """Other databases: the ORM's bulk paths."""
    stored = set(
        Event.objects.filter(idempotency_key__in=keys).values_list("idempotency_key", flat=True)
    )
    created = Event.objects.bulk_create(
        [
            Event(received_at=now, **event._asdict())
            for event in events
            if not event.idempotency_key or event.idempotency_key not in stored
        ]
    )
    PendingEvent.objects.bulk_create(
        [PendingEvent(event_id=event.pk, received_at=now) for event in created]
    )
    return [event.pk for event in created]


def _copy_events(events: Sequence[NewEvent], now: datetime) -> list[int]:
    """PostgreSQL: COPY into a scratch table, then one statement that stores the events whose
    key is new and queues them for the handlers (which move the contacts' last activity)."""
    columns = ", ".join(EVENT_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS incoming_events "
            "(LIKE contacts_event INCLUDING DEFAULTS INCLUDING IDENTITY) ON COMMIT DELETE ROWS"
        )
        with cursor.cursor.copy(f"COPY incoming_events ({columns}) FROM STDIN") as copy:
            for event in events:
                copy.write_row((
                    event.contact_id, event.type, event.occurred_at, now,
                    JSON_ENCODER.encode(event.properties), event.source,
                    event.idempotency_key,
                ))  # fmt: skip
        cursor.execute(
            f"""
            WITH incoming AS (DELETE FROM incoming_events RETURNING id AS position, {columns}),
            stored AS (
                INSERT INTO contacts_event ({columns})
                SELECT {columns} FROM incoming ORDER BY position
                ON CONFLICT (idempotency_key) DO NOTHING
                RETURNING id
            ),
            queued AS (
                INSERT INTO contacts_pendingevent (event_id, received_at, attempts, last_error)
                SELECT id, %s, 0, '' FROM stored
            )
            SELECT id FROM stored ORDER BY id
            """,  # noqa: S608 (column names from the model, values are parameters)
            [now],
        )
        return [pk for (pk,) in cursor.fetchall()]


def _event_insert(
    *,
    contact: Contact,
    type: str,
    occurred_at: datetime,
    properties: dict[str, Any] | None,
    source: str,
    idempotency_key: str | None,
) -> Event:
    event = Event.objects.create(
        contact=contact,
        type=type,
        occurred_at=occurred_at,
        properties=flag_machine_signal(type, properties or {}),
        source=source,
        idempotency_key=idempotency_key or None,
    )
    PendingEvent.objects.create(event=event, received_at=event.received_at)
    if type not in Event.SYSTEM_TYPES:
        Contact.objects.filter(pk=contact.pk).filter(
            Q(last_activity_at__isnull=True) | Q(last_activity_at__lt=occurred_at)
        ).update(last_activity_at=occurred_at)
    events_enqueue_on_commit([event.pk])
    return event


_pending = threading.local()


def events_enqueue_on_commit(event_ids: list[int]) -> None:
    """Hand these events to the workers once the transaction commits.

    Events recorded in one transaction (a batch, a cascade of stage moves) go out as one task:
    the ids wait in a per-thread list that a single on-commit callback sends.
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        _enqueue(list(event_ids))
        return
    waiting = getattr(_pending, "ids", None)
    # A rolled-back transaction drops its callbacks without telling us: look for ours.
    registered = any(callback is _flush_pending for _, callback, _ in connection.run_on_commit)
    if waiting is None or not registered:
        waiting = _pending.ids = []
        transaction.on_commit(_flush_pending, robust=True)
    waiting.extend(event_ids)


def _flush_pending() -> None:
    ids, _pending.ids = getattr(_pending, "ids", None) or [], None
    # A rolled-back savepoint may have left ids of events that were never stored: the task
    # skips them, as it skips events already processed.
    if ids:
        _enqueue(ids)


def _enqueue(event_ids: list[int]) -> None:
    from contacts.tasks import process_events_task

    broker.send(process_events_task, event_ids)


def event_handlers() -> list[EventHandler]:
    return [import_string(path) for path in settings.LEADFUNNEL_EVENT_HANDLERS]


def events_process(*, event_ids: Sequence[int]) -> int:
    """Hand pending events to every handler, in order, and take them off the queue.

    Handlers run inside the same transaction as the dequeue, so an event's effects are applied
    exactly once even when the broker delivers the task twice. Events the handlers record
    themselves (a threshold's ``stage_changed``) are handled in the same transaction rather
    than in a task of their own. One failing event does not hold back the rest of its batch:
    the batch is retried event by event, and the failure recorded.

    Each contact row is written once per batch: its last activity moves forward together with
    the points the handlers gave (``contact_points_add``). The batch's contacts are locked
    first (``_contacts_take``); events of contacts another worker's batch holds are left in
    the queue and sent again after commit, so overlapping batches run side by side.
    """
    handlers = event_handlers()
    total = 0
    later: list[int] = []
    handled: list[EventRow] = []
    with transaction.atomic():
        _commit_asynchronously()
        mark = _pending_mark()
        ids = list(event_ids)
        _batch.memo = {}
        try:
            for _ in range(CASCADE_ROUNDS):
                events, busy = _contacts_take(_dequeue(ids))
                later += [event.pk for event in busy]
                if events:
                    done, points = _run_batch(handlers, events)
                    _contacts_write(points=points, activity=_latest_activity(events))
                    PendingEvent.objects.filter(event_id__any={e.pk for e in done}).delete()
                    handled += done
                ids = _take_pending(mark)
                if not ids:
                    break
            else:
                later += ids  # a long cascade: the rest goes out as a task
        finally:
            _batch.memo = None
        # Last: two workers' summaries share rows (a day, a type), held until commit.
        dashboard.rollups_add(handled)
        total = len(handled)
        if later:
            events_enqueue_on_commit(later)
    return total


def _commit_asynchronously() -> None:
    """Don't wait for the disk at commit. Safe here, unlike for storing events: a crash that
    forgets the transaction forgets all of it, queue rows included, so its events are handled
    again by the sweep; nothing is lost and nothing is scored twice."""
    if connection.vendor == "postgresql" and connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")


# Handlers' own events (stage_changed after a threshold) are handled at once, a few levels deep.
CASCADE_ROUNDS = 4


def _dequeue(event_ids: list[int]) -> list[EventRow]:
    """Lock the queue rows of these events, skipping those another worker holds, and read the
    events (plain rows: only what the handlers need)."""
    if not event_ids:
        return []
    rows = (
        PendingEvent.objects.filter(
            event_id__any=set(event_ids), attempts__lt=settings.EVENT_MAX_ATTEMPTS
        )
        .select_for_update(skip_locked=True, of=("self",))
        .order_by("event_id")
        .values_list(*EVENT_ROW_FIELDS)
    )
    return [EventRow(*values) for values in rows]


EVENT_ROW_FIELDS = ["event_id", *(f"event__{name}" for name in EventRow.FIELDS[1:])]


def _pending_mark() -> tuple[list[int] | None, int]:
    ids = getattr(_pending, "ids", None)
    return ids, len(ids or ())


def _take_pending(mark: tuple[list[int] | None, int]) -> list[int]:
    """The ids of events recorded since ``mark`` (by the handlers), taken off the after-commit
    send. Events the caller recorded before are left to be sent as usual."""
    ids = getattr(_pending, "ids", None)
    if not ids:
        return []
    start = mark[1] if ids is mark[0] else 0
    taken = ids[start:]
    del ids[start:]
    return taken


class _BatchPoints(threading.local):
    # The points handlers give while events_process runs a batch; None outside one.
    waiting: dict[int, int] | None = None
    # What handlers read once per events_process run (rules, thresholds, sequences).
    memo: dict[str, Any] | None = None


def batch_memo(key: str, read: Callable[[], T]) -> T:
    """``read()`` once per events_process run (its cascade rounds share it), every time
    outside one. For the settings handlers read for every batch: rules, sequences."""
    memo = _batch.memo
    if memo is None:
        return read()
    if key not in memo:
        memo[key] = read()
    return memo[key]


_batch = _BatchPoints()


def contact_points_add(points: Mapping[int, int]) -> None:
    """Add points to contacts' scores (the ledger's new lines, summed per contact).

    While events_process runs a batch, the points wait for the end of the batch and go out
    with its last activity, so a contact row is written once, not twice.
    """
    if _batch.waiting is None:
        _contacts_write(points=points, activity={})
        return
    for contact_id, delta in points.items():
        _batch.waiting[contact_id] = _batch.waiting.get(contact_id, 0) + delta


def _run_batch(
    handlers: list[EventHandler], events: list[EventRow]
) -> tuple[list[EventRow], dict[int, int]]:
    _batch.waiting = {}
    try:
        done = _run_handlers(handlers, events)
        return done, _batch.waiting
    finally:
        _batch.waiting = None


def _run_handlers(handlers: list[EventHandler], events: list[EventRow]) -> list[EventRow]:
    # A rolled-back attempt takes its points back with its savepoint.
    before = dict(_batch.waiting or {})
    try:
        with transaction.atomic():
            for handler in handlers:
                handler(events)
        return events
    except Exception:
        _batch.waiting = before
        if len(events) == 1:
            _record_failure(events[0])
            return []
    done = []
    for event in events:
        done.extend(_run_handlers(handlers, [event]))
    return done


def _contacts_take(events: list[EventRow]) -> tuple[list[EventRow], list[EventRow]]:
    """Lock the contacts of these events; returns (events to handle now, events whose contact
    another worker's batch holds, to leave for later).

    FOR NO KEY UPDATE: the key-share locks of concurrent event inserts (their foreign key to
    the contact) don't conflict with it, so storing never waits on scoring. SKIP LOCKED: two
    workers never wait on each other's contacts, so they never deadlock either. When every
    contact is held elsewhere, the run waits for them (in id order) rather than give up.
    """
    if not events:
        return [], []
    query = Contact.objects.filter(pk__any={event.contact_id for event in events}).order_by("pk")
    held = set(query.select_for_update(no_key=True, skip_locked=True).values_list("pk", flat=True))
    if not held:
        list(query.select_for_update(no_key=True).values_list("pk", flat=True))
        return events, []
    busy = [event for event in events if event.contact_id not in held]
    if not busy:
        return events, []
    return [event for event in events if event.contact_id in held], busy


def _latest_activity(events: Sequence[EventRow]) -> dict[int, datetime]:
    """Each contact's latest touchpoint in these events (system events are not activity)."""
    latest: dict[int, datetime] = {}
    for event in events:
        if event.type not in Event.SYSTEM_TYPES:
            known = latest.get(event.contact_id)
            if known is None or known < event.occurred_at:
                latest[event.contact_id] = event.occurred_at
    return latest


def _contacts_write(*, points: Mapping[int, int], activity: Mapping[int, datetime]) -> None:
    """Add points to scores and move last activity forward: one UPDATE for all the contacts
    on PostgreSQL; rows that neither gain points nor move are not written."""
    points = {pk: delta for pk, delta in points.items() if delta}
    ids = sorted(points.keys() | activity.keys())
    if not ids:
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE contacts_contact AS c SET score = c.score + v.delta, "
                "last_activity_at = GREATEST(c.last_activity_at, v.at) "
                "FROM unnest(%s::bigint[], %s::integer[], %s::timestamptz[]) AS v(id, delta, at) "
                "WHERE c.id = v.id AND (v.delta <> 0 OR (v.at IS NOT NULL AND "
                "(c.last_activity_at IS NULL OR c.last_activity_at < v.at)))",
                [
                    array_param(ids),
                    array_param([points.get(pk, 0) for pk in ids]),
                    [activity.get(pk) for pk in ids],
                ],
            )
        return
    # Elsewhere: the same in one CASE per column, a few hundred contacts per statement.
    for start in range(0, len(ids), 300):
        chunk = ids[start : start + 300]
        moments = [(pk, activity[pk]) for pk in chunk if pk in activity]
        changes: dict[str, Any] = {}
        if any(points.get(pk) for pk in chunk):
            changes["score"] = F("score") + Case(
                *(When(pk=pk, then=Value(points[pk])) for pk in chunk if points.get(pk)),
                default=Value(0),
            )
        if moments:
            changes["last_activity_at"] = Case(
                *(
                    When(pk=pk, then=Greatest(Coalesce("last_activity_at", Value(at)), Value(at)))
                    for pk, at in moments
                ),
                default=F("last_activity_at"),
                output_field=Contact._meta.get_field("last_activity_at"),
            )
        Contact.objects.filter(pk__in=chunk).update(**changes)


def _record_failure(event: EventRow) -> None:
    logger.exception("Event %s failed in a handler", event.pk)
    PendingEvent.objects.filter(event_id=event.pk).update(
        attempts=F("attempts") + 1, last_error=traceback.format_exc(limit=5)[-4000:]
    )


def events_sweep(*, batch_size: int = 1000) -> int:
    """Process events whose task never ran (broker down, worker killed). Returns how many."""
    cutoff = timezone.now() - timedelta(seconds=settings.EVENT_SWEEP_GRACE_SECONDS)
    total = 0
    while True:
        ids = list(
            PendingEvent.objects.filter(
                received_at__lte=cutoff, attempts__lt=settings.EVENT_MAX_ATTEMPTS
            )
            .order_by("received_at", "event_id")
            .values_list("event_id", flat=True)[:batch_size]
        )
        if not ids:
            return total
        processed = events_process(event_ids=ids)
        total += processed
        if processed == 0 and not _drop_orphans(ids):
            # Everything left is locked by a worker right now or failing: leave it to them.
            return total


def _drop_orphans(event_ids: list[int]) -> int:
    """Queue rows whose event is gone (deleted around the ORM): they would hold up the sweep."""
    orphans = PendingEvent.objects.filter(event_id__any=set(event_ids)).exclude(
        Exists(Event.objects.filter(pk=OuterRef("event_id")))
    )
    return orphans.delete()[0]


UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
CONTACT_FIELDS = (
    "email",
    "external_id",
    "first_name",
    "last_name",
    "company",
    "phone",
    "job_title",
    "time_zone",
    "source",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "do_not_email",
)


@transaction.atomic
def contact_create(
    *, actor: AbstractBaseUser | None = None, cause: str = StageChange.Cause.USER, **fields: Any
) -> Contact:
    """Create a contact; one who left an email is a lead, recorded as a stage change."""
    contact = Contact(**_clean_fields(fields))
    _save(contact)
    if contact.email:
        _become_lead(contact, cause=cause, actor=actor, reason=coded("created_with_email"))
    return contact


@transaction.atomic
def contact_update(
    *, contact: Contact, actor: AbstractBaseUser | None = None, **fields: Any
) -> Contact:
    """Change profile fields. An anonymous suspect who gains an email becomes a lead. An
    erased contact takes no personal data back (``ContactErased``)."""
    if contact.erased_at and any(fields.get(name) for name in ERASED_FIELDS):
        raise ContactErased
    was_anonymous = contact.is_anonymous
    for name, value in _clean_fields(fields).items():
        setattr(contact, name, value)
    _save(contact, update_fields=[*fields, "updated_at"])
    if was_anonymous and contact.email and contact.stage == Contact.Stage.SUSPECT:
        _become_lead(
            contact, cause=StageChange.Cause.USER, actor=actor, reason=coded("email_added")
        )
    return contact


@transaction.atomic
def contact_upsert(
    *,
    email: str | None,
    cause: str = StageChange.Cause.SYSTEM,
    actor: AbstractBaseUser | None = None,
    **fields: Any,
) -> tuple[Contact, bool]:
    """The contact with this email (whatever its case), else the one with this external id,
    gets the fields given; an unknown email becomes a new lead, an unknown external id without
    an email a new suspect. Returns (contact, created)."""
    email = normalize_email(email)
    external_id = (fields.get("external_id") or "").strip() or None
    if not email and not external_id:
        raise ValueError("an upsert needs an email or an external id")
    existing = _upsert_match(email, external_id)
    if existing is None:
        try:
            with transaction.atomic():
                return contact_create(email=email, cause=cause, actor=actor, **fields), True
        except DuplicateContact:  # created by a concurrent request between our read and write
            existing = _upsert_match(email, external_id)
            if existing is None:  # not the email: the external id is another contact's
                raise
    if email and not existing.email:  # known by its external id until now
        fields["email"] = email
    if fields:
        contact_update(contact=existing, actor=actor, **fields)
    return existing, False


def _upsert_match(email: str | None, external_id: str | None) -> Contact | None:
    if email:
        found = Contact.objects.filter(email__iexact=email).first()
        if found is not None or external_id is None:
            return found
        return Contact.objects.filter(external_id=external_id, email__isnull=True).first()
    return Contact.objects.filter(external_id=external_id).first()


def contact_ids_by_email(emails: Iterable[str], *, create_missing: bool) -> dict[str, int]:
    """Lower-cased email -> contact id, in one query; unknown emails become leads if asked."""
    wanted = {normalize_email(email).lower() for email in emails if normalize_email(email)}
    found = dict(
        Contact.objects.annotate(lowered=Lower("email"))
        .filter(lowered__in=wanted)
        .values_list("lowered", "pk")
    )
    if create_missing:
        for email in sorted(wanted - set(found)):
            found[email] = contact_upsert(email=email)[0].pk
    return found


def _clean_fields(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(CONTACT_FIELDS)
    if unknown:
        raise TypeError(f"unknown contact fields: {sorted(unknown)}")
    if "email" in fields:
        fields["email"] = normalize_email(fields["email"])
        if fields["email"] and Suppression.suppressed([fields["email"]]):
            raise ContactSuppressed(fields["email"])
    if "external_id" in fields:  # blank is none: the unique constraint ignores NULLs only
        fields["external_id"] = (fields["external_id"] or "").strip() or None
    if "time_zone" in fields:
        zone = canonical_time_zone(fields["time_zone"])
        if zone is None:
            raise ValueError(f"not a time zone: {fields['time_zone']!r}")
        fields["time_zone"] = zone
    return fields


def _save(contact: Contact, update_fields: list[str] | None = None) -> None:
    # A savepoint: the database has the last word on a duplicate email (two tabs, two imports).
    try:
        with transaction.atomic():
            contact.save(update_fields=update_fields)
    except IntegrityError as error:
        if "external_id" in str(error):
            raise DuplicateContact(_("A contact with this external id already exists.")) from error
        raise DuplicateContact(_("A contact with this email already exists.")) from error


def _become_lead(
    contact: Contact, *, cause: str, actor: AbstractBaseUser | None, reason: str
) -> None:
    stage_move(contact=contact, to=Contact.Stage.LEAD, cause=cause, actor=actor, reason=reason)


@transaction.atomic
def api_key_create(*, name: str) -> tuple[ApiKey, str]:
    """A new key; the plain text is returned once and never stored."""
    plain = ApiKey.PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(name=name, prefix=plain[:10], hashed=ApiKey.hash(plain))
    return key, plain


def api_key_revoke(*, key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


# --- Capture: forms and visitors ------------------------------------------------------------


def visitor_contact(*, visitor_id: str) -> Contact:
    """The contact behind a browser's visitor id; an unknown visitor becomes an anonymous
    suspect."""
    visitor = Visitor.objects.select_related("contact").filter(visitor_id=visitor_id).first()
    if visitor is not None:
        return visitor.contact
    try:
        with transaction.atomic():
            contact = Contact.objects.create()
            Visitor.objects.create(visitor_id=visitor_id, contact=contact)
            return contact
    except IntegrityError:  # the same visitor's second beacon won the race
        return Visitor.objects.select_related("contact").get(visitor_id=visitor_id).contact


@transaction.atomic
def visitor_stitch(*, visitor_id: str, contact: Contact) -> ContactMerge | None:
    """This browser is ``contact`` now. If it was an anonymous visitor, its history (events,
    score lines) moves onto the contact, the merge is recorded and the visitor is gone."""
    visitor = Visitor.objects.select_for_update().filter(visitor_id=visitor_id).first()
    if visitor is None:
        # Its page views may still wait in the queue: the drain will find the visitor ours.
        try:
            with transaction.atomic():
                Visitor.objects.create(visitor_id=visitor_id, contact=contact)
        except IntegrityError:  # the drain made it an anonymous suspect meanwhile: merge that
            visitor = Visitor.objects.select_for_update().get(visitor_id=visitor_id)
        else:
            kept = _anonymous_views_take([visitor_id])
            if kept:
                first_utm = next((view.utm for view in kept if view.utm), {})
                if first_utm and not (contact.utm_source or contact.utm_campaign):
                    Contact.objects.filter(pk=contact.pk).update(**first_utm)
                    for name, value in first_utm.items():
                        setattr(contact, name, value)
                events_record_many(events=[_kept_view_event(view, contact.pk) for view in kept])
            return None
    if visitor.contact_id == contact.pk:
        return None
    previous = Contact.objects.select_for_update().get(pk=visitor.contact_id)
    visitor.contact = contact
    visitor.save(update_fields=["contact"])
    if not previous.is_anonymous:  # a shared browser: the other person keeps their history
        return None
    # The anonymous visit came first: its first touch (source, UTM) is the person's.
    first_touch = {
        name: getattr(previous, name)
        for name in ("source_id", *UTM_FIELDS)
        if getattr(previous, name) and not getattr(contact, name)
    }
    if first_touch:
        Contact.objects.filter(pk=contact.pk).update(**first_touch)
        for name, value in first_touch.items():
            setattr(contact, name, value)
    moved = Event.objects.filter(contact=previous).update(contact=contact)
    previous.score_entries.update(contact=contact)
    Visitor.objects.filter(contact=previous).update(contact=contact)
    merge = ContactMerge.objects.create(
        into=contact, merged_contact_id=previous.pk, visitor_id=visitor_id, events_moved=moved
    )
    previous.delete()
    _recount(contact)
    return merge


def _recount(contact: Contact) -> None:
    """Score back to the ledger's sum and last activity to the latest touchpoint."""
    ledger = contact.score_entries.aggregate(total=Sum("points"))["total"] or 0
    latest = (
        contact.events.exclude(type__in=Event.SYSTEM_TYPES).aggregate(latest=Max("occurred_at"))
    )["latest"]
    Contact.objects.filter(pk=contact.pk).update(score=ledger, last_activity_at=latest)
    contact.score, contact.last_activity_at = ledger, latest


FORM_FIELDS = ("first_name", "last_name", "company", "phone")


@transaction.atomic
def form_submit(
    *,
    form: Form,
    email: str,
    fields: dict[str, str],
    consent: bool,
    ip: str | None = None,
    page: str = "",
    visitor_id: str = "",
    utm: dict[str, str] | None = None,
) -> Contact:
    """A person sent a form: their contact (made or completed: blanks are filled, nothing known
    is overwritten), the consent with its proof, the browser's history and a form_submit event."""
    if visitor_id:
        # The visitor before any contact, in the order the page-view drain locks them, so the
        # two never wait on each other in a circle.
        list(Visitor.objects.select_for_update().filter(visitor_id=visitor_id).values("pk"))
    contact, created = contact_upsert(email=email, cause=StageChange.Cause.SYSTEM)
    blanks = {k: v for k, v in fields.items() if k in FORM_FIELDS and v and not getattr(contact, k)}
    if created or not contact.source_id:  # first touch: where this person came from
        blanks["source"] = form.source
        blanks.update({k: v for k, v in (utm or {}).items() if k in CONTACT_FIELDS and v})
    if blanks:
        contact_update(contact=contact, **blanks)
    if consent:
        Consent.objects.create(
            contact=contact, form=form, wording=form.consent_text,
            wording_version=form.consent_version, ip=ip, page=page[:1000],
        )  # fmt: skip
        Contact.objects.filter(pk=contact.pk).update(
            consent=Contact.Consent.GRANTED, consent_at=timezone.now(),
            consent_method=f"form:{form.key} v{form.consent_version}",
        )  # fmt: skip
    if visitor_id:
        visitor_stitch(visitor_id=visitor_id, contact=contact)
    event_record(
        contact=contact,
        type=Event.Type.FORM_SUBMIT,
        properties={"form": form.key, "form_name": form.name, "url": page},
        source="form",
    )
    return contact


def page_view_capture(
    *, visitor_id: str, url: str, title: str = "", referrer: str = "", utm: dict[str, str]
) -> None:
    """A page view from the snippet: queued when Redis is there (the drain stores it within
    seconds), else stored at once. A Redis that fails is not a lost view: it is stored now."""
    if tracking.enabled() and not tracking.outage.ongoing():
        try:
            tracking.push(visitor_id=visitor_id, url=url, title=title, referrer=referrer, utm=utm)
            return
        except RedisError:
            tracking.outage.begin("page views are stored directly in the database meanwhile")
    page_view_record(visitor_id=visitor_id, url=url, title=title, referrer=referrer, utm=utm)


def page_view_record(
    *, visitor_id: str, url: str, title: str = "", referrer: str = "", utm: dict[str, str]
) -> None:
    """A page view stored at once (no queue, or the queue unavailable), as the drain stores
    one: on the visitor's contact, or kept anonymous if the visitor is not worth one yet."""
    view = tracking.QueuedView(
        id=secrets.token_hex(12), visitor_id=visitor_id, url=url, title=title,
        referrer=referrer, utm=utm, at=timezone.now(),
    )  # fmt: skip
    page_views_record_many(views=[view])


PAGE_VIEW_BATCH_SIZE = 1000
# Stop after this many batches (one drain task must not run for ever behind a flood); beat or
# the next kick carries on.
PAGE_VIEW_MAX_BATCHES = 50
# Drains in a row that failed on the same batch before it is stored view by view.
PAGE_VIEW_MAX_ATTEMPTS = 5


def page_views_drain(
    *, batch_size: int = PAGE_VIEW_BATCH_SIZE, max_batches: int = PAGE_VIEW_MAX_BATCHES
) -> int:
    """Store the page views waiting in the queue, a batch per transaction. Returns how many
    were read (a view left by a dead drainer and already stored counts, but is stored once)."""
    if not tracking.enabled():
        return 0
    token = tracking.lock()
    if token is None:  # another drainer is at work
        return 0
    total = 0
    try:
        for _ in range(max_batches):
            raw = tracking.take(batch_size)
            if not raw:
                break
            views = [view for view in map(tracking.parse, raw) if view is not None]
            try:
                page_views_record_many(views=views)
            except (DatabaseError, connection.Database.Error):  # the latter from COPY
                # A lock wait given up, or a visitor merged by a form meanwhile: the batch stays
                # on the processing list and the next drain stores it. A batch that keeps
                # failing is stored view by view, so one bad view cannot stall the queue.
                logger.warning("Page view batch not stored this time", exc_info=True)
                if tracking.failed_again() < PAGE_VIEW_MAX_ATTEMPTS:
                    break
                _page_views_one_by_one(views)
            tracking.forget_failures()
            total += len(raw)
            if not tracking.done(token, len(raw)):
                logger.warning("Page view drain lost its lock; stopping.")
                return total
    finally:
        tracking.release(token)
    return total


def _page_views_one_by_one(views: Sequence[tracking.QueuedView]) -> None:
    for view in views:
        try:
            page_views_record_many(views=[view])
        except (DatabaseError, connection.Database.Error):
            logger.exception("Page view %s cannot be stored; kept aside in Redis.", view.id)
            tracking.set_aside(view)


@transaction.atomic
def page_views_record_many(*, views: Sequence[tracking.QueuedView]) -> list[int]:
    """Store queued page views: visitors resolved to their contacts (unknown ones become
    anonymous suspects, in bulk), first-touch UTM kept, events stored once per view id."""
    if not views:
        return []
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # Analytics, like the direct path: no wait for the disk flush. And a lock held by a
            # form that is merging a visitor is not worth waiting long for: retried next drain.
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
            cursor.execute("SET LOCAL lock_timeout TO '2s'")
    contact_ids = _visitor_contacts(views)
    waiting = [view for view in views if view.visitor_id not in contact_ids]
    if waiting:
        _anonymous_views_keep(waiting)
        views = [view for view in views if view.visitor_id in contact_ids]
    # Views kept while these visitors were anonymous come first: the first touch is theirs.
    kept = _anonymous_views_take(list(contact_ids)) if contact_ids else []
    _first_touch_utm([(contact_ids[view.visitor_id], view.utm) for view in [*kept, *views]])
    return events_record_many(
        events=[_kept_view_event(view, contact_ids[view.visitor_id]) for view in kept]
        + [
            _page_view_event(
                contact_ids[view.visitor_id],
                at=view.at,
                url=view.url,
                title=view.title,
                referrer=view.referrer,
                utm=view.utm,
                key=view.idempotency_key,
            )
            for view in views
        ]
    )


def _page_view_event(
    contact_id: int, *, at: datetime, url: str, title: str, referrer: str,
    utm: Mapping[str, str], key: str,
) -> NewEvent:  # fmt: skip
    """A beacon's page view as an event: its UTM values among its properties."""
    return NewEvent(
        contact_id=contact_id,
        type=Event.Type.PAGE_VIEW,
        occurred_at=at,
        properties={"url": url, "title": title, "referrer": referrer, **utm},
        source="beacon",
        idempotency_key=key,
    )


def _kept_view_event(view: AnonymousView, contact_id: int) -> NewEvent:
    return _page_view_event(
        contact_id, at=view.occurred_at, url=view.url, title=view.title,
        referrer=view.referrer, utm=view.utm, key=view.key,
    )  # fmt: skip


def _anonymous_views_keep(views: Sequence[tracking.QueuedView]) -> None:
    AnonymousView.objects.bulk_create(
        [
            AnonymousView(
                visitor_id=view.visitor_id,
                occurred_at=view.at,
                url=view.url,
                title=view.title,
                referrer=view.referrer,
                utm=view.utm,
                key=view.idempotency_key,
            )  # fmt: skip
            for view in views
        ],
        ignore_conflicts=True,
    )


def _anonymous_views_take(visitor_ids: Sequence[str]) -> list[AnonymousView]:
    """The views kept for these visitors while they were anonymous, taken off that table
    (oldest first), to become page-view events of their contacts."""
    kept = list(
        AnonymousView.objects.select_for_update()
        .filter(visitor_id__in=visitor_ids)
        .order_by("occurred_at", "pk")
    )
    if kept:
        AnonymousView.objects.filter(pk__in=[view.pk for view in kept]).delete()
    return kept


def anonymous_views_purge() -> int:
    """Forget the views of visitors who stayed anonymous for VISITOR_ANONYMOUS_DAYS."""
    cutoff = timezone.now() - timedelta(days=settings.VISITOR_ANONYMOUS_DAYS)
    deleted, _ = AnonymousView.objects.filter(occurred_at__lt=cutoff).delete()
    return deleted


def _visitor_contacts(views: Sequence[tracking.QueuedView]) -> dict[str, int]:
    """Visitor id -> contact id for a batch; unknown visitors become anonymous suspects."""
    wanted = sorted({view.visitor_id for view in views})
    if connection.vendor == "postgresql":
        # Shared locks on the visitors first: a form merging one of them waits for this batch
        # (or this batch for it) before either touches a contact, so they cannot deadlock, and
        # a visitor merged meanwhile is read with its new contact.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT visitor_id, contact_id FROM contacts_visitor "
                "WHERE visitor_id = ANY(%s) ORDER BY visitor_id FOR SHARE",
                [wanted],
            )
            found = dict(cursor.fetchall())
    else:
        found = dict(
            Visitor.objects.filter(visitor_id__in=wanted).values_list("visitor_id", "contact_id")
        )
    missing = [vid for vid in wanted if vid not in found]
    if not missing:
        return found
    first_utm = _worth_a_contact(missing, views)
    if not first_utm:
        return found
    missing = list(first_utm)
    now = timezone.now()
    contacts = [
        Contact(created_at=now, stage_entered_at=now, updated_at=now, **first_utm.get(vid, {}))
        for vid in missing
    ]
    bulk_copy(contacts)
    Visitor.objects.bulk_create(
        [
            Visitor(visitor_id=vid, contact_id=contact.pk, first_seen_at=now)
            for vid, contact in zip(missing, contacts, strict=True)
        ],
        ignore_conflicts=True,
    )
    # A form may have claimed one of these visitors meanwhile: its contact wins, ours goes.
    claimed = dict(
        Visitor.objects.filter(visitor_id__in=missing).values_list("visitor_id", "contact_id")
    )
    orphans = [c.pk for vid, c in zip(missing, contacts, strict=True) if claimed[vid] != c.pk]
    if orphans:
        Contact.objects.filter(pk__in=orphans).delete()
    found.update(claimed)
    return found


def _worth_a_contact(
    visitor_ids: list[str], views: Sequence[tracking.QueuedView]
) -> dict[str, dict[str, str]]:
    """The unknown visitors that become contacts now: those that have seen
    VISITOR_CONTACT_AFTER_VIEWS pages, counting the views kept while they were anonymous, each
    with the UTM values of its first view that carries some. The others (most often one page
    and gone, or a script inventing ids) stay without a contact."""
    wanted = set(visitor_ids)
    kept = (
        AnonymousView.objects.filter(visitor_id__in=visitor_ids)
        .order_by("occurred_at", "pk")
        .values_list("visitor_id", "utm")
    )
    seen: Counter[str] = Counter()
    first_utm: dict[str, dict[str, str]] = {}
    for visitor_id, utm in [
        *kept,
        *((v.visitor_id, v.utm) for v in views if v.visitor_id in wanted),
    ]:
        seen[visitor_id] += 1
        if utm:
            first_utm.setdefault(visitor_id, utm)
    return {
        vid: first_utm.get(vid, {})
        for vid in visitor_ids
        if seen[vid] >= settings.VISITOR_CONTACT_AFTER_VIEWS
    }


def _first_touch_utm(views: Sequence[tuple[int, dict[str, str]]]) -> None:
    """UTM values go to a contact that has none yet, from its first view that carries some;
    ``views`` are (contact id, UTM values) in the order they were seen."""
    first: dict[int, dict[str, str]] = {}
    for contact_id, utm in views:
        if utm:
            first.setdefault(contact_id, utm)
    if not first:
        return
    updated = []
    for contact in Contact.objects.filter(pk__in=list(first)).only("pk", *UTM_FIELDS):
        if not (contact.utm_source or contact.utm_medium or contact.utm_campaign):
            for name, value in first[contact.pk].items():
                setattr(contact, name, value)
            updated.append(contact)
    bulk_update_fast(updated, list(UTM_FIELDS))


# --- CSV import -------------------------------------------------------------------------------
IMPORT_BATCH_SIZE = 1000
# A whole file runs in one task; 20 MB of CSV is about 150,000 rows, a few minutes of work.
IMPORT_SOFT_TIME_LIMIT = 30 * 60
IMPORT_TIME_LIMIT = IMPORT_SOFT_TIME_LIMIT + 60
IMPORT_QUEUE_GRACE_SECONDS = 60


class ImportFailed(Exception):
    """The file could not be imported; the message is for the marketer."""


@transaction.atomic
def import_job_create(
    *,
    upload: UploadedFile,
    detected: csv_import.Detected,
    source: LeadSource | None,
    overwrite: bool,
    actor: AbstractBaseUser | None,
) -> ImportJob:
    """Store an uploaded CSV with what was detected in it and a proposed column mapping."""
    job = ImportJob(
        filename=(upload.name or "import.csv")[:255],
        created_by=actor,
        source=source,
        overwrite=overwrite,
        encoding=detected.encoding,
        delimiter=detected.delimiter,
        columns=detected.columns,
        mapping=csv_import.propose_mapping(detected.columns),
    )
    job.file.save(job.filename, upload, save=False)
    job.save()
    return job


@transaction.atomic
def import_job_start(*, job: ImportJob, mapping: list[str]) -> bool:
    """Confirm the mapping and queue the import; False if it was already started (two tabs)."""
    now = timezone.now()
    started = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.MAPPING).update(
        status=ImportJob.Status.QUEUED, mapping=mapping, queued_at=now
    )
    if started:
        job.status, job.mapping, job.queued_at = ImportJob.Status.QUEUED, mapping, now
        transaction.on_commit(lambda: _send_import(job.pk))
    return bool(started)


def _send_import(job_id: int) -> None:
    from contacts.tasks import import_contacts_task

    broker.send(import_contacts_task, job_id)


def contacts_import(*, job: ImportJob) -> bool:
    """Run a queued import; False when another worker claimed it first (a double delivery).

    Not atomic as a whole: each batch commits with its counts, so the progress bar moves and a
    crash loses at most the batch in flight. Importing a file again is harmless (rows already
    imported count as unchanged), which is the way out of a failed run.
    """
    claimed = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.QUEUED).update(
        status=ImportJob.Status.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return False
    status, error = ImportJob.Status.DONE, ""
    try:
        _import_file(job)
    except ImportFailed as failure:
        status, error = ImportJob.Status.FAILED, str(failure)
    except Exception:
        logger.exception("Import %s failed", job.pk)
        status = ImportJob.Status.FAILED
        error = coded("import_unexpected")
    ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.RUNNING).update(
        status=status, error=error, finished_at=timezone.now()
    )
    return True


def _import_file(job: ImportJob) -> None:
    groups, errors = _read_job_file(job)
    rows_total = len(errors) + sum(len(rows) for rows in groups.values())
    with transaction.atomic():
        ImportRowError.objects.bulk_create(errors, batch_size=IMPORT_BATCH_SIZE)
        ImportJob.objects.filter(pk=job.pk).update(
            rows_total=rows_total, rows_done=len(errors), rejected_count=len(errors)
        )
    keys = list(groups)
    for start in range(0, len(keys), IMPORT_BATCH_SIZE):
        _import_batch(job, {key: groups[key] for key in keys[start : start + IMPORT_BATCH_SIZE]})


ImportGroups = dict[tuple[str, str], list[csv_import.CleanRow]]


def _read_job_file(job: ImportJob) -> tuple[ImportGroups, list[ImportRowError]]:
    """Valid rows grouped by person (lower-cased email, else external id; file order kept),
    and the refused ones.

    The whole file is read first so that a duplicate in any later batch merges into its first
    row; the upload form caps the size, so this stays a few dozen MB at most."""
    with job.file.open("rb") as stored:
        raw = stored.read()
    try:
        text = raw.decode(job.encoding)
    except (UnicodeDecodeError, LookupError) as error:
        raise ImportFailed(coded("import_unreadable")) from error
    groups: ImportGroups = {}
    errors: list[ImportRowError] = []
    with_external_id: set[tuple[str, str]] = set()
    with _cyclic_gc_paused():
        _read_rows(job, text, groups, errors, with_external_id)
    return _join_external_ids(job, groups, errors, with_external_id), errors


def _read_rows(
    job: ImportJob,
    text: str,
    groups: ImportGroups,
    errors: list[ImportRowError],
    with_external_id: set[tuple[str, str]],
) -> None:
    try:
        for row in csv_import.read_rows(text, job.delimiter):
            try:
                clean = csv_import.clean_row(row, job.mapping, job.delimiter)
            except csv_import.RowRefused as refusal:
                errors.append(
                    ImportRowError(
                        job=job,
                        line_number=row.line_number,
                        raw=csv_import.raw_text(row.cells, job.delimiter)[:10_000],
                        message=refusal.reason[:500],
                    )
                )
                continue
            groups.setdefault(clean.key, []).append(clean)
            if "external_id" in clean.fields:
                with_external_id.add(clean.key)
    except csv.Error as error:
        raise ImportFailed(coded("import_not_csv", cut=True, error=str(error))) from error


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a file's rows are read: they make no reference cycles,
    but each full collection walks all of them again (about half the time spent reading)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _join_external_ids(
    job: ImportJob,
    groups: ImportGroups,
    errors: list[ImportRowError],
    with_external_id: set[tuple[str, str]],
) -> ImportGroups:
    """Rows without email join the person whose row gives their external id with an email. An
    external id given with two different emails is refused on the later rows: which person it
    is cannot be guessed. ``with_external_id``: the groups with an external id on some row."""
    if not with_external_id:
        return groups
    owner: dict[str, tuple[str, str]] = {}
    given_on: dict[str, int] = {}
    for key, rows in list(groups.items()):
        if key[0] != "email" or key not in with_external_id:
            continue
        kept = []
        for row in rows:
            external_id = row.fields.get("external_id")
            if external_id and owner.setdefault(external_id, key) != key:
                message = coded(
                    "import_external_id_taken", cut=True, id=external_id,
                    line=given_on[external_id],
                )  # fmt: skip
                errors.append(_row_error(job, row, message))
                continue
            if external_id:
                given_on.setdefault(external_id, row.line_number)
            kept.append(row)
        if kept:
            groups[key] = kept
        else:
            del groups[key]
    for external_id, key in owner.items():
        rows = groups.pop(("external_id", external_id), None)
        if rows and key in groups:
            groups[key] = sorted([*groups[key], *rows], key=lambda row: row.line_number)
        elif rows:
            groups[("external_id", external_id)] = rows
    return groups


def _row_error(job: ImportJob, row: csv_import.CleanRow, message: str) -> ImportRowError:
    # The cells as mapped (ignored columns blank): a clean row keeps no copy of its raw text.
    cells = [row.fields.get(target, "") if target else "" for target in job.mapping]
    return ImportRowError(
        job=job,
        line_number=row.line_number,
        raw=csv_import.raw_text(cells, job.delimiter)[:10_000],
        message=message[:500],
    )


def _import_batch(job: ImportJob, batch: ImportGroups) -> None:
    # A contact created meanwhile by someone else (a form, another import) breaks the unique
    # email constraint: the batch rolls back and is read again, finding that contact this time.
    for attempt in range(3):
        try:
            with transaction.atomic():
                if connection.vendor == "postgresql":
                    # Not waiting for the WAL flush of each batch: a database crash may lose
                    # the last batches committed, with their counts (the job's row is in the
                    # same transaction), and importing the file again completes it.
                    with connection.cursor() as cursor:
                        cursor.execute("SET LOCAL synchronous_commit = off")
                counts, refused = _apply_batch(job, batch)
                ImportRowError.objects.bulk_create(refused)
                ImportJob.objects.filter(pk=job.pk).update(
                    rows_done=F("rows_done") + sum(counts.values()),
                    created_count=F("created_count") + counts["created"],
                    merged_count=F("merged_count") + counts["merged"],
                    unchanged_count=F("unchanged_count") + counts["unchanged"],
                    rejected_count=F("rejected_count") + counts["rejected"],
                )
            return
        except IntegrityError:
            if attempt == 2:
                raise


# What the import reads of a known contact: plain values, no model instances (a batch finds
# thousands of them).
IMPORT_PROFILE = tuple(name for name in csv_import.IMPORT_FIELDS if name != "email")
KNOWN_COLUMNS = ("pk", "email", "stage", "source_id", *IMPORT_PROFILE)
KnownContact = dict[str, Any]


def _apply_batch(job: ImportJob, batch: ImportGroups) -> tuple[Counter[str], list[ImportRowError]]:
    """Rows per outcome, and the rows refused. A new person is one created row (their later
    rows in the file are merged into it); rows of a known contact are merged if they changed
    it, else unchanged. A row whose email and external id name two different contacts is
    refused: merging them is a person's decision, not an import's."""
    emails = {value for kind, value in batch if kind == "email"}
    external_ids = {
        row.fields["external_id"]
        for rows in batch.values()
        for row in rows
        if "external_id" in row.fields
    }
    by_email, by_external_id = _known_contacts(emails, external_ids)
    counts: Counter[str] = Counter()
    refused: list[ImportRowError] = []
    created: list[dict[str, str]] = []
    updated: dict[int, KnownContact] = {}
    become_leads: list[int] = []
    changed_fields: set[str] = set()
    now = timezone.now()
    suppressed = _suppressed(emails.difference(by_email))
    for (kind, value), rows in batch.items():
        if kind == "email" and value in suppressed:  # an erased person stays erased
            refused.extend(
                _row_error(job, row, coded("import_erased", cut=True, email=value)) for row in rows
            )
            counts["rejected"] += len(rows)
            continue
        if len(rows) == 1:
            incoming = rows[0].fields
        else:
            incoming = {}
            for row in rows:
                csv_import.merge_fields(incoming, row.fields, overwrite=job.overwrite)
        found_by_email = by_email.get(value) if kind == "email" else None
        found_by_id = by_external_id.get(incoming.get("external_id", ""))
        conflict = _identity_conflict(incoming, found_by_email, found_by_id)
        if conflict:
            refused.extend(_row_error(job, row, conflict) for row in rows)
            counts["rejected"] += len(rows)
            continue
        contact = found_by_email or found_by_id
        if contact is None:
            created.append(incoming)
            counts["created"] += 1
            counts["merged"] += len(rows) - 1
            continue
        changes = _contact_changes(contact, incoming, job)
        if changes:
            if "email" in changes and contact["stage"] == Contact.Stage.SUSPECT:
                become_leads.append(contact["pk"])
            contact.update(changes)
            changed_fields |= set(changes)
            updated[contact["pk"]] = contact
        counts["merged" if changes else "unchanged"] += len(rows)
    if updated:
        _update_imported(list(updated.values()), sorted(changed_fields), now)
    if created:
        _create_imported(job, created, now)
    if become_leads:
        _imported_leads(job, become_leads, at=now)
    return counts, refused


def _known_contacts(
    emails: set[str], external_ids: set[str]
) -> tuple[dict[str, KnownContact], dict[str, KnownContact]]:
    """The contacts with these (lower-cased) emails or external ids, locked in id order; one
    dict per contact, reached by either key.

    Locked FOR NO KEY UPDATE, as an UPDATE locks them: other writers wait, but not the foreign
    key checks of events and stage changes recorded meanwhile for these contacts."""
    by_email: dict[str, KnownContact] = {}
    by_external_id: dict[str, KnownContact] = {}
    for contact in _known_contact_rows(emails, external_ids):
        lowered = contact.pop("lowered")
        if lowered:
            by_email[lowered] = contact
        if contact["external_id"]:
            by_external_id[contact["external_id"]] = contact
    return by_email, by_external_id


# One index probe per email, forced by the LIMIT: given the thousand emails as one array,
# the planner expects a thousand matches and scans the whole table instead (10-50 ms a batch,
# against 2 ms; a batch's emails are mostly new).
KNOWN_CONTACTS_SQL = """
SELECT {columns}, lower(email) AS lowered FROM contacts_contact
WHERE id = ANY(ARRAY(
    SELECT found.id FROM unnest(%s::text[]) AS wanted(email)
    CROSS JOIN LATERAL (
        SELECT id FROM contacts_contact WHERE lower(email) = wanted.email LIMIT 1
    ) AS found
    UNION ALL
    SELECT id FROM contacts_contact WHERE external_id = ANY(%s::text[])
))
ORDER BY id
FOR NO KEY UPDATE
"""


def _known_contact_rows(emails: set[str], external_ids: set[str]) -> list[KnownContact]:
    if connection.vendor != "postgresql":
        wanted = Q(lowered__any=emails) | Q(external_id__any=external_ids)
        return list(
            Contact.objects.select_for_update(no_key=True)
            .annotate(lowered=Lower("email"))
            .filter(wanted)
            .order_by("pk")
            .values(*KNOWN_COLUMNS, "lowered")
        )
    meta = Contact._meta
    quote = connection.ops.quote_name
    columns = ", ".join(
        quote(meta.get_field(name).column) if name != "pk" else quote(meta.pk.column)
        for name in KNOWN_COLUMNS
    )
    with connection.cursor() as cursor:
        cursor.execute(
            KNOWN_CONTACTS_SQL.format(columns=columns),
            [_text_array(emails), _text_array(external_ids)],
        )
        names = [*KNOWN_COLUMNS, "lowered"]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _suppressed(emails: set[str]) -> set[str]:
    """The emails of erased people: ``Suppression.suppressed`` with one array parameter instead
    of a placeholder per email."""
    by_hash = {Suppression.hash(email): email for email in emails}
    if not by_hash:
        return set()
    if connection.vendor != "postgresql":
        found = Suppression.objects.filter(email_hash__any=by_hash.keys())
        return {by_hash[digest] for digest in found.values_list("email_hash", flat=True)}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT email_hash FROM contacts_suppression WHERE email_hash = ANY(%s::text[])",
            [_text_array(by_hash)],
        )
        return {by_hash[digest] for (digest,) in cursor.fetchall()}


def _text_array(values: Iterable[str]) -> str:
    """A text[] parameter as one literal: psycopg adapts a list element by element, which costs
    a batch's thousand emails a few milliseconds more."""
    quoted = (value.replace("\\", "\\\\").replace('"', '\\"') for value in values)
    return "{" + ",".join(f'"{value}"' for value in quoted) + "}"


def _identity_conflict(
    incoming: dict[str, str], by_email: KnownContact | None, by_id: KnownContact | None
) -> str:
    """Why the row cannot be merged, or "": its email and its external id belong to two
    contacts, or its external id belongs to a contact with another email."""
    email, external_id = incoming.get("email"), incoming.get("external_id")
    if by_email and by_id and by_email["pk"] != by_id["pk"]:
        return coded("import_two_contacts", cut=True, email=email, id=external_id)
    if email and by_id and not by_email and by_id["email"]:
        return coded(
            "import_external_id_elsewhere", cut=True, id=external_id, other=by_id["email"],
            email=email,
        )  # fmt: skip
    return ""


def _contact_changes(
    contact: KnownContact, incoming: dict[str, str], job: ImportJob
) -> dict[str, Any]:
    # The email found the contact (its case as stored is left alone), or the external id did and
    # the contact had no email yet.
    profile = {name: value for name, value in incoming.items() if name != "email"}
    current = {name: contact[name] for name in profile}
    csv_import.merge_fields(current, profile, overwrite=job.overwrite)
    changes: dict[str, Any] = {
        name: value for name, value in current.items() if value != contact[name]
    }
    if incoming.get("email") and not contact["email"]:
        changes["email"] = incoming["email"]
    if job.source_id and not contact["source_id"]:
        changes["source_id"] = job.source_id
    return changes


def _update_imported(contacts: list[KnownContact], names: list[str], now: datetime) -> None:
    """Write the changed fields of known contacts: on PostgreSQL one ``UPDATE … FROM unnest``,
    each column one array. Only contacts that changed are given (each update of a contact row
    goes through all its indexes)."""
    meta = Contact._meta
    fields = [meta.get_field(name) for name in names]
    if connection.vendor != "postgresql":
        objects = []
        for contact in contacts:
            obj = Contact(pk=contact["pk"])
            for field in fields:
                setattr(obj, field.attname, contact[field.attname])
            obj.updated_at = now
            objects.append(obj)
        Contact.objects.bulk_update(objects, [*(f.name for f in fields), "updated_at"])
        return
    quote = connection.ops.quote_name
    columns = [quote(field.column) for field in fields]
    assignments = ", ".join(f"{column} = v.{column}" for column in columns)
    arrays = ", ".join(f"%s::{field.db_type(connection)}[]" for field in fields)
    # Column names come from the model; every value is a parameter.
    sql = (
        f"UPDATE contacts_contact AS c SET {assignments}, updated_at = %s "  # noqa: S608
        f"FROM unnest(%s::bigint[], {arrays}) AS v(id, {', '.join(columns)}) WHERE c.id = v.id"
    )
    params = [now, array_param([contact["pk"] for contact in contacts])]
    params += [[contact[field.attname] for contact in contacts] for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _create_imported(job: ImportJob, people: list[dict[str, str]], now: datetime) -> None:
    """New contacts with an email are leads from the start (no one else can have moved a row
    that did not exist), with the suspect → lead StageChange and event every lead has; those
    known by an external id only are suspects until an email comes."""
    if connection.vendor != "postgresql":
        contacts = [Contact(**fields, source_id=job.source_id) for fields in people]
        for contact in contacts:
            if contact.email:
                contact.stage, contact.stage_entered_at = Contact.Stage.LEAD, now
        bulk_copy(contacts)
        leads = [contact.pk for contact in contacts if contact.email]
        _imported_leads(job, leads, at=now, moved=True)
        return
    ids = _copy_contacts(people, source_id=job.source_id, now=now)
    leads = [pk for pk, fields in zip(ids, people, strict=True) if "email" in fields]
    _imported_leads(job, leads, at=now, moved=True)


def _copy_contacts(
    people: list[dict[str, str]], *, source_id: int | None, now: datetime
) -> list[int]:
    """COPY new contacts straight from the imported values (PostgreSQL): every other column
    as a new contact has it, read once from a model instance, so the two cannot drift apart."""
    meta = Contact._meta
    fields = meta.concrete_fields
    quote = connection.ops.quote_name
    templates = {}
    for stage in (Contact.Stage.LEAD, Contact.Stage.SUSPECT):
        template = Contact(stage=stage, stage_entered_at=now, created_at=now, source_id=source_id)
        templates[stage] = [_copy_value(field)(template) for field in fields]
    position = {field.attname: index for index, field in enumerate(fields)}
    id_position = position[meta.pk.attname]
    columns = ", ".join(quote(field.column) for field in fields)
    with connection.cursor() as cursor, connection.wrap_database_errors:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence('contacts_contact', 'id')) "
            "FROM generate_series(1, %s)",
            [len(people)],
        )
        ids = [pk for (pk,) in cursor.fetchall()]
        # Column names come from the model.
        with cursor.cursor.copy(f"COPY contacts_contact ({columns}) FROM STDIN") as copy:  # noqa: S608
            for pk, person in zip(ids, people, strict=True):
                row = list(
                    templates[Contact.Stage.LEAD if "email" in person else Contact.Stage.SUSPECT]
                )
                row[id_position] = pk
                for name, value in person.items():
                    row[position[name]] = value
                copy.write_row(row)
    return ids


def _import_actor(job: ImportJob) -> tuple[str, str]:
    """(actor name, reason) of the stage changes an import makes."""
    reason = coded("imported_from", file=job.filename)
    actor_name = ""
    if job.created_by is not None:
        actor_name = job.created_by.get_full_name() or job.created_by.get_username()
    return actor_name, reason


def _imported_leads(
    job: ImportJob, contact_ids: list[int], *, at: datetime, moved: bool = False
) -> None:
    """Suspects the import gave an email are leads: the move (unless already made, ``moved``)
    and the StageChange and event every lead has."""
    if not contact_ids:
        return
    actor_name, reason = _import_actor(job)
    moves = [
        PlannedMove(
            pk, Contact.Stage.SUSPECT, Contact.Stage.LEAD, reason=reason, actor_name=actor_name
        )
        for pk in contact_ids
    ]
    if moved:
        stage_changes_record(at=at, moves=moves, cause=StageChange.Cause.IMPORT, objects=False)
    else:
        stage_move_many(moves=moves, cause=StageChange.Cause.IMPORT, at=at)


def imports_sweep() -> tuple[int, int]:
    """Send again the imports whose message was lost (broker down when queued), and mark failed
    those whose worker died: past the task's hard time limit, nothing can still be running them.
    Returns (sent, failed)."""
    now = timezone.now()
    waiting = list(
        ImportJob.objects.filter(
            status=ImportJob.Status.QUEUED,
            queued_at__lte=now - timedelta(seconds=IMPORT_QUEUE_GRACE_SECONDS),
        ).values_list("pk", flat=True)
    )
    for job_id in waiting:  # the claim makes a second delivery harmless
        _send_import(job_id)
    failed = ImportJob.objects.filter(
        status=ImportJob.Status.RUNNING,
        started_at__lte=now - timedelta(seconds=IMPORT_TIME_LIMIT + 60),
    ).update(
        status=ImportJob.Status.FAILED,
        finished_at=now,
        error=coded("import_interrupted"),
    )
    return len(waiting), failed


# --- Sales queue ------------------------------------------------------------------------------


class ClaimRefused(Exception):
    """The lead cannot be claimed (someone was faster, it moved on); the message says why."""


class OutcomeRefused(Exception):
    """An outcome that cannot be recorded as asked; the message is for the rep."""


def _user_name(user: Any) -> str:
    if user is None:
        return ""
    return user.get_full_name() or user.get_username()


def _claim_refusal(contact_id: int, user: AbstractBaseUser) -> str:
    contact = Contact.objects.select_related("owner").filter(pk=contact_id).first()
    claimed_by_another = contact is not None and contact.owner_id not in (None, user.pk)
    if claimed_by_another and contact.stage == Contact.Stage.SQL:
        # The race the queue is about: say who was faster, but not whom the lead is about
        # (another rep's lead is not the loser's to see).
        return _("%(owner)s claimed this lead first.") % {"owner": _user_name(contact.owner)}
    if contact is None or not Contact.objects.visible_to(user).filter(pk=contact_id).exists():
        # Whether it was deleted or is a contact this user may not open: the same words.
        return _("This lead is no longer in the queue.")
    if contact.owner_id == user.pk:
        return _("%(contact)s is already yours.") % {"contact": contact.display_name}
    return _("%(contact)s is no longer an SQL waiting for a rep (now: %(stage)s).") % {
        "contact": contact.display_name,
        "stage": contact.get_stage_display(),
    }


# Compare-and-set: only a waiting SQL matches, so of two reps clicking at once exactly one
# UPDATE finds the row (the other waits for the row lock, then sees an owner and matches
# nothing). The audit row rides in the same statement: one round trip, the lock held for that
# statement only.
CLAIM_POSTGRESQL = """
WITH claimed AS (
    UPDATE contacts_contact SET owner_id = %(user)s, claimed_at = %(now)s, updated_at = %(now)s
    WHERE id = %(contact)s AND owner_id IS NULL AND stage = 'sql'
    RETURNING id
)
INSERT INTO contacts_contactaudit (contact_id, action, actor_id, owner_id, note, at)
SELECT id, %(action)s, %(user)s, %(user)s, '', %(now)s FROM claimed
RETURNING contact_id
"""


def contact_claim(*, contact_id: int, user: AbstractBaseUser) -> None:
    """Make ``user`` the owner of this waiting SQL, or raise ``ClaimRefused`` saying why."""
    now = timezone.now()
    if connection.vendor == "postgresql":
        params = {"user": user.pk, "now": now, "contact": contact_id,
                  "action": ContactAudit.Action.CLAIMED.value}  # fmt: skip
        with connection.cursor() as cursor:
            cursor.execute(CLAIM_POSTGRESQL, params)
            claimed = cursor.rowcount
    else:
        with transaction.atomic():
            claimed = Contact.objects.filter(
                pk=contact_id, owner__isnull=True, stage=Contact.Stage.SQL
            ).update(owner=user, claimed_at=now, updated_at=now)
            if claimed == 1:
                ContactAudit.objects.create(
                    contact_id=contact_id, action=ContactAudit.Action.CLAIMED, actor=user,
                    owner=user, at=now,
                )  # fmt: skip
    if claimed != 1:
        raise ClaimRefused(_claim_refusal(contact_id, user))


# The next waiting SQL in queue order, locked; rows other reps are claiming right now are
# skipped instead of waited for, so twenty reps clicking "claim next" get twenty leads. The
# audit row is written by the same statement: one round trip, and a statement is atomic.
CLAIM_NEXT_POSTGRESQL = """
WITH claimed AS (
    UPDATE contacts_contact SET owner_id = %(user)s, claimed_at = %(now)s, updated_at = %(now)s
    WHERE id = (
        SELECT id FROM contacts_contact
        WHERE stage = 'sql' AND owner_id IS NULL
        ORDER BY score DESC, stage_entered_at, id
        LIMIT 1 FOR UPDATE SKIP LOCKED
    ) AND owner_id IS NULL AND stage = 'sql'
    RETURNING id
)
INSERT INTO contacts_contactaudit (contact_id, action, actor_id, owner_id, note, at)
SELECT id, %(action)s, %(user)s, %(user)s, '', %(now)s FROM claimed
RETURNING contact_id
"""
# SQLite has no row locks: it runs one writer at a time, so the single UPDATE is enough.
CLAIM_NEXT_SQLITE = """
UPDATE contacts_contact SET owner_id = %(user)s, claimed_at = %(now)s, updated_at = %(now)s
WHERE id = (
    SELECT id FROM contacts_contact
    WHERE stage = 'sql' AND owner_id IS NULL
    ORDER BY score DESC, stage_entered_at, id
    LIMIT 1
) AND owner_id IS NULL AND stage = 'sql'
RETURNING id
"""


def contact_claim_next(*, user: AbstractBaseUser) -> int | None:
    """Claim the first waiting SQL (highest score, then longest wait) in one statement, with
    its audit row. Returns its id, or None when the queue is empty.

    Not wrapped in ``atomic`` on PostgreSQL: the single statement is its own transaction, and
    BEGIN/COMMIT would double the round trips of the busiest click in the queue."""
    now = timezone.now()
    params = {"user": user.pk, "now": now, "action": ContactAudit.Action.CLAIMED.value}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(CLAIM_NEXT_POSTGRESQL, params)
            row = cursor.fetchone()
        return int(row[0]) if row else None
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(CLAIM_NEXT_SQLITE, params)
        row = cursor.fetchone()
        if row is None:
            return None
        ContactAudit.objects.create(
            contact_id=row[0], action=ContactAudit.Action.CLAIMED, actor=user, owner=user, at=now
        )
    return int(row[0])


@transaction.atomic
def contact_release(*, contact: Contact, actor: AbstractBaseUser | None, note: str = "") -> bool:
    """Put a claimed SQL back in the queue (an admin's decision). False if it was not claimed."""
    previous = Contact.objects.select_for_update().filter(pk=contact.pk).first()
    if previous is None or previous.owner_id is None or previous.stage != Contact.Stage.SQL:
        return False
    Contact.objects.filter(pk=contact.pk).update(
        owner=None, claimed_at=None, updated_at=timezone.now()
    )
    audit = ContactAudit.objects.create(
        contact=contact,
        action=ContactAudit.Action.RELEASED,
        actor=actor,
        note=note or coded("released_from", owner=_user_name(previous.owner)),
    )
    _tell_previous_owners([(audit, previous.owner_id)], actor=actor)
    contact.owner, contact.claimed_at = None, None
    return True


@transaction.atomic
def contact_reassign(
    *, contact: Contact, to: AbstractBaseUser, actor: AbstractBaseUser | None
) -> bool:
    """Give an SQL (claimed or waiting) to another rep. False if it is not an SQL any more."""
    previous = Contact.objects.select_for_update().filter(pk=contact.pk).first()
    if previous is None or previous.stage != Contact.Stage.SQL or previous.owner_id == to.pk:
        return False
    now = timezone.now()
    Contact.objects.filter(pk=contact.pk).update(owner=to, claimed_at=now, updated_at=now)
    note = (
        coded("reassigned_from", owner=_user_name(previous.owner))
        if previous.owner_id
        else coded("reassigned_from_queue")
    )
    audit = ContactAudit.objects.create(
        contact=contact, action=ContactAudit.Action.REASSIGNED, actor=actor, owner=to, note=note,
        at=now,
    )  # fmt: skip
    _tell_previous_owners([(audit, previous.owner_id)], actor=actor)
    contact.owner, contact.claimed_at = to, now
    return True


@transaction.atomic
def claims_release_stale(*, now: datetime | None = None) -> int:
    """SQLs claimed more than CLAIM_RELEASE_HOURS ago and still without an outcome go back to
    the queue, each with an audit row. Returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.CLAIM_RELEASE_HOURS)
    stale = list(
        Contact.objects.claims_stale(cutoff)
        .select_for_update(skip_locked=True)
        .values_list("pk", "owner_id", "claimed_at")
    )
    if not stale:
        return 0
    Contact.objects.filter(pk__in=[pk for pk, _, _ in stale]).update(
        owner=None, claimed_at=None, updated_at=now
    )
    names = {
        user.pk: _user_name(user)
        for user in _user_model().objects.filter(pk__in={owner for _, owner, _ in stale})
    }
    audits = ContactAudit.objects.bulk_create(
        ContactAudit(
            contact_id=pk,
            action=ContactAudit.Action.EXPIRED,
            at=now,
            note=coded(
                "claim_expired",
                owner=names.get(owner, "?"),
                claimed=claimed.isoformat(),
                hours=settings.CLAIM_RELEASE_HOURS,
            ),
        )
        for pk, owner, claimed in stale
    )
    _tell_previous_owners(
        [(audit, owner) for audit, (_pk, owner, _claimed) in zip(audits, stale, strict=True)]
    )
    return len(stale)


def _tell_previous_owners(
    taken: list[tuple[ContactAudit, int | None]], *, actor: AbstractBaseUser | None = None
) -> None:
    """The rep a lead was taken from hears of it on their next visit (unless they did it)."""
    Notification.objects.bulk_create(
        Notification(user_id=owner, audit=audit, created_at=audit.at)
        for audit, owner in taken
        if owner is not None and owner != getattr(actor, "pk", None)
    )


@transaction.atomic
def notifications_take(*, user: AbstractBaseUser, limit: int = 50) -> list[Notification]:
    """The user's notifications not shown yet, oldest first, marked read: each is shown once."""
    unread = list(
        Notification.objects.filter(user=user, read_at=None)
        .select_related("audit__contact", "audit__actor", "audit__owner")
        .order_by("created_at", "id")[:limit]
    )
    if unread:
        Notification.objects.filter(pk__in=[n.pk for n in unread], read_at=None).update(
            read_at=timezone.now()
        )
    return unread


def _user_model() -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model()


class Outcome:
    WON = StageChange.Outcome.WON
    LOST = StageChange.Outcome.LOST
    RECYCLED = StageChange.Outcome.RECYCLED


LOST_REASONS = [
    ("budget", gettext_lazy("No budget")),
    ("competitor", gettext_lazy("Chose a competitor")),
    ("timing", gettext_lazy("Not the right time")),
    ("no_need", gettext_lazy("No real need")),
    ("no_answer", gettext_lazy("Never answered")),
    ("other", gettext_lazy("Other")),
]


@transaction.atomic
def contact_outcome_record(
    *,
    contact: Contact,
    user: AbstractBaseUser,
    outcome: str,
    lost_reason: str = "",
    reason: str = "",
) -> StageChange:
    """The rep's verdict on their SQL: won (→ client, with a purchase event), lost (a reason
    from the list, or "other" with words) or recycled to marketing (→ lead, with words).
    Lost and recycled leads leave the rep: if they come back as SQLs they wait in the queue."""
    reason = reason.strip()
    current = (
        Contact.objects.select_for_update(of=("self",)).select_related("owner").get(pk=contact.pk)
    )
    if current.stage != Contact.Stage.SQL:
        raise OutcomeRefused(
            _("%(contact)s is no longer an SQL (now: %(stage)s).")
            % {"contact": current.display_name, "stage": current.get_stage_display()}
        )
    if current.owner_id != user.pk and not getattr(user, "is_staff", False):
        raise OutcomeRefused(
            _("%(contact)s is not one of your leads.") % {"contact": current.display_name}
        )
    labels = dict(LOST_REASONS)
    if outcome == Outcome.WON:
        to, text = Contact.Stage.CLIENT, reason
    elif outcome == Outcome.LOST:
        if lost_reason not in labels:
            raise OutcomeRefused(_("Say why the lead was lost."))
        if lost_reason == "other" and not reason:
            raise OutcomeRefused(_("Describe the reason when you choose “Other”."))
        to = Contact.Stage.LEAD
        text = coded("lost", reason=lost_reason, words=reason)
    elif outcome == Outcome.RECYCLED:
        if not reason:
            raise OutcomeRefused(_("Say why the lead goes back to marketing."))
        to, text = Contact.Stage.LEAD, reason
    else:
        raise OutcomeRefused(_("Choose an outcome."))
    try:
        change = stage_move(
            contact=current, to=to, cause=StageChange.Cause.USER, actor=user, reason=text,
            outcome=outcome,
        )  # fmt: skip
    except StageMoveError as error:
        raise OutcomeRefused(str(error)) from error
    if outcome == Outcome.WON:
        event_record(
            contact=current, type=Event.Type.PURCHASE, source="sales",
            properties={"recorded_by": user.get_username(), "stage_change_id": change.pk},
            idempotency_key=f"won:{change.pk}",
        )  # fmt: skip
    else:
        Contact.objects.filter(pk=current.pk).update(owner=None, claimed_at=None)
    ContactAudit.objects.create(
        contact=current, action=ContactAudit.Action.OUTCOME, actor=user,
        owner=user if outcome == Outcome.WON else None,
        note=coded("outcome", outcome=outcome, why=text),
    )  # fmt: skip
    contact.refresh_from_db()
    return change


# --- Referrals --------------------------------------------------------------------------------
REFERRER_KEYS = ("referrer_id", "referrer_email")


def referrer_find(properties: Any) -> Contact | None:
    """The contact an event's properties name as the person who referred it, if known."""
    if not isinstance(properties, dict):
        return None
    referrer_id = properties.get("referrer_id")
    if referrer_id not in (None, ""):
        try:
            return Contact.objects.filter(pk=int(referrer_id), erased_at__isnull=True).first()
        except (TypeError, ValueError, OverflowError):
            return None
    email = properties.get("referrer_email")
    if isinstance(email, str) and normalize_email(email):
        return Contact.objects.filter(email__iexact=normalize_email(email)).first()
    return None


@transaction.atomic
def contact_referral_link(
    *,
    contact: Contact,
    referrer: Contact,
    actor: AbstractBaseUser | None = None,
    replace: bool = False,
) -> bool:
    """``referrer`` brought ``contact`` in: the link is kept on the contact (the first referrer
    wins, unless a person corrects it with ``replace``) and a ``referral`` event goes on the
    referrer's timeline, which scoring counts (a client with a referral becomes an
    ambassador). False if nothing changed."""
    if referrer.pk == contact.pk:
        return False
    target = Contact.objects.filter(pk=contact.pk)
    if replace:
        target = target.exclude(referred_by=referrer)
    else:
        target = target.filter(referred_by__isnull=True)
    linked = target.update(referred_by=referrer)
    if not linked:
        return False
    contact.referred_by = referrer
    ContactAudit.objects.create(
        contact=contact, action=ContactAudit.Action.REFERRAL, actor=actor,
        note=coded("referred_by", referrer=referrer.display_name),
    )  # fmt: skip
    event_record(
        contact=referrer, type=Event.Type.REFERRAL, source="system",
        properties={"referred_contact_id": contact.pk},
        idempotency_key=f"referral:{contact.pk}:{referrer.pk}",
    )  # fmt: skip
    return True


def _link_referrals(pairs: Iterable[tuple[int, Any]]) -> None:
    """Events that name a referrer (``referrer_id`` or ``referrer_email`` in properties)."""
    for contact_id, properties in pairs:
        if not isinstance(properties, dict) or not any(k in properties for k in REFERRER_KEYS):
            continue
        referrer = referrer_find(properties)
        contact = Contact.objects.filter(pk=contact_id, referred_by__isnull=True).first()
        if referrer is not None and contact is not None:
            contact_referral_link(contact=contact, referrer=referrer)


# --- Personal data ----------------------------------------------------------------------------


class ContactSuppressed(Exception):
    """The email belongs to a person whose data was erased: they are not recreated silently."""

    def __init__(self, email: str = "") -> None:
        super().__init__(
            _(
                "%(email)s belongs to a person whose data was erased at their request; "
                "they cannot be added again without their new consent."
            )
            % {"email": email or _("This address")}
        )
        self.email = email


def _personal_data_modules() -> list[Any]:
    return [importlib.import_module(path) for path in settings.LEADFUNNEL_PERSONAL_DATA]


def _rows(queryset: Any) -> list[dict[str, Any]]:
    return list(queryset.order_by("pk").values())


@transaction.atomic
def contact_export(*, contact: Contact, actor: AbstractBaseUser | None) -> dict[str, Any]:
    """Everything kept about a person, as plain data for a JSON file: the profile and every
    row that points at the contact, whichever app keeps it (found through the relations, so
    scoring's ledger is in without contacts importing scoring). The export is audited."""
    data: dict[str, Any] = {
        "exported_at": timezone.now(),
        "profile": Contact.objects.filter(pk=contact.pk).values().get(),
    }
    for relation in Contact._meta.related_objects:
        if not relation.one_to_many or relation.related_model is ContactAudit:
            continue
        name = relation.get_accessor_name()
        rows = relation.related_model.objects.filter(**{relation.field.name: contact})
        if relation.related_model is Contact:  # people this contact referred: ids only
            data[name] = list(rows.order_by("pk").values("id", "created_at"))
        else:
            data[name] = _rows(rows)
    for module in _personal_data_modules():
        data.update(module.export(contact))
    ContactAudit.objects.create(contact=contact, action=ContactAudit.Action.EXPORTED, actor=actor)
    return data


def contact_export_json(*, contact: Contact, actor: AbstractBaseUser | None) -> str:
    return json.dumps(
        contact_export(contact=contact, actor=actor), cls=DjangoJSONEncoder, indent=2,
        ensure_ascii=False,
    )  # fmt: skip


ERASED_FIELDS = {
    "email": None, "first_name": "", "last_name": "", "company": "", "phone": "",
    "job_title": "", "time_zone": "", "utm_term": "", "utm_content": "", "consent_method": "",
}  # fmt: skip


@transaction.atomic
def contact_erase(
    *,
    contact: Contact,
    actor: AbstractBaseUser | None,
    action: str = ContactAudit.Action.ERASED,
    note: str = "",
) -> bool:
    """Anonymise a person: what identifies them goes, what counts stays (the contact row with
    its stage, score, source and campaign; its events by type and date; its stage history).
    Their email is kept only as a hash, so an import, a form or the API cannot silently bring
    them back. False if the contact was already erased."""
    current = Contact.objects.select_for_update().get(pk=contact.pk)
    if current.erased_at:
        return False
    now = timezone.now()
    if current.email:
        Suppression.objects.get_or_create(email_hash=Suppression.hash(current.email))
    Contact.objects.filter(pk=current.pk).update(
        **ERASED_FIELDS, do_not_email=True, erased_at=now, updated_at=now
    )
    # Event properties hold URLs, form fields, user agents. Keys may hold an email: hashed,
    # they stay unique without naming anyone.
    current.events.update(properties={})
    current.events.filter(idempotency_key__isnull=False).exclude(
        idempotency_key__startswith="erased:"
    ).update(idempotency_key=Concat(Value("erased:"), MD5("idempotency_key")))
    current.stage_changes.update(reason="")
    current.consents.all().delete()
    current.visitors.all().delete()
    current.merges.update(visitor_id="")
    for module in _personal_data_modules():
        module.erase(current)
    ContactAudit.objects.create(contact=current, action=action, actor=actor, note=note, at=now)
    contact.refresh_from_db()
    return True


def contacts_purge_inactive(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Erase prospects with no activity for RETENTION_YEARS (off when 0). Returns how many."""
    years = settings.RETENTION_YEARS
    if years <= 0:
        return 0
    now = now or timezone.now()
    before = now - timedelta(days=round(365.25 * years))
    note = coded("inactive_years", years=years)
    erased = 0
    for contact in Contact.objects.inactive_prospects(before).order_by("pk")[:limit]:
        erased += contact_erase(
            contact=contact, actor=None, action=ContactAudit.Action.PURGED, note=note
        )
    return erased
