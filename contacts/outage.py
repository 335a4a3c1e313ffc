"""Remembering that a service on the request path (the cache, the page-view queue, the broker)
just failed, so that the requests that follow go straight to their fallback for a while instead
of each paying for a connection attempt, and the log says so once, not once per request."""

from __future__ import annotations

import logging
import time


class Outage:
    def __init__(self, service: str, *, retry_after: float, logger: logging.Logger) -> None:
        self.service = service
        self.retry_after = retry_after
        self.logger = logger
        self._until = 0.0
        self._warned_at = -float("inf")

    def ongoing(self) -> bool:
        """True while the service is taken for down: use the fallback without trying it."""
        return time.monotonic() < self._until

    def begin(self, fallback: str) -> None:
        """The service just failed: skip it for ``retry_after`` seconds. Warns at most once a
        minute, with what happens meanwhile."""
        now = time.monotonic()
        self._until = now + self.retry_after
        if now - self._warned_at >= 60:
            self._warned_at = now
            self.logger.warning(
                "%s unavailable; %s (tried again every %g s).",
                self.service, fallback, self.retry_after, exc_info=True,
            )  # fmt: skip

    def reset(self) -> None:
        """Forget a past failure (tests, or an operator who knows the service is back)."""
        self._until = 0.0
        self._warned_at = -float("inf")
