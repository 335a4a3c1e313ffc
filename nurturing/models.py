from __future__ import annotations

from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from contacts.models import Contact, Event

# The reasons the application stores in ``Message.error`` and ``Enrollment.end_reason`` are
# codes (the same in every language, so a row reads the same whoever wrote it); these are their
# labels. Anything else there (a mail server's reply) is shown as it is.
REASONS = {
    "no email address": _("No email address"),
    "do not email": _("Do not email"),
    "consent withdrawn": _("Consent withdrawn"),
    "no consent": _("No consent"),
    "contact deleted": _("Contact deleted"),
    "email address changed": _("Email address changed"),
    "unsubscribed": pgettext_lazy("a reason", "Unsubscribed"),
    "goal event": _("Goal event"),
    "exit step": _("Exit step"),
    "hard bounce": _("The address bounced (hard bounce)"),
    "soft bounces": _("The address bounced too often (soft bounces)"),
    "spam complaint": _("Spam complaint"),
}


def reason_label(code: str) -> str:
    label = REASONS.get(code)
    return str(label) if label is not None else code


class Sequence(models.Model):
    """A campaign: who enters it (trigger), what ends it as a conversion (goal), and its steps."""

    class Trigger(models.TextChoices):
        STAGE_ENTERED = "stage_entered", _("Stage entered")
        EVENT = "event", _("Event")
        MANUAL = "manual", _("Manual")
        SEGMENT = "segment", _("Segment")

    class Reentry(models.TextChoices):
        ONCE = "once", _("Once ever")
        COOLDOWN = "cooldown", _("Again after a cool-down")
        NOT_WHILE_ACTIVE = "not_while_active", _("Again, but never while active")

    name = models.CharField(_("name"), max_length=200, unique=True)
    description = models.TextField(_("description"), blank=True)
    trigger = models.CharField(
        _("trigger"), max_length=20, choices=Trigger.choices, default=Trigger.MANUAL
    )
    trigger_stage = models.CharField(
        _("stage entered"), max_length=20, choices=Contact.Stage.choices, blank=True
    )
    trigger_event_type = models.CharField(
        _("event type"), max_length=40, choices=Event.Type.choices, blank=True
    )
    trigger_tag = models.CharField(
        _("event tag"),
        max_length=100,
        blank=True,
        help_text=_("Only events with this content or product tag (empty: any)."),
    )
    trigger_count = models.PositiveIntegerField(
        _("at least this many events"), default=1, help_text=_("e.g. 6 for “more than 5”.")
    )
    trigger_within_days = models.PositiveIntegerField(
        _("within days"),
        null=True,
        blank=True,
        help_text=_("Count the events of the last N days only (empty: ever)."),
    )
    segment_query = models.CharField(
        _("segment"),
        max_length=500,
        blank=True,
        help_text=_("The contact list's filters, as in its address, e.g. stage=mql&score_min=20."),
    )
    # When the segment was last enrolled (the tick re-reads segments every SEGMENT_EVERY).
    segment_enrolled_at = models.DateTimeField(_("segment last enrolled"), null=True, blank=True)
    reentry = models.CharField(
        _("re-entry"), max_length=20, choices=Reentry.choices, default=Reentry.ONCE
    )
    cooldown_days = models.PositiveIntegerField(_("cool-down (days)"), default=30)
    goal_event_type = models.CharField(
        _("goal event"),
        max_length=40,
        choices=Event.Type.choices,
        blank=True,
        help_text=_("This event ends the enrolment at once and counts as a conversion."),
    )
    goal_tag = models.CharField(_("goal event tag"), max_length=100, blank=True)
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ["name"]
        verbose_name = _("sequence")
        verbose_name_plural = _("sequences")

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.http import QueryDict

        from contacts.forms import ContactFilterForm  # forms load after the models

        errors = {}
        if self.trigger == self.Trigger.STAGE_ENTERED and not self.trigger_stage:
            errors["trigger_stage"] = _("Choose the stage that starts this sequence.")
        if self.trigger == self.Trigger.EVENT and not self.trigger_event_type:
            errors["trigger_event_type"] = _("Choose the event type that starts this sequence.")
        if self.trigger == self.Trigger.SEGMENT and (
            ContactFilterForm(QueryDict(self.segment_query)).selects_everyone()
        ):
            errors["segment_query"] = _(
                "Give the segment's filters (a stage, a score range…): without one it would "
                "be every contact."
            )
        if self.goal_tag and not self.goal_event_type:
            errors["goal_event_type"] = _("A goal tag needs a goal event type.")
        if errors:
            raise ValidationError(errors)


