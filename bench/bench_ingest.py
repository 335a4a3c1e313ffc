"""API ingest: POST /api/v1/events through Django's WSGI handler (the test client: routing,
API-key auth and rate limit, pydantic validation, contact resolution, storage), in batches of
1,000 and one event at a time, against a raw SQL insert of the same rows in the same run.

The API's job is to store and queue: processing (scoring) is the workers'. The bench runs with
CELERY_TASK_ALWAYS_EAGER, which would score each batch inside the request on commit, so during
the measurements eager mode is off and the broker is marked down (its circuit breaker): the
after-commit send is skipped and the events are left to the workers' sweep.
"""

from __future__ import annotations

import json
import logging
import random
import time
from contextlib import contextmanager

from django.db import connection
from django.test import Client

from bench import seed
from bench.bench_scoring import make_events, raw_insert
from bench.common import percentile, result, timings_ms
from contacts import broker
from contacts.intake.capture import api_key_create
from contacts.models import Event

NAME = "ingest"
BATCH = 1000
SINGLES = 300
TARGET_RATE = 10_000
TARGET_P95_MS = 50
PATH = "/api/v1/events"


def as_json(events: list[Event]) -> str:
    """The request body an integration would send (serialized before the clock starts: that
    part is the client's work)."""
    return json.dumps({"events": [
        {"contact_id": e.contact_id, "type": e.type, "occurred_at": e.occurred_at.isoformat(),
         "properties": e.properties, "source": e.source, "idempotency_key": e.idempotency_key}
        for e in events
    ]})  # fmt: skip


@contextmanager
def processing_deferred():
    """No scoring inside the request: eager mode off, the broker marked down (its circuit
    breaker), and its per-request "left to the sweep" notice silenced."""
    from leadfunnel.celery import app

    eager = app.conf.task_always_eager
    notices = logging.getLogger(broker.__name__)
    level = notices.level
    app.conf.task_always_eager = False
    broker._down_until = float("inf")
    notices.setLevel(logging.WARNING)
    try:
        yield
    finally:
        broker.reset()
        app.conf.task_always_eager = eager
        notices.setLevel(level)


def post(client: Client, body: str, authorization: str, expect_stored: int) -> None:
    response = client.post(
        PATH, data=body, content_type="application/json", HTTP_AUTHORIZATION=authorization
    )
    assert response.status_code == 200, (response.status_code, response.content[:300])
    stored = response.json()["stored"]
    assert stored == expect_stored, (stored, expect_stored)


def raw_single_ms(events: list[Event]) -> list[float]:
    """One INSERT per event in its own transaction (autocommit), the floor for one API call."""
    sql = (
        "INSERT INTO contacts_event (contact_id, type, occurred_at, received_at, properties, "
        "source, idempotency_key) VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s)"
    )
    queue = iter(events)

    def insert() -> None:
        e = next(queue)
        with connection.cursor() as cursor:
            cursor.execute(sql, (
                e.contact_id, e.type, e.occurred_at, e.received_at, json.dumps(e.properties),
                e.source, e.idempotency_key,
            ))  # fmt: skip

    samples = timings_ms(insert, repeat=len(events) - 3, warmup=3)
    Event.objects.filter(source="bench").delete()
    return samples


def run(scale: float) -> list[dict]:
    total = max(BATCH * 5, int(100_000 * scale) // BATCH * BATCH)
    contacts = max(1000, int(20_000 * scale))
    seed.reset()
    seed.contacts(contacts, stage_sql="'lead'")
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id), max(id) + 1 FROM contacts_contact")
        contact_ids = list(range(*cursor.fetchone()))

    key, plain = api_key_create(name="bench-ingest")
    key.rate_per_minute = 1_000_000_000
    key.save(update_fields=["rate_per_minute"])
    authorization = f"Bearer {plain}"
    client = Client(HTTP_HOST="localhost")

    rng = random.Random(42)
    events = make_events(contact_ids, total, rng, "ingest")
    batches = [events[i : i + BATCH] for i in range(0, total, BATCH)]
    bodies = [as_json(batch) for batch in batches]
    singles = make_events(contact_ids, SINGLES + 3, rng, "single")
    single_bodies = [as_json([event]) for event in singles]

    # Baselines: the same rows inserted with raw SQL (then deleted).
    raw_seconds = raw_insert(batches)
    raw_single = raw_single_ms(singles)

    with processing_deferred():
        # Warm up the code paths (and the connection's scratch table) with one small batch.
        warm = make_events(contact_ids, 10, rng, "warmup")
        post(client, as_json(warm), authorization, expect_stored=10)

        started = time.perf_counter()
        for body in bodies:
            post(client, body, authorization, expect_stored=BATCH)
        api_seconds = time.perf_counter() - started

        queue = iter(single_bodies)
        single = timings_ms(
            lambda: post(client, next(queue), authorization, expect_stored=1),
            repeat=SINGLES,
            warmup=3,
        )

    stored = Event.objects.filter(source="bench", idempotency_key__startswith="ingest-").count()
    assert stored == total, (stored, total)
    unprocessed = Event.objects.filter(source="bench").unprocessed().count()
    assert unprocessed == total + SINGLES + 3 + len(warm), unprocessed
    Event.objects.filter(source="bench").delete()
    key.delete()

    rate, raw_rate = total / api_seconds, total / raw_seconds
    p50, p95 = percentile(single, 50), percentile(single, 95)
    common = {
        "processing": "deferred to workers",
        "transport": "Django test client through the WSGI handler, one kept-open connection",
        "contacts": contacts,
    }
    return [
        result(
            name=NAME,
            metric=f"events/s through POST {PATH}, batches of {BATCH:,} ({total:,} events)",
            value=rate,
            unit="events/s",
            baseline=raw_rate,
            target=f">= {TARGET_RATE:,} events/s",
            passed=rate >= TARGET_RATE,
            scale=scale,
            raw_insert_events_per_s=round(raw_rate),
            seconds=round(api_seconds, 2),
            **common,
        ),
        result(
            name=NAME,
            metric=f"p95 of POST {PATH} with one event ({SINGLES} requests)",
            value=p95,
            unit="ms",
            baseline=percentile(raw_single, 95),
            target=f"p95 < {TARGET_P95_MS} ms",
            passed=p95 < TARGET_P95_MS,
            scale=scale,
            p50_ms=round(p50, 2),
            raw_single_insert_p50_ms=round(percentile(raw_single, 50), 2),
            **common,
        ),
    ]
