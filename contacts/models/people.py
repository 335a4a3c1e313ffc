"""Contacts and where they come from (lead sources and their costs)."""

from __future__ import annotations

import unicodedata
import zoneinfo
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections, models
from django.db.models import Count, F, Q
from django.db.models.functions import Lower, Trim
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


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
    """Where a contact comes from, e.g. "Google Ads – brand" (``Contact.source`` now,
    ``Contact.first_source`` the first one it had)."""

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


def source_key(text: str) -> str:
    """ "Google Ads ", "google-ads", "GOOGLE ADS" → "google ads": what a lead source's name or
    alias is compared on (no case, accents or punctuation)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    letters = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join("".join(char if char.isalnum() else " " for char in letters).split())


class LeadSourceAlias(models.Model):
    """Another way a file or a tool writes a lead source ("adwords" for "Google Ads"): imports
    match a per-row source on the source's name and on its aliases."""

    source = models.ForeignKey(
        LeadSource, verbose_name=_("source"), on_delete=models.CASCADE, related_name="aliases"
    )
    alias = models.CharField(_("alias"), max_length=120)
    # source_key(alias): unique, so that one spelling never names two sources.
    key = models.CharField(_("compared as"), max_length=120, unique=True, editable=False)

    class Meta:
        ordering = ["alias"]
        verbose_name = _("lead source alias")
        verbose_name_plural = _("lead source aliases")

    def __str__(self) -> str:
        return self.alias

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.key = source_key(self.alias)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        self.key = source_key(self.alias)
        if not self.key:
            raise ValidationError({"alias": _("Write the alias with letters or digits.")})
        taken = LeadSourceAlias.objects.filter(key=self.key).exclude(pk=self.pk)
        if taken.exists():
            raise ValidationError({"alias": _("This alias already names a lead source.")})
        others = LeadSource.objects.exclude(pk=self.source_id).values_list("name", "slug")
        if any(self.key in (source_key(name), source_key(slug)) for name, slug in others):
            raise ValidationError({"alias": _("Another lead source has this name.")})


def lead_sources_by_key() -> dict[str, int]:
    """Lead source ids by ``source_key`` of their names, slugs and aliases."""
    found: dict[str, int] = {}
    for pk, name, slug in LeadSource.objects.values_list("pk", "name", "slug"):
        found.setdefault(source_key(name), pk)
        found.setdefault(source_key(slug), pk)
    for key, pk in LeadSourceAlias.objects.values_list("key", "source_id"):
        found[key] = pk
    return found


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


SEARCHED_COLUMNS = ("email", "first_name", "last_name", "company", "external_id")


def _every_word(words: list[str]) -> Q:
    """Every word in some searched column, whatever the case (``icontains``)."""
    query = Q()
    for word in words:
        some_column = Q()
        for column in SEARCHED_COLUMNS:
            some_column |= Q(**{f"{column}__icontains": word})
        query &= some_column
    return query


class ContactSearch(models.Model):
    """PostgreSQL only: ``contact_search`` (contacts migration 0012), a narrow copy of the
    searched columns that triggers keep in step, with one trigram index per column on
    ``upper(column::text)``, which is what ``icontains`` compares on PostgreSQL. Not managed:
    that migration and its triggers own the table; SQLite has none."""

    contact_id = models.BigIntegerField(primary_key=True)
    email = models.CharField(max_length=254, null=True)
    first_name = models.CharField(max_length=100, null=True)
    last_name = models.CharField(max_length=100, null=True)
    company = models.CharField(max_length=200, null=True)
    external_id = models.CharField(max_length=200, null=True)  # contacts 0024

    class Meta:
        managed = False
        db_table = "contact_search"

    def __str__(self) -> str:
        return self.email or f"#{self.contact_id}"


class ContactQuerySet(models.QuerySet["Contact"]):
    def search(self, text: str) -> ContactQuerySet:
        """Contacts whose email, name, company or external id contain every word, whatever
        the case.

        PostgreSQL answers from contact_search (contacts migration 0012, model
        ``ContactSearch``), a narrow copy of those columns that triggers keep in step, with one
        trigram index per column: the indexes stay off the contact rows that scoring and
        activity write all the time. Through the ORM the statement is the one the hand-written
        subquery sent (same plan, 0.37 ms); compiling the lookups costs 21.8 ms against 15.0 ms
        p50 for 50 ids (bench ``dashboard``, scale 0.1, interleaved, machine at load 18), about
        3 % of the search page's 236 ms p50 in the same run; on a quieter machine 3.2 ms
        against 2.5 ms, 0.5 % of the page's 156 ms.
        """
        words = text.split()
        if not words:
            return self
        if connections[self.db].vendor == "postgresql":
            found = ContactSearch.objects.using(self.db).filter(_every_word(words))
            return self.filter(pk__in=found.values("contact_id"))
        return self.filter(_every_word(words))

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
        """Prospects with no activity since ``before``, not erased yet (RETENTION_YEARS).

        A prospect is anyone who never was a client: every stage before client, SQLs
        included (a client never goes back, ``ALLOWED_TRANSITIONS``). No activity: no event
        of theirs (``last_activity_at``, which system events do not move) and no consent given
        since ``before``, and known since before it (``created_at``: a contact imported last
        month with an old last activity is not purged)."""
        stages = Contact.Stage.values
        prospects = stages[: stages.index(Contact.Stage.CLIENT)]
        quiet = Q(last_activity_at__lt=before) | Q(last_activity_at__isnull=True)
        no_consent = Q(consent_at__lt=before) | Q(consent_at__isnull=True)
        fresh = Q(erased_at__isnull=True, created_at__lt=before)
        return self.filter(quiet, no_consent, fresh, stage__in=prospects)

    def stage_counts(self) -> dict[str, int]:
        """Contacts per stage, every stage present (zero when empty), in funnel order."""
        # COUNT(*), not COUNT(id): PostgreSQL can count from the stage index alone.
        counts = dict(self.order_by().values_list("stage").annotate(n=Count("*")))
        return {stage: counts.get(stage, 0) for stage in Contact.Stage.values}


