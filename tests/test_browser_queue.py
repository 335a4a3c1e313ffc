"""In a real Chromium, two reps in two browsers click "claim" on the same lead: one gets it,
the other is told who was faster and the lead is gone from their queue."""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from contacts.models import Contact
from tests.factories import ContactFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def logged_in(chromium, live_server, username):
    context = chromium.new_context(locale="fr-FR")
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(live_server.url + reverse("login"))
    page.fill("#id_username", username)
    page.fill("#id_password", "secret-pass-123")
    page.click("button[type=submit]")
    expect(page).to_have_url(live_server.url + reverse("queue"))
    return context, page


def test_two_reps_clicking_claim_on_one_lead_one_wins_the_other_is_told(live_server, chromium):
    UserFactory(username="hugo", first_name="Hugo", last_name="Bernard", roles=["sales"])
    UserFactory(username="lea", first_name="Léa", last_name="Dubois", roles=["sales"])
    lead = ContactFactory(first_name="Élodie", last_name="Fournier", stage="sql", score=80)
    ContactFactory(first_name="Autre", last_name="Piste", stage="sql", score=10)
    hugo_context, hugo = logged_in(chromium, live_server, "hugo")
    lea_context, lea = logged_in(chromium, live_server, "lea")
    try:
        row = f"#lead-{lead.pk} button[type=submit]"
        expect(hugo.locator(row)).to_be_visible()
        expect(lea.locator(row)).to_be_visible()

        hugo.click(row)
        lea.click(row)

        expect(hugo.locator("h1")).to_contain_text("Élodie Fournier")
        expect(hugo.locator(".messages")).to_be_visible()
        expect(lea.locator(".messages .error")).to_contain_text("Hugo Bernard")
        expect(lea.locator(".messages .error")).not_to_contain_text("Élodie Fournier")  # not hers
        expect(lea.locator(f"#lead-{lead.pk}")).to_have_count(0)
        expect(lea.locator("[data-testid=queue-row]")).to_have_count(1)
        assert Contact.objects.get(pk=lead.pk).owner.username == "hugo"
    finally:
        hugo_context.close()
        lea_context.close()


def test_a_lead_claimed_elsewhere_vanishes_from_an_open_queue_by_itself(live_server, chromium):
    UserFactory(username="lea", first_name="Léa", last_name="Dubois", roles=["sales"])
    hugo = UserFactory(username="hugo", roles=["sales"])
    lead = ContactFactory(first_name="Élodie", last_name="Fournier", stage="sql", score=80)
    context, lea = logged_in(chromium, live_server, "lea")
    try:
        expect(lea.locator(f"#lead-{lead.pk}")).to_have_count(1)

        from contacts.sales.claims import contact_claim

        contact_claim(contact_id=lead.pk, user=hugo)

        # The list polls every 5 s: no reload, the row goes.
        lea.evaluate("window.notReloaded = true")
        expect(lea.locator(f"#lead-{lead.pk}")).to_have_count(0, timeout=15_000)
        assert lea.evaluate("window.notReloaded") is True
    finally:
        context.close()
