"""Build and serve the production shape, then use it as a visitor and a user would.

Mirrors the Dockerfile and docker-compose.yml without Docker: the source tree is copied as
`COPY . .` copies it (.dockerignore's exclusions), `collectstatic` and `compilemessages` run as
the image build runs them (DEBUG off, manifest storage on, a throwaway key), `migrate` runs on a
fresh PostgreSQL database, and the compose file's web (gunicorn, reading gunicorn.conf.py),
worker and worker-intake commands run against PostgreSQL + Redis. Without TLS in front, the
secure-cookie and SSL-redirect settings are off, as the compose file's comment says. Then: a
logged-in HTML page, a static file under its hashed name, /healthz and a public form post must
answer correctly, and the post must be stored and handled by the workers.

Variables: CI_PRODUCTION_DATABASE_URL (a database this script drops and recreates, default
postgres://postgres@127.0.0.1:5432/leadfunnel_production_ci) and CI_REDIS_URL.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psycopg
import yaml
from serving import free_port, wait_until_up

ROOT = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get(
    "CI_PRODUCTION_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/leadfunnel_production_ci"
)
REDIS_URL = os.environ.get("CI_REDIS_URL", "redis://127.0.0.1:6379/0")
# What .dockerignore keeps out of the image.
NOT_COPIED = (".venv/", "var/", ".git/", "bench/results/")
USERNAME, PASSWORD = "ci-admin", "production-check-password-1234"
FORM_EMAIL = "production.check@example.com"
# Off here because nothing terminates TLS in front of gunicorn (docker-compose.yml's comment).
TLS_OFF = ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE")
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
# The compose services that serve: gunicorn (reading gunicorn.conf.py from its folder, as in the
# image) and the two workers with their queues.
SERVING = ("web", "worker", "worker-intake")


def main() -> int:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="leadfunnel-production-"))
    app = work / "app"
    copy_source(app)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = production_env(work, base)
    manage = [sys.executable, str(app / "manage.py")]

    # The image build (Dockerfile).
    run([*manage, "collectstatic", "--noinput", "-v0"], env, app)
    run([*manage, "compilemessages", "--ignore", ".venv/*", "-v0"], env, app)
    # With TLS on, as docker-compose runs it by default, the deployment checks all pass.
    tls_env = {key: value for key, value in env.items() if key not in TLS_OFF}
    run([*manage, "check", "--deploy", "--fail-level", "WARNING"], tls_env, app)
    # The compose file's migrate service, on a fresh database; then an admin and a form.
    fresh_database(DATABASE_URL)
    run([*manage, "migrate", "--noinput", "-v0"], env, app)
    run(
        [*manage, "createsuperuser", "--noinput", "--username", USERNAME, "--email", "ci@x.org"],
        {**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD}, app,
    )  # fmt: skip
    form_key = django_shell(
        manage, env, app,
        "from contacts.models import Form\n"
        "form = Form.objects.create(name='Production check', thank_you_url='https://www.example.com/merci')\n"
        "print(form.key)",
    ).strip()  # fmt: skip
    print(f"production: built and migrated in {time.monotonic() - started:.1f} s")

    processes = {
        service: subprocess.Popen(
            compose_command(service, port),
            env=env,
            cwd=app,
            start_new_session=True,
            stdout=(work / f"{service}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for service in SERVING
    }
    try:
        wait_until_up(f"{base}/healthz", label="production")
        check_gunicorn_settings(work / "web.log")
        check_healthz(base)
        check_logged_in_page_and_static(base, work / "staticfiles")
        check_form_post(base, form_key)
        check_form_stored(manage, env, app)
    except BaseException:
        for service in SERVING:
            log = (work / f"{service}.log").read_text()[-4000:]
            print(f"--- {service} (end) ---\n{log}", file=sys.stderr)
        raise
    finally:
        for process in processes.values():
            stop(process)
    print(f"production: OK in {time.monotonic() - started:.1f} s")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def copy_source(app: Path) -> None:
    """The files `COPY . .` puts in the image: the tree git knows (tracked, or new and not
    ignored), minus .dockerignore's exclusions."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if name.startswith(NOT_COPIED) or not source.is_file():
            continue
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, app / name)


