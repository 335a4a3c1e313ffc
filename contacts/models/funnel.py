"""The funnel: which stage moves are allowed, and the record of every move."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from contacts import reasons
from contacts.models.events import Event
from contacts.models.people import Contact, LeadSource

# Moves the stage service accepts. Forward along the funnel (a purchase may skip to client),
# back to lead from marketing stages and from SQL (lost or recycled), HMQL down to MQL, SQL down
# to a marketing stage (a rescore finding the rules now stop there), and an ambassador back to
# client. Nothing returns to suspect: a known person stays known.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    Contact.Stage.SUSPECT: frozenset({Contact.Stage.LEAD}),
    Contact.Stage.LEAD: frozenset(
        {Contact.Stage.MQL, Contact.Stage.HMQL, Contact.Stage.SQL, Contact.Stage.CLIENT}
    ),
    Contact.Stage.MQL: frozenset(
        {Contact.Stage.LEAD, Contact.Stage.HMQL, Contact.Stage.SQL, Contact.Stage.CLIENT}
    ),
    Contact.Stage.HMQL: frozenset(
        {Contact.Stage.LEAD, Contact.Stage.MQL, Contact.Stage.SQL, Contact.Stage.CLIENT}
    ),
    Contact.Stage.SQL: frozenset(
        {Contact.Stage.LEAD, Contact.Stage.MQL, Contact.Stage.HMQL, Contact.Stage.CLIENT}
    ),
    Contact.Stage.CLIENT: frozenset({Contact.Stage.AMBASSADOR}),
    Contact.Stage.AMBASSADOR: frozenset({Contact.Stage.CLIENT}),
}


class StageChange(models.Model):
    """One row per move of ``Contact.stage``: who or what moved it, and why."""

    class Cause(models.TextChoices):
        RULE = "rule", _("Score rule")
        THRESHOLD = "threshold", _("Threshold")
        USER = "user", _("User")
        SYSTEM = "system", _("System")
        IMPORT = "import", _("Import")

    class Outcome(models.TextChoices):
        NONE = "", _("—")
        WON = "won", _("Won")
        LOST = "lost", _("Lost")
        RECYCLED = "recycled", _("Recycled to marketing")
        DISQUALIFIED = "disqualified", _("Disqualified")

    # Indexed by stagechange_contact_at (contact first): a second index would only slow writes.
    contact = models.ForeignKey(
        Contact,
        verbose_name=_("contact"),
        on_delete=models.CASCADE,
        related_name="stage_changes",
        db_index=False,
    )
    from_stage = models.CharField(_("from"), max_length=20, choices=Contact.Stage.choices)
    to_stage = models.CharField(_("to"), max_length=20, choices=Contact.Stage.choices)
    outcome = models.CharField(
        _("outcome"), max_length=20, choices=Outcome.choices, default=Outcome.NONE, blank=True
    )
    cause = models.CharField(_("cause"), max_length=20, choices=Cause.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("by user"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # A rule or threshold is named here: contacts does not import scoring.
    actor_name = models.CharField(_("by"), max_length=200, blank=True)
    reason = models.TextField(_("reason"), blank=True)
    at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = _("stage change")
        verbose_name_plural = _("stage changes")
        indexes = [
            models.Index(fields=["contact", "-at"], name="stagechange_contact_at"),
            models.Index(fields=["to_stage", "at"], name="stagechange_to_at"),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.from_stage} → {self.to_stage}"

    def event_fields(self) -> dict[str, object]:
        """The ``stage_changed`` event that records this move on the contact's timeline."""
        return {
            "type": Event.Type.STAGE_CHANGED,
            "occurred_at": self.at,
            "properties": {
                "from": self.from_stage,
                "to": self.to_stage,
                "cause": self.cause,
                "outcome": self.outcome,
                "stage_change_id": self.pk,
            },
            "source": "system",
            "idempotency_key": f"stage_change:{self.pk}",
        }

    @property
    def by(self) -> str:
        if self.actor_id:
            return self.actor.get_full_name() or self.actor.get_username()
        return self.actor_name or self.get_cause_display()

    @property
    def moved_by(self) -> str:
        """Who or what moved the contact, said once and in the reader's language: "Claire
        Martin", "Threshold: SQL at 60 points or Demo requested", "Sequence “Welcome”",
        "Import by Claire Martin", "System"."""
        if self.actor_id:
            name = self.actor.get_full_name() or self.actor.get_username()
        else:
            name = reasons.text(self.actor_name)
        if self.cause == self.Cause.IMPORT and name:
            return _("Import by %(name)s") % {"name": name}
        if not name and self.cause == self.Cause.SYSTEM:
            return reasons.text("system")
        return name or str(self.get_cause_display())

    @property
    def reason_text(self) -> str:
        """Why, in the reader's language; a person's words as they typed them."""
        return reasons.text(self.reason)


class StageStay(models.Model):
    """A stage change read as the stay it ended: the contact was in ``stage`` from
    ``entered_at`` (its previous change, or its creation) until ``left_at``, then went to
    ``next_stage``. One narrow row per StageChange, so velocity and conversion are range scans
    without joins. ``first_arrival``: the contact's first move up into ``next_stage`` (a move
    from a lower stage; a demotion never is), so the sources panel counts each person once per
    stage. ``source`` and ``first_source`` are the contact's as they are now: a change of the
    contact's source is copied to its stays (``rollups.on_contacts_changed``), so the panel
    groups people by their source without a join. ``events_process`` adds the rows of each
    batch's ``stage_changed`` events; ``manage.py rollup_rebuild`` recomputes them."""

    stage_change = models.OneToOneField(
        StageChange, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    # The contact's source and first source, as they are now (kept in step, see above).
    source = models.ForeignKey(
        LeadSource, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        db_index=False,
    )  # fmt: skip
    first_source = models.ForeignKey(
        LeadSource, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        db_index=False,
    )  # fmt: skip
    # Null only for rows older than contacts 0024 that it could not fill (none are expected).
    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, null=True, blank=True, related_name="+",
        db_index=False,  # stagestay_contact
    )  # fmt: skip
    stage = models.CharField(_("stage"), max_length=20, choices=Contact.Stage.choices)
    entered_at = models.DateTimeField(_("entered"))
    left_at = models.DateTimeField(_("left"))
    next_stage = models.CharField(_("next stage"), max_length=20, choices=Contact.Stage.choices)
    first_arrival = models.BooleanField(_("first arrival"), default=False, db_default=False)

    class Meta:
        verbose_name = _("stage stay")
        verbose_name_plural = _("stage stays")
        indexes = [
            models.Index(fields=["left_at"], name="stagestay_left_at"),
            models.Index(fields=["entered_at"], name="stagestay_entered_at"),
            # The sources panel: first arrivals in a period by stage and source, read from the
            # index alone (key columns rather than INCLUDE, which only PostgreSQL has).
            models.Index(
                fields=["left_at", "next_stage", "source", "first_source"],
                condition=Q(first_arrival=True),
                name="stagestay_first_arrival",
            ),
            # A contact's stays, when its source changes.
            models.Index(fields=["contact"], name="stagestay_contact"),
        ]

    def __str__(self) -> str:
        return f"{self.stage_change_id}: {self.stage} → {self.next_stage}"


# Why a rep lost a lead (StageChange.reason of a "lost" outcome).
LOST_REASONS = [
    ("budget", _("No budget")),
    ("competitor", _("Chose a competitor")),
    ("timing", _("Not the right time")),
    ("no_need", _("No real need")),
    ("no_answer", _("Never answered")),
    ("other", _("Other")),
]
