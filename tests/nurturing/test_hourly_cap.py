"""The site-wide hourly cap: at most N marketing emails reach the mail server in any hour,
whatever the number of workers sending at once; the others wait in the queue and go after the
hour, none lost, failed or sent twice; notes to owners are not held."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
import time_machine
from django.db import connection

from nurturing import enrolment, hourly_cap, scheduler, sending
from nurturing.models import Enrollment, Message
from tests.factories import ContactFactory, UserFactory
from tests.nurturing.helpers import email_step, sequence_with

START = "2026-03-02 09:00Z"


def marketing_ids(smtp) -> list[str]:
    return [r.message["Message-ID"] for r in smtp.received if r.recipients[0].startswith("c")]


def queue(count: int) -> None:
    """``count`` due marketing messages, one per contact, written as a step writes them."""
    sequence = sequence_with(email_step(), name="Lettre")
    step = sequence.steps.get()
    for number in range(count):
        contact = ContactFactory(email=f"c{number}@example.fr")
        enrollment = Enrollment.objects.create(contact=contact, sequence=sequence)
        Message.objects.create(
            enrollment=enrollment, step=step, contact=contact, to=contact.email, subject="Bonjour",
            body_text="Bonjour", message_id=f"<m{number}@leadfunnel.test>",
        )  # fmt: skip


@pytest.mark.django_db
def test_over_the_cap_messages_wait_for_the_next_hour_and_owner_notes_do_not(smtp, settings):
    settings.NURTURING_HOURLY_CAP = 3
    owner = UserFactory(email="owner@example.fr", roles=["sales"])
    sequence = sequence_with(email_step(), {"kind": "notify_owner"})
    contacts = [ContactFactory(email=f"c{n}@example.fr", owner=owner) for n in range(8)]

    with time_machine.travel(START, tick=False) as traveller:
        enrolment.enrollments_start(sequence=sequence, contact_ids=[c.pk for c in contacts])
        scheduler.enrollments_advance()
        # One at a time: once the hour is full, the notes behind the held emails still go.
        sending.messages_send(batch_size=1)

        notes = [r for r in smtp.received if r.recipients == ["owner@example.fr"]]
        assert len(notes) == 8
        assert len(marketing_ids(smtp)) == 3
        waiting = Message.objects.filter(internal=False, status=Message.Status.QUEUED)
        assert waiting.count() == 5
        assert set(waiting.values_list("attempts", "error")) == {(0, "")}
        assert hourly_cap.allowance() == 0

        traveller.shift(timedelta(minutes=59))
        sending.messages_send()
        assert len(marketing_ids(smtp)) == 3

        traveller.shift(timedelta(minutes=2))
        sending.messages_send()
        assert len(marketing_ids(smtp)) == 6

        traveller.shift(timedelta(hours=1))
        sending.messages_send()

    sent = marketing_ids(smtp)
    assert len(sent) == len(set(sent)) == 8
    assert set(Message.objects.values_list("status", flat=True)) == {Message.Status.SENT}


@pytest.mark.django_db
def test_without_a_cap_everything_goes_at_once(smtp, settings):
    settings.NURTURING_HOURLY_CAP = 0
    queue(12)

    assert sending.messages_send() == 12
    assert hourly_cap.allowance() is None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_workers_sending_at_once_never_pass_the_cap_together(smtp, settings):
    settings.NURTURING_HOURLY_CAP = 5

    def workers(count: int) -> None:
        ready = threading.Barrier(count)

        def work() -> None:
            try:
                ready.wait()
                sending.messages_send(batch_size=2)
            finally:
                connection.close()

        threads = [threading.Thread(target=work) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

    with time_machine.travel(START, tick=False) as traveller:
        queue(24)
        for hour in range(5):
            workers(4)
            assert len(marketing_ids(smtp)) == min(5 * (hour + 1), 24), hour
            traveller.shift(timedelta(minutes=61))

    sent = Counter(marketing_ids(smtp))
    assert len(sent) == 24 and set(sent.values()) == {1}
    assert Message.objects.filter(status=Message.Status.SENT).count() == 24
