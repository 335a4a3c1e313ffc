"""Page views: captured in Redis by the beacon, drained in batches into events; a visitor
becomes a contact only when worth one (kept as anonymous views meanwhile)."""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from contacts.durability import commit_without_waiting
from contacts.events import NewEvent, events_record_many
from contacts.intake import tracking
from contacts.models import (
    AnonymousView,
    Contact,
    Event,
    Visitor,
)
from contacts.services import UTM_FIELDS

logger = logging.getLogger(__name__)


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
            except (DatabaseError, connection.Database.Error):
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
    _page_view_transaction()
    contact_ids = _visitor_contacts(views)
    waiting = [view for view in views if view.visitor_id not in contact_ids]
    if waiting:
        _anonymous_views_keep(waiting)
        views = [view for view in views if view.visitor_id in contact_ids]
    # Views kept while these visitors were anonymous come first: the first touch is theirs.
    kept = anonymous_views_take(list(contact_ids)) if contact_ids else []
    _first_touch_utm([(contact_ids[view.visitor_id], view.utm) for view in [*kept, *views]])
    return events_record_many(
        events=[kept_view_event(view, contact_ids[view.visitor_id]) for view in kept]
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


# A lock held by a form that is merging a visitor is not worth waiting long for: the batch is
# retried by the next drain.
PAGE_VIEW_LOCK_TIMEOUT = "2s"


def _page_view_transaction() -> None:
    """The settings of a page-view transaction, PostgreSQL only (SQLite has one writer at a time
    and keeps no such settings): lock waits given up after PAGE_VIEW_LOCK_TIMEOUT, and no wait
    for the disk flush at commit (analytics: a lost last second is acceptable)."""
    if connection.vendor != "postgresql":
        return
    commit_without_waiting("analytics whose last second may go")
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [PAGE_VIEW_LOCK_TIMEOUT])


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


def kept_view_event(view: AnonymousView, contact_id: int) -> NewEvent:
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


def anonymous_views_take(visitor_ids: Sequence[str]) -> list[AnonymousView]:
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
    # The visitors locked first, in order: a form merging one of them waits for this batch (or
    # this batch for it) before either touches a contact, so they cannot deadlock, and a visitor
    # merged meanwhile is read with its new contact. FOR NO KEY UPDATE, the ORM's weakest row
    # lock, still lets rows that point at a visitor be written meanwhile. (SQLite: one writer at
    # a time; the lock is not needed and the ORM leaves it out.)
    found = dict(
        Visitor.objects.select_for_update(no_key=True)
        .filter(visitor_id__in=wanted)
        .order_by("visitor_id")
        .values_list("visitor_id", "contact_id")
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
    Contact.objects.bulk_create(contacts)
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
    Contact.objects.bulk_update(updated, list(UTM_FIELDS))
