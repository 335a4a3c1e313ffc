"""What one mail in the bounce mailbox says: pure functions, no database (the reports they
make are recorded by ``nurturing.bounce_mailbox`` through ``nurturing.bounces``).

``read_mail`` reads a mail in this order and stops at the first that applies:

1. a delivery status notification (RFC 3464: ``multipart/report; report-type=delivery-status``):
   one failure per recipient block, classified by its Action and Status (table below);
2. a complaint (RFC 5965 ARF: ``report-type=feedback-report``, Feedback-Type abuse, fraud,
   virus or other); other feedback types (not-spam, auth-failure...) go to review;
3. any other bounce that flufl.bounce's detectors recognise (Exim and qmail without DSN,
   Postfix's plain text, Microsoft and Exchange formats...): their permanent failures are hard,
   their temporary ones soft;
4. an auto-reply (RFC 3834 Auto-Submitted, X-Autoreply, "out of office"...): not a bounce,
   nothing to record;
5. anything else: kept for review, never guessed.

Which message it is about, in order: the VERP token (``nurturing.verp``) in the To,
Delivered-To or X-Original-To of the bounce, or in the original's headers; then our Message-ID
(``rendering.message_id_header``) in the original message; the recipient last (the caller
matches it). A token whose signature is wrong sends the mail to review: someone made it.

Classification (RFC 3463 status codes; Action from RFC 3464):

============================  ==========  ==================================================
Action / status               kind        why
============================  ==========  ==================================================
delivered, relayed, expanded  (none)      a success notice: not a bounce
delayed (any status)          deferred    the server still tries: noted on the message only
failed, 5.x.x                 hard        the address or domain does not take mail
failed, 5.2.2 / 5.2.3         soft        mailbox full, message too large: the address lives
failed, 5.3.4, 5.4.7          soft        message too big for the system, delivery expired
failed, 5.6.x, 5.7.x          soft        refused for the message or the sender (content,
                                          policy, spam, authentication), not the address
failed, 4.x.x                 soft        a temporary failure the server gave up on
failed, no status, 5xx code   hard        (Diagnostic-Code's SMTP reply when Status is absent;
failed, no status, 552 / 4xx  soft        552 is "storage exceeded")
failed, nothing readable      review
============================  ==========  ==================================================
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, message_from_string
from email.message import Message
from email.utils import parseaddr, parsedate_to_datetime

from flufl.bounce import all_failures

from nurturing import verp
from nurturing.models import Bounce

HARD = Bounce.Kind.HARD.value
SOFT = Bounce.Kind.SOFT.value
DEFERRED = Bounce.Kind.DEFERRED.value
COMPLAINT = Bounce.Kind.COMPLAINT.value

# Hard-looking 5.x.x codes that say nothing about the address (see the table above).
SOFT_STATUSES = {"5.2.2", "5.2.3", "5.3.4", "5.4.7"}
SOFT_STATUS_CLASSES = ("5.6.", "5.7.")
COMPLAINT_FEEDBACK_TYPES = {"abuse", "fraud", "virus", "other"}
# The headers a bounce's VERP address may be found in (the MTA writes the envelope recipient).
RECIPIENT_HEADERS = ("To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")
DIAGNOSTIC_LENGTH = 500

_ENHANCED_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE = re.compile(r"(?<![\d.])([245])(\d\d)(?![\d.])")
_OUR_MESSAGE_ID = re.compile(r"<nurturing\.(\d{1,18})\.(\d{1,18})@[^<>\s]+>")
_AUTO_REPLY_SUBJECT = re.compile(
    r"out of (the )?office|automatic reply|auto.?reply|absence|abwesenheit|r[ée]ponse automatique"
    r"|vacation|away from",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Failure:
    """One recipient's fate, as the mail reports it."""

    kind: str  # HARD, SOFT, DEFERRED or COMPLAINT (Bounce.Kind values)
    email: str = ""
    status: str = ""
    diagnostic: str = ""


@dataclass(frozen=True, slots=True)
class Reading:
    """What one mail says. Exactly one of ``failures``, ``ignored`` and ``review`` is set."""

    reference: str  # the mail's own Message-ID, or a digest of its bytes: counted once
    failures: tuple[Failure, ...] = ()
    ignored: str = ""  # not a bounce (an auto-reply, a success notice): nothing to record
    review: str = ""  # why a person has to look at it
    message_id: int | None = None  # our Message's pk, from a VERP token with a right signature
    enrollment_step: tuple[int, int] | None = None  # from our Message-ID in the original
    occurred_at: datetime | None = None
    format: str = ""  # "dsn", "arf", "detector", "auto-reply"


