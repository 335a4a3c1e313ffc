"""The tracking beacon under the production server: gunicorn (gunicorn.conf.py, as docker-compose
runs it, access log on) serving POST /t/, load from a second process (wrk), against the same
server answering /healthz (one trivial query).

Two measurements, for each of the beacon and /healthz:
- capacity: wrk -t2 -c32 with no pause (closed loop, the server saturated): requests/s;
- latency: wrk -t2 -c32 paced to an offered 1,000 requests/s in total (each thread sends on a
  fixed schedule; a connection waits for its answer, so a stall is not counted as several slow
  requests): p99. With 32 connections on a saturated 2-core machine, p99 measures only the
  queue wrk builds (Little's law: 32 / rate), which is why the target rate is offered instead.
Then a Celery worker drains the queue (as beat and the kicks make it do in production): how fast
page views are stored, and every page view answered must be stored once. The worker runs after
the load, not during it: on two cores it would take its CPU from the web server (the drain and
the scoring of what it stores cost about as much as the beacons), so a sustained load above the
drain rate grows the queue in Redis until the load falls.
"""

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
from bench.common import bench_redis_url, cpu_seconds, process_tree, result, server_env

NAME = "beacon"
ROOT = Path(__file__).resolve().parent.parent
VISITORS = 2000
OFFERED_RATE = 1000
CONNECTIONS = 32
# Milliseconds on a monotonic clock (LuaJIT's ffi), for the paced runs.
CLOCK = """
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } lf_timespec;
           int clock_gettime(int, lf_timespec *); ]]
local ts = ffi.new("lf_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
"""
BEACON = """
math.randomseed(os.time())
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/plain"
request = function()
  local id = string.format("visitor%%024d", math.random(1, %(visitors)d))
  local body = '{"visitor_id":"' .. id .. '","url":"https://www.exemple.fr/tarifs?p=' ..
    math.random(1, 50) .. '","title":"Tarifs","referrer":"","utm":{"utm_source":"bench"}}'
  return wrk.format(nil, nil, nil, body)
end
"""
# Each thread sends its share of the offered rate on a fixed schedule.
PACED = """
local interval, slot = %(interval_ms)f, nil
delay = function()
  local now = now_ms()
  slot = (slot or now) + interval
  return math.max(0, math.floor(slot - now))
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


def workers_cpu_seconds(master: int) -> float:
    """CPU time (user + system) used so far by gunicorn's workers (children of ``master``)."""
    return sum(cpu_seconds(process_tree(master) - {master}).values())


