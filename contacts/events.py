"""Recording events on a contact's timeline: one (``event_record``) or a batch
(``events_record_many``), each queued for the handlers after commit."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from contacts import broker
from contacts.bulk import JSON_ENCODER
from contacts.machine_signals import flag_machine_signal
from contacts.models import (
    Contact,
    Event,
    PendingEvent,
)

logger = logging.getLogger(__name__)


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
        event = event_insert(**fields)
    else:
        try:
            # A savepoint, so a concurrent insert of the same key does not spoil the caller's
            # transaction: we return the row that won instead.
            with transaction.atomic():
                event = event_insert(**fields)
        except IntegrityError:
            return Event.objects.get(idempotency_key=idempotency_key), False
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


def event_insert(
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
    broker.send("contacts.tasks.process_events_task", event_ids)
