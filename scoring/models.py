from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from contacts import reasons
from contacts.models import Contact, Event
from scoring import engine
from scoring.describe import rule_description as engine_description


class ScoreRule(models.Model):
    """Points for events of one type that meet every condition filled in."""

    class Comparison(models.TextChoices):
        EQUALS = "eq", _("equals")
        GREATER = "gt", _("greater than")
        AT_LEAST = "gte", _("at least")
        LESS = "lt", _("less than")
        AT_MOST = "lte", _("at most")
        BETWEEN = "between", _("between")

    class Period(models.TextChoices):
        NONE = "", _("—")
        DAY = "day", _("day")
        WEEK = "week", _("week")
        MONTH = "month", _("month")

    name = models.CharField(_("name"), max_length=120)
    event_type = models.CharField(_("event type"), max_length=40, choices=Event.Type.choices)
    points = models.IntegerField(_("points"), help_text=_("Negative to take points away."))
    url_contains = models.CharField(_("URL contains"), max_length=300, blank=True)
    url_pattern = models.CharField(
        _("URL matches"), max_length=300, blank=True, help_text=_("A regular expression.")
    )
    content_tag = models.CharField(_("content tag"), max_length=100, blank=True)
    form = models.CharField(_("form"), max_length=100, blank=True)
    property_name = models.CharField(_("property"), max_length=100, blank=True)
    property_operator = models.CharField(
        _("compared by"),
        max_length=10,
        choices=Comparison.choices,
        default=Comparison.EQUALS,
        help_text=_(
            'Equals compares text (5 and "5" are equal). The others compare numbers: a JSON '
            "number, or text holding a plain decimal such as 42 or -3.5; any other value never "
            "matches."
        ),
    )
    property_value = models.CharField(
        _("property equals"), max_length=300, blank=True, help_text=_("For “equals”.")
    )
    property_number = models.DecimalField(
        _("number"),
        max_digits=15,
        decimal_places=4,
        null=True,
        blank=True,
        help_text=_("What the property is compared with; the lower bound for “between”."),
    )
    property_number_max = models.DecimalField(
        _("and at most"),
        max_digits=15,
        decimal_places=4,
        null=True,
        blank=True,
        help_text=_("The upper bound for “between” (both bounds included)."),
    )
    count_at_least = models.PositiveIntegerField(
        _("at least N matching events"),
        null=True,
        blank=True,
        help_text=_(
            "Scores the event that brings the contact's count of events meeting the other "
            "conditions to N or more within the days below (e.g. 3 pricing visits in 30 days). "
            "Combine with “at most 1 time” to score it once."
        ),
    )
    count_within_days = models.PositiveIntegerField(
        _("within D days"),
        null=True,
        blank=True,
        help_text=_("The days up to each event, that event included."),
    )
    fade_full_days = models.PositiveIntegerField(
        _("full points for N days"),
        null=True,
        blank=True,
        help_text=_(
            "Recency: the points fade with the age of the event: in full while it is at most "
            "this many days old (0: only on its day), then fewer each day."
        ),
    )
    fade_zero_days = models.PositiveIntegerField(
        _("no points from M days"),
        null=True,
        blank=True,
        help_text=_(
            "The age at which the points are gone. Ages count calendar days; scores follow "
            "each night."
        ),
    )
    max_times = models.PositiveIntegerField(
        _("at most N times per contact"), null=True, blank=True, validators=[MinValueValidator(1)]
    )
    max_points = models.PositiveIntegerField(
        _("at most N points per contact per period"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
    )
    cap_period = models.CharField(
        _("period"), max_length=10, choices=Period.choices, default=Period.NONE, blank=True
    )
    starts_at = models.DateTimeField(_("valid from"), null=True, blank=True)
    ends_at = models.DateTimeField(_("valid until"), null=True, blank=True)
    active = models.BooleanField(_("active"), default=True)
    priority = models.PositiveSmallIntegerField(
        _("priority"), default=100, help_text=_("Lower runs first.")
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["priority", "name"]
        verbose_name = _("score rule")
        verbose_name_plural = _("score rules")

    def __str__(self) -> str:
        return f"{self.name} ({self.points:+d})"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.url_pattern:
            try:
                re.compile(self.url_pattern)
            except re.error as error:
                errors["url_pattern"] = _("This pattern does not compile: %(error)s") % {
                    "error": error
                }
        if self.points == 0:
            errors["points"] = _("A rule must give or take at least one point.")
        if self.max_times and self.max_points:
            errors["max_times"] = _("Choose one cap: a number of times, or points per period.")
        if bool(self.max_points) != bool(self.cap_period):
            errors["cap_period"] = _("A points cap needs both a number of points and a period.")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            errors["ends_at"] = _("The end must come after the start.")
        errors.update(self._property_errors())
        errors.update(self._count_errors())
        errors.update(self._fade_errors())
        if errors:
            raise ValidationError(errors)

    def _property_errors(self) -> dict[str, str]:
        low, high = self.property_number, self.property_number_max
        if self.property_operator == self.Comparison.EQUALS:
            if bool(self.property_value) != bool(self.property_name):
                return {"property_name": _("Give both the property and the value it must equal.")}
            if low is not None or high is not None:
                return {
                    "property_operator": _(
                        "Choose a numeric comparison for this number, or leave the number empty."
                    )
                }
            return {}
        errors = {}
        if not self.property_name:
            errors["property_name"] = _("Say which property to compare.")
        if self.property_value:
            errors["property_value"] = _(
                "A numeric comparison takes a number: leave “property equals” empty."
            )
        if low is None:
            errors["property_number"] = _("A numeric comparison needs a number.")
        if self.property_operator == self.Comparison.BETWEEN:
            if high is None:
                errors["property_number_max"] = _("“Between” needs both bounds.")
            elif low is not None and low > high:
                errors["property_number_max"] = _(
                    "The upper bound cannot be below the lower bound."
                )
        elif high is not None:
            errors["property_number_max"] = _("Only “between” takes an upper bound.")
        return errors

    def _count_errors(self) -> dict[str, str]:
        n, days = self.count_at_least, self.count_within_days
        if n is None and days is None:
            return {}
        if n is None or days is None:
            return {"count_at_least": _("A count needs both a number of events and of days.")}
        errors = {}
        if n < 2:
            errors["count_at_least"] = _(
                "Count at least 2 events: every matching event scores without a count."
            )
        if days < 1:
            errors["count_within_days"] = _("Count over at least 1 day.")
        return errors

    def _fade_errors(self) -> dict[str, str]:
        full, zero = self.fade_full_days, self.fade_zero_days
        if full is None and zero is None:
            return {}
        if full is None or zero is None:
            return {
                "fade_full_days": _(
                    "Fading needs both the days of full points and the age with none."
                )
            }
        if zero <= full:
            return {"fade_zero_days": _("The points must be gone after the days of full points.")}
        if self.max_points or self.cap_period:
            return {
                "max_points": _(
                    "A fading rule cannot cap points per period: cap it by a number of times."
                )
            }
        return {}

    def description(self) -> str:
        """The rule in plain words, e.g. "Page view, seconds ≥ 120, at least 3 in 30 days"."""
        return engine_description(self.to_engine(), self.get_event_type_display())

    def to_engine(self) -> engine.Rule:
        return engine.Rule(
            id=self.pk,
            name=self.name,
            event_type=self.event_type,
            points=self.points,
            url_contains=self.url_contains,
            url_pattern=self.url_pattern,
            content_tag=self.content_tag,
            form=self.form,
            property_name=self.property_name,
            property_value=self.property_value,
            property_operator=self.property_operator or "eq",
            property_number=self.property_number,
            property_number_max=self.property_number_max,
            count_at_least=self.count_at_least,
            count_within_days=self.count_within_days,
            fade_full_days=self.fade_full_days,
            fade_zero_days=self.fade_zero_days,
            max_times=self.max_times,
            max_points=self.max_points,
            cap_period=self.cap_period,
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            active=self.active,
            priority=self.priority,
        )


class DecayRule(models.Model):
    """No activity for N days: take points (or a share of the score) once per quiet spell."""

    name = models.CharField(_("name"), max_length=120)
    inactive_days = models.PositiveIntegerField(
        _("after N days without activity"), validators=[MinValueValidator(1)]
    )
    points = models.IntegerField(
        _("points taken"), default=0, validators=[MaxValueValidator(0)], help_text=_("Negative.")
    )
    percent = models.PositiveSmallIntegerField(
        _("or percent of the score taken"), default=0, validators=[MaxValueValidator(100)]
    )
    active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["inactive_days"]
        verbose_name = _("decay rule")
        verbose_name_plural = _("decay rules")

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if bool(self.points) == bool(self.percent):
            raise ValidationError(_("Give either points taken or a percentage, not both."))

    def to_engine(self) -> engine.DecayRule:
        return engine.DecayRule(
            id=self.pk,
            name=self.name,
            inactive_days=self.inactive_days,
            points=self.points,
            percent=self.percent,
            active=self.active,
        )


class Threshold(models.Model):
    """What makes a contact an MQL, an HMQL, an SQL or an ambassador (one per stage)."""

    STAGES = [
        (Contact.Stage.MQL, Contact.Stage.MQL.label),
        (Contact.Stage.HMQL, Contact.Stage.HMQL.label),
        (Contact.Stage.SQL, Contact.Stage.SQL.label),
        (Contact.Stage.AMBASSADOR, Contact.Stage.AMBASSADOR.label),
    ]

    stage = models.CharField(_("stage"), max_length=20, choices=STAGES, unique=True)
    min_score = models.IntegerField(_("score at least"), null=True, blank=True)
    event_types = models.CharField(
        _("or one of these events"),
        max_length=300,
        blank=True,
        help_text=_("Event types separated by commas, e.g. demo_request."),
    )
    content_tag = models.CharField(
        _("or content with this tag"), max_length=100, blank=True, help_text=_("e.g. high-intent")
    )
    exit_below = models.IntegerField(
        _("leave only below"),
        null=True,
        blank=True,
        help_text=_("Hysteresis: the score under which the contact falls back to lead."),
    )
    demote = models.BooleanField(_("may fall back to lead"), default=False)
    min_fit_grade = models.CharField(
        _("and a fit grade of at least"),
        max_length=1,
        blank=True,
        choices=Contact.FitGrade.choices,
        help_text=_("e.g. SQL at 60 points and fit B or better. Empty: any fit."),
    )
    active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["stage"]
        verbose_name = _("threshold")
        verbose_name_plural = _("thresholds")

    def __str__(self) -> str:
        # "Threshold: SQL at 60 points or Demo requested", in the reader's language.
        return reasons.text(self.to_engine().actor_name)

    def event_type_list(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.event_types.split(",") if t.strip())

    def clean(self) -> None:
        errors: dict[str, str] = {}
        unknown = [t for t in self.event_type_list() if t not in Event.Type.values]
        if unknown:
            errors["event_types"] = _("Unknown event type: %(types)s") % {
                "types": ", ".join(unknown)
            }
        if self.min_score is None and not self.event_type_list() and not self.content_tag:
            errors["min_score"] = _("Give a score, a qualifying event or a content tag.")
        if self.stage in {Contact.Stage.SQL, Contact.Stage.AMBASSADOR} and self.demote:
            errors["demote"] = _("SQLs, clients and ambassadors are never demoted automatically.")
        if self.demote and self.exit_below is None:
            errors["exit_below"] = _("Say below which score the contact falls back to lead.")
        if (
            self.exit_below is not None
            and self.min_score is not None
            and self.exit_below > self.min_score
        ):
            errors["exit_below"] = _("The exit score cannot be above the entry score.")
        errors.update(self._order_errors())
        if errors:
            raise ValidationError(errors)

    def _order_errors(self) -> dict[str, str]:
        """Entry scores rise through the funnel: MQL ≤ HMQL ≤ SQL, where both are set."""
        order = ["mql", "hmql", "sql"]
        if self.stage not in order or self.min_score is None:
            return {}
        others = Threshold.objects.exclude(pk=self.pk).filter(
            stage__in=order, min_score__isnull=False
        )
        for other in others:
            lower, higher = sorted([self, other], key=lambda t: order.index(t.stage))
            if lower.min_score > higher.min_score:
                return {
                    "min_score": _(
                        "Entry scores must rise through the funnel, but %(lower)s would need "
                        "%(lower_score)s and %(higher)s only %(higher_score)s."
                    )
                    % {
                        "lower": lower.get_stage_display(),
                        "lower_score": lower.min_score,
                        "higher": higher.get_stage_display(),
                        "higher_score": higher.min_score,
                    }
                }
        return {}

    def to_engine(self) -> engine.Threshold:
        return engine.Threshold(
            id=self.pk or 0,
            stage=self.stage,
            min_score=self.min_score,
            event_types=self.event_type_list(),
            content_tag=self.content_tag,
            exit_below=self.exit_below,
            demote=self.demote,
            active=self.active,
            min_fit_grade=self.min_fit_grade,
        )


class BackgroundRun(models.Model):
    """A piece of work a worker runs for an admin (a rescore, a rule suggestion): who asked,
    when, and how far it has got, shown while it runs."""

    requested_by = models.ForeignKey(
        "auth.User", verbose_name=_("requested by"), on_delete=models.SET_NULL, null=True,
        blank=True, related_name="+",
    )  # fmt: skip
    steps_total = models.PositiveIntegerField(_("steps"), default=0)
    steps_done = models.PositiveIntegerField(_("steps done"), default=0)
    created_at = models.DateTimeField(_("requested"), default=timezone.now)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_status_display()} {self.created_at:%Y-%m-%d %H:%M}"  # type: ignore[attr-defined]

    @classmethod
    def claim(cls, pk: int):  # type: ignore[no-untyped-def]
        """The queued run, marked as running, or None if it is not queued (a task delivered
        twice, or a run already done): each run is worked on once."""
        claimed = cls.objects.filter(pk=pk, status="queued").update(
            status="running", started_at=timezone.now()
        )
        return cls.objects.get(pk=pk) if claimed else None

    @property
    def percent(self) -> int:
        return round(100 * self.steps_done / self.steps_total) if self.steps_total else 0

    @property
    def seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class Rescore(BackgroundRun):
    """One full rescore from the events table, with its progress (shown while it runs)."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.QUEUED
    )
    reason = models.CharField(_("why"), max_length=300, blank=True)
    lines = models.PositiveIntegerField(_("ledger lines"), default=0)
    contacts_changed = models.PositiveIntegerField(_("contacts whose score changed"), default=0)
    stage_moves = models.PositiveIntegerField(_("stage moves"), default=0)
    error = models.TextField(_("error"), blank=True)

    class Meta(BackgroundRun.Meta):
        verbose_name = _("rescore")
        verbose_name_plural = _("rescores")

    @property
    def reason_text(self) -> str:
        return reasons.text(self.reason)


class ScoreEntry(models.Model):
    """One line of a contact's score ledger. The score is always the sum of these."""

    # Fewer indexes, cheaper rescores: contact and rule are covered by the composite and the
    # unique indexes below; decay lines are found through their unique index.
    # No database checks on contact, rule and event (migration 0007), measured: with them,
    # `make bench BENCH=scoring` scored 8,694 events/s (0.47 of the raw insert) against 9,383 and
    # 9,712 (0.50, 0.51) without, in one sitting on a quiet machine (6 December 2026): three
    # checks per ledger line at commit, 8 to 11 % of live scoring; and the rescore's rule lines
    # 19.2 s against 16.2 s. The ORM keeps the references (CASCADE, SET NULL on rule), and
    # nothing deletes contacts, events or rules around it.
    contact = models.ForeignKey(
        Contact,
        verbose_name=_("contact"),
        on_delete=models.CASCADE,
        related_name="score_entries",
        db_index=False,
        db_constraint=False,
    )
    points = models.IntegerField(_("points"))
    rule = models.ForeignKey(
        ScoreRule,
        verbose_name=_("rule"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        db_index=False,
        db_constraint=False,
    )
    decay_rule = models.ForeignKey(
        DecayRule,
        verbose_name=_("decay rule"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        db_index=False,
    )
    event = models.ForeignKey(
        Event,
        verbose_name=_("event"),
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        db_constraint=False,
    )
    reason = models.CharField(_("reason"), max_length=300)
    # A machine signal (mail scanner) matched the rule: kept to show it, worth nothing.
    filtered = models.BooleanField(_("filtered"), default=False)
    # For decay: the last activity the decay was counted from; one decay per quiet spell.
    inactive_since = models.DateTimeField(_("inactive since"), null=True, blank=True)
    at = models.DateTimeField(_("at"))
    created_at = models.DateTimeField(_("recorded"), default=timezone.now)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = _("score entry")
        verbose_name_plural = _("score entries")
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "event"],
                condition=Q(rule__isnull=False, event__isnull=False),
                name="scoreentry_once_per_rule_and_event",
            ),
            models.UniqueConstraint(
                fields=["contact", "decay_rule", "inactive_since"],
                condition=Q(decay_rule__isnull=False),
                name="scoreentry_once_per_quiet_spell",
            ),
        ]
        indexes = [models.Index(fields=["contact", "-at"], name="scoreentry_contact_at")]

    def __str__(self) -> str:
        return f"{self.points:+d} {self.reason}"


