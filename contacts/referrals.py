"""Referrals: an event that names its referrer links the two contacts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from contacts.events import event_record
from contacts.models import (
    Contact,
    ContactAudit,
    Event,
    EventRow,
    normalize_email,
)
from contacts.reasons import coded

logger = logging.getLogger(__name__)

REFERRER_KEYS = ("referrer_id", "referrer_email")


def referrer_find(properties: Any) -> Contact | None:
    """The contact an event's properties name as the person who referred it, if known."""
    if not isinstance(properties, dict):
        return None
    referrer_id = properties.get("referrer_id")
    if referrer_id not in (None, ""):
        try:
            return Contact.objects.filter(pk=int(referrer_id), erased_at__isnull=True).first()
        except (TypeError, ValueError, OverflowError):
            return None
    email = properties.get("referrer_email")
    if isinstance(email, str) and normalize_email(email):
        return Contact.objects.filter(email__iexact=normalize_email(email)).first()
    return None


@transaction.atomic
def contact_referral_link(
    *,
    contact: Contact,
    referrer: Contact,
    actor: AbstractBaseUser | None = None,
    replace: bool = False,
) -> bool:
    """``referrer`` brought ``contact`` in: the link is kept on the contact (the first referrer
    wins, unless a person corrects it with ``replace``) and a ``referral`` event goes on the
    referrer's timeline, which scoring counts (a client with a referral becomes an
    ambassador). False if nothing changed."""
    if referrer.pk == contact.pk:
        return False
    target = Contact.objects.filter(pk=contact.pk)
    if replace:
        target = target.exclude(referred_by=referrer)
    else:
        target = target.filter(referred_by__isnull=True)
    linked = target.update(referred_by=referrer)
    if not linked:
        return False
    contact.referred_by = referrer
    ContactAudit.objects.create(
        contact=contact, action=ContactAudit.Action.REFERRAL, actor=actor,
        note=coded("referred_by", referrer=referrer.display_name),
    )  # fmt: skip
    event_record(
        contact=referrer, type=Event.Type.REFERRAL, source="system",
        properties={"referred_contact_id": contact.pk},
        idempotency_key=f"referral:{contact.pk}:{referrer.pk}",
    )  # fmt: skip
    return True


def on_event(events: Sequence[EventRow]) -> None:
    """LEADFUNNEL_EVENT_HANDLERS entry: events that name a referrer (``referrer_id`` or
    ``referrer_email`` in their properties) link the two contacts. Linking is idempotent, so an
    event handled twice links once."""
    for contact_id, properties in ((event.contact_id, event.properties) for event in events):
        if not isinstance(properties, dict) or not any(k in properties for k in REFERRER_KEYS):
            continue
        referrer = referrer_find(properties)
        contact = Contact.objects.filter(pk=contact_id, referred_by__isnull=True).first()
        if referrer is not None and contact is not None:
            contact_referral_link(contact=contact, referrer=referrer)
