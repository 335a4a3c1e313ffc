"""A rep writes to a lead from its page: the email goes through Django's SMTP backend to a real
SMTP server (aiosmtpd), accents intact, and is logged only once it went."""

from __future__ import annotations

import pytest
from django.urls import reverse

from contacts.models import Activity, Contact, ContactAudit, Event
from contacts.sales.activities import ActivityRefused, activity_email_send
from contacts.sales.claims import contact_claim
from tests.factories import ContactFactory
from tests.utils import free_port

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def smtp(settings, django_smtp_sink):
    settings.DEFAULT_FROM_EMAIL = "LeadFunnel <ventes@leadfunnel.example>"
    return django_smtp_sink


def claimed_by(rep, **fields) -> Contact:
    lead = ContactFactory(stage=Contact.Stage.SQL, **fields)
    contact_claim(contact_id=lead.pk, user=rep)
    return lead


def test_an_email_with_accents_reaches_the_server_intact_and_is_logged(smtp, sales_rep):
    lead = claimed_by(sales_rep, first_name="Zoé", company="Œuvres & Cie", email="zoe@exemple.fr")

    activity = activity_email_send(
        contact=lead, user=sales_rep, subject="Votre projet chez {{ company }} — été",
        body="Bonjour {{ first_name }},\n\nœuvre, cœur, déjà.\n\n{{ rep_name }}",
    )  # fmt: skip

    [received] = smtp.received
    message = received.message
    assert received.recipients == ["zoe@exemple.fr"]
    assert message["Subject"] == "Votre projet chez Œuvres & Cie — été"
    assert (
        message.get_content().replace("\r\n", "\n").strip()
        == "Bonjour Zoé,\n\nœuvre, cœur, déjà.\n\nHugo Bernard"
    )
    # The rep's address is not on the sending domain: from it by name, replies to the rep.
    assert message["From"].addresses[0].addr_spec == "ventes@leadfunnel.example"
    assert message["From"].addresses[0].display_name == "Hugo Bernard"
    assert message["Reply-To"].addresses[0].addr_spec == "hugo@example.com"
    assert activity.kind == "email" and activity.sent_to == "zoe@exemple.fr"
    assert activity.subject == "Votre projet chez Œuvres & Cie — été"
    event = Event.objects.get(contact=lead, type=Event.Type.SALES_EMAIL)
    assert event.properties["message_id"] == message["Message-ID"]
    assert ContactAudit.objects.filter(contact=lead, action=ContactAudit.Action.EMAIL_SENT).exists()


def test_a_rep_on_the_sending_domain_sends_from_their_own_address(smtp, sales_rep):
    sales_rep.email = "hugo@leadfunnel.example"
    sales_rep.save()
    lead = claimed_by(sales_rep)

    activity_email_send(contact=lead, user=sales_rep, subject="Bonjour", body="Texte")

    message = smtp.received[0].message
    assert message["From"].addresses[0].addr_spec == "hugo@leadfunnel.example"
    assert message["Reply-To"] is None


@pytest.mark.parametrize(
    ("_case", "fields", "message"),
    [
        ("opted out", {"do_not_email": True}, "ne pas recevoir"),
        ("hard bounce", {"email_status": "hard_bounce"}, "Aucun e-mail ne part"),
        ("no address", {"email": None}, "pas d’adresse"),
    ],
)
def test_a_lead_that_may_not_be_emailed_is_refused_and_nothing_goes(
    smtp, sales_rep, _case, fields, message
):
    lead = claimed_by(sales_rep, **fields)

    with pytest.raises(ActivityRefused, match=message):
        activity_email_send(contact=lead, user=sales_rep, subject="Bonjour", body="Texte")

    assert smtp.received == []
    assert not Activity.objects.exists()


def test_sending_from_the_page_keeps_the_text_when_the_mail_server_is_down(
    settings, sales_client, sales_rep
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nobody listens
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    lead = claimed_by(sales_rep)

    response = sales_client.post(
        reverse("contact-activity-email", args=[lead.pk]),
        {"subject": "Notre échange", "body": "Un long texte écrit avec soin, cœur compris."},
        **HTMX,
    )

    assert response.status_code == 400
    card = response.content.decode()
    assert "n’a pas pu partir" in card
    assert 'value="Notre échange"' in card
    assert "Un long texte écrit avec soin, cœur compris.</textarea>" in card
    assert not Activity.objects.exists()
    assert not Event.objects.filter(type=Event.Type.SALES_EMAIL).exists()


def test_sending_from_the_page_shows_the_email_in_the_card(smtp, sales_client, sales_rep):
    lead = claimed_by(sales_rep, email="zoe@exemple.fr")

    response = sales_client.post(
        reverse("contact-activity-email", args=[lead.pk]),
        {"subject": "Suite à notre appel", "body": "Bonjour {{ first_name }}"},
        **HTMX,
    )

    assert response.status_code == 200
    card = response.content.decode()
    assert "E-mail envoyé à zoe@exemple.fr" in card
    assert "Suite à notre appel" in card
    assert len(smtp.received) == 1
