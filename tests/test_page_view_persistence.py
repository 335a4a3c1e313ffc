"""Page views answered 204 survive a Redis restart in the production shape (docker-compose.yml's
Redis settings), and the drain has worker slots of its own there."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.urls import reverse

from contacts.intake import tracking
from contacts.intake.page_views import page_views_drain
from contacts.models import Event
from leadfunnel.celery import app as celery_app
from tests.utils import free_port, redis_server

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def compose_redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    """redis-server with the compose service's arguments, its data folder in ``folder``."""
    command = COMPOSE["services"]["redis"]["command"]
    assert command[0] == "redis-server"
    return redis_server(port, *command[1:], "--dir", str(folder))


@pytest.mark.django_db
@pytest.mark.reliability
@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server on the PATH")
def test_queued_page_views_survive_a_redis_restart_with_the_compose_settings(
    client, settings, tmp_path
):
    port = free_port()
    settings.PAGE_VIEW_QUEUE_URL = f"redis://127.0.0.1:{port}/0"
    server = compose_redis(port, tmp_path)
    try:
        tracking.client().set(tracking.KICK, b"1", px=600_000)  # no drain before the restart
        for n in range(50):
            view = {"visitor_id": f"visitor-{n % 5:08d}", "url": f"https://www.exemple.fr/{n}"}
            body = json.dumps(view)
            response = client.post(reverse("beacon"), data=body, content_type="text/plain")
            assert response.status_code == 204
        assert tracking.waiting() == 50 and not Event.objects.exists()
        _aof_written(tracking.client())

        server.kill()  # no shutdown, no last save
        server.wait(timeout=20)
        server = compose_redis(port, tmp_path)

        assert page_views_drain() == 50
    finally:
        server.kill()
        server.wait(timeout=20)
    stored = Event.objects.filter(type="page_view").values_list("properties__url", flat=True)
    assert sorted(stored) == sorted(f"https://www.exemple.fr/{n}" for n in range(50))


def _queues(service: str) -> set[str]:
    command = COMPOSE["services"][service]["command"]
    return set(command[command.index("-Q") + 1].split(","))


def _queue_of(task: str) -> str:
    return celery_app.amqp.router.route({}, task)["queue"].name


def test_the_drain_and_event_processing_have_worker_slots_that_sending_cannot_take():
    services_ = COMPOSE["services"].items()
    workers = [name for name, service in services_ if "worker" in service.get("command", [])]
    intake = _queue_of("contacts.tasks.drain_page_views_task")
    assert _queue_of("contacts.tasks.process_events_task") == intake
    slow = {_queue_of("nurturing.tasks.send_messages_task"), celery_app.conf.task_default_queue}
    assert intake not in slow
    drainers = [name for name in workers if intake in _queues(name)]
    assert drainers and all(not _queues(name) & slow for name in drainers)
    # Every queue has a consumer in compose; a worker started without -Q (make run's) takes all.
    assert set().union(*(_queues(name) for name in workers)) == set(celery_app.amqp.queues)


def _aof_written(redis) -> None:  # type: ignore[no-untyped-def]
    """Wait until Redis has handed its append-only file what it acknowledged: with
    ``appendfsync everysec`` it postpones that write while a slow fsync runs (a loaded CI disk),
    and a kill then loses what it would have written a moment later. The crash this test makes
    is of the process, after Redis did what its settings promise."""
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        info = redis.info("persistence")
        if not info.get("aof_buffer_length") and not info.get("aof_pending_bio_fsync"):
            return
        redis.ping()  # one more turn of its event loop, where the write happens
        time.sleep(0.05)
    raise AssertionError(f"Redis kept its append-only file behind: {info}")
