"""Custom fields where a marketer meets them: the contact page and its edit form, the contact
list's filters (a choice, a number range, a date range, a text), the CSV export, and a
segment of a sequence, which is the list's filters as a query string."""

import csv
import io

import pytest
from django.urls import reverse

from contacts.models import Contact, CustomField
from nurturing import enrolment
from nurturing.models import Enrollment
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with

pytestmark = pytest.mark.django_db

ENGLISH = {"headers": {"accept-language": "en"}}


@pytest.fixture
def people():
    CustomField.objects.create(key="seats", label="Postes", kind="number", position=1)
    CustomField.objects.create(key="renewal", label="Renouvellement", kind="date", position=2)
    CustomField.objects.create(key="plan", label="Offre", kind="choice", choices="Starter\nPro",
                               position=3)  # fmt: skip
    CustomField.objects.create(key="note", label="Note", kind="text", position=4)
    CustomField.objects.create(key="old", label="Ancien champ", kind="text", active=False)
    return {
        "ana": ContactFactory(first_name="Ana", last_name="Alves", stage="mql", custom_fields={
            "seats": 1200, "renewal": "2027-03-31", "plan": "Pro", "note": "Rappeler en mars",
            "old": "caché"}),
        "bob": ContactFactory(first_name="Bob", last_name="Brun", stage="mql", custom_fields={
            "seats": 12, "renewal": "2026-12-01", "plan": "Starter"}),
        "cyd": ContactFactory(first_name="Cyd", last_name="Costa", stage="lead", custom_fields={
            "seats": 45.5, "plan": "Pro", "note": "salon de mars"}),
        "dan": ContactFactory(first_name="Dan", last_name="Dias", stage="mql"),
    }  # fmt: skip


def listed(client, **filters) -> list[str]:
    response = client.get(reverse("contact-list"), {"sort": "name", **filters}, **ENGLISH)
    assert response.status_code == 200
    rows = response.content.decode().split("<tbody>")[1].split("</tbody>")[0]
    return [name for name in ("Ana", "Bob", "Cyd", "Dan") if f"{name} " in rows]


def test_the_contact_page_shows_the_active_custom_fields(marketer_client, people):
    page = marketer_client.get(reverse("contact-detail", args=[people["ana"].pk]), **ENGLISH)
    body = page.content.decode()
    assert '<dt>Postes</dt><dd data-testid="custom-seats">1,200</dd>' in body
    assert '<dd data-testid="custom-renewal">March 31, 2027</dd>' in body
    assert '<dd data-testid="custom-plan">Pro</dd>' in body
    assert "Ancien champ" not in body and "caché" not in body
    dan = marketer_client.get(reverse("contact-detail", args=[people["dan"].pk])).content
    assert '<dd data-testid="custom-seats">—</dd>' in dan.decode()


def test_the_edit_form_changes_and_clears_custom_values(marketer_client, people):
    ana = people["ana"]
    url = reverse("contact-edit", args=[ana.pk])
    form = marketer_client.get(url, **ENGLISH).content.decode()
    assert 'name="cf_seats" value="1200"' in form
    assert 'type="date" name="cf_renewal" value="2027-03-31"' in form
    data = {"email": ana.email, "first_name": "Ana", "last_name": "Alves", "time_zone": "",
            "cf_seats": "1 500", "cf_renewal": "2027-04-30", "cf_plan": "Starter", "cf_note": ""}  # fmt: skip
    response = marketer_client.post(url, data)
    assert response.status_code == 302
    assert Contact.objects.get(pk=ana.pk).custom_fields == {
        "seats": 1500, "renewal": "2027-04-30", "plan": "Starter", "old": "caché",
    }  # fmt: skip
    refused = marketer_client.post(url, {**data, "cf_seats": "beaucoup"}, **ENGLISH)
    assert refused.status_code == 200
    assert "Not a valid value: a number is expected" in refused.content.decode()
    assert Contact.objects.get(pk=ana.pk).custom_fields["seats"] == 1500


def test_a_new_contact_takes_custom_values_and_an_erased_one_loses_them(marketer_client, people):
    response = marketer_client.post(
        reverse("contact-create"),
        {"email": "zoe@exemple.fr", "time_zone": "", "cf_seats": "3", "cf_plan": "Pro"},
    )
    assert response.status_code == 302, response.content.decode()
    zoe = Contact.objects.get(email="zoe@exemple.fr")
    assert zoe.custom_fields == {"seats": 3, "plan": "Pro"}
    erase = marketer_client.post(reverse("contact-erase", args=[zoe.pk]), {"confirm": "on"})
    assert erase.status_code == 302
    assert Contact.objects.get(pk=zoe.pk).custom_fields == {}


@pytest.mark.parametrize(
    ("_case", "filters", "names"),
    [
        ("choice", {"cf_plan": "Pro"}, ["Ana", "Cyd"]),
        ("number from", {"cf_seats_min": "45"}, ["Ana", "Cyd"]),
        ("number range", {"cf_seats_min": "10", "cf_seats_max": "45.5"}, ["Bob", "Cyd"]),
        ("date range", {"cf_renewal_from": "2026-12-01", "cf_renewal_to": "2027-01-31"}, ["Bob"]),
        ("date from", {"cf_renewal_from": "2027-01-01"}, ["Ana"]),
        ("text contains", {"cf_note": "MARS"}, ["Ana", "Cyd"]),
        ("with another filter", {"cf_plan": "Pro", "stage": "mql"}, ["Ana"]),
        ("a choice that is none", {"cf_plan": "Gold"}, ["Ana", "Bob", "Cyd", "Dan"]),
    ],
)  # fmt: skip
def test_the_contact_list_filters_on_custom_fields(marketer_client, people, _case, filters, names):
    assert listed(marketer_client, **filters) == names


def test_the_list_shows_a_filter_per_active_custom_field(marketer_client, people):
    body = marketer_client.get(reverse("contact-list"), **ENGLISH).content.decode()
    assert 'name="cf_seats_min"' in body and 'name="cf_seats_max"' in body
    assert 'type="date" name="cf_renewal_from"' in body
    assert '<option value="Pro">Pro</option>' in body
    assert 'name="cf_note"' in body and 'name="cf_old"' not in body


def test_the_export_has_a_column_per_custom_field(marketer_client, people):
    response = marketer_client.get(reverse("contact-export"), {"cf_plan": "Pro", "sort": "name"})
    body = b"".join(response.streaming_content).decode("utf-8")
    header, *rows = list(csv.reader(io.StringIO(body[1:]), delimiter=";"))
    assert header[-4:] == ["Postes", "Renouvellement", "Offre", "Note"]
    assert [row[-4:] for row in rows] == [
        ["1200", "2027-03-31", "Pro", "Rappeler en mars"],
        ["45.5", "", "Pro", "salon de mars"],
    ]


def test_a_segment_on_custom_fields_enrols_the_contacts_it_selects(people):
    sequence = sequence_with(
        email_step(), trigger="segment", segment_query="stage=mql&cf_plan=Pro&cf_seats_min=100"
    )
    assert not enrolment.segment_selects_everyone(sequence.segment_query)
    assert enrolment.segment_enroll(sequence=sequence) == 1
    assert Enrollment.objects.get().contact == people["ana"]
    # A query with only an unknown choice sets no filter: it would mean everyone.
    assert enrolment.segment_selects_everyone("cf_plan=Gold")
