"""One rate limiter for the public endpoints (forms, the API, the beacon): a fixed one-minute
window per caller, counted in Redis when there is one (RATE_LIMIT_URL: every web process shares
the count, one round trip per request), else in this process's memory.

A counter is never worth a lead: when Redis fails, each web process counts on its own in memory
until Redis answers again (tried every CACHE_RETRY_SECONDS), so a limit still holds, per process
instead of for the whole site, and no request fails or waits for want of a counter.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from functools import cache
from typing import Any

from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisError

from contacts.outage import Outage

logger = logging.getLogger(__name__)

CACHE_RETRY_SECONDS = 10.0
outage = Outage("Rate-limit counter", retry_after=CACHE_RETRY_SECONDS, logger=logger)


def seconds_to_wait(scope: str, limit: int) -> int:
    """Count one request for ``scope``; 0 if it is within ``limit`` this minute, else the
    seconds until the next minute (for Retry-After)."""
    now = timezone.now()
    bucket = f"leadfunnel:rate:{scope}:{now:%Y%m%d%H%M}"
    count = None
    if settings.RATE_LIMIT_URL and not outage.ongoing():
        count = _count_shared(bucket)
    if count is None:
        count = _here.count(bucket, now)
    return 0 if count <= limit else 60 - now.second


@cache
def _client(url: str) -> Any:
    import redis

    # Short timeouts: a Redis that hangs costs a request one second, once per outage.
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def _count_shared(bucket: str) -> int | None:
    try:
        pipe = _client(settings.RATE_LIMIT_URL).pipeline(transaction=False)
        pipe.incr(bucket)
        pipe.expire(bucket, 90)
        return int(pipe.execute()[0])
    except RedisError:
        outage.begin("rate limits are counted per web process meanwhile")
        return None


class _ProcessCounter:
    """This process's counts for the current minute only (older buckets are dropped)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.minute = ""
        self.counts: dict[str, int] = {}

    def count(self, bucket: str, now: datetime) -> int:
        minute = f"{now:%Y%m%d%H%M}"
        with self.lock:
            if minute != self.minute:
                self.minute, self.counts = minute, {}
            self.counts[bucket] = self.counts.get(bucket, 0) + 1
            return self.counts[bucket]


_here = _ProcessCounter()


def reset() -> None:
    """Forget this process's counts and any outage (tests)."""
    global _here
    _here = _ProcessCounter()
    outage.reset()
