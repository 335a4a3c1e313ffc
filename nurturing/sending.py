"""Sending the outbox through Django's email backend, at most once per message by itself.

``messages_send`` claims due messages a batch at a time (a lease, ``SKIP LOCKED``), checks
consent and do-not-email again, and gives each message to the backend ``EMAIL_BACKEND`` names
(``EMAIL_URL`` chooses it: SMTP, console, file, an ESP through django-anymail...). Before a
message's data goes, it is committed as "handed over"; once the backend has it, "sent" (that
mark travels with the next message's hand-over: one statement per message). A worker that dies
before the hand-over leaves a message that goes again after its lease (``messages_reap``); one
that dies after it leaves the message "in doubt", which only a person sends again
(``messages_retry``) or confirms (``messages_mark_delivered``).

With ``nurturing.smtp.EmailBackend`` (``smtp://``) the hand-over is marked later, between DATA
and the end of the data, and on PostgreSQL its statement runs while the server answers DATA
(``_PipelinedMarks``, libpq directly) with ``synchronous_commit`` off
(``contacts.durability.commits_without_waiting``).
Both stay by measurement (2,000 messages to a local aiosmtpd sink, one worker, against bare
smtplib sending the same bytes in the same run; 6 December, on a loaded 2-core machine):
pipelined marks, commits not flushed: 0.64 and 0.38 of bare smtplib (two rounds); the ORM's
UPDATE (``_Marks``) awaited at once: 0.18 and 0.11 (3.5x slower); pipelined marks with
flushed commits: 0.20 and 0.15. ``_Marks`` is what SQLite uses.
"""

from __future__ import annotations

import re
import select
import smtplib
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import DatabaseError, connection, transaction
from django.db.models import Case, F, Value, When
from django.db.models.functions import Coalesce
from django.dispatch import Signal
from django.utils import timezone

from contacts.durability import commits_without_waiting
from contacts.models import Contact
from nurturing import bounces, engine, rendering
from nurturing import esp as esp_tracking
from nurturing.mime import BuiltEmail
from nurturing.models import Message
from nurturing.outbox import emailable

SEND_BATCH_SIZE = 100
SEND_BUDGET_SECONDS = 40.0

# Sent at the points where the crash tests make a sending process die (``point``: "claimed", a
# batch is leased, nothing sent; "handed over", a message is marked, the end of its data has
# not gone; "accepted", the backend took it, no "sent" mark yet).
checkpoint = Signal()


def messages_send(*, batch_size: int = SEND_BATCH_SIZE, budget: float = SEND_BUDGET_SECONDS) -> int:
    """Deliver due queued messages a batch at a time over one backend connection. Returns how
    many were sent. Several can run at once: each claims its own batch."""
    started = time.monotonic()
    lease = settings.NURTURING_SEND_LEASE_SECONDS
    margin = send_margin_seconds()
    sender = _Sender(get_connection(fail_silently=False))
    try:
        with commits_without_waiting("marks whose loss costs at worst a duplicate"):
            try:
                while time.monotonic() - started < budget:
                    claimed_at = time.monotonic()
                    batch = _claim(batch_size, lease)
                    if not batch:
                        break
                    checkpoint.send(sender=None, point="claimed")
                    for index, message in enumerate(batch):
                        if time.monotonic() - claimed_at > lease - margin:
                            sender.flush()
                            _release([m.pk for m in batch[index:]])
                            break
                        sender.deliver(message, upcoming=batch[index + 1 : index + 2])
                    sender.flush()
            finally:
                sender.flush()  # no mark left pending on the connection
    finally:
        _reset(sender.backend)
    return sender.sent


def send_margin_seconds() -> int:
    """How long before its lease runs out a send stops taking messages: it never starts one that
    could still be going when the reaper hands it to someone else (the longest SMTP exchange:
    the data, then the answer, each up to EMAIL_TIMEOUT). A lease must be longer (checks.py)."""
    return 2 * (settings.EMAIL_TIMEOUT or 30) + 5


# --- Claiming ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Outgoing:
    """A claimed message: what sending it needs (a model instance costs more to make than
    its delivery on a local server)."""

    pk: int
    enrollment_id: int
    step_id: int | None
    internal: bool
    to: str
    subject: str
    body_text: str
    body_html: str
    message_id: str
    attempts: int


