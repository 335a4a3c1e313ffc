"""Open pixel, click redirect and unsubscribe: signed tokens, events for scoring."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from contacts.models import Contact, Event
from nurturing import enrolment, rendering, scheduler, sending
from nurturing.models import Enrollment, Message
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with, wait_step
from tests.utils import is_pending

pytestmark = pytest.mark.django_db
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/128.0"


@pytest.fixture
def sent(django_capture_on_commit_callbacks):
    """A contact in a two-email sequence whose first email went out an hour ago."""
    sequence = sequence_with(
        email_step(
            body="Nos poêles : https://shop.example.fr/poeles et https://shop.example.fr/faq"
        ),
        wait_step(days=2),
        email_step(subject="Rappel"),
    )
    # Consented to open tracking: the email carries the pixel (NURTURING_OPEN_TRACKING).
    contact = ContactFactory(first_name="Inès", open_tracking_consent_at=timezone.now())
    enrolment.enrollment_start(sequence=sequence, contact=contact)
    with django_capture_on_commit_callbacks(execute=True):
        scheduler.enrollments_advance()
    message = Message.objects.get()
    assert message.status == "sent"
    Message.objects.update(sent_at=timezone.now() - timedelta(hours=1))
    message.refresh_from_db()
    return message


def token(kind, message, *more):
    return rendering.make_token(kind, message.enrollment_id, message.step_id, *more)


def test_an_open_is_recorded_once_on_the_message_and_as_an_email_open_event(
    client, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.get(f"/e/o/{token('open', sent)}.gif", HTTP_USER_AGENT=BROWSER)
        client.get(f"/e/o/{token('open', sent)}.gif", HTTP_USER_AGENT=BROWSER)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/gif"
    assert "no-cache" in response["Cache-Control"]
    sent.refresh_from_db()
    assert sent.opened_at is not None
    [event] = Event.objects.filter(type="email_open")
    assert event.properties["machine"] is False
    assert event.properties["user_agent"] == BROWSER
    assert event.properties["sent_at"] and event.properties["seconds_after_send"] >= 3600
    assert not is_pending(event)  # handed to scoring


def test_a_mail_scanner_open_is_recorded_as_a_machine_signal_not_an_open(client, sent):
    client.get(f"/e/o/{token('open', sent)}.gif", HTTP_USER_AGENT="Barracuda Sentinel (EE)")
    sent.refresh_from_db()
    assert sent.opened_at is None
    assert Event.objects.get(type="email_open").properties["machine"] is True


def test_a_click_goes_to_the_stored_url_of_that_link_only(client, sent):
    response = client.get(
        f"/e/c/{token('click', sent, 1)}?url=https://evil.example", HTTP_USER_AGENT=BROWSER
    )
    assert response.status_code == 302
    assert response["Location"] == "https://shop.example.fr/faq"
    sent.refresh_from_db()
    assert sent.clicked_at is not None and sent.opened_at is not None
    event = Event.objects.get(type="email_click")
    assert event.properties["url"] == "https://shop.example.fr/faq"
    assert client.get(f"/e/c/{token('click', sent, 7)}").status_code == 404  # no such link


def tampered(value: str) -> str:
    return value[:-1] + ("A" if value[-1] != "A" else "B")


@pytest.mark.parametrize("method", ["get", "post"])
def test_forged_or_tampered_tokens_get_a_404_and_change_nothing(client, sent, method):
    contact = sent.contact
    urls = [
        f"/e/o/{tampered(token('open', sent))}.gif",
        f"/e/c/{tampered(token('click', sent, 0))}",
        f"/e/u/{tampered(token('unsubscribe', sent))}",
        f"/e/u/{sent.enrollment_id}.{sent.step_id}",  # unsigned
        f"/e/c/{token('open', sent)}",  # an open token used for a click
        f"/e/u/{token('click', sent, 0)}",  # a click token used to unsubscribe
        f"/e/o/{rendering.make_token('open', sent.enrollment_id + 1000, sent.step_id)}.gif",
    ]
    for url in urls:
        if method == "post" and "/e/u/" not in url:
            continue
        assert getattr(client, method)(url).status_code == 404, url
    sent.refresh_from_db()
    contact.refresh_from_db()
    assert sent.opened_at is None and sent.clicked_at is None
    assert not contact.do_not_email
    assert not Event.objects.filter(
        type__in=["email_open", "email_click", "newsletter_unsubscribe"]
    ).exists()


def test_the_unsubscribe_page_asks_first_and_changes_nothing_on_get(client, sent):
    response = client.get(f"/e/u/{token('unsubscribe', sent)}")
    assert response.status_code == 200
    assert sent.contact.email in response.content.decode()
    assert b"<form" in response.content
    assert not Contact.objects.get(pk=sent.contact_id).do_not_email


def test_one_click_unsubscribe_stops_everything_at_once(sent, django_capture_on_commit_callbacks):
    # What a mail provider sends (RFC 8058): a bare POST, no cookie, no CSRF token.
    client = Client(enforce_csrf_checks=True)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/e/u/{token('unsubscribe', sent)}",
            data="List-Unsubscribe=One-Click",
            content_type="application/x-www-form-urlencoded",
        )
    assert response.status_code == 200
    contact = Contact.objects.get(pk=sent.contact_id)
    assert contact.do_not_email
    enrollment = Enrollment.objects.get()
    assert (enrollment.status, enrollment.next_run_at) == ("unsubscribed", None)
    assert Event.objects.filter(type="newsletter_unsubscribe", contact=contact).count() == 1
    with time_machine.travel(timezone.now() + timedelta(days=3), tick=False):
        scheduler.enrollments_advance()
        sending.messages_send()
    assert Message.objects.count() == 1  # the reminder never went
