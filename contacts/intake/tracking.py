"""The page-view queue: with Redis, a beacon costs one Redis round trip instead of a transaction.

Page views are analytics: a beacon pushes its view onto a Redis list and answers at once; the
drain (``services.page_views_drain``, run by beat every few seconds and kicked after pushes)
stores them in batches. Forms, API events and purchases stay database-first.

Nothing is lost when a drainer dies: one drainer at a time holds a lock, moves a batch from the
queue onto a processing list, stores it, and only then trims it from that list. The next drainer
finds a batch left on the processing list and stores it again; each view carries its own id,
turned into the event's idempotency key, so a batch stored twice is stored once.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from contacts import broker
from contacts.outage import Outage

logger = logging.getLogger(__name__)

QUEUE = "leadfunnel:page_views"
PROCESSING = "leadfunnel:page_views:processing"
LOCK = "leadfunnel:page_views:drain"
KICK = "leadfunnel:page_views:kick"
FAILURES = "leadfunnel:page_views:failures"
# Views that could not be stored even alone: kept for a person to look at, never dropped.
SET_ASIDE = "leadfunnel:page_views:set_aside"
# A drainer that has not renewed its lock for this long is taken for dead.
LOCK_MS = 60_000
# At most one drain task per this many ms from the pushes (beat sweeps behind them anyway).
KICK_MS = 1_000

# Moves up to ARGV[1] views from the head of the queue to the processing list, atomically.
_TAKE = """
local views = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #views > 0 then
  redis.call('RPUSH', KEYS[2], unpack(views))
  redis.call('LTRIM', KEYS[1], #views, -1)
end
return views
"""
_PUSH = """
redis.call('RPUSH', KEYS[1], ARGV[1])
return redis.call('SET', KEYS[2], '1', 'NX', 'PX', tonumber(ARGV[2])) and 1 or 0
"""
# Drops the first ARGV[2] views of the processing list, if this drainer still holds the lock
# (one whose lock expired must not trim what the next drainer put there), and renews the lock.
_DONE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('LTRIM', KEYS[1], tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]))
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# After a failure, beacons store their views directly for this long before trying Redis again.
outage = Outage("Page view queue", retry_after=10.0, logger=logger)


def enabled() -> bool:
    return bool(settings.PAGE_VIEW_QUEUE_URL)


@cache
def _client(url: str) -> Any:
    import redis

    # Short: a beacon waits for this, then stores its view directly (services.page_view_capture).
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def client() -> Any:
    return _client(settings.PAGE_VIEW_QUEUE_URL)


@cache
def _script(url: str, source: str) -> Any:
    # Sent by hash (EVALSHA); loaded again by redis-py if Redis restarted and forgot it.
    return _client(url).register_script(source)


def script(source: str, keys: list[str], *args: Any) -> Any:
    return _script(settings.PAGE_VIEW_QUEUE_URL, source)(keys=keys, args=args)


@dataclass(frozen=True)
class QueuedView:
    """A page view as the beacon received it; ``id`` makes its idempotency key."""

    id: str
    visitor_id: str
    url: str
    title: str
    referrer: str
    utm: dict[str, str]
    at: datetime

    @property
    def idempotency_key(self) -> str:
        return f"page_view:{self.id}"

    def dump(self) -> str:
        fields = {**vars(self), "at": self.at.isoformat()}
        return json.dumps(fields, separators=(",", ":"))


def push(*, visitor_id: str, url: str, title: str, referrer: str, utm: dict[str, str]) -> None:
    """Queue a page view (one round trip), and kick a drain at most once a second."""
    view = QueuedView(
        id=secrets.token_hex(12), visitor_id=visitor_id, url=url, title=title,
        referrer=referrer, utm=utm, at=timezone.now(),
    )  # fmt: skip
    if script(_PUSH, [QUEUE, KICK], view.dump(), KICK_MS):
        broker.send("contacts.tasks.drain_page_views_task")


def parse(raw: bytes) -> QueuedView | None:
    try:
        data = json.loads(raw)
        at = parse_datetime(data["at"])
        if at is None:
            raise ValueError("no date")
        return QueuedView(
            id=str(data["id"]), visitor_id=str(data["visitor_id"]), url=str(data["url"]),
            title=str(data["title"]), referrer=str(data["referrer"]),
            utm={str(k): str(v) for k, v in dict(data["utm"]).items()}, at=at,
        )  # fmt: skip
    except (ValueError, KeyError, TypeError):
        logger.warning("Dropped an unreadable queued page view: %r", raw[:200])
        return None


def lock() -> str | None:
    """Become the drainer; the token to hand back, or None if another drainer is at work."""
    token = secrets.token_hex(8)
    return token if client().set(LOCK, token, nx=True, px=LOCK_MS) else None


def release(token: str) -> None:
    script(_RELEASE, [LOCK], token)


def take(count: int) -> list[bytes]:
    """The next batch: first what a dead drainer left on the processing list, else the head of
    the queue, moved to the processing list."""
    left = client().lrange(PROCESSING, 0, count - 1)
    if left:
        return left
    return script(_TAKE, [QUEUE, PROCESSING], count)


def done(token: str, count: int) -> bool:
    """Forget a stored batch; False if the lock was lost meanwhile (then stop draining)."""
    return bool(script(_DONE, [PROCESSING, LOCK], token, count, LOCK_MS))


def waiting() -> int:
    """Views not stored yet (queued or in a batch being stored)."""
    pipe = client().pipeline(transaction=False)
    pipe.llen(QUEUE)
    pipe.llen(PROCESSING)
    return sum(pipe.execute())


def failed_again() -> int:
    """Count one more failed attempt at the batch in hand; how many in a row so far."""
    pipe = client().pipeline(transaction=False)
    pipe.incr(FAILURES)
    pipe.pexpire(FAILURES, 3_600_000)
    return int(pipe.execute()[0])


def forget_failures() -> None:
    client().delete(FAILURES)


def set_aside(view: QueuedView) -> None:
    client().rpush(SET_ASIDE, view.dump())
