"""The bounce mailbox (half of ``make bench BENCH=bounces``): 10,000 Postfix-shaped delivery
status notifications (RFC 3464, tests/data/bounces/postfix_dsn.eml), each to its message's VERP
return path, filed in a real IMAP server (Dovecot, tests/imap_server.py, its maildir written
directly), then read by one pass of ``nurturing.bounce_mailbox.bounce_mailbox_read``: from the
IMAP server to recorded hard bounces (a Bounce row, the message bounced, the address refused,
an email_bounced event handled), the mailbox emptied. Target: at least 500 DSNs/s.

Baseline, in the same run on the same server and data (another mailbox, other contacts): the
plain way, one mail at a time: imaplib's UID FETCH of each mail, the stdlib email parser, the
VERP token, and ``record_reports`` with that one report (a few ORM statements each), then its
deletion flag (one EXPUNGE at the end). It reads at most BASELINE_MAILS mails.

The events' handlers (scoring) are the workers' job, later, as in production: they are left to
the sweep (``bench_ingest.processing_deferred``) for both. The result tells the pass's time in
``record_reports`` (nurturing.bounces) from the rest (IMAP and reading). Afterwards every DSN
must be one Bounce, every contact refused, both mailboxes empty.
"""

from __future__ import annotations

import email
import imaplib
import time

from django.conf import settings
from django.db import connection
from django.utils import timezone

from bench import seed
from bench.bench_ingest import processing_deferred
from bench.common import result

NAME = "bounces"
MAILS = 10_000
BASELINE_MAILS = 500
TARGET = 500.0
BOUNCE_ADDRESS = "bounces@leadfunnel.test"


def run(scale: float) -> list[dict]:
    from contacts.models import Contact
    from nurturing import bounce_mailbox
    from nurturing.models import Bounce
    from tests import imap_server

    count = max(100, int(MAILS * scale))
    baseline_count = min(count, BASELINE_MAILS)
    settings.NURTURING_BOUNCE_ADDRESS = BOUNCE_ADDRESS
    settings.DEFAULT_FROM_EMAIL = "LeadFunnel <marketing@leadfunnel.test>"
    seed.reset()
    Bounce.objects.all().delete()
    messages = _sent_messages(count + baseline_count)
    server = imap_server.Dovecot()
    try:
        measured, plain = server.new_user(), server.new_user()
        server.deliver_files(measured, [_dsn(*message) for message in messages[:count]])
        server.deliver_files(plain, [_dsn(*message) for message in messages[count:]])

        recording = _Timed(bounce_mailbox.record_reports)
        bounce_mailbox.record_reports = recording  # only to tell reading from recording
        try:
            with processing_deferred():
                started, cpu_started = time.perf_counter(), time.process_time()
                done = bounce_mailbox.bounce_mailbox_read(url=server.url(measured), budget=3600)
                elapsed = time.perf_counter() - started
                cpu = time.process_time() - cpu_started

                baseline_started = time.perf_counter()
                _plain_pass(server, plain)
                baseline_elapsed = time.perf_counter() - baseline_started
        finally:
            bounce_mailbox.record_reports = recording.call

        left = server.count(measured) + server.count(plain)
    finally:
        server.stop()
    bounces = Bounce.objects.filter(kind="hard", source="mailbox").count()
    refused = Contact.objects.filter(email_status=Contact.EmailStatus.HARD_BOUNCE).count()
    correct = (
        done.get("recorded") == count
        and bounces == count + baseline_count
        and refused == count + baseline_count
        and left == 0
    )
    rate = count / elapsed
    baseline_rate = baseline_count / baseline_elapsed
    return [
        result(
            name=NAME,
            metric="bounce mailbox: DSNs read and recorded per second (IMAP to suppression)",
            value=rate,
            unit="DSNs/s",
            baseline=baseline_rate,
            target=f">= {TARGET:.0f} DSNs/s",
            passed=rate >= TARGET and correct,
            scale=scale,
            mails=count,
            seconds=round(elapsed, 2),
            # This process's CPU (not Dovecot's nor PostgreSQL's): on a loaded machine the wall
            # time is mostly waiting for a core.
            process_cpu_seconds=round(cpu, 2),
            recording_seconds=round(recording.seconds, 2),
            reading_seconds=round(elapsed - recording.seconds, 2),
            baseline_mails=baseline_count,
            baseline_seconds=round(baseline_elapsed, 2),
            baseline_method="imaplib FETCH one by one, stdlib parser, record_reports per report",
            pass_result=done,
            all_recorded_once=correct,
        )
    ]


