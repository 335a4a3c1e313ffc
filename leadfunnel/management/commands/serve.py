"""Run the whole app on one machine: web server, Celery worker and Celery beat.

Used by ``make run``. Each child runs in its own process group, so Ctrl-C reaches only this
supervisor, which then stops every child (and their own children, e.g. runserver's reloader).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from leadfunnel.management.commands.demo import logins_text

STOP_TIMEOUT_SECONDS = 15


class Command(BaseCommand):
    help = "Serve LeadFunnel with its Celery worker and beat (the embedded default of make run)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--noreload", action="store_true", help="no code autoreload")

    def handle(self, *args: Any, host: str, port: int, noreload: bool, **options: Any) -> None:
        python = sys.executable
        beat_schedule = str(settings.VAR_DIR / "celerybeat-schedule")
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        web = [python, str(settings.BASE_DIR / "manage.py"), "runserver", f"{host}:{port}"]
        if noreload:
            web.append("--noreload")
        commands = {
            "web": web,
            "worker": [python, "-m", "celery", "-A", "leadfunnel", "worker", "--pool=solo",
                       "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "INFO"],
            "beat": [python, "-m", "celery", "-A", "leadfunnel", "beat", "-s", beat_schedule,
                     "-l", "INFO"],
        }  # fmt: skip
        children = {
            name: subprocess.Popen(command, start_new_session=True, cwd=settings.BASE_DIR)  # noqa: S603
            for name, command in commands.items()
        }
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)

        broker = "Redis" if settings.REDIS_URL else "file-system broker in var/broker"
        database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        self.stdout.write(
            self.style.SUCCESS(f"\nLeadFunnel is running at http://{host}:{port}/")
            + f"\n  database: {database}, broker: {broker}, worker and beat started"
            + f"\n\n{logins_text()}"
            + "\n\nPress Ctrl-C to stop everything.\n"
        )
        try:
            while not stopping:
                for name, child in children.items():
                    if child.poll() is not None:
                        self.stderr.write(f"{name} exited with code {child.returncode}; stopping.")
                        stopping = True
                time.sleep(0.5)
        finally:
            self._stop(children)

    def _stop(self, children: dict[str, subprocess.Popen[bytes]]) -> None:
        for child in children.values():
            _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child, signal.SIGKILL)
                child.wait()
        # runserver's reloader child and celery's pool live in the same groups.
        for child in children.values():
            _signal_group(child, signal.SIGKILL)
        self.stdout.write("Stopped web, worker and beat.")


def _signal_group(child: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(child.pid, signum)
    except ProcessLookupError:
        pass
