"""What people see of bounces: the sequence results per step, the contact page's state and
its "the address works again" button, the contact's delivery reports, the API."""

from __future__ import annotations

import html

import pytest
from django.utils import timezone

from contacts.models import Contact
from nurturing import enrolment, scheduler
from nurturing.bounces import Kind, Report, record_reports
from nurturing.models import Message
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with, wait_step

pytestmark = pytest.mark.django_db


@pytest.fixture
def bounced(django_capture_on_commit_callbacks):
    """A two-email sequence sent to four contacts: one bounced hard, one soft, one complained."""
    sequence = sequence_with(email_step("Premier"), wait_step(days=2), email_step("Second"),
                             name="Relance hiver")  # fmt: skip
    contacts = ContactFactory.create_batch(4)
    enrolment.enrollments_start(sequence=sequence, contact_ids=[c.pk for c in contacts])
    scheduler.enrollments_advance()
    Message.objects.update(status="sent", sent_at=timezone.now())
    hard, soft, spam, _fine = (Message.objects.get(contact=c) for c in contacts)
    with django_capture_on_commit_callbacks(execute=True):
        record_reports([
            Report(kind=Kind.HARD, message_id=hard.pk, status="5.1.1",
                   diagnostic="550 5.1.1 Utilisateur inconnu", source="mailbox"),
            Report(kind=Kind.SOFT, message_id=soft.pk, status="4.2.2", source="mailbox"),
            Report(kind=Kind.COMPLAINT, message_id=spam.pk, source="esp:brevo"),
        ])  # fmt: skip
    return sequence, contacts


def test_the_results_page_counts_bounces_and_complaints_per_step(marketer_client, bounced):
    sequence, _ = bounced

    page = marketer_client.get(f"/nurturing/sequences/{sequence.pk}/")

    totals = page.context["totals"]
    assert (totals["sent"], totals["bounced"], totals["complained"]) == (4, 2, 1)
    first = page.context["steps"][0]
    assert (first["bounced"], first["complained"]) == (2, 1)
    text = page.content.decode()
    assert "En échec" in text and "Signalé comme spam" in text
    assert '<td class="num" data-testid="bounced">2</td>' in text


def test_the_contact_page_says_the_address_bounces_and_a_marketer_clears_it(
    marketer_client, bounced
):
    _, (hard, *_) = bounced
    hard.refresh_from_db()

    page = marketer_client.get(f"/contacts/{hard.pk}/").content.decode()
    assert "Adresse en échec définitif depuis le" in page
    assert "Utilisateur inconnu" in page

    response = marketer_client.post(f"/contacts/{hard.pk}/email-status/clear/", follow=True)

    assert "L’adresse peut de nouveau recevoir des e-mails." in html.unescape(
        response.content.decode()
    )
    hard.refresh_from_db()
    assert hard.email_status == "" and hard.audits.get().actor.username == "claire"
    assert "Adresse en échec" not in marketer_client.get(f"/contacts/{hard.pk}/").content.decode()


def test_the_contact_page_says_who_marked_email_as_spam(marketer_client, bounced):
    _, (_, _, spam, _) = bounced
    page = marketer_client.get(f"/contacts/{spam.pk}/").content.decode()
    assert "A signalé nos e-mails comme spam le" in page


def test_the_contacts_emails_show_the_reports_and_the_soft_bounce_count(marketer_client, bounced):
    _, (_, soft, _, _) = bounced

    page = html.unescape(
        marketer_client.get(f"/nurturing/contacts/{soft.pk}/enrollments/").content.decode()
    )

    assert "1 échec temporaire dans les 30 derniers jours" in page
    assert "Échec temporaire\u00a0: 4.2.2" in page


def test_the_api_gives_the_email_status(client, bounced):
    from contacts.intake.capture import api_key_create

    _, (hard, *_) = bounced
    key = api_key_create(name="Site web")[1]

    body = client.get(f"/api/v1/contacts/{hard.pk}", HTTP_AUTHORIZATION=f"Bearer {key}").json()

    assert body["email_status"] == Contact.EmailStatus.HARD_BOUNCE
    assert body["email_status_at"] is not None
