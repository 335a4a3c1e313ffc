"""In a real Chromium, each role walks every page it has: no alert ever opens, and nothing
overflows sideways at 1366 px (a desk), nor the sales pages at 390 px (a phone), unless it is a
scroll region a keyboard can reach. Long names, companies and source names stretch the pages.

The server and browser are shared by the session; each test seeds once and walks all of a
role's pages (pytest-django empties the database after each live-server test)."""

from __future__ import annotations

from datetime import timedelta
from pprint import pformat

import pytest
from django.contrib import admin
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from playwright.sync_api import expect

from contacts.models import Form, ImportJob, LeadSourceCost, StageChange
from contacts.sales.claims import contact_claim
from contacts.stages import stage_move
from nurturing.models import Enrollment, Message
from tests.browser_pages import DESKTOP, PHONE, visitor
from tests.factories import ContactFactory, EventFactory, LeadSourceFactory, UserFactory
from tests.nurturing.helpers import email_step, sequence_with

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FUNNEL = ["mql", "hmql", "sql", "client"]
LONG_COMPANY = "Société Coopérative d'Intérêt Collectif des Boulangeries Artisanales du Grand Ouest"


@pytest.fixture
def team(settings):
    """Three people and a small, wordy dataset: sources with costs, leads in every stage, SQLs
    waiting, one claimed by Hugo, a sequence with a sent email, an import."""
    settings.LEADFUNNEL_EVENT_HANDLERS = ["contacts.reports.rollups.on_event"]  # no scoring
    UserFactory(username="claire", first_name="Claire", last_name="Martin", roles=["marketing"])
    hugo = UserFactory(username="hugo", first_name="Hugo", last_name="Bernard", roles=["sales"])
    UserFactory(username="admin", is_staff=True, is_superuser=True)
    sources = [
        LeadSourceFactory(name="Salon professionnel de la boulangerie et de la pâtisserie 2026"),
        LeadSourceFactory(name="Campagne LinkedIn Ads — décideurs PME Grand Ouest"),
        LeadSourceFactory(name="Site web"),
    ]
    today = timezone.localdate()
    for source in sources:
        LeadSourceCost.objects.create(
            source=source, starts_on=today - timedelta(days=20), ends_on=today, amount=12345.67
        )
    now = timezone.now()
    contacts = []
    for index, stage in enumerate(["mql", "sql", "sql", "sql", "client", "mql", "lead"]):
        contact = ContactFactory(
            first_name="Marie-Éléonore",
            last_name=f"de La Rochefoucauld-Montmorency {index}",
            email=f"marie-eleonore.de-la-rochefoucauld-montmorency.{index}@boulangeries-artisanales.fr",
            company=LONG_COMPANY,
            job_title="Directrice administrative et financière adjointe",
            phone="+33 6 12 34 56 78",
            source=sources[index % 3],
            stage="lead",
            score=20 + index * 10,
        )
        for step in FUNNEL[: FUNNEL.index(stage) + 1] if stage in FUNNEL else []:
            stage_move(
                contact=contact, to=step, cause=StageChange.Cause.USER, at=now - timedelta(hours=30)
            )
        EventFactory(
            contact=contact, type="page_view",
            properties={"url": "https://www.boulangeries-artisanales.fr/tarifs/offre-professionnelle-annuelle?utm_source=linkedin&utm_campaign=automne-2026-decideurs", "title": "Tarifs"},
        )  # fmt: skip
        contacts.append(contact)
    claimed = contacts[1]
    contact_claim(contact_id=claimed.pk, user=hugo)
    sequence = sequence_with(
        email_step(body_html="<p>Bonjour {{ first_name }}</p>"),
        name="Relance des décideurs après le salon professionnel de la boulangerie",
    )
    step = sequence.steps.get()
    enrollment = Enrollment.objects.create(contact=contacts[0], sequence=sequence, step=step)
    Message.objects.create(
        enrollment=enrollment, step=step, contact=contacts[0], to=contacts[0].email,
        subject="Bonjour", body_text="Bonjour", message_id="<m1@ex.fr>", status="sent", sent_at=now,
    )  # fmt: skip
    form = Form.objects.create(name="Demande de démo", source=sources[2])
    job = ImportJob.objects.create(
        filename="salon-boulangerie-2026-contacts-exportes-depuis-le-crm.csv",
        status=ImportJob.Status.DONE, columns=["Email"], mapping=["email"],
    )  # fmt: skip
    return {
        "contact": contacts[0], "claimed": claimed, "sequence": sequence, "step": step,
        "form": form, "job": job,
    }  # fmt: skip


