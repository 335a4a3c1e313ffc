"""Custom fields defined in admin: a valid key that no contact field has, choices for a choice
field, a kind change that converts the stored values or is refused, a delete that takes the
values with it."""

import pytest
from django.urls import reverse

from contacts.models import Contact, CustomField
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

ENGLISH = {"headers": {"accept-language": "en"}}


def field_post(**data):
    return {"key": "", "label": "", "kind": "text", "choices": "", "active": "on",
            "position": "0", **data}  # fmt: skip


def test_an_admin_creates_a_choice_field_through_the_admin(admin_client):
    response = admin_client.post(
        reverse("admin:contacts_customfield_add"),
        field_post(key="plan", label="Offre", kind="choice", choices="Starter\nPro\n\nEnterprise"),
    )
    assert response.status_code == 302
    plan = CustomField.objects.get()
    assert (plan.key, plan.label, plan.kind) == ("plan", "Offre", "choice")
    assert plan.choice_list() == ["Starter", "Pro", "Enterprise"]
    listing = admin_client.get(reverse("admin:contacts_customfield_changelist")).content.decode()
    assert "Starter, Pro, Enterprise" in listing


@pytest.mark.parametrize(
    ("_case", "data", "field", "message"),
    [
        ("not an identifier", {"key": "Nombre de postes"}, "key",
         "Use lower-case letters, digits and _ only, starting with a letter"),
        ("starts with a digit", {"key": "2024_budget"}, "key",
         "Use lower-case letters, digits and _ only"),
        ("a contact field", {"key": "email"}, "key",
         "“email” is a contact field already: choose another key."),
        ("a contact column", {"key": "source_id"}, "key", "is a contact field already"),
        ("choice without choices", {"key": "plan", "kind": "choice"}, "choices",
         "A choice field needs its choices, one per line."),
        ("choice twice", {"key": "plan", "kind": "choice", "choices": "Pro\npro"}, "choices",
         "“Pro” is given twice."),
        ("choices on a number", {"key": "seats", "kind": "number", "choices": "1\n2"},
         "choices", "Only a choice field has choices: leave this empty."),
    ],
)  # fmt: skip
def test_the_admin_refuses_a_bad_definition_with_a_clear_message(
    admin_client, _case, data, field, message
):
    response = admin_client.post(
        reverse("admin:contacts_customfield_add"), field_post(label="Champ", **data), **ENGLISH
    )
    assert response.status_code == 200
    errors = " ".join(response.context["adminform"].form.errors[field])
    assert message in errors
    assert not CustomField.objects.exists()


def test_a_key_is_unique_and_cannot_change_once_created(admin_client):
    seats = CustomField.objects.create(key="seats", label="Postes", kind="number")
    again = admin_client.post(
        reverse("admin:contacts_customfield_add"), field_post(key="seats", label="Autre"), **ENGLISH
    )
    assert "already exists" in " ".join(again.context["adminform"].form.errors["key"])
    admin_client.post(
        reverse("admin:contacts_customfield_change", args=[seats.pk]),
        field_post(key="renamed", label="Postes", kind="number"),
    )
    seats.refresh_from_db()
    assert seats.key == "seats"


def test_a_text_field_becomes_a_number_field_with_its_values_converted(admin_client):
    seats = CustomField.objects.create(key="seats", label="Postes", kind="text")
    ana = ContactFactory(custom_fields={"seats": "1 200", "other": "x"})
    bob = ContactFactory(custom_fields={"seats": "12"})
    response = admin_client.post(
        reverse("admin:contacts_customfield_change", args=[seats.pk]),
        field_post(key="seats", label="Postes", kind="number"),
        follow=True,
        **ENGLISH,
    )
    assert "2 contacts had their value converted." in response.content.decode()
    assert Contact.objects.get(pk=ana.pk).custom_fields == {"seats": 1200, "other": "x"}
    assert Contact.objects.get(pk=bob.pk).custom_fields == {"seats": 12}
    seats.refresh_from_db()
    assert seats.kind == "number"


def test_a_kind_change_that_would_lose_values_is_refused_and_changes_nothing(admin_client):
    seats = CustomField.objects.create(key="seats", label="Postes", kind="text")
    ContactFactory(custom_fields={"seats": "beaucoup"})
    ContactFactory(custom_fields={"seats": "12"})
    response = admin_client.post(
        reverse("admin:contacts_customfield_change", args=[seats.pk]),
        field_post(key="seats", label="Postes", kind="number"),
        **ENGLISH,
    )
    assert response.status_code == 200
    assert "1 contacts have a value that is not a number (such as “beaucoup”)" in (
        response.content.decode()
    )
    seats.refresh_from_db()
    assert seats.kind == "text"
    french = admin_client.post(
        reverse("admin:contacts_customfield_change", args=[seats.pk]),
        field_post(key="seats", label="Postes", kind="number"),
    ).content.decode()
    assert "1 contacts ont une valeur qui n’est pas de type «\u00a0nombre\u00a0»" in french
    stored = [values["seats"] for values in Contact.objects.values_list("custom_fields", flat=True)]
    assert sorted(stored) == ["12", "beaucoup"]


def test_removing_a_choice_still_in_use_is_refused(admin_client):
    plan = CustomField.objects.create(key="plan", label="Offre", kind="choice", choices="A\nB")
    ContactFactory(custom_fields={"plan": "B"})
    response = admin_client.post(
        reverse("admin:contacts_customfield_change", args=[plan.pk]),
        field_post(key="plan", label="Offre", kind="choice", choices="A\nC"),
        **ENGLISH,
    )
    assert response.status_code == 200
    assert "not a choice (such as “B”)" in response.content.decode()


def test_deleting_a_field_deletes_its_values(admin_client):
    seats = CustomField.objects.create(key="seats", label="Postes", kind="number")
    ana = ContactFactory(custom_fields={"seats": 3, "plan": "Pro"})
    response = admin_client.post(
        reverse("admin:contacts_customfield_delete", args=[seats.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert not CustomField.objects.exists()
    assert Contact.objects.get(pk=ana.pk).custom_fields == {"plan": "Pro"}
