"""Fuzzing the JSON API: whatever an integration sends, the answer is never a 500.

Schemathesis generates requests from the OpenAPI schema (valid and invalid ones) for every
operation; a plain Hypothesis test posts arbitrary JSON documents to the two POST endpoints.
Every request carries a valid API key, so the cases reach the validation and the services.
"""

import copy
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from contacts.intake.api import EVENT_TYPES
from contacts.intake.capture import api_key_create
from leadfunnel.wsgi import application
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

# All examples of one test share its database transaction (pytest-django does not roll back
# between Hypothesis examples), and fixtures are made once per test, not per example.
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)


@pytest.fixture
def api_key():
    """A key whose rate limit no fuzz run reaches (the default would answer 429s)."""
    key, plain = api_key_create(name="Fuzz")
    key.rate_per_minute = 1_000_000
    key.save()
    return plain


@pytest.fixture
def auth(api_key):
    return {"Authorization": f"Bearer {api_key}"}


KNOWN_ID = 987_654  # far above the ids the sequences hand out while the tests run


def hinted(raw):
    """The served schema with a hint, so generated requests get past the checks the schema
    cannot express and reach the services: a contact id is sometimes one that exists."""
    raw = copy.deepcopy(raw)
    for component in raw["components"]["schemas"].values():
        for name, field in component.get("properties", {}).items():
            for branch in field.get("anyOf", [field]):
                if name == "contact_id" and branch.get("type") == "integer":
                    branch["examples"] = [KNOWN_ID]
    for operation in raw["paths"]["/api/v1/contacts/{contact_id}"].values():
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "contact_id":
                parameter["schema"]["examples"] = [KNOWN_ID]
    return raw


# Loaded once, at collection: the schema endpoint needs no key and no database.
served = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)
schema = schemathesis.openapi.from_dict(hinted(served.raw_schema))
schema.app = application  # requests go to Django's WSGI handler, in process


