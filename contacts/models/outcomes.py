"""What became of a contact, as far as anyone knows: won or lost, when, and who said so."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

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

    class Meta:
        ordering = ["-at"]
        verbose_name = _("contact outcome")
        verbose_name_plural = _("contact outcomes")
        # The report reads the outcomes of a period.
        indexes = [models.Index(fields=["at"], name="contactoutcome_at")]

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.result} ({self.at:%Y-%m-%d})"

    @property
    def won(self) -> bool:
        return self.result == self.Result.WON
