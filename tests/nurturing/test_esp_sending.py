"""Sending through an ESP's API with django-anymail (Brevo's backend), to a real HTTP server
standing in for the ESP (anymail's ANYMAIL_BREVO_API_URL points the backend at it).

The in-doubt guarantee holds as for SMTP: the message is committed as handed over before the
backend gets it; the ESP's refusal (4xx) fails it or retries it, and a request that may have
reached the ESP without an answer leaves it in doubt, never sent again without a person.
"""

from __future__ import annotations

import json

import pytest

from nurturing import enrolment, scheduler, sending
from nurturing.models import Message
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with
from tests.utils import free_port

pytestmark = pytest.mark.django_db


def queue(*contacts):
    sequence = sequence_with(email_step(subject="Bonjour {{ first_name }}"))
    enrolment.enrollments_start(sequence=sequence, contact_ids=[c.pk for c in contacts])
    scheduler.enrollments_advance()
    return list(Message.objects.order_by("pk"))


def test_a_message_goes_to_the_esp_with_its_headers_and_our_message_id_as_metadata(brevo):
    contact = ContactFactory(first_name="Hélène", email="helene@example.fr")
    [message] = queue(contact)

    assert sending.messages_send() == 1

    [request] = brevo.requests
    assert request["path"] == "/v3/smtp/email" and request["key"] == "xkeysib-test"
    assert request["to"] == [{"email": "helene@example.fr"}]
    assert request["subject"] == "Bonjour Hélène"
    headers = request["headers"]
    assert json.loads(headers["X-Mailin-custom"]) == {"lf_message": str(message.pk)}
    assert "/e/u/" in headers["List-Unsubscribe"]
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    message.refresh_from_db()
    assert message.status == "sent" and message.sent_at is not None


def test_a_message_the_esp_refuses_fails_and_the_others_go(brevo):
    first, second = queue(*ContactFactory.create_batch(2))
    brevo.refused = {first.to}

    assert sending.messages_send() == 1

    first.refresh_from_db(), second.refresh_from_db()
    assert first.status == "failed" and "400" in first.error
    assert second.status == "sent"
    assert len(brevo.requests) == 2


def test_a_message_the_esp_asks_to_send_later_goes_back_to_the_queue(brevo):
    [message] = queue(ContactFactory())
    brevo.mode = "busy"

    assert sending.messages_send() == 0

    message.refresh_from_db()
    assert message.status == "queued" and "429" in message.error


def test_an_esp_that_drops_the_connection_after_reading_leaves_the_message_in_doubt(brevo):
    [message] = queue(ContactFactory())
    brevo.mode = "die"

    assert sending.messages_send() == 0
    brevo.mode = "accept"
    assert sending.messages_send() == 0  # never sent again by itself

    message.refresh_from_db()
    assert message.status == "in_doubt" and message.handed_over_at is not None
    assert len(brevo.requests) == 1


def test_an_esp_that_cannot_be_reached_leaves_the_message_queued_not_in_doubt(brevo, settings):
    [message] = queue(ContactFactory())
    settings.ANYMAIL = {**settings.ANYMAIL, "BREVO_API_URL": f"http://127.0.0.1:{free_port()}/"}

    assert sending.messages_send() == 0

    message.refresh_from_db()
    assert message.status == "queued" and brevo.requests == []