@pytest.fixture
def requests_keep_the_connection():
    """As in Django's test client: the per-request connection clean-up would otherwise close
    the connection, and with it the test's transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def known_contact():
    """Something for the reads, the updates and the events by contact_id to find."""
    return ContactFactory(pk=KNOWN_ID, email="connu@exemple.fr")


@schema.parametrize()
@FUZZ
def test_no_generated_request_gets_a_server_error(
    case, auth, known_contact, requests_keep_the_connection
):
    response = case.call_and_validate(headers=auth, checks=[not_a_server_error])
    assert response.status_code < 500, (case.as_curl_command(headers=auth), response.text)


# Any JSON document: what a confused or hostile client could post.
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_documents = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=25,
)
json_objects = st.dictionaries(st.text(max_size=20), json_documents, max_size=5)

# Values an integration could plausibly send: right type and size, any characters.
emails = st.sampled_from(["connu@exemple.fr", "CONNU@Exemple.fr", "zoe@exemple.fr"]) | st.emails()
moments = st.datetimes(timezones=st.none() | st.just(UTC) | st.timezones()) | st.builds(
    # The ends of the calendar, with an offset that moves them past it in UTC.
    lambda moment, hours: moment.replace(tzinfo=timezone(timedelta(hours=hours))),
    st.sampled_from([datetime.min, datetime.max]),
    st.integers(min_value=-14, max_value=14),
)
moments = moments.map(lambda moment: moment.isoformat())
ids = st.integers(min_value=1) | st.sampled_from([2**31, 2**63 - 1, 2**63, 2**64])
EVENT_FIELDS = {
    "occurred_at": moments,
    "properties": json_objects,
    "source": st.text(max_size=40),
    "idempotency_key": st.text(max_size=200) | st.uuids().map(str),
}
CONTACT_FIELDS = {
    "first_name": st.text(max_size=100),
    "last_name": st.text(max_size=100),
    "company": st.text(max_size=200),
    "phone": st.text(max_size=40),
    "job_title": st.text(max_size=150),
    "utm_source": st.text(max_size=200),
    "utm_medium": st.text(max_size=200),
    "utm_campaign": st.text(max_size=200),
}


def events(contact_id):
    """Well-formed batches (past pydantic, into the services and the database), and batches
    with arbitrary JSON in any field."""
    who = st.fixed_dictionaries({"contact_id": st.just(contact_id) | ids}) | st.fixed_dictionaries(
        {"email": emails}
    )
    event = st.builds(
        lambda identity, rest: {**identity, **rest},
        who,
        st.fixed_dictionaries({"type": st.sampled_from(EVENT_TYPES)}, optional=EVENT_FIELDS),
    )
    anything = {
        name: json_documents
        for name in ["email", "contact_id", "type", "occurred_at", *EVENT_FIELDS]
    }
    odd_event = st.fixed_dictionaries({}, optional=anything)
    items = st.lists(event, min_size=1, max_size=4) | st.lists(event | odd_event, max_size=4)
    return st.fixed_dictionaries({"events": items})


def contacts():
    contact = st.fixed_dictionaries({"email": emails}, optional=CONTACT_FIELDS)
    anything = {name: json_documents for name in ["email", *CONTACT_FIELDS]}
    odd_contact = st.fixed_dictionaries({}, optional=anything)
    items = st.lists(contact, min_size=1, max_size=4) | st.lists(contact | odd_contact, max_size=4)
    return st.fixed_dictionaries({"contacts": items})


@pytest.mark.parametrize("path", ["events", "contacts"])
@FUZZ
@given(data=st.data())
def test_any_json_document_is_answered_without_a_server_error(
    client, auth, known_contact, path, data
):
    batches = events(known_contact.pk) if path == "events" else contacts()
    body = data.draw(json_documents | batches | batches, label="body")
    response = client.post(
        f"/api/v1/{path}", data=json.dumps(body), content_type="application/json", headers=auth
    )
    assert response.status_code in {200, 400, 413}, response.content


# What the schema declares valid, the server accepts; what it declares invalid, the server
# refuses with field errors. An email "" (a CRM export's "no email") is no email: the contact
# is then known by its external id, or the item is a 400 naming the email.
CONTACT_ITEMS = [
    ("_email", {"email": "zoe@exemple.fr"}, True),
    ("_blank_email_and_external_id", {"email": "", "external_id": "CRM-7"}, True),
    ("_null_email_and_external_id", {"email": None, "external_id": "CRM-7"}, True),
    ("_external_id_only", {"external_id": "CRM-7", "first_name": "Zoé"}, True),
    ("_blank_email_alone", {"email": ""}, False),
    ("_blank_email_and_blank_external_id", {"email": "", "external_id": " "}, False),
    ("_nothing", {"first_name": "Zoé"}, False),
    ("_not_an_email", {"email": "pas-un-email", "external_id": "CRM-7"}, False),
]


def item_validator(component: str):  # type: ignore[no-untyped-def]
    import jsonschema_rs

    document = {**served.raw_schema, "$ref": f"#/components/schemas/{component}"}
    return jsonschema_rs.validator_for(document, validate_formats=True)


@pytest.mark.parametrize(("_case", "item", "valid"), CONTACT_ITEMS)
def test_the_schema_declares_valid_exactly_the_contacts_the_server_accepts(
    client, auth, _case, item, valid
):
    declared = item_validator("ContactIn").is_valid(item)

    response = client.post(
        "/api/v1/contacts",
        data=json.dumps({"contacts": [item]}),
        content_type="application/json",
        headers=auth,
    )

    assert declared == valid
    assert response.status_code == (200 if valid else 400), response.content
    if not valid:
        assert response.json()["detail"][0]["loc"][:4] == ["body", "payload", "contacts", 0]


EVENT_ITEMS = [
    ("_email", {"email": "zoe@exemple.fr"}, True),
    ("_contact_id", {"contact_id": KNOWN_ID}, True),
    ("_blank_email_and_contact_id", {"email": "", "contact_id": KNOWN_ID}, True),
    # An unknown external id is accepted as a request: that event is refused in the answer.
    ("_unknown_external_id", {"external_id": "CRM-404"}, True),
    ("_external_id_made_when_asked", {"external_id": "CRM-7", "create_contact": True}, True),
    ("_blank_external_id_alone", {"external_id": " "}, False),
    ("_blank_email_alone", {"email": ""}, False),
    ("_null_email_alone", {"email": None}, False),
    ("_nobody", {}, False),
]


@pytest.mark.parametrize(("_case", "who", "valid"), EVENT_ITEMS)
def test_the_schema_declares_valid_exactly_the_events_the_server_accepts(
    client, auth, known_contact, _case, who, valid
):
    item = {**who, "type": "page_view"}
    declared = item_validator("EventIn").is_valid(item)

    response = client.post(
        "/api/v1/events",
        data=json.dumps({"events": [item]}),
        content_type="application/json",
        headers=auth,
    )

    assert declared == valid
    assert response.status_code == (200 if valid else 400), response.content
