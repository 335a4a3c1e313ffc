"""Follow-ups: a rep's next step (a call, an email to send) due at a date and time, on a lead
or alone, with its reminder (in the app and by email at the due time, swept by beat)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from contacts.models.audit import Notification
from contacts.models.people import Contact


class FollowUpQuerySet(models.QuerySet["FollowUp"]):
    def open(self) -> FollowUpQuerySet:
        return self.filter(done_at__isnull=True)

    def for_owner(self, user: Any) -> FollowUpQuerySet:
        return self.filter(owner=user)

    def reminders_due(self, now: datetime) -> FollowUpQuerySet:
        """Open follow-ups whose reminder is due and not delivered yet (index
        ``followup_remind_due``: the sweep reads only those rows)."""
        return self.filter(remind_at__isnull=False, remind_at__lte=now).order_by("remind_at", "id")


class FollowUp(models.Model):
    """A rep's task due at ``due_at`` (aware; shown and typed in the rep's time zone).

    ``remind_at`` is the reminder's due time while it waits (the due time; cleared once the
    reminder's email went, or when the task is done), ``reminder`` the in-app notification
    it made: an email that failed leaves ``remind_at`` set (the next sweep retries) and the
    notification is not made twice."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.CASCADE,
        related_name="follow_ups",
    )
    contact = models.ForeignKey(
        Contact,
        verbose_name=_("contact"),
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="follow_ups",
    )
    title = models.CharField(_("title"), max_length=200)
    note = models.TextField(_("note"), blank=True)
    due_at = models.DateTimeField(_("due"))
    done_at = models.DateTimeField(_("done"), null=True, blank=True)
    remind_at = models.DateTimeField(_("reminder due"), null=True, blank=True)
    reminded_at = models.DateTimeField(_("reminded"), null=True, blank=True)
    reminder = models.ForeignKey(
        Notification,
        verbose_name=_("reminder"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    objects = FollowUpQuerySet.as_manager()

    class Meta:
        ordering = ["due_at", "id"]
        verbose_name = _("follow-up")
        verbose_name_plural = _("follow-ups")
        indexes = [
            # The reminder sweep's read: due and not delivered (a handful of rows at any time).
            models.Index(
                fields=["remind_at"],
                condition=Q(remind_at__isnull=False),
                name="followup_remind_due",
            ),
            # "My day": a rep's open follow-ups by due time.
            models.Index(
                fields=["owner", "due_at"],
                condition=Q(done_at__isnull=True),
                name="followup_owner_open",
            ),
            # "No next step": does this lead have an open follow-up?
            models.Index(
                fields=["contact"],
                condition=Q(done_at__isnull=True, contact__isnull=False),
                name="followup_contact_open",
            ),
        ]

    def __str__(self) -> str:
        return self.title


class NextStepFlag(models.Model):
    """A claimed SQL left without a next step for FOLLOW_UP_FLAG_HOURS, flagged to its owner:
    one row per claim (the claim is its ``claimed_at``), so each claim is flagged once."""

    contact = models.ForeignKey(
        Contact, verbose_name=_("contact"), on_delete=models.CASCADE, related_name="+"
    )
    claimed_at = models.DateTimeField(_("claimed"))
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.CASCADE,
        related_name="+",
    )
    flagged_at = models.DateTimeField(_("flagged"), default=timezone.now)

    class Meta:
        verbose_name = _("lead without a next step")
        verbose_name_plural = _("leads without a next step")
        constraints = [
            models.UniqueConstraint(fields=["contact", "claimed_at"], name="nextstepflag_claim")
        ]

    def __str__(self) -> str:
        return f"{self.contact_id} @ {self.claimed_at:%Y-%m-%d %H:%M}"
