"""Events and contacts by the team's own ids (issue 14, point 2): the API names a contact by its
external id in event batches (an unknown one refused per event, or made when asked), reads and
updates a contact by it; the list search finds it, the contact page and the export show it."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.urls import reverse

from contacts.intake.capture import api_key_create
from contacts.models import Contact, Event, Suppression
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def key():
    return api_key_create(name="CRM")[1]


def call(client, method, path, body, key):
    return getattr(client, method)(
        f"/api/v1/{path}",
        data=json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )


def events_of(contact: Contact) -> list[str]:
    return sorted(
        Event.objects.filter(contact=contact)
        .exclude(type="stage_changed")
        .values_list("type", flat=True)
    )


def test_a_batch_stores_the_events_of_known_external_ids_and_refuses_each_unknown_one(client, key):
    ana = ContactFactory(email=None, external_id="7c1f-0001", stage="suspect")
    bruno = ContactFactory(email="bruno@exemple.fr", external_id="660737")
    batch = {"events": [
        {"external_id": "7c1f-0001", "type": "page_view", "properties": {"url": "/tarifs"}},
        {"external_id": "inconnu-42", "type": "download", "idempotency_key": "crm-2"},
        {"external_id": " 660737 ", "type": "email_click"},  # padded as a CSV cell may be
        {"email": "zoe@exemple.fr", "type": "newsletter_subscribe"},
        {"contact_id": bruno.pk, "external_id": "inconnu-43", "type": "review"},  # id first
    ]}  # fmt: skip

    response = call(client, "post", "events", batch, key)

    assert response.status_code == 200, response.content
    answer = response.json()
    assert (answer["stored"], answer["refused"], answer["contacts_created"]) == (4, 1, 0)
    assert answer["errors"] == [
        {
            "index": 1,
            "loc": ["body", "payload", "events", 1, "external_id"],
            "msg": "No contact has this external id: send the contact first, or set "
            "create_contact.",
            "type": "unknown_external_id",
        }
    ]
    assert events_of(ana) == ["page_view"]
    assert events_of(bruno) == ["email_click", "review"]
    assert events_of(Contact.objects.get(email="zoe@exemple.fr")) == ["newsletter_subscribe"]
    assert not Contact.objects.filter(external_id="inconnu-42").exists()
    assert not Event.objects.filter(idempotency_key="crm-2").exists()  # a retry can store it


def test_create_contact_makes_the_contact_for_an_unknown_external_id_once(client, key):
    known_email = ContactFactory(email="carla@exemple.fr", external_id=None)
    taken = ContactFactory(email="dora@exemple.fr", external_id="CRM-1")
    batch = {"events": [
        {"external_id": "CRM-9", "type": "page_view", "create_contact": True},
        {"external_id": "CRM-9", "type": "download", "create_contact": True},
        {"external_id": "CRM-10", "email": "Eve@Exemple.fr", "type": "page_view",
         "create_contact": True},
        {"external_id": "CRM-11", "email": "carla@exemple.fr", "type": "page_view",
         "create_contact": True},
        {"external_id": "CRM-12", "email": "dora@exemple.fr", "type": "page_view",
         "create_contact": True},
        {"external_id": "CRM-13", "type": "page_view"},
    ]}  # fmt: skip

    response = call(client, "post", "events", batch, key)

    answer = response.json()
    assert response.status_code == 200, answer
    assert (answer["stored"], answer["refused"], answer["contacts_created"]) == (4, 2, 2)
    assert [(e["index"], e["loc"][-1], e["type"]) for e in answer["errors"]] == [
        (4, "email", "external_id_conflict"),  # Dora is CRM-1 already: not two records
        (5, "external_id", "unknown_external_id"),  # not asked to create
    ]
    anonymous = Contact.objects.get(external_id="CRM-9")
    assert (anonymous.email, anonymous.stage) == (None, "suspect")
    assert events_of(anonymous) == ["download", "page_view"]
    eve = Contact.objects.get(external_id="CRM-10")
    assert (eve.email, eve.stage) == ("Eve@Exemple.fr", "lead")
    known_email.refresh_from_db()
    assert known_email.external_id == "CRM-11" and events_of(known_email) == ["page_view"]
    taken.refresh_from_db()
    assert taken.external_id == "CRM-1" and events_of(taken) == []


def test_a_malformed_event_still_refuses_the_whole_batch(client, key):
    ContactFactory(external_id="CRM-1")
    batch = {"events": [
        {"external_id": "CRM-1", "type": "page_view"},
        {"external_id": " ", "type": "page_view"},  # nobody named
    ]}  # fmt: skip

    response = call(client, "post", "events", batch, key)

    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"] == ["body", "payload", "events", 1, "email"]
    assert not Event.objects.exclude(type="stage_changed").exists()


def test_a_suppressed_email_does_not_refuse_an_event_known_by_its_external_id(client, key):
    ContactFactory(email="gone@exemple.fr", external_id="CRM-5")
    Suppression.objects.create(email_hash=Suppression.hash("gone@exemple.fr"))
    batch = {"events": [{"external_id": "CRM-5", "email": "gone@exemple.fr", "type": "review"}]}

    response = call(client, "post", "events", batch, key)

    assert response.status_code == 200 and response.json()["stored"] == 1


def test_a_contact_is_read_and_updated_by_its_external_id(client, key):
    ContactFactory(email="autre@exemple.fr", external_id="CRM-2")
    hugo = ContactFactory(email=None, external_id="00Q5g/00001", stage="suspect", company="")
    path = "contacts/external/00Q5g/00001"  # a slash in a CRM id

    read = client.get(f"/api/v1/{path}", headers={"Authorization": f"Bearer {key}"})
    assert read.status_code == 200 and read.json()["id"] == hugo.pk

    changed = call(client, "patch", path, {"email": "hugo@exemple.fr", "company": "Ébène"}, key)
    assert changed.status_code == 200, changed.content
    assert (changed.json()["email"], changed.json()["company"]) == ("hugo@exemple.fr", "Ébène")
    hugo.refresh_from_db()
    assert (hugo.email, hugo.company, hugo.stage) == ("hugo@exemple.fr", "Ébène", "lead")

    clash = call(client, "patch", path, {"external_id": "CRM-2"}, key)
    assert clash.status_code == 400
    assert clash.json()["detail"][0]["loc"] == ["body", "payload", "external_id"]
    renamed = call(client, "patch", path, {"external_id": "CRM-3", "email": ""}, key)
    assert renamed.status_code == 200 and renamed.json()["email"] == "hugo@exemple.fr"
    missing = client.get(f"/api/v1/{path}", headers={"Authorization": f"Bearer {key}"})
    assert missing.status_code == 404
    assert missing.json()["detail"] == "No contact has this external id."
    assert call(client, "patch", "contacts/external/nope", {"company": "x"}, key).status_code == 404


def test_the_openapi_schema_documents_external_ids(client):
    schema = client.get("/api/v1/openapi.json").json()
    event = schema["components"]["schemas"]["EventIn"]
    assert {"external_id", "create_contact"} <= set(event["properties"])
    assert {"errors", "refused", "contacts_created"} <= set(
        schema["components"]["schemas"]["EventsOut"]["properties"]
    )
    assert "/api/v1/contacts/external/{external_id}" in schema["paths"]


def test_the_list_search_finds_a_contact_by_its_external_id(marketer_client):
    ContactFactory(first_name="Inès", external_id="7c1f2a9e-PROSPECT")
    ContactFactory(first_name="Autre", external_id="660737")

    page = marketer_client.get(reverse("contact-list"), {"q": "7c1f2a9e-prospect"})
    part = marketer_client.get(reverse("contact-list"), {"q": "660"})

    assert "Inès" in page.content.decode() and "Autre" not in page.content.decode()
    assert "Autre" in part.content.decode() and "Inès" not in part.content.decode()


@pytest.mark.postgres
def test_the_search_follows_a_changed_external_id(marketer_client):
    contact = ContactFactory(first_name="Inès", external_id="OLD-1")
    Contact.objects.filter(pk=contact.pk).update(external_id="NEW-1")

    assert list(Contact.objects.search("new-1")) == [contact]
    assert list(Contact.objects.search("old-1")) == []


def test_the_contact_page_and_the_export_show_the_external_id(marketer_client):
    contact = ContactFactory(email="ines@exemple.fr", external_id="660737", stage="mql")

    page = marketer_client.get(reverse("contact-detail", args=[contact.pk])).content.decode()
    export = marketer_client.get(reverse("contact-export"), {"stage": "mql"})

    assert 'data-testid="external-id">660737<' in page
    body = b"".join(export.streaming_content).decode("utf-8")[1:]
    header, row = list(csv.reader(io.StringIO(body), delimiter=";"))
    assert header[:2] == ["E-mail", "Identifiant externe"]
    assert row[:2] == ["ines@exemple.fr", "660737"]
    assert "Première source" in header


def test_a_change_by_external_id_checks_custom_fields_and_never_lifts_an_opt_out(client, key):
    from contacts.custom_field_values import custom_field_create

    custom_field_create(key="seats", label="Sièges", kind="number")
    ContactFactory(email="ines@exemple.fr", external_id="CRM-9", do_not_email=True)
    path = "contacts/external/CRM-9"

    wrong = call(client, "patch", path, {"custom_fields": {"seats": "beaucoup"}}, key)
    assert wrong.status_code == 400
    assert wrong.json()["detail"][0]["loc"] == ["body", "payload", "custom_fields", "seats"]
    unknown = call(client, "patch", path, {"custom_fields": {"nope": 1}}, key)
    assert unknown.status_code == 400

    kept = call(client, "patch", path, {"custom_fields": {"seats": 40}, "do_not_email": False}, key)
    assert kept.status_code == 200, kept.content
    ines = Contact.objects.get(external_id="CRM-9")
    assert ines.custom_fields == {"seats": 40} and ines.do_not_email is True


def test_a_lead_known_by_its_crm_id_only_is_named_by_it(marketer_client):
    lead = ContactFactory(email=None, first_name="", last_name="", external_id="00Q7", stage="lead")

    page = marketer_client.get(reverse("contact-detail", args=[lead.pk])).content.decode()
    listing = marketer_client.get(reverse("contact-list"), {"q": "00Q7"}).content.decode()

    assert "Contact 00Q7" in page and "Contact 00Q7" in listing
    assert "Visiteur anonyme" not in page