OUTGOING_VALUES = (
    "pk", "enrollment_id", "step_id", "internal", "to", "subject", "body_text", "body_html",
    "message_id", "attempts",
)  # fmt: skip


def _claim(batch_size: int, lease: int) -> list[Outgoing]:
    """Take due queued messages (status checked under row lock), mark them sending with a
    lease, and re-check consent and do-not-email now, at send time."""
    suppressed: dict[str, list[int]] = defaultdict(list)
    claimed = []
    for message, contact in _lease(batch_size, lease):
        if contact is None:
            suppressed["contact deleted"].append(message.pk)
        elif not message.internal and (reason := emailable(contact)):
            suppressed[reason].append(message.pk)
        elif not message.internal and contact["email"].lower() != message.to.lower():
            suppressed["email address changed"].append(message.pk)
        else:
            claimed.append(message)
    for reason, ids in suppressed.items():
        Message.objects.filter(pk__in=ids, status=Message.Status.SENDING).update(
            status=Message.Status.SUPPRESSED,
            error=reason,
            lease_until=None,
            attempts=F("attempts") - 1,
        )
    return claimed


@transaction.atomic
def _lease(batch_size: int, lease: int) -> list[tuple[Outgoing, dict[str, Any] | None]]:
    """Lock due messages others have not locked, in order, and lease them (each with what the
    send-time checks read from its contact)."""
    now = timezone.now()
    rows = list(
        Message.objects.sendable(now)
        .select_for_update(skip_locked=True, of=("self",))
        .order_by("next_attempt_at", "pk")
        .values_list(*OUTGOING_VALUES, "contact_id")[:batch_size]
    )
    if not rows:
        return []
    contacts = {
        values["pk"]: values
        for values in Contact.objects.filter(pk__in={row[-1] for row in rows if row[-1]})
        .order_by()
        .values("pk", "email", "do_not_email", "email_status", "consent")
    }
    Message.objects.filter(pk__in=[row[0] for row in rows]).update(
        status=Message.Status.SENDING,
        lease_until=now + timedelta(seconds=lease),
        handed_over_at=None,
        attempts=F("attempts") + 1,
    )
    return [
        (Outgoing(*row[:-2], attempts=row[-2] + 1), contacts.get(row[-1]) if row[-1] else None)
        for row in rows
    ]


def _release(ids: list[int]) -> None:
    Message.objects.filter(pk__in=ids, status=Message.Status.SENDING).update(
        status=Message.Status.QUEUED, lease_until=None, attempts=F("attempts") - 1
    )


# --- Delivering -------------------------------------------------------------------------------


def email_for(message: Message | Outgoing, *, esp: bool = False) -> EmailMultiAlternatives:
    """The message as Django's backends take it. For an ESP's (django-anymail), a plain
    ``EmailMultiAlternatives`` (Amazon SES's adds headers to its MIME form) carrying our pk as
    metadata, which the ESP's tracking events echo back."""
    email = (EmailMultiAlternatives if esp else BuiltEmail)(
        subject=message.subject,
        body=message.body_text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[message.to],
        headers=_headers(message),
    )
    if message.body_html:
        email.attach_alternative(message.body_html, "text/html")
    if esp:
        email.metadata = esp_tracking.metadata_for(message.pk)  # type: ignore[attr-defined]
    return email


def _headers(message: Message | Outgoing) -> dict[str, str]:
    headers = {"Message-ID": message.message_id}
    if not message.internal:
        assert message.step_id is not None
        token = rendering.make_token("unsubscribe", message.enrollment_id, message.step_id)
        url = rendering.token_url("nurturing-unsubscribe", token)
        headers["List-Unsubscribe"] = f"<{url}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers


