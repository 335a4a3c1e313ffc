"""API keys are integration credentials, not people: made by an admin, each either full (sends
and reads contacts: a CRM sync) or send-only (a website, a form tool), which may not read a
contact back. No user role applies to them (``contacts.access``)."""

import io
import json

import pytest
from django.core.management import call_command

from contacts.intake.capture import api_key_create
from contacts.models import ApiKey, Contact, Event
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def call(client, method, path, key, body=None):
    return getattr(client, method)(
        f"/api/v1/{path}",
        data=json.dumps(body) if body is not None else None,
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )


@pytest.fixture
def known():
    return ContactFactory(
        email="zoe@exemple.fr", last_name="Secrete", company="Acme", external_id="crm-7"
    )


READS = [
    ("get", "contacts/{pk}", None),
    ("get", "contacts", None),
    ("get", "contacts/external/crm-7", None),
    ("patch", "contacts/external/crm-7", {"company": "Autre"}),
]


@pytest.mark.parametrize(("method", "path", "body"), READS)
def test_a_send_only_key_may_not_read_contacts(client, known, method, path, body):
    _key, plain = api_key_create(name="Site web", can_read=False)

    response = call(client, method, path.format(pk=known.pk), plain, body)

    assert response.status_code == 403
    assert "Secrete" not in response.content.decode()
    assert Contact.objects.get(pk=known.pk).company == "Acme"  # the PATCH changed nothing


@pytest.mark.parametrize(("method", "path", "body"), READS)
def test_a_full_key_reads_contacts(client, known, method, path, body):
    _key, plain = api_key_create(name="CRM sync")
    response = call(client, method, path.format(pk=known.pk), plain, body)
    assert response.status_code == 200
    assert "Secrete" in response.content.decode()


def test_a_send_only_key_sends_events_and_contacts_and_gets_no_contact_back(client, known):
    _key, plain = api_key_create(name="Site web", can_read=False)

    events = call(client, "post", "events", plain, {"events": [
        {"email": "zoe@exemple.fr", "type": "page_view", "properties": {"url": "/tarifs"}}
    ]})  # fmt: skip
    contacts = call(client, "post", "contacts", plain, {"contacts": [
        {"email": "ZOE@exemple.fr", "job_title": "CTO"}, {"email": "neuf@exemple.fr"}
    ]})  # fmt: skip

    assert events.status_code == 200 and events.json()["stored"] == 1
    assert Event.objects.filter(contact=known, type="page_view").exists()
    assert contacts.status_code == 200
    assert contacts.json() == {"created": 1, "updated": 1, "contacts": []}
    assert Contact.objects.get(pk=known.pk).job_title == "CTO"
    assert "Secrete" not in contacts.content.decode()


def test_the_command_makes_a_send_only_key_when_asked(client, known):
    out = io.StringIO()
    call_command("create_api_key", "Site web", "--send-only", stdout=out)
    plain = out.getvalue().split(": ", 1)[1].split()[0]

    assert "send only" in out.getvalue()
    assert ApiKey.objects.get(name="Site web").can_read is False
    assert call(client, "get", f"contacts/{known.pk}", plain).status_code == 403


def test_an_admin_makes_a_send_only_key_by_unticking_reads(client, admin_user, known):
    client.force_login(admin_user)
    form = client.get("/admin/contacts/apikey/add/").content.decode()
    assert 'name="can_read"' in form and "checked" in form.split('name="can_read"')[1][:80]

    client.post("/admin/contacts/apikey/add/", {"name": "Formulaire"})

    assert ApiKey.objects.get(name="Formulaire").can_read is False
