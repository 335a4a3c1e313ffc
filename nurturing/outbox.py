"""The messages a step writes to the outbox (a marketing email, a note to the contact's owner),
who may be sent marketing email, and an email's preview. Nothing here sends anything."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import override

from contacts.models import Contact
from nurturing import engine, rendering
from nurturing.models import Enrollment, Message, Sequence, Step

# Why a failing address gets no marketing email (reason codes, see nurturing.models.REASONS).
EMAIL_STATUS_REASONS = {
    Contact.EmailStatus.HARD_BOUNCE: "hard bounce",
    Contact.EmailStatus.SOFT_BOUNCES: "soft bounces",
    Contact.EmailStatus.COMPLAINT: "spam complaint",
}


def emailable(contact: dict[str, Any]) -> str:
    """Why marketing email may not go to this contact now ("" if it may)."""
    if not contact.get("email"):
        return "no email address"
    if contact.get("do_not_email"):
        return "do not email"
    if contact.get("email_status"):
        return EMAIL_STATUS_REASONS[contact["email_status"]]
    if contact.get("consent") == Contact.Consent.WITHDRAWN:
        return "consent withdrawn"
    if settings.NURTURING_REQUIRE_CONSENT and contact.get("consent") != Contact.Consent.GRANTED:
        return "no consent"
    return ""


def email_message(
    row: Enrollment,
    step: Step,
    contact: dict[str, Any],
    *,
    sequence: Sequence,
    as_of: datetime,
    tz: ZoneInfo,
) -> Message:
    """The email of ``step`` for ``row``'s contact (``contact``: its values, as the scheduler
    reads them), suppressed with the reason when it may not be sent."""
    context = rendering.contact_context(
        first_name=contact.get("first_name", ""),
        last_name=contact.get("last_name", ""),
        email=contact.get("email") or "",
        company=contact.get("company", ""),
        job_title=contact.get("job_title", ""),
        stage=Contact.Stage(contact["stage"]).label if contact.get("stage") else "",
        score=contact.get("score", 0),
        sequence=sequence.name,
        offer=row.offer,
        tz=tz,
    )
    rendered = rendering.render_email(
        rendering.EmailTemplates(step.subject, step.body_text, step.body_html),
        context,
        enrollment_id=row.pk,
        step_id=step.pk,
    )
    refused = emailable(contact)
    return Message(
        enrollment_id=row.pk,
        step=step,
        contact_id=row.contact_id,
        to=contact.get("email") or "",
        subject=rendered.subject[:300],
        body_text=rendered.body_text,
        body_html=rendered.body_html,
        links=rendered.links,
        message_id=rendering.message_id_header(row.pk, step.pk),
        status=Message.Status.SUPPRESSED if refused else Message.Status.QUEUED,
        error=refused,
        next_attempt_at=as_of,
        created_at=as_of,
    )


def owner_message(
    row: Enrollment, step: Step, contact: dict[str, Any], *, sequence: Sequence, as_of: datetime
) -> Message | None:
    """A note to the contact's owner that it reached ``step`` (None when it has no owner)."""
    if not contact.get("owner__email"):
        return None
    name = f"{contact.get('first_name', '')} {contact.get('last_name', '')}".strip()
    with override(settings.LANGUAGE_CODE):
        subject = _("%(contact)s: %(step)s (sequence “%(sequence)s”)") % {
            "contact": name or contact.get("email"), "step": step, "sequence": sequence.name,
        }  # fmt: skip
        body = _("%(contact)s reached the step “%(step)s” of “%(sequence)s”.\n\n%(url)s\n") % {
            "contact": name or contact.get("email"),
            "step": step,
            "sequence": sequence.name,
            "url": rendering.absolute(reverse("contact-detail", args=[row.contact_id])),
        }
    return Message(
        enrollment_id=row.pk, step=step, contact_id=row.contact_id, internal=True,
        to=contact["owner__email"], subject=subject[:300], body_text=body,
        message_id=rendering.message_id_header(row.pk, step.pk),
        next_attempt_at=as_of, created_at=as_of,
    )  # fmt: skip


def owner_bounce_message(
    *, contact: dict[str, Any], enrollment_id: int, bounce_id: int, detail: str, as_of: datetime
) -> Message | None:
    """A note to the contact's owner that email to the contact now bounces for good: in B2B
    that often means the person left the company (None when it has no owner). Filed with the
    enrolment of the email that bounced; no step."""
    if not contact.get("owner__email"):
        return None
    name = f"{contact.get('first_name', '')} {contact.get('last_name', '')}".strip()
    with override(settings.LANGUAGE_CODE):
        subject = _("%(contact)s: their email address no longer works") % {
            "contact": name or contact.get("email")
        }
        body = _(
            "Email to %(contact)s (%(email)s) bounced for good (%(detail)s): no marketing email "
            "goes to this address any more.\n\nThis person may have changed companies: check "
            "the address, or find who took over.\n\n%(url)s\n"
        ) % {
            "contact": name or contact.get("email"),
            "email": contact.get("email"),
            "detail": detail or "—",
            "url": rendering.absolute(reverse("contact-detail", args=[contact["pk"]])),
        }
    domain = settings.DEFAULT_FROM_EMAIL.rsplit("@", 1)[-1].strip(" >") or "localhost"
    return Message(
        enrollment_id=enrollment_id, step=None, contact_id=contact["pk"], internal=True,
        to=contact["owner__email"], subject=subject[:300], body_text=body,
        message_id=f"<nurturing.{enrollment_id}.bounce.{bounce_id}@{domain}>",
        next_attempt_at=as_of, created_at=as_of,
    )  # fmt: skip


def email_preview(*, step: Step, contact: Contact) -> rendering.Rendered:
    """The email of ``step`` as ``contact`` would get it now (a sample offer if it has one);
    nothing is stored or sent."""
    now = timezone.now()
    offer = {}
    if step.offer_percent and step.offer_valid_hours:
        offer = {
            "code": engine.offer_code(step.offer_code, 0, step.pk),
            "percent": step.offer_percent,
            "expires_at": (now + timedelta(hours=step.offer_valid_hours)).isoformat(),
        }
    context = rendering.contact_context(
        first_name=contact.first_name, last_name=contact.last_name, email=contact.email or "",
        company=contact.company, job_title=contact.job_title,
        stage=contact.get_stage_display(), score=contact.score, sequence=step.sequence.name,
        offer=offer,
    )  # fmt: skip
    return rendering.render_email(
        rendering.EmailTemplates(step.subject, step.body_text, step.body_html),
        context,
        enrollment_id=0,
        step_id=step.pk,
        tracking=False,
    )
