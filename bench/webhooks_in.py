"""Inbound webhooks under the production server: gunicorn (gunicorn.conf.py, as docker-compose
runs it) serving POST /hooks/in/<key>/ with Tally's documented payload, each request a new
submission from a new person, signed as Tally signs (base64 HMAC-SHA256 of the body, computed
in wrk's Lua through OpenSSL's libcrypto, so every request has its own body and signature).

Baseline, measured in the same run on the same server: the sibling endpoint a web form posts
to, POST /f/<key>/ (JSON answer), one new person each. Both store the same things: a contact
(a new lead and its stage change), a consent, a form_submit event and its queue row.

The webhook answers once the delivery is kept (one small commit); a worker then records the
lead. So the webhook's figures are the receipt, and the recording rate is measured after the
load, by one Celery worker (as the beacon benchmark does for its queue). The form endpoint
stores the lead before answering: a fair comparison of what a sender waits for, not of the
work done. GET /healthz (one trivial query) is measured too, as the server's floor.

Two measurements for each:
- capacity: wrk -t2 -c16 with no pause (closed loop, the server saturated): requests/s;
- latency: wrk -t2 -c16 paced to an offered OFFERED_RATE requests/s in total: p95 (from wrk's
  own histogram, in its ``done`` hook). Paced, because a saturated server's latency only
  measures the queue wrk builds in front of it.
Afterwards, every answered delivery must be one form_submit event (no double, no loss).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import seed
from bench.bench_beacon import CLOCK, PACED, free_port, wait_up, workers_cpu_seconds
from bench.common import bench_redis_url, result, server_env

NAME = "webhooks"
ROOT = Path(__file__).resolve().parent.parent
OFFERED_RATE = 300
CONNECTIONS = 16
SECRET = "bench-inbound-secret"
SAMPLE = ROOT / "tests" / "data" / "webhooks" / "tally.json"

# Each thread numbers its requests (``thread_number`` is a global the main state sets in each
# thread's state after loading the script); each wrk run has its own nonce.
NUMBERING = """
local counter = 0
local threads = {}
setup = function(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end
local function next_id()
  counter = counter + 1
  return string.format("%s-%d-%d", nonce, thread_number, counter)
end
"""
SIGNED = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md, unsigned int *md_len);
int EVP_EncodeBlock(unsigned char *t, const unsigned char *f, int n);
]]
local crypto = ffi.load("crypto")
local digest, digest_length = ffi.new("unsigned char[32]"), ffi.new("unsigned int[1]")
local encoded = ffi.new("unsigned char[64]")
local secret = "%(secret)s"
local template = [==[%(template)s]==]
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local id = next_id()
  local body = template:gsub("RESPONSE_ID", id):gsub("PERSON", "lead-" .. id)
  crypto.HMAC(crypto.EVP_sha256(), secret, #secret, body, #body, digest, digest_length)
  local n = crypto.EVP_EncodeBlock(encoded, digest, 32)
  return wrk.format(nil, nil, {["Tally-Signature"] = ffi.string(encoded, n)}, body)
end
"""
FORM = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Accept"] = "application/json"
request = function()
  local id = next_id()
  local body = "email=form-" .. id .. "%%40exemple.fr&first_name=Karim&last_name=Benali" ..
    "&company=Atelier+Nord&consent=on&page=https%%3A%%2F%%2Fwww.exemple.fr%%2Fwebinaire"
  return wrk.format(nil, nil, nil, body)
end
"""
REPORT = """
done = function(summary, latency, requests)
  io.write(string.format("P95_US %%d\\n", latency:percentile(95)))
end
"""


def template() -> str:
    payload = json.loads(SAMPLE.read_text())
    payload["data"]["responseId"] = payload["data"]["submissionId"] = "RESPONSE_ID"
    for field in payload["data"]["fields"]:
        if field["type"] == "INPUT_EMAIL":
            field["value"] = "PERSON@exemple.fr"
    # Compact, as Tally sends it.
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def wrk(url: str, *, seconds: int, script: str, paced: bool) -> dict[str, float]:
    """Requests/s, p50/p95/p99 (ms) and answered requests; fails on any non-2xx answer."""
    script = f'local nonce = "{os.urandom(4).hex()}"\n' + script
    if paced:
        script = CLOCK + PACED % {"interval_ms": 1000 * 2 / OFFERED_RATE} + script
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script + REPORT % {})
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "--latency",
               "-s", file.name]  # fmt: skip
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
        "p95": int(re.search(r"P95_US (\d+)", out).group(1)) / 1000,
        "p99": latency("99%"),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
    }


def run(scale: float) -> list[dict]:
    import redis

    from contacts.models import Event, Form, InboundDelivery, InboundSource

    seed.reset()
    InboundDelivery.objects.all().delete()
    source = InboundSource.objects.create(name="Bench Tally", kind="tally", secret=SECRET)
    form = Form.objects.create(name="Bench form")
    seconds = max(5, int(15 * scale))
    port = free_port()
    redis_url = bench_redis_url()
    env = server_env(
        redis_url,
        **{
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            # Every form post comes from wrk's one address: counted as usual, never refused.
            "FORM_RATE_PER_MINUTE": str(10**9),
        },
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "leadfunnel.wsgi", "-b", f"127.0.0.1:{port}",
         "--access-logfile", os.devnull, "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    hook, form_url = f"{base}/hooks/in/{source.key}/", f"{base}/f/{form.key}/"
    signed = NUMBERING + SIGNED % {"secret": SECRET, "template": template()}
    posted = NUMBERING + FORM % {}
    runs: dict[str, dict[str, float]] = {}
    try:
        wait_up(f"{base}/healthz")
        runs["warm-up webhook"] = wrk(hook, seconds=2, script=signed, paced=False)
        runs["warm-up form"] = wrk(form_url, seconds=2, script=posted, paced=False)
        for label, url, script, paced in [
            ("webhook", hook, signed, False), ("form", form_url, posted, False),
            ("healthz", f"{base}/healthz", "", False),
            ("webhook paced", hook, signed, True), ("form paced", form_url, posted, True),
            ("healthz paced", f"{base}/healthz", "", True),
        ]:  # fmt: skip
            before = workers_cpu_seconds(server.pid)
            runs[label] = wrk(url, seconds=seconds, script=script, paced=paced)
            spent = workers_cpu_seconds(server.pid) - before
            runs[label]["server_cpu_ms_per_request"] = round(
                1000 * spent / runs[label]["requests"], 3
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
    received = InboundDelivery.objects.filter(status="received").count()
    # The deliveries' tasks wait in Redis: a worker records them after the load, not during
    # it (on two cores it would take its CPU from the web server).
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "leadfunnel", "worker", "--pool=solo",
         "--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "WARNING"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        started = time.monotonic()
        waiting = InboundDelivery.objects.filter(status="received")
        while waiting.exists() and time.monotonic() - started < 900:
            time.sleep(0.5)
        recorded_seconds = time.monotonic() - started
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        redis.Redis.from_url(redis_url).flushdb()
    for label, figures in runs.items():
        print(f"  {label}: {figures}")
    answered = sum(f["requests"] for label, f in runs.items() if "webhook" in label)
    stored = Event.objects.filter(type="form_submit", source="webhook").count()
    accepted = InboundDelivery.objects.filter(status="accepted").count()
    hook_run, form_run = runs["webhook"], runs["form"]
    hook_paced, form_paced = runs["webhook paced"], runs["form paced"]
    common = {
        "server": f"gunicorn.conf.py: gthread, {os.environ.get('WEB_CONCURRENCY') or os.cpu_count()}"
        f" workers x {os.environ.get('WEB_THREADS') or 4} threads",
        "payload": "Tally's documented FORM_RESPONSE sample, one new person per request",
        "load_average_1min": os.getloadavg()[0],
        "received_after_load": received,
        "recording": "one Celery worker (solo pool), after the load",
        "recorded_per_s": round(received / recorded_seconds) if recorded_seconds else None,
        "healthz_rate": runs["healthz"]["rate"],
        "healthz_paced_p95_ms": runs["healthz paced"]["p95"],
        "runs": runs,
    }
    # wrk stops with up to one request per connection in flight: the server may store a few
    # that wrk never counted (three runs of CONNECTIONS connections).
    return [
        result(name=NAME, metric=f"inbound webhook posts/s at saturation (wrk -t2 -c{CONNECTIONS})",
               value=hook_run["rate"], unit="req/s", baseline=form_run["rate"],
               target=">= 300 req/s", passed=hook_run["rate"] >= 300, scale=scale,
               baseline_is="POST /f/<key>/ (web form, JSON answer: stores the lead before "
               "answering), same server, same load; GET /healthz in healthz_rate",
               server_cpu_ms_per_request=hook_run["server_cpu_ms_per_request"],
               form_server_cpu_ms_per_request=form_run["server_cpu_ms_per_request"], **common),
        result(name=NAME, metric=f"inbound webhook p95 latency at {OFFERED_RATE} req/s offered "
               f"(wrk -t2 -c{CONNECTIONS}, paced)", value=hook_paced["p95"], unit="ms",
               baseline=form_paced["p95"], target=f"p95 < 50 ms at >= {OFFERED_RATE} req/s",
               passed=hook_paced["p95"] < 50 and hook_paced["rate"] >= 0.97 * OFFERED_RATE,
               scale=scale, baseline_is="POST /f/<key>/ p95, same server, same paced load",
               achieved_rate=hook_paced["rate"], p50_ms=hook_paced["p50"],
               p99_ms=hook_paced["p99"], **common),
        result(name=NAME, metric="form_submit events stored, of the webhook posts answered",
               value=stored, unit="events", baseline=answered,
               target="every answered post stored once",
               passed=answered <= stored == accepted <= answered + 3 * CONNECTIONS,
               scale=scale, **common),
    ]  # fmt: skip
