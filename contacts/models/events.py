"""The timeline: events, the queue of events waiting for the handlers, daily counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from contacts.models.people import Contact


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
        EMAIL_BOUNCED = "email_bounced", _("Email bounced")
        EMAIL_COMPLAINT = "email_complaint", _("Spam complaint")
        DEMO_REQUEST = "demo_request", _("Demo requested")
        TRIAL_STARTED = "trial_started", _("Trial started")
        PURCHASE = "purchase", _("Purchase")
        REFERRAL = "referral", _("Referral")
        REVIEW = "review", _("Review")
        STAGE_CHANGED = "stage_changed", _("Stage changed")
        CUSTOM = "custom", _("Custom")
        SALES_NOTE = "sales_note", _("Note by a rep")
        SALES_CALL = "sales_call", _("Call by a rep")
        SALES_MEETING = "sales_meeting", _("Meeting with a rep")
        SALES_EMAIL = "sales_email", _("Email from a rep")

    # What a rep did on a lead (``contacts.models.Activity``, each with its event).
    SALES_TYPES = frozenset(
        {Type.SALES_NOTE, Type.SALES_CALL, Type.SALES_MEETING, Type.SALES_EMAIL}
    )
    # Recorded by the system, or by a rep, about a contact, not done by the contact: not
    # "activity" (last activity, decay, touchpoints), and not for the API to send.
    SYSTEM_TYPES = frozenset({Type.STAGE_CHANGED}) | SALES_TYPES

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

    # No database constraint, measured: with it, `make bench BENCH=ingest` stored 437 events/s
    # against 14,286 without (the same sitting, 6 December 2026, a quiet 2-core machine): each
    # API commit of 1,000 events took about 0.8 s, all of it in the constraint's checks. Not
    # the check itself (the same CTE in psql checks 32,000 rows at 6 µs each): something in the
    # API's path with the worker running, not found yet. The ORM cascades here when an event is
    # deleted; a row whose event was deleted around the ORM is dropped by the sweep
    # (``contacts.pipeline.events_sweep``).
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
