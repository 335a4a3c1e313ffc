"""Referrals: an event that names its referrer links the two contacts."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from contacts.events import event_record, events_send_on_commit
from contacts.models import (
    Contact,
    ContactAudit,
    Event,
    normalize_email,
)
from contacts.pipeline import Changes, EventBatch
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
    event_id = _referral_link(contact=contact, referrer=referrer, actor=actor, replace=replace)
    if event_id is not None:
        events_send_on_commit([event_id])
    return event_id is not None


def _referral_link(
    *, contact: Contact, referrer: Contact, actor: AbstractBaseUser | None, replace: bool
) -> int | None:
    """contact_referral_link without sending: the id of the ``referral`` event recorded (None
    if nothing changed; its id too if it was stored before, which the pipeline skips)."""
    if referrer.pk == contact.pk:
        return None
    target = Contact.objects.filter(pk=contact.pk)
    if replace:
        target = target.exclude(referred_by=referrer)
    else:
        target = target.filter(referred_by__isnull=True)
    linked = target.update(referred_by=referrer)
    if not linked:
        return None
    contact.referred_by = referrer
    ContactAudit.objects.create(
        contact=contact, action=ContactAudit.Action.REFERRAL, actor=actor,
        note=coded("referred_by", referrer=referrer.display_name),
    )  # fmt: skip
    event, _ = event_record(
        contact=referrer, type=Event.Type.REFERRAL, source="system",
        properties={"referred_contact_id": contact.pk},
        idempotency_key=f"referral:{contact.pk}:{referrer.pk}", send=False,
    )  # fmt: skip
    return event.pk


def on_event(batch: EventBatch) -> Changes | None:
    """LEADFUNNEL_EVENT_HANDLERS entry: events that name a referrer (``referrer_id`` or
    ``referrer_email`` in their properties) link the two contacts. Linking is idempotent, so an
    event handled twice links once. Returns the ``referral`` events recorded (on the
    referrers' timelines), for the pipeline's next round."""
    recorded: list[int] = []
    for contact_id, properties in ((e.contact_id, e.properties) for e in batch.events):
        if not isinstance(properties, dict) or not any(k in properties for k in REFERRER_KEYS):
            continue
        referrer = referrer_find(properties)
        contact = Contact.objects.filter(pk=contact_id, referred_by__isnull=True).first()
        if referrer is not None and contact is not None:
            event_id = _referral_link(contact=contact, referrer=referrer, actor=None, replace=False)
            if event_id is not None:
                recorded.append(event_id)
    return Changes(events=recorded) if recorded else None
