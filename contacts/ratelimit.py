"""One rate limiter for the public endpoints: a fixed one-minute window per caller, counted in
the cache (Redis when configured, so every web process shares the count).

A counter is never worth a lead: when the cache fails, each web process counts on its own in
memory until the cache answers again (tried every CACHE_RETRY_SECONDS), so a limit still holds,
per process instead of for the whole site, and no request fails for want of a counter.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from django.core.cache import cache
from django.utils import timezone

from contacts.outage import Outage

logger = logging.getLogger(__name__)

CACHE_RETRY_SECONDS = 10.0
outage = Outage("Rate-limit cache", retry_after=CACHE_RETRY_SECONDS, logger=logger)


def seconds_to_wait(scope: str, limit: int) -> int:
    """Count one request for ``scope``; 0 if it is within ``limit`` this minute, else the
    seconds until the next minute (for Retry-After)."""
    now = timezone.now()
    bucket = f"rate:{scope}:{now:%Y%m%d%H%M}"
    count = None if outage.ongoing() else _count_shared(bucket)
    if count is None:
        count = _here.count(bucket, now)
    return 0 if count <= limit else 60 - now.second


def _count_shared(bucket: str) -> int | None:
    try:
        cache.add(bucket, 0, timeout=90)
        return int(cache.incr(bucket))
    except Exception:  # whatever the cache backend raises: ConnectionError, TimeoutError…
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
