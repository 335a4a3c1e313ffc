"""Inbound webhooks on the production server (gunicorn), over real HTTP, with Redis stopped
under it: signed deliveries are still kept and answered fast, a forged one still refused, and
the sweep records what no worker was told about."""

from __future__ import annotations

import shutil
import signal
import threading

import pytest
from django.db import connection

from contacts.intake import webhook_capture
from contacts.intake.webhook_capture import (
    inbound_deliveries_sweep,
    inbound_delivery_process,
)
from contacts.models import Consent, Contact, Event, InboundDelivery, InboundSource
from tests.test_inbound_webhooks import SECRET, SIGNED, sample
from tests.test_redis_outage import gunicorn, post, throwaway_redis
from tests.utils import free_port

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.reliability,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server on the PATH"),
]


def test_signed_deliveries_are_stored_while_redis_is_down_and_forgeries_refused():
    sources = {
        kind: InboundSource.objects.create(name=kind, kind=kind, secret=SECRET)
        for kind in ("typeform", "tally", "mautic")
    }
    port = free_port()
    redis = throwaway_redis(port)
    server, base = gunicorn(f"redis://127.0.0.1:{port}/0")

    def deliver(kind: str, headers: dict | None = None) -> tuple[int, float]:
        body = sample(kind)
        url = f"{base}/hooks/in/{sources[kind].key}/"
        return post(url, body, "application/json", **(headers or SIGNED[kind](body)))

    try:
        up = deliver("typeform")  # Redis up: the server holds live connections to it
        redis.send_signal(signal.SIGKILL)
        down = [deliver("tally"), deliver("mautic"), deliver("typeform")]
        forged = deliver("tally", {"Tally-Signature": "Zm9yZ2Vk"})
    finally:
        server.terminate()
        server.wait(timeout=30)
        redis.kill()
        redis.wait(timeout=20)

    print(f"answers: up {up}, Redis down {down}, forged {forged}")
    # Nothing reached a worker (the one task sent died with Redis): the sweep finds them all.
    assert list(InboundDelivery.objects.order_by("pk").values_list("status", flat=True)) == [
        "received", "received", "received", "received", "refused",
    ]  # fmt: skip
    assert inbound_deliveries_sweep(older_than=0) == 4
    assert up[0] == 200
    assert [status for status, _ in down] == [200, 200, 200]
    assert max(seconds for _, seconds in down) < 5
    assert forged[0] == 403
    assert Event.objects.filter(type="form_submit").count() == 3  # the retry is not twice
    assert set(Contact.objects.values_list("email", flat=True)) >= {
        "elodie.martin@brasserie-dupre.fr", "karim.benali@atelier-nord.fr",
        "sophie.lefevre@cabinet-lefevre.fr",
    }  # fmt: skip
    assert list(InboundDelivery.objects.order_by("pk").values_list("status", flat=True)) == [
        "accepted", "accepted", "accepted", "duplicate", "refused",
    ]  # fmt: skip


def test_two_workers_recording_the_same_submission_at_once_record_it_once(monkeypatch):
    """A sender's retry arrives while its first delivery waits: two workers take one each,
    and both read "no such person yet" before either writes (a barrier between the read and
    the write, where a race would hurt)."""
    source = InboundSource.objects.create(name="tally", kind="tally", secret=SECRET)
    body = sample("tally")
    deliveries = [  # as kept by the web process, whose tasks are not run here
        InboundDelivery.objects.create(
            source=source, status="received", http_status=200, payload=body.decode(),
            payload_bytes=len(body),
        ).pk
        for _ in range(2)
    ]  # fmt: skip
    read_both, paused = threading.Barrier(2), threading.local()
    known = webhook_capture._known

    def known_then_wait(*args):
        found = known(*args)
        if not getattr(paused, "done", False):
            paused.done = True
            read_both.wait(timeout=10)
        return found

    monkeypatch.setattr(webhook_capture, "_known", known_then_wait)
    failures = []

    def work(delivery_id: int) -> None:
        try:
            inbound_delivery_process(delivery_id=delivery_id)
        except BaseException as error:  # reported below, not lost in the thread
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(pk,)) for pk in deliveries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not failures, failures
    assert Contact.objects.filter(email="karim.benali@atelier-nord.fr").count() == 1
    assert Event.objects.filter(type="form_submit").count() == 1
    assert Consent.objects.count() == 1
    assert sorted(InboundDelivery.objects.values_list("status", flat=True)) == [
        "accepted", "duplicate",
    ]  # fmt: skip
