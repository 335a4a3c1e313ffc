"""A sales rep's whole day in a real Chromium, at desk width and on a 390 px phone: the rep claims
an SQL from the queue, calls the lead from the page and logs the call, sets the next step,
gets its reminder (beat's task in a worker process whose clock reads the due time) in the
bell and by email, records the deal won with its amount; the marketer then sees the revenue
on the dashboard's sources panel."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from contacts.models import Activity, ContactAudit, FollowUp, LeadSourceCost, SalesRep
from tests.browser_pages import DESKTOP, PHONE, visitor
from tests.factories import ContactFactory, LeadSourceFactory, UserFactory
from tests.test_follow_up_reminders import reminders_sent_by_a_worker_at

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def sink(django_smtp_sink):
    return django_smtp_sink


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desk", "phone"])
def test_a_reps_day_from_the_claim_to_the_revenue_on_the_dashboard(
    live_server, chromium, settings, sink, viewport
):
    settings.NOTIFICATION_BELL_SECONDS = 1
    hugo = UserFactory(username="hugo", first_name="Hugo", last_name="Bernard", roles=["sales"])
    SalesRep.objects.create(user=hugo, time_zone="Europe/Paris")
    UserFactory(username="claire", roles=["marketing"])
    salon = LeadSourceFactory(name="Salon", slug="salon")
    today = date.today()
    LeadSourceCost.objects.create(source=salon, starts_on=today.replace(day=1), ends_on=today,
                                  amount=1000)  # fmt: skip
    lead = ContactFactory(
        first_name="Élodie", last_name="Fournier", company="Brasserie Lefèvre", stage="sql",
        score=95, phone="+33 6 12 34 56 78", source=salon,
    )  # fmt: skip

    with visitor(chromium, live_server.url, "hugo", viewport=viewport) as rep:
        # The queue: the lead and its Claim button in sight, nothing to scroll sideways.
        page = rep.open(reverse("queue"))
        row = page.locator("tr", has_text="Élodie Fournier")
        claim = row.get_by_role("button", name="Prendre")
        expect(claim).to_be_in_viewport()
        assert rep.overflow() == [], "queue"
        claim.click()
        expect(page.locator(".messages")).to_contain_text("Cette piste est à vous")
        assert page.url.endswith(reverse("queue-lead", args=[lead.pk]))

        # The lead page: call and write buttons, the call logged with its outcome.
        expect(page.get_by_test_id("call")).to_have_attribute("href", "tel:+33612345678")
        expect(page.get_by_test_id("call")).to_be_visible()
        card = page.locator("#activities")
        card.get_by_text("Enregistrer un appel").click()
        form = card.locator("[data-testid=activity-form-call]")
        form.get_by_text("Joint", exact=True).click()
        form.get_by_label("Durée (minutes)").fill("12")
        form.get_by_role("button", name="Enregistrer l’appel").click()
        expect(page.locator("#activities [data-testid=activity]").first).to_contain_text("Joint")
        assert rep.overflow() == [], "lead page"

        # The next step, due in two days at 09:30 Paris time.
        due = (timezone.now() + timedelta(days=2)).astimezone(PARIS)
        next_step = page.get_by_test_id("next-step")
        next_step.get_by_label("Prochaine étape").fill("Envoyer le devis")
        next_step.get_by_label("Échéance").fill(due.strftime("%Y-%m-%dT09:30"))
        next_step.get_by_test_id("set-follow-up").click()
        expect(page.get_by_test_id("next-step")).to_contain_text("Envoyer le devis")
        follow_up = FollowUp.objects.get(contact=lead)
        assert follow_up.due_at.astimezone(PARIS).strftime("%H:%M") == "09:30"

        page = rep.open(reverse("my-day"))
        expect(page.get_by_test_id("upcoming")).to_contain_text("Envoyer le devis")
        assert rep.overflow() == [], "my day"
        expect(page.get_by_test_id("bell")).not_to_contain_text("1")

        # Beat's reminder sweep in a worker process whose clock reads the due time.
        assert reminders_sent_by_a_worker_at(follow_up.due_at + timedelta(seconds=20)) == 1
        [reminder] = sink.received
        assert reminder.recipients == [hugo.email]
        assert reminder.message["Subject"] == "Rappel\u00a0: Envoyer le devis"
        assert "09:30" in reminder.message.get_content()
        # The bell counts it without a reload; opening it leads to the lead.
        expect(page.get_by_test_id("bell-count")).to_have_text("1", timeout=10_000)
        page.get_by_test_id("bell").click()
        expect(page.locator("main")).to_contain_text("Envoyer le devis")

        # The deal is won, with its amount typed the French way.
        page = rep.open(reverse("queue-lead", args=[lead.pk]))
        page.get_by_text("Gagné\u00a0: devient client").click()
        page.get_by_label("Montant gagné").fill("12 500,50")
        page.get_by_role("button", name="Enregistrer l’issue").click()
        expect(page.locator(".messages")).to_contain_text("Issue enregistrée")
        assert rep.overflow() == [], "after the outcome"

    lead.refresh_from_db()
    assert lead.stage == "client"
    assert str(lead.outcome.amount) == "12500.50" and lead.outcome.currency == "EUR"
    assert Activity.objects.filter(contact=lead, kind="call", call_outcome="reached").exists()
    assert ContactAudit.objects.filter(contact=lead, action="claimed", actor=hugo).exists()

    with visitor(chromium, live_server.url, "claire", viewport=viewport) as marketer:
        page = marketer.open(reverse("home"))
        row = page.locator('#panel-sources tr[data-source="Salon"]')
        expect(row.locator('[data-figure="won"]')).to_have_text("1")
        expect(row.locator('[data-figure="revenue"]')).to_have_text("12\u00a0500,50")
        expect(row.locator('[data-figure="return_on_cost"]')).to_contain_text("12,5")
