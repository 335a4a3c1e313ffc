"""In a real Chromium, a rep sets the next step on their lead, finds it on My day, gets its
reminder when the clock (moved in a worker process) reaches the due time, and ticks it done."""

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from contacts.models import FollowUp, Notification, SalesRep
from tests.factories import ContactFactory, UserFactory
from tests.test_follow_up_reminders import reminders_sent_by_a_worker_at

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def sink(django_smtp_sink):
    return django_smtp_sink


def test_a_rep_sets_a_next_step_sees_it_on_my_day_gets_the_reminder_and_ticks_it_done(
    live_server, page, sink
):
    hugo = UserFactory(username="hugo", first_name="Hugo", last_name="Bernard", roles=["sales"])
    SalesRep.objects.create(user=hugo, time_zone="America/Montreal")
    lead = ContactFactory(
        first_name="Élodie", last_name="Fournier", stage="sql", owner=hugo,
        claimed_at=timezone.now(),
    )  # fmt: skip
    page.goto(live_server.url + reverse("login"))
    page.fill("#id_username", "hugo")
    page.fill("#id_password", "secret-pass-123")
    page.click("button[type=submit]")

    page.goto(live_server.url + reverse("my-day"))
    expect(page.get_by_test_id("no-next-step")).to_contain_text("Élodie Fournier")
    page.get_by_test_id("no-next-step").get_by_role(
        "link", name="Fixer une prochaine étape"
    ).click()
    card = page.get_by_test_id("next-step")
    expect(card).to_contain_text("Aucune prochaine étape")
    in_two_days = (timezone.now() + timedelta(days=2)).astimezone(ZoneInfo("America/Montreal"))
    card.get_by_label("Prochaine étape").fill("Envoyer le devis")
    card.get_by_label("Échéance").fill(in_two_days.strftime("%Y-%m-%dT09:30"))
    card.get_by_test_id("set-follow-up").click()

    expect(page.locator(".messages")).to_contain_text("Relance programmée")
    expect(page.get_by_test_id("next-step")).to_contain_text("Envoyer le devis")
    follow_up = FollowUp.objects.get(contact=lead)
    assert follow_up.due_at.astimezone(in_two_days.tzinfo).strftime("%H:%M") == "09:30"

    page.get_by_role("link", name="Ma journée").first.click()
    upcoming = page.get_by_test_id("upcoming")
    expect(upcoming).to_contain_text("Envoyer le devis")
    expect(upcoming).to_contain_text("Élodie Fournier")
    expect(page.get_by_test_id("no-next-step")).not_to_contain_text("Élodie Fournier")

    # Beat's task in a worker process whose clock reads the due time.
    assert reminders_sent_by_a_worker_at(follow_up.due_at + timedelta(seconds=20)) == 1
    [received] = sink.received
    assert received.recipients == [hugo.email]
    assert received.message["Subject"] == "Rappel\u00a0: Envoyer le devis"
    assert "09:30" in received.message.get_content()  # Montreal time
    assert Notification.objects.get(user=hugo).kind == Notification.Kind.FOLLOW_UP_DUE

    page.evaluate("window.notReloaded = true")
    upcoming.get_by_test_id("done").click()
    expect(page.get_by_test_id("follow-up")).to_have_count(0)
    expect(page.get_by_test_id("no-next-step")).to_contain_text("Élodie Fournier")
    assert page.evaluate("window.notReloaded") is True  # htmx swapped the lists
    follow_up.refresh_from_db()
    assert follow_up.done_at is not None
