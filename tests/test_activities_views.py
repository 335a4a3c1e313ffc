"""The Activities card on the lead's pages: logging with htmx and without, refusals with the
rep's input kept, another rep's lead, and a page whose cost does not grow with the activities."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from contacts.models import Activity, Contact, EmailTemplate, Event
from contacts.sales.claims import contact_claim
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def claimed_by(rep, **fields) -> Contact:
    lead = ContactFactory(stage=Contact.Stage.SQL, **fields)
    contact_claim(contact_id=lead.pk, user=rep)
    return lead


def add_url(lead, kind):
    return reverse(f"contact-activity-{kind}", args=[lead.pk])


def test_the_lead_page_and_the_contact_page_show_the_activities_card(sales_client, sales_rep):
    lead = claimed_by(sales_rep, first_name="Élodie")
    Activity.objects.create(contact=lead, kind="note", user=sales_rep, body="Très intéressée")

    for name in ("queue-lead", "contact-detail"):
        page = sales_client.get(reverse(name, args=[lead.pk])).content.decode()
        assert 'id="activities"' in page
        assert "Très intéressée" in page
        assert 'name="call_outcome" value="wrong_number"' in page
        ids = re.findall(r' id="([^"]+)"', page)
        assert len(ids) == len(set(ids)), "each label must find its own field"


def test_logging_a_call_with_htmx_returns_the_card_with_the_call_in_it(sales_client, sales_rep):
    lead = claimed_by(sales_rep)

    response = sales_client.post(
        add_url(lead, "call"),
        {"call_outcome": "voicemail", "duration_minutes": "3", "body": "Message laissé"},
        **HTMX,
    )

    assert response.status_code == 200
    card = response.content.decode()
    assert card.lstrip().startswith('<section class="card activities" id="activities"')
    assert "<html" not in card
    assert "Appel enregistré" in card  # French: the tests' default language
    assert "Message laissé" in card and "Messagerie" in card
    activity = Activity.objects.get()
    assert activity.call_outcome == "voicemail" and activity.duration_minutes == 3
    assert Event.objects.filter(contact=lead, type="sales_call").exists()


def test_without_javascript_a_note_posts_and_returns_to_the_page_it_came_from(
    sales_client, sales_rep
):
    lead = claimed_by(sales_rep)
    back = reverse("queue-lead", args=[lead.pk])

    response = sales_client.post(add_url(lead, "note"), {"body": "Budget validé", "next": back})

    assert response.status_code == 302 and response["Location"] == back
    page = sales_client.get(back).content.decode()
    assert "Note ajoutée" in page and "Budget validé" in page


def test_an_offsite_next_is_not_followed(sales_client, sales_rep):
    lead = claimed_by(sales_rep)
    response = sales_client.post(
        add_url(lead, "note"), {"body": "x", "next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("contact-detail", args=[lead.pk])


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "plain"])
def test_bad_input_is_a_400_with_the_field_errors_and_the_reps_text_kept(
    sales_client, sales_rep, htmx
):
    lead = claimed_by(sales_rep)

    response = sales_client.post(
        add_url(lead, "call"),
        {"duration_minutes": "beaucoup", "body": "Il faut rappeler lundi"},
        **(HTMX if htmx else {}),
    )

    assert response.status_code == 400
    page = response.content.decode()
    assert "Ce champ est obligatoire" in page  # the outcome
    assert "Saisissez un nombre entier" in page  # the duration
    assert "Il faut rappeler lundi" in page
    assert ("<html" in page) is not htmx
    assert not Activity.objects.exists()


def test_a_call_in_the_future_is_refused_on_its_field(sales_client, sales_rep):
    lead = claimed_by(sales_rep)
    tomorrow = (timezone.localtime() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")

    response = sales_client.post(
        add_url(lead, "call"), {"call_outcome": "reached", "at": tomorrow}, **HTMX
    )

    assert response.status_code == 400
    assert "dans le futur" in response.content.decode()
    assert not Activity.objects.exists()


def test_another_reps_lead_is_a_404_and_a_marketer_on_a_claimed_lead_a_403(
    client, sales_rep, other_rep, marketer
):
    lead = claimed_by(sales_rep)
    client.force_login(other_rep)
    assert client.post(add_url(lead, "note"), {"body": "à moi"}).status_code == 404
    assert client.get(reverse("contact-activities", args=[lead.pk])).status_code == 404

    client.force_login(marketer)
    assert client.post(add_url(lead, "note"), {"body": "à moi"}).status_code == 403
    page = client.get(reverse("contact-detail", args=[lead.pk])).content.decode()
    assert 'data-testid="activity-form-note"' not in page  # seen, not offered
    assert not Activity.objects.exists()


def test_an_unknown_kind_is_a_404(sales_client, sales_rep):
    lead = claimed_by(sales_rep)
    url = reverse("contact-activity-note", args=[lead.pk]).replace("/note/", "/telegram/")
    assert sales_client.post(url, {"body": "x"}).status_code == 404


def test_picking_a_template_prefills_the_email_with_the_rep_free_to_edit(sales_client, sales_rep):
    lead = claimed_by(sales_rep)
    template = EmailTemplate.objects.create(
        owner=sales_rep,
        name="Relance",
        subject="Suite à notre appel",
        body="Bonjour {{ first_name }}",
    )

    response = sales_client.get(
        reverse("contact-activities", args=[lead.pk]), {"template": template.pk}, **HTMX
    )

    card = response.content.decode()
    assert 'value="Suite à notre appel"' in card
    assert "Bonjour {{ first_name }}</textarea>" in card
    assert '<details open data-testid="email-details">' in card


def test_another_reps_template_cannot_be_picked_or_edited(client, sales_rep, other_rep):
    lead = claimed_by(sales_rep)
    theirs = EmailTemplate.objects.create(owner=other_rep, name="Privé", subject="s", body="b")
    client.force_login(sales_rep)
    url = reverse("contact-activities", args=[lead.pk])
    assert client.get(url, {"template": theirs.pk}).status_code == 404
    assert client.get(reverse("email-template-edit", args=[theirs.pk])).status_code == 404


def test_a_rep_creates_and_edits_a_template_and_a_bad_placeholder_is_refused(
    sales_client, sales_rep
):
    response = sales_client.post(
        reverse("email-template-new"),
        {"name": "Premier contact", "subject": "Bonjour {{ firstname }}", "body": "Texte"},
    )
    assert response.status_code == 400
    assert "{{ firstname }}" in response.content.decode()
    assert not EmailTemplate.objects.exists()

    response = sales_client.post(
        reverse("email-template-new"),
        {"name": "Premier contact", "subject": "Bonjour {{ first_name }}", "body": "Texte"},
    )
    template = EmailTemplate.objects.get()
    assert response.status_code == 302 and template.owner == sales_rep
    sales_client.post(
        reverse("email-template-edit", args=[template.pk]),
        {"name": "Premier contact", "subject": "Rebonjour {{ first_name }}", "body": "Texte"},
    )
    template.refresh_from_db()
    assert template.subject == "Rebonjour {{ first_name }}"
    listing = sales_client.get(reverse("email-templates")).content.decode()
    assert "Premier contact" in listing


def test_the_lead_pages_cost_the_same_queries_with_3_or_60_activities(sales_client, sales_rep):
    lead = claimed_by(sales_rep)

    def queries(name):
        # A wrapper: a request empties the query log CaptureQueriesContext reads.
        captured = []

        def count(execute, sql, *args):
            captured.append(sql)
            return execute(sql, *args)

        with connection.execute_wrapper(count):
            assert sales_client.get(reverse(name, args=[lead.pk])).status_code == 200
        return len(captured)

    def add(n):
        for i in range(n):
            activity = Activity.objects.create(
                contact=lead, kind="note", user=sales_rep, body=f"n{i}"
            )
            activity.event = Event.objects.create(
                contact=lead, type="sales_note", source="sales",
                properties={"activity_id": activity.pk},
            )  # fmt: skip
            activity.save()

    add(3)
    few = {name: queries(name) for name in ("queue-lead", "contact-detail")}
    add(57)
    many = {name: queries(name) for name in ("queue-lead", "contact-detail")}

    assert many == few
    assert few["queue-lead"] > 5  # counted for real
    page = sales_client.get(reverse("queue-lead", args=[lead.pk])).content.decode()
    assert page.count('data-testid="activity"') == 20
    assert 'data-testid="older-activities"' in page
