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
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict
from datetime import datetime, timedelta
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
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from contacts import broker
from contacts.intake import tracking
from nurturing.bounces import Kind, Report, record_reports
from nurturing.models import EspReport

logger = logging.getLogger(__name__)

METADATA_KEY = "lf_message"
RECORD_TASK = "nurturing.tasks.record_esp_reports_task"
RECORD_BATCH = 1000
KICK = "leadfunnel:esp:kick"
KICK_MS = 1000
SWEEP_AFTER = 30.0


def metadata_for(message_pk: int) -> dict[str, str]:
    """What a message carries to its ESP (echoed back in tracking events)."""
    return {METADATA_KEY: str(message_pk)}


# --- Receipt: kept, then recorded by a worker -----------------------------------------------


def events_receive(events: Iterable[AnymailTrackingEvent], *, esp_name: str) -> int:
    """Keep what a webhook post's events say about addresses (one small commit, waiting for
    the disk: the service is told "received") and ask a worker to record it with everything
    else waiting (``esp_reports_record``). Returns how many reports were kept.

    Recording costs a few statements per call however few reports it gets, and Brevo, SES and
    Mailgun post one event at a time. Bench ``bounces`` (6 December, 1,000 events per ESP, a
    2-core machine under load average 12 to 18): recorded in the request, a post took 14.6 ms
    (Brevo) and 8.9 ms (Mailgun) of web CPU an event, 14.5 and 55.8 events/s end to end; kept,
    2.4 and 2.9 ms, 119 and 52 events/s with one worker recording meanwhile. Without a broker
    the reports are recorded in the request, as before: Redis down loses nothing. A task lost
    with a worker is made up for by beat's sweep (``esp_reports_sweep``)."""
    reports = reports_for(events, esp_name=esp_name)
    if not reports:
        return 0
    with transaction.atomic():
        EspReport.objects.bulk_create([EspReport(report=_stored(report)) for report in reports])
        transaction.on_commit(_kick, robust=True)
    return len(reports)


def _kick() -> None:
    """Ask a worker to record what is waiting, at most once a second while posts pour in (a
    Redis SET NX, as inbound webhooks do); without a broker, record it here and now."""
    if tracking.enabled() and not tracking.outage.ongoing():
        try:
            if not tracking.client().set(KICK, "1", nx=True, px=KICK_MS):
                return  # a worker was asked less than a second ago and takes these too
        except RedisError:
            tracking.outage.begin("ESP webhooks ask the broker for every post meanwhile")
    if not broker.send(RECORD_TASK):
        esp_reports_record()


def esp_reports_record() -> int:
    """Record every report waiting (the kicked task), a batch at a time; returns how many.
    Then it lets the next post ask again (drops the kick) and looks once more: a post that
    found the kick still set was committed before the drop, so this last look sees it."""
    recorded = _waiting_record()
    if tracking.enabled() and not tracking.outage.ongoing():
        try:
            tracking.client().delete(KICK)
        except RedisError:
            tracking.outage.begin("ESP webhooks ask the broker for every post meanwhile")
    return recorded + _waiting_record()


def esp_reports_sweep(*, older_than: float = SWEEP_AFTER) -> int:
    """Record the reports still waiting ``older_than`` seconds after they came (their task was
    lost with a worker); returns how many."""
    return _waiting_record(before=timezone.now() - timedelta(seconds=older_than))


def _waiting_record(*, before: datetime | None = None) -> int:
    total = 0
    while True:
        with transaction.atomic():
            waiting = EspReport.objects.select_for_update(skip_locked=True).order_by("pk")
            if before is not None:
                waiting = waiting.filter(received_at__lt=before)
            rows = list(waiting.values_list("pk", "report")[:RECORD_BATCH])
            if not rows:
                return total
            # Recorded twice (a worker died after recording, before the delete) changes
            # nothing: a report is recorded once per (source, reference).
            recorded = record_reports(_report(stored) for _, stored in rows)
            EspReport.objects.filter(pk__in=[pk for pk, _ in rows]).delete()
        for report in recorded.unmatched:
            logger.info("ESP report about an unknown address: %s %s", report.source, report.kind)
        total += len(rows)


def _stored(report: Report) -> dict[str, Any]:
    stored = asdict(report)
    stored["occurred_at"] = report.occurred_at.isoformat() if report.occurred_at else None
    return stored


def _report(stored: dict[str, Any]) -> Report:
    occurred_at = stored.get("occurred_at")
    return Report(**{**stored, "occurred_at": occurred_at and datetime.fromisoformat(occurred_at)})


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