def production_env(work: Path, base: str) -> dict[str, str]:
    """docker-compose.yml's app environment, with the Dockerfile's paths and no TLS."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "LEADFUNNEL_", "CELERY_", "STATIC_", "PYTEST_"))
    }
    env.update(
        DEBUG="false",
        SECRET_KEY="production-check-throwaway-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        READ_DOT_ENV="false",
        ALLOWED_HOSTS="localhost,127.0.0.1",
        CSRF_TRUSTED_ORIGINS=base,
        DATABASE_URL=DATABASE_URL,
        REDIS_URL=REDIS_URL,
        SITE_URL=base,
        STATIC_ROOT=str(work / "staticfiles"),
        LEADFUNNEL_VAR_DIR=str(work / "var"),
        STATIC_MANIFEST="true",
        WEB_CONCURRENCY="2",
        SECURE_SSL_REDIRECT="false",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        PYTHONUNBUFFERED="1",
    )
    for name in ("CACHE_URL", "EMAIL_URL", "PAGE_VIEW_QUEUE"):
        env.pop(name, None)
    return env


def compose_command(service: str, port: int) -> list[str]:
    """The compose service's command as this machine runs it: its program by this Python
    (`gunicorn` → `python -m gunicorn`), the web port a free one."""
    program, *arguments = COMPOSE["services"][service]["command"]
    arguments = [arg.replace("0.0.0.0:8000", f"127.0.0.1:{port}") for arg in arguments]
    return [sys.executable, "-m", program, *arguments]


def run(command: list[str], env: dict[str, str], cwd: Path) -> str:
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        shown = " ".join(command[1:4])
        print(result.stdout[-3000:], result.stderr[-3000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"production: FAILED, `{shown}` exited with {result.returncode}")
    return result.stdout


def django_shell(manage: list[str], env: dict[str, str], cwd: Path, code: str) -> str:
    return run([*manage, "shell", "-v0", "-c", code], env, cwd)


def fresh_database(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    name = parts.path.lstrip("/")
    maintenance = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def check_gunicorn_settings(log: Path) -> None:
    """gunicorn found gunicorn.conf.py in its folder, as in the image (threads, 2 processes)."""
    text = log.read_text()
    assert "Using worker: gthread" in text, text[-2000:]
    print("production: gunicorn runs with gunicorn.conf.py (gthread workers)")


def check_healthz(base: str) -> None:
    with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
        assert (response.status, response.read()) == (200, b"ok"), response.status
    with urllib.request.urlopen(f"{base}/favicon.ico", timeout=10) as response:
        assert response.status == 200 and response.read(4) == b"\x00\x00\x01\x00"
    print("production: /healthz and /favicon.ico answered 200")


def check_logged_in_page_and_static(base: str, static_root: Path) -> None:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = opener.open(f"{base}/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.read().decode())
    assert login.status == 200 and token, "no login page with a CSRF token"
    form = urllib.parse.urlencode(
        {"username": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)}
    ).encode()
    request = urllib.request.Request(f"{base}/login/", data=form, headers={"Referer": base})
    home = opener.open(request, timeout=30)
    html = home.read().decode()
    assert (home.status, home.url) == (200, f"{base}/"), (home.status, home.url)
    assert USERNAME in html and "<html" in html, "the dashboard does not name the user"
    print("production: logged in; the dashboard answered 200")

    manifest = json.loads((static_root / "staticfiles.json").read_text())["paths"]
    linked = set(re.findall(r'(?:href|src)="/static/([^"?#]+)"', html))
    assert manifest["css/app.css"] in linked, f"the page links {sorted(linked)}"
    unhashed = {name for name in linked if name not in manifest.values()}
    assert not unhashed, f"static files linked without their hashed name: {unhashed}"
    for name in sorted(linked | {manifest["vendor/chartjs/chart.umd.min.js"]}):
        with opener.open(f"{base}/static/{name}", timeout=10) as response:
            body = response.read()
            assert response.status == 200 and body == (static_root / name).read_bytes(), name
            assert "immutable" in response.headers.get("Cache-Control", ""), name
    print(f"production: {len(linked) + 1} static files answered 200 under their hashed names")


def check_form_post(base: str, form_key: str) -> None:
    fields = {"email": FORM_EMAIL, "first_name": "Élodie", "consent": "on",
              "page": "https://www.example.com/livre-blanc"}  # fmt: skip
    request = urllib.request.Request(
        f"{base}/f/{form_key}/", data=urllib.parse.urlencode(fields).encode()
    )
    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(request, timeout=30)
        raise AssertionError("the form post was not redirected to its thank-you page")
    except urllib.error.HTTPError as answer:
        assert answer.code == 302, answer.code
        assert answer.headers["Location"] == "https://www.example.com/merci", answer.headers
    print("production: the public form post was redirected to its thank-you page")


def check_form_stored(manage: list[str], env: dict[str, str], cwd: Path) -> None:
    """The contact exists as a lead and the worker handled its event (nothing left pending)."""
    code = (
        "import time\n"
        "from contacts.models import Contact, PendingEvent\n"
        "deadline = time.monotonic() + 60\n"
        f"contact = Contact.objects.get(email={FORM_EMAIL!r})\n"
        "while PendingEvent.objects.filter(event__contact=contact).exists():\n"
        "    if time.monotonic() > deadline: raise SystemExit('the event is still pending')\n"
        "    time.sleep(0.5)\n"
        "contact.refresh_from_db()\n"
        "print(contact.stage, contact.first_name, contact.consent)"
    )
    stored = django_shell(manage, env, cwd, code).split()
    assert stored == ["lead", "Élodie", "granted"], stored
    print("production: the form's contact is stored and its event was handled by the worker")


def stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


if __name__ == "__main__":
    sys.exit(main())
