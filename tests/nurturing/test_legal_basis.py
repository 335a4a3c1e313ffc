"""Consent-aware open tracking and the legal basis checked at send time (issue 15, points 4–5):
emails rendered with or without the pixel, sequences that send only to the bases they declare,
legitimate interest refused on a personal address or without notice, reasons shown translated."""

from __future__ import annotations

import re
from datetime import date

import pytest
from django.utils import timezone

from contacts.legal_basis import basis_refusal, is_personal_address
from nurturing import enrolment, outbox, rendering, scheduler, sending
from nurturing.models import Message, Sequence, Step
from scoring.models import ScoreRule
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with

pytestmark = pytest.mark.django_db

LINK_BODY = "Bonjour {{ first_name }}, voyez https://boutique.example.fr/poeles\n"


def render_for(contact, settings, mode):
    settings.NURTURING_OPEN_TRACKING = mode
    sequence = sequence_with(email_step(body=LINK_BODY))
    enrolment.enrollment_start(sequence=sequence, contact=contact)
    scheduler.enrollments_advance()
    return Message.objects.get(contact=contact)


@pytest.mark.parametrize(
    ("_case", "mode", "consented", "pixel"),
    [
        ("consent mode, no consent", "consent", False, False),
        ("consent mode, consented", "consent", True, True),
        ("off, even consented", "off", True, False),
        ("all, even without consent", "all", False, True),
    ],
)
def test_the_open_pixel_follows_the_setting_and_the_contacts_consent(
    settings, _case, mode, consented, pixel
):
    contact = ContactFactory(open_tracking_consent_at=timezone.now() if consented else None)

    message = render_for(contact, settings, mode)

    assert ("/e/o/" in message.body_html) is pixel
    # Clicks are tracked whatever the setting: the link goes through the redirect.
    assert "/e/c/" in message.body_html
    assert message.links == ["https://boutique.example.fr/poeles"]


def test_an_open_of_a_contact_who_withdrew_its_consent_is_not_recorded(settings, client):
    contact = ContactFactory(open_tracking_consent_at=timezone.now())
    message = render_for(contact, settings, "consent")
    contact.open_tracking_consent_at = None
    contact.save(update_fields=["open_tracking_consent_at"])
    token = rendering.make_token("open", message.enrollment_id, message.step_id)

    response = client.get(f"/e/o/{token}.gif")

    assert response.status_code == 200  # the image still answers: nothing to tell the reader
    message.refresh_from_db()
    assert message.opened_at is None
    assert not contact.events.filter(type="email_open").exists()


# --- Legal basis ------------------------------------------------------------------------------


def test_free_mail_domains_are_personal_addresses_and_wildcards_cover_every_ending():
    assert is_personal_address("jean@gmail.com")
    assert is_personal_address("Jean@Hotmail.FR")
    assert is_personal_address("marie@yahoo.co.uk")
    assert is_personal_address("paul@orange.fr")
    assert not is_personal_address("jean.dupont@boutique.example.fr")
    assert not is_personal_address("jean@outlook.example.fr")  # a company's own domain
    assert not is_personal_address("")


@pytest.mark.parametrize(
    ("_case", "values", "allowed", "reason"),
    [
        ("consent, consent only", {"consent": "granted"}, {"consent"}, ""),
        ("no basis, consent only", {}, {"consent"}, "no legal basis"),
        ("interest, consent only", {"consent_basis": "legitimate_interest",
         "legitimate_interest_notice_on": date(2026, 1, 5)}, {"consent"},
         "basis not allowed by this sequence"),
        ("interest without notice", {"consent_basis": "legitimate_interest"},
         {"consent", "legitimate_interest"}, "legitimate interest without notice"),
        ("interest on gmail", {"consent_basis": "legitimate_interest", "email": "a@gmail.com",
         "legitimate_interest_notice_on": date(2026, 1, 5)},
         {"consent", "legitimate_interest"}, "legitimate interest on a personal address"),
        ("interest, any sequence, no notice", {"consent_basis": "legitimate_interest"}, None,
         "legitimate interest without notice"),
        ("no basis, any sequence", {}, None, ""),
        ("basis consent never given", {"consent_basis": "consent"}, {"consent"}, "no consent"),
    ],
)  # fmt: skip
def test_basis_refusal(_case, values, allowed, reason):
    contact = {"email": "jean.dupont@boutique.example.fr", "consent": "unknown", **values}
    assert basis_refusal(contact, None if allowed is None else frozenset(allowed)) == reason


