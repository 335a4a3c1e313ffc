"""How people come in: API keys, forms and consents, visitors, merges, suppressions."""

from __future__ import annotations

import hashlib
import secrets

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from contacts.models.people import Contact, LeadSource


class ApiKey(models.Model):
    """A key an integration sends as ``Authorization: Bearer <key>``. Only its hash is stored."""

    PREFIX = "lf_"

    name = models.CharField(_("name"), max_length=120)
    prefix = models.CharField(_("starts with"), max_length=16, editable=False)
    hashed = models.CharField(max_length=64, unique=True, editable=False)
    rate_per_minute = models.PositiveIntegerField(
        _("requests per minute"),
        null=True,
        blank=True,
        help_text=_("Empty: the default (API_RATE_PER_MINUTE)."),
    )
    # Least privilege for integrations: a website or a form tool only sends; a key that reads
    # contacts back (a CRM sync) says so. Keys made before this field read (as they did).
    can_read = models.BooleanField(
        _("reads contacts"),
        default=True,
        help_text=_(
            "Off: the key only sends events and contacts (a website, a form tool); reading "
            "contacts back is refused and answers list no contact. On: a sync that reads them."
        ),
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash(key: str) -> str:
        # The key is 256 random bits: a plain SHA-256 cannot be brute-forced, and it lets the
        # lookup be one indexed equality.
        return hashlib.sha256(key.encode()).hexdigest()


def new_form_key() -> str:
    return secrets.token_hex(8)


class Form(models.Model):
    """A form on the company's site(s): posts to /f/<key>/ and makes or updates a contact."""

    name = models.CharField(_("name"), max_length=120)
    key = models.SlugField(
        _("public key"), max_length=40, unique=True, editable=False, default=new_form_key
    )
    source = models.ForeignKey(
        LeadSource, verbose_name=_("lead source"), on_delete=models.SET_NULL, null=True,
        blank=True, help_text=_("Given to the contacts this form creates."),
    )  # fmt: skip
    ask_name = models.BooleanField(_("ask for the name"), default=True)
    ask_company = models.BooleanField(_("ask for the company"), default=True)
    ask_phone = models.BooleanField(_("ask for the phone"), default=False)
    consent_text = models.TextField(
        _("consent wording"),
        default=_("I agree to receive emails about LeadFunnel. I can unsubscribe at any time."),
    )
    consent_version = models.PositiveIntegerField(_("consent wording version"), default=1)
    # The wording also asks to track email opens: a ticked box records that consent too.
    consent_covers_open_tracking = models.BooleanField(
        _("the consent covers open tracking"),
        default=False,
        db_default=False,
        help_text=_(
            "Tick if the consent wording also asks to track whether the person opens the "
            "emails (the open pixel)."
        ),
    )
    thank_you_url = models.URLField(_("thank-you page"), blank=True)
    allowed_origins = models.TextField(
        _("allowed origins"),
        blank=True,
        help_text=_("One per line, e.g. https://www.example.com. Empty: any site."),
    )
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ["name"]
        verbose_name = _("form")
        verbose_name_plural = _("forms")

    def __str__(self) -> str:
        return self.name

    def origins(self) -> set[str]:
        return {
            line.strip().rstrip("/") for line in self.allowed_origins.splitlines() if line.strip()
        }


class Consent(models.Model):
    """Proof of a consent: which wording, when, from where, on which page."""

    contact = models.ForeignKey(
        Contact, verbose_name=_("contact"), on_delete=models.CASCADE, related_name="consents"
    )
    form = models.ForeignKey(Form, verbose_name=_("form"), on_delete=models.SET_NULL, null=True)
    wording = models.TextField(_("wording"))
    wording_version = models.PositiveIntegerField(_("wording version"))
    ip = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    page = models.URLField(_("page"), max_length=1000, blank=True)
    at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        ordering = ["-at"]
        verbose_name = _("consent")
        verbose_name_plural = _("consents")

    def __str__(self) -> str:
        return f"{self.contact_id} v{self.wording_version} {self.at:%Y-%m-%d}"


class Visitor(models.Model):
    """A browser's id (kept in the site's localStorage by the tracking snippet) and whose it is."""

    visitor_id = models.CharField(_("visitor id"), max_length=64, unique=True)
    contact = models.ForeignKey(
        Contact, verbose_name=_("contact"), on_delete=models.CASCADE, related_name="visitors"
    )
    first_seen_at = models.DateTimeField(_("first seen"), default=timezone.now)

    class Meta:
        verbose_name = _("visitor")
        verbose_name_plural = _("visitors")

    def __str__(self) -> str:
        return self.visitor_id


class AnonymousView(models.Model):
    """A page view of a visitor who is no contact yet (one page seen, no form sent): kept
    without a contact, and moved onto one, as an event, once the visitor does something worth
    keeping (VISITOR_CONTACT_AFTER_VIEWS pages, a form). Visitors who never do are purged."""

    visitor_id = models.CharField(_("visitor id"), max_length=64, db_index=True)
    occurred_at = models.DateTimeField(_("occurred at"), db_index=True)
    url = models.CharField(_("URL"), max_length=1000)
    title = models.CharField(_("title"), max_length=300, blank=True)
    referrer = models.CharField(_("referrer"), max_length=1000, blank=True)
    utm = models.JSONField(_("UTM"), default=dict, blank=True)
    # The event's idempotency key to be: a view queued twice is kept once.
    key = models.CharField(_("key"), max_length=64, unique=True)

    class Meta:
        verbose_name = _("anonymous page view")
        verbose_name_plural = _("anonymous page views")

    def __str__(self) -> str:
        return f"{self.visitor_id} {self.url}"


class ContactMerge(models.Model):
    """An anonymous visitor's history moved onto the contact it turned out to be."""

    into = models.ForeignKey(
        Contact, verbose_name=_("into"), on_delete=models.CASCADE, related_name="merges"
    )
    merged_contact_id = models.BigIntegerField(_("merged contact"))
    visitor_id = models.CharField(_("visitor id"), max_length=64)
    events_moved = models.PositiveIntegerField(_("events moved"))
    at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        ordering = ["-at"]
        verbose_name = _("contact merge")
        verbose_name_plural = _("contact merges")

    def __str__(self) -> str:
        return f"{self.merged_contact_id} → {self.into_id}"


class Suppression(models.Model):
    """An erased person's email, hashed: imports, forms and the API refuse to bring them back."""

    email_hash = models.CharField(_("email hash"), max_length=64, unique=True)
    at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        ordering = ["-at"]
        verbose_name = _("suppressed email")
        verbose_name_plural = _("suppressed emails")

    def __str__(self) -> str:
        return f"{self.email_hash[:12]}…"

    @staticmethod
    def hash(email: str) -> str:
        # Case-insensitive like the contact's unique email. Unsalted on purpose: the check must
        # find the entry from the email alone, whatever SECRET_KEY becomes.
        return hashlib.sha256(email.strip().lower().encode()).hexdigest()

    @classmethod
    def suppressed(cls, emails: list[str]) -> set[str]:
        """The emails among these (as given) that belong to an erased person."""
        by_hash = {cls.hash(email): email for email in emails if email and email.strip()}
        if not by_hash:
            return set()
        found = cls.objects.filter(email_hash__in=list(by_hash)).values_list(
            "email_hash", flat=True
        )
        return {by_hash[h] for h in found}
