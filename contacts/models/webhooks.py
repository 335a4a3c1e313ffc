"""Outbound webhooks: who wants to hear of what (WebhookSubscription), and each message sent to
them (WebhookDelivery) with every try and its answer (WebhookAttempt). ``contacts.webhooks``
writes them; the admin shows them."""

from __future__ import annotations

import base64
import secrets
import uuid

from django.core.validators import URLValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def new_webhook_id() -> str:
    """A message's ``webhook-id``: the same on every try, so that receivers can drop a repeat."""
    return f"msg_{uuid.uuid4().hex}"


class WebhookEventType(models.TextChoices):
    CONTACT_CREATED = "contact.created", _("Contact created")
    STAGE_ENTERED = "contact.stage_entered", _("Contact entered a stage")
    OUTCOME_RECORDED = "contact.outcome_recorded", _("Outcome recorded")
    UNSUBSCRIBED = "contact.unsubscribed", _("Contact unsubscribed")


class WebhookSubscription(models.Model):
    """An endpoint (Slack, n8n, a CRM) and the events it wants, signed with its own secret."""

    name = models.CharField(_("name"), max_length=100)
    url = models.URLField(
        _("URL"), max_length=500, validators=[URLValidator(schemes=["http", "https"])]
    )
    secret = models.CharField(
        _("signing secret"),
        max_length=100,
        default=new_webhook_secret,
        help_text=_("The receiver checks each message's signature with it (Standard Webhooks)."),
    )
    event_types = models.JSONField(_("events"), default=list)
    # Empty: every stage.
    stages = models.JSONField(_("only these stages"), default=list, blank=True)
    include_imports = models.BooleanField(
        _("include imports"),
        default=False,
        help_text=_(
            "Also send the contacts, stage changes and outcomes an import creates "
            "(thousands of messages for a large file)."
        ),
    )
    active = models.BooleanField(_("active"), default=True)
    consecutive_failures = models.PositiveIntegerField(_("failures in a row"), default=0)
    disabled_at = models.DateTimeField(_("disabled automatically"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = _("webhook subscription")
        verbose_name_plural = _("webhook subscriptions")

    def __str__(self) -> str:
        return self.name

    def wants(self, event_type: str, *, stage: str = "", imported: bool = False) -> bool:
        if event_type not in self.event_types or (imported and not self.include_imports):
            return False
        return not (stage and self.stages and stage not in self.stages)


class WebhookDeliveryQuerySet(models.QuerySet["WebhookDelivery"]):
    def due(self, as_of: object) -> WebhookDeliveryQuerySet:
        """Waiting deliveries whose time has come, of subscriptions still active."""
        return self.filter(
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at__lte=as_of,
            subscription__active=True,
        )


class WebhookDelivery(models.Model):
    """One message to one subscription: its body as signed and sent (the same bytes on every
    try), its state and its last answer."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting")
        SENDING = "sending", _("Sending")
        DELIVERED = "delivered", _("Delivered")
        FAILED = "failed", _("Failed (gave up)")

    id = models.BigAutoField(primary_key=True)
    webhook_id = models.CharField(
        _("webhook-id"), max_length=64, unique=True, default=new_webhook_id
    )
    subscription = models.ForeignKey(
        WebhookSubscription,
        verbose_name=_("subscription"),
        on_delete=models.CASCADE,
        related_name="deliveries",
    )
    event_type = models.CharField(_("event"), max_length=40, choices=WebhookEventType.choices)
    # Not a foreign key: a record of what was sent, written in bulk on hot paths (a stage move
    # per contact); erasing the contact deletes its deliveries (their bodies hold its data).
    contact_id = models.BigIntegerField(_("contact"), null=True, blank=True)
    body = models.TextField(_("body"))
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)
    # The last answer (the log of every try that failed is in WebhookAttempt).
    response_status = models.PositiveIntegerField(_("last response status"), null=True, blank=True)
    response_body = models.TextField(_("last response (start)"), blank=True)
    duration_ms = models.PositiveIntegerField(_("last duration (ms)"), null=True, blank=True)
    error = models.TextField(_("last error"), blank=True)

    objects = WebhookDeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        indexes = [
            # The sweep's and the send loop's question: what is due?
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="webhookdelivery_due",
            ),
            models.Index(
                fields=["lease_until"], condition=Q(status="sending"), name="webhookdelivery_leased"
            ),
            models.Index(fields=["subscription", "-created_at"], name="webhookdelivery_sub"),
            models.Index(fields=["contact_id"], name="webhookdelivery_contact"),
        ]

    def __str__(self) -> str:
        return self.webhook_id


class WebhookAttempt(models.Model):
    """A try of a delivery that did not succeed: what the receiver answered, or why nothing came
    back (the successful try is on the delivery itself: one write per delivery sent)."""

    id = models.BigAutoField(primary_key=True)
    delivery = models.ForeignKey(
        WebhookDelivery,
        verbose_name=_("delivery"),
        on_delete=models.CASCADE,
        related_name="attempt_log",
    )
    at = models.DateTimeField(_("at"), default=timezone.now)
    response_status = models.PositiveIntegerField(_("response status"), null=True, blank=True)
    response_body = models.TextField(_("response (start)"), blank=True)
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)

    class Meta:
        ordering = ["at", "id"]
        verbose_name = _("webhook attempt")
        verbose_name_plural = _("webhook attempts")

    def __str__(self) -> str:
        return f"{self.delivery_id}: {self.response_status or self.error[:40]}"