def parse(raw: bytes) -> Message:
    return message_from_bytes(raw)


def read_mail(mail: Message, raw: bytes) -> Reading:
    reference = mail_reference(mail, raw)
    occurred_at = _date(mail)
    original = _original_headers(mail)
    token = _token(mail, original, raw)
    if token is not None and not token[1]:
        return Reading(reference, review="forged VERP token", occurred_at=occurred_at)
    found = {
        "reference": reference,
        "message_id": token[0] if token else None,
        "enrollment_step": _enrollment_step(original, raw),
        "occurred_at": occurred_at,
    }
    report_type = mail.get_param("report-type", "", header="content-type")
    if mail.get_content_type() == "multipart/report" and isinstance(report_type, str):
        if report_type.lower() == "delivery-status":
            return _read_dsn(mail, found)
        if report_type.lower() == "feedback-report":
            return _read_arf(mail, original, found)
    return _read_other(mail, found)


# --- The three formats ------------------------------------------------------------------------


def _read_dsn(mail: Message, found: dict) -> Reading:
    blocks = next(
        (
            part.get_payload()
            for part in mail.walk()
            if part.get_content_type() == "message/delivery-status"
        ),
        None,
    )
    if not isinstance(blocks, list) or len(blocks) < 2:
        return _read_other(mail, found)  # a report without its per-recipient fields
    failures = []
    unreadable = False
    for block in blocks[1:]:  # the first block is the per-message one (Reporting-MTA...)
        action = _field(block, "Action").lower()
        status = _status(_field(block, "Status"))
        diagnostic = _address_field(block, "Diagnostic-Code")
        kind = classify(action, status, diagnostic)
        if kind == "":
            continue
        if kind is None:
            unreadable = True
            continue
        email = _address_field(block, "Original-Recipient") or _address_field(
            block, "Final-Recipient"
        )
        status = status or _status_in(diagnostic)
        failures.append(Failure(kind, email, status, diagnostic[:DIAGNOSTIC_LENGTH]))
    if failures:
        return Reading(**found, failures=tuple(failures), format="dsn")
    if unreadable:
        return Reading(**found, review="delivery report without a readable status")
    return Reading(**found, ignored="delivery report of a success or relay", format="dsn")


def _read_arf(mail: Message, original: Message | None, found: dict) -> Reading:
    part = next((p for p in mail.walk() if p.get_content_type() == "message/feedback-report"), None)
    report = _fields_of(part) if part is not None else None
    if report is None:
        return Reading(**found, review="feedback report without its report part")
    feedback_type = _field(report, "Feedback-Type").lower()
    if feedback_type not in COMPLAINT_FEEDBACK_TYPES:
        return Reading(**found, review=f"feedback report of type {feedback_type or '?'}")
    email = _address_field(report, "Original-Rcpt-To")
    if not email and original is not None:
        email = parseaddr(str(original.get("To", "")))[1]
    diagnostic = " ".join(
        f"{name}: {_field(report, name)}" for name in ("Feedback-Type", "User-Agent", "Source-IP")
    )
    return Reading(
        **found, failures=(Failure(COMPLAINT, email, "", diagnostic[:DIAGNOSTIC_LENGTH]),),
        format="arf",
    )  # fmt: skip


def _read_other(mail: Message, found: dict) -> Reading:
    try:
        temporary, permanent = all_failures(mail)
    except Exception as error:  # a detector choking on odd mail: a person looks at it
        return Reading(**found, review=f"bounce detector error: {type(error).__name__}")
    diagnostic = _diagnostic_line(mail)
    status = _status_in(diagnostic)
    failures = [
        *(Failure(HARD, _text(address), status, diagnostic) for address in sorted(permanent)),
        *(Failure(SOFT, _text(address), status, diagnostic) for address in sorted(temporary)),
    ]
    if failures:
        return Reading(**found, failures=tuple(failures), format="detector")
    if is_auto_reply(mail):
        return Reading(**found, ignored="auto-reply", format="auto-reply")
    return Reading(**found, review="not recognised as a bounce")


# --- Classification ---------------------------------------------------------------------------


