from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit


def wait_for(
    condition: Callable[[], object], *, timeout: float = 30, interval: float = 0.1
) -> object:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        pause.wait(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_pending(event) -> bool:
    """Still waiting for the event handlers (or failing in one)."""
    from contacts.models import PendingEvent

    return PendingEvent.objects.filter(event_id=event.pk).exists()


def record(contact, type, *, capture, key=None, occurred_at=None, **properties):  # noqa: A002
    """Record an event as the app does and run its after-commit work (scoring) right away."""
    from contacts.events import event_record

    with capture(execute=True):
        event, _ = event_record(
            contact=contact, type=type, occurred_at=occurred_at, properties=properties,
            idempotency_key=key,
        )  # fmt: skip
    contact.refresh_from_db()
    return event


def redis_test_url() -> str:
    """The developer's REDIS_URL with a database number of the tests' own (TEST_REDIS_DB)."""
    parts = urlsplit(os.environ["REDIS_URL"])
    return urlunsplit(parts._replace(path=f"/{os.environ.get('TEST_REDIS_DB', '13')}"))


def redis_server(port: int, *arguments: str) -> subprocess.Popen[bytes]:
    """A throwaway redis-server on ``port`` (tests stop, kill and restart it), with ``arguments``
    (persistence, data folder); answers PING before this returns."""
    command = ["redis-server", *arguments, "--port", str(port), "--bind", "127.0.0.1"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    wait_for(lambda: _redis_answers(f"redis://127.0.0.1:{port}/0"), timeout=20)
    return server


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.exceptions.ConnectionError:
        return False
