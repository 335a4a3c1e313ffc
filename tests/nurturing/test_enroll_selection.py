"""Enrolling the contacts a contact-list filter selects: no filter does not silently mean
"everyone" (an explicit choice is needed), and an empty selection enrols nobody, with a reason."""

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.urls import reverse

from nurturing import enrolment
from nurturing.models import Enrollment
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def sequence():
    return sequence_with(email_step(), name="Bienvenue")


@pytest.fixture
def contacts():
    return [ContactFactory(stage="mql"), ContactFactory(stage="lead"), ContactFactory()]


def enroll(client, sequence, **data):
    return client.post(
        reverse("nurturing-sequence-enroll", args=[sequence.pk]), data, HTTP_ACCEPT_LANGUAGE="en"
    )


def said(response):
    return " ".join(str(m) for m in get_messages(response.wsgi_request))


@pytest.mark.parametrize("query", ["", "?", "sort=name", "stage=bogus&page=2", "score_min=abc"])
def test_no_filter_enrols_nobody_without_an_explicit_choice(
    marketer_client, sequence, contacts, query
):
    response = enroll(marketer_client, sequence, query=query)

    assert response.status_code == 400
    assert "every contact" in response.content.decode()
    assert not Enrollment.objects.exists()


def test_all_contacts_when_chosen_explicitly(marketer_client, sequence, contacts):
    response = enroll(marketer_client, sequence, query="", all_contacts="on")

    assert response.status_code == 302
    assert Enrollment.objects.count() == len(contacts)
    assert "3 contact(s) enrolled" in said(response)


def test_a_filter_enrols_what_it_selects(marketer_client, sequence, contacts):
    response = enroll(marketer_client, sequence, query="?stage=mql")

    assert response.status_code == 302
    assert list(Enrollment.objects.values_list("contact", flat=True)) == [contacts[0].pk]


def test_a_filter_that_selects_nobody_is_refused_with_a_message(
    marketer_client, sequence, contacts
):
    response = enroll(marketer_client, sequence, query="stage=ambassador")

    assert response.status_code == 400
    assert "No contact matches these filters" in response.content.decode()
    assert not Enrollment.objects.exists()


def test_the_page_asks_for_the_explicit_choice_when_there_is_no_filter(
    marketer_client, sequence, contacts
):
    page = marketer_client.get(reverse("nurturing-enroll-list"), HTTP_ACCEPT_LANGUAGE="en")
    body = page.content.decode()
    assert 'name="all_contacts"' in body and "required" in body.split('name="all_contacts"')[1]

    filtered = marketer_client.get(
        reverse("nurturing-enroll-list") + "?stage=mql", HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()
    assert 'name="all_contacts"' not in filtered


def test_the_page_offers_no_enrolment_for_an_empty_selection(marketer_client, sequence):
    page = marketer_client.get(
        reverse("nurturing-enroll-list") + "?stage=client", HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()
    assert "See what it would send" not in page and "No contact matches these filters" in page


def test_a_segment_without_a_filter_enrols_nobody_and_is_refused_in_admin(contacts):
    sequence = sequence_with(email_step(), trigger="segment", segment_query="sort=name")

    assert enrolment.segment_enroll(sequence=sequence) == 0
    assert not Enrollment.objects.exists()
    with pytest.raises(ValidationError) as refused:
        sequence.full_clean()
    assert "segment_query" in refused.value.message_dict
