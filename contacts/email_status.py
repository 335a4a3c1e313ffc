"""Whether mail to a contact's address still arrives: set by the bounce handling
(``nurturing.bounces``, a batch at a time), cleared by a person (the address was fixed) or by a
new email address (``contacts.services.contact_update``).

The state is three fields of the contact (``email_status``, a code; ``email_status_at``, when it
began; ``email_status_detail``, the mail server's words as they came): contacts may not import
nurturing, and the send-time checks read the contact anyway.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from contacts.models import Contact

# A stronger state replaces a weaker one, never the other way round: a complaint says more
# than a bounce, a hard bounce more than soft ones.
STRENGTH = {
    Contact.EmailStatus.OK: 0,
    Contact.EmailStatus.SOFT_BOUNCES: 1,
    Contact.EmailStatus.HARD_BOUNCE: 2,
    Contact.EmailStatus.COMPLAINT: 3,
}

EMAIL_STATUS_FIELDS = ("email_status", "email_status_at", "email_status_detail")


class EmailStatusChange(NamedTuple):
    contact_id: int
    status: str  # a Contact.EmailStatus value other than OK
    at: datetime
    detail: str = ""


@transaction.atomic
def contacts_email_status_set(*, changes: Iterable[EmailStatusChange]) -> list[int]:
    """Mark these contacts' addresses as failing, in a few statements for the whole batch (a
    contact that already has this state or a stronger one keeps it). Returns the ids of the
    contacts whose state changed."""
    wanted: dict[int, EmailStatusChange] = {}
    for change in changes:
        held = wanted.get(change.contact_id)
        if held is None or STRENGTH[change.status] > STRENGTH[held.status]:
            wanted[change.contact_id] = change
    if not wanted:
        return []
    current = dict(
        Contact.objects.filter(pk__in=wanted)
        .order_by("pk")
        .select_for_update()
        .values_list("pk", "email_status")
    )
    changed = [
        Contact(
            pk=change.contact_id,
            email_status=change.status,
            email_status_at=change.at,
            email_status_detail=change.detail[:300],
        )
        for change in wanted.values()
        if change.contact_id in current
        and STRENGTH[change.status] > STRENGTH.get(current[change.contact_id], 0)
    ]
    Contact.objects.bulk_update(changed, EMAIL_STATUS_FIELDS, batch_size=500)
    return [contact.pk for contact in changed]


@transaction.atomic
def contact_email_status_clear(
    *, contact: Contact, actor: AbstractBaseUser | None = None, as_of: datetime | None = None
) -> bool:
    """A person says the address works again (it was fixed, the mailbox emptied): marketing
    email may go to it, and soft bounces count afresh from now. Returns False if it was fine."""
    if not contact.email_status:
        return False
    contact.email_status = Contact.EmailStatus.OK
    contact.email_status_at = as_of or timezone.now()
    contact.email_status_detail = ""
    contact.save(update_fields=[*EMAIL_STATUS_FIELDS, "updated_at"])
    return True
