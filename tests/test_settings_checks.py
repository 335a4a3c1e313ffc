"""Settings that would break the app are refused at start with a clear message: by
`manage.py check` (and every command that runs the checks: migrate, runserver, serve), by
gunicorn, by the Celery worker and by beat (Django runs no checks in those three)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_settings import PRODUCTION, manage

ROOT = Path(__file__).resolve().parent.parent

BAD = [
    # 65 s or less left no time to send: every claimed batch was released at once.
    ("_lease_too_short", {"NURTURING_SEND_LEASE_SECONDS": "65"}, "NURTURING_SEND_LEASE_SECONDS"),
    ("_lease_for_a_slow_server", {"NURTURING_SEND_LEASE_SECONDS": "200", "EMAIL_TIMEOUT": "100"},
     "NURTURING_SEND_LEASE_SECONDS"),
    ("_tick_zero", {"NURTURING_TICK_SECONDS": "0"}, "NURTURING_TICK_SECONDS"),
    ("_drain_negative", {"PAGE_VIEW_DRAIN_SECONDS": "-1"}, "PAGE_VIEW_DRAIN_SECONDS"),
    ("_site_url_without_scheme", {"SITE_URL": "leadfunnel.example.com"}, "SITE_URL"),
    ("_site_url_ftp", {"SITE_URL": "ftp://leadfunnel.example.com"}, "SITE_URL"),
    ("_claim_release_zero", {"CLAIM_RELEASE_HOURS": "0"}, "CLAIM_RELEASE_HOURS"),
    ("_negative_rate", {"API_RATE_PER_MINUTE": "-5"}, "API_RATE_PER_MINUTE"),
    ("_negative_cap", {"NURTURING_DAILY_EMAIL_CAP": "-1"}, "NURTURING_DAILY_EMAIL_CAP"),
    ("_email_timeout_zero", {"EMAIL_TIMEOUT": "0"}, "EMAIL_TIMEOUT"),
    ("_open_tracking_typo", {"NURTURING_OPEN_TRACKING": "consented"}, "NURTURING_OPEN_TRACKING"),
    ("_dkim_key_missing", {"DKIM_SELECTOR": "lf2026", "DKIM_PRIVATE_KEY_FILE": "/nonexistent/dkim.pem"},
     "DKIM_PRIVATE_KEY_FILE"),
]  # fmt: skip


@pytest.mark.parametrize(("_case", "bad", "named"), BAD)
def test_manage_py_check_refuses_a_setting_that_would_break_the_app(_case, bad, named):
    result = manage("check", env={**PRODUCTION, **bad})

    assert result.returncode != 0, result.stdout
    assert "SystemCheckError" in result.stderr and named in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_refuses_too(tmp_path):
    env = {**PRODUCTION, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
           "NURTURING_SEND_LEASE_SECONDS": "60"}  # fmt: skip
    result = manage("migrate", "--noinput", env=env)
    assert result.returncode != 0
    assert "NURTURING_SEND_LEASE_SECONDS" in result.stderr


def embedded(tmp_path: Path, **bad: str) -> dict[str, str]:
    """The embedded default (SQLite, file-system broker) in a folder of the test's own."""
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    return {**env, "DEBUG": "true", "READ_DOT_ENV": "false",
            "LEADFUNNEL_VAR_DIR": str(tmp_path), **bad}  # fmt: skip


@pytest.mark.parametrize("process", ["worker", "beat"])
def test_the_celery_worker_and_beat_refuse_to_start(tmp_path, process):
    command = [sys.executable, "-m", "celery", "-A", "leadfunnel", process, "-l", "INFO"]
    if process == "worker":
        command += ["--pool=solo", "--without-heartbeat", "--without-gossip", "--without-mingle"]
    else:
        command += ["-s", str(tmp_path / "beat-schedule")]
    env = embedded(tmp_path, NURTURING_SEND_LEASE_SECONDS="65")

    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )  # a process that started would run until killed: the timeout fails the test

    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "NURTURING_SEND_LEASE_SECONDS" in output, output


def test_gunicorn_refuses_to_start(tmp_path):
    from tests.utils import free_port

    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind",
               f"127.0.0.1:{free_port()}", "leadfunnel.wsgi:application"]  # fmt: skip
    env = embedded(tmp_path, NURTURING_TICK_SECONDS="0", WEB_CONCURRENCY="1")

    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    assert result.returncode != 0
    assert "NURTURING_TICK_SECONDS" in result.stdout + result.stderr
