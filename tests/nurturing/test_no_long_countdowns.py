"""With Redis, a task scheduled further ahead than the visibility timeout is delivered again:
timed work lives in the database, and nothing is ever queued more than 5 minutes ahead."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

from django.conf import settings

from nurturing import engine

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 300
SOURCES = [
    path
    for folder in ("contacts", "scoring", "nurturing", "leadfunnel")
    for path in (ROOT / folder).rglob("*.py")
    if "tests" not in path.parts and "migrations" not in path.parts
]


def test_no_task_is_queued_with_an_eta_or_a_countdown_beyond_five_minutes():
    assert len(SOURCES) > 20, "the scan found the code"
    offending = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                if keyword.arg in ("eta", "countdown", "default_retry_delay"):
                    value = keyword.value
                    literal = isinstance(value, ast.Constant) and isinstance(
                        value.value, int | float
                    )
                    if not literal or value.value > LIMIT:
                        offending.append(f"{path.relative_to(ROOT)}:{node.lineno} {keyword.arg}")
    assert offending == []


def test_retries_and_beat_ticks_stay_within_five_minutes_and_the_visibility_timeout():
    assert max(engine.retry_delay(n) for n in range(100)) <= timedelta(seconds=LIMIT)
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        expires = entry.get("options", {}).get("expires")
        assert expires is None or expires <= LIMIT, name
    timeout = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600)
    assert settings.NURTURING_SEND_LEASE_SECONDS <= LIMIT < timeout
    assert settings.CELERY_TASK_ACKS_LATE and settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
