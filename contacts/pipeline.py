"""The event pipeline: hands queued events to the handlers of ``LEADFUNNEL_EVENT_HANDLERS``
in batches, exactly once, and sweeps up events whose task never ran."""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, Exists, F, OuterRef, Value, When
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone
from django.utils.module_loading import import_string

from contacts.events import _pending, events_enqueue_on_commit
from contacts.lookups import array_param
from contacts.models import (
    Contact,
    Event,
    EventRow,
    PendingEvent,
)
from contacts.reports import dashboard

logger = logging.getLogger(__name__)

T = TypeVar("T")

EventHandler = Callable[[Sequence[EventRow]], None]


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
