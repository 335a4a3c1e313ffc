"""Sending a task without letting a down broker stall or break the caller.

Nothing depends on the message arriving: every task has a database-backed sweep behind it
(unprocessed events, queued rescores). So a failed send is logged and skipped, and after one
failure we stop trying for a while, because each attempt stalls for seconds in redis-py's own
connection retries.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 30.0
_down_until = 0.0


def send(task: Any, *args: Any) -> bool:
    """Queue ``task(*args)``; False when the broker is (or was just found) unavailable.

    ``task`` is the task or its dotted name ("contacts.tasks.process_events_task"): services send
    by name, so that they never import the tasks modules that import them.
    """
    global _down_until
    if isinstance(task, str):
        task = import_string(task)
    if time.monotonic() < _down_until:
        logger.info("Broker marked down; %s%s is left to the sweep.", task.name, args)
        return False
    try:
        task.apply_async(args=args, retry=False)
    except Exception:
        _down_until = time.monotonic() + RETRY_AFTER_SECONDS
        logger.warning("Broker unavailable; %s%s will be picked up by the sweep.", task.name, args)
        return False
    return True


def reset() -> None:
    """Forget a past failure (tests, or an operator who knows the broker is back)."""
    global _down_until
    _down_until = 0.0
