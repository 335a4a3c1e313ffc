"""End to end over real HTTP: a message sent through an ESP's API (a stand-in for Brevo's), then
the ESP's tracking webhook posting its bounce to the running site (a live server), matched to
the message by the metadata the message carried."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from contacts.models import Event
from nurturing import enrolment, scheduler, sending
from nurturing.models import Message
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with
from tests.utils import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

DATA = Path(__file__).resolve().parents[1] / "data" / "esp"
SECRET = "leadfunnel:live-webhook-secret"


def post(url: str, payload: dict, *, credentials: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(credentials.encode()).decode(),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (our server)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_message_sent_through_the_esp_then_bounced_is_matched_by_its_metadata(
    brevo, live_server, settings
):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": SECRET}
    contact = ContactFactory(email="parti@example.fr")
    enrolment.enrollments_start(sequence=sequence_with(email_step()), contact_ids=[contact.pk])
    scheduler.enrollments_advance()  # the send task runs after the commit (eager here)
    sending.messages_send()
    assert Message.objects.get().status == "sent"
    [sent] = brevo.requests
    # What Brevo echoes back: the custom header it was given, its own message id.
    event = json.loads((DATA / "brevo_hard_bounce.json").read_text())
    event.update(
        {"email": "parti@example.fr", "X-Mailin-custom": sent["headers"]["X-Mailin-custom"]}
    )
    url = f"{live_server.url}/esp/brevo/tracking/"

    forged = post(url, event, credentials="leadfunnel:guess")
    status, answer = post(url, event, credentials=SECRET)

    assert forged[0] == 403
    assert status == 200 and answer == {"ok": True, "received": 1}
    message = Message.objects.get()
    contact.refresh_from_db()
    assert message.status == "bounced"
    assert contact.email_status == "hard_bounce"
    assert wait_for(lambda: Event.objects.filter(contact=contact, type="email_bounced").exists())
