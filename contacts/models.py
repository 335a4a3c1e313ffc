from __future__ import annotations

import hashlib
import secrets
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections, models
from django.db.models import Count, F, Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import Lower, Trim
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from contacts import reasons


@lru_cache(maxsize=1)
def _time_zones() -> dict[str, str]:
    return {name.lower(): name for name in zoneinfo.available_timezones()}


def canonical_time_zone(value: str | None) -> str | None:
    """The IANA name ``value`` means, whatever its case ("" for blank, None if there is none)."""
    value = (value or "").strip()
    if not value:
        return ""
    return _time_zones().get(value.lower())


def validate_time_zone(value: str | None) -> None:
    if value and canonical_time_zone(value) != value:
        raise ValidationError(
            _("“%(value)s” is not a time zone; write it as Europe/Paris or America/Montreal."),
            code="time_zone",
            params={"value": value},
        )


class LeadSource(models.Model):
    """Where a contact first came from (first touch), e.g. "Google Ads – brand"."""

    class Channel(models.TextChoices):
        ORGANIC = "organic", _("Organic search")
        PAID = "paid", _("Paid search")
        SOCIAL = "social", _("Social")
        EMAIL = "email", _("Email")
        REFERRAL = "referral", _("Referral")
        EVENT = "event", _("Event")
        PARTNER = "partner", _("Partner")
        DIRECT = "direct", _("Direct")
        OTHER = "other", _("Other")

    name = models.CharField(_("name"), max_length=120, unique=True)
    slug = models.SlugField(_("slug"), max_length=120, unique=True)
    channel = models.CharField(
        _("channel"), max_length=20, choices=Channel.choices, default=Channel.OTHER
    )
    utm_source = models.CharField(_("UTM source"), max_length=200, blank=True)
    utm_medium = models.CharField(_("UTM medium"), max_length=200, blank=True)
    utm_campaign = models.CharField(_("UTM campaign"), max_length=200, blank=True)
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ["name"]
        verbose_name = _("lead source")
        verbose_name_plural = _("lead sources")

    def __str__(self) -> str:
        return self.name