def classify(action: str, status: str, diagnostic: str = "") -> str | None:
    """A DSN recipient block's kind (the module's table): "" when it is no failure, None when
    it cannot be told."""
    if action in ("delivered", "relayed", "expanded"):
        return ""
    if action == "delayed":
        return DEFERRED
    if action != "failed":
        return None
    status = status or _status_in(diagnostic)
    if status.startswith("5."):
        return SOFT if status in SOFT_STATUSES or status.startswith(SOFT_STATUS_CLASSES) else HARD
    if status.startswith("4."):
        return SOFT
    code = _SMTP_CODE.search(diagnostic)
    if code is None:
        return None
    if code[1] == "5":
        return SOFT if code[0] == "552" else HARD
    return SOFT if code[1] == "4" else None


def is_auto_reply(mail: Message) -> bool:
    """RFC 3834 and the common vendor markers of vacation and out-of-office replies."""
    auto_submitted = str(mail.get("Auto-Submitted", "no")).strip().lower()
    precedence = str(mail.get("Precedence", "")).strip().lower()
    automatic = (
        auto_submitted != "no"
        or precedence in ("bulk", "junk", "list")
        or str(mail.get("X-Auto-Response-Suppress", "")).strip().lower() == "all"
    )
    return (
        auto_submitted.startswith("auto-replied")
        or precedence == "auto_reply"
        or any(name in mail for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"))
        or (automatic and bool(_AUTO_REPLY_SUBJECT.search(str(mail.get("Subject", "")))))
    )


# --- Finding our message ----------------------------------------------------------------------


def _token(mail: Message, original: Message | None, raw: bytes) -> tuple[int, bool] | None:
    """The VERP token: the bounce's own recipient headers first, then the original's
    Return-Path (an ARF report goes to the feedback loop's address), then anywhere."""
    for header in RECIPIENT_HEADERS:
        for value in mail.get_all(header, []):
            if found := verp.read(str(value)):
                return found
    if original is not None and (found := verp.read(str(original.get("Return-Path", "")))):
        return found
    return verp.read(raw.decode("ascii", "replace"))


def _enrollment_step(original: Message | None, raw: bytes) -> tuple[int, int] | None:
    text = str(original.get("Message-ID", "")) if original is not None else ""
    match = _OUR_MESSAGE_ID.search(text) or _OUR_MESSAGE_ID.search(raw.decode("ascii", "replace"))
    return (int(match[1]), int(match[2])) if match else None


def _original_headers(mail: Message) -> Message | None:
    """The original message (message/rfc822) or its headers (text/rfc822-headers) in a
    report; None when the mail has neither."""
    for part in mail.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return payload[0]
        elif kind == "text/rfc822-headers":
            return _fields_of(part)
    return None


# --- Fields -----------------------------------------------------------------------------------


def _fields_of(part: Message) -> Message | None:
    """A part whose body is header fields (RFC 822 headers, an ARF report), parsed as such."""
    payload = part.get_payload()
    if isinstance(payload, list):  # some parsers made it a message already
        return payload[0] if payload else None
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return None
    return message_from_string(data.decode("utf-8", "replace").lstrip())


def _field(block: Message, name: str) -> str:
    return " ".join(str(block.get(name, "")).split())


def _address_field(block: Message, name: str) -> str:
    """A typed field (``rfc822; someone@example.com``, ``smtp; 550 ...``) without its type."""
    value = _field(block, name)
    kind, separator, rest = value.partition(";")
    return (rest.strip() if separator and " " not in kind.strip() else value).strip("<> ")


def _status(value: str) -> str:
    match = _ENHANCED_STATUS.search(value)
    return ".".join(match.groups()) if match else ""


def _status_in(text: str) -> str:
    """An enhanced status in free text, else its SMTP reply code."""
    if status := _status(text):
        return status
    match = _SMTP_CODE.search(text)
    return match[0] if match else ""


def _diagnostic_line(mail: Message) -> str:
    """The first line of a text bounce that carries an SMTP reply: the server's words."""
    for part in mail.walk():
        if part.get_content_maintype() != "text":
            continue
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            continue
        for line in data.decode("utf-8", "replace").splitlines():
            if _SMTP_CODE.search(line) and len(line.strip()) > 8:
                return " ".join(line.split())[:DIAGNOSTIC_LENGTH]
    return ""


def mail_reference(mail: Message, raw: bytes) -> str:
    message_id = " ".join(str(mail.get("Message-ID", "")).split())
    return message_id[:200] if message_id else f"sha256:{hashlib.sha256(raw).hexdigest()}"


def _date(mail: Message) -> datetime | None:
    try:
        value = parsedate_to_datetime(str(mail.get("Date", "")))
    except (TypeError, ValueError, IndexError):
        return None
    return value if value.tzinfo is not None else None


def _text(address: bytes | str) -> str:
    return address.decode("utf-8", "replace") if isinstance(address, bytes) else address
