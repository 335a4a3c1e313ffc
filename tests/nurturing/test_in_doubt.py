"""A sending process SIGKILLed around the moment the SMTP server accepts a message.

The process is real (a subprocess running the send loop against a real aiosmtpd server) and
kills itself at a named point of ``sending.checkpoint``. Then, as after a restart: the lease
runs out, the reaper runs, and a new send loop delivers what is left. A message whose data
may have reached the server is never sent again by itself; one that had not gone is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.utils import timezone

from nurturing import enrolment, scheduler, sending
from nurturing.models import Message
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.reliability,
    pytest.mark.django_db(transaction=True),
]

SENDER = """
import os, signal, sys
import django

django.setup()
from nurturing import sending

point, nth = sys.argv[1], int(sys.argv[2])
seen = 0


def checkpoint(sender, **kwargs):
    global seen
    if kwargs["point"] == point:
        seen += 1
        if seen == nth:
            os.kill(os.getpid(), signal.SIGKILL)


sending.checkpoint.connect(checkpoint)
sending.messages_send()
"""


def send_and_die(smtp_port: int, point: str, nth: int) -> subprocess.CompletedProcess[str]:
    database = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": (
            f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:"
            f"{database['PORT'] or 5432}/{database['NAME']}"
        ),
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
        "EMAIL_BACKEND": settings.EMAIL_BACKEND,  # the smtp fixture's
        "DJANGO_SETTINGS_MODULE": "leadfunnel.settings",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-c", SENDER, point, str(nth)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _no_send_kick(monkeypatch):  # type: ignore[no-untyped-def]
    # The tick's after-commit kick would send in this process (eager Celery): the sending
    # process under test is the subprocess.
    monkeypatch.setattr(scheduler, "kick_send", lambda _count: None)


def queue(count: int) -> list[Message]:
    sequence = sequence_with(email_step())
    enrolment.enrollments_start(
        sequence=sequence, contact_ids=[c.pk for c in ContactFactory.create_batch(count)]
    )
    scheduler.enrollments_advance()
    return list(Message.objects.order_by("pk"))


def after_the_lease():  # type: ignore[no-untyped-def]
    return time_machine.travel(timezone.now() + timedelta(minutes=10), tick=False)


def deliveries(smtp) -> dict[str, int]:  # type: ignore[no-untyped-def]
    counts: dict[str, int] = {}
    for received in smtp.received:
        counts[received.message["Message-ID"]] = counts.get(received.message["Message-ID"], 0) + 1
    return counts


def test_killed_after_the_server_accepted_a_message_it_is_in_doubt_and_never_sent_again(smtp):
    messages = queue(5)

    # Dies right after the third message's 250, before anything records it.
    died = send_and_die(smtp.controller.port, "accepted", 3)

    assert died.returncode == -signal.SIGKILL, died.stderr
    assert len(smtp.received) == 3
    with after_the_lease():
        assert sending.messages_reap() == 2  # the two it had not started go back
        assert sending.messages_send() == 2
    status = dict(Message.objects.values_list("pk", "status"))
    assert [status[m.pk] for m in messages] == ["sent", "sent", "in_doubt", "sent", "sent"]
    # Every message reached the server exactly once, the one in doubt included.
    assert deliveries(smtp) == {m.message_id: 1 for m in messages}
    assert sending.messages_send() == 0
    assert sending.messages_reap() == 0
    assert Message.objects.get(pk=messages[2].pk).status == "in_doubt"


def test_killed_before_a_message_was_handed_over_it_is_sent_once_after_the_lease(smtp):
    messages = queue(3)

    # Dies with the batch claimed (leased), before its first message went anywhere.
    died = send_and_die(smtp.controller.port, "claimed", 1)

    assert died.returncode == -signal.SIGKILL, died.stderr
    assert smtp.received == []
    assert set(Message.objects.values_list("status", flat=True)) == {"sending"}
    assert sending.messages_send() == 0  # leased: nobody else may send them yet
    with after_the_lease():
        assert sending.messages_reap() == 3
        assert sending.messages_send() == 3
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}
    assert deliveries(smtp) == {m.message_id: 1 for m in messages}


def test_killed_between_the_hand_over_and_the_end_of_the_data_the_message_waits_for_a_person(
    smtp,
):
    [message] = queue(1)

    died = send_and_die(smtp.controller.port, "handed over", 1)

    assert died.returncode == -signal.SIGKILL, died.stderr
    assert smtp.received == []  # the end of the data never went: the server dropped it
    with after_the_lease():
        assert sending.messages_reap() == 0
        assert sending.messages_send() == 0
    message.refresh_from_db()
    assert message.status == "in_doubt" and message.handed_over_at is not None

    # The marketer checks and sends it again: it goes once more, with the same Message-ID.
    assert sending.messages_retry(messages=Message.objects.filter(pk=message.pk)) == 1
    assert sending.messages_send() == 1
    message.refresh_from_db()
    assert message.status == "sent"
    assert deliveries(smtp) == {message.message_id: 1}


def test_a_connection_lost_after_the_end_of_the_data_leaves_the_message_in_doubt(smtp):
    [first, second] = queue(2)

    original = smtp.handle_DATA
    calls = []

    async def handle_data(server, session, envelope):  # type: ignore[no-untyped-def]
        calls.append(envelope)
        if len(calls) == 1:
            await original(server, session, envelope)
            server.transport.close()  # accepted, but the 250 never leaves
            return "250 OK"
        return await original(server, session, envelope)

    smtp.handle_DATA = handle_data

    assert sending.messages_send() == 1

    statuses = dict(Message.objects.values_list("pk", "status"))
    assert statuses == {first.pk: "in_doubt", second.pk: "sent"}
    assert deliveries(smtp) == {first.message_id: 1, second.message_id: 1}
