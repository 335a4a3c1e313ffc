"""Personal data: export (access and portability), erasure, and purging inactive contacts."""

from __future__ import annotations

import importlib
import json
import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Value
from django.db.models.functions import MD5, Concat
from django.utils import timezone
from django.utils.translation import gettext as _

from contacts.changes import contacts_changed
from contacts.models import (
    Activity,
    Contact,
    ContactAudit,
    FollowUp,
    Notification,
    Suppression,
    WebhookDelivery,
)
from contacts.reasons import coded

logger = logging.getLogger(__name__)


class ContactSuppressed(Exception):
    """The email belongs to a person whose data was erased: they are not recreated silently."""

    def __init__(self, email: str = "") -> None:
        super().__init__(
            _(
                "%(email)s belongs to a person whose data was erased at their request; "
                "they cannot be added again without their new consent."
            )
            % {"email": email or _("This address")}
        )
        self.email = email


def _personal_data_modules() -> list[Any]:
    return [importlib.import_module(path) for path in settings.LEADFUNNEL_PERSONAL_DATA]


def _rows(queryset: Any) -> list[dict[str, Any]]:
    return list(queryset.order_by("pk").values())


@transaction.atomic
def contact_export(*, contact: Contact, actor: AbstractBaseUser | None) -> dict[str, Any]:
    """Everything kept about a person, as plain data for a JSON file: the profile and every
    row that points at the contact, whichever app keeps it (found through the relations, so
    scoring's ledger is in without contacts importing scoring). The export is audited."""
    data: dict[str, Any] = {
        "exported_at": timezone.now(),
        "profile": Contact.objects.filter(pk=contact.pk).values().get(),
    }
    for relation in Contact._meta.related_objects:
        if not relation.one_to_many or relation.related_model is ContactAudit:
            continue
        name = relation.get_accessor_name()
        rows = relation.related_model.objects.filter(**{relation.field.name: contact})
        if relation.related_model is Contact:  # people this contact referred: ids only
            data[name] = list(rows.order_by("pk").values("id", "created_at"))
        else:
            data[name] = _rows(rows)
    for module in _personal_data_modules():
        data.update(module.export(contact))
    ContactAudit.objects.create(contact=contact, action=ContactAudit.Action.EXPORTED, actor=actor)
    return data


def contact_export_json(*, contact: Contact, actor: AbstractBaseUser | None) -> str:
    return json.dumps(
        contact_export(contact=contact, actor=actor), cls=DjangoJSONEncoder, indent=2,
        ensure_ascii=False,
    )  # fmt: skip


ERASED_FIELDS = {
    "email": None, "first_name": "", "last_name": "", "company": "", "phone": "",
    "job_title": "", "country": "", "time_zone": "", "utm_term": "", "utm_content": "",
    "consent_method": "", "open_tracking_consent_source": "", "custom_fields": {},
}  # fmt: skip


@transaction.atomic
def contact_erase(
    *,
    contact: Contact,
    actor: AbstractBaseUser | None,
    action: str = ContactAudit.Action.ERASED,
    note: str = "",
) -> bool:
    """Anonymise a person: what identifies them goes, what counts stays (the contact row with
    its stage, score, source and campaign; its events by type and date; its stage history).
    Their email is kept only as a hash, so an import, a form or the API cannot silently bring
    them back. False if the contact was already erased."""
    current = Contact.objects.select_for_update().get(pk=contact.pk)
    if current.erased_at:
        return False
    now = timezone.now()
    if current.email:
        Suppression.objects.get_or_create(email_hash=Suppression.hash(current.email))
    Contact.objects.filter(pk=current.pk).update(
        **ERASED_FIELDS, do_not_email=True, erased_at=now, updated_at=now
    )
    # Event properties hold URLs, form fields, user agents. Keys may hold an email: hashed,
    # they stay unique without naming anyone.
    current.events.update(properties={})
    current.events.filter(idempotency_key__isnull=False).exclude(
        idempotency_key__startswith="erased:"
    ).update(idempotency_key=Concat(Value("erased:"), MD5("idempotency_key")))
    current.stage_changes.update(reason="")
    current.consents.all().delete()
    current.visitors.all().delete()
    current.merges.update(visitor_id="")
    # Webhook bodies are copies of the contact: the log goes, and what was waiting is not sent.
    WebhookDelivery.objects.filter(contact_id=current.pk).delete()
    # Notifications name the person (a bounce's address too): what was said about them goes.
    Notification.objects.filter(contact_id=current.pk).delete()
    # What reps wrote about them: a call or an email stays counted, its words and address go;
    # a next step about nobody is nobody's work any more.
    Activity.objects.filter(contact_id=current.pk).update(subject="", body="", sent_to="")
    FollowUp.objects.filter(contact_id=current.pk).delete()
    for module in _personal_data_modules():
        module.erase(current)
    ContactAudit.objects.create(contact=current, action=action, actor=actor, note=note, at=now)
    contacts_changed([current.pk], set(ERASED_FIELDS))  # its fit follows what is left
    contact.refresh_from_db()
    return True


def contacts_purge_inactive(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Erase prospects with no activity for RETENTION_YEARS (off when 0). Returns how many."""
    years = settings.RETENTION_YEARS
    if years <= 0:
        return 0
    now = now or timezone.now()
    before = now - timedelta(days=round(365.25 * years))
    note = coded("inactive_years", years=years)
    erased = 0
    for contact in Contact.objects.inactive_prospects(before).order_by("pk")[:limit]:
        erased += contact_erase(
            contact=contact, actor=None, action=ContactAudit.Action.PURGED, note=note
        )
    return erased