def test_a_consent_only_sequence_skips_legitimate_interest_and_sends_to_the_consented(
    smtp, marketer_client
):
    """End to end through a real SMTP server: the consented contact gets the email, the one
    prospected on legitimate interest does not, and the results say why, in French."""
    consented = ContactFactory(email="claire@boutique.example.fr", consent="granted")
    interest = ContactFactory(
        email="paul@fournisseur.example.fr",
        consent_basis="legitimate_interest",
        legitimate_interest_notice_on=date(2026, 1, 5),
    )
    sequence = sequence_with(email_step(), allowed_bases=Sequence.AllowedBases.CONSENT)
    enrolment.enrollments_start(sequence=sequence, contact_ids=[consented.pk, interest.pk])
    scheduler.enrollments_advance()

    assert sending.messages_send() == 1

    assert [r.recipients for r in smtp.received] == [["claire@boutique.example.fr"]]
    skipped = Message.objects.get(contact=interest)
    assert skipped.status == Message.Status.SUPPRESSED
    assert skipped.error == "basis not allowed by this sequence"
    page = marketer_client.get(f"/nurturing/sequences/{sequence.pk}/").content.decode()
    assert "Base légale non autorisée par cette séquence" in page
    emails = marketer_client.get(
        f"/nurturing/contacts/{interest.pk}/enrollments/", HTTP_HX_REQUEST="true"
    )
    assert "Base légale non autorisée par cette séquence" in emails.content.decode()


@pytest.mark.parametrize(
    ("_case", "email", "notice", "reason"),
    [
        ("work address, informed", "paul@fournisseur.example.fr", date(2026, 1, 5), ""),
        ("gmail", "paul.martin@gmail.com", date(2026, 1, 5),
         "legitimate interest on a personal address"),
        ("no notice", "paul@fournisseur.example.fr", None, "legitimate interest without notice"),
    ],
)  # fmt: skip
def test_a_b2b_sequence_sends_on_legitimate_interest_only_where_it_holds(
    smtp, _case, email, notice, reason
):
    contact = ContactFactory(
        email=email, consent_basis="legitimate_interest", legitimate_interest_notice_on=notice
    )
    sequence = sequence_with(
        email_step(), allowed_bases=Sequence.AllowedBases.CONSENT_LEGITIMATE_INTEREST
    )
    enrolment.enrollment_start(sequence=sequence, contact=contact)
    scheduler.enrollments_advance()

    sent = sending.messages_send()

    message = Message.objects.get()
    assert message.error == reason
    assert sent == (0 if reason else 1)
    assert len(smtp.received) == sent


def test_the_basis_is_checked_again_when_the_email_goes(smtp):
    """The notice date removed after the email was queued: it is not sent, with the reason."""
    contact = ContactFactory(
        email="paul@fournisseur.example.fr",
        consent_basis="legitimate_interest",
        legitimate_interest_notice_on=date(2026, 1, 5),
    )
    sequence = sequence_with(email_step(), allowed_bases="consent_legitimate_interest")
    enrolment.enrollment_start(sequence=sequence, contact=contact)
    scheduler.enrollments_advance()
    assert Message.objects.get().status == Message.Status.QUEUED
    contact.legitimate_interest_notice_on = None
    contact.save(update_fields=["legitimate_interest_notice_on"])

    assert sending.messages_send() == 0

    message = Message.objects.get()
    assert message.status == Message.Status.SUPPRESSED
    assert message.error == "legitimate interest without notice"
    assert smtp.received == []


def test_sequences_made_before_the_bases_send_as_before_but_not_on_a_broken_interest():
    contact = {"email": "a@example.fr", "consent": "unknown", "consent_basis": ""}
    assert outbox.emailable(contact) == ""
    interest = {**contact, "consent_basis": "legitimate_interest"}
    assert outbox.emailable(interest) == "legitimate interest without notice"
    assert outbox.emailable({**interest, "do_not_email": True}) == "do not email"


# --- Admin notes about opens ------------------------------------------------------------------


def test_a_score_rule_on_opens_warns_how_many_contacts_have_their_opens_tracked(
    admin_user, client, settings
):
    settings.NURTURING_OPEN_TRACKING = "consent"
    ContactFactory(open_tracking_consent_at=timezone.now())
    ContactFactory.create_batch(3)
    rule = ScoreRule.objects.create(name="Ouverture", event_type="email_open", points=2)
    clicks = ScoreRule.objects.create(name="Clic", event_type="email_click", points=10)
    client.force_login(admin_user)

    page = client.get(f"/admin/scoring/scorerule/{rule.pk}/change/").content.decode()
    other = client.get(f"/admin/scoring/scorerule/{clicks.pk}/change/").content.decode()

    assert "25\xa0% des contacts" in page
    assert "les clics" in page
    assert "25\xa0% des contacts" not in other


def test_a_sequence_branching_on_opens_warns_and_points_to_clicks(admin_user, client, settings):
    settings.NURTURING_OPEN_TRACKING = "off"
    ContactFactory()
    sequence = sequence_with(
        email_step(), {"kind": "condition", "condition": Step.Condition.OPENED}
    )
    client.force_login(admin_user)

    page = client.get(f"/admin/nurturing/sequence/{sequence.pk}/change/").content.decode()

    assert "Le suivi des ouvertures est désactivé" in page
    assert "«\xa0A cliqué dans l’e-mail précédent\xa0»" in page


def test_a_new_sequence_in_admin_starts_at_consent_only(admin_user, client):
    client.force_login(admin_user)
    page = client.get("/admin/nurturing/sequence/add/").content.decode()
    assert '<option value="consent" selected>' in page
    # and switched off: it goes live through its pre-flight
    active = re.search(r'<input[^>]*name="active"[^>]*>', page).group(0)
    assert "checked" not in active
