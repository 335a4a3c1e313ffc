"""The sources panel counts people, not moves (issue 14, point 5): a lead who goes back and forth
between lead and MQL is one lead and one MQL; a contact counts under its source as it is now (a
source set after the moves is not lost), and the first source it had is kept beside it."""

from __future__ import annotations

from datetime import date

import pytest
from django.urls import reverse

from contacts.models import Contact, Event, StageChange
from contacts.pipeline import events_process
from contacts.reports import dashboard
from contacts.reports.rollups import rollups_rebuild
from contacts.services import contact_create, contact_update
from contacts.stages import stage_move
from tests.factories import ContactFactory, LeadSourceFactory
from tests.test_csv_import import media, run_import  # noqa: F401 (media: a fixture)
from tests.test_dashboard import FEBRUARY, figure, panel, paris

pytestmark = pytest.mark.django_db


def walk(contact: Contact, *steps) -> None:
    for stage, at in steps:
        stage_move(contact=contact, to=stage, cause=StageChange.Cause.THRESHOLD, at=at)


def process_all() -> None:
    events_process(event_ids=list(Event.objects.values_list("pk", flat=True)))


@pytest.fixture
def crm(db, settings):
    """February 2026. Ana (no source when she moved) goes lead → MQL → lead → MQL → lead;
    her source, Salon, is set afterwards, as an import of the CRM's Lead Source would. Bruno
    came from Google Ads, became lead then MQL, and the CRM later says Salon. Chloé has been
    a lead since January (Google Ads) and only falls back from MQL in February."""
    settings.LEADFUNNEL_EVENT_HANDLERS = ["contacts.reports.rollups.on_event"]
    salon = LeadSourceFactory(name="Salon", slug="salon")
    google = LeadSourceFactory(name="Google Ads", slug="google")
    ana = ContactFactory(first_name="Ana", stage="suspect", created_at=paris(2, 1))
    walk(ana, ("lead", paris(2, 2)), ("mql", paris(2, 5)), ("lead", paris(2, 6)),
         ("mql", paris(2, 10)), ("lead", paris(2, 12)))  # fmt: skip
    bruno = ContactFactory(first_name="Bruno", stage="suspect", created_at=paris(2, 3))
    contact_update(contact=bruno, source=google)
    walk(bruno, ("lead", paris(2, 3)), ("mql", paris(2, 4)))
    chloe = ContactFactory(first_name="Chloé", stage="suspect", created_at=paris(1, 3))
    contact_update(contact=chloe, source=google)
    walk(chloe, ("lead", paris(1, 3)), ("mql", paris(1, 20)), ("lead", paris(2, 8)))
    process_all()
    # Sources set after the moves (the stays were recorded without them).
    contact_update(contact=ana, source=salon)
    contact_update(contact=bruno, source=salon)
    return {"ana": ana, "bruno": bruno, "chloe": chloe, "salon": salon, "google": google}


def rows(html: str, source: str) -> tuple[str, ...]:
    row = f'data-source="{source}"'
    return tuple(figure(html, row, name) for name in ("leads", "mqls", "sqls", "clients"))


def test_a_lead_moving_back_and_forth_counts_once_under_its_source_as_it_is_now(
    crm, marketer_client
):
    # 5 moves into lead in February (Ana 3, Bruno 1, Chloé's demotion 1): 2 new leads.
    assert StageChange.objects.filter(to_stage="lead", at__gte=paris(2, 1)).count() == 5

    html = panel(marketer_client, "dashboard-sources")

    assert rows(html, "Salon") == ("2", "2", "0", "0")  # Ana and Bruno, each once
    assert 'data-source="Google Ads"' not in html  # Chloé was a lead and an MQL in January
    assert 'data-source="Aucune source"' not in html  # Ana's source came after her moves
    assert rows(html, "Total") == ("2", "2", "0", "0")
    assert "comptée une seule fois par étape" in html


def test_the_panel_can_group_by_first_source(crm, marketer_client):
    html = panel(marketer_client, "dashboard-sources", query="?from=2026-02-01&to=2026-02-28")
    assert 'href="/dashboard/sources/?from=2026-02-01&amp;to=2026-02-28&amp;by=first_source"' in (
        html
    )

    by_first = panel(
        marketer_client, "dashboard-sources", query="?from=2026-02-01&to=2026-02-28&by=first_source"
    )

    # Bruno's first source was Google Ads; Ana had none before Salon, so Salon is her first.
    assert rows(by_first, "Google Ads") == ("1", "1", "0", "0")
    assert rows(by_first, "Salon") == ("1", "1", "0", "0")
    assert "Première source" in by_first


def test_a_late_first_arrival_still_counts_and_a_rebuild_gives_the_same_figures(crm):
    # Chloé reaches SQL for the first time in February; her January MQL stays January's.
    walk(crm["chloe"], ("sql", paris(2, 20)))
    process_all()
    before = dashboard.sources(FEBRUARY)

    rollups_rebuild()

    after = dashboard.sources(FEBRUARY)
    assert before == after
    google = next(row for row in after["rows"] if row["name"] == "Google Ads")
    assert (google["leads"], google["mqls"], google["sqls"]) == (0, 0, 1)
    january = dashboard.sources(dashboard.Period(date(2026, 1, 1), date(2026, 1, 31)))
    assert (january["total"]["leads"], january["total"]["mqls"]) == (1, 1)


def test_the_first_source_is_set_once_and_shown_on_the_contact_page(db, marketer_client):
    salon = LeadSourceFactory(name="Salon", slug="salon")
    google = LeadSourceFactory(name="Google Ads", slug="google")
    known = contact_create(email="eve@exemple.fr", source=google)
    unknown = contact_create(email="leo@exemple.fr")

    contact_update(contact=known, source=salon)
    contact_update(contact=unknown, source=salon)
    contact_update(contact=unknown, source=google)

    known.refresh_from_db()
    unknown.refresh_from_db()
    assert (known.source, known.first_source) == (salon, google)
    assert (unknown.source, unknown.first_source) == (google, salon)
    page = marketer_client.get(reverse("contact-detail", args=[known.pk])).content.decode()
    assert 'data-testid="source">Salon' in page
    assert 'data-testid="first-source">Google Ads<' in page


@pytest.mark.usefixtures("media")
def test_a_source_an_import_fills_in_later_moves_the_people_in_the_panel(
    crm, marketer_client, django_capture_on_commit_callbacks
):
    dan = ContactFactory(first_name="Dan", email="dan@exemple.fr", stage="suspect")
    walk(dan, ("lead", paris(2, 14)), ("mql", paris(2, 15)), ("lead", paris(2, 16)))
    process_all()
    assert rows(panel(marketer_client, "dashboard-sources"), "Aucune source") == (
        "1",
        "1",
        "0",
        "0",
    )

    run_import(
        marketer_client,
        django_capture_on_commit_callbacks,
        b"email,first_name\ndan@exemple.fr,Dan\n",
        source=crm["google"].pk,
    )

    html = panel(marketer_client, "dashboard-sources")
    assert 'data-source="Aucune source"' not in html
    assert rows(html, "Google Ads") == ("1", "1", "0", "0")
    dan.refresh_from_db()
    assert dan.first_source == crm["google"]
