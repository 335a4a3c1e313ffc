"""The two classic campaigns, end to end: events in, emails out, time moved, not slept."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine

from contacts.models import Contact
from nurturing import rendering, scheduler, sending
from nurturing.demo import ACQUISITION, CROSS_SELL, campaigns_install
from nurturing.models import Enrollment, Message, Sequence
from scoring.models import ScoreEntry
from tests.factories import ContactFactory
from tests.utils import record

pytestmark = pytest.mark.django_db
BROWSER = "Mozilla/5.0 (Macintosh) Safari/605"
START = "2026-03-02 08:00Z"


@pytest.fixture
def campaigns(db):
    return {sequence.name: sequence for sequence in campaigns_install()}


@pytest.fixture
def run(django_capture_on_commit_callbacks, mailoutbox):
    """The scheduler's tick as beat runs it (advance, then send)."""

    def tick():
        with django_capture_on_commit_callbacks(execute=True):
            scheduler.nurturing_tick()
        with django_capture_on_commit_callbacks(execute=True):
            sending.messages_send()
        return [mail.subject for mail in mailoutbox]

    return tick


def click(client, capture, mail_index=None, message=None):
    message = message or Message.objects.filter(internal=False).order_by("-pk").first()
    token = rendering.make_token("click", message.enrollment_id, message.step_id, 0)
    with capture(execute=True):
        response = client.get(f"/e/c/{token}", HTTP_USER_AGENT=BROWSER)
    assert response.status_code == 302
    return response["Location"]


def open_(client, capture, message):
    token = rendering.make_token("open", message.enrollment_id, message.step_id)
    with capture(execute=True):
        assert client.get(f"/e/o/{token}.gif", HTTP_USER_AGENT=BROWSER).status_code == 200


def test_demo_campaigns_install_once(campaigns):
    assert campaigns_install() and Sequence.objects.count() == 2
    assert set(campaigns) == {CROSS_SELL, ACQUISITION}


def test_cross_sell_clicked_twice_gets_reminder_with_offer_then_last_chance(
    campaigns, run, client, django_capture_on_commit_callbacks, mailoutbox
):
    capture = django_capture_on_commit_callbacks
    contact = ContactFactory(first_name="Amélie")
    with time_machine.travel(START, tick=False) as clock:
        record(contact, "purchase", capture=capture, product_tag="saucepan")
        assert run() == ["Amélie, les poêles assorties à votre casserole"]
        clock.shift(timedelta(hours=3))
        assert click(client, capture).startswith("https://boutique.example.fr/poeles-assorties")

        clock.shift(timedelta(days=1, hours=20))
        assert len(run()) == 1  # two days are not over yet
        clock.shift(timedelta(hours=1))
        subjects = run()
        assert subjects[-1] == "−10 % sur les poêles, jusqu'à demain"
        reminder = mailoutbox[-1].body
        enrollment = Enrollment.objects.get(contact=contact)
        code = enrollment.offer["code"]
        assert code.startswith("POELE-") and code in reminder
        assert "5 mars 2026 09:00" in reminder  # sent 4 March 09:00 Paris, valid 24 h

        clock.shift(timedelta(hours=2))
        click(client, capture)
        clock.shift(timedelta(hours=18))
        subjects = run()
        assert subjects[-1] == f"Dernière chance : votre code {code} expire bientôt"
        assert "5 mars 2026 09:00" in mailoutbox[-1].body

        enrollment.refresh_from_db()
        assert enrollment.status == Enrollment.Status.EXITED  # ran to the end without buying
        assert len(mailoutbox) == 3


def test_cross_sell_without_a_click_stops_after_the_first_email(
    campaigns, run, django_capture_on_commit_callbacks
):
    contact = ContactFactory()
    with time_machine.travel(START, tick=False) as clock:
        record(
            contact, "purchase", capture=django_capture_on_commit_callbacks, product_tag="saucepan"
        )
        run()
        clock.shift(timedelta(days=3))
        assert len(run()) == 1
    assert Enrollment.objects.get().status == Enrollment.Status.EXITED


def test_cross_sell_a_purchase_mid_wait_ends_it_as_a_conversion(
    campaigns, run, client, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    contact = ContactFactory()
    with time_machine.travel(START, tick=False) as clock:
        record(contact, "purchase", capture=capture, product_tag="saucepan")
        run()
        clock.shift(timedelta(hours=5))
        click(client, capture)
        clock.shift(timedelta(days=1))
        record(contact, "purchase", capture=capture, product_tag="frying-pan")
        clock.shift(timedelta(days=5))
        assert len(run()) == 1
    enrollment = Enrollment.objects.get()
    assert enrollment.status == Enrollment.Status.GOAL_REACHED
    # Buying the saucepan again later is a new purchase, but the policy says 90 days.
    assert Enrollment.objects.count() == 1


def tv_views(contact, capture, count):
    for number in range(count):
        record(
            contact,
            "page_view",
            capture=capture,
            content_tag="tv",
            url=f"https://boutique.example.fr/televiseurs/{number}",
        )


def test_acquisition_starts_after_more_than_five_tv_pages_and_offers_a_discount_when_opened(
    campaigns, run, client, django_capture_on_commit_callbacks, mailoutbox
):
    capture = django_capture_on_commit_callbacks
    # Consented to open tracking: its emails carry the pixel, so its open is seen.
    contact = ContactFactory(first_name="Noël", open_tracking_consent_at=START)
    with time_machine.travel(START, tick=False) as clock:
        tv_views(contact, capture, 5)
        assert not Enrollment.objects.exists()
        tv_views(contact, capture, 1)
        assert run() == ["Noël, nos téléviseurs du moment"]
        clock.shift(timedelta(hours=6))
        open_(client, capture, Message.objects.get())
        clock.shift(timedelta(days=3))
        assert run()[-1] == "10 % sur votre futur téléviseur"
        assert "TELE-" in mailoutbox[-1].body
    enrollment = Enrollment.objects.get()
    assert enrollment.status == Enrollment.Status.COMPLETED
    assert not ScoreEntry.objects.filter(points=-10).exists()


def test_acquisition_with_no_response_exits_and_takes_ten_points(
    campaigns, run, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    contact = ContactFactory()
    with time_machine.travel(START, tick=False) as clock:
        tv_views(contact, capture, 6)
        run()
        score_before = Contact.objects.get(pk=contact.pk).score
        clock.shift(timedelta(days=3, minutes=1))
        assert len(run()) == 1
    assert Contact.objects.get(pk=contact.pk).score == score_before - 10
    assert ScoreEntry.objects.filter(contact=contact, points=-10).count() == 1
    enrollment = Enrollment.objects.get()
    assert enrollment.status == Enrollment.Status.EXITED


def test_acquisition_a_purchase_is_the_conversion(
    campaigns, run, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    contact = ContactFactory()
    with time_machine.travel(START, tick=False) as clock:
        tv_views(contact, capture, 6)
        run()
        clock.shift(timedelta(days=1))
        record(contact, "purchase", capture=capture, product_tag="tv")
        clock.shift(timedelta(days=3))
        assert len(run()) == 1
    assert Enrollment.objects.get().status == Enrollment.Status.GOAL_REACHED
