"""In a real Chromium, at desk and phone width: a marketer opens "Score vs outcomes" from the
menu and reads the AUC, its explanation, the MQL/SQL table and the conversion per score band
(table and chart), nothing scrolling sideways."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from contacts.models import Contact
from contacts.outcomes import outcome_record
from tests.browser_pages import DESKTOP, PHONE, visitor
from tests.factories import ContactFactory, StageChangeFactory, UserFactory
from tests.phone import open_menu

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_marketer_reads_how_the_score_ranks_outcomes(live_server, chromium):
    UserFactory(username="claire", roles=["marketing"])
    at = timezone.now() - timedelta(days=20)
    # 20 won scored 10..29, 20 lost scored 0..19: AUC 0.875; the won reached SQL first.
    for score, result in [(s, "won") for s in range(10, 30)] + [(s, "lost") for s in range(20)]:
        contact = ContactFactory(stage=Contact.Stage.LEAD, score=score)
        if result == "won":
            StageChangeFactory(
                contact=contact, from_stage="lead", to_stage="sql", at=at - timedelta(days=2)
            )
        outcome_record(contact=contact, result=result, at=at, source="sales")

    for viewport in (DESKTOP, PHONE):
        with visitor(chromium, live_server.url, "claire", viewport=viewport) as marketer:
            page = marketer.open(reverse("contact-list"))
            open_menu(page)  # on a phone the nav is behind the Menu button
            page.get_by_role("link", name="Score et issues").click()
            marketer.settle()

            expect(page.get_by_role("heading", name="Le score face aux issues")).to_be_visible()
            expect(page.locator('[data-figure="auc"]')).to_have_text("0,88")
            expect(page.locator("#auc")).to_contain_text("0,5 ne fait pas mieux que le hasard")
            expect(page.locator('[data-figure="outcomes"]')).to_have_text("20 gagnés, 20 perdus")
            sql = page.locator('#stages tr[data-stage="sql"]')
            expect(sql.locator('[data-figure="precision"]')).to_have_text("100,0\xa0%")
            expect(sql.locator('[data-figure="recall"]')).to_have_text("100,0\xa0%")
            lowest = page.locator('#bands tr[data-band="0"]')
            expect(lowest.locator("th")).to_have_text("0–4")
            expect(lowest.locator('[data-figure="contacts"]')).to_have_text("5")
            expect(lowest.locator('[data-figure="rate"]')).to_have_text("0,0\xa0%")
            expect(page.locator("#bands canvas[data-rendered=true]")).to_have_count(1)
            rates = page.evaluate(
                "Chart.getChart(document.querySelector('#bands canvas')).data.datasets[0].data"
            )
            assert rates == [0, 0, 50, 50, 100, 100], viewport
            assert marketer.overflow() == [], viewport
