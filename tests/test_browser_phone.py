"""In a real Chromium at 390 × 844 (a phone): a rep opens the menu and switches to English, claims
a lead from the queue, calls or writes from big buttons at the top of the lead, records it as
lost (each outcome is a full-width row with its label; "Why lost" only once Lost is picked), finds
it gone from their leads, and logs out from the menu. A marketer's contact list and a contact page
fit too. Nothing scrolls sideways, every tap target is 44 px high, fields have 16 px text. At
1280 × 800 (a desk) the header has no menu button and Log out is in sight.

Set LEADFUNNEL_SCREENSHOTS=/some/folder to save a PNG of each page, to look at by eye."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from contacts.models import Contact, StageChange
from contacts.sales.claims import contact_claim
from nurturing.models import Enrollment, Message
from tests.browser_pages import PHONE, visitor
from tests.factories import ContactFactory, LeadSourceFactory, UserFactory
from tests.nurturing.helpers import email_step, sequence_with
from tests.phone import assert_fits_phone, in_viewport_and_big_enough, open_menu

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DESK = {"width": 1280, "height": 800}
LONG_COMPANY = "Société Coopérative d'Intérêt Collectif des Boulangeries Artisanales du Grand Ouest"


def wordy_lead(index: int, **fields) -> Contact:
    source = LeadSourceFactory(
        name="Salon professionnel de la boulangerie et de la pâtisserie 2026", slug="salon"
    )
    values = {
        "first_name": "Marie-Éléonore",
        "last_name": f"de La Rochefoucauld-Montmorency {index}",
        "email": f"marie-eleonore.de-la-rochefoucauld-montmorency.{index}@boulangeries-artisanales.fr",
        "company": LONG_COMPANY,
        "job_title": "Directrice administrative et financière adjointe",
        "phone": "+33 6 12 34 56 78",
        "source": source,
        "stage": "sql",
        "score": 50 + index,
    }
    return ContactFactory(**{**values, **fields})


@pytest.fixture
def people(db):
    hugo = UserFactory(
        username="hugo", first_name="Hugo-Alexandre", last_name="Bernard-Delacroix", roles=["sales"]
    )
    UserFactory(username="claire", first_name="Claire", last_name="Martin", roles=["marketing"])
    # Both roles and staff: the longest menu there is.
    UserFactory(username="boss", first_name="Anne", last_name="Lefebvre", is_staff=True,
                roles=["marketing", "sales"])  # fmt: skip
    return hugo


def test_a_rep_claims_calls_and_records_a_lost_lead_on_a_phone(live_server, chromium, people):
    waiting = [wordy_lead(index) for index in range(3)]
    with visitor(chromium, live_server.url, "hugo", viewport=PHONE) as rep:
        page = rep.open(reverse("queue"))
        # The menu is folded: Log out and the language are behind the Menu button.
        expect(page.get_by_role("button", name="Se déconnecter")).to_be_hidden()
        in_viewport_and_big_enough(page, "label.menu-button")
        # The header's tools slot (the notifications bell) stays in sight beside the button.
        page.evaluate(
            """document.querySelector(".header-tools").innerHTML =
            '<a class="button" href="#" data-testid="bell">12</a>'"""
        )
        in_viewport_and_big_enough(page, "[data-testid=bell]")
        bell, menu = page.get_by_test_id("bell").bounding_box(), page.locator(".menu-button")
        assert abs(bell["y"] - menu.bounding_box()["y"]) < 4  # on one line
        assert_fits_phone(page)
        open_menu(page)
        expect(page.get_by_role("button", name="Se déconnecter")).to_be_in_viewport()
        assert_fits_phone(page, screenshot="phone-queue-menu")
        page.get_by_label("Langue").select_option("en")
        page.wait_for_load_state()
        rep.settle()
        expect(page.locator("h1")).to_have_text("Sales queue")

        # The queue: one card per lead, each Claim button on screen and thumb-sized.
        assert_fits_phone(page, screenshot="phone-queue")
        expect(page.locator(".menu-button")).to_be_visible()
        for lead in waiting:
            in_viewport_and_big_enough(page, f"#lead-{lead.pk} button[type=submit]")
        in_viewport_and_big_enough(page, "[data-testid=claim-next]")
        lead = waiting[2]
        page.locator(f"#lead-{lead.pk}").get_by_role("button", name="Claim").click()
        rep.settle()
        expect(page.locator("h1")).to_contain_text(lead.display_name)
        assert Contact.objects.get(pk=lead.pk).owner_id == people.pk

        # The lead: call and write are big buttons at the top, in sight without scrolling.
        assert_fits_phone(page, screenshot="phone-lead")
        page.evaluate("window.scrollTo(0, 0)")
        for testid, href in (("call-button", "tel:+33612345678"), ("email-button", "mailto:")):
            button = page.get_by_test_id(testid)
            expect(button).to_be_in_viewport()
            assert button.get_attribute("href").startswith(href), testid
            in_viewport_and_big_enough(page, f"[data-testid={testid}]")
        expect(page.get_by_test_id("call-button")).to_have_text("Call")
        assert page.get_by_test_id("email-button").get_attribute("href") == f"mailto:{lead.email}"

        # The outcome: each choice a full-width row named by its label; Why lost once Lost.
        form = page.locator(".outcome form")
        why_lost = page.get_by_label("Why lost")
        expect(why_lost).to_be_hidden()
        form_box = form.bounding_box()
        for name in ("Won: becomes a client", "Lost", "Back to marketing (recycle)"):
            row = page.locator("label.choice", has_text=name)
            box = row.bounding_box()
            assert box["width"] >= form_box["width"] - 1, (name, box, form_box)
            assert box["height"] >= 44, (name, box)
        page.get_by_label("Won: becomes a client").check()
        expect(why_lost).to_be_hidden()
        page.get_by_label("Lost", exact=True).check()
        expect(page.get_by_label("Lost", exact=True)).to_be_checked()
        expect(why_lost).to_be_visible()
        expect(page.get_by_label("Reason or note")).to_be_hidden()  # words only for "Other"
        why_lost.select_option("other")
        page.get_by_label("Reason or note").fill("Budget gelé jusqu'en septembre.")
        submit = page.get_by_role("button", name="Record the outcome")
        in_viewport_and_big_enough(page, ".outcome button[type=submit]")
        assert submit.bounding_box()["width"] >= form_box["width"] - 1
        assert_fits_phone(page, screenshot="phone-lead-lost")
        submit.click()
        rep.settle()

        # Back on My leads: the outcome is confirmed and the lead has left.
        expect(page.locator(".messages")).to_contain_text("Outcome recorded")
        expect(page.locator(f"[data-testid=my-lead] >> text={lead.display_name}")).to_have_count(0)
        assert_fits_phone(page, screenshot="phone-mine-empty")
        assert Contact.objects.get(pk=lead.pk).stage == "lead"
        assert StageChange.objects.filter(contact=lead).latest("at").outcome == "lost"

        # My leads with a lead in it, and the full contact page.
        contact_claim(contact_id=waiting[0].pk, user=people)
        page = rep.open(reverse("queue-mine"))
        assert_fits_phone(page, screenshot="phone-mine")
        in_viewport_and_big_enough(page, "[data-testid=my-lead] a.button")
        page = rep.open(reverse("contact-detail", args=[waiting[0].pk]))
        assert_fits_phone(page, screenshot="phone-contact")
        expect(page.get_by_test_id("call-button")).to_be_in_viewport()

        # Log out from the menu.
        open_menu(page)
        page.get_by_role("button", name="Log out").click()
        page.wait_for_url(lambda url: "/login/" in url)
        expect(page.locator("#id_username")).to_be_visible()
        assert_fits_phone(page, screenshot="phone-login")


def test_a_marketer_filters_contacts_and_opens_one_on_a_phone(live_server, chromium, people):
    for index in range(4):
        wordy_lead(index, stage="mql")
    contact = wordy_lead(9, stage="sql", do_not_call=True)
    # A sequence with a sent email: the contact page's sequences card holds a table.
    sequence = sequence_with(
        email_step(body_html="<p>Bonjour</p>"),
        name="Relance des décideurs après le salon professionnel de la boulangerie",
    )
    step = sequence.steps.get()
    enrollment = Enrollment.objects.create(contact=contact, sequence=sequence, step=step)
    Message.objects.create(
        enrollment=enrollment, step=step, contact=contact, to=contact.email, subject="Bonjour",
        body_text="Bonjour", message_id="<m1@ex.fr>", status="sent", sent_at=timezone.now(),
    )  # fmt: skip
    for username in ("claire", "boss"):
        with visitor(chromium, live_server.url, username, viewport=PHONE) as marketer:
            page = marketer.open(reverse("contact-list"))
            assert_fits_phone(page, screenshot=f"phone-contacts-{username}")
            # The column headings are gone, their sort links stay, as chips above the cards.
            expect(page.locator("table.contacts th", has_text="E-mail")).to_be_visible()
            page.locator("table.contacts th a", has_text="Score").click()
            expect(page.locator("table.contacts th[aria-sort=ascending]")).to_have_text("Score ▲")
            scores = page.locator("table.contacts td[data-label=Score]").all_inner_texts()
            assert scores == sorted(scores) and len(scores) == 5, scores
            page.get_by_label("Rechercher").fill("Montmorency 9")
            expect(page.locator("table.contacts tbody tr")).to_have_count(1)
            assert_fits_phone(page)
            page.locator("table.contacts tbody").get_by_role("link").first.click()
            marketer.settle()
            expect(page.locator("h1")).to_contain_text(contact.display_name)
            expect(page.locator("#nurturing-enrollments td", has_text="Bonjour")).to_be_visible()
            assert_fits_phone(page, screenshot=f"phone-contact-{username}")
            # Do not call: no call button, only the email one.
            expect(page.get_by_test_id("call-button")).to_have_count(0)
            expect(page.get_by_test_id("email-button")).to_be_visible()
            open_menu(page)
            assert_fits_phone(page, screenshot=f"phone-menu-{username}")
            page.get_by_role("button", name="Se déconnecter").click()
            page.wait_for_url(lambda url: "/login/" in url)


def test_at_a_desk_the_header_is_unfolded_and_the_phone_buttons_are_hidden(
    live_server, chromium, people
):
    lead = wordy_lead(1)
    contact_claim(contact_id=lead.pk, user=people)
    wordy_lead(2)
    with visitor(chromium, live_server.url, "boss", viewport=DESK) as boss:
        for path in (
            reverse("queue"),
            reverse("queue-mine"),
            reverse("contact-list"),
            reverse("contact-detail", args=[lead.pk]),
        ):
            page = boss.open(path)
            assert boss.overflow() == [], path
            expect(page.locator(".menu-button")).to_be_hidden()
            expect(page.get_by_role("button", name="Se déconnecter")).to_be_in_viewport()
            expect(page.get_by_label("Langue")).to_be_in_viewport()
            expect(page.get_by_role("navigation", name="Navigation principale")).to_be_in_viewport()
            # The queue and the contact list are still tables with their headings.
            for table in page.locator("table.table-cards").all():
                expect(table.locator("thead th").first).to_be_visible()
        expect(page.get_by_test_id("call-button")).to_be_hidden()
    with visitor(chromium, live_server.url, "hugo", viewport=DESK) as rep:
        page = rep.open(reverse("queue-lead", args=[lead.pk]))
        assert rep.overflow() == []
        expect(page.get_by_test_id("call-button")).to_be_hidden()
        expect(page.get_by_test_id("call")).to_be_visible()  # the profile's link, as before
        page.get_by_role("button", name="Se déconnecter").click()
        page.wait_for_url(lambda url: "/login/" in url)
