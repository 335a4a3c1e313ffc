"""The beacon is limited per address, and a visitor becomes a contact only once it has done
something worth keeping (a second page, a form): one page view from a fresh id makes none."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import time_machine
from django.urls import reverse

from contacts import ratelimit
from contacts.intake.page_views import anonymous_views_purge
from contacts.models import AnonymousView, Contact, Event, Form, Visitor
from scoring.models import ScoreEntry
from tests.utils import free_port, redis_test_url

pytestmark = pytest.mark.django_db


def beacon(client, visitor_id, url="https://www.exemple.fr/tarifs", address="203.0.113.7", **utm):
    body = {"visitor_id": visitor_id, "url": url, "title": "Tarifs", "referrer": ""}
    if utm:
        body["utm"] = utm
    return client.post(
        reverse("beacon"), data=json.dumps(body), content_type="text/plain", REMOTE_ADDR=address
    )


def kept_views() -> int:
    return Event.objects.filter(type="page_view").count() + AnonymousView.objects.count()


@time_machine.travel(datetime(2026, 3, 2, 10, 0, 5, tzinfo=UTC), tick=False)
def test_beacons_from_one_address_beyond_the_limit_are_refused_and_keep_nothing(client, settings):
    settings.BEACON_RATE_PER_MINUTE = 100

    answers = [beacon(client, f"fresh-visitor-{n:06d}") for n in range(300)]

    assert [a.status_code for a in answers] == [204] * 100 + [429] * 200
    assert answers[-1]["Retry-After"] == "55"
    assert kept_views() == 100
    assert not Contact.objects.exists() and not ScoreEntry.objects.exists()
    # Another address is not held back by this one.
    assert beacon(client, "another-visitor-01", address="198.51.100.2").status_code == 204


def test_the_beacon_limit_still_holds_while_redis_is_down(client, settings):
    settings.RATE_LIMIT_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings.BEACON_RATE_PER_MINUTE = 5
    with time_machine.travel(datetime(2026, 3, 2, 10, 0, 5, tzinfo=UTC), tick=False):
        statuses = [beacon(client, f"fresh-visitor-{n:06d}").status_code for n in range(10)]
    assert statuses == [204] * 5 + [429] * 5


def test_a_visitor_with_a_single_page_view_creates_no_contact(client):
    assert beacon(client, "one-page-visitor-01").status_code == 204

    assert not Contact.objects.exists() and not Visitor.objects.exists()
    view = AnonymousView.objects.get()
    assert (view.visitor_id, view.url) == ("one-page-visitor-01", "https://www.exemple.fr/tarifs")


def test_a_second_page_view_makes_the_visitor_a_contact_with_both_views(client):
    beacon(client, "two-page-visitor-01", utm_source="newsletter")
    beacon(client, "two-page-visitor-01", url="https://www.exemple.fr/demo")

    contact = Visitor.objects.get(visitor_id="two-page-visitor-01").contact
    assert (contact.email, contact.utm_source) == (None, "newsletter")
    urls = sorted(contact.events.values_list("properties__url", flat=True))
    assert urls == ["https://www.exemple.fr/demo", "https://www.exemple.fr/tarifs"]
    assert not AnonymousView.objects.exists()


def test_a_form_joins_the_single_page_view_its_visitor_made_before(client):
    form = Form.objects.create(name="Livre blanc")
    beacon(client, "form-visitor-0001", utm_campaign="printemps")

    data = {"email": "anne@exemple.fr", "consent": "on", "visitor_id": "form-visitor-0001"}
    assert client.post(reverse("form-post", args=[form.key]), data).status_code == 200

    lead = Contact.objects.get()
    assert (lead.email, lead.stage, lead.utm_campaign) == ("anne@exemple.fr", "lead", "printemps")
    view = lead.events.get(type="page_view")
    assert (view.properties["url"], view.properties["utm_campaign"]) == (
        "https://www.exemple.fr/tarifs", "printemps",
    )  # fmt: skip
    assert Visitor.objects.get(visitor_id="form-visitor-0001").contact == lead
    assert not AnonymousView.objects.exists()


@pytest.mark.redis
def test_the_beacon_limit_is_counted_in_redis_for_every_web_process(client, settings):
    import redis

    settings.RATE_LIMIT_URL = redis_test_url()
    redis.Redis.from_url(settings.RATE_LIMIT_URL).flushdb()
    settings.BEACON_RATE_PER_MINUTE = 3
    with time_machine.travel(datetime(2026, 3, 2, 10, 0, 5, tzinfo=UTC), tick=False):
        first = [beacon(client, f"fresh-visitor-{n:06d}").status_code for n in range(2)]
        ratelimit.reset()  # another web process: its own memory, the same Redis
        later = [beacon(client, f"fresh-visitor-{n:06d}").status_code for n in range(2, 4)]
    redis.Redis.from_url(settings.RATE_LIMIT_URL).flushdb()
    assert first + later == [204, 204, 204, 429]


def test_views_of_visitors_who_stayed_anonymous_are_forgotten_after_a_while(client, settings):
    settings.VISITOR_ANONYMOUS_DAYS = 30
    with time_machine.travel(datetime(2026, 3, 2, 10, 0, tzinfo=UTC)):
        beacon(client, "gone-visitor-0001")
    with time_machine.travel(datetime(2026, 3, 30, 10, 0, tzinfo=UTC)):
        beacon(client, "recent-visitor-01")
    with time_machine.travel(datetime(2026, 4, 2, 10, 0, tzinfo=UTC)):
        assert anonymous_views_purge() == 1
    assert AnonymousView.objects.get().visitor_id == "recent-visitor-01"