class FitGrade(models.TextChoices):
    """A contact's fit, best first (``scoring.fit`` gives it from the fit score)."""

    A = "A", _("A")
    B = "B", _("B")
    C = "C", _("C")
    D = "D", _("D")


class Contact(models.Model):
    FitGrade = FitGrade

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

    class EmailStatus(models.TextChoices):
        OK = "", _("Deliverable")
        HARD_BOUNCE = "hard_bounce", _("Hard bounce")
        SOFT_BOUNCES = "soft_bounces", _("Too many soft bounces")
        COMPLAINT = "complaint", _("Spam complaint")

    class LegalBasis(models.TextChoices):
        # GDPR article 6(1): why the contact's data may be processed for marketing.
        CONSENT = "consent", _("Consent")
        CONTRACT = "contract", _("Contract")
        LEGITIMATE_INTEREST = "legitimate_interest", _("Legitimate interest")
        LEGAL_OBLIGATION = "legal_obligation", _("Legal obligation")

    # Nullable: an anonymous suspect has no email. Stored trimmed; unique whatever the case.
    email = models.EmailField(_("email"), max_length=254, null=True, blank=True)
    first_name = models.CharField(_("first name"), max_length=100, blank=True)
    last_name = models.CharField(_("last name"), max_length=100, blank=True)
    company = models.CharField(_("company"), max_length=200, blank=True)
    phone = models.CharField(_("phone"), max_length=40, blank=True)
    job_title = models.CharField(_("job title"), max_length=150, blank=True)
    # Firmographics, for fit rules (scoring.fit). db_default: bulk SQL that leaves them out.
    country = models.CharField(_("country"), max_length=100, blank=True, default="", db_default="")
    industry = models.CharField(
        _("industry"), max_length=100, blank=True, default="", db_default=""
    )
    company_size = models.PositiveIntegerField(
        _("company size"), null=True, blank=True, help_text=_("Number of employees.")
    )
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
    # The first source the contact ever had (first touch), kept when ``source`` changes later
    # (an import, an edit): set once by ``contacts.changes.contacts_changed``.
    first_source = models.ForeignKey(
        LeadSource,
        verbose_name=_("first source"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # read through the contact, never searched by
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
    # Fit ("right person", beside the engagement score): the sum of the fit rules that hold
    # for the contact's fields and its grade; only scoring.fit writes them.
    fit_score = models.IntegerField(_("fit score"), default=0, db_default=0)
    fit_grade = models.CharField(
        _("fit grade"), max_length=1, choices=FitGrade.choices, default="D", db_default="D"
    )
    # Admin-defined fields (contacts.models.custom_fields): key → typed value. Only
    # contacts.custom_field_values checks what goes in.
    custom_fields = models.JSONField(
        _("custom fields"), default=dict, blank=True, db_default=models.Value("{}")
    )

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
    consent_basis = models.CharField(
        _("legal basis"),
        max_length=30,
        choices=LegalBasis.choices,
        blank=True,
        default="",
        db_default="",
    )
    # Legitimate interest (B2B prospecting) holds once the person was told of the processing
    # and of their right to object: the day they were (contacts.legal_basis).
    legitimate_interest_notice_on = models.DateField(
        _("informed on"),
        null=True,
        blank=True,
        help_text=_(
            "Legitimate interest: the day the person was told about this processing and their "
            "right to object."
        ),
    )
    # Consent to the tracking of email opens (the open pixel), apart from marketing consent:
    # when and where it was given; None: not given (or withdrawn).
    open_tracking_consent_at = models.DateTimeField(
        _("open tracking consented"), null=True, blank=True
    )
    open_tracking_consent_source = models.CharField(
        _("open tracking consent source"),
        max_length=200,
        blank=True,
        default="",
        db_default="",
        help_text=_("Where it was given, e.g. a form, a call, an import."),
    )
    do_not_email = models.BooleanField(_("do not email"), default=False)
    # Whether mail to the address still arrives (nurturing.bounces writes it, a person clears
    # it; a new email clears it too): a code, with when the state began and the mail
    # server's words. Anything but OK keeps marketing email from going.
    email_status = models.CharField(
        _("email status"),
        max_length=20,
        choices=EmailStatus.choices,
        blank=True,
        default=EmailStatus.OK,
        db_default=EmailStatus.OK,
    )
    email_status_at = models.DateTimeField(_("email status since"), null=True, blank=True)
    email_status_detail = models.CharField(
        _("email status detail"), max_length=300, blank=True, default="", db_default=""
    )
    # Sales must not phone them (the queue and the contact page say so); no effect on email.
    do_not_call = models.BooleanField(_("do not call"), default=False, db_default=False)

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
        if self.full_name or self.email:
            return self.full_name or self.email
        if self.external_id:  # a CRM's lead known by its id only
            return _("Contact %(external_id)s") % {"external_id": self.external_id}
        return _("Anonymous visitor #%(id)s") % {"id": self.pk}

    @property
    def is_anonymous(self) -> bool:
        """Known to nobody: no email and no external id. A contact a CRM knows by its id is
        someone (an imported lead), whom the stages may move like any other."""
        return not self.email and not self.external_id


def normalize_email(value: str | None) -> str | None:
    """Trim; blank becomes None (an anonymous contact). Case is kept, uniqueness ignores it."""
    if value is None:
        return None
    value = value.strip()
    return value or None
