"""The contacts app's models, one module per concern; imported from here."""

from __future__ import annotations

from collections.abc import Callable

from django.db import models

from contacts import reasons
from contacts.models.activities import Activity, EmailTemplate
from contacts.models.assignment import AssignmentRule
from contacts.models.audit import ContactAudit, Notification, SweepMark
from contacts.models.custom_fields import CustomField
from contacts.models.events import Event, EventDailyCount, EventQuerySet, EventRow, PendingEvent
from contacts.models.follow_ups import FollowUp, FollowUpQuerySet, NextStepFlag
from contacts.models.funnel import ALLOWED_TRANSITIONS, LOST_REASONS, StageChange, StageStay
from contacts.models.imports import ImportJob, ImportPlaceholder, ImportRowError, SavedMapping
from contacts.models.inbound import InboundDelivery, InboundSource
from contacts.models.intake import (
    AnonymousView,
    ApiKey,
    Consent,
    ContactMerge,
    Form,
    Suppression,
    Visitor,
    new_form_key,
)
from contacts.models.outcomes import ContactOutcome, DealEstimate
from contacts.models.people import (
    SEARCHED_COLUMNS,
    Contact,
    ContactQuerySet,
    FitGrade,
    LeadSource,
    LeadSourceAlias,
    LeadSourceCost,
    canonical_time_zone,
    lead_sources_by_key,
    normalize_email,
    source_costs,
    source_key,
    validate_time_zone,
)
from contacts.models.team import SalesRep, Team
from contacts.models.webhooks import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEventType,
    WebhookSubscription,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "Activity",
    "AnonymousView",
    "AssignmentRule",
    "ApiKey",
    "Consent",
    "Contact",
    "ContactAudit",
    "ContactMerge",
    "ContactOutcome",
    "DealEstimate",
    "ContactQuerySet",
    "CustomField",
    "EmailTemplate",
    "Event",
    "FitGrade",
    "EventDailyCount",
    "EventQuerySet",
    "EventRow",
    "FollowUp",
    "FollowUpQuerySet",
    "Form",
    "ImportJob",
    "ImportPlaceholder",
    "ImportRowError",
    "InboundDelivery",
    "InboundSource",
    "LOST_REASONS",
    "LeadSource",
    "LeadSourceAlias",
    "LeadSourceCost",
    "Notification",
    "NextStepFlag",
    "PendingEvent",
    "SEARCHED_COLUMNS",
    "SalesRep",
    "SavedMapping",
    "StageChange",
    "SweepMark",
    "StageStay",
    "Suppression",
    "Team",
    "Visitor",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEventType",
    "WebhookSubscription",
    "canonical_time_zone",
    "lead_sources_by_key",
    "new_form_key",
    "normalize_email",
    "source_costs",
    "source_key",
    "validate_time_zone",
]


def _field_label(name: object) -> str:
    try:
        return str(Contact._meta.get_field(str(name)).verbose_name).capitalize()
    except Exception:  # noqa: BLE001 (a field renamed since: its name is all there is)
        return str(name)


def _choice_label(choices: type[models.TextChoices]) -> Callable[[object], str]:
    return lambda code: str(choices(code).label) if code in choices.values else str(code)


reasons.LABELS.update(
    stage=_choice_label(Contact.Stage),
    event_type=_choice_label(Event.Type),
    outcome=_choice_label(StageChange.Outcome),
    field=_field_label,
    lost_reason=lambda code: str(dict(LOST_REASONS).get(str(code), code)),
)
