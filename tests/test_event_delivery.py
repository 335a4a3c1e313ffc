"""The event pipeline over a real broker: a real Celery worker, and a broker that is down."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from contacts import broker
from contacts.events import event_record
from contacts.pipeline import events_sweep
from leadfunnel.celery import app as celery_app
from tests.factories import ContactFactory
from tests.utils import free_port, is_pending, redis_test_url, wait_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def broker_at():
    """Point the Celery producer at another broker for one test, then restore it."""
    saved = (celery_app.conf.broker_url, celery_app.conf.task_always_eager)

    def switch(url: str) -> None:
        celery_app.conf.broker_url = url
        celery_app.conf.task_always_eager = False
        celery_app.amqp._producer_pool = None
        celery_app._pool = None

    yield switch
    broker.reset()
    celery_app.conf.broker_url, celery_app.conf.task_always_eager = saved
    celery_app.amqp._producer_pool = None
    celery_app._pool = None


@pytest.mark.django_db
def test_an_event_is_kept_when_the_broker_is_down_and_the_sweep_processes_it(
    broker_at, settings, django_capture_on_commit_callbacks, caplog
):
    broker_at(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    settings.LEADFUNNEL_EVENT_HANDLERS = ["tests.handlers.tag"]
    settings.EVENT_SWEEP_GRACE_SECONDS = 0
    contact = ContactFactory()

    with django_capture_on_commit_callbacks(execute=True):
        event, created = event_record(contact=contact, type="demo_request")
    with django_capture_on_commit_callbacks(execute=True):
        event_record(contact=contact, type="page_view")

    assert created
    assert "Broker unavailable" in caplog.text
    # After one failure the next event does not wait on the dead broker again.
    assert "Broker marked down" in caplog.text
    assert is_pending(event)  # the task could not be sent...

    assert events_sweep() == 2  # ...and the sweep makes up for it
    assert not is_pending(event)
    event.refresh_from_db()
    assert event.properties["tagged"] is True


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_processes_events_sent_through_redis(broker_at):
    import redis

    url = redis_test_url()
    redis.Redis.from_url(url).flushdb()
    broker_at(url)
    database = connection.settings_dict
    env = {
        **os.environ,
        "REDIS_URL": url,
        "DATABASE_URL": (
            f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:"
            f"{database['PORT'] or 5432}/{database['NAME']}"
        ),
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "LEADFUNNEL_EVENT_HANDLERS": "tests.handlers.tag",
        "PYTHONPATH": str(ROOT),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "leadfunnel", "worker", "--pool=solo",
         "--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        contact = ContactFactory()
        event, _ = event_record(contact=contact, type="download", properties={"file": "é.pdf"})

        wait_for(lambda: not is_pending(event))
        event.refresh_from_db()
        assert event.properties == {"file": "é.pdf", "tagged": True}
    finally:
        worker.terminate()
        output, _ = worker.communicate(timeout=20)
        redis.Redis.from_url(url).flushdb()
    assert "Traceback" not in output, output
