"""Email service providers (ESPs) through django-anymail: what their tracking events say about
an address, and what their API's errors mean for a message being sent.

An ESP's webhook posts delivery events that anymail normalises (``AnymailTrackingEvent``).
``reports_for`` turns those that say something about the address into bounce reports for
``nurturing.bounces``: bounced (hard or soft), deferred, complained, unsubscribed and rejected.
The others (delivered, opened, clicked...: our own tracking counts opens and clicks) are
ignored. Anymail's "bounced" covers soft bounces too for some ESPs, so hard or soft comes from
the ESP's own words where it has them (``_SOFT``), else from the status in the receiving
server's answer (4.x.x or 4xx: soft), else hard.

Each message carries its pk in anymail's ``metadata`` (``METADATA_KEY``), which ESPs echo back
in their events: a report finds its message by it, else its contact by address.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from typing import Any

from anymail.exceptions import (
    AnymailError,
    AnymailInvalidAddress,
    AnymailRecipientsRefused,
    AnymailSerializationError,
    AnymailUnsupportedFeature,
)
from anymail.signals import AnymailTrackingEvent, EventType, RejectReason
from django.core.exceptions import ImproperlyConfigured

from nurturing.bounces import Kind, Recorded, Report, record_reports

METADATA_KEY = "lf_message"


def metadata_for(message_pk: int) -> dict[str, str]:
    """What a message carries to its ESP (echoed back in tracking events)."""
    return {METADATA_KEY: str(message_pk)}


def events_record(events: Iterable[AnymailTrackingEvent], *, esp_name: str) -> Recorded:
    """Record what a webhook post's events say about addresses, in one batch."""
    return record_reports(reports_for(events, esp_name=esp_name))


# --- Tracking events -> bounce reports ------------------------------------------------------


def reports_for(events: Iterable[AnymailTrackingEvent], *, esp_name: str) -> list[Report]:
    return [report for event in events if (report := report_for(event, esp_name=esp_name))]


def report_for(event: AnymailTrackingEvent, *, esp_name: str) -> Report | None:
    kind = _kind(event, esp_name)
    recipient = (event.recipient or "").strip()
    if kind is None or not recipient:
        return None
    response = str(event.mta_response or "")
    return Report(
        kind=kind,
        email=recipient,
        message_id=_message_pk(event.metadata),
        status=_status(event, esp_name, response),
        diagnostic=" ".join(str(part) for part in (event.description, response) if part)[:2000],
        source=f"esp:{_esp_key(esp_name).replace(' ', '_')}",
        reference=_reference(event, esp_name, recipient),
        occurred_at=event.timestamp,
    )


# A rejection: the ESP would not send to the address (its own suppression list, mostly).
_REJECTED = {
    RejectReason.BOUNCED: Kind.HARD,
    RejectReason.INVALID: Kind.HARD,
    RejectReason.UNSUBSCRIBED: Kind.UNSUBSCRIBED,
    RejectReason.SPAM: Kind.COMPLAINT,  # the recipient complained before (SendGrid, Mandrill)
}

# Rejections anymail calls "other" that say the recipient complained before.
_COMPLAINED_BEFORE = {("sendgrid", "spam reporting address")}


def _kind(event: AnymailTrackingEvent, esp_name: str) -> str | None:
    match event.event_type:
        case EventType.BOUNCED:
            return Kind.SOFT if _soft(event, esp_name) else Kind.HARD
        case EventType.DEFERRED:
            return Kind.DEFERRED
        case EventType.COMPLAINED:
            return Kind.COMPLAINT
        case EventType.UNSUBSCRIBED:
            return Kind.UNSUBSCRIBED
        case EventType.REJECTED:
            reason = str(_esp_event(event).get("reason") or "").lower()
            if (_esp_key(esp_name), reason) in _COMPLAINED_BEFORE:
                return Kind.COMPLAINT
            # Blocked, timed out, other: counted as soft, a repeated one suppresses.
            return _REJECTED.get(event.reject_reason, Kind.SOFT)
    return None


def _esp_event(event: AnymailTrackingEvent) -> dict[str, Any]:
    return event.esp_event if isinstance(event.esp_event, dict) else {}


