"""Why a contact may be sent marketing email, and whether its opens may be tracked.

French rules (CNIL, CPCE L34-5): a private person is prospected by email with their consent (or,
as a client, for products like those they bought); a professional may be prospected on
legitimate interest, at their work address, about their job, once told about it and of their
right to object. Contacts holds the facts about the person; a sequence (nurturing) says which
bases it sends to and calls ``basis_refusal`` at send time.

Reasons are codes (stored on messages, the same in every language); ``REASONS`` labels them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from contacts.models import Contact

NO_BASIS = "no legal basis"
BASIS_NOT_ALLOWED = "basis not allowed by this sequence"
NO_NOTICE = "legitimate interest without notice"
PERSONAL_ADDRESS = "legitimate interest on a personal address"
BASIS_WITHOUT_CONSENT = "no consent"

REASONS = {
    "no email address": _("No email address"),
    "do not email": _("Do not email"),
    "consent withdrawn": _("Consent withdrawn"),
    "no consent": _("No consent"),
    NO_BASIS: _("No legal basis recorded"),
    BASIS_NOT_ALLOWED: _("Legal basis not allowed by this sequence"),
    NO_NOTICE: _("Legitimate interest without a date of notice"),
    PERSONAL_ADDRESS: _("Legitimate interest on a personal address"),
}

OPEN_TRACKING_CONSENT, OPEN_TRACKING_ALL, OPEN_TRACKING_OFF = "consent", "all", "off"
OPEN_TRACKING_MODES = (OPEN_TRACKING_CONSENT, OPEN_TRACKING_ALL, OPEN_TRACKING_OFF)


def email_domain(email: str | None) -> str:
    return (email or "").rpartition("@")[2].strip().lower()


def is_personal_address(email: str | None) -> bool:
    """On a free-mail domain (``PERSONAL_EMAIL_DOMAINS``)."""
    domain = email_domain(email)
    return bool(domain) and any(
        _domain_matches(domain, pattern.strip().lower())
        for pattern in settings.PERSONAL_EMAIL_DOMAINS
        if pattern.strip()
    )


def _domain_matches(domain: str, pattern: str) -> bool:
    """``pattern`` is a domain, or a name and ".*": that name under any country or generic
    ending (hotmail.fr, hotmail.co.uk), not under someone's domain (outlook.example.fr)."""
    if not pattern.endswith(".*"):
        return domain == pattern
    name = pattern[:-1]
    if not domain.startswith(name):
        return False
    ending = domain[len(name) :].split(".")
    return len(ending) <= 2 and all(0 < len(label) <= 3 for label in ending)


def basis_of(contact: Mapping[str, Any]) -> str:
    """The contact's legal basis: the one recorded, else consent when it consented ("" if
    none). ``contact``: its values (``consent_basis``, ``consent``)."""
    recorded = contact.get("consent_basis") or ""
    if recorded:
        return recorded
    return Contact.LegalBasis.CONSENT if contact.get("consent") == Contact.Consent.GRANTED else ""


def basis_refusal(contact: Mapping[str, Any], allowed: frozenset[str] | None) -> str:
    """Why the contact's legal basis does not allow marketing email ("" if it does).

    ``allowed``: the bases the sequence sends to; None: any, the basis not required (the
    sequences made before bases were checked), but a recorded legitimate interest must still
    hold (notice given, a work address): one that does not is no basis at all.
    ``contact``: its values (``email``, ``consent``, ``consent_basis``,
    ``legitimate_interest_notice_on``)."""
    basis = basis_of(contact)
    if allowed is not None:
        if not basis:
            return NO_BASIS
        if basis not in allowed:
            return BASIS_NOT_ALLOWED
        if basis == Contact.LegalBasis.CONSENT and contact.get("consent") != "granted":
            return BASIS_WITHOUT_CONSENT
    if basis == Contact.LegalBasis.LEGITIMATE_INTEREST:
        if not contact.get("legitimate_interest_notice_on"):
            return NO_NOTICE
        if is_personal_address(contact.get("email")):
            return PERSONAL_ADDRESS
    return ""


