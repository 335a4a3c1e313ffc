"""In a real Chromium, at desk width and on a 390 px phone: a rep records a won deal with its
amount typed the French way, the amount field showing only once Won is picked, each radio
picked by tapping its words; the marketer then sees the revenue on the dashboard's sources
panel; the manager sees the rep's open deal in the pipeline."""

from __future__ import annotations

from datetime import date

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from contacts.models import Contact, ContactOutcome, LeadSourceCost, SalesRep, Team
from contacts.sales.claims import contact_claim
from tests.browser_pages import DESKTOP, PHONE, visitor
from tests.factories import ContactFactory, LeadSourceFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_won_deal_with_its_amount_shows_as_revenue_on_the_dashboard(
    live_server, chromium, settings
):
    settings.DEFAULT_CURRENCY = "EUR"
    hugo = UserFactory(username="hugo", first_name="Hugo", last_name="Bernard", roles=["sales"])
    UserFactory(username="claire", roles=["marketing"])
    manager = UserFactory(username="sophie", roles=["sales_manager"])
    team = Team.objects.create(name="Paris")
    SalesRep.objects.create(user=hugo, team=team)
    SalesRep.objects.create(user=manager, team=team)
    salon = LeadSourceFactory(name="Salon", slug="salon")
    today = date.today()
    LeadSourceCost.objects.create(source=salon, starts_on=today.replace(day=1), ends_on=today,
                                  amount=500)  # fmt: skip
    leads = []
    for name in ("Élodie", "Malik", "Inès"):
        lead = ContactFactory(first_name=name, stage="sql", score=80, source=salon)
        contact_claim(contact_id=lead.pk, user=hugo)
        leads.append(lead)

    for lead, viewport, typed in ((leads[0], DESKTOP, "1 234,50"), (leads[1], PHONE, "2 000")):
        with visitor(chromium, live_server.url, "hugo", viewport=viewport) as rep:
            page = rep.open(reverse("queue-lead", args=[lead.pk]))
            amount = page.get_by_label("Montant gagné")
            currency = page.get_by_test_id("when-won").get_by_label("Devise")
            expect(amount).to_be_hidden()
            expect(page.get_by_label("Motif ou note")).to_be_hidden()

            page.get_by_text("Perdu", exact=True).click()
            expect(page.get_by_role("radio", name="Perdu")).to_be_checked()
            expect(amount).to_be_hidden()
            expect(page.get_by_label("Raison de la perte")).to_be_visible()

            page.get_by_text("Gagné\u00a0: devient client").click()
            expect(page.get_by_role("radio", name="Gagné\u00a0: devient client")).to_be_checked()
            expect(amount).to_be_visible()
            expect(currency).to_have_value("EUR")
            expect(page.get_by_label("Raison de la perte")).to_be_hidden()
            # Each radio is a finger's height to tap on a phone.
            for label in page.locator(".outcome label.choice").all():
                assert label.bounding_box()["height"] >= 40, viewport
            assert rep.overflow() == [], viewport

            page.get_by_role("button", name="Enregistrer l’issue").click()  # no amount yet
            expect(page.get_by_text("Saisissez le montant gagné (0 si rien).")).to_be_visible()
            expect(amount).to_be_visible()  # the choice survives the refusal

            amount.fill(typed)
            page.get_by_label("Produit ou formule (facultatif)").fill("Offre Pro")
            page.get_by_role("button", name="Enregistrer l’issue").click()
            expect(page.locator(".messages")).to_contain_text("Issue enregistrée")

    assert sorted(ContactOutcome.objects.values_list("amount", flat=True)) == [1234.50, 2000]
    assert Contact.objects.filter(stage="client").count() == 2

    for viewport in (DESKTOP, PHONE):
        with visitor(chromium, live_server.url, "claire", viewport=viewport) as marketer:
            page = marketer.open(reverse("home"))
            row = page.locator('#panel-sources tr[data-source="Salon"]')
            expect(row.locator('[data-figure="won"]')).to_have_text("2")
            expect(row.locator('[data-figure="revenue"]')).to_have_text("3\u00a0234,50")
            expect(row.locator('[data-figure="return_on_cost"]')).to_contain_text("×")
            # The sources panel keeps its wide table in its scroll region (other panels are
            # not this test's subject).
            problems = [p for p in marketer.overflow() if "panel-sources" in p]
            assert problems == [], (viewport, "; ".join(problems))

    with visitor(chromium, live_server.url, "hugo", viewport=PHONE) as rep:
        page = rep.open(reverse("queue-lead", args=[leads[2].pk]))
        page.get_by_label("Montant attendu").fill("4 000")
        page.get_by_role("button", name="Enregistrer le montant attendu").click()
        expect(page.get_by_test_id("estimate")).to_contain_text("4")
    with visitor(chromium, live_server.url, "sophie", viewport=PHONE) as boss:
        page = boss.open(reverse("pipeline"))
        row = page.locator('tr[data-rep="Hugo Bernard"] [data-figure="total"]')
        expect(row).to_contain_text("4\u00a0000,00 EUR")
        assert boss.overflow() == []
