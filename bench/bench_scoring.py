"""Live scoring: events/s through the event handler in batches of 1,000 (stored, scored,
marked processed), against a raw SQL insert of the same event rows in the same run."""

from __future__ import annotations

import random
import time
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from bench import seed
from bench.common import result
from contacts.models import Event
from contacts.services import NewEvent, events_process, events_record_many

NAME = "scoring"
BATCH = 1000
# A realistic stream: mostly page views and opens, a demo request now and then.
KINDS = [
    (50, "page_view", {"url": "/blog/scoring", "title": "Le lead scoring"}),
    (8, "page_view", {"url": "/pricing", "content_tag": "pricing"}),
    (2, "page_view", {"url": "/careers"}), (12, "page_view", {"url": "/features"}),
    (15, "email_open", {"user_agent": "Mozilla/5.0"}),
    (5, "email_click", {"user_agent": "Mozilla/5.0", "seconds_after_send": 3600}),
    (4, "download", {"file": "guide.pdf"}), (2, "newsletter_subscribe", {}),
    (1.5, "form_submit", {"form": "contact"}), (0.5, "demo_request", {}),
]  # fmt: skip


def make_events(
    contact_ids: list[int], total: int, rng: random.Random, prefix: str = "bench"
) -> list[Event]:
    """A realistic stream (the mix above), each event with its own idempotency key."""
    now = timezone.now()
    weights = [weight for weight, _, _ in KINDS]
    events = []
    for n in range(total):
        _, kind, properties = rng.choices(KINDS, weights)[0]
        events.append(
            Event(
                contact_id=rng.choice(contact_ids),
                type=kind,
                properties=dict(properties),
                occurred_at=now - timedelta(minutes=rng.randint(0, 100_000)),
                received_at=now,
                source="bench",
                idempotency_key=f"{prefix}-{n}",
            )  # fmt: skip
        )
    return events


def batches(contact_ids: list[int], total: int, rng: random.Random) -> list[list[Event]]:
    # In time order, as a live stream arrives: each batch moves its contacts' last activity.
    rows = sorted(make_events(contact_ids, total, rng), key=lambda event: event.occurred_at)
    return [rows[i : i + BATCH] for i in range(0, total, BATCH)]


def raw_insert(rows: list[list[Event]]) -> float:
    sql = (
        "INSERT INTO contacts_event (contact_id, type, occurred_at, received_at, properties, "
        "source, idempotency_key) VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s)"
    )
    import json

    started = time.perf_counter()
    for batch in rows:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, [
                (e.contact_id, e.type, e.occurred_at, e.received_at, json.dumps(e.properties),
                 e.source, e.idempotency_key) for e in batch
            ])  # fmt: skip
    seconds = time.perf_counter() - started
    Event.objects.filter(source="bench").delete()
    return seconds


def through_handler(rows: list[list[Event]]) -> float:
    """Store each batch as the app does (events_record_many), then process it the way the
    worker does when the after-commit task arrives."""
    started = time.perf_counter()
    for batch in rows:
        ids = events_record_many(events=[
            NewEvent(e.contact_id, e.type, e.occurred_at, e.properties, e.source,
                     e.idempotency_key) for e in batch
        ])  # fmt: skip
        events_process(event_ids=ids)
    return time.perf_counter() - started


def run(scale: float) -> list[dict]:
    total = max(BATCH * 5, int(100_000 * scale) // BATCH * BATCH)
    contacts = max(1000, int(20_000 * scale))
    seed.reset()
    # Contacts already on their way: a score and the stage it earned.
    seed.contacts(contacts, stage_sql="'lead'")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE contacts_contact SET score = (id * 7919) % 70, stage = CASE "
            "WHEN (id * 7919) % 70 >= 60 THEN 'sql' WHEN (id * 7919) % 70 >= 20 THEN 'mql' "
            "ELSE 'lead' END, last_activity_at = now() - interval '100 days'"
        )
        cursor.execute("VACUUM ANALYZE contacts_contact")
    contact_ids = list(range(*_id_range()))
    rng = random.Random(42)
    rows = batches(contact_ids, total, rng)

    raw_seconds = raw_insert(rows)
    handler_seconds = through_handler(rows)
    stored = Event.objects.filter(source="bench").count()
    waiting = Event.objects.filter(source="bench").unprocessed().count()
    assert stored == total and waiting == 0, (stored, waiting, total)

    rate, raw_rate = total / handler_seconds, total / raw_seconds
    return [
        result(
            name=NAME,
            metric=f"events/s through the handler, batches of {BATCH} ({total:,} events)",
            value=rate,
            unit="events/s",
            baseline=raw_rate,
            target=">= 10,000 events/s and >= 0.2 x raw insert",
            passed=rate >= 10_000 and rate >= 0.2 * raw_rate,
            scale=scale,
            raw_insert_events_per_s=round(raw_rate),
            contacts=contacts,
        )  # fmt: skip
    ]


def _id_range() -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id), max(id) + 1 FROM contacts_contact")
        return cursor.fetchone()
