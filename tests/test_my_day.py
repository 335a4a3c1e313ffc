"""My day (/queue/today/): a rep's follow-ups by when they are due, in their time zone, the
leads they left without a next step, and the actions on each (htmx and plain POSTs)."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from contacts.models import Contact, ContactAudit, FollowUp, SalesRep
from contacts.sales.follow_ups import follow_up_create
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

# 15:00 in Paris on a Tuesday.
NOW = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)


def lead(rep, **fields) -> Contact:
    return ContactFactory(
        stage=Contact.Stage.SQL, owner=rep, claimed_at=timezone.now() - timedelta(hours=2), **fields
    )


def task(rep, title, due, contact=None) -> FollowUp:
    return follow_up_create(owner=rep, title=title, due_at=due, contact=contact)


def section(body: str, name: str) -> str:
    marker = f'data-testid="{name}"'
    return body.split(marker)[1].split("</section>")[0] if marker in body else ""


@time_machine.travel(NOW, tick=False)
def test_my_day_sorts_follow_ups_into_overdue_today_and_upcoming(sales_client, sales_rep):
    dupont = lead(sales_rep, first_name="Anne", last_name="Dupont")
    task(sales_rep, "Call Anne back", NOW - timedelta(hours=3), dupont)
    task(sales_rep, "Send the quote", NOW + timedelta(hours=2))
    task(sales_rep, "Demo with Orange", NOW + timedelta(days=2))
    task(sales_rep, "Far away", NOW + timedelta(days=30))

    body = sales_client.get(reverse("my-day")).content.decode()

    assert "Call Anne back" in section(body, "overdue") and "Anne Dupont" in section(
        body, "overdue"
    )
    assert "Send the quote" in section(body, "today")
    assert "Demo with Orange" in section(body, "upcoming")
    assert "Far away" not in body
    assert "17:00" in section(body, "today")  # 16:00 UTC shown in Paris time


@time_machine.travel(NOW, tick=False)
def test_leads_without_a_next_step_are_listed_and_flagged_after_the_hours(
    sales_client, sales_rep, settings
):
    settings.FOLLOW_UP_FLAG_HOURS = 24
    planned = lead(sales_rep, first_name="Has", last_name="Step")
    task(sales_rep, "Call", NOW + timedelta(hours=1), planned)
    lead(sales_rep, first_name="Fresh", last_name="Claim")
    old = lead(sales_rep, first_name="Old", last_name="Claim")
    Contact.objects.filter(pk=old.pk).update(claimed_at=NOW - timedelta(hours=30))

    listed = section(sales_client.get(reverse("my-day")).content.decode(), "no-next-step")

    assert "Fresh Claim" in listed and "Old Claim" in listed and "Has Step" not in listed
    assert listed.count('data-testid="flagged"') == 1
    assert listed.split("Old Claim")[1].split("</li>")[0].count("flagged") == 1


def test_the_htmx_request_gets_the_lists_alone(sales_client, sales_rep):
    task(sales_rep, "Call back", timezone.now() + timedelta(hours=1))
    response = sales_client.get(reverse("my-day"), headers={"HX-Request": "true"})
    body = response.content.decode()
    assert "Call back" in body and "<html" not in body and 'id="my-day-lists"' in body


def test_my_day_runs_the_same_number_of_queries_for_few_or_many_items(
    sales_client, sales_rep, django_assert_num_queries
):
    def add(n: int) -> None:
        for i in range(n):
            contact = lead(sales_rep)
            task(sales_rep, f"Task {i}", timezone.now() + timedelta(hours=i - 3), contact)
            lead(sales_rep)  # no next step

    add(2)
    sales_client.get(reverse("my-day"))
    with CaptureQueriesContext(connection) as few:
        sales_client.get(reverse("my-day"))
    add(20)
    with django_assert_num_queries(len(few.captured_queries)):
        response = sales_client.get(reverse("my-day"))
    assert response.content.decode().count('data-testid="follow-up"') == 22


def test_a_follow_up_set_from_my_day_is_due_in_the_reps_time_zone(sales_client, sales_rep):
    SalesRep.objects.create(user=sales_rep, time_zone="America/Montreal")
    response = sales_client.post(
        reverse("follow-up-add"), {"title": "Call Montreal", "due_at": "2099-05-04T09:30"}
    )
    assert response.status_code == 302 and response["Location"] == reverse("my-day")
    follow_up = FollowUp.objects.get()
    assert follow_up.owner == sales_rep and follow_up.contact is None
    assert follow_up.due_at == datetime(2099, 5, 4, 13, 30, tzinfo=UTC)  # 9:30 EDT
    assert follow_up.remind_at == follow_up.due_at


@pytest.mark.parametrize(
    ("_case", "due", "error"),
    [
        ("not a date", "tomorrow-ish", "Enter a valid date/time."),
        ("passed", "2001-01-01T10:00", "this one has passed"),
        ("missing", "", "This field is required."),
    ],
)
def test_a_bad_due_date_is_answered_400_with_the_field_error(sales_client, _case, due, error):
    sales_client.cookies["django_language"] = "en"
    response = sales_client.post(
        reverse("follow-up-add"),
        {"title": "Call", "due_at": due},
        headers={"Accept-Language": "en"},
    )
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not FollowUp.objects.exists()


def test_a_follow_up_set_on_a_lead_shows_on_its_page_and_is_audited(sales_client, sales_rep):
    contact = lead(sales_rep, first_name="Marc", last_name="Petit")
    page = sales_client.get(reverse("queue-lead", args=[contact.pk])).content.decode()
    assert 'data-testid="next-step"' in page

    response = sales_client.post(
        reverse("follow-up-add"),
        {"title": "Send the contract", "due_at": "2099-01-01T10:00", "contact": contact.pk,
         "next": reverse("queue-lead", args=[contact.pk])},
    )  # fmt: skip

    assert response["Location"] == reverse("queue-lead", args=[contact.pk])
    page = sales_client.get(reverse("queue-lead", args=[contact.pk])).content.decode()
    assert "Send the contract" in section(page, "next-step")
    audit = ContactAudit.objects.get(contact=contact)
    assert audit.action == ContactAudit.Action.FOLLOW_UP_SET and audit.actor == sales_rep


def test_a_follow_up_cannot_be_set_on_another_reps_lead(sales_client, other_rep):
    theirs = lead(other_rep)
    response = sales_client.post(
        reverse("follow-up-add"),
        {"title": "Steal", "due_at": "2099-01-01T10:00", "contact": theirs.pk},
    )
    assert response.status_code == 404 and not FollowUp.objects.exists()


def test_done_with_htmx_returns_the_lists_without_the_item(sales_client, sales_rep):
    follow_up = task(sales_rep, "Ring Zoé", timezone.now() + timedelta(hours=1))
    response = sales_client.post(
        reverse("follow-up-done", args=[follow_up.pk]), headers={"HX-Request": "true"}
    )
    assert response.status_code == 200 and "Ring Zoé" not in response.content.decode()
    follow_up.refresh_from_db()
    assert follow_up.done_at is not None and follow_up.remind_at is None


def test_done_without_javascript_redirects_back(sales_client, sales_rep):
    follow_up = task(sales_rep, "Ring Zoé", timezone.now() + timedelta(hours=1))
    response = sales_client.post(reverse("follow-up-done", args=[follow_up.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("my-day")
    assert "Ring Zoé" not in sales_client.get(reverse("my-day")).content.decode()


def test_reschedule_moves_the_follow_up_and_its_reminder(sales_client, sales_rep):
    follow_up = task(sales_rep, "Call back", timezone.now() + timedelta(hours=1))
    response = sales_client.post(
        reverse("follow-up-move", args=[follow_up.pk]), {"due_at": "2099-02-03T08:15"}
    )
    assert response.status_code == 302
    follow_up.refresh_from_db()
    assert follow_up.due_at == datetime(2099, 2, 3, 7, 15, tzinfo=UTC)  # Paris, winter
    assert follow_up.remind_at == follow_up.due_at


def test_reschedule_to_a_bad_date_is_400(sales_client, sales_rep):
    follow_up = task(sales_rep, "Call back", timezone.now() + timedelta(hours=1))
    response = sales_client.post(reverse("follow-up-move", args=[follow_up.pk]), {"due_at": "soon"})
    assert response.status_code == 400
    assert 'class="error"' in response.content.decode()


@pytest.mark.parametrize("action", ["follow-up-done", "follow-up-move"])
def test_another_reps_follow_up_is_404(sales_client, other_rep, action):
    theirs = task(other_rep, "Their call", timezone.now() + timedelta(hours=1))
    response = sales_client.post(reverse(action, args=[theirs.pk]), {"due_at": "2099-01-01T10:00"})
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.done_at is None and theirs.due_at < timezone.now() + timedelta(hours=2)


def test_my_day_is_for_sales_users(marketer_client):
    assert marketer_client.get(reverse("my-day")).status_code == 403


def test_the_nav_links_to_my_day_for_sales_users(sales_client):
    assert f'href="{reverse("my-day")}"' in sales_client.get(reverse("queue")).content.decode()


def test_a_rep_sets_their_time_zone_and_my_day_follows_it(sales_client, sales_rep):
    response = sales_client.post(
        reverse("my-settings"), {"time_zone": "America/Montreal", "email_digest": "off"}
    )
    assert response.status_code == 302
    rep = SalesRep.objects.get(user=sales_rep)
    assert (rep.time_zone, rep.email_digest) == ("America/Montreal", "off")
    assert "America/Montreal" in sales_client.get(reverse("my-day")).content.decode()
    page = sales_client.get(reverse("my-settings")).content.decode()
    assert 'value="America/Montreal" selected' in page


def test_an_unknown_time_zone_is_refused(sales_client, sales_rep):
    response = sales_client.post(
        reverse("my-settings"), {"time_zone": "Mars/Olympus", "email_digest": "daily"}
    )
    assert response.status_code == 400 and not SalesRep.objects.exists()


# 03:30 UTC on 10 March 2026: already the 10th in Paris (04:30), still the 9th in Montreal (23:30).
BOUNDARY = datetime(2026, 3, 10, 3, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "today", "upcoming"),
    [
        ("Europe/Paris", ["Late tonight", "Lunch call"], []),
        ("America/Montreal", ["Late tonight"], ["Lunch call"]),
    ],
)
def test_today_is_the_reps_day_not_the_servers(sales_client, sales_rep, zone, today, upcoming):
    SalesRep.objects.create(user=sales_rep, time_zone=zone)
    with time_machine.travel(BOUNDARY - timedelta(hours=1), tick=False):
        task(sales_rep, "Late tonight", BOUNDARY + timedelta(minutes=15))  # 23:45 Montreal
        task(sales_rep, "Lunch call", datetime(2026, 3, 10, 11, 0, tzinfo=UTC))
    with time_machine.travel(BOUNDARY, tick=False):
        body = sales_client.get(reverse("my-day")).content.decode()
    for title in today:
        assert title in section(body, "today")
    for title in upcoming:
        assert title in section(body, "upcoming") and title not in section(body, "today")


def test_reschedule_without_javascript_shows_its_form_then_goes_back(sales_client, sales_rep):
    follow_up = task(sales_rep, "Ring Zoé", timezone.now() + timedelta(hours=1))
    url = reverse("follow-up-move", args=[follow_up.pk])
    page = sales_client.get(url, {"next": reverse("my-day")}).content.decode()
    assert 'name="due_at"' in page and "Ring Zoé" in page
    response = sales_client.post(url, {"due_at": "2099-02-03T08:15", "next": reverse("my-day")})
    assert response["Location"] == reverse("my-day")


def test_a_new_digest_pace_on_my_settings_is_scheduled_anew(sales_client, sales_rep):
    tomorrow = timezone.now() + timedelta(hours=20)
    SalesRep.objects.create(user=sales_rep, time_zone="Europe/Paris", digest_due_at=tomorrow)

    sales_client.post(
        reverse("my-settings"), {"time_zone": "Europe/Paris", "email_digest": "hourly"}
    )

    rep = SalesRep.objects.get(user=sales_rep)
    assert rep.email_digest == "hourly"
    assert rep.digest_due_at is None  # the next sweep gives it the next full hour
