"""Custom fields through the contacts API: written typed, read back, merged key by key, and a
400 naming the key for an unknown key or a value of the wrong type (never a 500)."""

import json

import pytest

from contacts.intake.capture import api_key_create
from contacts.models import Contact, CustomField

pytestmark = pytest.mark.django_db


@pytest.fixture
def key():
    return api_key_create(name="CRM")[1]


@pytest.fixture(autouse=True)
def fields():
    CustomField.objects.create(key="seats", label="Postes", kind="number")
    CustomField.objects.create(key="renewal", label="Renouvellement", kind="date")
    CustomField.objects.create(key="plan", label="Offre", kind="choice", choices="Starter\nPro")
    CustomField.objects.create(key="note", label="Note", kind="text")
    CustomField.objects.create(key="old", label="Ancien", kind="text", active=False)


def post(client, key, *contacts):
    return client.post(
        "/api/v1/contacts",
        data=json.dumps({"contacts": list(contacts)}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )


def get(client, key, path):
    return client.get(f"/api/v1/{path}", headers={"Authorization": f"Bearer {key}"})


def test_custom_fields_are_written_typed_and_read_back(client, key):
    values = {"seats": 40, "renewal": "2027-03-31", "plan": "pro", "note": "VIP"}
    response = post(client, key, {"email": "ana@exemple.fr", "custom_fields": values})
    assert response.status_code == 200, response.content
    expected = {"seats": 40, "renewal": "2027-03-31", "plan": "Pro", "note": "VIP"}
    assert response.json()["contacts"][0]["custom_fields"] == expected
    ana = Contact.objects.get(email="ana@exemple.fr")
    assert ana.custom_fields == expected
    assert get(client, key, f"contacts/{ana.pk}").json()["custom_fields"] == expected
    listed = get(client, key, "contacts").json()["contacts"]
    assert listed[0]["custom_fields"] == expected


def test_an_update_changes_the_keys_sent_null_clears_one_and_the_rest_stay(client, key):
    post(client, key, {"email": "ana@exemple.fr", "custom_fields": {"seats": 40, "note": "VIP"}})
    response = post(
        client, key,
        {"email": "ANA@exemple.fr", "custom_fields": {"seats": 41.5, "note": None}},
        {"email": "ana@exemple.fr", "first_name": "Ana"},
    )  # fmt: skip
    assert response.status_code == 200
    assert Contact.objects.get().custom_fields == {"seats": 41.5}


@pytest.mark.parametrize(
    ("_case", "values", "key_name", "message"),
    [
        ("unknown key", {"budget": 3}, "budget", "No custom field has this key."),
        ("inactive field", {"old": "x"}, "old", "No custom field has this key."),
        ("text for a number", {"seats": "40"}, "seats", "a number is expected"),
        ("boolean for a number", {"seats": True}, "seats", "a number is expected"),
        ("not a date", {"renewal": "31/03/2027"}, "renewal", "a date is expected"),
        ("number for a date", {"renewal": 20270331}, "renewal", "a text is expected"),
        ("not a choice", {"plan": "Gold"}, "plan", "one of: Starter, Pro"),
        ("list for a text", {"note": ["a"]}, "note", "a text is expected"),
        ("too long", {"note": "x" * 501}, "note", "at most 500 characters"),
        ("huge number", {"seats": 1e300}, "seats", "smaller than a million billion"),
    ],
)  # fmt: skip
def test_a_bad_custom_value_is_a_400_naming_the_key_and_nothing_is_stored(
    client, key, _case, values, key_name, message
):
    response = post(
        client, key,
        {"email": "ok@exemple.fr"},
        {"email": "ana@exemple.fr", "custom_fields": values},
    )  # fmt: skip
    assert response.status_code == 400
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "payload", "contacts", 1, "custom_fields", key_name]
    assert message in error["msg"]
    assert not Contact.objects.exists()


def test_custom_fields_that_are_not_an_object_are_a_400(client, key):
    response = post(client, key, {"email": "ana@exemple.fr", "custom_fields": ["seats", 3]})
    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"][-1] == "custom_fields"
