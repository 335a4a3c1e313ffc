"""What people did to a contact (the audit trail) and the notifications it sent."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from contacts import reasons
from contacts.models.people import Contact


class ContactAudit(models.Model):
    """What people (or beat) did to a contact outside the funnel: claims, releases, outcomes,
    exports, erasures. Stage moves have their own row (StageChange); this one says who did what."""

    class Action(models.TextChoices):
        CLAIMED = "claimed", _("Claimed")
        RELEASED = "released", _("Released to the queue")
        EXPIRED = "expired", _("Returned to the queue (untouched)")
        REASSIGNED = "reassigned", _("Reassigned")
        OUTCOME = "outcome", _("Outcome recorded")
        REFERRAL = "referral", _("Referral linked")
        EXPORTED = "exported", _("Personal data exported")
        ERASED = "erased", _("Personal data erased")
        PURGED = "purged", _("Erased for inactivity")
        EMAIL_CLEARED = "email_cleared", _("Email address cleared of its bounces")

    # Kept when the contact is erased (the row is anonymised, not deleted).
    contact = models.ForeignKey(
        Contact, verbose_name=_("contact"), on_delete=models.CASCADE, related_name="audits"
    )
    action = models.CharField(_("action"), max_length=20, choices=Action.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("by user"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner after"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    note = models.TextField(_("note"), blank=True)
    at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = _("contact audit")
        verbose_name_plural = _("contact audits")
        indexes = [models.Index(fields=["contact", "-at"], name="contactaudit_contact_at")]

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.action}"

    @property
    def note_text(self) -> str:
        """The note in the reader's language; a person's words as they typed them."""
        return reasons.text(self.note)


class Notification(models.Model):
    """Something a user is told once, on their next visit: for now, a lead taken from a sales
    rep (returned to the queue by beat or an admin, or given to another rep). The audit row
    says what happened; this one says who must hear of it and whether they have."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        related_name="notifications",
    )
    audit = models.ForeignKey(
        ContactAudit, verbose_name=_("what happened"), on_delete=models.CASCADE, related_name="+"
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    read_at = models.DateTimeField(_("read"), null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        indexes = [
            models.Index(
                fields=["user"], condition=Q(read_at__isnull=True), name="notification_unread"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user_id}: {self.audit_id}"