class Step(models.Model):
    class WindowZone(models.TextChoices):
        CONTACT = "contact", _("The contact's time zone (the site's if it has none)")
        SITE = "site", _("The site's time zone")

    class Kind(models.TextChoices):
        EMAIL = "email", _("Send email")
        WAIT = "wait", _("Wait")
        CONDITION = "condition", _("Condition")
        SCORE = "score", _("Adjust score")
        STAGE = "stage", _("Move stage")
        NOTIFY_OWNER = "notify_owner", _("Notify the owner")
        SPLIT = "split", _("Random split (A/B)")
        EXIT = "exit", _("Exit")

    class Condition(models.TextChoices):
        OPENED = "opened", _("Opened the previous email")
        CLICKED = "clicked", _("Clicked the previous email")
        EVENT_SINCE_ENROLMENT = "event_since_enrolment", _("Event since the enrolment")
        EVENT_SINCE_PREVIOUS_STEP = "event_since_previous_step", _("Event since the previous step")
        SCORE_AT_LEAST = "score_at_least", _("Score at least")
        STAGE_IS = "stage_is", _("Stage is")

    sequence = models.ForeignKey(
        Sequence, verbose_name=_("sequence"), on_delete=models.CASCADE, related_name="steps"
    )
    position = models.PositiveIntegerField(_("order"), default=0)
    name = models.CharField(_("label"), max_length=120, blank=True)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    # wait
    delay = models.DurationField(
        _("wait for"), null=True, blank=True, help_text=_("e.g. 2 00:00:00 for two days.")
    )
    window_weekdays = models.CharField(
        _("send on weekdays"),
        max_length=20,
        blank=True,
        help_text=_("Then wait until one of these days, 0 = Monday … 6 = Sunday, e.g. 0,1,2,3,4."),
    )
    window_start_hour = models.PositiveSmallIntegerField(_("from hour"), null=True, blank=True)
    window_end_hour = models.PositiveSmallIntegerField(_("until hour"), null=True, blank=True)
    window_time_zone = models.CharField(
        _("window hours in"),
        max_length=10,
        choices=WindowZone.choices,
        default=WindowZone.CONTACT,
    )
    # email
    subject = models.CharField(_("subject"), max_length=300, blank=True)
    body_text = models.TextField(_("text body"), blank=True)
    body_html = models.TextField(
        _("HTML body"), blank=True, help_text=_("Empty: made from the text body.")
    )
    offer_percent = models.PositiveSmallIntegerField(_("offer (% off)"), null=True, blank=True)
    offer_code = models.CharField(
        _("offer code prefix"),
        max_length=40,
        blank=True,
        help_text=_("Each contact gets its own code starting with this."),
    )
    offer_valid_hours = models.PositiveIntegerField(
        _("offer valid for (hours)"), null=True, blank=True
    )
    # condition
    condition = models.CharField(
        _("condition"), max_length=40, choices=Condition.choices, blank=True
    )
    condition_event_type = models.CharField(
        _("condition event"), max_length=40, choices=Event.Type.choices, blank=True
    )
    condition_tag = models.CharField(_("condition event tag"), max_length=100, blank=True)
    condition_score = models.IntegerField(_("condition score"), null=True, blank=True)
    condition_stage = models.CharField(
        _("condition stage"), max_length=20, choices=Contact.Stage.choices, blank=True
    )
    # condition (yes/no) and split (A/B) targets; empty: the next step
    yes_step = models.ForeignKey(
        "self", verbose_name=_("if yes (or A), go to"), on_delete=models.SET_NULL,
        null=True, blank=True, related_name="+",
    )  # fmt: skip
    no_step = models.ForeignKey(
        "self", verbose_name=_("if no (or B), go to"), on_delete=models.SET_NULL,
        null=True, blank=True, related_name="+",
    )  # fmt: skip
    split_percent = models.PositiveSmallIntegerField(_("share in A (%)"), null=True, blank=True)
    # score / stage
    points = models.IntegerField(_("points"), null=True, blank=True)
    stage = models.CharField(
        _("to stage"), max_length=20, choices=Contact.Stage.choices, blank=True
    )

    class Meta:
        ordering = ["sequence", "position", "id"]
        verbose_name = pgettext_lazy("of a sequence", "step")
        verbose_name_plural = pgettext_lazy("of a sequence", "steps")

    def __str__(self) -> str:
        return self.name or f"{self.position}. {self.get_kind_display()}"

    def clean(self) -> None:
        errors: dict[str, object] = {}
        kind = self.kind
        if kind == self.Kind.WAIT and not self.delay and not self.window_weekdays:
            if self.window_start_hour is None:
                errors["delay"] = _("A wait needs a duration or a send window.")
        if kind == self.Kind.WAIT and self.window_weekdays:
            try:
                days = [int(day) for day in self.window_weekdays.split(",") if day.strip()]
            except ValueError:
                days = [-1]
            if not days or any(day not in range(7) for day in days):
                errors["window_weekdays"] = _("Weekdays are numbers from 0 (Monday) to 6.")
        for name in ("window_start_hour", "window_end_hour"):
            value = getattr(self, name)
            if value is not None and value > 24:
                errors[name] = _("An hour is between 0 and 24.")
        if (self.window_start_hour is None) != (self.window_end_hour is None):
            errors["window_end_hour"] = _("Give both hours of the window.")
        elif self.window_start_hour is not None and self.window_start_hour >= (
            self.window_end_hour or 0
        ):
            errors["window_end_hour"] = _("The window must end after it starts.")
        if kind == self.Kind.EMAIL:
            if not self.subject.strip():
                errors["subject"] = _("An email needs a subject.")
            if not self.body_text.strip():
                errors["body_text"] = _("An email needs a text body.")
            offer = (self.offer_percent, self.offer_code, self.offer_valid_hours)
            if any(offer) and not all(offer):
                errors["offer_code"] = _("An offer needs a percentage, a code and a validity.")
        if kind == self.Kind.CONDITION:
            if not self.condition:
                errors["condition"] = _("Choose a condition.")
            elif self.condition in (
                self.Condition.EVENT_SINCE_ENROLMENT,
                self.Condition.EVENT_SINCE_PREVIOUS_STEP,
            ):
                if not self.condition_event_type:
                    errors["condition_event_type"] = _("Choose the event to look for.")
            elif self.condition == self.Condition.SCORE_AT_LEAST and self.condition_score is None:
                errors["condition_score"] = _("Give the score.")
            elif self.condition == self.Condition.STAGE_IS and not self.condition_stage:
                errors["condition_stage"] = _("Choose the stage.")
        if kind == self.Kind.SPLIT and (self.split_percent is None or self.split_percent > 100):
            errors["split_percent"] = _("Give the share of branch A, from 0 to 100.")
        if kind == self.Kind.SCORE and not self.points:
            errors["points"] = _("Give the points to add (negative to take).")
        if kind == self.Kind.STAGE and not self.stage:
            errors["stage"] = _("Choose the stage.")
        for name in ("yes_step", "no_step"):
            target = getattr(self, name)
            if target is not None and target.sequence_id != self.sequence_id:
                errors[name] = _("The target must be a step of the same sequence.")
        if kind == self.Kind.EMAIL and not errors:
            from nurturing.rendering import TemplateProblem, check_template

            for name in ("subject", "body_text", "body_html"):
                try:
                    check_template(getattr(self, name), html=name == "body_html")
                except TemplateProblem as problem:
                    errors[name] = str(problem)
        if errors:
            raise ValidationError(errors)

    @property
    def weekdays(self) -> tuple[int, ...]:
        return tuple(int(day) for day in self.window_weekdays.split(",") if day.strip())