def marketing_pages(team) -> list[str]:
    contact = team["contact"].pk
    sequence = team["sequence"].pk
    return [
        reverse("home"),
        reverse("funnel-panel"),
        reverse("dashboard-conversion"),
        reverse("dashboard-velocity"),
        reverse("dashboard-sources"),
        reverse("dashboard-sla"),
        reverse("dashboard-touchpoints"),
        reverse("score-distribution-panel"),
        reverse("score-quality"),
        reverse("contact-list"),
        reverse("contact-list") + "?stage=sql",
        reverse("contact-create"),
        reverse("contact-detail", args=[contact]),
        reverse("contact-edit", args=[contact]),
        reverse("contact-erase", args=[contact]),
        reverse("score-explanation", args=[contact]),
        reverse("contact-import"),
        reverse("contact-import-job", args=[team["job"].pk]),
        reverse("nurturing-sequences"),
        reverse("nurturing-sequence", args=[sequence]),
        reverse("nurturing-enroll-list"),
    ]


def sales_pages(team) -> list[str]:
    return [
        reverse("queue"),
        reverse("queue-mine"),
        reverse("queue-lead", args=[team["claimed"].pk]),
    ]


def admin_pages(team) -> list[str]:
    pages = [reverse("admin:index")]
    for model in admin.site._registry:
        opts = model._meta
        try:
            pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        except NoReverseMatch:
            continue
    contact, sequence = team["contact"], team["sequence"]
    pages += [
        reverse("admin:contacts_contact_change", args=[contact.pk]),
        reverse("admin:nurturing_sequence_change", args=[sequence.pk]),
        reverse("admin:nurturing_step_preview", args=[sequence.pk, team["step"].pk])
        + f"?contact={contact.pk}",
        reverse("admin:contacts_form_change", args=[team["form"].pk]),
        reverse("admin:contacts_form_add"),
    ]
    return pages


def walk(person, pages: list[str]) -> dict[str, list[str]]:
    problems = {}
    for path in pages:
        person.open(path)
        found = person.overflow()
        if found:
            problems[path] = found
    return problems


def test_a_marketer_walks_every_page_without_an_alert_or_sideways_overflow(
    live_server, chromium, team
):
    with visitor(chromium, live_server.url, "claire") as claire:
        problems = walk(claire, marketing_pages(team))
    assert problems == {}, pformat(problems)


def test_a_sales_rep_walks_the_queue_their_leads_and_a_lead_at_desk_and_phone_width(
    live_server, chromium, team
):
    for viewport in (DESKTOP, PHONE):
        with visitor(chromium, live_server.url, "hugo", viewport=viewport) as hugo:
            problems = walk(hugo, sales_pages(team))
            assert problems == {}, (viewport, pformat(problems))
            # On a phone too, every button and the outcome form are there to tap.
            page = hugo.open(reverse("queue"))
            expect(page.locator("[data-testid=claim-next]")).to_be_in_viewport()
            for button in page.locator("[data-testid=queue-row] button").all():
                button.scroll_into_view_if_needed()
                expect(button).to_be_in_viewport()
            page = hugo.open(reverse("queue-lead", args=[team["claimed"].pk]))
            submit = page.locator(".outcome button[type=submit]")
            submit.scroll_into_view_if_needed()
            expect(submit).to_be_in_viewport()


def test_an_admin_walks_every_page_and_the_admin_without_an_alert_or_sideways_overflow(
    live_server, chromium, team
):
    with visitor(chromium, live_server.url, "admin") as admin_person:
        # The marketer's and the rep's pages again (a longer menu), then the admin's.
        problems = walk(admin_person, [reverse("home"), reverse("queue"), *admin_pages(team)])
    assert problems == {}, pformat(problems)


def test_someone_without_a_role_is_told_so_without_an_alert(live_server, chromium, db):
    UserFactory(username="nobody")
    with visitor(chromium, live_server.url, "") as nobody:
        page = nobody.page
        page.goto(live_server.url + reverse("login"))
        page.fill("#id_username", "nobody")
        page.fill("#id_password", "secret-pass-123")
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/login/" not in url)
        nobody.settle()
        expect(page.locator("main")).to_be_visible()
        assert nobody.overflow() == []
