"""`make run` as a user meets it: `manage.py serve` as a real process (web, worker, beat) on a
fresh SQLite file, on a port other than 8000, sending a sequence email through its worker."""

from __future__ import annotations

import email
import email.policy
import http.cookiejar
import os
import re
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.utils import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
MANAGE = [sys.executable, str(ROOT / "manage.py")]
# Run in the serve process's environment before it starts: a contact enrolled in a sequence
# whose email (with a link) is due now.
ENROL = """
from django.utils import timezone
from contacts.models import Contact
from nurturing import enrolment
from nurturing.models import Sequence, Step
sequence = Sequence.objects.create(name="Serve check", trigger="manual")
Step.objects.create(sequence=sequence, position=1, kind="email", subject="Bonjour {{ first_name }}",
                    body_text="Bonjour {{ first_name }}, voyez https://shop.example.fr/poeles")
contact = Contact.objects.create(email="helene@example.fr", first_name="Hélène", stage="lead",
                                 open_tracking_consent_at=timezone.now())  # the pixel too
enrolment.enrollment_start(sequence=sequence, contact=contact)
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """migrate, a small demo, one due email, then `serve --port <free>`; stopped with Ctrl-C."""
    var = tmp_path_factory.mktemp("serve-var")
    env = {**os.environ, "DEBUG": "true", "LEADFUNNEL_VAR_DIR": str(var), "READ_DOT_ENV": "false",
           "CELERY_TASK_ALWAYS_EAGER": "false", "NURTURING_TICK_SECONDS": "1",
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    for name in ("DATABASE_URL", "REDIS_URL", "CACHE_URL", "SITE_URL", "EMAIL_URL", "LOG_LEVEL"):
        env.pop(name, None)
    for command in (["migrate", "-v0"], ["demo", "--contacts", "60", "--events", "300"]):
        subprocess.run([*MANAGE, *command], env=env, cwd=ROOT, check=True, capture_output=True)
    subprocess.run([*MANAGE, "shell", "-v0", "-c", ENROL], env=env, cwd=ROOT, check=True)
    port = free_port()
    console = var / "console.txt"
    with console.open("w") as output:
        server = subprocess.Popen(
            [*MANAGE, "serve", "--port", str(port), "--noreload"],
            env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(lambda: "Press Ctrl-C" in console.read_text(), timeout=90)
        yield {"port": port, "var": var, "console": console}
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)


def sent_emails(var: Path) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in sorted((var / "mail").glob("*.eml"))
    ]


def logged_in(base: str, username: str) -> urllib.request.OpenerDirector:
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    login = opener.open(f"{base}/login/", timeout=20).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login).group(1)
    form = {"username": username, "password": "leadfunnel", "csrfmiddlewaretoken": token}
    opener.open(
        urllib.request.Request(
            f"{base}/login/", data=urllib.parse.urlencode(form).encode(), headers={"Referer": base}
        ),
        timeout=20,
    )
    return opener


def test_links_in_emails_point_at_the_port_make_run_serves_on(served):
    base = f"http://127.0.0.1:{served['port']}"

    [message] = wait_for(lambda: sent_emails(served["var"]), timeout=60)

    unsubscribe = message["List-Unsubscribe"]
    assert f"<{base}/e/u/" in unsubscribe, unsubscribe
    html = message.get_body(preferencelist=("html",)).get_content()
    assert f'href="{base}/e/c/' in html and f'src="{base}/e/o/' in html  # click and open
    assert ":8000" not in html + unsubscribe
    # The link is alive: it opens the unsubscribe page of the app that sent it.
    link = re.search(r"<(http[^>]+)>", unsubscribe).group(1)
    with urllib.request.urlopen(link, timeout=20) as page:
        assert page.status == 200


def test_the_console_stays_short_and_names_the_address_and_the_logins(served):
    wait_for(lambda: sent_emails(served["var"]), timeout=60)  # a few ticks of beat have run
    logged_in(f"http://127.0.0.1:{served['port']}", "claire").open(
        f"http://127.0.0.1:{served['port']}/contacts/", timeout=20
    )

    console = served["console"].read_text()

    assert len(console.splitlines()) < 45, console
    assert f"LeadFunnel is running at http://127.0.0.1:{served['port']}/" in console
    assert "claire" in console and "hugo" in console and "password: leadfunnel" in console
    assert f"{served['var'] / 'mail'}" in console and "/mail/" in console
    assert "Subject:" not in console and "succeeded in" not in console


def test_the_demo_emails_are_listed_on_the_sent_emails_page(served):
    base = f"http://127.0.0.1:{served['port']}"
    wait_for(lambda: sent_emails(served["var"]), timeout=60)
    opener = logged_in(base, "claire")

    listing = opener.open(f"{base}/mail/", timeout=20).read().decode()
    assert "Bonjour Hélène" in listing and "helene@example.fr" in listing
    page = re.search(r'href="(/mail/[^"]+/)"', listing).group(1)
    shown = opener.open(f"{base}{page}", timeout=20).read().decode()
    assert f"{base}/e/u/" in shown and "Bonjour Hélène" in shown