class _Sender:
    """Gives claimed messages to the backend one at a time, over one connection, and keeps the
    marks: each message is committed as handed over before its data goes (by the backend, at
    the last moment, when it takes a ``hand_over``; here, before the message goes, for any
    other), and as sent together with the next one's hand-over (or at the end of the batch)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.late_hand_over = getattr(backend, "takes_hand_over", False)
        self.esp = hasattr(backend, "esp_name")  # django-anymail's backends
        self.marks = _marks()
        self.accepted: tuple[int, datetime] | None = None
        self.handed_over = False
        self.prepared: dict[int, EmailMultiAlternatives] = {}
        self.sent = 0

    def deliver(self, message: Outgoing, upcoming: list[Outgoing]) -> None:
        email = self.prepared.pop(message.pk, None) or email_for(message, esp=self.esp)
        self.handed_over = False
        self.mark_failed: Exception | None = None
        try:
            # Opened here, not by send_messages, which closes a connection it opened itself
            # after every call (a new SMTP session per message). Nothing has gone if it fails.
            self.backend.open()
            if self.late_hand_over:
                email.hand_over = _HandOver(self, message.pk, upcoming)  # type: ignore[attr-defined]
            else:
                self.hand_over_begin(message.pk)
                self.hand_over_confirm()
            if not self.backend.send_messages([email]):
                raise smtplib.SMTPException("the email backend sent nothing")
        except Exception as error:  # any backend's errors (ESPs raise their own)
            if error is self.mark_failed:
                raise
            self.flush()
            _not_sent(message, error, handed_over=self.handed_over)
            _reset(self.backend)
            return
        checkpoint.send(sender=None, point="accepted")
        self.accepted = (message.pk, timezone.now())
        self.sent += 1

    def hand_over_begin(self, pk: int) -> None:
        try:
            self.marks.wait()
            sent, sent_at = self.accepted or (None, None)
            self.accepted = None
            self.marks.send(sent, sent_at, pk, timezone.now())
        except Exception as error:
            self.mark_failed = error  # not the backend's: deliver lets it through
            raise

    def hand_over_confirm(self) -> None:
        try:
            self.marks.wait()
        except Exception as error:
            self.mark_failed = error
            raise
        self.handed_over = True
        checkpoint.send(sender=None, point="handed over")

    def flush(self) -> None:
        """Mark the message accepted last as sent, and wait for the marks."""
        self.marks.wait()
        if self.accepted is not None:
            (sent, sent_at), self.accepted = self.accepted, None
            self.marks.send(sent, sent_at, None, timezone.now())
            self.marks.wait()


class _HandOver:
    """What ``nurturing.smtp.EmailBackend`` calls while it sends one message."""

    def __init__(self, sender: _Sender, pk: int, upcoming: list[Outgoing]) -> None:
        self.sender, self.pk, self.upcoming = sender, pk, upcoming

    def begin(self) -> None:
        self.sender.hand_over_begin(self.pk)

    def confirm(self) -> None:
        self.sender.hand_over_confirm()

    def meanwhile(self) -> None:
        # The next message's bytes are made while the server reads these.
        for message in self.upcoming:
            email = email_for(message)
            email.message()
            self.sender.prepared[message.pk] = email


# --- Outcomes ---------------------------------------------------------------------------------


def _not_sent(message: Outgoing, error: Exception, *, handed_over: bool) -> None:
    """A server's refusal fails the message (5xx) or retries it later (4xx), as does an ESP
    API's (``nurturing.esp.refusal``); any other error retries it, unless its data may have
    reached the server already (for an ESP: the request may have gone): then it is in doubt.
    A refused recipient is a bounce (``_recipient_refused``)."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, reason = next(iter(error.recipients.values()), (550, b""))
        _recipient_refused(message, code, reason)
    elif isinstance(error, smtplib.SMTPResponseException):
        _failed_or_retry(message, error.smtp_code, _smtp_text(error.smtp_code, error.smtp_error))
    elif (permanent := esp_tracking.refusal(error)) is not None:
        # An ESP's API answered with a refusal: the message is not with the ESP.
        reason = f"{type(error).__name__}: {error}"
        if permanent:
            _failed(message, reason)
        else:
            _retry(message, reason)
    elif handed_over:
        _in_doubt(message, f"{type(error).__name__}: {error}")
    else:
        _retry(message, f"{type(error).__name__}: {error}")


def _smtp_text(code: int, reason: bytes | str) -> str:
    text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
    return f"{code} {text}".strip()


_ENHANCED_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


