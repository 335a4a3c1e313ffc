"""Recipients the mail server refuses at RCPT (a real aiosmtpd server answering 550 or 452 for
some addresses): a hard bounce at once, or a retry then a soft bounce; the others of the batch
are delivered exactly once."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from contacts.models import Contact
from nurturing import enrolment, scheduler, sending
from nurturing.models import Bounce, Message
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with

pytestmark = pytest.mark.django_db


def queue(*contacts):
    sequence = sequence_with(email_step())
    enrolment.enrollments_start(sequence=sequence, contact_ids=[c.pk for c in contacts])
    scheduler.enrollments_advance()


def test_a_550_at_rcpt_is_a_hard_bounce_and_the_batch_is_delivered_once(
    smtp, django_capture_on_commit_callbacks
):
    contacts = ContactFactory.create_batch(5)
    gone = contacts[2]
    smtp.refuse.add(gone.email)
    queue(*contacts)

    with django_capture_on_commit_callbacks(execute=True):
        assert sending.messages_send() == 4
        assert sending.messages_send() == 0  # and again: nothing more goes

    delivered = sorted(r.recipients[0] for r in smtp.received)
    assert delivered == sorted(c.email for c in contacts if c != gone)
    refused = Message.objects.get(contact=gone)
    assert refused.status == "bounced" and "No such user" in refused.error
    assert refused.sent_at is None
    bounce = Bounce.objects.get()
    assert (bounce.kind, bounce.status, bounce.source, bounce.message_id) == (
        "hard", "5.1.1", "smtp", refused.pk,
    )  # fmt: skip
    gone.refresh_from_db()
    assert gone.email_status == Contact.EmailStatus.HARD_BOUNCE
    assert Message.objects.filter(status="sent").count() == 4


@pytest.fixture
def greylisting(smtp):
    """The server answers 452 (try again later) for the addresses in ``smtp.later``."""
    smtp.later = set()
    refuse = type(smtp).handle_RCPT

    async def handle_rcpt(server, session, envelope, address, rcpt_options):
        if address in smtp.later:
            return "452 4.2.2 Mailbox full, try again later"
        return await refuse(smtp, server, session, envelope, address, rcpt_options)

    smtp.handle_RCPT = handle_rcpt
    return smtp


def test_a_452_at_rcpt_is_tried_again_and_is_a_soft_bounce_only_when_attempts_run_out(
    greylisting, settings, django_capture_on_commit_callbacks
):
    settings.NURTURING_MAX_ATTEMPTS = 2
    full, fine = ContactFactory.create_batch(2)
    greylisting.later.add(full.email)
    queue(full, fine)

    with django_capture_on_commit_callbacks(execute=True):
        assert sending.messages_send() == 1
    waiting = Message.objects.get(contact=full)
    assert waiting.status == "queued" and "452" in waiting.error
    assert not Bounce.objects.exists()

    with (
        time_machine.travel(timezone.now() + timedelta(hours=2), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert sending.messages_send() == 0

    waiting.refresh_from_db()
    assert waiting.status == "bounced"
    assert Bounce.objects.get().kind == "soft"
    full.refresh_from_db()
    assert full.email_status == ""  # one soft bounce: counted, not refused
    assert [r.recipients for r in greylisting.received] == [[fine.email]]
