"""One rate limiter for the public endpoints: a fixed one-minute window per caller, counted in
the cache (Redis when configured, so every web process shares the count)."""

from __future__ import annotations

from django.core.cache import cache
from django.utils import timezone


def seconds_to_wait(scope: str, limit: int) -> int:
    """Count one request for ``scope``; 0 if it is within ``limit`` this minute, else the
    seconds until the next minute (for Retry-After)."""
    now = timezone.now()
    bucket = f"rate:{scope}:{now:%Y%m%d%H%M}"
    cache.add(bucket, 0, timeout=90)
    return 0 if cache.incr(bucket) <= limit else 60 - now.second
