"""What a notification says, in the reader's language, and where it leads.

A Notification stores a kind, a contact, an audit row and ``params`` (codes, names, counts);
the sentence is written here when it is shown (the bell's page, the sales pages' notices, the
email digest), so a French reader reads French whatever language the worker spoke. Missing
or unknown params never break a page: the sentence falls back to what is known.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from contacts import reasons
from contacts.models import ContactAudit, Notification
from contacts.roles import MARKETING, user_roles

# Notes that only repeat what the sentence already says (who had the lead): not a "why".
_PLAIN_NOTES = {"released_from", "reassigned_from", "reassigned_from_queue", "claim_expired"}


@dataclass(frozen=True)
class Rendered:
    text: str
    url: str  # relative; "" when there is nothing to open
    at: datetime


def with_related(notifications: QuerySet[Notification]) -> QuerySet[Notification]:
    """What the sentences read, in one query."""
    return notifications.select_related("contact", "audit__contact", "audit__actor", "audit__owner")


def render(notification: Notification, *, reader: Any) -> Rendered:
    """The sentence (active language) and the link of ``notification`` for ``reader``."""
    writer = _WRITERS.get(notification.kind, _unknown)
    params = notification.params if isinstance(notification.params, dict) else {}
    text, url = writer(notification, params, reader)
    return Rendered(text=text, url=url, at=notification.created_at)


def _name(user: Any) -> str:
    if user is None:
        return ""
    return user.get_full_name() or user.get_username()


def _contact(notification: Notification) -> Any:
    contact = notification.contact
    if contact is None and notification.audit is not None:
        contact = notification.audit.contact
    return contact


def _contact_name(notification: Notification) -> str:
    contact = _contact(notification)
    return contact.display_name if contact is not None else _("a lead")


def _lead_url(notification: Notification, reader: Any) -> str:
    """The lead page for a rep, the contact page for whoever works on all contacts."""
    contact = _contact(notification)
    if contact is None:
        return ""
    if MARKETING in user_roles(reader):
        return reverse("contact-detail", args=[contact.pk])
    return reverse("queue-lead", args=[contact.pk])


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _note_params(stored: str) -> dict:
    _code, brace, rest = stored.partition("{")
    try:
        params = json.loads(brace + rest) if brace else {}
    except ValueError:
        return {}
    return params if isinstance(params, dict) else {}


def _why(audit: ContactAudit | None) -> str:
    """The audit note when it says something the sentence does not (an admin's reason)."""
    if audit is None or not audit.note or reasons.code(audit.note) in _PLAIN_NOTES:
        return ""
    return audit.note_text


def _taken(notification: Notification, params: dict, reader: Any) -> tuple[str, str]:
    audit = notification.audit
    values = {
        "contact": _contact_name(notification),
        "actor": _name(audit and audit.actor) or _("an administrator"),
        "owner": _name(audit and audit.owner) or _("another rep"),
        "hours": settings.CLAIM_RELEASE_HOURS,
    }
    action = audit.action if audit is not None else ""
    if action == ContactAudit.Action.EXPIRED:
        note = _note_params(audit.note) if audit is not None else {}
        values["hours"] = note.get("hours", values["hours"])
        text = (
            _("%(contact)s went back to the queue: no outcome within %(hours)s hours of the claim.")
            % values
        )
        return text, _lead_url(notification, reader)
    if action == ContactAudit.Action.REASSIGNED:
        text = _("%(contact)s was given to %(owner)s by %(actor)s.") % values
        url = ""  # no longer the reader's to open
    elif action == ContactAudit.Action.RELEASED:
        text = _("%(contact)s was released to the queue by %(actor)s.") % values
        url = _lead_url(notification, reader)
    else:
        text = _("%(contact)s was taken from you.") % values
        url = ""
    why = _why(audit)
    if why:
        text = _("%(text)s Reason: %(why)s") % {"text": text, "why": why}
    return text, url


def _new_sql(notification: Notification, params: dict, reader: Any) -> tuple[str, str]:
    count = max(_int(params.get("count"), 1), 1)
    if count == 1 and _contact(notification) is not None:
        text = _("%(contact)s is a new SQL in the queue.") % {
            "contact": _contact_name(notification)
        }
    else:
        text = ngettext(
            "%(count)s new SQL arrived in the queue.",
            "%(count)s new SQLs arrived in the queue.",
            count,
        ) % {"count": count}
    return text, reverse("queue")


def _sla_warning(notification: Notification, params: dict, reader: Any) -> tuple[str, str]:
    hours = max(_int(params.get("hours_left"), 1), 1)
    count = _int(params.get("count"), 1)
    if count > 1 or _contact(notification) is None:
        text = ngettext(
            "%(count)s SQLs waiting in the queue breach the SLA in less than %(hours)s hour "
            "if nobody claims them.",
            "%(count)s SQLs waiting in the queue breach the SLA in less than %(hours)s hours "
            "if nobody claims them.",
            hours,
        ) % {"count": max(count, 1), "hours": hours}
        return text, reverse("queue")
    text = ngettext(
        "%(contact)s is waiting in the queue: the SLA is breached in less than %(hours)s hour "
        "if nobody claims it.",
        "%(contact)s is waiting in the queue: the SLA is breached in less than %(hours)s hours "
        "if nobody claims it.",
        hours,
    ) % {"contact": _contact_name(notification), "hours": hours}
    return text, _lead_url(notification, reader)


def _assigned(notification: Notification, params: dict, reader: Any) -> tuple[str, str]:
    audit = notification.audit
    values = {"contact": _contact_name(notification), "actor": _name(audit and audit.actor)}
    if audit is not None and audit.action == ContactAudit.Action.REASSIGNED:
        values["why"] = audit.note_text
        if values["actor"] and values["why"]:
            text = _("%(actor)s gave you %(contact)s (%(why)s).")
        elif values["actor"]:
            text = _("%(actor)s gave you %(contact)s.")
        elif values["why"]:
            text = _("%(contact)s was given to you (%(why)s).")
        else:
            text = _("%(contact)s was given to you.")
        return text % values, _lead_url(notification, reader)
    rule = params.get("rule") or (audit.note_text if audit is not None else "")
    if rule:
        text = _("%(contact)s was assigned to you: %(rule)s.") % {**values, "rule": rule}
    else:
        text = _("%(contact)s was assigned to you.") % values
    return text, _lead_url(notification, reader)


def _hard_bounce(notification: Notification, params: dict, reader: Any) -> tuple[str, str]:
    values = {
        "contact": _contact_name(notification),
        "email": params.get("email") or "",
        "detail": params.get("detail") or "",
    }
    if values["email"] and values["detail"]:
        text = _("The email to %(contact)s bounced: %(email)s does not receive mail (%(detail)s).")
    elif values["email"]:
        text = _("The email to %(contact)s bounced: %(email)s does not receive mail.")
    else:
        text = _("The email to %(contact)s bounced: the address does not receive mail.")
    return text % values, _lead_url(notification, reader)


def _follow_up_due(notification: Notification, params: dict, reader: Any) -> tuple[str, str]:
    due = parse_datetime(str(params.get("due_at") or ""))
    values = {
        "contact": _contact_name(notification),
        "title": params.get("title") or _("a follow-up"),
        "due": formats.date_format(timezone.localtime(due), "DATETIME_FORMAT")
        if due is not None and timezone.is_aware(due)
        else "",
    }
    if _contact(notification) is not None:
        if values["due"]:
            text = _("Follow-up due %(due)s: %(title)s (%(contact)s).")
        else:
            text = _("Follow-up due: %(title)s (%(contact)s).")
    elif values["due"]:
        text = _("Follow-up due %(due)s: %(title)s.")
    else:
        text = _("Follow-up due: %(title)s.")
    return text % values, _lead_url(notification, reader)


def _no_next_step(notification: Notification, params: dict, reader: Any) -> tuple[str, str]:
    hours = _int(params.get("hours"), 0)
    values = {"contact": _contact_name(notification), "hours": hours}
    if hours > 0:
        text = ngettext(
            "%(contact)s has had no next step for %(hours)s hour.",
            "%(contact)s has had no next step for %(hours)s hours.",
            hours,
        )
    else:
        text = _("%(contact)s has no next step.")
    return text % values, _lead_url(notification, reader)


def _unknown(notification: Notification, params: dict, reader: Any) -> tuple[str, str]:
    label = str(dict(Notification.Kind.choices).get(notification.kind, _("Notification")))
    if _contact(notification) is not None:
        return f"{label}: {_contact_name(notification)}", _lead_url(notification, reader)
    return label, ""


_WRITERS = {
    Notification.Kind.TAKEN: _taken,
    Notification.Kind.NEW_SQL: _new_sql,
    Notification.Kind.SLA_WARNING: _sla_warning,
    Notification.Kind.ASSIGNED: _assigned,
    Notification.Kind.HARD_BOUNCE: _hard_bounce,
    Notification.Kind.FOLLOW_UP_DUE: _follow_up_due,
    Notification.Kind.NO_NEXT_STEP: _no_next_step,
}
