"""One contact's emails of one sequence arrive in order, even when a worker dies holding the
first one: a later message of an enrolment waits while an earlier one is queued, leased or in
doubt (a real sending process is SIGKILLed with its batch leased, as in test_in_doubt)."""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from nurturing import enrolment, scheduler, sending
from nurturing.models import Message
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with, wait_step
from tests.nurturing.test_in_doubt import send_and_die

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_send_kick(monkeypatch):  # type: ignore[no-untyped-def]
    # The tick's after-commit kick would send in this process (eager Celery).
    monkeypatch.setattr(scheduler, "kick_send", lambda _count: None)


def later(**delta: float):  # type: ignore[no-untyped-def]
    return time_machine.travel(timezone.now() + timedelta(**delta), tick=False)


def subjects_by_recipient(smtp) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    got: dict[str, list[str]] = {}
    for received in smtp.received:
        got.setdefault(received.recipients[0], []).append(received.message["Subject"])
    return got


@pytest.mark.postgres
@pytest.mark.reliability
def test_a_second_email_waits_while_the_first_is_held_by_a_dead_worker(smtp):
    sequence = sequence_with(
        email_step(subject="Premier"), wait_step(minutes=1), email_step(subject="Second")
    )
    contacts = ContactFactory.create_batch(3)
    enrolment.enrollments_start(sequence=sequence, contact_ids=[c.pk for c in contacts])
    scheduler.enrollments_advance()

    # A sending process claims the three first emails and dies holding their lease.
    died = send_and_die(smtp.controller.port, "claimed", 1)
    assert died.returncode == -signal.SIGKILL, died.stderr
    assert Message.objects.filter(status="sending").count() == 3

    with later(minutes=2):  # past the wait, within the lease
        scheduler.enrollments_advance()
        assert Message.objects.filter(status="queued", subject="Second").count() == 3
        assert sending.messages_send() == 0  # the second emails wait for the first
    assert smtp.received == []

    with later(minutes=10):  # the lease has run out: the reaper frees the first emails
        assert sending.messages_reap() == 3
        assert sending.messages_send() == 6

    assert subjects_by_recipient(smtp) == {c.email: ["Premier", "Second"] for c in contacts}


def test_a_later_email_waits_while_an_earlier_one_is_in_doubt_or_retrying(smtp):
    sequence = sequence_with(
        email_step(subject="Premier"), wait_step(minutes=1), email_step(subject="Second")
    )
    in_doubt, retrying, fine = ContactFactory.create_batch(3)
    enrolment.enrollments_start(sequence=sequence, contact_ids=[in_doubt.pk, retrying.pk, fine.pk])
    scheduler.enrollments_advance()
    first = {m.contact_id: m for m in Message.objects.all()}
    Message.objects.filter(pk=first[in_doubt.pk].pk).update(status="in_doubt")
    Message.objects.filter(pk=first[retrying.pk].pk).update(
        next_attempt_at=timezone.now() + timedelta(hours=1)  # a 4xx: tried again later
    )

    with later(minutes=2):
        scheduler.enrollments_advance()
        assert sending.messages_send() == 2  # the fine contact's two, in order

    assert subjects_by_recipient(smtp) == {fine.email: ["Premier", "Second"]}
    assert set(
        Message.objects.filter(subject="Second", status="queued").values_list(
            "contact_id", flat=True
        )
    ) == {in_doubt.pk, retrying.pk}


def test_a_person_marks_an_in_doubt_email_delivered_and_the_next_one_goes(smtp, admin_client):
    sequence = sequence_with(
        email_step(subject="Premier"), wait_step(minutes=1), email_step(subject="Second")
    )
    contact = ContactFactory()
    enrolment.enrollments_start(sequence=sequence, contact_ids=[contact.pk])
    scheduler.enrollments_advance()
    first = Message.objects.get()
    handed_over = timezone.now()
    Message.objects.filter(pk=first.pk).update(status="in_doubt", handed_over_at=handed_over)
    with later(minutes=2):
        scheduler.enrollments_advance()
        assert sending.messages_send() == 0  # held behind the one in doubt

    # The mail server's log shows it arrived: the admin says so.
    response = admin_client.post(
        "/admin/nurturing/message/",
        {"action": "mark_delivered", "_selected_action": [first.pk]},
        follow=True,
    )

    assert response.status_code == 200
    first.refresh_from_db()
    assert (first.status, first.sent_at) == ("sent", handed_over)
    with later(minutes=3):
        assert sending.messages_send() == 1
    assert subjects_by_recipient(smtp) == {contact.email: ["Second"]}
