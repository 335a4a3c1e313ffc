"""A hard bounce on a rep's lead rings the rep's bell (and goes in their digest)."""

from __future__ import annotations

import pytest
from django.utils import timezone, translation

from contacts.models import Contact, Notification
from contacts.notification_text import render
from nurturing import enrolment, scheduler
from nurturing.bounces import Kind, Report, record_reports
from nurturing.models import Message
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with

pytestmark = pytest.mark.django_db


def sent_message(contact):
    sequence = sequence_with(email_step())
    enrolment.enrollments_start(sequence=sequence, contact_ids=[contact.pk])
    scheduler.enrollments_advance()
    message = Message.objects.get(contact=contact, internal=False)
    Message.objects.filter(pk=message.pk).update(status="sent", sent_at=timezone.now())
    return message


def test_a_hard_bounce_on_a_reps_lead_tells_the_rep_once(
    sales_rep, other_rep, django_capture_on_commit_callbacks
):
    lead = ContactFactory(first_name="Maëlle", last_name="Cœur", email="maelle@exemple.fr",
                          stage=Contact.Stage.SQL, owner=sales_rep)  # fmt: skip
    nobodys = ContactFactory(email="libre@exemple.fr")
    message, other = sent_message(lead), sent_message(nobodys)

    with django_capture_on_commit_callbacks(execute=True):
        record_reports([
            Report(kind=Kind.HARD, message_id=message.pk, status="5.1.1",
                   diagnostic="550 5.1.1 User unknown", source="mailbox", reference="dsn-1"),
            Report(kind=Kind.HARD, email="maelle@exemple.fr", status="5.1.1",
                   source="esp:brevo", reference="evt-2"),
            Report(kind=Kind.HARD, message_id=other.pk, status="5.1.1", source="mailbox",
                   reference="dsn-3"),
        ])  # fmt: skip

    [notice] = Notification.objects.filter(kind=Notification.Kind.HARD_BOUNCE)
    assert notice.user == sales_rep and notice.contact_id == lead.pk
    with translation.override("fr"):
        text = render(notice, reader=sales_rep).text
    assert text == (
        "L’email à Maëlle Cœur est revenu en échec\u00a0: maelle@exemple.fr ne reçoit pas de "
        "courrier (5.1.1 550 5.1.1 User unknown)."
    )
    assert not Notification.objects.filter(user=other_rep).exists()
