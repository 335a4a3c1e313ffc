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
4. mail from a mail system (a report, MAILER-DAEMON, postmaster) that none of the above read:
   kept for review (MTAs mark their bounces "auto-replied" too);
5. an auto-reply (RFC 3834 Auto-Submitted, X-Autoreply, "out of office"...): not a bounce,
   nothing to record;
6. anything else: kept for review, never guessed.

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

import binascii
import hashlib
import quopri
import re
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes
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
RECIPIENT_HEADERS = {"to", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to"}
DIAGNOSTIC_LENGTH = 500
_MAIL_SYSTEM_SENDERS = {"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"}

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


def read_mail(raw: bytes) -> Reading:
    """What the mail (its bytes as the mailbox holds them) says."""
    end = _END_OF_HEAD.search(raw)
    head_text = (raw[: end.start()] if end else raw).decode("utf-8", "replace")
    header_fields = _header_fields(head_text.split("\n"))
    head = Fields.of_pairs(header_fields)
    body = raw[end.end() :].decode("utf-8", "replace") if end else ""
    occurred_at = _date(head)
    reference = mail_reference(head, raw)
    content_type, parameters = _content_type_and_parameters(head)
    report_type = parameters.get("report-type", "").lower()
    full: Message | None = None
    report = None
    if content_type == "multipart/report":
        report = _report_parts(parameters.get("boundary", ""), body)
        if report is None:  # encoded parts, odd nesting: the email package reads it all
            full = message_from_bytes(raw)
            report = _report_parts_of(full)
    else:
        full = message_from_bytes(raw)
    original = report.original if report else _original_of(full)
    token = _token(header_fields, original, raw)
    if token is not None and not token[1]:
        return Reading(reference, review="forged VERP token", occurred_at=occurred_at)
    found = {
        "reference": reference,
        "message_id": token[0] if token else None,
        "enrollment_step": _enrollment_step(original, raw),
        "occurred_at": occurred_at,
    }
    if report is not None and report_type == "delivery-status" and len(report.status) > 1:
        return _read_dsn(report.status, found)
    if report is not None and report_type == "feedback-report":
        return _read_arf(report.feedback, original, found)
    return _read_other(full or message_from_bytes(raw), found)


# --- The three formats ------------------------------------------------------------------------


def _read_dsn(blocks: list[Fields], found: dict) -> Reading:
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


def _read_arf(report: Fields | None, original: Fields | None, found: dict) -> Reading:
    if report is None:
        return Reading(**found, review="feedback report without its report part")
    feedback_type = _field(report, "Feedback-Type").lower()
    if feedback_type not in COMPLAINT_FEEDBACK_TYPES:
        return Reading(**found, review=f"feedback report of type {feedback_type or '?'}")
    email = _address_field(report, "Original-Rcpt-To")
    if not email and original is not None:
        email = parseaddr(_field(original, "To"))[1]
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
    if _from_a_mail_system(mail):  # a bounce we cannot read is not an auto-reply
        return Reading(**found, review="bounce not understood")
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


# --- A report's parts -------------------------------------------------------------------------
#
# A report (RFC 6522 multipart/report) is read without the email package's full parse: the
# header section is parsed alone, the body split on its boundary, and the parts the reading
# needs (the delivery-status or feedback-report fields, the original's header section) parsed
# as header fields, decoded first when they are base64 or quoted-printable (which the email
# package does not do for message/* parts). 0.12 ms of CPU for the benchmark's DSN, where the
# email package's full parse then the same reading took 0.42 ms (bench/bounces_mailbox.py's
# DSN, 2,000 reads timed with time.process_time, 6 December, on the loaded 2-core benchmark
# machine). A report whose parts are not where RFC 6522 puts them is parsed in full instead.

_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")
_IDENTITY_ENCODINGS = {"", "7bit", "8bit", "binary"}


class Fields(dict[str, str]):
    """Header fields by lower-cased name: the first of each name, its folded lines joined."""

    def get(self, name: str, default: str = "") -> str:  # type: ignore[override]
        return super().get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    @classmethod
    def parse(cls, lines: list[str]) -> Fields:
        return cls.of_pairs(_header_fields(lines))

    @classmethod
    def of_pairs(cls, pairs: list[tuple[str, str]]) -> Fields:
        fields = cls()
        for name, value in pairs:
            fields.setdefault(name, value)
        return fields

    @classmethod
    def of(cls, message: Message) -> Fields:
        fields = cls()
        for label, value in message.items():
            fields.setdefault(label.lower(), " ".join(str(value).split()))
        return fields


def _header_fields(lines: list[str]) -> list[tuple[str, str]]:
    """Every field of a header section as (lower-cased name, value), folded lines joined."""
    pairs: list[tuple[str, str]] = []
    for line in lines:
        line = line.rstrip("\r")
        if line[:1] in (" ", "\t"):
            if pairs:
                pairs[-1] = (pairs[-1][0], f"{pairs[-1][1]} {line.strip()}")
            continue
        label, colon, value = line.partition(":")
        if colon and label.strip():
            pairs.append((label.strip().lower(), value.strip()))
    return pairs


_PARAMETER = re.compile(r';\s*([A-Za-z0-9_.*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')


def _content_type_and_parameters(fields: Fields) -> tuple[str, dict[str, str]]:
    value = fields.get("content-type", "text/plain")
    parameters = {
        name.lower(): raw.strip('"') for name, raw in _PARAMETER.findall(value)
    }  # fmt: skip
    return value.split(";", 1)[0].strip().lower(), parameters


@dataclass(slots=True)
class _Report:
    status: list[Fields]  # the delivery-status blocks (per message, then per recipient)
    feedback: Fields | None  # the feedback-report fields
    original: Fields | None  # the original message's header section


def _head_and_body(text: str) -> tuple[Fields, str]:
    return _split_part(text.split("\n"))


def _split_part(lines: list[str]) -> tuple[Fields, str]:
    """A part's header fields, and its body."""
    for index, line in enumerate(lines):
        if not line.strip():
            head = [ln.rstrip("\r") for ln in lines[:index]]
            return Fields.parse(head), "\n".join(lines[index + 1 :])
    return Fields.parse([ln.rstrip("\r") for ln in lines]), ""


def _multipart(body: str, boundary: str) -> list[list[str]]:
    """The lines of each part of a multipart body (RFC 2046 delimiter lines), without the
    preamble and the epilogue."""
    delimiter = f"--{boundary}"
    parts: list[list[str]] = []
    current: list[str] | None = None
    for line in body.split("\n"):
        if line.startswith(delimiter):
            rest = line[len(delimiter) :].rstrip("\r \t")
            if rest in ("", "--"):
                if current is not None:
                    parts.append(current)
                if rest == "--":
                    break
                current = []
                continue
        if current is not None:
            current.append(line)
    return parts


def _blocks(text: str) -> list[Fields]:
    """Groups of fields separated by blank lines (a delivery-status part)."""
    blocks, lines = [], []
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if line.strip():
            lines.append(line)
        elif lines:
            blocks.append(Fields.parse(lines))
            lines = []
    if lines:
        blocks.append(Fields.parse(lines))
    return blocks


def _content_type(fields: Fields) -> str:
    return _content_type_and_parameters(fields)[0]


def _report_parts(boundary: str, body: str) -> _Report | None:
    if not boundary:
        return None
    report = _Report([], None, None)
    for lines in _multipart(body, boundary):
        fields, content = _split_part(lines)
        kind = _content_type(fields)
        needed = kind in ("message/delivery-status", "message/feedback-report", "message/rfc822",
                          "text/rfc822-headers")  # fmt: skip
        if not needed:
            continue
        content = _decoded(content, fields.get("content-transfer-encoding").strip().lower())
        if content is None:
            return None
        if kind == "message/delivery-status":
            report.status = _blocks(content)
        elif kind == "message/feedback-report":
            report.feedback = _blocks(content)[0] if content.strip() else Fields()
        elif report.original is None:
            report.original = _head_and_body(content)[0]
    if not report.status and report.feedback is None:
        return None
    return report


def _decoded(content: str, encoding: str) -> str | None:
    """A part's text under its transfer encoding (None for an encoding we do not know)."""
    if encoding in _IDENTITY_ENCODINGS:
        return content
    if encoding == "base64":
        try:
            return binascii.a2b_base64(content.encode("ascii", "ignore")).decode("utf-8", "replace")
        except binascii.Error:
            return None
    if encoding == "quoted-printable":
        return quopri.decodestring(content.encode("ascii", "ignore")).decode("utf-8", "replace")
    return None


def _report_parts_of(mail: Message) -> _Report:
    """The same from a fully parsed mail."""
    report = _Report([], None, _original_of(mail))
    for part in mail.walk():
        kind = part.get_content_type()
        payload = part.get_payload()
        if kind == "message/delivery-status" and isinstance(payload, list):
            report.status = [Fields.of(block) for block in payload]
        elif kind == "message/feedback-report":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                report.feedback = _head_and_body(data.decode("utf-8", "replace").lstrip())[0]
            elif isinstance(payload, list) and payload:
                report.feedback = Fields.of(payload[0])
    return report


def _original_of(mail: Message | None) -> Fields | None:
    """The original message (message/rfc822) or its headers (text/rfc822-headers) in a mail;
    None when it has neither."""
    if mail is None:
        return None
    for part in mail.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return Fields.of(payload[0])
        elif kind == "text/rfc822-headers":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                return _head_and_body(data.decode("utf-8", "replace").lstrip())[0]
    return None


def _from_a_mail_system(head: Message) -> bool:
    """A report, or mail from a mail system's own address (MTAs mark their bounces
    auto-replied too, RFC 3834)."""
    if head.get_content_type() == "multipart/report":
        return True
    sender = parseaddr(str(head.get("From", "")))[1].split("@")[0].lower()
    return sender in _MAIL_SYSTEM_SENDERS


# --- Finding our message ----------------------------------------------------------------------


def _token(
    header_fields: list[tuple[str, str]], original: Fields | None, raw: bytes
) -> tuple[int, bool] | None:
    """The VERP token: the bounce's own recipient headers first, then the original's
    Return-Path (an ARF report goes to the feedback loop's address), then anywhere."""
    for name, value in header_fields:
        if name in RECIPIENT_HEADERS and (found := verp.read(value)):
            return found
    if original is not None and (found := verp.read(str(original.get("Return-Path", "")))):
        return found
    return verp.read(raw.decode("ascii", "replace"))


def _enrollment_step(original: Fields | None, raw: bytes) -> tuple[int, int] | None:
    text = str(original.get("Message-ID", "")) if original is not None else ""
    match = _OUR_MESSAGE_ID.search(text) or _OUR_MESSAGE_ID.search(raw.decode("ascii", "replace"))
    return (int(match[1]), int(match[2])) if match else None


def _field(block: Fields | Message, name: str) -> str:
    return " ".join(str(block.get(name, "")).split())


def _address_field(block: Fields | Message, name: str) -> str:
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


def mail_reference(mail: Fields | Message, raw: bytes) -> str:
    message_id = " ".join(str(mail.get("Message-ID", "")).split())
    return message_id[:200] if message_id else f"sha256:{hashlib.sha256(raw).hexdigest()}"


def _date(mail: Fields | Message) -> datetime | None:
    try:
        value = parsedate_to_datetime(str(mail.get("Date", "")))
    except (TypeError, ValueError, IndexError):
        return None
    return value if value.tzinfo is not None else None


def _text(address: bytes | str) -> str:
    return address.decode("utf-8", "replace") if isinstance(address, bytes) else address
