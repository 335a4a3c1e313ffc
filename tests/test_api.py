"""The JSON API: every status an integration can get, and what each call stores."""

import json

import pytest

from contacts.intake.capture import api_key_create, api_key_revoke
from contacts.models import Contact, Event
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def key():
    return api_key_create(name="Site web")[1]


def post(client, path, body, key=None, raw=False):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = body if raw else json.dumps(body)
    return client.post(
        f"/api/v1/{path}", data=data, content_type="application/json", headers=headers
    )


def event(**fields):
    return {
        "email": "zoe@exemple.fr",
        "type": "page_view",
        "properties": {"url": "/tarifs"},
        **fields,
    }


def test_events_for_a_new_email_create_the_lead_and_a_retry_stores_nothing_twice(client, key):
    batch = {"events": [event(idempotency_key="a1"), event(type="download", idempotency_key="a2")]}

    first = post(client, "events", batch, key)
    retry = post(client, "events", batch, key)

    assert first.status_code == 200 and first.json()["stored"] == 2
    assert retry.status_code == 200 and retry.json() == {
        "stored": 0,
        "duplicates": 2,
        "event_ids": [],
        "refused": 0,
        "errors": [],
        "contacts_created": 0,
    }
    contact = Contact.objects.get(email="zoe@exemple.fr")
    assert (
        contact.stage == "lead" and Event.objects.filter(contact=contact, source="api").count() == 2
    )


def test_events_by_contact_id_and_email_in_any_case(client, key):
    known = ContactFactory(email="Noel@Exemple.fr")
    batch = {"events": [
        {"contact_id": known.pk, "type": "download", "occurred_at": "2026-11-02T10:00:00"},
        event(email="NOEL@exemple.fr", type="email_open"),
    ]}  # fmt: skip
    response = post(client, "events", batch, key)
    assert response.status_code == 200, response.content
    assert Event.objects.filter(contact=known).exclude(type="stage_changed").count() == 2
    assert Contact.objects.count() == 1
    stored = Event.objects.get(contact=known, type="download")
    assert stored.occurred_at.isoformat() == "2026-11-02T10:00:00+00:00"  # no zone: UTC


