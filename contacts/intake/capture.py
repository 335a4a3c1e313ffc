"""Capturing people: form submissions, visitors and their stitching to contacts, API keys."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max, Sum
from django.utils import timezone

from contacts.events import event_record, events_record_many
from contacts.intake.page_views import anonymous_views_take, kept_view_event
from contacts.models import (
    ApiKey,
    Consent,
    Contact,
    ContactMerge,
    Event,
    Form,
    StageChange,
    Visitor,
)
from contacts.services import CONTACT_FIELDS, UTM_FIELDS, contact_update, contact_upsert

logger = logging.getLogger(__name__)


@transaction.atomic
def api_key_create(*, name: str, can_read: bool = True) -> tuple[ApiKey, str]:
    """A new key; the plain text is returned once and never stored. ``can_read=False``: a
    key that only sends (``ApiKey.can_read``)."""
    plain = ApiKey.PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        name=name, prefix=plain[:10], hashed=ApiKey.hash(plain), can_read=can_read
    )
    return key, plain


def api_key_revoke(*, key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


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
        except IntegrityError:  # the drain made it an anonymous suspect meanwhile: merge that
            visitor = Visitor.objects.select_for_update().get(visitor_id=visitor_id)
        else:
            kept = anonymous_views_take([visitor_id])
            if kept:
                first_utm = next((view.utm for view in kept if view.utm), {})
                if first_utm and not (contact.utm_source or contact.utm_campaign):
                    Contact.objects.filter(pk=contact.pk).update(**first_utm)
                    for name, value in first_utm.items():
                        setattr(contact, name, value)
                events_record_many(events=[kept_view_event(view, contact.pk) for view in kept])
            return None
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
        proof = f"form:{form.key} v{form.consent_version}"
        granted: dict[str, Any] = {
            "consent": Contact.Consent.GRANTED,
            "consent_at": timezone.now(),
            "consent_method": proof,
        }
        if form.consent_covers_open_tracking:  # the wording asked for it too
            granted.update(
                open_tracking_consent_at=granted["consent_at"], open_tracking_consent_source=proof
            )
        Contact.objects.filter(pk=contact.pk).update(**granted)
    if visitor_id:
        visitor_stitch(visitor_id=visitor_id, contact=contact)
    event_record(
        contact=contact,
        type=Event.Type.FORM_SUBMIT,
        properties={"form": form.key, "form_name": form.name, "url": page},
        source="form",
    )
    return contact
