"""Write use cases for contacts: each is one atomic function; views, admin, tasks call these."""

from __future__ import annotations

import csv
import json
import logging
import secrets
import threading
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, Max, Q, Sum
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from redis.exceptions import RedisError

from contacts import broker, csv_import, tracking
from contacts.models import (
    ALLOWED_TRANSITIONS,
    ApiKey,
    Consent,
    Contact,
    ContactMerge,
    Event,
    EventRow,
    Form,
    ImportJob,
    ImportRowError,
    LeadSource,
    StageChange,
    Visitor,
    normalize_email,
)

logger = logging.getLogger(__name__)

EventHandler = Callable[[Sequence[EventRow]], None]


class StageMoveError(Exception):
    """A stage move that was refused; the message says why, for the person who asked."""


class TransitionNotAllowed(StageMoveError):
    pass


class StageConflict(StageMoveError):
    """Someone else moved the contact between our read and our write."""


class DuplicateContact(Exception):
    pass


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

    Each (from, to) group is one compare-and-set UPDATE; a contact someone else moved, or an
    anonymous one, is left out, and so are its later steps. Then one INSERT of the StageChanges
    and one of their ``stage_changed`` events. Moves of one contact are given in path order.
    """
    if cause not in StageChange.Cause.values:
        raise ValueError(f"unknown cause {cause!r}")
    now = at or timezone.now()
    steps: dict[int, int] = defaultdict(int)
    by_step: dict[int, list[PlannedMove]] = defaultdict(list)
    for move in moves:
        if move.to not in ALLOWED_TRANSITIONS[move.from_stage]:
            raise TransitionNotAllowed(f"{move.from_stage} → {move.to}")
        by_step[steps[move.contact_id]].append(move)
        steps[move.contact_id] += 1
    failed: set[int] = set()
    applied: list[PlannedMove] = []
    for step in sorted(by_step):
        groups: dict[tuple[str, str], list[PlannedMove]] = defaultdict(list)
        for move in by_step[step]:
            if move.contact_id not in failed:
                groups[(move.from_stage, move.to)].append(move)
        for (from_stage, to), group in groups.items():
            ids = [move.contact_id for move in group]
            moved = Contact.objects.filter(
                pk__in=ids, stage=from_stage, email__isnull=False
            ).update(stage=to, stage_entered_at=now, updated_at=now)
            if moved != len(ids):
                done = set(
                    Contact.objects.filter(pk__in=ids, stage=to, stage_entered_at=now).values_list(
                        "pk", flat=True
                    )
                )
                failed |= set(ids) - done
                group = [move for move in group if move.contact_id in done]
            applied.extend(group)
    return stage_changes_record(moves=applied, cause=cause, at=now)


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
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, meta.pk.column, len(objects)],
        )
        ids = [row[0] for row in cursor.fetchall()]
        columns = ", ".join(quote(field.column) for field in fields)
        with cursor.cursor.copy(f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN") as copy:
            for obj, pk in zip(objects, ids, strict=True):
                obj.pk = pk
                copy.write_row(
                    [
                        field.get_db_prep_save(field.pre_save(obj, True), connection)
                        for field in fields
                    ]
                )
                obj._state.adding, obj._state.db = False, connection.alias


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


def stage_changes_record(
    *, moves: Sequence[PlannedMove], cause: str, at: datetime
) -> list[StageChange]:
    """The StageChange rows of moves already applied, and their ``stage_changed`` events."""
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
    events_enqueue_on_commit([event.pk for event in events])
    return changes


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
        return _event_insert(**fields), True
    try:
        # A savepoint, so a concurrent insert of the same key does not spoil the caller's
        # transaction: we return the row that won instead.
        with transaction.atomic():
            event = _event_insert(**fields)
    except IntegrityError:
        return Event.objects.get(idempotency_key=idempotency_key), False
    return event, True


@dataclass(frozen=True)
class NewEvent:
    contact_id: int
    type: str
    occurred_at: datetime
    properties: dict[str, Any]
    source: str = ""
    idempotency_key: str | None = None


EVENT_COLUMNS = (
    "contact_id", "type", "occurred_at", "received_at", "properties", "source",
    "idempotency_key", "attempts", "last_error",
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
        if event.idempotency_key == "":
            event = replace(event, idempotency_key=None)  # blank is no key, as in event_record
        if event.idempotency_key:
            if event.idempotency_key in seen:
                continue
            seen.add(event.idempotency_key)
        fresh.append(event)
    now = timezone.now()
    if connection.vendor == "postgresql":
        stored_now = _copy_events(fresh, now)
    else:
        stored = set(
            Event.objects.filter(idempotency_key__in=seen).values_list("idempotency_key", flat=True)
        )
        created = Event.objects.bulk_create(
            [
                Event(received_at=now, **vars(event))
                for event in fresh
                if not event.idempotency_key or event.idempotency_key not in stored
            ]
        )
        stored_now = [(e.pk, e.contact_id, e.type, e.occurred_at) for e in created]
    _touch_last_activity(stored_now)
    ids = [pk for pk, *_ in stored_now]
    events_enqueue_on_commit(ids)
    return ids


def _copy_events(events: Sequence[NewEvent], now: datetime) -> list[tuple[int, int, str, datetime]]:
    # COPY into a scratch table, then one INSERT that skips keys already stored.
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
                    json.dumps(event.properties, cls=DjangoJSONEncoder), event.source,
                    event.idempotency_key, 0, "",
                ))  # fmt: skip
        cursor.execute(
            f"INSERT INTO contacts_event ({columns}) SELECT {columns} FROM incoming_events "  # noqa: S608
            "ORDER BY id ON CONFLICT (idempotency_key) DO NOTHING "
            "RETURNING id, contact_id, type, occurred_at"
        )
        stored = cursor.fetchall()
        cursor.execute("DELETE FROM incoming_events")
    return stored


def _touch_last_activity(stored: Sequence[tuple[int, int, str, datetime]]) -> None:
    """Move each contact's last activity forward to its latest new touchpoint (one UPDATE per
    distinct date would be many; one statement over (contact, latest) pairs is one)."""
    latest: dict[int, datetime] = {}
    for _pk, contact_id, kind, occurred_at in stored:
        if kind not in Event.SYSTEM_TYPES:
            if contact_id not in latest or latest[contact_id] < occurred_at:
                latest[contact_id] = occurred_at
    if not latest:
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE contacts_contact AS c SET last_activity_at = v.latest "
                "FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, latest) "
                "WHERE c.id = v.id "
                "AND (c.last_activity_at IS NULL OR c.last_activity_at < v.latest)",
                [list(latest), list(latest.values())],
            )
        return
    for contact_id, moment in latest.items():
        Contact.objects.filter(pk=contact_id).filter(
            Q(last_activity_at__isnull=True) | Q(last_activity_at__lt=moment)
        ).update(last_activity_at=moment)


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
        properties=properties or {},
        source=source,
        idempotency_key=idempotency_key or None,
    )
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
    """Hand unprocessed events to every handler, in order, then mark them processed.

    Handlers run inside the same transaction as the marking, so an event's effects are applied
    exactly once even when the broker delivers the task twice. One failing event does not hold
    back the rest of its batch: the batch is retried event by event, and the failure recorded.
    """
    handlers = event_handlers()
    with transaction.atomic():
        events = (
            Event.objects.unprocessed()
            .filter(pk__in=event_ids)
            .select_for_update(skip_locked=True)
            .order_by("pk")
            .rows()
        )
        if not events:
            return 0
        done = _run_handlers(handlers, events)
        Event.objects.filter(pk__in=[e.pk for e in done]).update(
            processed_at=timezone.now(), attempts=F("attempts") + 1, last_error=""
        )
    return len(done)


def _run_handlers(handlers: list[EventHandler], events: list[EventRow]) -> list[EventRow]:
    try:
        with transaction.atomic():
            for handler in handlers:
                handler(events)
        return events
    except Exception:
        if len(events) == 1:
            _record_failure(events[0])
            return []
    done = []
    for event in events:
        done.extend(_run_handlers(handlers, [event]))
    return done


def _record_failure(event: EventRow) -> None:
    logger.exception("Event %s failed in a handler", event.pk)
    Event.objects.filter(pk=event.pk).update(
        attempts=F("attempts") + 1, last_error=traceback.format_exc(limit=5)[-4000:]
    )


def events_sweep(*, batch_size: int = 1000) -> int:
    """Process events whose task never ran (broker down, worker killed). Returns how many."""
    cutoff = timezone.now() - timedelta(seconds=settings.EVENT_SWEEP_GRACE_SECONDS)
    total = 0
    while True:
        ids = list(
            Event.objects.unprocessed()
            .filter(received_at__lte=cutoff)
            .order_by("received_at")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return total
        processed = events_process(event_ids=ids)
        total += processed
        if processed == 0:
            # Everything left is locked by a worker right now or failing: leave it to them.
            return total


UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
CONTACT_FIELDS = (
    "email",
    "external_id",
    "first_name",
    "last_name",
    "company",
    "phone",
    "job_title",
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
        _become_lead(contact, cause=cause, actor=actor, reason=_("Created with an email address"))
    return contact


@transaction.atomic
def contact_update(
    *, contact: Contact, actor: AbstractBaseUser | None = None, **fields: Any
) -> Contact:
    """Change profile fields. An anonymous suspect who gains an email becomes a lead."""
    was_anonymous = contact.is_anonymous
    for name, value in _clean_fields(fields).items():
        setattr(contact, name, value)
    _save(contact, update_fields=[*fields, "updated_at"])
    if was_anonymous and contact.email and contact.stage == Contact.Stage.SUSPECT:
        _become_lead(
            contact, cause=StageChange.Cause.USER, actor=actor, reason=_("Email address added")
        )
    return contact


@transaction.atomic
def contact_upsert(
    *,
    email: str,
    cause: str = StageChange.Cause.SYSTEM,
    actor: AbstractBaseUser | None = None,
    **fields: Any,
) -> tuple[Contact, bool]:
    """The contact with this email (whatever its case) gets the fields given; an unknown email
    becomes a new lead. Returns (contact, created)."""
    if not normalize_email(email):
        raise ValueError("an upsert needs an email")
    existing = Contact.objects.filter(email__iexact=normalize_email(email)).first()
    if existing is None:
        try:
            with transaction.atomic():
                return contact_create(email=email, cause=cause, actor=actor, **fields), True
        except DuplicateContact:  # created by a concurrent request between our read and write
            existing = Contact.objects.filter(email__iexact=normalize_email(email)).first()
            if existing is None:  # not the email: the external id is another contact's
                raise
    if fields:
        contact_update(contact=existing, actor=actor, **fields)
    return existing, False


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
    if "external_id" in fields:  # blank is none: the unique constraint ignores NULLs only
        fields["external_id"] = (fields["external_id"] or "").strip() or None
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
            return None
        except IntegrityError:  # the drain made it an anonymous suspect meanwhile: merge that
            visitor = Visitor.objects.select_for_update().get(visitor_id=visitor_id)
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
    if tracking.enabled():
        try:
            tracking.push(visitor_id=visitor_id, url=url, title=title, referrer=referrer, utm=utm)
            return
        except RedisError:
            logger.warning("Page view queue unavailable; storing the view directly.")
    page_view_record(visitor_id=visitor_id, url=url, title=title, referrer=referrer, utm=utm)


@transaction.atomic
def page_view_record(
    *, visitor_id: str, url: str, title: str = "", referrer: str = "", utm: dict[str, str]
) -> Event:
    """A page view from the snippet, on the visitor's contact (anonymous or known). UTM values
    are kept on the contact at its first touch only."""
    if connection.vendor == "postgresql":
        # The busiest write there is: not waiting for the disk flush doubles its rate. A crash
        # can lose the last fraction of a second of page views, never a form or a purchase.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
    contact = visitor_contact(visitor_id=visitor_id)
    if utm and not (contact.utm_source or contact.utm_medium or contact.utm_campaign):
        Contact.objects.filter(pk=contact.pk).update(**utm)
    properties = {"url": url, "title": title, "referrer": referrer, **utm}
    event, _ = event_record(
        contact=contact, type=Event.Type.PAGE_VIEW, properties=properties, source="beacon"
    )
    return event


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
    _first_touch_utm(views, contact_ids)
    return events_record_many(
        events=[
            NewEvent(
                contact_id=contact_ids[view.visitor_id],
                type=Event.Type.PAGE_VIEW,
                occurred_at=view.at,
                properties={
                    "url": view.url,
                    "title": view.title,
                    "referrer": view.referrer,
                    **view.utm,
                },
                source="beacon",
                idempotency_key=view.idempotency_key,
            )
            for view in views
        ]
    )


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
    first_utm: dict[str, dict[str, str]] = {}
    for view in views:
        if view.visitor_id in missing and view.utm:
            first_utm.setdefault(view.visitor_id, view.utm)
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


def _first_touch_utm(views: Sequence[tracking.QueuedView], contact_ids: dict[str, int]) -> None:
    """UTM values go to a contact that has none yet, from its first view that carries some
    (as ``page_view_record`` does one view at a time)."""
    first: dict[int, dict[str, str]] = {}
    for view in views:
        if view.utm:
            first.setdefault(contact_ids[view.visitor_id], view.utm)
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
        error = _("The import stopped on an unexpected error; the rows counted were imported.")
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
        raise ImportFailed(_("The file's characters cannot be read.")) from error
    groups: ImportGroups = {}
    errors: list[ImportRowError] = []
    try:
        for row in csv_import.read_rows(text, job.delimiter):
            try:
                clean = csv_import.clean_row(row, job.mapping)
            except ValidationError as refusal:
                errors.append(
                    ImportRowError(
                        job=job,
                        line_number=row.line_number,
                        raw=csv_import.raw_text(row.cells, job.delimiter)[:10_000],
                        message=refusal.messages[0][:500],
                    )
                )
                continue
            groups.setdefault(clean.key, []).append(clean)
    except csv.Error as error:
        raise ImportFailed(
            _("The file is not a valid CSV: %(error)s") % {"error": error}
        ) from error
    return _join_external_ids(job, groups, errors), errors


def _join_external_ids(
    job: ImportJob, groups: ImportGroups, errors: list[ImportRowError]
) -> ImportGroups:
    """Rows without email join the person whose row gives their external id with an email. An
    external id given with two different emails is refused on the later rows: which person it
    is cannot be guessed."""
    owner: dict[str, tuple[str, str]] = {}
    given_on: dict[str, int] = {}
    for key, rows in list(groups.items()):
        if key[0] != "email":
            continue
        kept = []
        for row in rows:
            external_id = row.fields.get("external_id")
            if external_id and owner.setdefault(external_id, key) != key:
                message = _(
                    "The external id “%(id)s” is given with another email on line %(line)d."
                ) % {"id": external_id, "line": given_on[external_id]}
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


def _apply_batch(job: ImportJob, batch: ImportGroups) -> tuple[Counter[str], list[ImportRowError]]:
    """Rows per outcome, and the rows refused. A new person is one created row (their later
    rows in the file are merged into it); rows of a known contact are merged if they changed
    it, else unchanged. A row whose email and external id name two different contacts is
    refused: merging them is a person's decision, not an import's."""
    emails = [value for kind, value in batch if kind == "email"]
    external_ids = {
        row.fields["external_id"]
        for rows in batch.values()
        for row in rows
        if row.fields.get("external_id")
    }
    by_email = {
        contact.lowered: contact
        for contact in Contact.objects.select_for_update()
        .annotate(lowered=Lower("email"))
        .filter(lowered__in=emails)
    }
    by_external_id = {}
    if external_ids:
        by_external_id = {
            contact.external_id: contact
            for contact in Contact.objects.select_for_update().filter(external_id__in=external_ids)
        }
    counts: Counter[str] = Counter()
    refused: list[ImportRowError] = []
    created: list[Contact] = []
    updated: list[Contact] = []
    become_leads: list[Contact] = []
    changed_fields: set[str] = set()
    now = timezone.now()
    for (kind, value), rows in batch.items():
        incoming: dict[str, str] = {}
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
            created.append(Contact(**incoming, source_id=job.source_id))
            counts["created"] += 1
            counts["merged"] += len(rows) - 1
            continue
        changes = _contact_changes(contact, incoming, job)
        if changes:
            if "email" in changes and contact.stage == Contact.Stage.SUSPECT:
                become_leads.append(contact)
            for name, field_value in changes.items():
                setattr(contact, name, field_value)
            contact.updated_at = now
            changed_fields |= set(changes)
            updated.append(contact)
        counts["merged" if changes else "unchanged"] += len(rows)
    if updated:
        bulk_update_fast(updated, [*sorted(changed_fields), "updated_at"])
    if created:
        _create_imported(job, created)
    if become_leads:
        _imported_leads(job, become_leads, at=now)
    return counts, refused


def _identity_conflict(
    incoming: dict[str, str], by_email: Contact | None, by_id: Contact | None
) -> str:
    """Why the row cannot be merged, or "": its email and its external id belong to two
    contacts, or its external id belongs to a contact with another email."""
    email, external_id = incoming.get("email"), incoming.get("external_id")
    if by_email and by_id and by_email.pk != by_id.pk:
        return _(
            "“%(email)s” and the external id “%(id)s” belong to two different contacts; "
            "nothing was merged."
        ) % {"email": email, "id": external_id}
    if email and by_id and not by_email and by_id.email:
        return _("The external id “%(id)s” belongs to %(other)s, not to %(email)s.") % {
            "id": external_id,
            "other": by_id.email,
            "email": email,
        }
    return ""


def _contact_changes(contact: Contact, incoming: dict[str, str], job: ImportJob) -> dict[str, Any]:
    # The email found the contact (its case as stored is left alone), or the external id did and
    # the contact had no email yet.
    profile = {name: value for name, value in incoming.items() if name != "email"}
    current = {name: getattr(contact, name) for name in profile}
    csv_import.merge_fields(current, profile, overwrite=job.overwrite)
    changes: dict[str, Any] = {
        name: value for name, value in current.items() if value != getattr(contact, name)
    }
    if incoming.get("email") and not contact.email:
        changes["email"] = incoming["email"]
    if job.source_id and not contact.source_id:
        changes["source_id"] = job.source_id
    return changes


def _create_imported(job: ImportJob, contacts: list[Contact]) -> None:
    """New contacts with an email are leads from the start (no one else can have moved a row
    that did not exist), with the suspect → lead StageChange and event every lead has; those
    known by an external id only are suspects until an email comes."""
    now = timezone.now()
    for contact in contacts:
        if contact.email:
            contact.stage, contact.stage_entered_at = Contact.Stage.LEAD, now
    bulk_copy(contacts)
    _imported_leads(job, [contact for contact in contacts if contact.email], at=now, moved=True)


def _imported_leads(
    job: ImportJob, contacts: list[Contact], *, at: datetime, moved: bool = False
) -> None:
    """Suspects the import gave an email are leads: the move (unless already made, ``moved``)
    and the StageChange and event every lead has."""
    if not contacts:
        return
    reason = _("Imported from %(file)s") % {"file": job.filename}
    actor_name = ""
    if job.created_by is not None:
        actor_name = job.created_by.get_full_name() or job.created_by.get_username()
    moves = [
        PlannedMove(
            contact.pk, Contact.Stage.SUSPECT, Contact.Stage.LEAD, reason=reason,
            actor_name=actor_name,
        )
        for contact in contacts
    ]  # fmt: skip
    if moved:
        stage_changes_record(at=at, moves=moves, cause=StageChange.Cause.IMPORT)
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
        error=_(
            "The import was interrupted. The rows counted were imported: upload the file again "
            "to import the rest (rows already imported will count as unchanged)."
        ),
    )
    return len(waiting), failed
