"""Live scoring: events/s through the event handler in batches of 1,000 (stored, scored,
taken off the queue), against a raw SQL insert of the same event rows in the same run.

Measured in the production shape: this process stores each batch as the API does
(``events_record_many``), whose commit sends the batch's task through Redis to a real Celery
worker with the compose file's concurrency (2), which scores it. The clock stops when the
last event has been handled. The same stream stored and scored in turn by one process, as
the previous sessions measured it, is reported beside it.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from django.db import connection, transaction
from django.utils import timezone

from bench import seed
from bench.common import (
    bench_redis_url,
    cpu_seconds,
    database_backends,
    machine_busy_seconds,
    process_tree,
    result,
    server_env,
)
from contacts.events import NewEvent, events_record_many
from contacts.models import Event, PendingEvent
from contacts.pipeline import events_process

NAME = "scoring"
BATCH = 1000
WORKER_CONCURRENCY = 2  # docker-compose.yml's worker
CPU: dict[str, float] = {}  # CPU seconds of the worker run, by process kind
ROOT = Path(__file__).resolve().parent.parent
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
    _vacuum()
    return seconds


def through_handler(rows: list[list[Event]], prefix: str = "") -> float:
    """One process: store each batch as the app does (events_record_many), then process it
    the way the worker does when the after-commit task arrives (here, eagerly)."""
    started = time.perf_counter()
    for batch in rows:
        ids = events_record_many(events=[
            NewEvent(e.contact_id, e.type, e.occurred_at, e.properties, e.source,
                     prefix + e.idempotency_key) for e in batch
        ])  # fmt: skip
        events_process(event_ids=ids)
    return time.perf_counter() - started


def through_worker(rows: list[list[Event]]) -> float:
    """The production shape: batches stored here, scored by a Celery worker (prefork,
    concurrency 2) that receives each batch's task through Redis after its commit."""
    import redis

    from leadfunnel.celery import app as celery_app

    redis_url = bench_redis_url()
    redis.Redis.from_url(redis_url).flushdb()
    env = server_env(redis_url)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "leadfunnel", "worker",
         "--concurrency", str(WORKER_CONCURRENCY), "--without-heartbeat", "--without-mingle",
         "--without-gossip", "-l", "WARNING"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    saved = celery_app.conf.task_always_eager, celery_app.conf.broker_url
    celery_app.conf.task_always_eager, celery_app.conf.broker_url = False, redis_url
    celery_app.amqp._producer_pool = None
    celery_app._pool = None
    try:
        _wait_for_worker(celery_app)
        workers, backends = process_tree(worker.pid), database_backends()
        before = cpu_seconds(workers | backends)
        mine, busy = time.process_time(), machine_busy_seconds()
        started = time.perf_counter()
        for batch in rows:
            events_record_many(events=[
                NewEvent(e.contact_id, e.type, e.occurred_at, e.properties, e.source,
                         e.idempotency_key) for e in batch
            ])  # fmt: skip
        waiting, moved_at = None, time.perf_counter()
        # Polled on the narrow queue table: counting the unhandled events through the events
        # table would cost the database more than the workers' own reads.
        while left := PendingEvent.objects.count():
            if left != waiting:
                waiting, moved_at = left, time.perf_counter()
            if worker.poll() is not None or time.perf_counter() - moved_at > 60:
                raise RuntimeError(f"the worker stopped with {left} events not handled")
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        CPU["producer"] = time.process_time() - mine
        CPU["whole machine"] = machine_busy_seconds() - busy
        workers, backends = process_tree(worker.pid), database_backends()
        after = cpu_seconds(workers | backends)
        spent = {pid: used - before.get(pid, 0) for pid, used in after.items()}
        CPU["worker"] = sum(spent.get(pid, 0) for pid in workers)
        CPU["database"] = sum(spent.get(pid, 0) for pid in backends)
        return seconds
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        celery_app.conf.task_always_eager, celery_app.conf.broker_url = saved
        celery_app.amqp._producer_pool = None
        celery_app._pool = None
        redis.Redis.from_url(redis_url).flushdb()


def _wait_for_worker(celery_app) -> None:
    """Until the worker answers a ping, so its start-up is not timed."""
    for _ in range(120):
        if celery_app.control.ping(timeout=0.5):
            return
    raise RuntimeError("the Celery worker did not start")


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
    # One process storing and scoring in turn (the earlier sessions' figure), on a copy of
    # the contacts' state that is put back afterwards, so the worker run starts the same.
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE saved_contacts AS "
            "SELECT id, score, stage, stage_entered_at, last_activity_at FROM contacts_contact"
        )
    serial_seconds = through_handler(rows, prefix="serial-")
    _restore(contacts_table="saved_contacts")
    handler_seconds = through_worker(rows)
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
            shape=f"stored by this process, scored by a Celery worker (Redis, prefork, "
            f"concurrency {WORKER_CONCURRENCY})",
            cpu_ms_per_batch={
                kind: round(1000 * used / (total / BATCH), 1) for kind, used in CPU.items()
            },  # fmt: skip
            one_process_events_per_s=round(total / serial_seconds),
            one_process_ratio=round(raw_seconds / serial_seconds, 2),
            contacts=contacts,
        )  # fmt: skip
    ]


def _id_range() -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id), max(id) + 1 FROM contacts_contact")
        return cursor.fetchone()


def _restore(*, contacts_table: str) -> None:
    """Put the contacts back as they were and remove what the one-process run wrote."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE contacts_contact AS c SET score = s.score, stage = s.stage, "  # noqa: S608
            f"stage_entered_at = s.stage_entered_at, last_activity_at = s.last_activity_at "
            f"FROM {contacts_table} AS s WHERE c.id = s.id"
        )
        cursor.execute("TRUNCATE scoring_scoreentry, contacts_stagestay, contacts_eventdailycount")
        cursor.execute("DELETE FROM contacts_stagechange")
        cursor.execute("DELETE FROM contacts_event")
        cursor.execute(f"DROP TABLE {contacts_table}")
    _vacuum()


def _vacuum() -> None:
    # Autovacuum may be off (it is on the CI machine): the next run must not start among the
    # dead rows of the previous one, nor with the statistics of an empty table.
    with connection.cursor() as cursor:
        for table in ("contacts_contact", "contacts_event", "contacts_pendingevent"):
            cursor.execute(f"VACUUM ANALYZE {table}")
