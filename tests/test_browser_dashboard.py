"""In a real Chromium: the marketer's dashboard loads each panel on its own and draws charts."""

import re

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from contacts.models import StageChange
from contacts.stages import stage_move
from tests.factories import ContactFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PANELS = ["funnel", "conversion", "velocity", "sources", "sla", "touchpoints", "scores"]


def test_the_dashboard_panels_load_and_their_charts_render(live_server, page, settings):
    settings.LEADFUNNEL_EVENT_HANDLERS = ["contacts.reports.rollups.on_event"]  # no scoring
    UserFactory(username="claire", roles=["marketing"])
    for stage in ["mql", "sql", "client"]:
        contact = ContactFactory(stage="lead", score=40)
        stage_move(contact=contact, to=stage, cause=StageChange.Cause.USER, at=timezone.now())

    page.goto(live_server.url + reverse("home"))
    page.fill("#id_username", "claire")
    page.fill("#id_password", "secret-pass-123")
    page.click("button[type=submit]")

    for name in PANELS:
        expect(page.locator(f"#panel-{name} table").first).to_be_visible()
        expect(page.locator(f"#panel-{name} canvas[data-rendered=true]")).to_have_count(1)
    expect(page.locator('#panel-funnel td[data-stage="client"]')).to_have_text("1")
    expect(
        page.locator('#panel-conversion tr[data-stage="lead"] [data-figure="entered"]')
    ).to_have_text("0")
    # Chart.js drew on the canvas: its chart holds the table's numbers.
    data = page.evaluate(
        "Chart.getChart(document.querySelector('#panel-funnel canvas')).data.datasets[0].data"
    )
    assert data == [0, 0, 1, 0, 1, 1, 0]
    assert page.evaluate("document.querySelector('#panel-funnel canvas').width") > 0

    # A preset reloads the dashboard with its period in the address, panels included.
    page.click("text=Les 90 derniers jours")
    expect(page).to_have_url(re.compile(r"\?from=\d{4}-\d\d-\d\d&to="))
    expect(page.locator("#panel-sources table")).to_be_visible()
