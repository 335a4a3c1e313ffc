"""The event pipeline: hands stored events to the handlers of ``LEADFUNNEL_EVENT_HANDLERS``, in
batches, exactly once, and sweeps up events whose task never ran.

One event's route
-----------------
1. **Stored.** ``contacts.events.event_record`` (one event) or ``events_record_many`` (a batch)
   inserts the ``Event`` and, in the same transaction, its row in the queue (``PendingEvent``).
   After commit, ``events_send_on_commit`` sends one task per call,
   ``contacts.tasks.process_events_task(event_ids)`` (through ``contacts.broker.send``).
2. **Taken.** The task calls ``events_process``. In one transaction it locks the queue rows
   (``SKIP LOCKED``: a task delivered twice finds them gone or held) and the events' contacts
   (``FOR NO KEY UPDATE SKIP LOCKED``: events of a contact another worker holds are left in the
   queue and sent again after commit). It reads what handlers need of the contacts (stage,
   score) into an ``EventBatch``.
3. **Handled.** Each handler of ``LEADFUNNEL_EVENT_HANDLERS`` is called in order with the
   batch, in one savepoint: ``handler(batch) -> Changes | None``. Today: referral linking
   (``contacts.referrals.on_event``), scoring (``scoring.handlers.on_event``: ledger lines,
   the score, threshold moves), nurturing (``nurturing.handlers.on_event``: goals and
   triggers), and last the dashboard rollups (``contacts.reports.rollups.on_event``: rows
   shared between workers, held until commit, so taken as late as possible). A handler reads
   settings once per run through ``batch.once(key, read)`` and returns the points it gave
   per contact (later handlers see them in ``batch.contacts``) and the ids of the events it
   recorded with ``send=False`` (a threshold's ``stage_changed``).
4. **Cascade.** Those new events are handled in the next round, in the same transaction (up
   to ``CASCADE_ROUNDS``; the rest are sent as a task after commit).
5. **Done.** After each round the pipeline writes the batch's contacts once: the points the
   handlers gave added to their scores, their last activity moved forward; and it deletes the
   handled events' queue rows. If a handler raises, the savepoint is rolled back
   and the batch retried event by event: the failing event stays queued with ``attempts`` and
   ``last_error``, the others are handled. Commit.
6. **Swept.** ``events_sweep`` (beat) hands on queued events older than
   ``EVENT_SWEEP_GRACE_SECONDS`` whose task was lost (broker down, worker killed), up to
   ``EVENT_MAX_ATTEMPTS`` attempts each.

One write per contact and batch, measured: scoring's handler returns its points instead of
writing the score itself, because a second UPDATE of every scored contact (score, then last
activity: both indexed, so neither update is HOT) brought ``make bench BENCH=scoring`` from
0.50 to 0.42 of the raw insert (7,808 against 8,397 events/s, same quiet machine, 6 December
2026). Scoring writes the score itself everywhere else (``scores_adjust``, decay, rescore).

Raw SQL kept here: that ``unnest`` UPDATE on PostgreSQL (``_contacts_write``). For 1,000
contacts it took 271 ms against 6,056 ms for the ORM's ``Case(When(pk=…))`` update (which
SQLite keeps), 22× (median of 10 alternated runs in one process, 2026-12-06, machine loaded by
other benchmarks: the ratio is the figure).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, Exists, F, OuterRef, Value, When
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone
from django.utils.module_loading import import_string

from contacts.durability import commit_without_waiting
from contacts.events import events_send_on_commit
from contacts.lookups import array_param
from contacts.models import Contact, Event, EventRow, PendingEvent

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Handlers' own events (stage_changed after a threshold) are handled at once, a few levels deep.
CASCADE_ROUNDS = 4


# --- The contract -----------------------------------------------------------------------------


@dataclass(slots=True)
class BatchContact:
    """A contact of the batch, locked until the batch commits, as the handlers need it."""

    stage: str
    score: int
    last_activity_at: datetime | None
    fit_grade: str = ""  # thresholds may ask for one (read with the lock: no query of its own)


@dataclass
class EventBatch:
    """What every handler receives: the events, their contacts (locked: no other worker
    changes them until commit) and a memo for what handlers read once per run."""

    events: list[EventRow]
    contacts: dict[int, BatchContact]
    memo: dict[str, Any] = field(default_factory=dict)

    def once(self, key: str, read: Callable[[], T]) -> T:
        """``read()`` once per ``events_process`` run (its rounds and retries share it): the
        settings handlers need for every batch (rules, thresholds, sequences)."""
        if key not in self.memo:
            self.memo[key] = read()
        return self.memo[key]


@dataclass(frozen=True)
class Changes:
    """What a handler changed: points it gave per contact (the pipeline adds them to the
    scores in its one write of the batch's contacts), and the ids of the events it recorded
    with ``send=False``, to be handled in the next round."""

    points: Mapping[int, int] = field(default_factory=dict)
    events: Sequence[int] = ()


EventHandler = Callable[[EventBatch], Changes | None]


def event_handlers() -> list[EventHandler]:
    return [import_string(path) for path in settings.LEADFUNNEL_EVENT_HANDLERS]


# --- The runner -------------------------------------------------------------------------------


def events_process(*, event_ids: Sequence[int]) -> int:
    """Hand pending events to every handler, in order, and take them off the queue; returns how
    many were handled (the route is in the module docstring)."""
    handlers = event_handlers()
    memo: dict[str, Any] = {}
    handled = 0
    later: list[int] = []
    with transaction.atomic():
        commit_without_waiting("redoable work: a forgotten commit leaves the events queued")
        ids = list(event_ids)
        for _ in range(CASCADE_ROUNDS):
            events, busy, contacts = _contacts_take(_dequeue(ids))
            later += [event.pk for event in busy]
            ids = []
            if events:
                batch = EventBatch(events=events, contacts=contacts, memo=memo)
                done, ids, points = _run_handlers(handlers, batch)
                _contacts_write(points, _activity_moves(events, contacts))
                PendingEvent.objects.filter(event_id__any={event.pk for event in done}).delete()
                handled += len(done)
            if not ids:
                break
        else:
            later += ids  # a long cascade: the rest goes out as a task
        events_send_on_commit(later)
    return handled


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


def _contacts_take(
    events: list[EventRow],
) -> tuple[list[EventRow], list[EventRow], dict[int, BatchContact]]:
    """Lock the contacts of these events and read them; returns (events to handle now, events
    whose contact another worker's batch holds, to leave for later, the locked contacts).

    FOR NO KEY UPDATE: the key-share locks of concurrent event inserts (their foreign key to
    the contact) don't conflict with it, so storing never waits on scoring. SKIP LOCKED: two
    workers never wait on each other's contacts, so they never deadlock either. When every
    contact is held elsewhere, the run waits for them (in id order) rather than give up.
    """
    if not events:
        return [], [], {}
    query = Contact.objects.filter(pk__any={event.contact_id for event in events}).order_by("pk")
    fields = ("pk", "stage", "score", "last_activity_at", "fit_grade")
    rows = query.select_for_update(no_key=True, skip_locked=True).values_list(*fields)
    contacts = {pk: BatchContact(*values) for pk, *values in rows}
    if not contacts:
        rows = query.select_for_update(no_key=True).values_list(*fields)
        contacts = {pk: BatchContact(*values) for pk, *values in rows}
        return events, [], contacts
    busy = [event for event in events if event.contact_id not in contacts]
    if not busy:
        return events, [], contacts
    return [event for event in events if event.contact_id in contacts], busy, contacts


def _run_handlers(
    handlers: list[EventHandler], batch: EventBatch
) -> tuple[list[EventRow], list[int], dict[int, int]]:
    """Run every handler on the batch in one savepoint; returns (events handled, ids of the
    events the handlers recorded, points given per contact). On a failure, the batch is retried
    event by event and the failing event recorded."""
    scores = {pk: contact.score for pk, contact in batch.contacts.items()}
    try:
        recorded: list[int] = []
        given: dict[int, int] = {}
        with transaction.atomic():
            for handler in handlers:
                changes = handler(batch)
                if changes is not None:
                    for pk, points in changes.points.items():
                        batch.contacts[pk].score += points
                        given[pk] = given.get(pk, 0) + points
                    recorded += changes.events
        return batch.events, recorded, given
    except Exception:
        # The savepoint took the handlers' writes back: so do the scores the batch shows.
        for pk, score in scores.items():
            batch.contacts[pk].score = score
        if len(batch.events) == 1:
            _record_failure(batch.events[0])
            return [], [], {}
    done: list[EventRow] = []
    recorded = []
    given = {}
    for event in batch.events:
        one = EventBatch(events=[event], contacts=batch.contacts, memo=batch.memo)
        handled, new, points = _run_handlers(handlers, one)
        done += handled
        recorded += new
        for pk, delta in points.items():
            given[pk] = given.get(pk, 0) + delta
    return done, recorded, given


def _record_failure(event: EventRow) -> None:
    logger.exception("Event %s failed in a handler", event.pk)
    PendingEvent.objects.filter(event_id=event.pk).update(
        attempts=F("attempts") + 1, last_error=traceback.format_exc(limit=5)[-4000:]
    )


# --- Last activity ----------------------------------------------------------------------------


def _activity_moves(
    events: Sequence[EventRow], contacts: Mapping[int, BatchContact]
) -> dict[int, datetime]:
    """Each contact's latest touchpoint in these events, where it moves its last activity
    forward (system events are not activity); the batch's contacts are updated to match."""
    latest: dict[int, datetime] = {}
    for event in events:
        if event.type in Event.SYSTEM_TYPES or event.contact_id not in contacts:
            continue
        known = latest.get(event.contact_id) or contacts[event.contact_id].last_activity_at
        if known is None or known < event.occurred_at:
            latest[event.contact_id] = event.occurred_at
    for pk, at in latest.items():
        contacts[pk].last_activity_at = at
    return latest


def _contacts_write(points: Mapping[int, int], latest: Mapping[int, datetime]) -> None:
    """One write of the batch's contacts: the points the handlers gave added to their scores,
    their last activity moved forward (they are locked: the values were read under the lock).
    PostgreSQL: one UPDATE from three arrays; elsewhere one CASE per column and few hundred."""
    points = {pk: delta for pk, delta in points.items() if delta}
    ids = sorted(points.keys() | latest.keys())
    if not ids:
        return
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(Contact._meta.db_table)
        pk = connection.ops.quote_name(Contact._meta.pk.column)
        score = connection.ops.quote_name(Contact._meta.get_field("score").column)
        column = connection.ops.quote_name(Contact._meta.get_field("last_activity_at").column)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} AS c SET {score} = c.{score} + v.delta, "  # noqa: S608
                f"{column} = GREATEST(c.{column}, v.at) "
                "FROM unnest(%s::bigint[], %s::integer[], %s::timestamptz[]) AS v(id, delta, at) "
                f"WHERE c.{pk} = v.id",
                [
                    array_param(ids),
                    [points.get(pk, 0) for pk in ids],
                    [latest.get(pk) for pk in ids],
                ],
            )
        return
    for start in range(0, len(ids), 300):
        chunk = ids[start : start + 300]
        changes: dict[str, Any] = {}
        if any(points.get(pk) for pk in chunk):
            changes["score"] = F("score") + Case(
                *(When(pk=pk, then=Value(points[pk])) for pk in chunk if points.get(pk)),
                default=Value(0),
            )
        moments = [(pk, latest[pk]) for pk in chunk if pk in latest]
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


# --- The sweep --------------------------------------------------------------------------------


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
    """Queue rows whose event is gone (deleted around the ORM; the queue has no database
    constraint, see ``PendingEvent.event``): they would hold up the sweep."""
    orphans = PendingEvent.objects.filter(event_id__any=set(event_ids)).exclude(
        Exists(Event.objects.filter(pk=OuterRef("event_id")))
    )
    return orphans.delete()[0]
