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
        ASSIGNED = "assigned", _("Assigned by a rule")
        OUTCOME = "outcome", _("Outcome recorded")
        REFERRAL = "referral", _("Referral linked")
        EXPORTED = "exported", _("Personal data exported")
        ERASED = "erased", _("Personal data erased")
        PURGED = "purged", _("Erased for inactivity")
        EMAIL_CLEARED = "email_cleared", _("Email address cleared of its bounces")
        ESTIMATED = "estimated", _("Deal estimate changed")
        FOLLOW_UP_SET = "follow_up_set", _("Follow-up set")
        FOLLOW_UP_MOVED = "follow_up_moved", _("Follow-up rescheduled")
        FOLLOW_UP_DONE = "follow_up_done", _("Follow-up done")
        NOTE_ADDED = "note_added", _("Note added")
        CALL_LOGGED = "call_logged", _("Call logged")
        MEETING_LOGGED = "meeting_logged", _("Meeting logged")
        EMAIL_SENT = "email_sent", _("Email sent by a rep")

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
    """Something a user is told: in the app (the bell, until read) and, by their choice, in an
    email digest. ``kind`` says what happened; ``params`` holds the values its sentence needs
    (codes and names, translated when shown, never a stored sentence). A notification about
    a lead taken from a rep points at the audit row that says what happened."""

    class Kind(models.TextChoices):
        TAKEN = "taken", _("Lead taken from you")  # released, expired or reassigned
        NEW_SQL = "new_sql", _("New SQL in the queue")
        SLA_WARNING = "sla_warning", _("SLA about to be breached")
        ASSIGNED = "assigned", _("Lead assigned to you")
        HARD_BOUNCE = "hard_bounce", _("Email bounced on your lead")
        FOLLOW_UP_DUE = "follow_up_due", _("Follow-up due")
        NO_NEXT_STEP = "no_next_step", _("Lead without a next step")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        related_name="notifications",
    )
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices, default=Kind.TAKEN)
    contact = models.ForeignKey(
        Contact,
        verbose_name=_("contact"),
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    audit = models.ForeignKey(
        ContactAudit,
        verbose_name=_("what happened"),
        on_delete=models.CASCADE,
        related_name="+",
        null=True,
        blank=True,
    )
    params = models.JSONField(_("details"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    read_at = models.DateTimeField(_("read"), null=True, blank=True)
    # Set when an email digest (or the reminder's own email) carried it.
    emailed_at = models.DateTimeField(_("emailed"), null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        indexes = [
            models.Index(
                fields=["user"], condition=Q(read_at__isnull=True), name="notification_unread"
            ),
            models.Index(
                fields=["user", "created_at"],
                condition=Q(emailed_at__isnull=True),
                name="notification_not_emailed",
            ),
            # What was said about a contact (the SLA warning is given once per lead; deleting
            # a contact finds its notifications without reading the whole table).
            models.Index(
                fields=["contact", "kind"],
                condition=Q(contact__isnull=False),
                name="notification_contact",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}: {self.kind} {self.contact_id or self.audit_id or ''}"


class SweepMark(models.Model):
    """How far a beat sweep has read (its watermark), by name: the new-SQL sweep announces
    the SQLs that entered the queue after its mark, then moves it."""

    name = models.CharField(_("name"), max_length=50, unique=True)
    mark = models.DateTimeField(_("read up to"))

    class Meta:
        verbose_name = _("sweep mark")
        verbose_name_plural = _("sweep marks")

    def __str__(self) -> str:
        return f"{self.name}: {self.mark:%Y-%m-%d %H:%M:%S}"
