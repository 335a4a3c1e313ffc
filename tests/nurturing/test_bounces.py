"""Recording bounces and complaints (nurturing.bounces): what a contact, its messages and its
timeline show afterwards, whatever source reported them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from contacts.models import Contact, Event
from nurturing import enrolment, scheduler
from nurturing.bounces import Kind, Report, record_reports
from nurturing.models import Bounce, Enrollment, Message
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with, wait_step

pytestmark = pytest.mark.django_db


def sent_message(contact, *steps):
    """The first email of a sequence, as sent to ``contact`` (its enrolment goes on)."""
    sequence = sequence_with(*(steps or (email_step(),)))
    enrolment.enrollments_start(sequence=sequence, contact_ids=[contact.pk])
    scheduler.enrollments_advance()
    message = Message.objects.get(contact=contact)
    Message.objects.filter(pk=message.pk).update(status="sent", sent_at=timezone.now())
    message.refresh_from_db()
    return message


def record(*reports, capture):
    with capture(execute=True):
        return record_reports(reports)


def test_a_hard_bounce_refuses_the_address_at_once_and_the_next_email_says_why(
    django_capture_on_commit_callbacks,
):
    contact = ContactFactory(email="parti@example.fr")
    message = sent_message(contact, email_step(), wait_step(days=2), email_step("Suite"))

    result = record(
        Report(kind=Kind.HARD, message_id=message.pk, status="5.1.1",
               diagnostic="550 5.1.1 User unknown", source="mailbox", reference="dsn-1"),
        capture=django_capture_on_commit_callbacks,
    )  # fmt: skip

    assert (result.recorded, result.duplicates, result.unmatched) == (1, 0, [])
    contact.refresh_from_db()
    assert contact.email_status == Contact.EmailStatus.HARD_BOUNCE
    assert "User unknown" in contact.email_status_detail
    message.refresh_from_db()
    assert message.status == "bounced" and "5.1.1" in message.delivery_note
    event = Event.objects.get(contact=contact, type="email_bounced")
    assert event.properties["kind"] == "hard" and event.properties["status"] == "5.1.1"

    later = timezone.now() + timedelta(days=3)
    scheduler.enrollments_advance(as_of=later)
    following = Message.objects.get(contact=contact, subject="Suite")
    assert following.status == "suppressed" and following.error == "hard bounce"
    assert following.error_label == "L’adresse est en échec (échec définitif)"


def test_the_same_report_twice_counts_once(django_capture_on_commit_callbacks):
    contact = ContactFactory()
    message = sent_message(contact)
    report = Report(kind=Kind.SOFT, message_id=message.pk, status="4.2.2",
                    source="esp:brevo", reference="evt-9")  # fmt: skip

    first = record(report, report, capture=django_capture_on_commit_callbacks)
    again = record(report, capture=django_capture_on_commit_callbacks)

    assert (first.recorded, first.duplicates) == (1, 1)
    assert (again.recorded, again.duplicates) == (0, 1)
    assert Bounce.objects.count() == 1
    assert Event.objects.filter(contact=contact, type="email_bounced").count() == 1


def test_a_report_matching_nothing_is_handed_back(django_capture_on_commit_callbacks):
    nobody = Report(kind=Kind.HARD, email="inconnu@example.fr", source="mailbox", reference="x")

    result = record(nobody, capture=django_capture_on_commit_callbacks)

    assert result.unmatched == [nobody] and result.recorded == 0
    assert not Bounce.objects.exists()


def test_a_report_by_address_finds_the_contact_and_its_latest_email(
    django_capture_on_commit_callbacks,
):
    contact = ContactFactory(email="Marie@Example.fr")
    message = sent_message(contact)

    record(Report(kind=Kind.COMPLAINT, email="marie@example.FR", source="esp:ses"),
           capture=django_capture_on_commit_callbacks)  # fmt: skip

    bounce = Bounce.objects.get()
    assert (bounce.contact_id, bounce.message_id) == (contact.pk, message.pk)
    message.refresh_from_db()
    assert message.status == "complained"


def test_a_complaint_ends_every_enrolment_and_refuses_the_address(
    django_capture_on_commit_callbacks,
):
    contact = ContactFactory()
    message = sent_message(contact, email_step(), wait_step(days=2), email_step("Suite"))
    other = sequence_with(wait_step(days=1), email_step("Autre"))
    enrolment.enrollments_start(sequence=other, contact_ids=[contact.pk])

    record(Report(kind=Kind.COMPLAINT, message_id=message.pk, source="mailbox",
                  reference="arf-1"), capture=django_capture_on_commit_callbacks)  # fmt: skip

    contact.refresh_from_db()
    assert contact.email_status == Contact.EmailStatus.COMPLAINT
    enrolments = Enrollment.objects.filter(contact=contact)
    assert {(e.status, e.end_reason) for e in enrolments} == {("exited", "spam complaint")}
    assert Event.objects.filter(contact=contact, type="email_complaint").count() == 1
