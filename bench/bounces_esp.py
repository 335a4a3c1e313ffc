"""ESP tracking webhooks under the production server: gunicorn (gunicorn.conf.py, as
docker-compose runs it) serving POST /esp/<esp>/tracking/, driven by wrk (-t2 -c16, closed
loop) until EVENTS events have gone, each about a different contact (by address, as an event
without our metadata is matched), nine soft bounces for one hard:

- Brevo: one event per request, basic auth (its documented hard_bounce sample);
- Mailgun: one event per request, basic auth and its HMAC signature (computed in wrk's Lua
  through OpenSSL's libcrypto, each request its own token); nine temporary failures (deferred)
  for one permanent;
- SendGrid: BATCH events per request (SendGrid posts arrays; Mandrill and SparkPost too).

Each post's reports are kept in one commit and answered; one Celery worker (solo pool, both
queues, running during the load, as docker-compose's worker-intake) records them in batches
(``nurturing.bounces.record_reports``: the report rows, the contacts' state, the timeline
events, whose own tasks it runs too). A run's rate is from its first post to the last of its
events recorded. Baselines, in the same run: GET /healthz on the same server (the floor of a request), and the same number of reports
recorded in this process one report per call (no HTTP, the per-call cost of the recording).
Afterwards every event must be recorded exactly once.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import seed
from bench.bench_beacon import free_port, wait_up, workers_cpu_seconds
from bench.common import bench_redis_url, result, server_env

NAME = "bounces"
ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 16
BATCH = 100
SECRET = "bench:esp-webhook-secret"
MAILGUN_KEY = "key-bench-mailgun-signing"
TARGET = 500

# Each thread sends events [offset + (thread - 1) * quota, ... + quota) and stops after them.
# Each thread sends events [offset + (thread - 1) * quota, ... + quota), then stops (its last
# request a GET /healthz: a request function must return one).
COMMON = """
local counter, threads, per_request = 0, {}, %(per_request)d
setup = function(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end
local function next_index()
  local index = offset + (thread_number - 1) * quota + counter
  counter = counter + 1
  return index
end
-- wrk calls the first thread's request() once before the run, to check it: not an event.
local checked = false
local function spent()
  if thread_number == 1 and not checked then
    checked = true
    return wrk.format("GET", "/healthz", {}, nil)
  end
  if counter + per_request > quota then
    wrk.thread:stop()
    return wrk.format("GET", "/healthz", {}, nil)
  end
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "%(authorization)s"
"""
BREVO = """
request = function()
  local done = spent()
  if done then return done end
  local i = next_index()
  local kind = (i %% 10 == 0) and "hard_bounce" or "soft_bounce"
  local body = string.format('{"event":"%%s","email":"bench%%d@exemple.fr","id":1,' ..
    '"date":"2026-12-06 10:03:01","ts":1796547781,"message-id":"<%%d.%%s@smtp-relay.mailin.fr>",' ..
    '"ts_event":1796547781,"subject":"Bienvenue","sending_ip":"185.41.28.109",' ..
    '"ts_epoch":1796547781000,"reason":"%%s","tags":["bench"]}',
    kind, i, i, nonce, (i %% 10 == 0) and "550 5.1.1 User unknown" or "452 4.2.2 Mailbox full")
  return wrk.format(nil, nil, nil, body)
end
"""
MAILGUN = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md, unsigned int *md_len);
]]
local crypto = ffi.load("crypto")
local digest, digest_length = ffi.new("unsigned char[32]"), ffi.new("unsigned int[1]")
local key = "%(key)s"
request = function()
  local done = spent()
  if done then return done end
  local i = next_index()
  local token = string.format("%%s%%048d", nonce, i)
  local timestamp = "1796547781"
  local signed = timestamp .. token
  crypto.HMAC(crypto.EVP_sha256(), key, #key, signed, #signed, digest, digest_length)
  local hex = {}
  for b = 0, 31 do hex[#hex + 1] = string.format("%%02x", digest[b]) end
  local severity = (i %% 10 == 0) and "permanent" or "temporary"
  local body = string.format('{"signature":{"timestamp":"%%s","token":"%%s","signature":"%%s"},' ..
    '"event-data":{"event":"%%s","id":"ev%%d","timestamp":1796547781.5,"log-level":"error",' ..
    '"severity":"%%s","reason":"bounce","recipient":"bench%%d@exemple.fr",' ..
    '"message":{"headers":{"message-id":"%%d@mg.exemple.fr"}},' ..
    '"delivery-status":{"attempt-no":1,"message":"No such mailbox","code":550,' ..
    '"description":""},"user-variables":{}}}',
    timestamp, token, table.concat(hex), "failed", i, severity, i, i)
  return wrk.format(nil, nil, nil, body)
end
"""
SENDGRID = """
request = function()
  local done = spent()
  if done then return done end
  local events = {}
  for n = 1, per_request do
    local i = next_index()
    local kind = (i %% 10 == 0) and "bounce" or "blocked"  -- hard, soft
    events[n] = string.format('{"email":"bench%%d@exemple.fr","timestamp":1796547781,' ..
      '"smtp-id":"<%%d@ismtpd>","event":"bounce","category":"bench",' ..
      '"sg_event_id":"%%s-%%d","sg_message_id":"%%d.filter0001","reason":"550 5.1.1 unknown",' ..
      '"status":"5.1.1","type":"%%s"}', i, i, nonce, i, i, kind)
  end
  return wrk.format(nil, nil, nil, "[" .. table.concat(events, ",") .. "]")
end
"""


def wrk(url: str, *, script: str, offset: int, quota: int, source: str, until: int) -> dict:
    """Sends ``quota`` events per wrk thread from event ``offset``, until ``until`` reports of
    ``source`` are recorded (wrk itself would wait out its -d): events/s over that time."""
    from nurturing.models import Bounce

    head = f'local nonce = "{os.urandom(4).hex()}"\nlocal offset, quota = {offset}, {quota}\n'
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(head + script)
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", "-d900s", "--timeout", "20s", "--latency",
               "-s", file.name, url]  # fmt: skip
    recorded = Bounce.objects.filter(source=source)
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    count, changed = 0, started
    try:
        while count < until and time.monotonic() - changed < 60:  # or stalled (a worker starting)
            time.sleep(0.05)
            if (now := recorded.count()) != count:
                count, changed = now, time.monotonic()
        elapsed = changed - started
    finally:
        process.send_signal(signal.SIGINT)  # wrk prints its summary and stops
        out = process.communicate(timeout=60)[0]
    os.unlink(file.name)
    if "Non-2xx" in out or "Socket errors" in out or count < until:
        raise RuntimeError(f"wrk saw errors or not every event was recorded:\n{out}")

    def latency(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    return {
        "elapsed_s": round(elapsed, 2),
        "p50": latency("50%"),
        "p99": latency("99%"),
    }


def healthz(url: str, seconds: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return {"rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}


def in_process_one_at_a_time(start: int, count: int) -> float:
    """The same kind of reports recorded one per call, in this process: reports/s. The
    timeline events' task goes to Redis, as the server's does (not run eagerly here)."""
    from leadfunnel.celery import app
    from nurturing.bounces import Kind, Report, record_reports

    eager = app.conf.task_always_eager  # read first: the configuration loads on first use
    app.conf.task_always_eager = False
    started = time.monotonic()
    for i in range(start, start + count):
        record_reports(
            [Report(kind=Kind.HARD if i % 10 == 0 else Kind.SOFT, email=f"bench{i}@exemple.fr",
                    status="4.2.2", diagnostic="452 4.2.2 Mailbox full", source="esp:baseline",
                    reference=f"baseline-{i}")]
        )  # fmt: skip
    rate = count / (time.monotonic() - started)
    app.conf.task_always_eager = eager
    return rate


def run(scale: float) -> list[dict]:
    import redis

    from nurturing.models import Bounce, EspReport

    events = max(200, int(10_000 * scale))
    events -= events % (2 * BATCH)  # two wrk threads, whole batches
    seed.reset()
    Bounce.objects.all().delete()
    EspReport.objects.all().delete()
    # Contacts bench1... in slices: one per run (room for wrk's last requests in flight), then
    # the warm-ups', then the in-process baseline's.
    slice_size = events + 2 * CONNECTIONS * BATCH
    warmups = 3 * slice_size
    baseline_start = warmups + 3 * 4 * BATCH
    baseline_count = min(events, 2000)
    seed.contacts(baseline_start + baseline_count + 1)
    port = free_port()
    redis_url = bench_redis_url()
    env = server_env(
        redis_url,
        **{
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "ANYMAIL_WEBHOOK_SECRET": SECRET,
            "ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY,
        },
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "leadfunnel.wsgi", "-b", f"127.0.0.1:{port}",
         "--access-logfile", os.devnull, "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "leadfunnel", "worker", "--pool=solo",
         "-Q", "intake,celery", "--without-heartbeat", "--without-mingle", "--without-gossip",
         "-l", "WARNING"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    authorization = "Basic " + base64.b64encode(SECRET.encode()).decode()
    plans = [  # (label, esp path, script, events per request)
        ("brevo", "brevo", BREVO % {}, 1),
        ("mailgun", "mailgun", MAILGUN % {"key": MAILGUN_KEY}, 1),
        ("sendgrid", "sendgrid", SENDGRID % {}, BATCH),
    ]
    runs: dict[str, dict] = {}
    try:
        wait_up(f"{base}/healthz")
        for number, (label, path, script, per_request) in enumerate(plans):
            common = COMMON % {"per_request": per_request, "authorization": authorization}
            url = f"{base}/esp/{path}/tracking/"
            # A short warm-up on contacts of their own (the last slices), then the run.
            wrk(url, script=common + script, offset=1 + warmups + number * 4 * BATCH,
                quota=BATCH, source=f"esp:{label}", until=2 * BATCH)  # fmt: skip
            before = workers_cpu_seconds(server.pid)
            figures = wrk(url, script=common + script, offset=1 + number * slice_size,
                          quota=events // 2, source=f"esp:{label}",
                          until=2 * BATCH + events)  # fmt: skip
            spent = workers_cpu_seconds(server.pid) - before
            figures["events_per_s"] = round(events / figures["elapsed_s"], 1)
            figures["server_cpu_ms_per_event"] = round(1000 * spent / events, 3)  # web only
            figures["events_per_request"] = per_request
            runs[label] = figures
        runs["healthz"] = healthz(f"{base}/healthz", seconds=max(3, int(10 * scale)))
    finally:
        server.terminate()
        worker.terminate()
        server.wait(timeout=30)
        worker.wait(timeout=30)
        redis.Redis.from_url(redis_url).flushdb()
    one_at_a_time = in_process_one_at_a_time(1 + baseline_start, baseline_count)
    recorded = {
        source: Bounce.objects.filter(source=f"esp:{source}").values("reference").distinct().count()
        for source in ("brevo", "mailgun", "sendgrid")
    }
    rows = {
        source: Bounce.objects.filter(source=f"esp:{source}").count()
        for source in ("brevo", "mailgun", "sendgrid")
    }
    for label, figures in runs.items():
        print(f"  {label}: {figures}")
    print(f"  recorded (distinct references / rows): {recorded} / {rows}")
    print(f"  in-process one report per call: {one_at_a_time:.0f}/s")
    common = {
        "server": f"gunicorn.conf.py: gthread, {os.environ.get('WEB_CONCURRENCY') or os.cpu_count()}"
        f" workers x {os.environ.get('WEB_THREADS') or 4} threads",
        "events_per_run": events,
        "load_average_1min": os.getloadavg()[0],
        "healthz_rate": runs["healthz"]["rate"],
        "in_process_one_report_per_call_per_s": round(one_at_a_time, 1),
        "recorded": recorded,
        "runs": runs,
    }
    warmup = 2 * BATCH  # each run's warm-up events (two threads x BATCH), recorded too
    results = []
    for label, _, _, per_request in plans:
        figures = runs[label]
        results.append(
            result(name=NAME, metric=f"ESP webhook events recorded/s, {label} "
                   f"({per_request} event{'s' if per_request > 1 else ''} per post, wrk -t2 "
                   f"-c{CONNECTIONS})", value=figures["events_per_s"], unit="events/s",
                   baseline=runs["healthz"]["rate"], target=f">= {TARGET} events/s",
                   passed=figures["events_per_s"] >= TARGET, scale=scale,
                   baseline_is="GET /healthz requests/s on the same server (a request's floor)",
                   server_cpu_ms_per_event=figures["server_cpu_ms_per_event"],
                   p50_ms=figures["p50"], p99_ms=figures["p99"], **common)
        )  # fmt: skip
    expected = {label: events + warmup for label, *_ in plans}
    results.append(
        result(name=NAME, metric="ESP webhook events recorded once, of the events sent",
               value=sum(recorded.values()), unit="events", baseline=sum(expected.values()),
               target="every event recorded once",
               passed=recorded == rows and all(
                   expected[s] <= recorded[s] <= expected[s] + 2 * CONNECTIONS * BATCH
                   for s in expected),
               scale=scale, **common)
    )  # fmt: skip
    return results