class LeadSourceCost(models.Model):
    """What a source cost over a period (a campaign budget, a trade-show stand, a month of ads)."""

    source = models.ForeignKey(
        LeadSource, verbose_name=_("source"), on_delete=models.CASCADE, related_name="costs"
    )
    starts_on = models.DateField(_("from"))
    ends_on = models.DateField(_("to (included)"))
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    note = models.CharField(_("note"), max_length=200, blank=True)

    class Meta:
        ordering = ["-starts_on"]
        verbose_name = _("lead source cost")
        verbose_name_plural = _("lead source costs")
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_on__gte=F("starts_on")),
                name="leadsourcecost_period_in_order",
                violation_error_message=_("The period must end on or after its start."),
            ),
            models.CheckConstraint(
                condition=Q(amount__gte=0),
                name="leadsourcecost_amount_positive",
                violation_error_message=_("A cost cannot be negative."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source}: {self.amount} ({self.starts_on} – {self.ends_on})"

    def share(self, start: date, end: date) -> Decimal:
        """The part of this cost that falls in [start, end] (days included), spread evenly."""
        overlap = (min(end, self.ends_on) - max(start, self.starts_on)).days + 1
        if overlap <= 0:
            return Decimal(0)
        days = (self.ends_on - self.starts_on).days + 1
        return (self.amount * overlap / days).quantize(Decimal("0.01"))


def source_costs(start: date, end: date) -> dict[int, Decimal]:
    """What each lead source cost between two dates, for cost per lead and per client."""
    totals: dict[int, Decimal] = {}
    for cost in LeadSourceCost.objects.filter(starts_on__lte=end, ends_on__gte=start):
        totals[cost.source_id] = totals.get(cost.source_id, Decimal(0)) + cost.share(start, end)
    return totals


SEARCHED_COLUMNS = ("email", "first_name", "last_name", "company")


def _search_sql(connection: Any, words: list[str]) -> tuple[str, list[str]]:
    """contact_search ids matching every word in some column, as icontains would match."""
    clauses, params = [], []
    for word in words:
        pattern = f"%{connection.ops.prep_for_like_query(word)}%"
        clauses.append(
            "(" + " OR ".join(f"UPPER({c}::text) LIKE UPPER(%s)" for c in SEARCHED_COLUMNS) + ")"
        )
        params.extend([pattern] * len(SEARCHED_COLUMNS))
    return f"SELECT contact_id FROM contact_search WHERE {' AND '.join(clauses)}", params  # noqa: S608


class ContactQuerySet(models.QuerySet["Contact"]):
    def search(self, text: str) -> ContactQuerySet:
        """Contacts whose email, name or company contain every word, whatever the case.

        PostgreSQL answers from contact_search (contacts migration 0013), a narrow copy of
        those columns that triggers keep in step, with one trigram index per column: the
        indexes stay off the contact rows that scoring and activity write all the time.
        """
        words = text.split()
        if not words:
            return self
        if connections[self.db].vendor == "postgresql":
            sql, params = _search_sql(connections[self.db], words)
            return self.filter(pk__in=RawSQL(sql, params))  # noqa: S611 (values are parameters)
        query = Q()
        for word in words:
            query &= (
                Q(email__icontains=word)
                | Q(first_name__icontains=word)
                | Q(last_name__icontains=word)
                | Q(company__icontains=word)
            )
        return self.filter(query)

    def in_stage(self, stage: str) -> ContactQuerySet:
        return self.filter(stage=stage)

    def sql_queue(self) -> ContactQuerySet:
        """SQLs nobody has claimed yet: highest score first, then longest wait."""
        return self.filter(stage=Contact.Stage.SQL, owner__isnull=True).order_by(
            "-score", "stage_entered_at", "id"
        )

    def for_owner(self, user: Any) -> ContactQuerySet:
        """A rep's leads: what they claimed and still have to work (SQLs)."""
        return self.filter(owner=user, stage=Contact.Stage.SQL).order_by("claimed_at", "id")

    def visible_to(self, user: Any) -> ContactQuerySet:
        """The contacts ``user`` may open. Marketers and staff: all. A sales rep (and no more):
        the queue (unclaimed SQLs) and the contacts they own, whatever the stage (their
        leads, the ones given to them, their clients); not other reps' contacts, not the
        prospects marketing works on. Every view that takes a contact id reads through this,
        and answers 404 for the rest, as for an id that does not exist."""
        from contacts.roles import MARKETING, SALES, user_roles

        roles = user_roles(user)
        if MARKETING in roles:
            return self.all()
        if SALES in roles:
            return self.filter(Q(stage=Contact.Stage.SQL, owner__isnull=True) | Q(owner=user))
        return self.none()

    def claims_stale(self, before: datetime) -> ContactQuerySet:
        """Claimed SQLs nobody has worked on since ``before``: they go back to the queue."""
        return self.filter(stage=Contact.Stage.SQL, owner__isnull=False, claimed_at__lt=before)

    def inactive_prospects(self, before: datetime) -> ContactQuerySet:
        """Prospects (never clients) with no activity since ``before``, not erased yet."""
        prospects = [Contact.Stage.SUSPECT, Contact.Stage.LEAD, Contact.Stage.MQL,
                     Contact.Stage.HMQL]  # fmt: skip
        quiet = Q(last_activity_at__lt=before) | Q(last_activity_at__isnull=True)
        fresh = Q(erased_at__isnull=True, created_at__lt=before)
        return self.filter(quiet, fresh, stage__in=prospects)

    def stage_counts(self) -> dict[str, int]:
        """Contacts per stage, every stage present (zero when empty), in funnel order."""
        # COUNT(*), not COUNT(id): PostgreSQL can count from the stage index alone.
        counts = dict(self.order_by().values_list("stage").annotate(n=Count("*")))
        return {stage: counts.get(stage, 0) for stage in Contact.Stage.values}


class Contact(models.Model):
    class Stage(models.TextChoices):
        # Declaration order is funnel order.
        SUSPECT = "suspect", _("Suspect")
        LEAD = "lead", _("Lead")
        MQL = "mql", _("MQL")
        HMQL = "hmql", _("HMQL")
        SQL = "sql", _("SQL")
        CLIENT = "client", _("Client")
        AMBASSADOR = "ambassador", _("Ambassador")

    class Consent(models.TextChoices):
        UNKNOWN = "unknown", _("Unknown")
        GRANTED = "granted", _("Granted")
        WITHDRAWN = "withdrawn", _("Withdrawn")

    # Nullable: an anonymous suspect has no email. Stored trimmed; unique whatever the case.
    email = models.EmailField(_("email"), max_length=254, null=True, blank=True)
    first_name = models.CharField(_("first name"), max_length=100, blank=True)
    last_name = models.CharField(_("last name"), max_length=100, blank=True)
    company = models.CharField(_("company"), max_length=200, blank=True)
    phone = models.CharField(_("phone"), max_length=40, blank=True)
    job_title = models.CharField(_("job title"), max_length=150, blank=True)
    # The contact's id in another system (a CRM, a shop): what imports match rows without email
    # on. Stored trimmed, case kept; unique when set.
    external_id = models.CharField(_("external id"), max_length=200, null=True, blank=True)
    # Blank: the site's time zone. Only send windows use it ("weekdays 9–12, the contact's time").
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        default="",
        db_default="",  # bulk SQL that leaves it out (seeds, COPY) gets the site's
        validators=[validate_time_zone],
        help_text=_("e.g. America/Montreal. Empty: the site's time zone."),
    )

    source = models.ForeignKey(
        LeadSource,
        verbose_name=_("source"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="contacts",
        db_index=False,  # contact_source_activity (PostgreSQL, 0009) starts with it
    )
    utm_source = models.CharField(_("UTM source"), max_length=200, blank=True)
    utm_medium = models.CharField(_("UTM medium"), max_length=200, blank=True)
    utm_campaign = models.CharField(_("UTM campaign"), max_length=200, blank=True)
    utm_term = models.CharField(_("UTM term"), max_length=200, blank=True)
    utm_content = models.CharField(_("UTM content"), max_length=200, blank=True)

    # Indexed by contact_stage_score (stage first).
    stage = models.CharField(
        _("stage"), max_length=20, choices=Stage.choices, default=Stage.SUSPECT
    )
    stage_entered_at = models.DateTimeField(_("in stage since"), default=timezone.now)
    # Denormalised sum of the scoring ledger; only the scoring services write it.
    score = models.IntegerField(_("score"), default=0, db_index=True)

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="owned_contacts",
        db_index=False,  # contact_claimed (partial: most contacts have no owner) covers it
    )
    claimed_at = models.DateTimeField(_("claimed"), null=True, blank=True)

    consent = models.CharField(
        _("consent"), max_length=20, choices=Consent.choices, default=Consent.UNKNOWN
    )
    consent_at = models.DateTimeField(_("consent given"), null=True, blank=True)
    consent_method = models.CharField(_("consent method"), max_length=200, blank=True)
    do_not_email = models.BooleanField(_("do not email"), default=False)

    created_at = models.DateTimeField(_("created"), default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    # Indexed by contact_last_activity_desc and contact_source_activity (PostgreSQL, 0009).
    last_activity_at = models.DateTimeField(_("last activity"), null=True, blank=True)
    referred_by = models.ForeignKey(
        "self",
        verbose_name=_("referred by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="referrals",
        db_index=False,  # contact_referred_by, partial: few contacts were referred
    )
    # Set when the person's data was erased: the row stays for the aggregate counts.
    erased_at = models.DateTimeField(_("erased"), null=True, blank=True)

    objects = ContactQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("contact")
        verbose_name_plural = _("contacts")
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                name="contact_email_unique_ci",
                violation_error_message=_("A contact with this email already exists."),
            ),
            models.CheckConstraint(
                condition=Q(email__isnull=True) | (~Q(email="") & Q(email=Trim("email"))),
                name="contact_email_trimmed",
                violation_error_message=_("The email must not be blank or padded with spaces."),
            ),
            models.UniqueConstraint(
                fields=["external_id"],
                name="contact_external_id_unique",
                violation_error_message=_("A contact with this external id already exists."),
            ),
            models.CheckConstraint(
                condition=Q(external_id__isnull=True)
                | (~Q(external_id="") & Q(external_id=Trim("external_id"))),
                name="contact_external_id_trimmed",
                violation_error_message=_(
                    "The external id must not be blank or padded with spaces."
                ),
            ),
            models.CheckConstraint(
                # Spelled out: Meta cannot see Contact.Stage. A test keeps the two in step.
                condition=Q(
                    stage__in=["suspect", "lead", "mql", "hmql", "sql", "client", "ambassador"]
                ),
                name="contact_stage_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["stage", "-score"], name="contact_stage_score"),
            # The sales queue reads only unclaimed SQLs, in its own order: a small partial index
            # serves both the page and "claim next" without touching the other stages.
            models.Index(
                F("score").desc(),
                F("stage_entered_at").asc(),
                F("id").asc(),
                name="contact_sql_queue",
                condition=Q(stage="sql", owner__isnull=True),
            ),
            models.Index(
                fields=["owner", "claimed_at"],
                name="contact_claimed",
                condition=Q(owner__isnull=False),
            ),
            models.Index(
                fields=["referred_by"],
                name="contact_referred_by",
                condition=Q(referred_by__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.display_name

    def clean(self) -> None:
        self.email = normalize_email(self.email)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    @property
    def display_name(self) -> str:
        if self.erased_at:
            return _("Erased contact #%(id)s") % {"id": self.pk}
        return self.full_name or self.email or _("Anonymous visitor #%(id)s") % {"id": self.pk}

    @property
    def is_anonymous(self) -> bool:
        return not self.email


def normalize_email(value: str | None) -> str | None:
    """Trim; blank becomes None (an anonymous contact). Case is kept, uniqueness ignores it."""
    if value is None:
        return None
    value = value.strip()
    return value or None


# Moves the stage service accepts. Forward along the funnel (a purchase may skip to client),
# back to lead from marketing stages and from SQL (lost or recycled), HMQL down to MQL, and an
# ambassador back to client. Nothing returns to suspect: a known person stays known.
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
    Contact.Stage.SQL: frozenset({Contact.Stage.LEAD, Contact.Stage.CLIENT}),
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


@dataclass(slots=True)
class EventRow:
    """What event handlers receive: an event's data without the cost of a model instance
    (a batch of a thousand of these is built several times faster than Event objects)."""

    pk: int
    contact_id: int
    type: str
    occurred_at: datetime
    properties: Any
    idempotency_key: str | None
    source: str

    FIELDS: ClassVar[tuple[str, ...]] = (
        "pk", "contact_id", "type", "occurred_at", "properties", "idempotency_key", "source",
    )  # fmt: skip

    @property
    def id(self) -> int:
        return self.pk


class EventQuerySet(models.QuerySet["Event"]):
    def unprocessed(self) -> EventQuerySet:
        """Events some handler has yet to see (failing ones included)."""
        return self.filter(pending__isnull=False)

    def rows(self) -> list[EventRow]:
        return [EventRow(*values) for values in self.values_list(*EventRow.FIELDS)]


class Event(models.Model):
    """A touchpoint on a contact's timeline. Stored once per idempotency key."""

    class Type(models.TextChoices):
        PAGE_VIEW = "page_view", _("Page view")
        FORM_SUBMIT = "form_submit", _("Form submitted")
        DOWNLOAD = "download", _("Download")
        NEWSLETTER_SUBSCRIBE = "newsletter_subscribe", _("Newsletter signup")
        NEWSLETTER_UNSUBSCRIBE = "newsletter_unsubscribe", _("Newsletter unsubscribe")
        EMAIL_OPEN = "email_open", _("Email opened")
        EMAIL_CLICK = "email_click", _("Email clicked")
        DEMO_REQUEST = "demo_request", _("Demo requested")
        TRIAL_STARTED = "trial_started", _("Trial started")
        PURCHASE = "purchase", _("Purchase")
        REFERRAL = "referral", _("Referral")
        REVIEW = "review", _("Review")
        STAGE_CHANGED = "stage_changed", _("Stage changed")
        CUSTOM = "custom", _("Custom")

    # Recorded by the system about a contact, not done by the contact: not "activity".
    SYSTEM_TYPES = frozenset({Type.STAGE_CHANGED})

    # The channels events come in through (``source``), for people to read. An integration may
    # name its own channel: that name is shown as it is.
    SOURCE_LABELS = {
        "beacon": _("Website (tracking)"),
        "form": _("Web form"),
        "api": _("API"),
        "email": _("Email"),
        "sales": _("Sales team"),
        "system": pgettext_lazy("who moved a contact", "System"),
        "billing": _("Billing"),
        "app": _("Product app"),
        "webhook": _("Webhook"),
        "import": _("Import"),
    }

    # Indexed by event_contact_occurred (contact first): a second index would only slow writes.
    contact = models.ForeignKey(
        Contact,
        verbose_name=_("contact"),
        on_delete=models.CASCADE,
        related_name="events",
        db_index=False,
    )
    type = models.CharField(_("type"), max_length=40, choices=Type.choices)
    occurred_at = models.DateTimeField(_("occurred"), default=timezone.now)
    received_at = models.DateTimeField(_("received"), default=timezone.now)
    properties = models.JSONField(_("properties"), default=dict, blank=True)
    source = models.CharField(_("source"), max_length=40, blank=True)
    idempotency_key = models.CharField(_("idempotency key"), max_length=200, null=True, blank=True)

    objects = EventQuerySet.as_manager()

    class Meta:
        ordering = ["-occurred_at", "-id"]
        verbose_name = _("event")
        verbose_name_plural = _("events")
        indexes = [
            models.Index(fields=["contact", "-occurred_at"], name="event_contact_occurred"),
            models.Index(fields=["type", "occurred_at"], name="event_type_occurred"),
        ]
        constraints = [
            # A constraint, not unique=True: that would add a LIKE index nobody queries.
            models.UniqueConstraint(fields=["idempotency_key"], name="event_idempotency_key"),
        ]

    def __str__(self) -> str:
        return f"{self.get_type_display()} ({self.contact_id})"

    @property
    def url(self) -> str:
        return str(self.properties.get("url", "")) if isinstance(self.properties, dict) else ""


class PendingEvent(models.Model):
    """An event some handler in LEADFUNNEL_EVENT_HANDLERS has yet to see.

    A narrow queue beside the append-only events table: a row is written with its event and
    deleted in the transaction that hands the event to the handlers, so handling never rewrites
    the wide, many-indexed event row. A failing event stays here with its error.
    """

    # No database constraint: checking it would cost a lookup per queued row, and the event is
    # deleted through the ORM (which cascades here) or is found missing by the pipeline.
    event = models.OneToOneField(
        Event,
        verbose_name=_("event"),
        primary_key=True,
        on_delete=models.CASCADE,
        db_constraint=False,
        related_name="pending",
    )
    received_at = models.DateTimeField(_("received"), default=timezone.now)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    last_error = models.TextField(_("last error"), blank=True)

    class Meta:
        verbose_name = _("pending event")
        verbose_name_plural = _("pending events")

    def __str__(self) -> str:
        return str(self.event_id)


class ApiKey(models.Model):
    """A key an integration sends as ``Authorization: Bearer <key>``. Only its hash is stored."""

    PREFIX = "lf_"

    name = models.CharField(_("name"), max_length=120)
    prefix = models.CharField(_("starts with"), max_length=16, editable=False)
    hashed = models.CharField(max_length=64, unique=True, editable=False)
    rate_per_minute = models.PositiveIntegerField(
        _("requests per minute"),
        null=True,
        blank=True,
        help_text=_("Empty: the default (API_RATE_PER_MINUTE)."),
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash(key: str) -> str:
        # The key is 256 random bits: a plain SHA-256 cannot be brute-forced, and it lets the
        # lookup be one indexed equality.
        return hashlib.sha256(key.encode()).hexdigest()


def new_form_key() -> str:
    return secrets.token_hex(8)


class Form(models.Model):
    """A form on the company's site(s): posts to /f/<key>/ and makes or updates a contact."""

    name = models.CharField(_("name"), max_length=120)
    key = models.SlugField(
        _("public key"), max_length=40, unique=True, editable=False, default=new_form_key
    )
    source = models.ForeignKey(
        LeadSource, verbose_name=_("lead source"), on_delete=models.SET_NULL, null=True,
        blank=True, help_text=_("Given to the contacts this form creates."),
    )  # fmt: skip
    ask_name = models.BooleanField(_("ask for the name"), default=True)
    ask_company = models.BooleanField(_("ask for the company"), default=True)
    ask_phone = models.BooleanField(_("ask for the phone"), default=False)
    consent_text = models.TextField(
        _("consent wording"),
        default=_("I agree to receive emails about LeadFunnel. I can unsubscribe at any time."),
    )
    consent_version = models.PositiveIntegerField(_("consent wording version"), default=1)
    thank_you_url = models.URLField(_("thank-you page"), blank=True)
    allowed_origins = models.TextField(
        _("allowed origins"),
        blank=True,
        help_text=_("One per line, e.g. https://www.example.com. Empty: any site."),
    )
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ["name"]
        verbose_name = _("form")
        verbose_name_plural = _("forms")

    def __str__(self) -> str:
        return self.name

    def origins(self) -> set[str]:
        return {
            line.strip().rstrip("/") for line in self.allowed_origins.splitlines() if line.strip()
        }


class Consent(models.Model):
    """Proof of a consent: which wording, when, from where, on which page."""

    contact = models.ForeignKey(
        Contact, verbose_name=_("contact"), on_delete=models.CASCADE, related_name="consents"
    )
    form = models.ForeignKey(Form, verbose_name=_("form"), on_delete=models.SET_NULL, null=True)
    wording = models.TextField(_("wording"))
    wording_version = models.PositiveIntegerField(_("wording version"))
    ip = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    page = models.URLField(_("page"), max_length=1000, blank=True)
    at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        ordering = ["-at"]
        verbose_name = _("consent")
        verbose_name_plural = _("consents")

    def __str__(self) -> str:
        return f"{self.contact_id} v{self.wording_version} {self.at:%Y-%m-%d}"


class Visitor(models.Model):
    """A browser's id (kept in the site's localStorage by the tracking snippet) and whose it is."""

    visitor_id = models.CharField(_("visitor id"), max_length=64, unique=True)
    contact = models.ForeignKey(
        Contact, verbose_name=_("contact"), on_delete=models.CASCADE, related_name="visitors"
    )
    first_seen_at = models.DateTimeField(_("first seen"), default=timezone.now)

    class Meta:
        verbose_name = _("visitor")
        verbose_name_plural = _("visitors")

    def __str__(self) -> str:
        return self.visitor_id


class AnonymousView(models.Model):
    """A page view of a visitor who is no contact yet (one page seen, no form sent): kept
    without a contact, and moved onto one, as an event, once the visitor does something worth
    keeping (VISITOR_CONTACT_AFTER_VIEWS pages, a form). Visitors who never do are purged."""

    visitor_id = models.CharField(_("visitor id"), max_length=64, db_index=True)
    occurred_at = models.DateTimeField(_("occurred at"), db_index=True)
    url = models.CharField(_("URL"), max_length=1000)
    title = models.CharField(_("title"), max_length=300, blank=True)
    referrer = models.CharField(_("referrer"), max_length=1000, blank=True)
    utm = models.JSONField(_("UTM"), default=dict, blank=True)
    # The event's idempotency key to be: a view queued twice is kept once.
    key = models.CharField(_("key"), max_length=64, unique=True)

    class Meta:
        verbose_name = _("anonymous page view")
        verbose_name_plural = _("anonymous page views")

    def __str__(self) -> str:
        return f"{self.visitor_id} {self.url}"


class ContactMerge(models.Model):
    """An anonymous visitor's history moved onto the contact it turned out to be."""

    into = models.ForeignKey(
        Contact, verbose_name=_("into"), on_delete=models.CASCADE, related_name="merges"
    )
    merged_contact_id = models.BigIntegerField(_("merged contact"))
    visitor_id = models.CharField(_("visitor id"), max_length=64)
    events_moved = models.PositiveIntegerField(_("events moved"))
    at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        ordering = ["-at"]
        verbose_name = _("contact merge")
        verbose_name_plural = _("contact merges")

    def __str__(self) -> str:
        return f"{self.merged_contact_id} → {self.into_id}"


class ImportJob(models.Model):
    """A CSV file a marketer uploaded, its column mapping, and how its import went."""

    class Status(models.TextChoices):
        MAPPING = "mapping", _("Columns to map")
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    file = models.FileField(_("file"), upload_to="imports/%Y/%m/")
    filename = models.CharField(_("file name"), max_length=255)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("imported by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    source = models.ForeignKey(
        LeadSource,
        verbose_name=_("lead source"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    overwrite = models.BooleanField(_("overwrite existing values"), default=False)
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.MAPPING
    )
    encoding = models.CharField(_("encoding"), max_length=20)
    delimiter = models.CharField(_("delimiter"), max_length=1)
    columns = models.JSONField(_("columns"), default=list)
    # One entry per column, in file order: a contact field name, or "" for an ignored column.
    mapping = models.JSONField(_("mapping"), default=list)
    rows_total = models.PositiveIntegerField(_("rows"), default=0)
    rows_done = models.PositiveIntegerField(_("rows done"), default=0)
    created_count = models.PositiveIntegerField(
        pgettext_lazy("count of contacts", "created"), default=0
    )
    merged_count = models.PositiveIntegerField(_("merged"), default=0)
    unchanged_count = models.PositiveIntegerField(_("unchanged"), default=0)
    rejected_count = models.PositiveIntegerField(_("rejected"), default=0)
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("uploaded"), default=timezone.now)
    queued_at = models.DateTimeField(_("queued"), null=True, blank=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("contact import")
        verbose_name_plural = _("contact imports")
        indexes = [
            # The sweep only looks at the few jobs waiting for, or stuck in, a worker.
            models.Index(
                fields=["status", "queued_at"],
                name="importjob_pending",
                condition=Q(status__in=["queued", "running"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.filename} ({self.get_status_display()})"

    @property
    def error_text(self) -> str:
        return reasons.text(self.error)

    @property
    def in_progress(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)

    @property
    def percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        return round(100 * self.rows_done / self.rows_total) if self.rows_total else 0


class ImportRowError(models.Model):
    """A row an import refused, and why: the marketer's report to fix and re-upload."""

    job = models.ForeignKey(
        ImportJob, verbose_name=_("import"), on_delete=models.CASCADE, related_name="row_errors"
    )
    line_number = models.PositiveIntegerField(_("line"))
    raw = models.TextField(_("row"))
    message = models.CharField(_("reason"), max_length=500)

    class Meta:
        ordering = ["job", "line_number"]
        verbose_name = _("import row error")
        verbose_name_plural = _("import row errors")

    def __str__(self) -> str:
        return f"{self.job_id} line {self.line_number}: {self.message}"

    @property
    def reason(self) -> str:
        """The refusal in the reader's language."""
        return reasons.text(self.message)


class EventDailyCount(models.Model):
    """Processed events per day (site time zone), type and capture channel: what the
    touchpoints panel reads instead of scanning the event table. ``events_process`` adds each
    batch; ``manage.py rollup_rebuild`` recomputes it from the events."""

    day = models.DateField(_("day"))
    type = models.CharField(_("type"), max_length=40, choices=Event.Type.choices)
    source = models.CharField(_("channel"), max_length=40, blank=True)
    count = models.BigIntegerField(_("events"), default=0)

    class Meta:
        ordering = ["day", "type", "source"]
        verbose_name = _("events per day")
        verbose_name_plural = _("events per day")
        constraints = [
            models.UniqueConstraint(
                fields=["day", "type", "source"], name="eventdailycount_day_type_source"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.type} {self.source}: {self.count}"


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


class Suppression(models.Model):
    """An erased person's email, hashed: imports, forms and the API refuse to bring them back."""

    email_hash = models.CharField(_("email hash"), max_length=64, unique=True)
    at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        ordering = ["-at"]
        verbose_name = _("suppressed email")
        verbose_name_plural = _("suppressed emails")

    def __str__(self) -> str:
        return f"{self.email_hash[:12]}…"

    @staticmethod
    def hash(email: str) -> str:
        # Case-insensitive like the contact's unique email. Unsalted on purpose: the check must
        # find the entry from the email alone, whatever SECRET_KEY becomes.
        return hashlib.sha256(email.strip().lower().encode()).hexdigest()

    @classmethod
    def suppressed(cls, emails: list[str]) -> set[str]:
        """The emails among these (as given) that belong to an erased person."""
        by_hash = {cls.hash(email): email for email in emails if email and email.strip()}
        if not by_hash:
            return set()
        found = cls.objects.filter(email_hash__in=list(by_hash)).values_list(
            "email_hash", flat=True
        )
        return {by_hash[h] for h in found}


class StageStay(models.Model):
    """A stage change read as the stay it ended: the contact was in ``stage`` from
    ``entered_at`` (its previous change, or its creation) until ``left_at``, then went to
    ``next_stage``. One narrow row per StageChange, with the contact's source, so velocity,
    conversion and sources are range scans without joins. ``events_process`` adds the rows of
    each batch's ``stage_changed`` events; ``manage.py rollup_rebuild`` recomputes them."""

    stage_change = models.OneToOneField(
        StageChange, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    source = models.ForeignKey(
        LeadSource, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        db_index=False,
    )  # fmt: skip
    stage = models.CharField(_("stage"), max_length=20, choices=Contact.Stage.choices)
    entered_at = models.DateTimeField(_("entered"))
    left_at = models.DateTimeField(_("left"))
    next_stage = models.CharField(_("next stage"), max_length=20, choices=Contact.Stage.choices)

    class Meta:
        verbose_name = _("stage stay")
        verbose_name_plural = _("stage stays")
        indexes = [
            models.Index(fields=["left_at"], name="stagestay_left_at"),
            models.Index(fields=["entered_at"], name="stagestay_entered_at"),
        ]

    def __str__(self) -> str:
        return f"{self.stage_change_id}: {self.stage} → {self.next_stage}"
