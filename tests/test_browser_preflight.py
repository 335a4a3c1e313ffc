"""In a real Chromium, at desk and phone width: a marketer activates a sequence through its
pre-flight page (who would enter, the week's emails), which changes nothing until confirmed."""

import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from nurturing.models import Sequence
from tests.browser_pages import DESKTOP, PHONE, visitor
from tests.factories import ContactFactory, UserFactory
from tests.nurturing.helpers import email_step, sequence_with, wait_step

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_marketer_activates_a_sequence_through_its_preflight(live_server, chromium):
    UserFactory(username="claire", roles=["marketing"])
    sequence = sequence_with(
        email_step(), wait_step(days=2), email_step(subject="Encore"),
        trigger="segment", segment_query="stage=mql", active=False, name="Relance MQL",
    )  # fmt: skip
    ContactFactory.create_batch(2, stage="mql")
    ContactFactory(stage="mql", do_not_email=True, first_name="Paul", last_name="Muet")
    results = reverse("nurturing-sequence", args=[sequence.pk])

    for viewport in (DESKTOP, PHONE):
        Sequence.objects.filter(pk=sequence.pk).update(active=False)
        with visitor(chromium, live_server.url, "claire", viewport=viewport) as claire:
            page = claire.open(results)
            page.click("#activate-link")

            expect(page.locator("h1")).to_contain_text("Avant d’activer")
            expect(page.get_by_test_id("entering")).to_contain_text("2 contacts entreraient")
            expect(page.get_by_test_id("skipped")).to_contain_text("Ne pas contacter par e-mail")
            expect(page.get_by_test_id("days").locator("tbody tr")).to_have_count(7)
            expect(page.get_by_test_id("new").first).to_have_text("2")
            claire.settle()
            assert claire.overflow() == [], viewport
            assert not Sequence.objects.get(pk=sequence.pk).active

            button = page.get_by_role("button", name="Activer la séquence")
            button.scroll_into_view_if_needed()
            expect(button).to_be_in_viewport()
            button.click()

            expect(page).to_have_url(re.compile(re.escape(results) + "$"))
            expect(page.locator(".messages, [role=status]").first).to_contain_text("active")
        assert Sequence.objects.get(pk=sequence.pk).active, viewport
