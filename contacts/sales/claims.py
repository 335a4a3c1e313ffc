"""The sales queue: claiming SQLs (one rep each, never two), releasing, reassigning, stale
claims released after the SLA, and the notifications they send."""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext as _

from contacts.models import (
    Activity,
    Contact,
    ContactAudit,
    Notification,
)
from contacts.notifications import notify
from contacts.reasons import coded

logger = logging.getLogger(__name__)


class ClaimRefused(Exception):
    """The lead cannot be claimed (someone was faster, it moved on); the message says why."""


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


def contact_claim(*, contact_id: int, user: AbstractBaseUser) -> None:
    """Make ``user`` the owner of this waiting SQL, or raise ``ClaimRefused`` saying why.

    Compare-and-set: only a waiting SQL matches, so of two reps clicking at once exactly one
    UPDATE finds the row (the other waits for the row lock, then sees an owner and matches
    nothing)."""
    if _claim(user=user, contact_id=contact_id) is None:
        raise ClaimRefused(_claim_refusal(contact_id, user))


def contact_claim_next(*, user: AbstractBaseUser) -> int | None:
    """Claim the first waiting SQL (highest score, then longest wait), with its audit row.
    Returns its id, or None when the queue is empty. Rows other reps are claiming right now
    are skipped instead of waited for, so twenty reps clicking at once get twenty leads."""
    return _claim(user=user, contact_id=None)


def _claim(*, user: AbstractBaseUser, contact_id: int | None) -> int | None:
    """Claim this waiting SQL (None: the head of the queue) and write its audit row; the id
    claimed, or None. The one place where PostgreSQL and SQLite differ.

    PostgreSQL: one statement (``_claim_statement``), its own transaction: no BEGIN/COMMIT,
    one round trip, the row lock held for that statement only. It stays raw SQL because the
    ORM version (bench/bench_queue.py keeps it: SELECT ... FOR UPDATE SKIP LOCKED, UPDATE and
    INSERT in a transaction; UPDATE and INSERT for a row) is far slower, measured in the same
    run (bench ``queue``, scale 1, 20 claimers, shared machine at load 16): claim next 440
    claims/s against 65.9 for the ORM (6.7x fewer), claim a row p95 135 ms against 347 ms
    (2.6x); again at load 9: 877 against 131 claims/s (6.7x), 49.3 against 121.3 ms (2.5x).

    SQLite runs one writer at a time (transactions begin IMMEDIATE): the ORM, in a
    transaction, cannot race."""
    now = timezone.now()
    if connection.vendor == "postgresql":
        params = {"user": user.pk, "now": now, "contact": contact_id, "stage": Contact.Stage.SQL,
                  "action": ContactAudit.Action.CLAIMED.value}  # fmt: skip
        with connection.cursor() as cursor:
            cursor.execute(_claim_statement(head=contact_id is None), params)
            row = cursor.fetchone()
        return int(row[0]) if row else None
    with transaction.atomic():
        if contact_id is None:
            contact_id = Contact.objects.sql_queue().values_list("pk", flat=True).first()
            if contact_id is None:
                return None
        claimed = Contact.objects.filter(
            pk=contact_id, owner__isnull=True, stage=Contact.Stage.SQL
        ).update(owner=user, claimed_at=now, updated_at=now)
        if claimed != 1:
            return None
        ContactAudit.objects.create(
            contact_id=contact_id, action=ContactAudit.Action.CLAIMED, actor=user, owner=user,
            at=now,
        )  # fmt: skip
    return contact_id


@functools.cache
def _claim_statement(*, head: bool) -> str:
    """The compare-and-set UPDATE of a waiting SQL feeding the INSERT of its audit row, in one
    statement. The row is ``%(contact)s``, or with ``head`` the first of ``sql_queue()`` (the
    ORM writes that SELECT, so the queue order lives in one place), locked, skipping rows other
    reps hold. Names come from the models; every value, the stage code too, is a parameter."""
    contact, audit = Contact._meta, ContactAudit._meta

    def col(meta: Any, name: str) -> str:
        return connection.ops.quote_name(meta.get_field(name).column)

    which = "%(contact)s"
    if head:
        sql, params = Contact.objects.sql_queue().values("pk")[:1].query.sql_with_params()
        assert list(params) == [Contact.Stage.SQL], params  # the one value: the stage code
        which = sql.replace("%s", "%(stage)s") + " FOR UPDATE SKIP LOCKED"
    pk, owner, stage = col(contact, "id"), col(contact, "owner"), col(contact, "stage")
    return f"""
WITH claimed AS (
    UPDATE {contact.db_table}
    SET {owner} = %(user)s, {col(contact, "claimed_at")} = %(now)s,
        {col(contact, "updated_at")} = %(now)s
    WHERE {pk} = ({which}) AND {owner} IS NULL AND {stage} = %(stage)s
    RETURNING {pk}
)
INSERT INTO {audit.db_table} ({col(audit, "contact")}, {col(audit, "action")},
    {col(audit, "actor")}, {col(audit, "owner")}, {col(audit, "note")}, {col(audit, "at")})
SELECT {pk}, %(action)s, %(user)s, %(user)s, '', %(now)s FROM claimed
RETURNING {col(audit, "contact")}
"""  # noqa: S608 (names from the models; values are parameters)


@transaction.atomic
def contact_release(
    *, contact: Contact, actor: AbstractBaseUser | None, note: str = "", reason: str = ""
) -> bool:
    """Put a claimed SQL back in the queue (an admin's or the team manager's decision, with
    the ``reason`` they give). False if it was not claimed."""
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
        note=note
        or (
            coded("released_because", owner=_user_name(previous.owner), words=reason.strip())
            if reason.strip()
            else coded("released_from", owner=_user_name(previous.owner))
        ),
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
    # The new owner hears who gave them the lead (unless they took it themselves).
    notify(
        user_ids=[to.pk], kind=Notification.Kind.ASSIGNED, contact_id=contact.pk, audit=audit,
        at=now, skip_user_id=getattr(actor, "pk", None),
    )  # fmt: skip
    contact.owner, contact.claimed_at = to, now
    return True


@transaction.atomic
def claims_release_stale(*, now: datetime | None = None) -> int:
    """SQLs claimed more than CLAIM_RELEASE_HOURS ago and still without an outcome go back to
    the queue, each with an audit row, unless their owner logged an activity on them (a note,
    a call…) within those hours: the rep is working the lead. Returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.CLAIM_RELEASE_HOURS)
    # One statement: NOT EXISTS, read through the activities' contact-first index.
    worked = Activity.objects.filter(
        contact=OuterRef("pk"), user=OuterRef("owner"), logged_at__gte=cutoff
    )
    stale = list(
        Contact.objects.claims_stale(cutoff)
        .exclude(Exists(worked))
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
    for audit, owner in taken:
        notify(
            user_ids=[owner], kind=Notification.Kind.TAKEN, contact_id=audit.contact_id,
            audit=audit, at=audit.at, skip_user_id=getattr(actor, "pk", None),
        )  # fmt: skip


@transaction.atomic
def notifications_take(*, user: AbstractBaseUser, limit: int = 50) -> list[Notification]:
    """The user's notifications not shown yet, oldest first, marked read: each is shown once."""
    unread = list(
        Notification.objects.filter(user=user, read_at=None, kind=Notification.Kind.TAKEN)
        .select_related("contact", "audit__contact", "audit__actor", "audit__owner")
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
