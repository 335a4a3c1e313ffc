"""Inbound webhooks: the endpoints form and marketing tools post to, and what each delivery
became (the log an admin reads when a submission "did not arrive")."""

from __future__ import annotations

import secrets
import time

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from contacts.models.people import Contact, LeadSource


def new_inbound_key() -> str:
    # 192 random bits: the URL is public to the sender only, and a guessed key still needs
    # the secret to get past the signature.
    return secrets.token_urlsafe(24)


def new_inbound_secret() -> str:
    return secrets.token_hex(24)


# Endpoints as this web process last read them, by key: (read until, the row).
_by_key: dict[str, tuple[float, InboundSource]] = {}


class InboundSource(models.Model):
    """A tool that posts its form submissions to /hooks/in/<key>/, signed with ``secret`` in
    the tool's own scheme (``kind``)."""

    class Kind(models.TextChoices):
        TYPEFORM = "typeform", "Typeform"
        TALLY = "tally", "Tally"
        MAUTIC = "mautic", "Mautic"
        GENERIC = "generic", _("Generic JSON")

    name = models.CharField(_("name"), max_length=120)
    kind = models.CharField(_("sender"), max_length=20, choices=Kind.choices)
    key = models.CharField(
        _("public key"), max_length=64, unique=True, editable=False, default=new_inbound_key
    )
    secret = models.CharField(
        _("signing secret"),
        max_length=200,
        default=new_inbound_secret,
        help_text=_(
            "The secret the sender signs with: paste it into the webhook settings of "
            "Typeform, Tally or Mautic (Mautic's Secret field)."
        ),
    )
    form_name = models.CharField(
        _("form name"),
        max_length=200,
        blank=True,
        help_text=_("Recorded on each form_submit event. Empty: the form name the sender gives."),
    )
    source = models.ForeignKey(
        LeadSource, verbose_name=_("lead source"), on_delete=models.SET_NULL, null=True,
        blank=True, help_text=_("Given to the contacts this endpoint creates."),
    )  # fmt: skip
    mapping = models.JSONField(
        _("field mapping"),
        default=dict,
        blank=True,
        help_text=_(
            "Contact field or event property → where it is in the payload. Generic JSON: a "
            'dotted path, e.g. {"email": "contact.email", "external_id": "contact.id", '
            '"submission_id": "id", "properties.plan": "answers.plan"}. Typeform, Tally, '
            'Mautic: the question\'s ref, key or label, e.g. {"company": "Votre société"}.'
        ),
    )
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ["name"]
        verbose_name = _("inbound webhook")
        verbose_name_plural = _("inbound webhooks")

    # How long a web process trusts the endpoint it read: an admin's change (switched off, a
    # new secret, deleted) reaches every other web process within this many seconds.
    CACHE_SECONDS = 5.0

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def save(self, *args, **kwargs) -> None:
        super().save(*args, **kwargs)
        self.forget(self.key)

    def delete(self, *args, **kwargs):  # noqa: ANN201
        self.forget(self.key)
        return super().delete(*args, **kwargs)

    @classmethod
    def for_key(cls, key: str) -> InboundSource | None:
        """The endpoint posted to, read from the database at most once per CACHE_SECONDS in
        each web process (the row is shared by the process's threads: read only). The
        lookup's query was a quarter of a receipt's CPU (bench ``webhooks``, see
        ``contacts/intake/webhook_views.py``). An unknown key is not remembered: an endpoint
        made a moment ago answers at once."""
        now = time.monotonic()
        cached = _by_key.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        source = cls.objects.filter(key=key).order_by().first()
        if source is None:
            _by_key.pop(key, None)
        else:
            _by_key[key] = (now + cls.CACHE_SECONDS, source)
        return source

    @staticmethod
    def forget(key: str) -> None:
        """Read the endpoint afresh on its next post (in this process)."""
        _by_key.pop(key, None)


class InboundDelivery(models.Model):
    """One POST to an inbound endpoint and what came of it. A delivery is ``received`` (its
    whole body kept) until a worker records its submissions; then its body is cut at
    ``PAYLOAD_KEPT`` characters, kept for reading."""

    PAYLOAD_KEPT = 16_384

    class Status(models.TextChoices):
        RECEIVED = "received", _("Received, being recorded")
        ACCEPTED = "accepted", _("Accepted")
        DUPLICATE = "duplicate", _("Already received")
        IGNORED = "ignored", _("Ignored (not a form submission)")
        REFUSED = "refused", _("Refused")
        FAILED = "failed", _("Failed")

    source = models.ForeignKey(
        InboundSource, verbose_name=_("inbound webhook"), on_delete=models.CASCADE,
        related_name="deliveries",
    )  # fmt: skip
    received_at = models.DateTimeField(_("received"), default=timezone.now)
    status = models.CharField(_("status"), max_length=20, choices=Status.choices)
    http_status = models.PositiveSmallIntegerField(_("answer"))
    reason = models.CharField(_("reason"), max_length=300, blank=True)
    submission_ids = models.CharField(_("submission ids"), max_length=300, blank=True)
    contact = models.ForeignKey(
        Contact, verbose_name=_("contact"), on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+", db_index=False,
    )  # fmt: skip
    payload = models.TextField(_("payload"), blank=True)
    payload_bytes = models.PositiveIntegerField(_("payload size (bytes)"), default=0)

    class Meta:
        ordering = ["-received_at"]
        verbose_name = _("inbound delivery")
        verbose_name_plural = _("inbound deliveries")
        indexes = [
            models.Index(fields=["source", "-received_at"], name="inbound_delivery_recent"),
            # The sweep's: partial, few deliveries wait at any time.
            models.Index(
                fields=["received_at"],
                condition=models.Q(status="received"),
                name="inbound_delivery_waiting",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source_id} {self.received_at:%Y-%m-%d %H:%M:%S} {self.status}"

    @property
    def payload_truncated(self) -> bool:
        return self.payload_bytes > len(self.payload.encode())
