"""What recipients do with an email: open it, click a link, unsubscribe (signed-token links)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from contacts import legal_basis
from contacts.events import event_record
from contacts.machine_signals import is_machine_signal
from contacts.models import Contact, Event
from contacts.services import contact_update
from contacts.webhooks.outbox import webhooks_unsubscribed
from nurturing import rendering, safe_html
from nurturing.enrolment import enrollments_end
from nurturing.models import Enrollment, Message


def message_for_token(kind: str, token: str) -> tuple[Message, list[int]] | None:
    parts = rendering.read_token(kind, token)
    if parts is None or len(parts) < 2:
        return None
    message = (
        Message.objects.select_related("contact", "enrollment")
        .filter(enrollment_id=parts[0], step_id=parts[1], internal=False)
        .first()
    )
    return (message, parts) if message is not None else None


def _signal_properties(message: Message, user_agent: str, as_of: datetime) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "message_id": message.pk,
        "sequence_id": message.enrollment.sequence_id,
        "step_id": message.step_id,
        "user_agent": user_agent[:300],
    }
    if message.sent_at:
        properties["sent_at"] = message.sent_at.isoformat()
        properties["seconds_after_send"] = round((as_of - message.sent_at).total_seconds(), 1)
    properties["machine"] = is_machine_signal(properties)
    return properties


@transaction.atomic
def message_open(*, message: Message, user_agent: str = "") -> None:
    """Record an open, unless the contact's opens may not be tracked now (its consent to open
    tracking withdrawn since the email went, or the setting changed): then nothing is kept."""
    consented = message.contact.open_tracking_consent_at if message.contact else None
    if not legal_basis.open_tracking_allowed({"open_tracking_consent_at": consented}):
        return
    now = timezone.now()
    properties = _signal_properties(message, user_agent, now)
    if not properties["machine"]:
        Message.objects.filter(pk=message.pk, opened_at__isnull=True).update(opened_at=now)
    if message.contact_id:
        kind = "machine" if properties["machine"] else "person"
        event_record(
            contact=message.contact,
            type=Event.Type.EMAIL_OPEN,
            occurred_at=now,
            properties=properties,
            source="email",
            idempotency_key=f"email_open:{message.pk}:{kind}",
        )


@transaction.atomic
def message_click(*, message: Message, link: int, user_agent: str = "") -> str | None:
    """The stored URL of that link of that message (None if there is no such link)."""
    if not 0 <= link < len(message.links):
        return None
    url = message.links[link]
    if safe_html.unsafe_address(url):  # stored before links were checked: never followed
        return None
    now = timezone.now()
    properties = {**_signal_properties(message, user_agent, now), "url": url, "link": link}
    properties["machine"] = is_machine_signal(properties)
    if not properties["machine"]:
        # A click proves an open too (images are often blocked).
        Message.objects.filter(pk=message.pk, clicked_at__isnull=True).update(clicked_at=now)
        Message.objects.filter(pk=message.pk, opened_at__isnull=True).update(opened_at=now)
    if message.contact_id:
        kind = "machine" if properties["machine"] else "person"
        event_record(
            contact=message.contact, type=Event.Type.EMAIL_CLICK, occurred_at=now,
            properties=properties, source="email",
            idempotency_key=f"email_click:{message.pk}:{link}:{kind}",
        )  # fmt: skip
    return url


@transaction.atomic
def contact_unsubscribe(*, contact: Contact, message: Message | None = None) -> bool:
    """Do-not-email at once, every active enrolment ended and its unsent mail suppressed.
    Returns False if the contact had already unsubscribed."""
    contact = Contact.objects.select_for_update().get(pk=contact.pk)
    already = contact.do_not_email
    if not already:
        contact_update(contact=contact, do_not_email=True)
    enrollments_end(
        enrollments=Enrollment.objects.filter(contact=contact),
        status=Enrollment.Status.UNSUBSCRIBED,
        reason="unsubscribed",
    )
    Message.objects.filter(contact=contact, status=Message.Status.QUEUED, internal=False).update(
        status=Message.Status.SUPPRESSED, error="unsubscribed"
    )
    if not already:
        event_record(
            contact=contact,
            type=Event.Type.NEWSLETTER_UNSUBSCRIBE,
            properties={"message_id": message.pk if message else None, "via": "email link"},
            source="email",
            idempotency_key=f"unsubscribe:{contact.pk}:{message.pk if message else 'page'}",
        )
        webhooks_unsubscribed(contact, via="email link")
    return not already
