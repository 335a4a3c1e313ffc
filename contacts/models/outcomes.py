"""What became of a contact, as far as anyone knows: won or lost, when, who said so, and for
how much; and what a rep expects an open deal to bring (``DealEstimate``)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from contacts.currencies import default_currency, validate_currency
from contacts.models.funnel import StageChange
from contacts.models.people import Contact


class ContactOutcome(models.Model):
    """A contact's known outcome, one row per contact: the latest verdict, whoever gave it (a rep
    in the sales queue, an imported "Converted" column, the API, an admin). The score-vs-outcome
    report reads it; ``contacts.outcomes.outcome_record`` writes it."""

    class Result(models.TextChoices):
        WON = "won", _("Won")
        LOST = "lost", _("Lost")

    class Source(models.TextChoices):
        SALES = "sales", _("Sales")
        IMPORT = "import", _("Import")
        API = "api", _("API")
        ADMIN = "admin", _("Admin")

    contact = models.OneToOneField(
        Contact,
        verbose_name=_("contact"),
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="outcome",
    )
    result = models.CharField(_("result"), max_length=10, choices=Result.choices)
    at = models.DateTimeField(_("outcome date"))
    source = models.CharField(_("recorded from"), max_length=10, choices=Source.choices)
    # The rep's move that gave the outcome, when it came from the sales queue.
    stage_change = models.ForeignKey(
        StageChange,
        verbose_name=_("stage change"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    recorded_at = models.DateTimeField(_("recorded"), default=timezone.now)
    # What a won deal brought, in its own currency (never converted); none when lost or unknown.
    amount = models.DecimalField(
        _("amount"), max_digits=14, decimal_places=2, null=True, blank=True
    )
    currency = models.CharField(
        _("currency"), max_length=3, default=default_currency, validators=[validate_currency]
    )
    product = models.CharField(_("product or plan"), max_length=200, blank=True)
    # The contact's source and first source, as they are now (``contacts.outcomes.
    # outcomes_follow_sources`` keeps them in step, as the stays' are): the sources panel sums
    # a period's won deals per source from the outcomes' date index without a join. Joined to
    # the contacts, the revenue took 280 ms of the panel's 366 ms p95 over 90 days (bench
    # ``dashboard``, 1,000,000 contacts, 31,000 deals).
    lead_source = models.ForeignKey(
        "contacts.LeadSource", verbose_name=_("source"), on_delete=models.SET_NULL, null=True,
        blank=True, related_name="+", db_index=False,
    )  # fmt: skip
    first_lead_source = models.ForeignKey(
        "contacts.LeadSource", verbose_name=_("first source"), on_delete=models.SET_NULL,
        null=True, blank=True, related_name="+", db_index=False,
    )  # fmt: skip

    class Meta:
        ordering = ["-at"]
        verbose_name = _("contact outcome")
        verbose_name_plural = _("contact outcomes")
        # The report reads the outcomes of a period.
        indexes = [models.Index(fields=["at"], name="contactoutcome_at")]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gte=0),
                name="contactoutcome_amount_not_negative",
                violation_error_message=_("An amount cannot be negative."),
            ),
            models.CheckConstraint(
                condition=Q(result="won") | Q(amount__isnull=True),
                name="contactoutcome_amount_only_when_won",
                violation_error_message=_("Only a won deal has an amount."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.result} ({self.at:%Y-%m-%d})"

    @property
    def won(self) -> bool:
        return self.result == self.Result.WON


class DealEstimate(models.Model):
    """What the rep expects an open deal (a claimed SQL) to bring: the pipeline's expected value.
    Its own narrow table rather than columns on the contacts table, which every import, event
    and score update writes; one row per contact, kept when the deal closes (the outcome then
    says what it brought)."""

    contact = models.OneToOneField(
        Contact,
        verbose_name=_("contact"),
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="deal_estimate",
    )
    amount = models.DecimalField(_("expected amount"), max_digits=14, decimal_places=2)
    currency = models.CharField(
        _("currency"), max_length=3, default=default_currency, validators=[validate_currency]
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("estimated by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    updated_at = models.DateTimeField(_("estimated"), default=timezone.now)

    class Meta:
        verbose_name = _("deal estimate")
        verbose_name_plural = _("deal estimates")
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gte=0),
                name="dealestimate_amount_not_negative",
                violation_error_message=_("An amount cannot be negative."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.amount} {self.currency}"
