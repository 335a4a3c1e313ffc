"""Who sells: teams, how each hands out its SQLs, and each sales user's seat in one (on duty,
capacity, time zone, how they want to hear of things)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from contacts.models.people import validate_time_zone


class Team(models.Model):
    """A sales team. Its SQLs are pulled from the queue by its reps (the default) or handed out
    by its assignment rules (``contacts.sales.assignment``)."""

    class Assignment(models.TextChoices):
        PULL = "pull", _("Pull queue: reps claim SQLs themselves")
        ROUND_ROBIN = "round_robin", _("Round robin among reps on duty")
        RULES = "rules", _("Rules (territory or a contact field), then round robin")

    name = models.CharField(_("name"), max_length=100, unique=True)
    assignment = models.CharField(
        _("assignment"), max_length=20, choices=Assignment.choices, default=Assignment.PULL
    )
    is_default = models.BooleanField(
        _("default team"),
        default=False,
        help_text=_("Takes the SQLs no assignment rule matches (one team at most)."),
    )
    # Round robin's place: the rep who got its last lead; the next goes to the rep after them
    # (user id order). Read and written under the team's row lock (contacts.sales.assignment).
    last_assigned = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("last assigned to"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
        db_index=False,
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("sales team")
        verbose_name_plural = _("sales teams")
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=Q(is_default=True),
                name="team_one_default",
                violation_error_message=_("Another team is the default team already."),
            )
        ]

    def __str__(self) -> str:
        return self.name


class SalesRep(models.Model):
    """A sales user's seat: their team, whether they take new leads now, how many open leads
    they can carry, their time zone (due dates and "today" are theirs) and their digest."""

    class Digest(models.TextChoices):
        OFF = "off", _("No email: the bell only")
        HOURLY = "hourly", _("Hourly digest")
        DAILY = "daily", _("Daily digest")

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="sales_rep",
    )
    team = models.ForeignKey(
        Team,
        verbose_name=_("team"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="reps",
    )
    on_duty = models.BooleanField(
        _("on duty"), default=True, help_text=_("Takes new leads and hears of new SQLs.")
    )
    max_open_leads = models.PositiveIntegerField(
        _("maximum open leads"),
        null=True,
        blank=True,
        help_text=_("Assignment skips the rep at this many open SQLs; empty: no limit."),
    )
    time_zone = models.CharField(
        _("time zone"), max_length=64, blank=True, validators=[validate_time_zone]
    )
    email_digest = models.CharField(
        _("email digest"), max_length=10, choices=Digest.choices, default=Digest.DAILY
    )
    # When the next digest is due (the beat sweep reads due rows; no countdown tasks).
    digest_due_at = models.DateTimeField(_("next digest"), null=True, blank=True)

    class Meta:
        ordering = ["user_id"]
        verbose_name = _("sales rep")
        verbose_name_plural = _("sales reps")
        indexes = [
            models.Index(
                fields=["digest_due_at"],
                condition=Q(digest_due_at__isnull=False),
                name="salesrep_digest_due",
            )
        ]

    def __str__(self) -> str:
        return str(self.user)
