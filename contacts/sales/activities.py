"""Activities a rep logs on a lead (a note, a call, a meeting) and emails written to it from the
page. Each is an Activity row, an event on the timeline (``sales_note``, ``sales_call``…,
recorded through ``event_record`` so score rules and sequence goals see it) and an audit row,
in one transaction."""

from __future__ import annotations

import logging
import smtplib
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.utils import make_msgid, parseaddr
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from contacts import access
from contacts.access import Act
from contacts.events import event_record
from contacts.models import Activity, Contact, ContactAudit
from contacts.sales.email_templates import template_render, template_values

logger = logging.getLogger(__name__)

# A call logged a little "in the future" is a clock a minute off, not a plan.
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_DURATION_MINUTES = 24 * 60

AUDIT_ACTIONS = {
    Activity.Kind.NOTE: ContactAudit.Action.NOTE_ADDED,
    Activity.Kind.CALL: ContactAudit.Action.CALL_LOGGED,
    Activity.Kind.MEETING: ContactAudit.Action.MEETING_LOGGED,
    Activity.Kind.EMAIL: ContactAudit.Action.EMAIL_SENT,
}


class ActivityRefused(Exception):
    """An activity that cannot be logged (or an email that cannot go); the message says why."""


def may_log(contact: Contact, user: Any) -> bool:
    """Whether ``user`` may log activities on ``contact`` (which they can see): a claimed lead
    is its owner's to work, or their manager's or an admin's; an unclaimed one anyone's who sees
    it (``contacts.access``)."""
    return access.may(user, Act.LOG_ACTIVITY, contact)


def _refusal(contact: Contact, user: Any) -> str | None:
    if not Contact.objects.visible_to(user).filter(pk=contact.pk).exists():
        return _("This lead is no longer yours to see.")
    if contact.erased_at:
        return _("This contact's personal data was erased.")
    if not may_log(contact, user):
        return _("%(contact)s is another rep's lead.") % {"contact": contact.display_name}
    return None


def _check(
    *, kind: str, at: datetime, call_outcome: str, duration_minutes: int | None, body: str
) -> None:
    if kind not in Activity.Kind.values:
        raise ActivityRefused(_("Unknown kind of activity."))
    if at > timezone.now() + FUTURE_TOLERANCE:
        raise ActivityRefused(_("Log what already happened: this time is in the future."))
    if kind == Activity.Kind.CALL and call_outcome not in Activity.CallOutcome.values:
        raise ActivityRefused(_("Say how the call went."))
    if kind != Activity.Kind.CALL and call_outcome:
        raise ActivityRefused(_("Only a call has an outcome."))
    if duration_minutes is not None and not 0 <= duration_minutes <= MAX_DURATION_MINUTES:
        raise ActivityRefused(_("The duration is in minutes, at most a day."))
    if kind == Activity.Kind.NOTE and not body.strip():
        raise ActivityRefused(_("Write the note."))


@transaction.atomic
def activity_log(
    *,
    contact: Contact,
    user: Any,
    kind: str,
    at: datetime | None = None,
    call_outcome: str = "",
    duration_minutes: int | None = None,
    subject: str = "",
    body: str = "",
    sent_to: str = "",
    message_id: str = "",
) -> Activity:
    """Log what ``user`` did on ``contact``: the Activity, its timeline event and the audit
    row, or ``ActivityRefused`` and nothing written. ``at``: when it happened (now by default;
    a call or meeting may be logged afterwards, not ahead)."""
    now = timezone.now()
    at = at or now
    body, subject = body.strip(), subject.strip()
    _check(
        kind=kind, at=at, call_outcome=call_outcome, duration_minutes=duration_minutes, body=body
    )
    # Locked: a claim taken from the rep (release, reassignment) waits for this, or this for it.
    current = Contact.objects.select_for_update(of=("self",)).get(pk=contact.pk)
    refusal = _refusal(current, user)
    if refusal:
        raise ActivityRefused(refusal)
    activity = Activity.objects.create(
        contact=current, kind=kind, user=user, at=at, logged_at=now, call_outcome=call_outcome,
        duration_minutes=duration_minutes, subject=subject, body=body, sent_to=sent_to,
    )  # fmt: skip
    properties: dict[str, Any] = {"activity_id": activity.pk, "by": user.get_username()}
    if call_outcome:
        properties["outcome"] = call_outcome  # a score rule may ask for "outcome equals reached"
    if duration_minutes is not None:
        properties["duration_minutes"] = duration_minutes
    if message_id:
        properties["message_id"] = message_id
    activity.event, _created = event_record(
        contact=current, type=Activity.EVENT_TYPES[kind], occurred_at=at, properties=properties,
        source="sales", idempotency_key=f"activity:{activity.pk}",
    )  # fmt: skip
    activity.save(update_fields=["event"])
    ContactAudit.objects.create(
        contact=current, action=AUDIT_ACTIONS[kind], actor=user, owner=current.owner,
        note=subject if kind == Activity.Kind.EMAIL else "", at=now,
    )  # fmt: skip
    return activity