# The ESPs whose "bounced" events include soft bounces, and how their own payload says so.
# (Mailgun's temporary failures and Postmark's Transient ones are "deferred" in anymail.)
_SOFT: dict[str, Callable[[dict[str, Any]], bool]] = {
    "brevo": lambda payload: payload.get("event") == "soft_bounce",
    "sendinblue": lambda payload: payload.get("event") == "soft_bounce",
    "mandrill": lambda payload: payload.get("event") == "soft_bounce",
    "sendgrid": lambda payload: payload.get("type") == "blocked",
    "postmark": lambda payload: payload.get("Type") in ("SoftBounce", "VirusNotification"),
    "amazon ses": lambda payload: (
        (payload.get("bounce") or {}).get("bounceType") in ("Transient", "Undetermined")
    ),
}


def _soft(event: AnymailTrackingEvent, esp_name: str) -> bool:
    said = _SOFT.get(_esp_key(esp_name))
    if said is not None:  # the ESP's word wins over the server's code it quotes
        return said(_esp_event(event))
    return _status(event, esp_name, str(event.mta_response or "")).startswith("4")


_ENHANCED_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_SMTP_CODE = re.compile(r"\b([245]\d\d)\b")


def _status(event: AnymailTrackingEvent, esp_name: str, response: str) -> str:
    """The enhanced status (RFC 3463) in the server's answer, else its SMTP code."""
    if match := _ENHANCED_STATUS.search(response):
        return match.group(1)
    if _esp_key(esp_name) == "mailgun":
        data = _esp_event(event).get("event-data") or {}
        code = (data.get("delivery-status") or {}).get("code") if isinstance(data, dict) else None
        if isinstance(code, int):
            return str(code)
    if match := _SMTP_CODE.search(response):
        return match.group(1)
    return ""


def _message_pk(metadata: Any) -> int | None:
    value = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    text = str(value).strip() if value is not None else ""
    return int(text) if text.isdigit() and len(text) < 19 else None


def _reference(event: AnymailTrackingEvent, esp_name: str, recipient: str) -> str:
    """The ESP's id of the event (one SES notification covers each of its recipients), or for
    ESPs without one (Brevo) a fingerprint of what makes the event: the same post sent twice
    counts once, two bounces of one message at different times count twice."""
    if event.event_id:
        reference = f"{event.event_id}/{recipient.lower()}"
        if len(reference) <= 200:
            return reference
    parts = (
        _esp_key(esp_name), str(event.event_type), str(event.event_id or ""),
        str(event.message_id or ""), recipient.lower(),
        event.timestamp.isoformat() if event.timestamp else "", str(event.mta_response or ""),
    )  # fmt: skip
    return "sha256:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _esp_key(esp_name: str) -> str:
    return esp_name.strip().lower()


# --- Sending: an ESP API's errors -----------------------------------------------------------

# Answers that refuse the message for now (authentication is a setting a person will fix).
_TEMPORARY_STATUSES = {401, 403, 408, 425, 429, 503}


def refusal(error: Exception) -> bool | None:
    """Whether an ESP backend's error is the ESP refusing the message for good (True), for now
    (False), or no refusal at all (None): no answer, or a server error, after which the ESP may
    have the message (it stays in doubt)."""
    if isinstance(error, ImproperlyConfigured):  # a missing API key: nothing went
        return False
    if not isinstance(error, AnymailError):
        return None
    if isinstance(
        error,
        AnymailRecipientsRefused
        | AnymailInvalidAddress
        | AnymailUnsupportedFeature
        | AnymailSerializationError,
    ):
        return True  # refused in the ESP's answer, or found before anything went
    status = getattr(error, "status_code", None)
    if status is None:
        return False if _never_connected(error) else None
    if status in _TEMPORARY_STATUSES:
        return False
    if 400 <= status < 500:
        return True
    return None


def _never_connected(error: BaseException) -> bool:
    """Whether the request never reached the ESP (no connection was made)."""
    from requests.exceptions import ConnectTimeout
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    seen: set[int] = set()
    pending: list[Any] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectTimeout | ConnectTimeoutError | NewConnectionError):
            return True
        if isinstance(current, BaseException):
            pending.extend([current.__cause__, current.__context__, *current.args])
            pending.append(getattr(current, "reason", None))
    return False
