"""Smoke test of the embedded default: fresh SQLite, migrate, demo, serve, log in, stop.

Runs exactly what `make run` runs (manage.py migrate, demo, serve) in a temporary var folder,
on a free port, and checks that web, worker and beat all start and all stop on SIGINT.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from serving import free_port, wait_until_up

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    var = Path(tempfile.mkdtemp(prefix="leadfunnel-smoke-"))
    env = {**os.environ, "DEBUG": "true", "LEADFUNNEL_VAR_DIR": str(var), "READ_DOT_ENV": "false"}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, check=True, cwd=ROOT)
    started = time.monotonic()
    subprocess.run([*manage, "demo"], env=env, check=True, cwd=ROOT)
    print(f"smoke: demo data loaded in {time.monotonic() - started:.1f} s")
    port = free_port()
    server = subprocess.Popen(
        [*manage, "serve", "--port", str(port), "--noreload"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/healthz", label="smoke")
        check_pages(base)
        children = subprocess.run(
            ["ps", "--ppid", str(server.pid), "-o", "args="], capture_output=True, text=True
        ).stdout
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=60)
    print(output[-3000:])
    for needed in ("runserver", " worker ", " beat "):
        if needed not in children:
            print(f"smoke: FAILED, no {needed.strip()} process: {children}", file=sys.stderr)
            return 1
    for needed in (f"LeadFunnel is running at {base}/", "Stopped web, worker and beat."):
        if needed not in output:
            print(f"smoke: FAILED, missing {needed!r} in the output", file=sys.stderr)
            return 1
    if len(output.splitlines()) > 60:
        print("smoke: FAILED, the console is flooded (over 60 lines)", file=sys.stderr)
        return 1
    leftovers = subprocess.run(["pgrep", "-f", str(var)], capture_output=True, text=True).stdout
    if leftovers.strip():
        print(f"smoke: FAILED, processes left running: {leftovers}", file=sys.stderr)
        return 1
    shutil.rmtree(var, ignore_errors=True)
    print(
        "smoke: OK (web, worker and beat ran; logged-in pages answered 200; the console "
        f"stayed at {len(output.splitlines())} lines; everything stopped)"
    )
    return 0


def check_pages(base: str) -> None:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = opener.open(f"{base}/login/", timeout=10)
    assert login.status == 200, login.status
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.read().decode())
    assert token, "no CSRF token on the login page"
    form = urllib.parse.urlencode(
        {"username": "claire", "password": "leadfunnel", "csrfmiddlewaretoken": token.group(1)}
    ).encode()
    request = urllib.request.Request(f"{base}/login/", data=form, headers={"Referer": base})
    home = opener.open(request, timeout=10)
    assert home.status == 200 and home.url == f"{base}/", (home.status, home.url)
    for path in ("/", "/contacts/?stage=sql", "/contacts/?q=a&sort=-score"):
        response = opener.open(f"{base}{path}", timeout=20)
        assert response.status == 200, (path, response.status)
        assert "claire" in response.read().decode().lower(), path
    print("smoke: / and /contacts/ answered 200 for the demo marketer")


if __name__ == "__main__":
    sys.exit(main())