def email_refusal(contact: Contact) -> str | None:
    """Why no email may go to this lead from the page, or None."""
    if not contact.email:
        return _("This lead has no email address.")
    if contact.do_not_email:
        return _("This lead asked not to be emailed.")
    if contact.email_status:
        return _("No email goes to this address: %(status)s.") % {
            "status": contact.get_email_status_display()
        }
    return None


def email_from(user: Any) -> tuple[str, list[str]]:
    """The From and Reply-To of a rep's email. The rep's own address only when it is on the
    sending domain (DEFAULT_FROM_EMAIL's: DMARC would fail otherwise); else the sending
    address with the rep's name, and replies to the rep."""
    rep_name = user.get_full_name() or user.get_username()
    default_name, default_address = parseaddr(settings.DEFAULT_FROM_EMAIL)
    rep_address = (user.email or "").strip()
    if not rep_address:
        return settings.DEFAULT_FROM_EMAIL, []
    domain = default_address.rpartition("@")[2].lower()
    if rep_address.rpartition("@")[2].lower() == domain:
        return _address(rep_name, rep_address), []
    return _address(rep_name or default_name, default_address), [_address(rep_name, rep_address)]


def _address(name: str, address: str) -> str:
    return str(Address(display_name=name, addr_spec=address))


def activity_email_send(
    *,
    contact: Contact,
    user: Any,
    subject: str,
    body: str,
) -> Activity:
    """Send ``subject``/``body`` (placeholders filled with the lead's values) to the lead
    through the email backend, then log it (activity, event, audit). Refused, or not taken by
    the mail server: ``ActivityRefused`` and nothing logged.

    Not atomic around the send: the SMTP conversation must not hold the contact's row lock,
    and an email that went is logged even if it took seconds. If the log then fails, the
    email went unlogged (said in the log)."""
    subject, body = subject.strip(), body.strip()
    if not subject or not body:
        raise ActivityRefused(_("An email needs a subject and a text."))
    current = Contact.objects.select_related("owner").get(pk=contact.pk)
    refusal = _refusal(current, user) or email_refusal(current)
    if refusal:
        raise ActivityRefused(refusal)
    values = template_values(current, user)
    subject = " ".join(template_render(subject, values).split())  # no line breaks in a header
    body = template_render(body, values)
    from_email, reply_to = email_from(user)
    message_id = make_msgid(domain=parseaddr(from_email)[1].rpartition("@")[2] or None)
    message = EmailMessage(
        subject=subject, body=body, from_email=from_email, to=[current.email],
        reply_to=reply_to, headers={"Message-ID": message_id},
    )  # fmt: skip
    try:
        message.send(fail_silently=False)
    except (smtplib.SMTPException, OSError) as error:
        logger.warning("Email to contact %s not sent: %s", current.pk, error)
        raise ActivityRefused(
            _("The email could not be sent (the mail server did not take it: %(error)s).")
            % {"error": error.__class__.__name__}
        ) from error
    except Exception as error:  # an ESP backend's own errors (anymail): the same for the rep
        logger.exception("Email to contact %s not sent", current.pk)
        raise ActivityRefused(
            _("The email could not be sent (the mail server did not take it: %(error)s).")
            % {"error": error.__class__.__name__}
        ) from error
    try:
        return activity_log(
            contact=current, user=user, kind=Activity.Kind.EMAIL, subject=subject, body=body,
            sent_to=current.email or "", message_id=message_id,
        )  # fmt: skip
    except Exception:
        logger.exception("Email %s to contact %s went but was not logged", message_id, current.pk)
        raise
