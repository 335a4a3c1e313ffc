"""The tracking beacon under the production server: gunicorn serving POST /t/, load from a
second process (wrk), against the same server answering /healthz (one trivial query)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from django.conf import settings

from bench import seed
from bench.common import result

NAME = "beacon"
ROOT = Path(__file__).resolve().parent.parent
VISITORS = 2000
WRK_SCRIPT = """
math.randomseed(os.time())
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/plain"
request = function()
  local id = string.format("visitor%%024d", math.random(1, %(visitors)d))
  local body = '{"visitor_id":"' .. id .. '","url":"https://www.exemple.fr/tarifs?p=' ..
    math.random(1, 50) .. '","title":"Tarifs","referrer":""}'
  return wrk.format(nil, nil, nil, body)
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_up(url: str) -> None:
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1)  # noqa: S310 (our own server)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def wrk(url: str, script: str | None, seconds: int) -> tuple[float, float]:
    """(requests per second, p99 latency in ms) from wrk's --latency report."""
    command = ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency"]
    if script:
        command += ["-s", script]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()
    p99 = float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return rate, p99


def run(scale: float) -> list[dict]:
    if not shutil.which("wrk"):
        raise SystemExit("The beacon benchmark needs wrk (apt-get install wrk; make bench does).")
    seed.reset()
    seconds = max(5, int(15 * scale))
    port = free_port()
    database = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:"
        f"{database['PORT'] or 5432}/{database['NAME']}",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CELERY_TASK_ALWAYS_EAGER": "false",  # as in production: scoring waits for a worker
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        "LOG_LEVEL": "WARNING",
    }
    workers = str(os.cpu_count() or 2)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "leadfunnel.wsgi", "-b", f"127.0.0.1:{port}",
         "--workers", workers, "--threads", "4", "--worker-class", "gthread",
         "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_up(f"{base}/healthz")
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(WRK_SCRIPT % {"visitors": VISITORS})
        wrk(f"{base}/t/", script.name, 2)  # warm-up: visitors exist, connections open
        health_rate, health_p99 = wrk(f"{base}/healthz", None, seconds)
        rate, p99 = wrk(f"{base}/t/", script.name, seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)
        _flush_redis(env["REDIS_URL"])
    from contacts.models import Event

    stored = Event.objects.filter(type="page_view").count()
    common = {"server": f"gunicorn gthread, {workers} workers x 4 threads", "load": "wrk -t2 -c32",
              "page_views_stored": stored, "visitors": VISITORS}  # fmt: skip
    return [
        result(name=NAME, metric="beacon requests/s (POST /t/, a page view stored each)",
               value=rate, unit="req/s", baseline=health_rate, target=">= 1,000 req/s",
               passed=rate >= 1000, scale=scale, **common),
        result(name=NAME, metric="beacon p99 latency", value=p99, unit="ms", baseline=health_p99,
               target="p99 < 50 ms", passed=p99 < 50, scale=scale, **common),
    ]  # fmt: skip


def _flush_redis(url: str) -> None:
    try:
        import redis

        redis.Redis.from_url(url).flushdb()
    except Exception:  # noqa: S110 (no Redis: nothing was queued there)
        pass
