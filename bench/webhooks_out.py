"""Outbound webhooks: deliveries/s from the database to a local receiver (http.server in its
own process, HTTP/1.1 keep-alive, answering 200), sent by ``deliveries_send`` in two worker
processes (the compose file's worker, concurrency 2) and in one, against the same POSTs (same
bodies, same signed headers, same urllib3 client) sent by a plain loop in the same run, which
does no database work at all.

10,000 deliveries at scale 1 (contacts created through ``webhooks_contacts_created``, so the
bodies are the real ones). Each run is checked: the receiver got every webhook-id exactly once.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time

from bench.common import result

RECEIVER = r"""
import sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ids, lock = [], threading.Lock()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed ACK
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        with lock:
            ids.append(self.headers["webhook-id"])
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def do_GET(self):  # /stats: total and distinct ids since the last reset, then reset
        with lock:
            body = f"{len(ids)} {len(set(ids))}".encode()
            ids.clear()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()
"""


def _setup(count: int, url: str) -> None:
    from django.db import connection
    from django.utils import timezone

    from contacts.bulk import bulk_copy
    from contacts.models import Contact, WebhookDelivery, WebhookSubscription
    from contacts.webhooks.outbox import webhooks_contacts_created

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE contacts_webhookattempt, contacts_webhookdelivery, "
            "contacts_webhooksubscription, contacts_contact RESTART IDENTITY CASCADE"
        )
    WebhookSubscription.objects.create(name="Bench CRM", url=url, event_types=["contact.created"])
    now = timezone.now()
    contacts = [
        Contact(
            email=f"client{n}@example.fr", first_name=f"Hélène{n}", last_name="Dupré",
            company=f"Société {n}", external_id=f"P-{n}", stage="lead", stage_entered_at=now,
            created_at=now,
        )
        for n in range(count)
    ]  # fmt: skip
    bulk_copy(contacts)
    started = time.perf_counter()
    queued = webhooks_contacts_created([c.pk for c in contacts])
    print(f"  queued {queued:,} deliveries in {time.perf_counter() - started:.2f} s", flush=True)
    assert queued == count == WebhookDelivery.objects.count()
    _requeue()


def _requeue() -> None:
    from django.db import connection
    from django.utils import timezone

    from contacts.models import WebhookAttempt, WebhookDelivery

    WebhookAttempt.objects.all().delete()
    WebhookDelivery.objects.update(
        status="pending", attempts=0, next_attempt_at=timezone.now(), delivered_at=None,
        response_status=None, response_body="", duration_ms=None, lease_until=None,
    )  # fmt: skip
    # Autovacuum is off on these machines: the claim's index scans would wade through the
    # previous run's dead row versions, which production's autovacuum removes.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE contacts_webhookdelivery, contacts_webhookattempt")


def _stats(port: int) -> tuple[int, int]:
    import urllib3

    total, distinct = urllib3.request("GET", f"http://127.0.0.1:{port}/stats").data.split()
    return int(total), int(distinct)


_OUTGOING: list = []


def _plain_loop(half: int) -> int:
    """The baseline: the same signed POSTs through the same client, no database."""
    from contacts.webhooks import delivery

    mine = _OUTGOING[half::2] if half >= 0 else _OUTGOING
    for outgoing in mine:
        assert delivery.post(outgoing).ok
    return len(mine)


def _send_all(_worker: int) -> int:
    from django.db import connection

    from contacts.webhooks.delivery import deliveries_send

    try:
        return deliveries_send(budget=3600)
    finally:
        connection.close()


def run(scale: float) -> list[dict]:
    from django.db import connections

    from contacts.models import WebhookDelivery, WebhookSubscription
    from contacts.webhooks import delivery, outbox

    count = max(200, int(10_000 * scale))
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert receiver.stdout is not None
    port = int(receiver.stdout.readline())
    kick, outbox.kick_send = outbox.kick_send, lambda: None  # sends are timed below
    try:
        _setup(count, f"http://127.0.0.1:{port}/hooks")
        subscription = WebhookSubscription.objects.get()
        global _OUTGOING
        _OUTGOING = [
            delivery.Outgoing(pk, webhook_id, subscription.pk, subscription.url,
                              subscription.secret, body, 0, 1)
            for pk, webhook_id, body in WebhookDelivery.objects.order_by("pk").values_list(
                "pk", "webhook_id", "body"
            )
        ]  # fmt: skip

        started = time.perf_counter()
        _plain_loop(-1)
        plain_one = time.perf_counter() - started
        assert _stats(port) == (count, count)
        connections.close_all()
        started = time.perf_counter()
        with multiprocessing.get_context("fork").Pool(2) as pool:
            assert sum(pool.map(_plain_loop, [0, 1])) == count
        plain_two = time.perf_counter() - started
        assert _stats(port) == (count, count)

        started = time.perf_counter()
        sent_one = delivery.deliveries_send(budget=3600)
        one_seconds = time.perf_counter() - started
        assert sent_one == count and _stats(port) == (count, count)

        _requeue()
        connections.close_all()
        started = time.perf_counter()
        with multiprocessing.get_context("fork").Pool(2) as pool:
            sent_two = sum(pool.map(_send_all, [0, 1]))
        two_seconds = time.perf_counter() - started
        total, distinct = _stats(port)
        assert sent_two == count and (total, distinct) == (count, count), (sent_two, total)
        assert WebhookDelivery.objects.filter(status="delivered").count() == count
    finally:
        outbox.kick_send = kick
        assert receiver.stdin is not None
        receiver.stdin.close()
        receiver.wait(timeout=30)

    common = {"scale": scale, "deliveries": count, "database": _database()}
    two_per_s, one_per_s = count / two_seconds, count / one_seconds
    return [
        result(
            name="webhooks",
            metric="outbound webhook deliveries/s to a local receiver, two worker slots "
            "(claimed, signed, POSTed, each answer recorded)",
            value=two_per_s,
            unit="deliveries/s",
            baseline=count / plain_two,
            target=">= 200 deliveries/s",
            passed=two_per_s >= 200,
            baseline_is="the same signed POSTs by a plain loop in two processes, same client, "
            "no database",
            received_exactly_once=True,
            **common,
        ),
        result(
            name="webhooks",
            metric="outbound webhook deliveries/s, one worker slot",
            value=one_per_s,
            unit="deliveries/s",
            baseline=count / plain_one,
            target="reported (no target of its own)",
            passed=True,
            baseline_is="the same signed POSTs by a plain loop, one process, same client",
            **common,
        ),
    ]


def _database() -> str:
    url = os.environ.get("DATABASE_URL", "")
    return url.split("@")[-1] if "@" in url else url
