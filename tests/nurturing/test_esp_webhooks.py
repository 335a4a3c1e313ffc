"""ESP tracking webhooks (/esp/<esp>/tracking/): the payloads Brevo (basic auth) and Mailgun
(basic auth and its HMAC signature) document, posted as they post them; what the contact, its
message and its timeline show afterwards, and what a forged, unsigned, malformed or repeated
post changes (nothing)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from contacts.models import Contact, Event
from nurturing import enrolment, esp, scheduler
from nurturing.models import Bounce, Enrollment, EspReport, Message
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with, wait_step

pytestmark = pytest.mark.django_db

DATA = Path(__file__).resolve().parents[1] / "data" / "esp"
SECRET = "leadfunnel:5b0c7e1d-webhook"
MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"


@pytest.fixture(autouse=True)
def _anymail(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}


def sent_message(contact: Contact) -> Message:
    """The first email of a two-email sequence, as sent to ``contact``."""
    sequence = sequence_with(email_step(), wait_step(days=2), email_step("Suite"))
    enrolment.enrollments_start(sequence=sequence, contact_ids=[contact.pk])
    scheduler.enrollments_advance()
    message = Message.objects.get(contact=contact)
    Message.objects.filter(pk=message.pk).update(status="sent", sent_at=timezone.now())
    return message


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def brevo_event(message: Message | None, **changes: Any) -> dict[str, Any]:
    payload = json.loads((DATA / "brevo_hard_bounce.json").read_text())
    payload["X-Mailin-custom"] = json.dumps({"lf_message": str(message.pk) if message else ""})
    payload["email"] = message.to if message else "inconnu@example.fr"
    return {**payload, **changes}


def post(client, path: str, body: Any, auth: str | None):
    data = body if isinstance(body, str) else json.dumps(body)
    headers = {"HTTP_AUTHORIZATION": basic(auth)} if auth else {}
    return client.post(path, data=data, content_type="application/json", **headers)


@pytest.fixture
def post_brevo(client, django_capture_on_commit_callbacks):
    """Posts to Brevo's webhook; what it kept is recorded when it answers (the worker's task,
    run at once in tests, is sent after the commit)."""

    def post_brevo(body: Any, *, auth: str | None = SECRET):
        with django_capture_on_commit_callbacks(execute=True):
            return post(client, "/esp/brevo/tracking/", body, auth)

    return post_brevo


@pytest.fixture
def post_mailgun(client, django_capture_on_commit_callbacks):
    def post_mailgun(body: Any, *, auth: str | None = SECRET):
        with django_capture_on_commit_callbacks(execute=True):
            return post(client, "/esp/mailgun/tracking/", body, auth)

    return post_mailgun


def mailgun_event(message: Message, *, key: str = MAILGUN_KEY, **changes: Any) -> dict[str, Any]:
    payload = json.loads((DATA / "mailgun_failed_permanent.json").read_text())
    payload["event-data"] = {
        **payload["event-data"],
        "recipient": message.to,
        "user-variables": {"lf_message": str(message.pk)},
        **changes,
    }
    signature = payload["signature"]
    signature["signature"] = hmac.new(
        key.encode(), (signature["timestamp"] + signature["token"]).encode(), hashlib.sha256
    ).hexdigest()
    return payload


def test_a_brevo_hard_bounce_refuses_the_address_and_shows_on_message_and_timeline(post_brevo):
    contact = ContactFactory(email="parti@example.fr")
    message = sent_message(contact)

    response = post_brevo(brevo_event(message))

    assert response.status_code == 200
    assert response.json() == {"ok": True, "received": 1}
    contact.refresh_from_db(), message.refresh_from_db()
    assert contact.email_status == "hard_bounce"
    assert message.status == "bounced"
    bounce = Bounce.objects.get()
    assert (bounce.kind, bounce.status, bounce.source) == ("hard", "5.1.1", "esp:brevo")
    assert "User unknown" in bounce.diagnostic
    assert Event.objects.filter(contact=contact, type="email_bounced").exists()


def test_brevo_soft_bounces_count_and_enough_of_them_refuse_the_address(
    post_brevo, post_mailgun, settings
):
    settings.NURTURING_SOFT_BOUNCE_LIMIT = 2
    contact = ContactFactory(email="pleine@example.fr")
    message = sent_message(contact)
    soft = {"event": "soft_bounce", "reason": "452 4.2.2 Mailbox full"}

    post_brevo(brevo_event(message, **soft))
    contact.refresh_from_db()
    assert contact.email_status == ""  # one soft bounce: still sent to

    post_brevo(brevo_event(message, **soft, ts_epoch=1796634181000))  # a day later
    contact.refresh_from_db()
    assert contact.email_status == "soft_bounces"
    assert list(Bounce.objects.values_list("kind", flat=True)) == ["soft", "soft"]


def test_a_signed_mailgun_complaint_refuses_the_address_and_ends_the_enrolment(
    post_brevo, post_mailgun
):
    contact = ContactFactory(email="fache@example.fr")
    message = sent_message(contact)

    response = post_mailgun(mailgun_event(message, event="complained"))

    assert response.status_code == 200 and response.json()["received"] == 1
    contact.refresh_from_db(), message.refresh_from_db()
    assert contact.email_status == "complaint"
    assert message.status == "complained"
    assert Enrollment.objects.get(contact=contact).status != "active"


def test_a_mailgun_temporary_failure_is_noted_and_refuses_nothing(post_brevo, post_mailgun):
    contact = ContactFactory()
    message = sent_message(contact)

    response = post_mailgun(mailgun_event(message, severity="temporary"))

    assert response.status_code == 200
    contact.refresh_from_db()
    assert contact.email_status == ""
    assert Bounce.objects.get().kind == "deferred"


def test_the_same_event_posted_twice_counts_once(post_brevo, post_mailgun):
    contact = ContactFactory()
    message = sent_message(contact)

    first = post_brevo(brevo_event(message))
    again = post_brevo(brevo_event(message))
    mailgun = mailgun_event(message, event="complained")
    post_mailgun(mailgun), post_mailgun(mailgun)

    assert first.status_code == again.status_code == 200
    assert Bounce.objects.filter(source="esp:brevo").count() == 1
    assert Bounce.objects.filter(source="esp:mailgun").count() == 1


@pytest.mark.parametrize(
    ("_case", "send"),
    [
        ("brevo, wrong password", lambda brevo, mailgun, m: brevo(brevo_event(m), auth="leadfunnel:guess")),
        ("brevo, no credentials", lambda brevo, mailgun, m: brevo(brevo_event(m), auth=None)),
        ("mailgun, forged signature", lambda brevo, mailgun, m: mailgun(mailgun_event(m, key="key-forged"))),
        ("mailgun, no credentials", lambda brevo, mailgun, m: mailgun(mailgun_event(m), auth=None)),
        ("mailgun, no signature", lambda brevo, mailgun, m: mailgun({**mailgun_event(m), "signature": {}})),
    ],
)  # fmt: skip
def test_a_forged_or_unsigned_post_is_refused_and_changes_nothing(
    post_brevo, post_mailgun, _case, send
):
    contact = ContactFactory()
    message = sent_message(contact)

    response = send(post_brevo, post_mailgun, message)

    assert response.status_code == 403
    assert response.json() == {"ok": False, "detail": "Signature absente ou invalide."}
    contact.refresh_from_db()
    assert contact.email_status == "" and not Bounce.objects.exists()


@pytest.mark.parametrize(
    "body", ["{not json", "[]", '"hard_bounce"', '{"event": "hard_bounce", "ts_epoch": "x"}']
)
def test_a_malformed_post_gets_a_400_not_a_500(post_brevo, body):
    response = post_brevo(body)

    assert response.status_code == 400
    assert response.json()["ok"] is False
    assert not Bounce.objects.exists()


def test_the_webhooks_are_off_while_no_secret_is_set(post_brevo, post_mailgun, settings):
    message = sent_message(ContactFactory())
    settings.ANYMAIL = {}

    response = post_brevo(brevo_event(message), auth=None)

    assert response.status_code == 404
    assert not Bounce.objects.exists()


def test_the_mailgun_webhook_is_off_without_its_signing_key(post_brevo, post_mailgun, settings):
    message = sent_message(ContactFactory())
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET}

    response = post_mailgun(mailgun_event(message))

    assert response.status_code == 404
    assert not Bounce.objects.exists()


def test_an_event_about_an_address_we_do_not_know_is_answered_and_not_recorded(
    post_brevo, post_mailgun
):
    response = post_brevo(brevo_event(None))

    assert response.status_code == 200
    assert not Bounce.objects.exists() and not EspReport.objects.exists()


def test_an_event_without_our_id_finds_the_contact_by_address(post_brevo, post_mailgun):
    contact = ContactFactory(email="Parti@Example.fr")
    message = sent_message(contact)
    event = brevo_event(message, email="parti@example.fr")
    del event["X-Mailin-custom"]

    post_brevo(event)

    contact.refresh_from_db()
    assert contact.email_status == "hard_bounce"
    assert Bounce.objects.get().message_id == message.pk


def test_reports_kept_by_a_post_whose_task_was_lost_are_recorded_by_the_sweep(client):
    """The post keeps its reports and answers; no task runs (as if a worker died with it)."""
    contact = ContactFactory()
    message = sent_message(contact)

    response = post(client, "/esp/brevo/tracking/", brevo_event(message), SECRET)
    EspReport.objects.update(received_at=timezone.now() - timedelta(minutes=1))
    assert response.json() == {"ok": True, "received": 1} and not Bounce.objects.exists()

    assert esp.esp_reports_sweep() == 1

    contact.refresh_from_db()
    assert contact.email_status == "hard_bounce" and not EspReport.objects.exists()
