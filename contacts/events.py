"""Recording events on a contact's timeline: one (``event_record``) or a batch
(``events_record_many``).

Each stored event also gets a row in the queue of events waiting for the handlers
(``PendingEvent``, in the same transaction), and by default one task per call is sent after
commit (``events_send_on_commit``) to run the handlers on them (``contacts.pipeline``). With
``send=False`` the caller takes the ids and decides: a handler returns them to the pipeline,
which handles them in its next round, in the same transaction; a loop that records many events
in one transaction sends them once, as one task. An event whose task is lost is found in the
queue by the sweep.

Raw SQL kept: ``_copy_events`` (COPY into a scratch table, then one INSERT … ON CONFLICT DO
NOTHING that also queues the events), on PostgreSQL. The ORM version (``_create_events``: read
the stored keys, then ``bulk_create`` the events and their queue rows) took 1,234 ms against
245 ms for the same 1,000-event batches, 5.0× slower (median of 10 alternated runs in one
process, 2026-12-06, on a machine loaded by other benchmarks: the ratio is the figure; the API
ingest benchmark, ``make bench BENCH=ingest``, puts this statement on its hot path). It is also
the only one of the two that keeps an idempotency key once when two requests race.
"""

from __future__ import annotations

import logging
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
    send: bool = True,
) -> tuple[Event, bool]:
    """Store an event once per idempotency key; returns (event, created).

    After commit the new event is handed to the handlers in ``LEADFUNNEL_EVENT_HANDLERS``
    (``send=False``: the caller hands it on, see the module docstring).
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
        "send": send,
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


# NewEvent's fields and the time of arrival, in the order _copy_events writes them.
EVENT_FIELDS = (
    "contact", "type", "occurred_at", "received_at", "properties", "source", "idempotency_key",
)  # fmt: skip


@transaction.atomic
def events_record_many(*, events: Sequence[NewEvent], send: bool = True) -> list[int]:
    """Store a batch of events (an API call, an import) in a few statements, once per
    idempotency key, and hand the new ones to the workers after commit, as one task (not with
    ``send=False``). Returns their ids; an event whose key is already stored (or repeated in
    the batch) is left out."""
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
    ids = _events_insert(fresh, seen, timezone.now())
    if send:
        events_send_on_commit(ids)
    return ids


def _events_insert(events: Sequence[NewEvent], keys: set[str], now: datetime) -> list[int]:
    """Where PostgreSQL and the others differ: COPY there, the ORM's bulk paths elsewhere."""
    if connection.vendor == "postgresql":
        return _copy_events(events, now)
    return _create_events(events, keys, now)


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
    key is new and queues them for the handlers. Table and column names come from the models.

    Stays raw (``make bench BENCH=ingest``, batches of 1,000 through the API): see
    the module docstring for the ORM version measured against it."""
    quote = connection.ops.quote_name
    events_table, queue_table = quote(Event._meta.db_table), quote(PendingEvent._meta.db_table)
    columns = ", ".join(quote(Event._meta.get_field(name).column) for name in EVENT_FIELDS)
    queue = {name: quote(PendingEvent._meta.get_field(name).column)
             for name in ("event", "received_at", "attempts", "last_error")}  # fmt: skip
    key = quote(Event._meta.get_field("idempotency_key").column)
    pk = quote(Event._meta.pk.column)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS incoming_events "
            f"(LIKE {events_table} INCLUDING DEFAULTS INCLUDING IDENTITY) ON COMMIT DELETE ROWS"
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
            WITH incoming AS (DELETE FROM incoming_events RETURNING {pk} AS position, {columns}),
            stored AS (
                INSERT INTO {events_table} ({columns})
                SELECT {columns} FROM incoming ORDER BY position
                ON CONFLICT ({key}) DO NOTHING
                RETURNING {pk}
            ),
            queued AS (
                INSERT INTO {queue_table}
                    ({queue["event"]}, {queue["received_at"]}, {queue["attempts"]},
                     {queue["last_error"]})
                SELECT {pk}, %s, 0, '' FROM stored
            )
            SELECT {pk} FROM stored ORDER BY {pk}
            """,  # noqa: S608 (names from the models, values are parameters)
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
    send: bool = True,
) -> Event:
    """Store one event and its queue row (no idempotency check: the caller made sure), move
    the contact's last activity, and send it after commit unless ``send`` is False."""
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
    if send:
        events_send_on_commit([event.pk])
    return event


def events_send_on_commit(event_ids: Sequence[int]) -> None:
    """Hand these events to a worker, as one task, once the current transaction commits (at
    once outside a transaction). Nothing is sent if it rolls back."""
    ids = list(event_ids)
    if ids:
        transaction.on_commit(lambda: events_send(ids), robust=True)


def events_send(event_ids: list[int]) -> bool:
    """Send one task that runs the handlers on these events (``contacts.pipeline``). The seam
    where tests watch what goes to the broker; False when the broker is down (the sweep will
    take the events)."""
    return broker.send("contacts.tasks.process_events_task", event_ids)
