"""A sales rep whose lead is taken away (beat returns an untouched claim to the queue, an admin
releases it or gives it to another rep) is told so on their next visit to the sales pages."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from contacts.models import Contact
from contacts.sales.claims import contact_reassign
from contacts.tasks import release_stale_claims_task
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def claimed(rep, *, hours_ago=1, **fields) -> Contact:
    since = timezone.now() - timedelta(hours=hours_ago)
    return ContactFactory(**{"stage": Contact.Stage.SQL, **fields}, owner=rep, claimed_at=since)


def notice(response) -> str:
    body = response.content.decode()
    if 'data-testid="taken-leads"' not in body:
        return ""
    return body.split('data-testid="taken-leads"')[1].split("</section>")[0]


def test_a_rep_whose_untouched_claim_went_back_to_the_queue_is_told_once(
    sales_client, sales_rep, settings, other_rep
):
    settings.CLAIM_RELEASE_HOURS = 48
    claimed(sales_rep, hours_ago=50, first_name="Zoé", last_name="Faure")
    claimed(sales_rep, hours_ago=2, first_name="Kept", last_name="Lead")
    claimed(other_rep, hours_ago=50, first_name="Other", last_name="Rep")

    assert release_stale_claims_task.delay().get() == 2  # what beat runs every 15 minutes

    told = notice(sales_client.get(reverse("queue-mine")))
    assert "Zoé Faure" in told and "48" in told
    assert "Kept Lead" not in told and "Other Rep" not in told
    assert notice(sales_client.get(reverse("queue-mine"))) == ""  # told once
    assert notice(sales_client.get(reverse("queue"))) == ""


def test_a_rep_is_told_on_the_queue_when_an_admin_released_their_lead(
    sales_client, sales_rep, admin_user
):
    lead = claimed(sales_rep, first_name="Loïc", last_name="Brunet")
    admin = Client()
    admin.force_login(admin_user)
    admin.post(
        reverse("admin:contacts_contact_changelist"),
        {"action": "release", "_selected_action": [lead.pk]},
    )

    told = notice(sales_client.get(reverse("queue")))
    assert "Loïc Brunet" in told and admin_user.get_full_name() in told


def test_a_rep_is_told_who_was_given_their_lead(sales_client, sales_rep, admin_user, other_rep):
    lead = claimed(sales_rep, first_name="Anaïs", last_name="Roux")
    contact_reassign(contact=lead, to=other_rep, actor=admin_user)

    told = notice(sales_client.get(reverse("queue-mine")))
    assert "Anaïs Roux" in told and "Léa Dubois" in told
    other = sales_client
    other.force_login(other_rep)
    assert notice(other.get(reverse("queue-mine"))) == ""  # the new owner lost nothing


def test_a_lead_the_rep_closed_is_not_reported_as_taken(sales_client, sales_rep, settings):
    settings.CLAIM_RELEASE_HOURS = 48
    claimed(sales_rep, hours_ago=50, stage=Contact.Stage.CLIENT)

    release_stale_claims_task.delay().get()

    assert notice(sales_client.get(reverse("queue-mine"))) == ""
