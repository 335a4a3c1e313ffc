"""Run the whole app on one machine: web server, Celery worker and Celery beat.

Used by ``make run``. Each child runs in its own process group, so Ctrl-C reaches only this
supervisor, which then stops every child (and their own children, e.g. runserver's reloader).

The console stays readable: the children log warnings and errors only (``LOG_LEVEL``, unless
set), emails go to the local mail folder (without ``EMAIL_URL``), and the address, the logins and
where the emails are is printed once everything answers. Links in emails point at the address
served (``SITE_URL``, unless set).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from leadfunnel import mailbox
from leadfunnel.management.commands.demo import logins_text

STOP_TIMEOUT_SECONDS = 15
START_TIMEOUT_SECONDS = 60
QUIET_LOG_LEVEL = "WARNING"


def browser_host(host: str) -> str:
    """The host a browser on this machine uses to reach a server bound to ``host``."""
    if host in ("", "0.0.0.0", "::", "[::]"):  # noqa: S104 (a name for "every interface")
        return "127.0.0.1"
    return host.strip("[]")


def site_url(host: str, port: int) -> str:
    name = browser_host(host)
    return f"http://[{name}]:{port}" if ":" in name else f"http://{name}:{port}"


def child_environment(host: str, port: int) -> dict[str, str]:
    """What web, worker and beat run with: the variables set by the user win."""
    env = dict(os.environ)
    env.setdefault("SITE_URL", site_url(host, port))
    env.setdefault("LOG_LEVEL", QUIET_LOG_LEVEL)
    return env


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
        env = child_environment(host, port)
        level = env["LOG_LEVEL"]
        web = [python, str(settings.BASE_DIR / "manage.py"), "runserver", f"{host}:{port}"]
        if noreload:
            web.append("--noreload")
        commands = {
            "web": web,
            "worker": [python, "-m", "celery", "-A", "leadfunnel", "--quiet", "worker",
                       "--pool=solo", "--without-heartbeat", "--without-gossip",
                       "--without-mingle", "-l", level],
            "beat": [python, "-m", "celery", "-A", "leadfunnel", "--quiet", "beat",
                     "-s", beat_schedule, "-l", level],
        }  # fmt: skip
        children = {
            name: subprocess.Popen(command, start_new_session=True, cwd=settings.BASE_DIR, env=env)  # noqa: S603
            for name, command in commands.items()
        }
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            if _wait_for_port(host, port, children["web"], lambda: stopping):
                self._banner(host, port, env)
            while not stopping:
                for name, child in children.items():
                    if child.poll() is not None:
                        self.stderr.write(f"{name} exited with code {child.returncode}; stopping.")
                        stopping = True
                time.sleep(0.5)
        finally:
            self._stop(children)

    def _banner(self, host: str, port: int, env: dict[str, str]) -> None:
        broker = "Redis" if settings.REDIS_URL else "file-system broker in var/broker"
        database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        address = site_url(host, port)
        if mailbox.in_use():
            mail = (
                f"emails: written to {mailbox.folder()}/ (one .eml file each),"
                f"\n          listed at {address}/mail/ (log in as claire or admin)"
            )
        else:
            mail = "emails: sent through EMAIL_URL"
        logs = f"logs: {env['LOG_LEVEL'].lower()} and above" + (
            " (LOG_LEVEL=INFO for every request and task)" if env["LOG_LEVEL"] != "INFO" else ""
        )
        self.stdout.write(
            self.style.SUCCESS(f"\nLeadFunnel is running at {address}/")
            + f"\n  database: {database}, broker: {broker}, worker and beat started"
            + f"\n  {mail}\n  links in emails: {env['SITE_URL']}/\n  {logs}"
            + f"\n\n{logins_text()}"
            + "\n\nPress Ctrl-C to stop everything.\n"
        )
        self.stdout.flush()

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


def _wait_for_port(host: str, port: int, web: subprocess.Popen[bytes], stopping: Any) -> bool:
    """Until the web server accepts connections (its start-up lines are then above ours)."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline and not stopping() and web.poll() is None:
        try:
            with socket.create_connection((browser_host(host), port), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return web.poll() is None and not stopping()
