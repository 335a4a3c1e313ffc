"""In a real Chromium: the demo marketer logs in, searches and filters contacts, opens one."""

import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from tests.factories import ContactFactory, EventFactory, LeadSourceFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_marketer_searches_filters_and_opens_a_contact(live_server, page):
    UserFactory(username="claire", first_name="Claire", last_name="Martin", roles=["marketing"])
    salon = LeadSourceFactory(name="Salon Vivatech")
    target = ContactFactory(
        first_name="Élodie", last_name="Fournier", company="Brasserie Dupré", stage="sql",
        source=salon, score=72,
    )  # fmt: skip
    ContactFactory(first_name="Élodie", last_name="Marchand", company="Dupré & Fils", stage="mql")
    ContactFactory(first_name="Bruno", last_name="Keller", company="Globex", stage="sql")
    EventFactory(
        contact=target,
        type="demo_request",
        properties={"url": "https://ex.fr/demo", "title": "Démo"},
    )

    page.goto(live_server.url + reverse("contact-list"))
    expect(page).to_have_url(re.compile(r"/login/\?next="))
    page.fill("#id_username", "claire")
    page.fill("#id_password", "secret-pass-123")
    page.click("button[type=submit]")
    expect(page.locator("table.contacts tbody tr")).to_have_count(3)

    # Typing searches in place: the page is not reloaded, the URL keeps the state.
    page.evaluate("window.notReloaded = true")
    page.fill("#id_q", "Élodie")
    expect(page.locator("table.contacts tbody tr")).to_have_count(2)
    expect(page).to_have_url(re.compile(r"q=%C3%89lodie"))

    page.select_option("#id_stage", "sql")
    expect(page.locator("table.contacts tbody tr")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"stage=sql"))
    assert page.evaluate("window.notReloaded") is True

    # A reload (or a shared link) shows the same list.
    page.reload()
    expect(page.locator("table.contacts tbody tr")).to_have_count(1)
    expect(page.locator("#id_q")).to_have_value("Élodie")
    expect(page.locator("#id_stage")).to_have_value("sql")

    page.click("text=Élodie Fournier")
    expect(page.locator("h1")).to_contain_text("Élodie Fournier")
    expect(page.locator("[data-testid=stage]")).to_have_text("SQL")
    expect(page.locator("#timeline")).to_contain_text("Démo")
    expect(page.locator(".profile")).to_contain_text("Salon Vivatech")
