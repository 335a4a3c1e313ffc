"""Pre-flight: the forecast of who enters a sequence and how many emails a day it sends is
what the scheduler then does when time moves on, and the pages that show it change nothing
until the person confirms."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse

from contacts.models import Contact
from nurturing import enrolment, preflight, scheduler, sending
from nurturing.models import Enrollment, Message, Sequence
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with, wait_step

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
# A Thursday: the window of the last wait (weekdays) sends it past a weekend.
START = datetime(2026, 3, 5, 8, 0, tzinfo=PARIS)


def campaign() -> Sequence:
    """email, 1 day, (opened? → end), email, 1 day then a weekday 9–11 window in the contact's
    time zone, email."""
    return sequence_with(
        email_step(subject="Un"),
        wait_step(days=1),
        {"kind": "condition", "condition": "opened", "yes": 7},
        email_step(subject="Deux"),
        {**wait_step(days=1), "window_weekdays": "0,1,2,3,4", "window_start_hour": 9,
         "window_end_hour": 11, "window_time_zone": "contact"},
        email_step(subject="Trois"),
        {"kind": "exit"},
        name="Poêles",
    )  # fmt: skip


def already_emailed_three_times(contact: Contact, at: datetime) -> None:
    other = sequence_with(email_step(), name="Autre")
    for number in range(3):
        enrollment = Enrollment.objects.create(
            contact=contact, sequence=other, entered_at=at, status="completed"
        )
        Message.objects.create(
            enrollment=enrollment, contact=contact, to=contact.email, subject="x", body_text="x",
            message_id=f"<old-{number}@x>", status=Message.Status.SENT, created_at=at, sent_at=at,
        )  # fmt: skip


def sent_per_day(sequence: Sequence) -> Counter:
    return Counter(
        sent_at.astimezone(PARIS).date()
        for sent_at in Message.objects.filter(
            enrollment__sequence=sequence, status=Message.Status.SENT
        ).values_list("sent_at", flat=True)
    )


def test_the_forecast_per_day_is_what_the_scheduler_sends(mailoutbox):
    sequence = campaign()
    ContactFactory.create_batch(3, time_zone="Europe/Paris")
    ContactFactory.create_batch(2, time_zone="Pacific/Auckland")  # Monday 9:00 there: Sunday
    ContactFactory(time_zone="")  # the site's
    capped = ContactFactory(time_zone="Europe/Paris")
    already_emailed_three_times(capped, START - timedelta(hours=2))
    ContactFactory(do_not_email=True)
    ContactFactory(consent=Contact.Consent.WITHDRAWN)
    ContactFactory(anonymous=True)
    inside = ContactFactory()
    Enrollment.objects.create(contact=inside, sequence=sequence, next_run_at=None)
    everyone = Contact.objects.all()

    with time_machine.travel(START, tick=False) as traveller:
        forecast = preflight.forecast(sequence, everyone)
        enrolment.enrollments_start(
            sequence=sequence, contact_ids=everyone.values_list("pk", flat=True)
        )
        for hour in range(7 * 24):
            traveller.move_to(START + timedelta(hours=hour))
            scheduler.enrollments_advance()
            sending.messages_send()

    assert forecast.entering == 7
    assert forecast.skipped == {
        "do not email": 1, "consent withdrawn": 1, "no email address": 1, "already enrolled": 1,
    }  # fmt: skip
    assert forecast.capped_contacts == 1
    predicted = {day.day: round(day.new) for day in forecast.days if day.new}
    assert predicted == dict(sent_per_day(sequence))
    # Thursday: all but the capped one; Sunday: the third email in Auckland's Monday morning.
    assert predicted[START.date()] == 6
    assert predicted[START.date() + timedelta(days=3)] == 2
    assert forecast.emails == 3 * 7 == len(mailoutbox)


def test_a_split_sends_its_share_of_the_contacts_down_each_branch():
    sequence = sequence_with(
        {"kind": "split", "split_percent": 25, "yes": 3},
        {"kind": "exit"},
        email_step(),
        name="A/B",
    )
    ContactFactory.create_batch(8)

    forecast = preflight.forecast(sequence, Contact.objects.all(), START)

    assert forecast.days[0].new == pytest.approx(2)


def test_a_sequence_for_consent_only_leaves_out_the_contacts_it_may_not_email():
    sequence = sequence_with(email_step(), name="Lettre", allowed_bases="consent")
    ContactFactory(email="accord@client.example.fr", consent="granted", consent_basis="consent")
    ContactFactory(
        email="achat@client.example.fr", consent_basis="legitimate_interest",
        legitimate_interest_notice_on=START.date(),
    )  # fmt: skip

    forecast = preflight.forecast(sequence, Contact.objects.all(), START)

    assert forecast.entering == 1
    assert forecast.skipped == {"basis not allowed by this sequence": 1}


def test_the_queue_and_the_hourly_cap_show_how_many_hours_each_day_needs(settings):
    settings.NURTURING_HOURLY_CAP = 2
    sequence = sequence_with(email_step(), name="Lettre")
    ContactFactory.create_batch(50)
    waiting = ContactFactory()
    other = Enrollment.objects.create(contact=waiting, sequence=sequence_with(email_step()))
    Message.objects.create(
        enrollment=other, contact=waiting, to=waiting.email, subject="x", body_text="x",
        message_id="<q@x>", next_attempt_at=START + timedelta(days=1, hours=3),
    )  # fmt: skip

    forecast = preflight.forecast(sequence, Contact.objects.exclude(pk=waiting.pk), START)

    first, second = forecast.days[:2]
    assert (first.new, first.queued, first.hours, first.over_hourly_cap) == (50, 0, 25, True)
    assert (second.new, second.queued, second.hours, second.over_hourly_cap) == (0, 1, 1, False)
    assert forecast.busy_days == [first]


# --- The pages --------------------------------------------------------------------------------


def test_the_activation_page_shows_the_forecast_and_changes_nothing(marketer_client):
    sequence = sequence_with(
        email_step(), trigger="segment", segment_query="stage=mql", active=False, name="MQL"
    )
    ContactFactory.create_batch(2, stage="mql")
    ContactFactory(stage="mql", do_not_email=True)

    page = marketer_client.get(reverse("nurturing-sequence-activate", args=[sequence.pk]))

    body = page.content.decode()
    assert page.status_code == 200
    assert "2 contacts entreraient et recevraient des e-mails." in body
    assert "Ne pas contacter par e-mail" in body
    assert "Activer la séquence" in body
    sequence.refresh_from_db()
    assert not sequence.active and not Enrollment.objects.exists()


def test_activation_happens_on_the_confirmation_only(marketer_client, client, marketer):
    sequence = sequence_with(email_step(), active=False)
    url = reverse("nurturing-sequence-activate", args=[sequence.pk])

    response = marketer_client.post(url)

    assert response.status_code == 302
    sequence.refresh_from_db()
    assert sequence.active


def test_the_confirmation_needs_the_csrf_token(marketer):
    from django.test import Client

    sequence = sequence_with(email_step(), active=False)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(marketer)

    response = browser.post(reverse("nurturing-sequence-activate", args=[sequence.pk]))

    assert response.status_code == 403
    sequence.refresh_from_db()
    assert not sequence.active


def test_the_enrolment_preflight_then_its_confirmation_enrols(marketer_client):
    sequence = sequence_with(email_step(), name="Bienvenue")
    ContactFactory.create_batch(3, stage="mql")
    ContactFactory(stage="lead")

    page = marketer_client.get(
        reverse("nurturing-enroll-preflight"), {"sequence": sequence.pk, "query": "stage=mql"}
    )

    body = page.content.decode()
    assert page.status_code == 200 and "Inscrire 3 contacts" in body
    assert not Enrollment.objects.exists()
    assert 'name="query" value="stage=mql"' in body
    confirmed = marketer_client.post(
        reverse("nurturing-sequence-enroll", args=[sequence.pk]), {"query": "stage=mql"}
    )
    assert confirmed.status_code == 302
    assert Enrollment.objects.count() == 3


@pytest.mark.parametrize(
    ("_case", "params"),
    [
        ("no sequence", {"query": "stage=mql"}),
        ("a sequence that is not a number", {"sequence": "abc", "query": "stage=mql"}),
        ("no filter, not confirmed", {"sequence": "SEQ", "query": ""}),
        ("nobody selected", {"sequence": "SEQ", "query": "stage=ambassador"}),
    ],
)
def test_bad_enrolment_preflight_requests_are_refused_with_a_message(
    marketer_client, _case, params
):
    sequence = sequence_with(email_step())
    ContactFactory(stage="mql")
    params = {k: str(sequence.pk) if v == "SEQ" else v for k, v in params.items()}

    page = marketer_client.get(reverse("nurturing-enroll-preflight"), params)

    assert page.status_code == 400
    assert 'role="alert"' in page.content.decode()
    assert not Enrollment.objects.exists()


def test_the_admin_actions_lead_to_the_preflight_pages(client, admin_user):
    client.force_login(admin_user)
    sequence = sequence_with(
        email_step(), trigger="segment", segment_query="stage=mql", active=False, name="MQL"
    )
    changelist = reverse("admin:nurturing_sequence_changelist")

    activate = client.post(changelist, {"action": "activate", "_selected_action": [sequence.pk]})
    enrol = client.post(changelist, {"action": "enroll_segment", "_selected_action": [sequence.pk]})

    assert activate.status_code == 302
    assert activate["Location"] == reverse("nurturing-sequence-activate", args=[sequence.pk])
    assert enrol.status_code == 302
    assert enrol["Location"].startswith(reverse("nurturing-enroll-preflight"))
    assert "query=stage%3Dmql" in enrol["Location"]
    sequence.refresh_from_db()
    assert not sequence.active and not Enrollment.objects.exists()
