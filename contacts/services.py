"""Contact write use cases: create, update, upsert, look up by email."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext as _

from contacts.changes import contacts_changed
from contacts.custom_field_values import custom_values_merge
from contacts.models import (
    Contact,
    StageChange,
    Suppression,
    canonical_time_zone,
    normalize_email,
)
from contacts.privacy import ERASED_FIELDS, ContactSuppressed
from contacts.reasons import coded
from contacts.stages import stage_move

logger = logging.getLogger(__name__)


class DuplicateContact(Exception):
    pass


class ContactErased(Exception):
    """Personal data offered for a contact whose personal data was erased."""

    def __init__(self) -> None:
        super().__init__(
            _("This contact’s personal data was erased: it cannot be edited or typed back in.")
        )


UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")

CONTACT_FIELDS = (
    "email",
    "external_id",
    "first_name",
    "last_name",
    "company",
    "phone",
    "job_title",
    "country",
    "industry",
    "company_size",
    "time_zone",
    "source",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "do_not_email",
    "do_not_call",
)
# Besides CONTACT_FIELDS: ``custom_fields``, the values of custom fields by key (typed, as
# contacts.custom_field_values checks them); an update merges them, None clears one.
CUSTOM_FIELDS = "custom_fields"


@transaction.atomic
def contact_create(
    *, actor: AbstractBaseUser | None = None, cause: str = StageChange.Cause.USER, **fields: Any
) -> Contact:
    """Create a contact; one who left an email is a lead, recorded as a stage change."""
    if CUSTOM_FIELDS in fields:
        fields[CUSTOM_FIELDS] = custom_values_merge({}, fields[CUSTOM_FIELDS] or {})
    contact = Contact(**_clean_fields(fields))
    contact.first_source_id = contact.source_id  # first touch: the source it starts with
    _save(contact)
    if contact.email:
        _become_lead(contact, cause=cause, actor=actor, reason=coded("created_with_email"))
    contacts_changed([contact.pk], None, first_sources=False)
    _fit_reread(contact)
    return contact


@transaction.atomic
def contact_update(
    *, contact: Contact, actor: AbstractBaseUser | None = None, **fields: Any
) -> Contact:
    """Change profile fields. An anonymous suspect who gains an email becomes a lead. An
    erased contact takes no personal data back (``ContactErased``)."""
    if contact.erased_at and any(fields.get(name) for name in ERASED_FIELDS):
        raise ContactErased
    had_email = bool(contact.email)
    if CUSTOM_FIELDS in fields:
        merged = custom_values_merge(contact.custom_fields, fields[CUSTOM_FIELDS] or {})
        if merged == contact.custom_fields:
            del fields[CUSTOM_FIELDS]
        else:
            fields[CUSTOM_FIELDS] = merged
    old_email = (contact.email or "").lower()
    for name, value in _clean_fields(fields).items():
        setattr(contact, name, value)
    also_saved: list[str] = []
    if contact.email_status and (contact.email or "").lower() != old_email:
        # A new address: what the old one's bounces said is not about it.
        contact.email_status, contact.email_status_detail = Contact.EmailStatus.OK, ""
        contact.email_status_at = timezone.now()
        also_saved += ["email_status", "email_status_at", "email_status_detail"]
    if contact.first_source_id is None and contact.source_id is not None:
        contact.first_source_id = contact.source_id  # its first source, kept from now on
        also_saved += ["first_source"]
    _save(contact, update_fields=[*fields, *also_saved, "updated_at"])
    if not had_email and contact.email and contact.stage == Contact.Stage.SUSPECT:
        _become_lead(
            contact, cause=StageChange.Cause.USER, actor=actor, reason=coded("email_added")
        )
    if fields:
        contacts_changed([contact.pk], set(fields), first_sources=False)
        _fit_reread(contact)
    return contact


def _fit_reread(contact: Contact) -> None:
    """The fit and stage the handlers may have written, on the instance the caller holds."""
    fresh = Contact.objects.filter(pk=contact.pk).values(
        "fit_score", "fit_grade", "stage", "stage_entered_at"
    )
    for name, value in fresh.first().items():
        setattr(contact, name, value)


@transaction.atomic
def contact_upsert(
    *,
    email: str | None,
    cause: str = StageChange.Cause.SYSTEM,
    actor: AbstractBaseUser | None = None,
    **fields: Any,
) -> tuple[Contact, bool]:
    """The contact with this email (whatever its case), else the one with this external id,
    gets the fields given; an unknown email becomes a new lead, an unknown external id without
    an email a new suspect. Returns (contact, created)."""
    email = normalize_email(email)
    external_id = (fields.get("external_id") or "").strip() or None
    if not email and not external_id:
        raise ValueError("an upsert needs an email or an external id")
    existing = _upsert_match(email, external_id)
    if existing is None:
        try:
            with transaction.atomic():
                return contact_create(email=email, cause=cause, actor=actor, **fields), True
        except DuplicateContact:  # created by a concurrent request between our read and write
            existing = _upsert_match(email, external_id)
            if existing is None:  # not the email: the external id is another contact's
                raise
    if email and not existing.email:  # known by its external id until now
        fields["email"] = email
    if fields:
        contact_update(contact=existing, actor=actor, **fields)
    return existing, False


def _upsert_match(email: str | None, external_id: str | None) -> Contact | None:
    if email:
        found = Contact.objects.filter(email__iexact=email).first()
        if found is not None or external_id is None:
            return found
        return Contact.objects.filter(external_id=external_id, email__isnull=True).first()
    return Contact.objects.filter(external_id=external_id).first()


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


def contact_ids_by_external_id(external_ids: Iterable[str]) -> dict[str, int]:
    """External id -> contact id, in one query. Ids are compared as stored: trimmed, case kept
    (the unique constraint of contacts 0006 is on the exact value)."""
    wanted = {value.strip() for value in external_ids if value and value.strip()}
    if not wanted:
        return {}
    return dict(Contact.objects.filter(external_id__any=wanted).values_list("external_id", "pk"))


class ExternalIdConflict(DuplicateContact):
    """The email given belongs to a contact that another system already knows by another id."""


@transaction.atomic
def contact_ensure(*, external_id: str, email: str | None = None) -> tuple[Contact, bool]:
    """The contact an integration names by its external id: the one that has it; else the one
    with this email, if it has no external id yet (it takes this one); else a new contact (a
    lead with the email, an anonymous suspect without). Returns (contact, created). An email
    whose contact has another external id is refused (``ExternalIdConflict``): one person
    is not two records of the other system."""
    external_id = external_id.strip()
    found = Contact.objects.filter(external_id=external_id).first()
    if found is not None:
        return found, False
    email = normalize_email(email)
    if email:
        by_email = Contact.objects.filter(email__iexact=email).first()
        if by_email is not None:
            if by_email.external_id:
                raise ExternalIdConflict(_("The contact with this email has another external id."))
            return contact_update(contact=by_email, external_id=external_id), False
    try:
        with transaction.atomic():
            return contact_create(email=email, external_id=external_id,
                                  cause=StageChange.Cause.SYSTEM), True  # fmt: skip
    except DuplicateContact:  # made by a concurrent request between our read and write
        found = Contact.objects.filter(external_id=external_id).first()
        if found is None:
            raise
        return found, False


def _clean_fields(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - {*CONTACT_FIELDS, CUSTOM_FIELDS}
    if unknown:
        raise TypeError(f"unknown contact fields: {sorted(unknown)}")
    if "email" in fields:
        fields["email"] = normalize_email(fields["email"])
        if fields["email"] and Suppression.suppressed([fields["email"]]):
            raise ContactSuppressed(fields["email"])
    if "external_id" in fields:  # blank is none: the unique constraint ignores NULLs only
        fields["external_id"] = (fields["external_id"] or "").strip() or None
    if "time_zone" in fields:
        zone = canonical_time_zone(fields["time_zone"])
        if zone is None:
            raise ValueError(f"not a time zone: {fields['time_zone']!r}")
        fields["time_zone"] = zone
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
