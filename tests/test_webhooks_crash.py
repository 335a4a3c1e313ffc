"""A webhook sending process SIGKILLed around a POST (a real subprocess, a real receiver).

Killed after the receiver answered and before the answer was recorded, the delivery goes again
once its lease has run out, with the same webhook-id and the same body: at least once, and a
receiver that keeps the ids it has seen (as the Standard Webhooks spec asks) handles it once.
Killed with its batch claimed and nothing posted, every delivery goes once. A delivery that was
recorded as delivered never goes again.
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
from django.db import connection
from django.utils import timezone

from contacts.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from contacts.services import contact_create
from contacts.webhooks.delivery import deliveries_reap, deliveries_send
from tests.webhooks_receiver import Receiver

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.reliability,
    pytest.mark.django_db(transaction=True),
]

SENDER = """
import os, signal, sys
import django

django.setup()
from contacts.webhooks import delivery

point, nth = sys.argv[1], int(sys.argv[2])
seen = 0


def checkpoint(sender, **kwargs):
    global seen
    if kwargs["point"] == point:
        seen += 1
        if seen == nth:
            os.kill(os.getpid(), signal.SIGKILL)


delivery.checkpoint.connect(checkpoint)
delivery.deliveries_send()
"""


def send_and_die(point: str, nth: int) -> subprocess.CompletedProcess[str]:
    database = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": (
            f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:"
            f"{database['PORT'] or 5432}/{database['NAME']}"
        ),
        "DJANGO_SETTINGS_MODULE": "leadfunnel.settings",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-c", SENDER, point, str(nth)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def receiver(monkeypatch):
    from contacts.webhooks import outbox

    # The after-commit kick would send in this process (eager Celery): the sending process
    # under test is the subprocess.
    monkeypatch.setattr(outbox, "kick_send", lambda: None)
    receiver = Receiver()
    yield receiver
    receiver.stop()


def queue(receiver: Receiver, count: int) -> list[WebhookDelivery]:
    subscription = WebhookSubscription.objects.create(
        name="CRM", url=receiver.url, event_types=["contact.created"]
    )
    receiver.secret = subscription.secret
    for number in range(count):
        contact_create(email=f"crash{number}@exemple.fr")
    return list(WebhookDelivery.objects.order_by("pk"))


def after_the_lease():  # type: ignore[no-untyped-def]
    return time_machine.travel(timezone.now() + timedelta(minutes=10), tick=False)


def test_killed_after_the_answer_the_delivery_goes_again_with_the_same_id(receiver):
    deliveries = queue(receiver, 3)

    # Dies right after the second receiver's 200, before anything records it.
    died = send_and_die("answered", 2)

    assert died.returncode == -signal.SIGKILL, died.stderr
    assert receiver.ids() == [deliveries[0].webhook_id, deliveries[1].webhook_id]
    assert deliveries_send() == 0  # leased by the dead process: nobody may send them yet
    with after_the_lease():
        assert deliveries_reap() == 2  # the one in flight and the one never started
        assert deliveries_send() == 2
    ids = [d.webhook_id for d in deliveries]
    assert receiver.ids() == [ids[0], ids[1], ids[1], ids[2]]
    first, repeat = (r for r in receiver.received if r.webhook_id == ids[1])
    assert first.body == repeat.body and repeat.verified
    assert {r.webhook_id for r in receiver.received} == set(ids)  # deduped: each once
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}
    assert list(
        WebhookAttempt.objects.filter(delivery=deliveries[1]).values_list("error", flat=True)
    ) == ["interrupted"]
    with after_the_lease():
        assert deliveries_reap() == 0 and deliveries_send() == 0  # delivered: never again
    assert len(receiver.received) == 4


def test_killed_with_its_batch_claimed_each_delivery_goes_once(receiver):
    deliveries = queue(receiver, 3)

    died = send_and_die("claimed", 1)

    assert died.returncode == -signal.SIGKILL, died.stderr
    assert receiver.received == []
    with after_the_lease():
        assert deliveries_reap() == 3
        assert deliveries_send() == 3
    assert receiver.ids() == [d.webhook_id for d in deliveries]
