import pytest

from contacts.privacy import contact_erase, contact_export
from nurturing import enrolment, scheduler
from nurturing.models import Message
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with

pytestmark = pytest.mark.django_db


def test_a_contacts_messages_are_in_its_export_and_gone_from_its_erasure(admin_user):
    contact = ContactFactory(first_name="Hélène", email="helene@example.fr")
    sequence = sequence_with(email_step(subject="Poêles pour {{ first_name }}"))
    enrolment.enrollments_start(sequence=sequence, contact_ids=[contact.pk])
    scheduler.enrollments_advance()

    exported = contact_export(contact=contact, actor=admin_user)
    [row] = [r for rows in exported.values() if isinstance(rows, list) for r in rows
             if isinstance(r, dict) and r.get("subject") == "Poêles pour Hélène"]  # fmt: skip
    assert row["to"] == "helene@example.fr"

    contact_erase(contact=contact, actor=admin_user)

    [message] = Message.objects.filter(contact=contact)
    assert (message.to, message.subject, message.body_text) == ("", "", "")
    assert "Hélène" not in str(Message.objects.values().get(pk=message.pk))
