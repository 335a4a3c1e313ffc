"""The manager's pipeline: claimed open SQLs by rep and time since the claim, with their
expected value (the rep's estimate, else the source's average won deal over 12 months, else
nothing); a manager with a team sees their team, without one every rep; reps and marketers
get a 403; the page's query count does not grow with the leads."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from contacts.models import Contact, DealEstimate, SalesRep, Team
from contacts.outcomes import outcome_record
from contacts.sales.pipeline import pipeline
from tests.factories import ContactFactory, LeadSourceFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(db, settings):
    settings.DEFAULT_CURRENCY = "EUR"
    now = timezone.now()
    paris, lyon = Team.objects.create(name="Paris"), Team.objects.create(name="Lyon")
    manager = UserFactory(username="sophie", first_name="Sophie", last_name="Leroy",
                          roles=["sales_manager"])  # fmt: skip
    SalesRep.objects.create(user=manager, team=paris)
    hugo = UserFactory(username="hugo", first_name="Hugo", last_name="Bernard", roles=["sales"])
    lea = UserFactory(username="lea", first_name="Léa", last_name="Dubois", roles=["sales"])
    marc = UserFactory(username="marc", first_name="Marc", last_name="Petit", roles=["sales"])
    SalesRep.objects.create(user=hugo, team=paris)
    SalesRep.objects.create(user=lea, team=paris)
    SalesRep.objects.create(user=marc, team=lyon)
    salon, presse = LeadSourceFactory(name="Salon"), LeadSourceFactory(name="Presse")
    # Salon's average won deal over the last 12 months: (1000 + 3000) / 2 = 2000; an older
    # deal and one in dollars do not count. Presse: no won deal, no average.
    for amount, days, currency in ((1000, 30, "EUR"), (3000, 200, "EUR"), (90000, 400, "EUR"),
                                   (50000, 10, "USD")):  # fmt: skip
        client = ContactFactory(source=salon, stage="client")
        outcome_record(contact=client, result="won", source="api",
                       at=now - timedelta(days=days), amount=Decimal(amount), currency=currency)  # fmt: skip

    def claimed(owner, source, hours, estimate=None, currency="EUR"):
        lead = ContactFactory(stage=Contact.Stage.SQL, source=source, owner=owner,
                              claimed_at=now - timedelta(hours=hours))  # fmt: skip
        if estimate is not None:
            DealEstimate.objects.create(contact=lead, amount=Decimal(estimate), currency=currency)
        return lead

    claimed(hugo, salon, 2, estimate=5000)  # < 1 day: estimate 5000
    claimed(hugo, salon, 30)  # 1–3 days: Salon's average 2000
    claimed(hugo, presse, 30)  # 1–3 days: unknown
    claimed(hugo, presse, 24 * 10, estimate=800, currency="USD")  # > 7 days: other currency
    claimed(lea, presse, 24 * 5, estimate=1200)  # 3–7 days: estimate
    claimed(marc, salon, 2, estimate=99999)  # another team
    ContactFactory(stage=Contact.Stage.SQL, source=salon)  # in the queue: not in anyone's pipe
    ContactFactory(stage=Contact.Stage.CLIENT, source=salon, owner=hugo, claimed_at=now)  # won
    return {"manager": manager, "hugo": hugo, "lea": lea, "marc": marc, "paris": paris}


def test_the_team_pipeline_counts_and_values_each_cell(team):
    figures = pipeline(team=team["paris"], now=timezone.now())

    rows = {row.name: row for row in figures["rows"]}
    assert set(rows) == {"Hugo Bernard", "Léa Dubois", "Sophie Leroy"}
    hugo = rows["Hugo Bernard"]
    assert [cell.leads for cell in hugo.cells] == [1, 2, 0, 1]
    assert [cell.value for cell in hugo.cells] == [Decimal(5000), Decimal(2000), 0, 0]
    assert (hugo.total.leads, hugo.total.value) == (4, Decimal(7000))
    assert (hugo.total.estimated, hugo.total.averaged, hugo.total.unknown,
            hugo.total.other_currency) == (1, 1, 1, 1)  # fmt: skip
    assert [cell.leads for cell in rows["Léa Dubois"].cells] == [0, 0, 1, 0]
    assert rows["Sophie Leroy"].total.leads == 0
    assert (figures["total"].leads, figures["total"].value) == (5, Decimal(8200))
    assert [cell.leads for cell in figures["columns"]] == [1, 2, 1, 1]


def test_a_manager_without_a_team_sees_every_rep(team):
    SalesRep.objects.filter(user=team["manager"]).update(team=None)

    figures = pipeline(team=None, now=timezone.now())

    assert figures["total"].leads == 6
    assert "Marc Petit" in {row.name for row in figures["rows"]}


def test_the_manager_page_shows_their_team_only(client, team):
    client.force_login(team["manager"])

    response = client.get(reverse("pipeline"))

    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-rep="Hugo Bernard"' in html and "Marc Petit" not in html
    total = re.search(r'<tr data-rep="total">.*?data-figure="total"[^>]*>(.*?)</td>', html, re.S)
    assert "8\u00a0200,00 EUR" in total.group(1) and ">5<" in total.group(1)
    assert "estimation" in html  # says where each value comes from
    assert f'href="{reverse("pipeline")}"' in html  # the nav link


@pytest.mark.parametrize("who", ["hugo", "marketer"])
def test_reps_and_marketers_get_a_403(client, team, who):
    user = team["hugo"] if who == "hugo" else UserFactory(username="claire", roles=["marketing"])
    client.force_login(user)

    assert client.get(reverse("pipeline")).status_code == 403
    page = client.get(reverse("queue-mine" if who == "hugo" else "contact-list"))
    assert f'href="{reverse("pipeline")}"' not in page.content.decode()


def test_staff_see_the_pipeline(client, team):
    client.force_login(UserFactory(username="boss", is_staff=True))

    assert client.get(reverse("pipeline")).status_code == 200


def test_the_query_count_does_not_grow_with_the_leads(client, team, django_assert_max_num_queries):
    client.force_login(team["manager"])
    with django_assert_max_num_queries(12) as few:
        client.get(reverse("pipeline"))
    for n in range(20):
        ContactFactory(stage=Contact.Stage.SQL, owner=team["lea"],
                       claimed_at=timezone.now() - timedelta(days=n))  # fmt: skip
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(reverse("pipeline"))
    assert response.status_code == 200
