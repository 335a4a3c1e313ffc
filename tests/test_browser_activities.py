"""In a real Chromium, on a claimed lead's page: the rep logs a call (outcome picked by its
label, a duration), with htmx (no reload) at desk width and without JavaScript at phone width;
the call shows in the Activities card with its outcome and in the timeline."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from contacts.models import Activity, Event
from contacts.sales.claims import contact_claim
from tests.browser_pages import DESKTOP, PHONE, visitor
from tests.factories import ContactFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_rep_logs_a_call_on_the_lead_page_with_and_without_javascript(live_server, chromium):
    hugo = UserFactory(username="hugo", first_name="Hugo", last_name="Bernard", roles=["sales"])
    lead = ContactFactory(first_name="Élodie", last_name="Fournier", stage="sql", score=80)
    contact_claim(contact_id=lead.pk, user=hugo)
    url = reverse("queue-lead", args=[lead.pk])

    for viewport, javascript, outcome, minutes in (
        (DESKTOP, True, "Joint", "12"),
        (PHONE, False, "Messagerie", "2"),
    ):
        with visitor(chromium, live_server.url, "hugo", viewport=viewport) as rep:
            if not javascript:
                rep.page.context.route("**/*.js", lambda route: route.abort())
            page = rep.open(url)
            card = page.locator("#activities")
            page.evaluate("window.notReloaded = true")

            card.get_by_text("Enregistrer un appel").click()
            form = card.locator("[data-testid=activity-form-call]")
            form.get_by_text(outcome, exact=True).click()  # the label picks its radio
            expect(form.get_by_role("radio", name=outcome)).to_be_checked()
            form.get_by_label("Durée (minutes)").fill(minutes)
            form.get_by_role("button", name="Enregistrer l’appel").click()

            card = page.locator("#activities")
            expect(card.locator("[data-testid=activity]").first).to_contain_text(outcome)
            expect(card.locator("[data-testid=activity]").first).to_contain_text("Hugo Bernard")
            expect(card.locator("[data-testid=activity]").first).to_contain_text(
                f"{minutes} minute"
            )
            if javascript:
                expect(card.locator("[data-testid=activity-notice]")).to_contain_text(
                    "Appel enregistré"
                )
                assert page.evaluate("window.notReloaded") is True  # swapped in place
            else:
                expect(page.locator(".messages")).to_contain_text("Appel enregistré")
                expect(page.locator(".timeline")).to_contain_text("Appel d’un commercial")
            assert rep.overflow() == [], viewport

    assert list(Activity.objects.values_list("call_outcome", flat=True).order_by("id")) == [
        "reached",
        "voicemail",
    ]
    assert Event.objects.filter(contact=lead, type="sales_call").count() == 2


def test_a_refused_call_keeps_what_the_rep_typed(live_server, chromium):
    hugo = UserFactory(username="hugo", roles=["sales"])
    lead = ContactFactory(stage="sql")
    contact_claim(contact_id=lead.pk, user=hugo)

    with visitor(chromium, live_server.url, "hugo", viewport=DESKTOP) as rep:
        page = rep.open(reverse("queue-lead", args=[lead.pk]))
        card = page.locator("#activities")
        card.get_by_text("Enregistrer un appel").click()
        form = card.locator("[data-testid=activity-form-call]")
        form.get_by_label("Notes").fill("Rappeler mardi, elle est en déplacement")
        form.get_by_role("button", name="Enregistrer l’appel").click()  # no outcome picked

        form = page.locator("#activities [data-testid=activity-form-call]")
        expect(form.locator(".error").first).to_be_visible()
        expect(form.get_by_label("Notes")).to_have_value("Rappeler mardi, elle est en déplacement")
    assert not Activity.objects.exists()
