"""The tracking snippet and its beacon: page views for anonymous and known visitors."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from contacts.models import Contact, Event, Visitor

pytestmark = pytest.mark.django_db
VISITOR = "0123456789abcdef0123456789abcdef"


def beacon(client, body, origin=None):
    headers = {"Origin": origin} if origin else {}
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(reverse("beacon"), data=data, content_type="text/plain", headers=headers)


def view(url="https://www.exemple.fr/tarifs", **more):
    return {"visitor_id": VISITOR, "url": url, "title": "Tarifs — Exemple", "referrer": "", **more}


def test_an_unknown_visitor_becomes_an_anonymous_suspect_with_its_page_views(client):
    first = beacon(client, view(utm={"utm_source": "newsletter", "utm_campaign": "été"}))
    second = beacon(
        client, view(url="https://www.exemple.fr/blog/scoring", utm={"utm_source": "other"})
    )

    assert first.status_code == second.status_code == 204
    visitor = Visitor.objects.get(visitor_id=VISITOR)
    contact = visitor.contact
    assert (contact.stage, contact.email) == ("suspect", None)
    assert (contact.utm_source, contact.utm_campaign) == ("newsletter", "été")  # first touch kept
    titles = list(Event.objects.filter(contact=contact).values_list("properties__url", flat=True))
    assert sorted(titles) == [
        "https://www.exemple.fr/blog/scoring",
        "https://www.exemple.fr/tarifs",
    ]


@pytest.mark.parametrize(
    "body",
    ["{not json", "[]", json.dumps({"visitor_id": "x", "url": "https://a.fr"}),
     json.dumps({"visitor_id": VISITOR, "url": "javascript:alert(1)"}),
     json.dumps(view(title="t" * 301))],
)  # fmt: skip
def test_bad_beacons_are_400_and_store_nothing(client, body):
    assert beacon(client, body).status_code == 400
    assert not Contact.objects.exists()


def test_an_oversized_beacon_is_413(client):
    assert beacon(client, view(referrer="r" * 9000)).status_code == 413


def test_only_the_configured_sites_may_send_page_views(client, settings):
    settings.TRACKING_ORIGINS = ["https://www.exemple.fr"]
    allowed = beacon(client, view(), origin="https://www.exemple.fr")
    assert allowed.status_code == 204
    assert allowed["Access-Control-Allow-Origin"] == "https://www.exemple.fr"
    assert beacon(client, view(), origin="https://evil.example").status_code == 403


def test_the_snippet_is_served_as_javascript_pointing_at_this_server(client):
    response = client.get(reverse("tracker-js"))
    assert response["Content-Type"].startswith("application/javascript")
    body = response.content.decode()
    assert "http://testserver/t/" in body and "localStorage" in body and "sendBeacon" in body


def test_the_beacon_still_checks_the_host_though_it_skips_the_middleware(client):
    refused = client.post(
        reverse("beacon"), data=json.dumps(view()), content_type="text/plain",
        headers={"Host": "evil.example"},
    )  # fmt: skip
    assert refused.status_code == 400
    assert not Contact.objects.exists()


def test_the_beacon_sets_no_cookie_and_reads_no_session_or_user(client):
    client.cookies["sessionid"] = "a-session-from-the-same-domain"
    beacon(client, view())  # the second page view stores the visitor's events
    with CaptureQueriesContext(connection) as queries:
        response = beacon(client, view())
    assert response.status_code == 204
    assert not response.cookies and "Cookie" not in response.get("Vary", "")
    tables = " ".join(query["sql"] for query in queries.captured_queries)
    assert "contacts_event" in tables
    assert "django_session" not in tables and "auth_user" not in tables
