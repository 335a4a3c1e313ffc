"""What a rep did on a lead (a note, a call, a meeting, an email sent from the page), and the
email templates reps write those emails from."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from contacts.models.events import Event
from contacts.models.people import Contact


class Activity(models.Model):
    """One thing a rep did on a lead. Each has its event on the timeline (``event``), so score
    rules and sequence goals see it, and its audit row (``contacts.sales.activities``)."""

    class Kind(models.TextChoices):
        NOTE = "note", _("Note")
        CALL = "call", _("Call")
        MEETING = "meeting", _("Meeting")
        EMAIL = "email", _("Email")

    class CallOutcome(models.TextChoices):
        REACHED = "reached", _("Reached")
        VOICEMAIL = "voicemail", _("Left a voicemail")
        NO_ANSWER = "no_answer", _("No answer")
        WRONG_NUMBER = "wrong_number", _("Wrong number")

    # The timeline event each kind records.
    EVENT_TYPES = {
        Kind.NOTE: Event.Type.SALES_NOTE,
        Kind.CALL: Event.Type.SALES_CALL,
        Kind.MEETING: Event.Type.SALES_MEETING,
        Kind.EMAIL: Event.Type.SALES_EMAIL,
    }

    contact = models.ForeignKey(
        Contact,
        verbose_name=_("contact"),
        on_delete=models.CASCADE,
        related_name="activities",
        db_index=False,  # activity_contact_at starts with it
    )
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("by user"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # When it happened: a call or a meeting may be logged afterwards.
    at = models.DateTimeField(_("when"), default=timezone.now)
    logged_at = models.DateTimeField(_("logged"), default=timezone.now)
    call_outcome = models.CharField(
        _("call outcome"), max_length=20, choices=CallOutcome.choices, blank=True
    )
    duration_minutes = models.PositiveIntegerField(_("duration (minutes)"), null=True, blank=True)
    subject = models.CharField(_("subject"), max_length=300, blank=True)
    body = models.TextField(_("text"), blank=True)
    # An email's address at the time it went (the contact's may change since).
    sent_to = models.EmailField(_("sent to"), blank=True)
    event = models.OneToOneField(
        Event,
        verbose_name=_("event"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="activity",
    )

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = _("activity")
        verbose_name_plural = _("activities")
        indexes = [
            # A lead's activities newest first (its page), and "did the rep work this lead
            # lately" (claims_release_stale).
            models.Index(fields=["contact", "-at", "-id"], name="activity_contact_at"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="call") | Q(call_outcome=""), name="activity_outcome_calls_only"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.contact_id})"


class EmailTemplate(models.Model):
    """An email a rep starts from: theirs, or shared with every rep (no owner). Placeholders
    such as ``{{ first_name }}`` take the lead's values (``contacts.sales.email_templates``)."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("Empty: shared with every rep."),
    )
    name = models.CharField(_("name"), max_length=100)
    subject = models.CharField(_("subject"), max_length=300)
    body = models.TextField(_("text"))
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = _("email template")
        verbose_name_plural = _("email templates")
        indexes = [models.Index(fields=["owner", "name"], name="emailtemplate_owner_name")]

    def __str__(self) -> str:
        return self.name
