"""Whether mail to a contact's address still arrives: set by the bounce handling
(``nurturing.bounces``, a batch at a time), cleared by a person (the address was fixed) or by a
new email address (``contacts.services.contact_update``).

The state is three fields of the contact (``email_status``, a code; ``email_status_at``, when it
began; ``email_status_detail``, the mail server's words as they came): contacts may not import
nurturing, and the send-time checks read the contact anyway.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models.expressions import BaseExpression
from django.utils import timezone

from contacts.models import Contact, ContactAudit

# A stronger state replaces a weaker one, never the other way round: a complaint says more
# than a bounce, a hard bounce more than soft ones.
STRENGTH = {
    Contact.EmailStatus.OK: 0,
    Contact.EmailStatus.SOFT_BOUNCES: 1,
    Contact.EmailStatus.HARD_BOUNCE: 2,
    Contact.EmailStatus.COMPLAINT: 3,
}

EMAIL_STATUS_FIELDS = ("email_status", "email_status_at", "email_status_detail")


@transaction.atomic
def contacts_email_status_set(
    *,
    contact_ids: Collection[int],
    status: str,
    at: datetime | BaseExpression,
    detail: str | BaseExpression = "",
) -> list[int]:
    """Mark these contacts' addresses as failing (``status``: a Contact.EmailStatus other
    than OK), in two statements whatever their number; a contact that already has this state
    or a stronger one keeps it. ``at`` and ``detail`` may be expressions evaluated for each
    contact (the caller's latest report about it, say). Returns the ids of the contacts whose
    state changed, locked in id order until the transaction ends."""
    weaker = [code for code, strength in STRENGTH.items() if strength < STRENGTH[status]]
    changed = list(
        Contact.objects.filter(pk__in=contact_ids, email_status__in=weaker)
        .order_by("pk")
        .select_for_update()
        .values_list("pk", flat=True)
    )
    if changed:
        Contact.objects.filter(pk__in=changed).update(
            email_status=status, email_status_at=at, email_status_detail=detail
        )
    return changed


@transaction.atomic
def contact_email_status_clear(
    *, contact: Contact, actor: AbstractBaseUser | None = None, as_of: datetime | None = None
) -> bool:
    """A person says the address works again (it was fixed, the mailbox emptied): marketing
    email may go to it, and soft bounces count afresh from now. Returns False if it was fine."""
    if not contact.email_status:
        return False
    was = contact.email_status
    contact.email_status = Contact.EmailStatus.OK
    contact.email_status_at = as_of or timezone.now()
    contact.email_status_detail = ""
    contact.save(update_fields=[*EMAIL_STATUS_FIELDS, "updated_at"])
    ContactAudit.objects.create(
        contact=contact,
        action=ContactAudit.Action.EMAIL_CLEARED,
        actor=actor,
        owner_id=contact.owner_id,
        note=was,
        at=contact.email_status_at,
    )
    return True