def _recipient_refused(message: Outgoing, code: int, reply: bytes | str) -> None:
    """The server refused the recipient at RCPT: for good (5xx), a hard bounce at once; for
    now (4xx: greylisting, a full mailbox), the message is tried again later as for any
    temporary error, and only when its attempts run out is it a soft bounce (as a mail
    server's report would say then), so a greylisting server never counts against an
    address. Either way the message never went: nothing is sent twice or lost."""
    text = _smtp_text(code, reply)
    temporary = 400 <= code < 500
    if temporary and message.attempts < settings.NURTURING_MAX_ATTEMPTS:
        _retry(message, text)
        return
    found = _ENHANCED_STATUS.search(text)
    with transaction.atomic():  # the message's state and the bounce's effects, together
        refused = Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
            status=Message.Status.BOUNCED, lease_until=None, error=text[:2000]
        )
        if not refused:  # reaped meanwhile: whoever holds it now decides
            return
        bounces.record_reports([
            bounces.Report(
                kind=bounces.Kind.SOFT if temporary else bounces.Kind.HARD,
                email=message.to,
                message_id=message.pk,
                status=found.group(1) if found else str(code),
                diagnostic=text,
                source="smtp",
                reference=f"rcpt:{message.pk}:{message.attempts}",
            )
        ])  # fmt: skip


def _in_doubt(message: Outgoing, reason: str) -> None:
    Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
        status=Message.Status.IN_DOUBT, lease_until=None, error=reason[:2000]
    )


def _failed_or_retry(message: Outgoing, code: int, reason: str) -> None:
    if 400 <= code < 500:
        _retry(message, reason)
        return
    _failed(message, reason)


def _failed(message: Outgoing, reason: str) -> None:
    # A permanent refusal (5xx): this message will never go; the rest of the batch goes on.
    Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
        status=Message.Status.FAILED, lease_until=None, error=reason[:2000]
    )


def _retry(message: Outgoing, reason: str) -> None:
    if message.attempts >= settings.NURTURING_MAX_ATTEMPTS:
        Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
            status=Message.Status.FAILED, lease_until=None, error=reason[:2000]
        )
        return
    Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
        status=Message.Status.QUEUED,
        lease_until=None,
        error=reason[:2000],
        next_attempt_at=timezone.now() + engine.retry_delay(message.attempts),
    )


def _reset(backend: Any) -> None:
    """Close the connection (after an error the server may expect a fresh one)."""
    try:
        backend.close()
    except Exception:  # noqa: S110 (a broken connection is being thrown away anyway)
        pass


# --- The marks --------------------------------------------------------------------------------


def _marks() -> _Marks:
    """The mark statements' runner: on PostgreSQL, sent without waiting for the answer."""
    return _PipelinedMarks() if connection.vendor == "postgresql" else _Marks()


class _Marks:
    """Marks the message accepted before (if any) sent and the next one handed over, in one
    statement: a dead worker leaves at most two messages in doubt."""

    def send(self, sent: int | None, sent_at: datetime | None, handed_over: int | None,
             now: datetime) -> None:  # fmt: skip
        Message.objects.filter(
            pk__in=[pk for pk in (sent, handed_over) if pk is not None],
            status=Message.Status.SENDING,
        ).update(
            status=_for(sent, "status", Message.Status.SENT),
            sent_at=_for(sent, "sent_at", sent_at),
            lease_until=_for(sent, "lease_until", None),
            error=_for(sent, "error", ""),
            handed_over_at=_for(handed_over, "handed_over_at", now),
        )

    def wait(self) -> None:
        pass


def _for(pk: int | None, name: str, value: Any) -> Case:
    """``value`` for the row ``pk``, the column's own value for the other."""
    field = Message._meta.get_field(name)
    return Case(When(pk=pk, then=Value(value, output_field=field)), default=F(name))