class Suggestion(BackgroundRun):
    """One run of rule suggestions from the contacts' known outcomes (``scoring.suggestions``):
    its progress while it runs, then the suggested rules and how well they rank."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        REFUSED = "refused", _("Not enough outcomes")
        FAILED = "failed", _("Failed")

    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.QUEUED
    )
    steps_total = models.PositiveIntegerField(_("steps"), default=5)
    won = models.PositiveIntegerField(_("won"), default=0)
    lost = models.PositiveIntegerField(_("lost"), default=0)
    held_out = models.PositiveIntegerField(_("contacts measured on"), default=0)
    auc_suggested = models.FloatField(_("AUC of the suggested rules"), null=True, blank=True)
    auc_current = models.FloatField(_("AUC of the current scores"), null=True, blank=True)
    auc_fit = models.FloatField(_("AUC of the suggested fit rules"), null=True, blank=True)
    auc_fit_current = models.FloatField(_("AUC of the current fit"), null=True, blank=True)
    # [{"kind": "score" or "fit", "condition": {...}, "points": 12, "support": 0.2,
    #   "lift": 1.8, "applied": rule id}]
    rules = models.JSONField(_("suggested rules"), default=list, blank=True)
    message = models.TextField(_("message"), blank=True)

    class Meta(BackgroundRun.Meta):
        verbose_name = _("rule suggestion")
        verbose_name_plural = _("rule suggestions")

    @property
    def running(self) -> bool:
        return self.status in {self.Status.QUEUED, self.Status.RUNNING}


# Fit rules and grades live in their own module; imported here so that Django finds them.
from scoring.fit_models import FitGrades, FitRule  # noqa: E402

__all__ = ["DecayRule", "FitGrades", "FitRule", "Rescore", "ScoreEntry", "ScoreRule",
           "Suggestion", "Threshold"]  # fmt: skip
