"""What happens to contacts, written as webhook deliveries for the subscriptions that want it.

Called where it happens (``contacts.changes`` for contacts created, ``contacts.stages`` for
every stage move, ``contacts.outcomes`` for outcomes, ``webhooks_unsubscribed`` from the
unsubscribe link), in the caller's transaction: the deliveries are rows written with the change
itself, so a rolled-back change sends nothing, and a committed one is sent even when the broker
is down at that moment (the beat sweep finds due rows). After commit a send task is kicked.

The body is fixed when the delivery is written (the contact as it was then) and sent as the same
bytes on every try, with the same ``webhook-id``.

Imports: a subscription gets what an import does (contacts it creates, the leads they become,
the outcomes of a "Converted" column) only with ``include_imports``; a 9,000-row file would
otherwise post 9,000 messages to a Slack channel. With it, they are ordinary deliveries (sent at
the rate of the ``webhooks`` benchmark).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from contacts import broker
from contacts.models import (
    Contact,
    ContactOutcome,
    StageChange,
    WebhookDelivery,
    WebhookEventType,
    WebhookSubscription,
)

EventType = WebhookEventType
# Sent by name: the tasks module imports the services, never the other way round.
SEND_TASK = "contacts.tasks.send_webhooks_task"

CONTACT_VALUES = (
    "pk", "email", "external_id", "first_name", "last_name", "company", "job_title", "country",
    "stage", "score", "fit_score", "fit_grade", "source__slug", "source__name", "utm_source",
    "utm_medium", "utm_campaign", "do_not_email", "created_at",
)  # fmt: skip


def webhooks_contacts_created(contact_ids: Sequence[int], *, imported: bool = False) -> int:
    """``contact.created`` for new contacts."""
    return _queue(EventType.CONTACT_CREATED, [(pk, {}, imported) for pk in contact_ids])


def webhooks_stages_entered(changes: Iterable[StageChange]) -> int:
    """``contact.stage_entered`` for saved stage changes (``stage`` is the stage entered:
    subscriptions may want only some stages)."""
    return _queue(
        EventType.STAGE_ENTERED,
        (
            (
                change.contact_id,
                {
                    "stage": change.to_stage,
                    "from_stage": change.from_stage,
                    "cause": change.cause,
                    "outcome": change.outcome,
                    "stage_change_id": change.pk,
                    "at": change.at,
                },
                change.cause == StageChange.Cause.IMPORT,
            )
            for change in changes
        ),
    )


def webhooks_outcome_recorded(outcome: ContactOutcome) -> int:
    return webhooks_outcomes_recorded([outcome])


def webhooks_outcomes_recorded(outcomes: Iterable[ContactOutcome]) -> int:
    """Outcomes written one by one (sales, the API, admin) or by an import's batch."""
    return _queue(
        EventType.OUTCOME_RECORDED,
        (
            (outcome.contact_id,
             {"result": outcome.result, "at": outcome.at, "recorded_from": outcome.source,
              **_deal(outcome)},
             outcome.source == ContactOutcome.Source.IMPORT)
            for outcome in outcomes
        ),
    )  # fmt: skip


def _deal(outcome: ContactOutcome) -> dict[str, Any]:
    """A won deal's amount (a decimal string), currency and product, when known."""
    if outcome.amount is None:
        return {}
    return {"amount": str(outcome.amount), "currency": outcome.currency, "product": outcome.product}


def webhooks_unsubscribed(contact: Contact, *, via: str) -> int:
    return _queue(EventType.UNSUBSCRIBED, [(contact.pk, {"via": via}, False)])


def kick_send() -> None:
    """Queue a send task (the seam a test or benchmark replaces to send in its own time)."""
    broker.send(SEND_TASK)


# --- Writing the deliveries -------------------------------------------------------------------


def _queue(event_type: str, items: Iterable[tuple[int, dict[str, Any], bool]]) -> int:
    """Write one delivery per (item, subscription that wants it); returns how many. An item is
    a contact id, what the event adds to the payload, and whether an import did it."""
    subscriptions = [
        subscription
        for subscription in WebhookSubscription.objects.filter(active=True)
        if event_type in subscription.event_types
    ]
    if not subscriptions:
        return 0  # the usual case: one query, and the items are never built
    items = list(items)
    now = timezone.now()
    contacts = _contacts({item[0] for item in items})
    deliveries = []
    for contact_id, data, imported in items:
        contact = contacts.get(contact_id)
        if contact is None:
            continue
        stage = data.get("stage", "")
        wanting = [s for s in subscriptions if s.wants(event_type, stage=stage, imported=imported)]
        if not wanting:
            continue
        body = _body(event_type, now, contact, data)
        deliveries.extend(
            WebhookDelivery(
                subscription=subscription, event_type=event_type, contact_id=contact_id,
                body=body, next_attempt_at=now, created_at=now,
            )
            for subscription in wanting
        )  # fmt: skip
    if not deliveries:
        return 0
    WebhookDelivery.objects.bulk_create(deliveries, batch_size=1000)
    transaction.on_commit(kick_send, robust=True)
    return len(deliveries)


def _contacts(ids: set[int]) -> dict[int, dict[str, Any]]:
    return {
        values["pk"]: values
        for values in Contact.objects.filter(pk__in=ids).order_by().values(*CONTACT_VALUES)
    }


def contact_data(values: dict[str, Any]) -> dict[str, Any]:
    """The contact as every payload carries it (documented in the README)."""
    source = (
        {"slug": values["source__slug"], "name": values["source__name"]}
        if values["source__slug"]
        else None
    )
    return {
        "id": values["pk"],
        "email": values["email"],
        "external_id": values["external_id"],
        "first_name": values["first_name"],
        "last_name": values["last_name"],
        "company": values["company"],
        "job_title": values["job_title"],
        "country": values["country"],
        "stage": values["stage"],
        "score": values["score"],
        "fit_score": values["fit_score"],
        "fit_grade": values["fit_grade"],
        "source": source,
        "utm_source": values["utm_source"],
        "utm_medium": values["utm_medium"],
        "utm_campaign": values["utm_campaign"],
        "do_not_email": values["do_not_email"],
        "created_at": values["created_at"],
        "url": settings.SITE_URL.rstrip("/") + reverse("contact-detail", args=[values["pk"]]),
    }


def _body(event_type: str, at: datetime, contact: dict[str, Any], data: dict[str, Any]) -> str:
    payload = {
        "type": event_type,
        "timestamp": at,
        "data": {"contact": contact_data(contact), **data},
    }
    return json.dumps(payload, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":"))
