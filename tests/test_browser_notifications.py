"""In a real Chromium: the bell's count rises by itself (htmx polling, no reload) when a
notification arrives, and opening it shows its sentence and marks it read."""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from contacts.models import Contact, Notification
from contacts.notifications import notify
from tests.factories import ContactFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_bell_counts_up_without_a_reload_and_opens_the_sentence(
    live_server, chromium, settings
):
    settings.NOTIFICATION_BELL_SECONDS = 1
    hugo = UserFactory(username="hugo", first_name="Hugo", last_name="Bernard", roles=["sales"])
    lead = ContactFactory(first_name="Élodie", last_name="Fournier", email="elodie@exemple.fr",
                          stage=Contact.Stage.SQL, owner=hugo)  # fmt: skip
    context = chromium.new_context(locale="fr-FR")
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(live_server.url + reverse("login"))
        page.fill("#id_username", "hugo")
        page.fill("#id_password", "secret-pass-123")
        page.click("button[type=submit]")
        expect(page).to_have_url(live_server.url + reverse("queue"))
        expect(page.get_by_test_id("bell")).to_be_visible()
        expect(page.get_by_test_id("bell-count")).to_have_count(0)

        page.evaluate("window.notReloaded = true")
        notify(user_ids=[hugo.pk], kind=Notification.Kind.HARD_BOUNCE, contact_id=lead.pk,
               params={"email": "elodie@exemple.fr", "detail": "550 5.1.1"})  # fmt: skip
        expect(page.get_by_test_id("bell-count")).to_have_text("1", timeout=10_000)
        notify(user_ids=[hugo.pk], kind=Notification.Kind.NEW_SQL, params={"count": 12})
        expect(page.get_by_test_id("bell-count")).to_have_text("2", timeout=10_000)
        assert page.evaluate("window.notReloaded") is True

        page.get_by_test_id("bell").click()
        expect(page).to_have_url(live_server.url + reverse("notifications"))
        items = page.get_by_test_id("notification")
        expect(items.first).to_contain_text("12 nouveaux SQL sont arrivés dans la file.")
        expect(items.nth(1)).to_contain_text(
            "L’email à Élodie Fournier est revenu en échec\u00a0: elodie@exemple.fr"
        )

        items.nth(1).get_by_role("button").click()
        expect(page).to_have_url(live_server.url + reverse("queue-lead", args=[lead.pk]))
        expect(page.locator("h1")).to_contain_text("Élodie Fournier")
        expect(page.get_by_test_id("bell-count")).to_have_text("1")
    finally:
        context.close()
