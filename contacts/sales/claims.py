"""The sales queue: claiming SQLs (one rep each, never two), releasing, reassigning, stale
claims released after the SLA, and the notifications they send."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from contacts.models import (
    Contact,
    ContactAudit,
    Notification,
)
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