class EnrollmentQuerySet(models.QuerySet["Enrollment"]):
    def active(self) -> EnrollmentQuerySet:
        return self.filter(status=Enrollment.Status.ACTIVE)

    def due(self, as_of: datetime) -> EnrollmentQuerySet:
        return self.filter(status=Enrollment.Status.ACTIVE, next_run_at__lte=as_of)


class Enrollment(models.Model):
    """One contact's way through one sequence."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        COMPLETED = "completed", pgettext_lazy("an enrolment", "Completed")
        GOAL_REACHED = "goal_reached", _("Goal reached")
        EXITED = "exited", pgettext_lazy("an enrolment", "Exited")
        UNSUBSCRIBED = "unsubscribed", pgettext_lazy("an enrolment", "Unsubscribed")
        FAILED = "failed", pgettext_lazy("an enrolment", "Failed")

    # SET_NULL: a deleted contact's enrolment ends quietly and still counts in the results.
    contact = models.ForeignKey(
        Contact, verbose_name=_("contact"), on_delete=models.SET_NULL, null=True,
        related_name="enrollments",
    )  # fmt: skip
    sequence = models.ForeignKey(
        Sequence, verbose_name=_("sequence"), on_delete=models.CASCADE, related_name="enrollments"
    )
    step = models.ForeignKey(
        Step, verbose_name=_("current step"), on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )  # fmt: skip
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.ACTIVE
    )
    next_run_at = models.DateTimeField(_("next run"), null=True, blank=True)
    entered_at = models.DateTimeField(_("entered"), default=timezone.now)
    step_entered_at = models.DateTimeField(_("in this step since"), default=timezone.now)
    previous_step_at = models.DateTimeField(_("previous step since"), null=True, blank=True)
    ended_at = models.DateTimeField(_("ended"), null=True, blank=True)
    end_reason = models.CharField(_("why it ended"), max_length=200, blank=True)
    branch = models.CharField(_("A/B branch"), max_length=1, blank=True)
    # The latest expiring offer: {"code", "percent", "expires_at"} (ISO), for later steps.
    offer = models.JSONField(_("offer"), default=dict, blank=True)
    # One line per step run: {"step", "kind", "at", "result"}.
    history = models.JSONField(_("history"), default=list, blank=True)
    source = models.CharField(_("enrolled by"), max_length=100, blank=True)

    objects = EnrollmentQuerySet.as_manager()

    class Meta:
        ordering = ["-entered_at", "-id"]
        verbose_name = _("enrolment")
        verbose_name_plural = _("enrolments")
        constraints = [
            # Whatever the re-entry policy, a contact is never twice in a sequence at once.
            models.UniqueConstraint(
                fields=["contact", "sequence"],
                condition=Q(status="active"),
                name="enrollment_one_active_per_sequence",
            ),
        ]
        indexes = [
            # The scheduler only ever looks at active rows that are due.
            models.Index(
                fields=["next_run_at"],
                name="enrollment_due",
                condition=Q(status="active"),
            ),
            models.Index(fields=["sequence", "status"], name="enrollment_sequence_status"),
            models.Index(fields=["contact", "sequence"], name="enrollment_contact_sequence"),
        ]

    def __str__(self) -> str:
        return f"{self.sequence_id}/{self.contact_id} ({self.status})"

    @property
    def end_reason_label(self) -> str:
        return reason_label(self.end_reason)


class SplitBranch(models.Model):
    """The branch an enrolment took at one split step (a sequence may have several splits; the
    enrolment's ``branch`` only keeps the last). Written by the scheduler, read by the results."""

    enrollment = models.ForeignKey(
        Enrollment, verbose_name=_("enrolment"), on_delete=models.CASCADE,
        related_name="split_branches",
    )  # fmt: skip
    step = models.ForeignKey(
        Step, verbose_name=_("split step"), on_delete=models.CASCADE, related_name="+"
    )
    branch = models.CharField(_("A/B branch"), max_length=1)
    at = models.DateTimeField(_("at"))

    class Meta:
        verbose_name = _("split branch")
        verbose_name_plural = _("split branches")
        constraints = [
            # The split is deterministic per (enrolment, step): a loop through it again finds
            # the same branch, kept once.
            models.UniqueConstraint(fields=["enrollment", "step"], name="split_branch_once"),
        ]
        indexes = [models.Index(fields=["step", "branch"], name="split_branch_step")]

    def __str__(self) -> str:
        return f"{self.enrollment_id}@{self.step_id}: {self.branch}"


class MessageQuerySet(models.QuerySet["Message"]):
    def sendable(self, as_of: datetime) -> MessageQuerySet:
        """Due queued messages that no earlier message of their enrolment holds back: one
        contact's emails of a sequence go in order, even while a dead worker's lease holds the
        first or a person has to decide about it (in doubt). Notes to the owner are not held."""
        return self.filter(status=Message.Status.QUEUED, next_attempt_at__lte=as_of).filter(
            Q(internal=True) | ~models.Exists(self.holding_back())
        )

    def holding_back(self) -> MessageQuerySet:
        """For a subquery: the earlier unfinished marketing messages of the outer one's
        enrolment (nurturing.sending claims with it)."""
        return Message.objects.filter(
            enrollment=models.OuterRef("enrollment"),
            pk__lt=models.OuterRef("pk"),
            internal=False,
            status__in=Message.UNFINISHED,
        )

    def counting_for_cap(self, contact_ids: object, since: datetime) -> MessageQuerySet:
        return self.filter(
            contact_id__in=contact_ids,
            internal=False,
            created_at__gte=since,
            status__in=[
                Message.Status.QUEUED,
                Message.Status.SENDING,
                Message.Status.SENT,
                Message.Status.IN_DOUBT,
                Message.Status.BOUNCED,
                Message.Status.COMPLAINED,
            ],
        )


class Message(models.Model):
    """The outbox: an email rendered when its step ran, delivered once by a send task."""

    class Status(models.TextChoices):
        QUEUED = "queued", pgettext_lazy("a message", "Queued")
        SENDING = "sending", pgettext_lazy("a message", "Sending")
        SENT = "sent", pgettext_lazy("a message", "Sent")
        # The mail server may have accepted it, but no reply was recorded (the worker died or
        # the connection dropped after the end of the data): never resent without a person.
        IN_DOUBT = "in_doubt", pgettext_lazy("a message", "In doubt")
        FAILED = "failed", pgettext_lazy("a message", "Failed")
        SUPPRESSED = "suppressed", pgettext_lazy("a message", "Suppressed")
        # Final states learnt after the hand-over (nurturing.bounces): the receiving side
        # refused it (hard or soft, at RCPT or later by a bounce), or its reader called it spam.
        BOUNCED = "bounced", pgettext_lazy("a message", "Bounced")
        COMPLAINED = "complained", pgettext_lazy("a message", "Marked as spam")

    # May still go, or may have gone unrecorded: a later message of the enrolment waits.
    UNFINISHED = (Status.QUEUED, Status.SENDING, Status.IN_DOUBT)
    # Handed to the mail server and accepted (a bounce or a complaint came back later).
    WENT_OUT = (Status.SENT, Status.BOUNCED, Status.COMPLAINED)

    # No single-column indexes on enrollment and contact: message_once_per_step and
    # message_contact_created lead with them, and every write of a message (claimed, handed
    # over, sent) updates each index.
    enrollment = models.ForeignKey(
        Enrollment, verbose_name=_("enrolment"), on_delete=models.CASCADE,
        related_name="messages", db_index=False,
    )  # fmt: skip
    step = models.ForeignKey(
        Step, verbose_name=_("step"), on_delete=models.SET_NULL, null=True, related_name="messages"
    )
    contact = models.ForeignKey(
        Contact, verbose_name=_("contact"), on_delete=models.SET_NULL, null=True,
        related_name="nurturing_messages", db_index=False,
    )  # fmt: skip
    # A note to the contact's owner rather than marketing email: no tracking, no cap.
    internal = models.BooleanField(_("to the owner"), default=False)
    to = models.CharField(_("to"), max_length=254)
    subject = models.CharField(_("subject"), max_length=300)
    body_text = models.TextField(_("text body"))
    body_html = models.TextField(_("HTML body"), blank=True)
    links = models.JSONField(_("links"), default=list, blank=True)
    message_id = models.CharField(_("Message-ID"), max_length=200)
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.QUEUED
    )
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), default=timezone.now)
    lease_until = models.DateTimeField(_("leased until"), null=True, blank=True)
    # Set, and committed, just before the end of the data goes to the mail server; from then on
    # the server may have the message, so a dead worker's lease makes it "in doubt", not queued.
    handed_over_at = models.DateTimeField(_("handed to the mail server"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    opened_at = models.DateTimeField(_("opened"), null=True, blank=True)
    clicked_at = models.DateTimeField(_("clicked"), null=True, blank=True)
    # The latest delivery report on it (nurturing.bounces), e.g. "deferred 4.2.2 Mailbox full":
    # a deferral is noted here only, a bounce or complaint changes the status too.
    delivery_note = models.CharField(
        _("delivery report"), max_length=500, blank=True, default="", db_default=""
    )

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        constraints = [
            models.UniqueConstraint(fields=["enrollment", "step"], name="message_once_per_step"),
        ]
        indexes = [
            # In the send claim's order (next attempt, then id), so that the claim reads the
            # first due rows from the index and checks only those for an earlier unfinished
            # message of their enrolment: 0.4 ms a claim of 100 with 10,000 queued, where a
            # sort of every due row first took 24 ms (EXPLAIN ANALYZE, bench database).
            models.Index(
                fields=["next_attempt_at", "id"],
                name="message_sendable",
                condition=Q(status="queued"),
            ),
            models.Index(
                fields=["lease_until"], name="message_leased", condition=Q(status="sending")
            ),
            models.Index(fields=["contact", "-created_at"], name="message_contact_created"),
        ]

    def __str__(self) -> str:
        return f"{self.to}: {self.subject} ({self.status})"

    @property
    def error_label(self) -> str:
        return reason_label(self.error)

    @property
    def delivery_note_text(self) -> str:
        """The latest delivery report, its kind in the reader's language."""
        kind, colon, words = self.delivery_note.partition(": ")
        if colon and kind in Bounce.Kind.values:
            label = Bounce.Kind(kind).label
            return _("%(kind)s: %(words)s") % {"kind": label, "words": words} if words else label
        return self.delivery_note

    @property
    def seconds_since_sent(self) -> float | None:
        if self.sent_at is None:
            return None
        return (timezone.now() - self.sent_at) / timedelta(seconds=1)


class Bounce(models.Model):
    """A delivery report about an email after it left: a bounce (hard, soft), a deferral, a
    spam complaint or an unsubscribe an email service took. Written by nurturing.bounces only,
    once per (source, reference)."""

    class Kind(models.TextChoices):
        HARD = "hard", _("Hard bounce")
        SOFT = "soft", _("Soft bounce")
        DEFERRED = "deferred", _("Deferred")
        COMPLAINT = "complaint", _("Spam complaint")
        UNSUBSCRIBED = "unsubscribed", pgettext_lazy("a delivery report", "Unsubscribed")

    contact = models.ForeignKey(
        Contact, verbose_name=_("contact"), on_delete=models.SET_NULL, null=True, blank=True,
        related_name="bounces", db_index=False,
    )  # fmt: skip
    message = models.ForeignKey(
        Message, verbose_name=_("message"), on_delete=models.SET_NULL, null=True, blank=True,
        related_name="bounces",
    )  # fmt: skip
    email = models.CharField(_("email"), max_length=254, blank=True)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    status = models.CharField(_("status code"), max_length=20, blank=True)
    diagnostic = models.CharField(_("diagnostic"), max_length=500, blank=True)
    source = models.CharField(_("source"), max_length=100, blank=True)
    reference = models.CharField(_("reference"), max_length=200, blank=True)
    occurred_at = models.DateTimeField(_("occurred"))
    recorded_at = models.DateTimeField(_("recorded"), default=timezone.now)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        verbose_name = _("delivery report")
        verbose_name_plural = _("delivery reports")
        constraints = [
            # A provider sends the same report again (webhook retries, a mailbox read twice).
            models.UniqueConstraint(
                fields=["source", "reference"],
                condition=~Q(reference=""),
                name="bounce_once_per_reference",
            ),
        ]
        indexes = [
            # The soft-bounce count: one contact's reports of a kind in the last days.
            models.Index(fields=["contact", "kind", "occurred_at"], name="bounce_contact_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.email}: {self.kind} {self.status}".strip()


class EspReport(models.Model):
    """A delivery report an email service's webhook posted, kept until a worker records it
    with the others waiting (nurturing.esp): the post is answered after one small commit."""

    report = models.JSONField(_("report"))
    received_at = models.DateTimeField(_("received"), default=timezone.now)

    class Meta:
        ordering = ["pk"]
        verbose_name = _("email service report waiting")
        verbose_name_plural = _("email service reports waiting")

    def __str__(self) -> str:
        return f"{self.report.get('source', '')} {self.report.get('kind', '')}"