def marketing_refusal(contact: Contact) -> str:
    """For the contact's page: why no sequence may email this contact now ("" if some may),
    the checks ``nurturing.outbox.emailable`` makes at send time that do not depend on the
    sequence (a sequence's own bases are shown beside)."""
    if not contact.email:
        return "no email address"
    if contact.do_not_email:
        return "do not email"
    if contact.email_status:  # bounced or complained (contacts.email_status)
        return contact.email_status
    if contact.consent == Contact.Consent.WITHDRAWN:
        return "consent withdrawn"
    if settings.NURTURING_REQUIRE_CONSENT and contact.consent != Contact.Consent.GRANTED:
        return "no consent"
    values = {name: getattr(contact, name) for name in ("email", "consent", *BASIS_VALUES)}
    return basis_refusal(values, None)


def marketing_summary(contact: Contact) -> dict[str, Any]:
    """What the contact's page shows: its basis, whether marketing email may go now and why
    not, whether its opens are tracked."""
    basis = basis_of({"consent_basis": contact.consent_basis, "consent": contact.consent})
    refusal = marketing_refusal(contact)
    consented = {"open_tracking_consent_at": contact.open_tracking_consent_at}
    return {
        "basis": basis,
        "basis_label": Contact.LegalBasis(basis).label if basis else "",
        "refusal": refusal,
        "refusal_label": reason_label(refusal) if refusal else "",
        "opens_tracked": open_tracking_allowed(consented),
    }


def reason_label(code: str) -> str:
    if code in Contact.EmailStatus.values:
        return str(Contact.EmailStatus(code).label)
    label = REASONS.get(code)
    return str(label) if label is not None else code


# The contact's values the checks here read (the scheduler and the sender load them).
BASIS_VALUES = ("consent_basis", "legitimate_interest_notice_on", "open_tracking_consent_at")


def open_tracking_allowed(contact: Mapping[str, Any]) -> bool:
    """Whether an email to this contact may carry the open pixel (``NURTURING_OPEN_TRACKING``);
    ``contact``: its values (``open_tracking_consent_at``)."""
    mode = settings.NURTURING_OPEN_TRACKING
    if mode == OPEN_TRACKING_ALL:
        return True
    if mode == OPEN_TRACKING_OFF:
        return False
    return contact.get("open_tracking_consent_at") is not None


def open_tracking_share() -> float | None:
    """The share (0–1) of the contacts with an email whose opens are tracked under the current
    setting; None when there is no such contact."""
    reachable = Contact.objects.filter(email__isnull=False, erased_at__isnull=True)
    mode = settings.NURTURING_OPEN_TRACKING
    total = reachable.count()
    if not total:
        return None
    if mode == OPEN_TRACKING_ALL:
        return 1.0
    if mode == OPEN_TRACKING_OFF:
        return 0.0
    return reachable.filter(~Q(open_tracking_consent_at=None)).count() / total


def open_tracking_note() -> str:
    """What a rule or condition on opens should know: how many contacts' opens are tracked."""
    share = open_tracking_share()
    mode = settings.NURTURING_OPEN_TRACKING
    if mode == OPEN_TRACKING_OFF:
        text = _("Open tracking is off (NURTURING_OPEN_TRACKING=off): no open is ever recorded.")
    elif mode == OPEN_TRACKING_ALL:
        text = _("Opens are tracked for every contact (NURTURING_OPEN_TRACKING=all).")
    elif share is None:
        text = _(
            "Opens are tracked only for contacts who consented to it; there is no contact yet."
        )
    else:
        text = _(
            "Opens are tracked only for contacts who consented to it: %(percent)s %% of "
            "contacts with an email today. For the others an open is never recorded."
        ) % {"percent": f"{share * 100:.0f}"}
    advice = _("Clicks are tracked for everyone: base rules and conditions on clicks instead.")
    return f"{text} {advice}"