class _PipelinedMarks:
    """The same statement, sent through libpq without waiting for its answer, which is read
    only when the mark must have been committed (before the end of the next data, or before
    anything else uses the connection): the database works while the SMTP server does.

    Kept over ``_Marks`` (the ORM's UPDATE, awaited at once), which makes sending 3.5x slower
    (figures in the module's docstring)."""

    def __init__(self) -> None:
        self.pending: Any = None
        connection.ensure_connection()
        self.pgconn: Any = connection.connection.pgconn  # libpq's, under Django's connection
        self.statement = _mark_statement()
        self.statuses = (Message.Status.SENT.encode(), Message.Status.SENDING.encode())

    def send(self, sent: int | None, sent_at: datetime | None, handed_over: int | None,
             now: datetime) -> None:  # fmt: skip
        values = [
            None if value is None else str(value).encode()
            for value in (sent, sent_at and sent_at.isoformat(), handed_over, now.isoformat())
        ]
        pgconn = self.pgconn
        pgconn.send_query_params(self.statement, [*values, *self.statuses])
        while pgconn.flush():
            select.select([], [pgconn.socket], [])
        self.pending = pgconn

    def wait(self) -> None:
        pgconn, self.pending = self.pending, None
        if pgconn is None:
            return
        error = None
        pgconn.consume_input()  # the answer has usually arrived: no need to poll first
        while True:
            while pgconn.is_busy():
                select.select([pgconn.socket], [], [])
                pgconn.consume_input()
            result = pgconn.get_result()
            if result is None:
                break
            if result.status != 1:  # PGRES_COMMAND_OK
                error = result.error_message.decode(errors="replace")
        if error:
            raise DatabaseError(error)


def _mark_statement() -> bytes:
    """``_Marks``'s UPDATE in libpq's own parameter syntax (names from the model)."""
    meta = Message._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    pk, status, sent_at, lease_until, error, handed_over_at = (
        quote(meta.get_field(name).column)
        for name in ("id", "status", "sent_at", "lease_until", "error", "handed_over_at")
    )
    return f"""
        UPDATE {table} SET
            {status} = CASE WHEN {pk} = $1::bigint THEN $5 ELSE {status} END,
            {sent_at} = CASE WHEN {pk} = $1::bigint THEN $2::timestamptz ELSE {sent_at} END,
            {lease_until} = CASE WHEN {pk} = $1::bigint THEN NULL ELSE {lease_until} END,
            {error} = CASE WHEN {pk} = $1::bigint THEN '' ELSE {error} END,
            {handed_over_at} = CASE WHEN {pk} = $3::bigint THEN $4::timestamptz
                ELSE {handed_over_at} END
        WHERE {pk} IN ($1::bigint, $3::bigint) AND {status} = $6
    """.encode()  # noqa: S608 (names from the model; every value is a parameter)


# --- After a crash, and by hand ---------------------------------------------------------------


@transaction.atomic
def messages_reap(*, as_of: datetime | None = None) -> int:
    """Messages a dead worker held when its lease ran out: those it had not handed to the mail
    server yet go back to the queue; the one it was handing over (and the one accepted just
    before, whose "sent" mark had not been written yet) may have been delivered, so they are
    "in doubt" and wait for a person. Returns how many went back to the queue."""
    as_of = as_of or timezone.now()
    expired = Message.objects.filter(status=Message.Status.SENDING, lease_until__lt=as_of)
    expired.filter(handed_over_at__isnull=False).update(
        status=Message.Status.IN_DOUBT, lease_until=None
    )
    return expired.filter(handed_over_at__isnull=True).update(
        status=Message.Status.QUEUED, lease_until=None, next_attempt_at=as_of
    )


@transaction.atomic
def messages_retry(*, messages: Any, as_of: datetime | None = None) -> int:
    """A person sends in-doubt or failed messages again (consent and do-not-email are checked
    again when they go; the Message-ID stays, so a mail system can spot a duplicate)."""
    as_of = as_of or timezone.now()
    return messages.filter(status__in=[Message.Status.IN_DOUBT, Message.Status.FAILED]).update(
        status=Message.Status.QUEUED,
        next_attempt_at=as_of,
        handed_over_at=None,
        lease_until=None,
        attempts=0,
    )


@transaction.atomic
def messages_mark_delivered(*, messages: Any, as_of: datetime | None = None) -> int:
    """A person confirms that in-doubt messages did arrive (the mail server's log, the
    recipient): they count as sent, and their enrolments' later emails, which waited for
    them, may go."""
    as_of = as_of or timezone.now()
    return messages.filter(status=Message.Status.IN_DOUBT).update(
        status=Message.Status.SENT,
        sent_at=Coalesce("handed_over_at", Value(as_of)),
        lease_until=None,
    )
