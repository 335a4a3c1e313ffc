"""The sources panel's money: deals won per source in the period, their revenue in the site's
currency, the average deal and the return on cost (revenue / cost), in the table beside the
chart; deals in other currencies counted apart, never converted."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse

from contacts.models import LeadSourceCost
from contacts.outcomes import outcome_record
from contacts.reports import dashboard
from contacts.reports.dashboard import Period
from tests.factories import ContactFactory, LeadSourceFactory

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
FEBRUARY = Period(date(2026, 2, 1), date(2026, 2, 28))
FEBRUARY_QUERY = "?from=2026-02-01&to=2026-02-28"


def paris(month: int, day: int) -> datetime:
    return datetime(2026, month, day, 10, tzinfo=PARIS)


def won(source, at, amount, currency="EUR", result="won"):
    contact = ContactFactory(source=source, stage="client")
    outcome_record(contact=contact, result=result, source="api", at=at,
                   amount=None if amount is None else Decimal(amount), currency=currency)  # fmt: skip
    return contact


@pytest.fixture
def deals(db, settings):
    settings.DEFAULT_CURRENCY = "EUR"
    salon = LeadSourceFactory(name="Salon", slug="salon")
    google = LeadSourceFactory(name="Google Ads", slug="google")
    LeadSourceFactory(name="Presse", slug="presse")  # no cost, no deal: no row
    LeadSourceCost.objects.create(
        source=salon, starts_on=date(2026, 2, 1), ends_on=date(2026, 2, 28), amount=600
    )
    won(salon, paris(2, 3), "1000")
    won(salon, paris(2, 20), "2000.50")
    won(salon, paris(1, 31), "9999")  # January: not in February's revenue
    won(salon, paris(2, 21), None, result="lost")  # lost: no revenue
    won(google, paris(2, 10), "500")  # no cost for Google Ads: no return on cost
    won(google, paris(2, 11), "700", currency="USD")  # counted apart
    won(None, paris(2, 12), "300")
    return salon, google


def test_revenue_won_deals_average_and_return_on_cost_per_source(deals):
    figures = dashboard.sources(FEBRUARY)
    rows = {row["name"]: row for row in figures["rows"]}

    salon = rows["Salon"]
    assert (salon["won"], salon["revenue"], salon["average_deal"]) == (
        2, Decimal("3000.50"), Decimal("1500.25"),
    )  # fmt: skip
    assert salon["return_on_cost"] == Decimal("5.00")  # 3000.50 / 600
    google = rows["Google Ads"]
    assert (google["won"], google["revenue"], google["return_on_cost"]) == (
        1, Decimal("500"), None,
    )  # fmt: skip
    assert google["other_currencies"] == [("USD", 1)]
    total = figures["total"]
    assert (total["won"], total["revenue"]) == (4, Decimal("3800.50"))
    assert figures["other_currencies"] == ["USD"]


def cell(html: str, source: str, name: str) -> str:
    match = re.search(rf'<tr data-source="{source}">.*?data-figure="{name}"[^>]*>(.*?)</td>', html,
                      re.S)  # fmt: skip
    assert match, f"no {name} for {source}"
    return re.sub(r"<br>.*", "", match.group(1), flags=re.S).strip()


def test_the_panel_shows_revenue_and_return_on_cost_in_french(deals, marketer_client):
    response = marketer_client.get(reverse("dashboard-sources") + FEBRUARY_QUERY,
                                   HTTP_HX_REQUEST="true")  # fmt: skip
    html = response.content.decode()

    assert cell(html, "Salon", "revenue") == "3\u00a0000,50"
    assert cell(html, "Salon", "average_deal") == "1\u00a0500,25"
    assert cell(html, "Salon", "return_on_cost") == "5,00×"
    assert cell(html, "Google Ads", "return_on_cost") == "—"
    assert cell(html, "Total", "revenue") == "3\u00a0800,50"
    assert "Revenu (EUR)" in html or "Chiffre d’affaires (EUR)" in html
    assert 'data-testid="other-currencies"' in html and "USD" in html
    # The revenue chart carries the same numbers as the table.
    chart = re.search(r'<script id="chart-revenue" type="application/json">(.*?)</script>', html)
    assert json.loads(chart.group(1))["datasets"][0]["data"] == [500.0, 3000.5, 300.0]


def test_without_won_deals_the_panel_shows_dashes(db, marketer_client):
    salon = LeadSourceFactory(name="Salon", slug="salon")
    LeadSourceCost.objects.create(
        source=salon, starts_on=date(2026, 2, 1), ends_on=date(2026, 2, 28), amount=600
    )
    html = marketer_client.get(reverse("dashboard-sources") + FEBRUARY_QUERY).content.decode()

    assert cell(html, "Salon", "revenue") == "—"
    assert cell(html, "Salon", "return_on_cost") == "0,00×"
    assert 'id="chart-revenue"' not in html


def test_a_contact_whose_source_changes_brings_its_revenue_to_the_new_source(deals):
    salon, google = deals
    from contacts.services import contact_update

    client = ContactFactory(source=google, first_source=google, stage="client")
    outcome_record(contact=client, result="won", source="api", at=paris(2, 15),
                   amount=Decimal("4000"))  # fmt: skip
    assert dashboard.won_deals(*FEBRUARY.bounds())[google.pk].revenue == Decimal("4500")

    contact_update(contact=client, source=salon)

    by_source = dashboard.won_deals(*FEBRUARY.bounds())
    assert by_source[google.pk].revenue == Decimal("500")
    assert by_source[salon.pk].revenue == Decimal("7000.50")
    # Its first source stays Google Ads.
    first = dashboard.won_deals(*FEBRUARY.bounds(), by="first_source")
    assert first[google.pk].revenue == Decimal("4000")
