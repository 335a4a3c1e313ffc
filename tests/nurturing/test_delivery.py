"""Delivery through Django's SMTP backend to a real SMTP server (aiosmtpd)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from nurturing import enrolment, scheduler, sending
from nurturing.models import Message
from tests.factories import ContactFactory
from tests.nurturing.helpers import SmtpSink, email_step, sequence_with, smtp_server

pytestmark = pytest.mark.django_db


def queue(*contacts, **step):
    sequence = sequence_with(email_step(**step))
    enrolment.enrollments_start(sequence=sequence, contact_ids=[c.pk for c in contacts])
    scheduler.enrollments_advance()
    return list(Message.objects.order_by("pk"))


def test_a_message_arrives_with_its_headers_both_parts_and_accents(smtp, settings):
    settings.DEFAULT_FROM_EMAIL = "Boutique <marketing@boutique.example.fr>"
    contact = ContactFactory(first_name="Hélène", email="helene@example.fr")
    [message] = queue(
        contact,
        subject="Poêles pour {{ first_name }} — été",
        body="Bonjour {{ first_name }}, voyez https://boutique.example.fr/poêles\n",
    )

    assert sending.messages_send() == 1

    [received] = smtp.received
    mail = received.message
    assert received.recipients == ["helene@example.fr"]
    assert mail["Subject"] == "Poêles pour Hélène — été"
    assert (
        mail["Message-ID"]
        == f"<nurturing.{message.enrollment_id}.{message.step_id}@boutique.example.fr>"
    )
    unsubscribe = str(mail["List-Unsubscribe"]).strip()
    assert unsubscribe.startswith("<http://") and "/e/u/" in unsubscribe
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "Bonjour Hélène" in text and "https://boutique.example.fr/poêles" in text
    assert "Bonjour Hélène" in html and "/e/c/" in html and "/e/o/" in html
    message.refresh_from_db()
    assert message.status == "sent" and message.sent_at is not None


def test_a_message_is_never_delivered_twice(smtp):
    queue(*ContactFactory.create_batch(3))
    assert sending.messages_send() == 3
    assert sending.messages_send() == 0
    Message.objects.update(status="queued")  # as if a second task raced the first...
    Message.objects.update(status="sent")  # ...but the first had marked them sent
    assert sending.messages_send() == 0
    assert len(smtp.received) == 3
    assert len({r.message["Message-ID"] for r in smtp.received}) == 3


def test_a_refused_recipient_bounces_with_the_reason_and_the_rest_go(smtp):
    good, bad, other = ContactFactory.create_batch(3)
    smtp.refuse.add(bad.email)
    queue(good, bad, other)

    assert sending.messages_send() == 2

    assert sorted(r.recipients[0] for r in smtp.received) == sorted([good.email, other.email])
    bounced = Message.objects.get(to=bad.email)
    assert bounced.status == "bounced"
    assert "550" in bounced.error and "No such user" in bounced.error


def test_a_server_that_is_down_means_a_retry_soon_then_delivery(settings):
    sink = SmtpSink()
    from tests.utils import free_port

    port = free_port()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 5
    [message] = queue(ContactFactory())

    assert sending.messages_send() == 0  # nothing listens on the port

    message.refresh_from_db()
    assert message.status == "queued" and message.attempts == 1
    assert "Error" in message.error or "refused" in message.error.lower()
    delay = message.next_attempt_at - timezone.now()
    assert timedelta(0) < delay <= timedelta(minutes=5)
    assert sending.messages_send() == 0  # not due yet: nothing tried
    assert Message.objects.get().attempts == 1

    controller = smtp_server(sink, port=port)
    try:
        with time_machine.travel(message.next_attempt_at + timedelta(seconds=1), tick=False):
            assert sending.messages_send() == 1
    finally:
        controller.stop()
    assert len(sink.received) == 1
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("sent", 2)


def test_a_message_that_keeps_failing_stops_after_the_last_attempt(settings):
    from tests.utils import free_port

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    settings.NURTURING_MAX_ATTEMPTS = 3
    [message] = queue(ContactFactory())
    for _attempt in range(3):
        Message.objects.update(next_attempt_at=timezone.now())
        sending.messages_send()
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("failed", 3)


def test_the_reaper_returns_messages_whose_worker_died_holding_them(smtp):
    [message] = queue(ContactFactory())
    Message.objects.update(status="sending", lease_until=timezone.now() + timedelta(minutes=5))
    assert sending.messages_send() == 0  # leased: nobody else may send it
    assert sending.messages_reap() == 0  # the lease still runs

    with time_machine.travel(timezone.now() + timedelta(minutes=6), tick=False):
        assert sending.messages_reap() == 1
        assert sending.messages_send() == 1
    assert len(smtp.received) == 1


def test_the_console_backend_of_make_run_prints_the_message_readably(settings, capsys):
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    [message] = queue(ContactFactory(first_name="Loïc"), subject="Été pour {{ first_name }}")
    assert sending.messages_send() == 1
    printed = capsys.readouterr().out
    assert "Subject: =?utf-8?" in printed  # encoded, as on the wire
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in printed
    assert message.message_id in printed
    Message.objects.get(pk=message.pk, status="sent")


def test_any_email_goes_through_the_smtp_backends_whole(smtp):
    # Not only the outbox's: Django's send_mail (password resets, admins' errors) too, with a
    # line holding only a dot (doubled on the wire, as SMTP wants) arriving as it was written.
    from django.core.mail import send_mail

    assert send_mail("Objet", "Corps\n.\nfin", "a@example.fr", ["b@example.fr"]) == 1

    [received] = smtp.received
    assert received.recipients == ["b@example.fr"]
    assert received.message["Subject"] == "Objet"
    assert received.message.get_content().splitlines() == ["Corps", ".", "fin"]
