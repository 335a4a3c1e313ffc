"""In a real Chromium, at desk and phone width: on a claimed lead, each outcome radio sits next to
its label and clicking the label picks it; "Why lost" shows only when Lost is picked (CSS
alone, so also without JavaScript). The server ignores a lost reason sent with another outcome."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from contacts.models import Contact, StageChange
from contacts.sales.claims import contact_claim
from tests.browser_pages import DESKTOP, PHONE, visitor
from tests.factories import ContactFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_outcome_labels_pick_their_radio_and_why_lost_shows_only_for_lost(live_server, chromium):
    hugo = UserFactory(username="hugo", roles=["sales"])
    lead = ContactFactory(first_name="Élodie", last_name="Fournier", stage="sql", score=80)
    contact_claim(contact_id=lead.pk, user=hugo)
    url = reverse("queue-lead", args=[lead.pk])

    for viewport, javascript in ((DESKTOP, True), (PHONE, False)):
        with visitor(chromium, live_server.url, "hugo", viewport=viewport) as rep:
            if not javascript:
                rep.page.context.route("**/*.js", lambda route: route.abort())
            page = rep.open(url)
            won = page.get_by_role("radio", name="Gagné : devient client")
            lost = page.get_by_role("radio", name="Perdu")
            why_lost = page.get_by_label("Raison de la perte")
            expect(why_lost).to_be_hidden()

            page.get_by_text("Gagné : devient client").click()
            expect(won).to_be_checked()
            expect(why_lost).to_be_hidden()

            page.get_by_text("Perdu", exact=True).click()
            expect(lost).to_be_checked()
            expect(why_lost).to_be_visible()

            # Each circle is on its label's line, just before its words.
            for radio in page.locator(".outcome input[type=radio]").all():
                circle = radio.bounding_box()
                label = page.locator(f"label[for='{radio.get_attribute('id')}']")
                words = label.evaluate(
                    """label => { const range = document.createRange();
                    const text = [...label.childNodes].find(n => n.nodeType === 3 && n.textContent.trim());
                    range.selectNodeContents(text); const box = range.getBoundingClientRect();
                    return {x: box.x, y: box.y, height: box.height}; }"""
                )
                assert 0 <= words["x"] - (circle["x"] + circle["width"]) <= 16, viewport
                middle = circle["y"] + circle["height"] / 2
                assert words["y"] <= middle <= words["y"] + words["height"], viewport
            assert rep.overflow() == [], viewport


@pytest.mark.django_db
def test_a_lost_reason_sent_with_won_is_ignored(client):
    hugo = UserFactory(username="hugo", roles=["sales"])
    lead = ContactFactory(stage="sql")
    contact_claim(contact_id=lead.pk, user=hugo)
    client.force_login(hugo)

    response = client.post(
        reverse("queue-lead", args=[lead.pk]),
        {"outcome": "won", "amount": "900", "lost_reason": "budget", "reason": "Signé"},
    )

    assert response.status_code == 302
    assert Contact.objects.get(pk=lead.pk).stage == "client"
    change = StageChange.objects.filter(contact=lead).latest("at")
    assert "budget" not in change.reason and change.outcome != "lost"
