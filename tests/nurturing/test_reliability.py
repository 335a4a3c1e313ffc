"""Real processes: a Celery worker killed with SIGKILL mid-batch, a Redis that goes away.

Every due message must reach a real SMTP server (aiosmtpd) exactly once. These tests run a
worker subprocess on PostgreSQL and on a Redis database of their own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from contacts import broker
from nurturing import enrolment
from nurturing.models import Enrollment, Message
from nurturing.tasks import nurturing_tick_task
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with, wait_step
from tests.test_event_delivery import broker_at  # noqa: F401 (fixture)
from tests.utils import free_port, redis_test_url, wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.reliability,
    pytest.mark.django_db(transaction=True),
]


def start_worker(redis_url: str, smtp_port: int) -> subprocess.Popen[str]:
    database = connection.settings_dict
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DATABASE_URL": (
            f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:"
            f"{database['PORT'] or 5432}/{database['NAME']}"
        ),
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
        "EMAIL_BACKEND": settings.EMAIL_BACKEND,  # the smtp fixture's
        "NURTURING_DAILY_EMAIL_CAP": "0",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "leadfunnel", "worker", "--pool=solo",
         "--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.terminate()
    output, _ = process.communicate(timeout=30)
    return output or ""


def enrol(sequence, count: int) -> None:
    first = sequence.steps.get(position=1)
    Enrollment.objects.bulk_create(
        Enrollment(contact=contact, sequence=sequence, step=first, next_run_at=timezone.now())
        for contact in ContactFactory.create_batch(count)
    )


def unlocked_due() -> int:
    """Due enrolments nobody holds a lock on (a worker mid-batch holds them all)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM (SELECT id FROM nurturing_enrollment WHERE status = 'active' "
            "AND next_run_at <= now() FOR UPDATE SKIP LOCKED) AS free"
        )
        return cursor.fetchone()[0]


def worker_mid_batch() -> bool:
    """A session of the worker is inside the scheduler's transaction (seen without taking any
    lock: probing with FOR UPDATE SKIP LOCKED would make the worker skip the probed rows)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL "
            "AND query ILIKE %s",
            ["%nurturing_%"],
        )
        return cursor.fetchone()[0] > 0 and Message.objects.count() == 0


def delivered_once(smtp, count: int) -> None:
    ids = [received.message["Message-ID"] for received in smtp.received]
    assert len(ids) == count, f"{len(ids)} deliveries for {count} messages"
    assert len(set(ids)) == count
    assert set(ids) == set(Message.objects.values_list("message_id", flat=True))


def test_a_worker_killed_mid_batch_loses_and_doubles_nothing(smtp, broker_at):  # noqa: F811
    import redis

    url = redis_test_url()
    redis.Redis.from_url(url).flushdb()
    broker_at(url)
    sequence = sequence_with(email_step(), wait_step(days=2), email_step(subject="Rappel"))
    enrol(sequence, 400)
    worker = start_worker(url, smtp.controller.port)
    output = ""
    try:
        nurturing_tick_task.delay()
        # Mid-batch: the worker holds the row locks of its open transaction.
        wait_for(worker_mid_batch, timeout=90, interval=0.005)
        os.kill(worker.pid, signal.SIGKILL)
        output += stop(worker)

        # Its transaction died with it: nothing was written, nothing sent, all still due
        # (PostgreSQL releases the dead session's locks once it notices the closed socket).
        assert Message.objects.count() == 0
        wait_for(lambda: unlocked_due() == 400, timeout=30)
        assert smtp.received == []

        worker = start_worker(url, smtp.controller.port)
        nurturing_tick_task.delay()  # beat's next tick
        wait_for(lambda: Message.objects.filter(status="sent").count() == 400, timeout=120)
    finally:
        output += stop(worker)
        redis.Redis.from_url(url).flushdb()
    assert not Message.objects.exclude(status="sent").exists()
    delivered_once(smtp, 400)
    assert Enrollment.objects.filter(next_run_at__gt=timezone.now()).count() == 400
    assert "Traceback" not in output, output


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server on the PATH")
def test_redis_stopped_for_a_while_loses_nothing(smtp, broker_at, caplog):  # noqa: F811
    port = free_port()
    command = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
               "--bind", "127.0.0.1"]  # fmt: skip
    redis_server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    wait_for(lambda: _pings(url), timeout=20)
    broker_at(url)
    sequence = sequence_with(email_step(), wait_step(days=2))
    enrol(sequence, 50)
    worker = start_worker(url, smtp.controller.port)
    try:
        nurturing_tick_task.delay()
        wait_for(lambda: len(smtp.received) == 50, timeout=90)

        redis_server.terminate()
        redis_server.wait(timeout=20)
        # While Redis is away: new enrolments are stored; the tick they kick cannot be sent.
        contacts = ContactFactory.create_batch(50)
        enrolment.enrollments_start(sequence=sequence, contact_ids=[c.pk for c in contacts])
        assert "Broker unavailable" in caplog.text
        assert Enrollment.objects.filter(status="active", step__position=1).count() == 50

        # Redis comes back empty (no persistence): every queued task is gone.
        redis_server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_for(lambda: _pings(url), timeout=20)
        broker.reset()
        nurturing_tick_task.delay()  # beat's next tick: the database knows what is due
        wait_for(lambda: len(smtp.received) >= 100, timeout=120)
        wait_for(lambda: not Message.objects.exclude(status="sent").exists(), timeout=60)
    finally:
        output = stop(worker)
        redis_server.terminate()
        redis_server.wait(timeout=20)
    delivered_once(smtp, 100)
    assert "raised unexpected" not in output, output  # no task failed


def _pings(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.exceptions.ConnectionError:
        return False
