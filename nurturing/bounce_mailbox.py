"""Reading the bounce mailbox over IMAP, a batch at a time, and recording what it says.

A pass (``bounce_mailbox_read``, beat every NURTURING_BOUNCE_MAILBOX_SECONDS) logs in with
imap-tools, lists the folder's mail, and for each batch: fetches it in one command (nothing is
marked seen), reads each mail (``nurturing.bounce_mail``), finds our messages named by
Message-ID in one query, records the reports through ``nurturing.bounces.record_reports``, keeps
the rest as ``UnmatchedMail`` rows, and only then changes the mailbox:

- recorded (or already recorded) mail, auto-replies and success notices are deleted;
- mail kept for review is moved to NURTURING_BOUNCE_REVIEW_FOLDER (created when missing), so
  that the next pass does not read it again and a person can still open it with a mail client.

A crash at any point loses nothing: the mailbox changes last, and a mail read twice counts
once (reports by their reference, the mail's Message-ID and the recipient; review rows by a
digest of the mail's bytes).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as EmailMessage
from email.parser import BytesHeaderParser
from functools import cached_property
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from imap_tools import AND, BaseMailBox, MailBox, MailBoxStartTls, MailBoxUnencrypted
from imap_tools.message import MailMessage

from nurturing import bounce_mail
from nurturing.bounce_mail import Reading
from nurturing.bounces import Report, record_reports
from nurturing.models import Message, UnmatchedMail

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
# A pass takes no new batch after this long (the next pass goes on), so that passes seldom
# overlap with beat's default period of 60 s; if they do, what both read counts once.
BUDGET_SECONDS = 45.0
IMAP_TIMEOUT = 60
SOURCE = "mailbox"
KEPT_HEADERS = (
    "From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "Delivered-To",
    "X-Original-To", "Return-Path", "Auto-Submitted", "Content-Type", "X-Failed-Recipients",
)  # fmt: skip


@dataclass
class Pass:
    read: int = 0
    recorded: int = 0
    duplicates: int = 0
    ignored: int = 0
    kept: int = 0


@dataclass
class _Mail:
    uid: str
    raw: bytes
    reading: Reading | None = None
    review: str = ""
    unmatched: list[Report] = field(default_factory=list)


def bounce_mailbox_read(
    *, url: str = "", batch_size: int = BATCH_SIZE, budget: float = BUDGET_SECONDS
) -> dict[str, int]:
    """Read the bounce mailbox (NURTURING_BOUNCE_MAILBOX_URL when ``url`` is empty) until it is
    empty or ``budget`` seconds have gone. Returns what the pass did."""
    url = url or settings.NURTURING_BOUNCE_MAILBOX_URL
    if not url:
        return {}
    started = time.monotonic()
    done = Pass()
    with connect(url) as mailbox:
        uids = list(mailbox.uids(AND(deleted=False)))
        for start in range(0, len(uids), batch_size):
            if time.monotonic() - started > budget:
                break
            fetched = mailbox.fetch(
                uid_list=uids[start : start + batch_size], mark_seen=False, bulk=True
            )
            mails = [_Mail(mail.uid or "", mail.raw) for mail in fetched]
            finished, kept = mails_process(mails, done)
            # Only now, with everything recorded and committed, does the mailbox change.
            if finished:
                mailbox.delete(finished)
            if kept:
                _move_to_review(mailbox, kept)
    logger.info("bounce mailbox: %s", done)
    return done.__dict__


def mails_process(mails: Sequence[_Mail], done: Pass) -> tuple[list[str], list[str]]:
    """Read, record and keep a batch of mails; returns the uids to delete and to move to
    review. Everything is committed when it returns."""
    reports: list[Report] = []
    owner: dict[str, _Mail] = {}
    for mail in mails:
        try:
            mail.reading = bounce_mail.read_mail(mail.raw)
        except Exception as error:  # a mail no reader expected: a person looks at it
            logger.exception("bounce mailbox: unreadable mail %s", mail.uid)
            mail.review = f"unreadable: {type(error).__name__}"
        else:
            mail.review = mail.reading.review
    message_ids = _our_messages([mail.reading for mail in mails if mail.reading])
    for mail in mails:
        reading = mail.reading
        if reading is None or not reading.failures:
            continue
        message_id = reading.message_id or message_ids.get(reading.enrollment_step)
        for failure in reading.failures:
            reference = _report_reference(reading.reference, failure.email)
            # Feedback loops redact the complainer's address (Yahoo, AOL): the message says it.
            redacted = reading.format == "arf" and message_id is not None
            report = Report(
                kind=failure.kind,
                email="" if redacted else failure.email,
                message_id=message_id,
                status=failure.status,
                diagnostic=failure.diagnostic,
                source=SOURCE,
                reference=reference,
                occurred_at=reading.occurred_at,
            )
            reports.append(report)
            owner[reference] = mail
    if reports:
        recorded = record_reports(reports)
        done.recorded += recorded.recorded
        done.duplicates += recorded.duplicates
        for report in recorded.unmatched:
            mail = owner[report.reference]
            mail.unmatched.append(report)
            mail.review = "matches no message or contact"
    kept = [mail for mail in mails if mail.review]
    UnmatchedMail.objects.bulk_create([_unmatched(mail) for mail in kept], ignore_conflicts=True)
    done.read += len(mails)
    done.kept += len(kept)
    done.ignored += sum(1 for mail in mails if mail.reading and mail.reading.ignored)
    return [mail.uid for mail in mails if not mail.review], [mail.uid for mail in kept]


def _our_messages(readings: list[Reading]) -> dict[tuple[int, int] | None, int]:
    """Our Message pks for the (enrolment, step) pairs the mails' Message-IDs name, in one
    query (a Message is unique per enrolment and step)."""
    pairs = {r.enrollment_step for r in readings if r.enrollment_step and not r.message_id}
    if not pairs:
        return {}
    rows = Message.objects.filter(
        enrollment_id__in={enrollment for enrollment, _ in pairs}
    ).values_list("pk", "enrollment_id", "step_id")
    return {(enrollment, step): pk for pk, enrollment, step in rows if (enrollment, step) in pairs}


def _report_reference(mail_reference: str, email: str) -> str:
    """The mail's Message-ID and the recipient: a mail read again counts once, and two mails
    that a careless server gave one Message-ID still count as two."""
    reference = f"{mail_reference} {email.lower()}"
    if len(reference) <= 200:
        return reference
    return f"sha256:{hashlib.sha256(reference.encode()).hexdigest()}"


def _unmatched(mail: _Mail) -> UnmatchedMail:
    parsed = BytesHeaderParser().parsebytes(mail.raw)
    reading = mail.reading
    findings = mail.unmatched or (list(reading.failures) if reading else [])
    return UnmatchedMail(
        reference=f"sha256:{hashlib.sha256(mail.raw).hexdigest()}",  # this very mail
        sent_at=reading.occurred_at if reading else None,
        sender=_header(parsed, "From")[:300],
        subject=_header(parsed, "Subject")[:300],
        reason=mail.review[:200],
        findings=[
            {"kind": f.kind, "email": f.email, "status": f.status, "diagnostic": f.diagnostic}
            for f in findings
        ],
        headers={name: _header(parsed, name)[:500] for name in KEPT_HEADERS if name in parsed},
        size=len(mail.raw),
        raw=mail.raw[: UnmatchedMail.RAW_LIMIT],
    )


def _header(parsed: EmailMessage, name: str) -> str:
    try:
        return " ".join(str(parsed.get(name, "")).split())
    except Exception:  # an undecodable header: shown as it came
        return ""


def _move_to_review(mailbox: BaseMailBox, uids: list[str]) -> None:
    folder = settings.NURTURING_BOUNCE_REVIEW_FOLDER
    if not folder:
        return  # kept where it is: read (and counted once) again at every pass
    if not mailbox.folder.exists(folder):
        mailbox.folder.create(folder)
    mailbox.move(uids, folder)


# --- Connecting -------------------------------------------------------------------------------


class _RawMailMessage(MailMessage):
    """imap-tools' message as its bytes: nurturing.bounce_mail reads them (most of a report
    without the email package's full parse, which imap-tools' own message does at once)."""

    def __init__(self, fetch_data: list) -> None:
        raw, self._raw_uid_data, self._raw_flag_data = self._get_message_data_parts(fetch_data)
        self.raw: bytes = raw

    @cached_property
    def obj(self) -> EmailMessage:  # type: ignore[override]
        return message_from_bytes(self.raw)


SCHEMES = {"imaps": (MailBox, 993), "imap": (MailBoxUnencrypted, 143),
           "imap+starttls": (MailBoxStartTls, 143)}  # fmt: skip


@contextmanager
def connect(url: str) -> Iterator[BaseMailBox]:
    """Logged in to the URL's folder (imaps://user:password@host:993/INBOX), logged out after."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        raise ImproperlyConfigured(
            f"NURTURING_BOUNCE_MAILBOX_URL: expected imaps://, imap:// or imap+starttls://user:"
            f"password@host/folder, got the scheme {parts.scheme!r}"
        )
    kind, default_port = SCHEMES[parts.scheme.lower()]
    mailbox = kind(parts.hostname, parts.port or default_port, timeout=IMAP_TIMEOUT)
    mailbox.email_message_class = _RawMailMessage
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    with mailbox.login(unquote(parts.username or ""), unquote(parts.password or ""), folder):
        yield mailbox
