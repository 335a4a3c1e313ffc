"""Sending through an ESP's API with django-anymail (Brevo's backend), to a real HTTP server
standing in for the ESP (anymail's ANYMAIL_BREVO_API_URL points the backend at it).

The in-doubt guarantee holds as for SMTP: the message is committed as handed over before the
backend gets it; the ESP's refusal (4xx) fails it or retries it, and a request that may have
reached the ESP without an answer leaves it in doubt, never sent again without a person.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from nurturing import enrolment, scheduler, sending
from nurturing.models import Message
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with
from tests.utils import free_port

pytestmark = pytest.mark.django_db


@dataclass
class BrevoApi:
    """Answers POST /v3/smtp/email as Brevo does (201 and a messageId), or as ``mode`` says:
    "refuse" (400, Brevo's error body; also for any address in ``refused``), "busy" (429),
    "die" (reads the request, then drops the connection without an answer)."""

    mode: str = "accept"
    refused: set[str] = field(default_factory=set)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def start(self) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = {"path": self.path, "key": self.headers.get("api-key")}
                api.requests.append({**request, **json.loads(body)})
                mode = api.mode
                if {to["email"] for to in api.requests[-1]["to"]} & api.refused:
                    mode = "refuse"
                if mode == "die":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                status, answer = {
                    "accept": (201, {"messageId": f"<{len(api.requests)}@smtp-relay.mailin.fr>"}),
                    "refuse": (400, {"code": "invalid_parameter", "message": "email is not valid"}),
                    "busy": (429, {"code": "too_many_requests", "message": "Slow down"}),
                }[mode]
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def brevo(settings):
    api = BrevoApi()
    api.start()
    settings.EMAIL_BACKEND = "anymail.backends.brevo.EmailBackend"
    settings.ANYMAIL = {
        "BREVO_API_KEY": "xkeysib-test",
        "BREVO_API_URL": f"http://127.0.0.1:{api.port}/v3/",
    }
    yield api
    api.stop()


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