def test_without_a_key_401_with_a_wrong_one_401_with_a_revoked_one_403(client, key):
    assert post(client, "events", {"events": [event()]}).status_code == 401
    assert post(client, "events", {"events": [event()]}, key="lf_nope").status_code == 401
    revoked, plain = api_key_create(name="Old CRM")
    api_key_revoke(key=revoked)
    response = post(client, "events", {"events": [event()]}, key=plain)
    assert response.status_code == 403 and "revoked" in response.json()["detail"]
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": [event(type="telepathy")]}, "type"),
        ({"events": [event(email="pas-un-email")]}, "email"),
        ({"events": [event(email="hélène@exemple.fr")]}, "email"),
        ({"events": [event(occurred_at="yesterday")]}, "occurred_at"),
        ({"events": [event(properties=["a", "list"])]}, "properties"),
        ({"events": [event(properties={"x": "y" * 20_000})]}, "properties"),
        ({"events": [event(idempotency_key="k" * 201)]}, "idempotency_key"),
        ({"events": [event(email=None)]}, "email"),
        ({"events": [event(), event(email=None, contact_id=999_999)]}, "contact_id"),
        ({"events": []}, "events"),
        ({"evenements": [event()]}, "events"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(client, key, body, field):
    response = post(client, "events", body, key)
    assert response.status_code == 400, response.content
    assert any(field in error["loc"] for error in response.json()["detail"])
    assert not Event.objects.exists() and not Contact.objects.exists()


@pytest.mark.parametrize("raw", ["{not json", "", "[1, 2", "null", '"events"'])
def test_malformed_json_is_a_400(client, key, raw):
    response = post(client, "events", raw, key, raw=True)
    assert response.status_code == 400


def test_a_batch_over_1000_is_a_413(client, key):
    response = post(client, "events", {"events": [event()] * 1001}, key)
    assert response.status_code == 413
    assert not Event.objects.exists()


def test_over_the_rate_limit_is_a_429_with_retry_after(client, settings):
    limited, plain = api_key_create(name="Chatty")
    limited.rate_per_minute = 3
    limited.save()
    statuses = [post(client, "events", {"events": [event()]}, plain).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    last = post(client, "events", {"events": [event()]}, plain)
    assert 0 < int(last["Retry-After"]) <= 60


def test_contacts_are_upserted_on_their_email_whatever_its_case(client, key):
    ContactFactory(email="ana@exemple.fr", first_name="Ana", company="")
    body = {"contacts": [
        {"email": "ANA@exemple.fr", "company": "Société Générale d'Études"},
        {"email": " hugo.noel@exemple.fr ", "first_name": "Hugo"},
    ]}  # fmt: skip
    response = post(client, "contacts", body, key)
    assert response.status_code == 200, response.content
    assert (response.json()["created"], response.json()["updated"]) == (1, 1)
    ana = Contact.objects.get(email="ana@exemple.fr")
    assert (ana.first_name, ana.company) == ("Ana", "Société Générale d'Études")
    assert Contact.objects.get(email="hugo.noel@exemple.fr").stage == "lead"


def test_a_contact_upsert_sets_its_external_id_and_refuses_one_another_contact_has(client, key):
    ContactFactory(email="ana@exemple.fr", external_id="CRM-1")
    ok = post(
        client,
        "contacts",
        {"contacts": [{"email": "bob@exemple.fr", "external_id": " CRM-2 "}]},
        key,
    )
    assert ok.status_code == 200, ok.content
    assert ok.json()["contacts"][0]["external_id"] == "CRM-2"

    body = {"contacts": [
        {"email": "carl@exemple.fr", "first_name": "Carl"},
        {"email": "bob@exemple.fr", "external_id": "CRM-1"},  # Ana's
    ]}  # fmt: skip
    refused = post(client, "contacts", body, key)

    assert refused.status_code == 400
    assert refused.json()["detail"][0]["loc"][-2:] == [1, "external_id"]
    assert refused.json()["detail"][0]["msg"] == "Another contact has this external id."
    assert Contact.objects.get(email="bob@exemple.fr").external_id == "CRM-2"
    assert not Contact.objects.filter(email="carl@exemple.fr").exists()  # refused whole


def test_an_empty_email_from_a_crm_export_is_no_email_and_the_external_id_finds_the_contact(
    client, key
):
    ContactFactory(email="ana@exemple.fr", external_id="CRM-1", company="")
    body = {"contacts": [
        {"email": "", "external_id": "CRM-1", "company": "Boulangerie Ç"},  # Ana, email kept
        {"email": "", "external_id": "CRM-2", "first_name": "Bruno"},  # no email yet
    ]}  # fmt: skip

    response = post(client, "contacts", body, key)

    assert response.status_code == 200, response.content
    assert (response.json()["created"], response.json()["updated"]) == (1, 1)
    ana = Contact.objects.get(external_id="CRM-1")
    assert (ana.email, ana.company) == ("ana@exemple.fr", "Boulangerie Ç")
    bruno = Contact.objects.get(external_id="CRM-2")
    assert (bruno.email, bruno.first_name, bruno.stage) == (None, "Bruno", "suspect")

    # Later the CRM has Bruno's email: the same contact gets it and becomes a lead.
    later = {"contacts": [{"email": "bruno@exemple.fr", "external_id": "CRM-2"}]}
    assert post(client, "contacts", later, key).json()["updated"] == 1
    bruno.refresh_from_db()
    assert (bruno.email, bruno.stage) == ("bruno@exemple.fr", "lead")


def test_an_empty_email_without_an_external_id_is_a_field_error(client, key):
    body = {"contacts": [{"email": "zoe@exemple.fr"}, {"email": "", "first_name": "Zoé"}]}

    response = post(client, "contacts", body, key)

    assert response.status_code == 400
    assert response.json()["detail"] == [
        {
            "loc": ["body", "payload", "contacts", 1, "email"],
            "msg": "Give the contact's email or external_id.",
            "type": "value_error",
        }
    ]
    assert not Contact.objects.exists()


def test_reading_a_contact_gives_its_stage_and_score(client, key):
    contact = ContactFactory(stage="mql", score=42, first_name="Élodie")
    response = client.get(
        f"/api/v1/contacts/{contact.pk}", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200
    assert response.json()["stage"] == "mql" and response.json()["score"] == 42
    assert response.json()["first_name"] == "Élodie"
    missing = client.get("/api/v1/contacts/999999", headers={"Authorization": f"Bearer {key}"})
    assert missing.status_code == 404


def test_the_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/v1/openapi.json")
    assert schema.status_code == 200
    assert {"/api/v1/events", "/api/v1/contacts"} <= set(schema.json()["paths"])
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200 and b"cdn" not in docs.content.lower()


def test_keys_are_made_by_command_or_in_admin_and_shown_once(client, admin_user):
    import io

    from django.core.management import call_command

    from contacts.models import ApiKey

    out = io.StringIO()
    call_command("create_api_key", "CRM sync", stdout=out)
    plain = out.getvalue().split(": ", 1)[1].split()[0]
    assert (
        post(client, "contacts", {"contacts": [{"email": "x@exemple.fr"}]}, plain).status_code
        == 200
    )
    assert plain not in "".join(ApiKey.objects.values_list("hashed", flat=True))

    client.force_login(admin_user)
    response = client.post("/admin/contacts/apikey/add/", {"name": "Site"}, follow=True)
    shown = [str(m) for m in response.context["messages"]]
    new_key = next(m for m in shown if "lf_" in m).split("lf_", 1)[1].split()[0].rstrip(".")
    assert (
        post(
            client, "contacts", {"contacts": [{"email": "y@exemple.fr"}]}, "lf_" + new_key
        ).status_code
        == 200
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"occurred_at": "0001-01-01T00:00:00+05:00"}, "occurred_at"),
        ({"occurred_at": "9999-12-31T23:59:59-05:00"}, "occurred_at"),
        ({"contact_id": 9223372036854775808, "email": None}, "contact_id"),
        ({"source": "web\u0000"}, "source"),
        ({"idempotency_key": "k\u0000"}, "idempotency_key"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"properties": {"a\u0000": 1}}, "properties"),
        ({"properties": {"a": ["ok", "\ud800"]}}, "properties"),
    ],
)
def test_what_the_fuzzer_found_is_a_400_not_a_500(client, key, fields, field):
    response = post(client, "events", {"events": [event(**fields)]}, key)
    assert response.status_code == 400, response.content
    assert any(field in error["loc"] for error in response.json()["detail"])


def test_a_nul_character_in_a_contact_field_is_a_400(client, key):
    response = post(
        client, "contacts", {"contacts": [{"email": "n@exemple.fr", "first_name": "a\u0000"}]}, key
    )
    assert response.status_code == 400
    assert not Contact.objects.exists()
