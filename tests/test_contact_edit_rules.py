"""What the contact form refuses: editing an erased person (their data would come back), and
a contact with nothing to know them by."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from contacts.models import Contact
from contacts.privacy import contact_erase
from contacts.services import ContactErased, contact_update
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


ERASED = "personal data was erased"


@pytest.fixture
def erased(marketer):
    person = ContactFactory(email="jeanne@example.fr", first_name="Jeanne", last_name="Roux")
    contact_erase(contact=person, actor=marketer)
    person.refresh_from_db()
    return person


def said(response):
    return " ".join(str(m) for m in get_messages(response.wsgi_request))


def test_an_erased_contact_offers_no_edit(marketer_client, erased):
    page = marketer_client.get(reverse("contact-detail", args=[erased.pk])).content.decode()
    assert reverse("contact-edit", args=[erased.pk]) not in page


def test_the_edit_page_of_an_erased_contact_refuses_with_a_message(marketer_client, erased):
    response = marketer_client.get(
        reverse("contact-edit", args=[erased.pk]), HTTP_ACCEPT_LANGUAGE="en"
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("contact-detail", args=[erased.pk])
    assert ERASED in said(response)


def test_posting_an_edit_of_an_erased_contact_types_nothing_back(marketer_client, erased):
    response = marketer_client.post(
        reverse("contact-edit", args=[erased.pk]),
        {"email": "jeanne@example.com", "first_name": "Jeanne", "last_name": "Roux"},
        HTTP_ACCEPT_LANGUAGE="en",
    )

    assert response.status_code == 302 and ERASED in said(response)
    erased.refresh_from_db()
    assert (erased.email, erased.first_name, erased.last_name) == (None, "", "")


def test_the_service_refuses_personal_data_for_an_erased_contact(erased):
    with pytest.raises(ContactErased):
        contact_update(contact=erased, first_name="Jeanne")
    contact_update(contact=erased, do_not_email=True)  # not personal data: fine


def test_the_admin_cannot_type_personal_data_back(client, admin_user, erased):
    client.force_login(admin_user)
    page = client.get(reverse("admin:contacts_contact_change", args=[erased.pk]))
    assert page.status_code == 200
    assert 'name="first_name"' not in page.content.decode()


@pytest.mark.parametrize(
    "data",
    [{}, {"job_title": "DAF"}, {"email": "   ", "first_name": " ", "time_zone": "Europe/Paris"}],
)
def test_an_empty_contact_is_refused_with_a_clear_error(marketer_client, data):
    response = marketer_client.post(reverse("contact-create"), data, HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 200
    assert "Give at least an email, a name, a company or a phone" in response.content.decode()
    assert not Contact.objects.exists()


@pytest.mark.parametrize(
    "data",
    [{"email": "a@example.fr"}, {"last_name": "Roux"}, {"company": "ACME"}, {"phone": "0102"}],
)
def test_any_one_of_email_name_company_or_phone_is_enough(marketer_client, data):
    response = marketer_client.post(reverse("contact-create"), data)
    assert response.status_code == 302
    assert Contact.objects.count() == 1


def test_emptying_a_known_contact_is_refused_too(marketer_client):
    contact = ContactFactory(email="a@example.fr", first_name="A", last_name="B", company="C")

    response = marketer_client.post(
        reverse("contact-edit", args=[contact.pk]), {}, HTTP_ACCEPT_LANGUAGE="en"
    )

    assert response.status_code == 200 and "Give at least" in response.content.decode()
    contact.refresh_from_db()
    assert contact.email == "a@example.fr"
