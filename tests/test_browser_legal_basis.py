"""In a real Chromium: a marketer records a B2B contact's legitimate interest on its edit page,
first without the notice date (the contact page says marketing email may not go, and why), then
with it and with the consent to open tracking."""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from contacts.models import Contact
from tests.factories import ContactFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_marketer_records_the_basis_and_sees_when_email_may_go(live_server, page):
    UserFactory(username="admin", is_staff=True, is_superuser=True)
    contact = ContactFactory(email="paul@fournisseur.example.fr", first_name="Paul")
    page.goto(live_server.url + reverse("contact-edit", args=[contact.pk]))
    page.fill("#id_username", "admin")
    page.fill("#id_password", "secret-pass-123")
    page.click("button[type=submit]")

    page.select_option("#id_consent_basis", "legitimate_interest")
    page.click("form button.primary")

    expect(page.locator("[data-testid=marketing-email]")).to_contain_text(
        "Intérêt légitime sans date d’information"
    )
    expect(page.locator("[data-testid=open-tracking]")).to_contain_text("Non suivies")

    page.goto(live_server.url + reverse("contact-edit", args=[contact.pk]))
    page.fill("#id_legitimate_interest_notice_on", "2026-01-05")
    page.check("#id_open_tracking")
    page.click("form button.primary")

    expect(page.locator("[data-testid=legal-basis]")).to_contain_text("informé le 5 janvier 2026")
    expect(page.locator("[data-testid=marketing-email]")).to_contain_text("Peuvent être envoyés")
    expect(page.locator("[data-testid=open-tracking]")).to_contain_text("fiche du contact")
    assert Contact.objects.get(pk=contact.pk).open_tracking_consent_at is not None