class _Timed:
    def __init__(self, call) -> None:
        self.call = call
        self.seconds = 0.0

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.call(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


def _sent_messages(n: int) -> list[tuple[int, str, str]]:
    """n contacts, each with one sent marketing message: (pk, to, Message-ID header)."""
    from nurturing.models import Enrollment, Message, Sequence, Step

    seed.contacts(n)
    Sequence.objects.filter(name="Bench bounces").delete()
    sequence = Sequence.objects.create(name="Bench bounces", trigger="manual")
    step = Step.objects.create(sequence=sequence, position=1, kind="email", subject="Guide",
                               body_text="Bonjour")  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, email FROM contacts_contact ORDER BY id")
        contacts = cursor.fetchall()
    now = timezone.now()
    enrollments = Enrollment.objects.bulk_create(
        [Enrollment(contact_id=pk, sequence=sequence, status="completed") for pk, _ in contacts],
        batch_size=2000,
    )
    domain = "leadfunnel.test"
    created = Message.objects.bulk_create(
        [
            Message(
                enrollment=enrollment,
                step=step,
                contact_id=pk,
                to=address,
                subject="Guide",
                body_text="Bonjour",
                message_id=f"<nurturing.{enrollment.pk}.{step.pk}@{domain}>",
                status="sent",
                sent_at=now,
                attempts=1,
            )  # fmt: skip
            for enrollment, (pk, address) in zip(enrollments, contacts, strict=True)
        ],
        batch_size=2000,
    )
    return [(message.pk, message.to, message.message_id) for message in created]


def _dsn(pk: int, to: str, message_id: str) -> bytes:
    from nurturing import verp
    from tests.nurturing.bounce_data import FOLDER

    text = (FOLDER / "postfix_dsn.eml").read_text()
    text = text.replace("%%RETURN_PATH%%", verp.return_path(pk)).replace("%%RECIPIENT%%", to)
    text = text.replace("%%MESSAGE_ID%%", message_id)
    # Each DSN is its own mail (its own Message-ID, as a server writes them).
    text = text.replace("4QK7m2X1tBz9sW@mail.example.org", f"{pk}.bench@mail.example.org")
    return text.replace("\n", "\r\n").encode()


def _plain_pass(server, user: str) -> None:
    """The baseline: one mail at a time, with the standard library and one report per call."""
    from nurturing import verp
    from nurturing.bounces import Report, record_reports
    from tests import imap_server

    client = imaplib.IMAP4("127.0.0.1", server.port)
    client.login(user, imap_server.PASSWORD)
    client.select("INBOX")
    _, data = client.uid("SEARCH", None, "ALL")
    for uid in data[0].split():
        _, fetched = client.uid("FETCH", uid, "(BODY.PEEK[])")
        mail = email.message_from_bytes(fetched[0][1])
        fields: dict[str, str] = {}
        for part in mail.walk():
            if part.get_content_type() == "message/delivery-status":
                for block in part.get_payload()[1:]:
                    fields = {name: " ".join(str(value).split()) for name, value in block.items()}
        message_id = verp.message_from_address(str(mail["To"]))
        record_reports(
            [
                Report(
                    kind="hard",
                    email=fields.get("Final-Recipient", "").partition(";")[2].strip(),
                    message_id=message_id,
                    status=fields.get("Status", ""),
                    diagnostic=fields.get("Diagnostic-Code", ""),
                    source="mailbox",
                    reference=f"{mail['Message-ID']} baseline",
                )
            ]
        )
        client.uid("STORE", uid, "+FLAGS", "(\\Deleted)")
    client.expunge()
    client.logout()