def wrk(url: str, *, seconds: int, beacon: bool, paced: bool) -> dict[str, float]:
    """Requests/s, p50/p99 (ms) and answered requests from wrk's --latency report."""
    script = (CLOCK + PACED % {"interval_ms": 1000 * 2 / OFFERED_RATE}) if paced else ""
    if beacon:
        script += BEACON % {"visitors": VISITORS}
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script)
    command += ["-s", file.name]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    os.unlink(file.name)
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")

    def latency(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    return {
        "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": latency("50%"),
        "p99": latency("99%"),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
    }


def run(scale: float) -> list[dict]:
    if not shutil.which("wrk"):
        raise SystemExit("The beacon benchmark needs wrk (apt-get install wrk; make bench does).")
    import redis

    from contacts.intake import tracking
    from contacts.models import AnonymousView, Event
    from contacts.tasks import drain_page_views_task
    from leadfunnel.celery import app as celery_app

    seed.reset()
    seconds = max(5, int(15 * scale))
    port = free_port()
    redis_url = bench_redis_url()
    redis.Redis.from_url(redis_url).flushdb()
    env = server_env(
        redis_url,
        **{
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PAGE_VIEW_QUEUE": "true",
            # Every request comes from wrk's one address: counted as usual, never refused.
            "BEACON_RATE_PER_MINUTE": str(10**9),
        },
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "leadfunnel.wsgi", "-b", f"127.0.0.1:{port}",
         "--access-logfile", os.devnull, "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    runs: dict[str, dict[str, float]] = {}
    try:
        wait_up(f"{base}/healthz")
        runs["warm-up"] = wrk(f"{base}/t/", seconds=2, beacon=True, paced=False)
        for label, path, paced in [
            ("healthz", "/healthz", False), ("beacon", "/t/", False),
            ("healthz paced", "/healthz", True), ("beacon paced", "/t/", True),
        ]:  # fmt: skip
            before = workers_cpu_seconds(server.pid)
            runs[label] = wrk(f"{base}{path}", seconds=seconds, beacon=path == "/t/", paced=paced)
            # Independent of how busy the machine is: what one request costs the web server.
            spent = workers_cpu_seconds(server.pid) - before
            runs[label]["server_cpu_ms_per_request"] = round(
                1000 * spent / runs[label]["requests"], 3
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
    settings.PAGE_VIEW_QUEUE_URL = redis_url
    queued = tracking.waiting()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "leadfunnel", "worker", "--pool=solo",
         "--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "WARNING"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    celery_app.conf.task_always_eager, celery_app.conf.broker_url = False, redis_url
    try:
        # The drain tasks the beacons' kicks queued run first; then the worker gets what beat
        # would send every few seconds (beat itself is not running here).
        started = time.monotonic()
        while tracking.waiting() and time.monotonic() - started < 600:
            drain_page_views_task.delay()
            time.sleep(1)
        drain_seconds = time.monotonic() - started
        while Event.objects.unprocessed().exists() and time.monotonic() - started < 900:
            time.sleep(1)
        scored_seconds = time.monotonic() - started
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        redis.Redis.from_url(redis_url).flushdb()
    for label, figures in runs.items():
        print(f"  {label}: {figures}")
    answered = sum(runs[k]["requests"] for k in ("warm-up", "beacon", "beacon paced"))
    # Views of a visitor who saw one page only are kept without a contact (AnonymousView).
    stored = Event.objects.filter(type="page_view").count() + AnonymousView.objects.count()
    beacon, paced, health, health_paced = (
        runs["beacon"], runs["beacon paced"], runs["healthz"], runs["healthz paced"]
    )  # fmt: skip
    common = {
        "server": f"gunicorn.conf.py: gthread, {os.environ.get('WEB_CONCURRENCY') or os.cpu_count()}"
        f" workers x {os.environ.get('WEB_THREADS') or 4} threads, access log written",
        "visitors": VISITORS,
        "page_views_answered": answered,
        "page_views_stored": stored,
        "queued_after_load": queued,
        "drain": "one Celery worker (solo pool), after the load, storing then scoring",
        "drain_stored_per_s": round(queued / drain_seconds) if drain_seconds else None,
        "drain_stored_and_scored_per_s": round(queued / scored_seconds) if scored_seconds else None,
        "runs": runs,
    }
    return [
        result(name=NAME, metric="beacon requests/s at saturation (POST /t/, wrk -t2 -c32)",
               value=beacon["rate"], unit="req/s", baseline=health["rate"],
               target=">= 1,000 req/s", passed=beacon["rate"] >= 1000, scale=scale,
               baseline_is="GET /healthz, same server, same load",
               p99_at_saturation_ms=beacon["p99"],
               server_cpu_ms_per_request=beacon["server_cpu_ms_per_request"],
               healthz_server_cpu_ms_per_request=health["server_cpu_ms_per_request"],
               load_average_1min=os.getloadavg()[0], **common),
        result(name=NAME, metric=f"beacon p99 latency at {OFFERED_RATE:,} req/s offered "
               f"(wrk -t2 -c{CONNECTIONS}, paced)", value=paced["p99"], unit="ms",
               baseline=health_paced["p99"], target="p99 < 50 ms at >= 1,000 req/s",
               passed=paced["p99"] < 50 and paced["rate"] >= 0.97 * OFFERED_RATE, scale=scale,
               baseline_is="GET /healthz p99, same server, same paced load",
               achieved_rate=paced["rate"], p50_ms=paced["p50"], **common),
        # wrk stops with up to one request per connection in flight: the server may store a
        # few that wrk never counted (three runs of 32 connections).
        result(name=NAME, metric="page views stored after the drain, of those answered",
               value=stored, unit="events", baseline=answered,
               target="every answered page view stored once",
               passed=answered <= stored <= answered + 3 * CONNECTIONS, scale=scale, **common),
    ]  # fmt: skip
