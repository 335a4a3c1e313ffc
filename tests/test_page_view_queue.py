"""Page views through the Redis queue: the beacon answers after one push, the drain stores them
in batches, once each, whatever happens to a drainer; without Redis they are stored at once."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from django.utils import timezone

from contacts.intake import tracking
from contacts.intake.page_views import page_views_drain, page_views_record_many
from contacts.models import AnonymousView, Contact, ContactMerge, Event, Form, Visitor
from tests.utils import free_port, redis_test_url

pytestmark = pytest.mark.django_db
ANNE = "anne-0123456789abcdef"
BRUNO = "bruno-0123456789abcdef"


def beacon(client, visitor_id, url, **utm):
    body = {"visitor_id": visitor_id, "url": url, "title": "Page", "referrer": ""}
    if utm:
        body["utm"] = utm
    response = client.post(reverse("beacon"), data=json.dumps(body), content_type="text/plain")
    assert response.status_code == 204
    return response


def page_views(contact=None):
    """The URLs of a contact's page views; without one, of every view kept (events, and views
    of visitors who are no contact yet)."""
    views = Event.objects.filter(type="page_view")
    if contact is not None:
        views = views.filter(contact=contact)
    anonymous = AnonymousView.objects.values_list("url", flat=True) if contact is None else []
    return sorted([*views.values_list("properties__url", flat=True), *anonymous])


@pytest.fixture
def queue(settings):
    """The queue in the tests' own Redis database, emptied before and after. A kick is marked
    as just sent, so views wait for the drain the test runs (the kick has its own test)."""
    import redis

    settings.PAGE_VIEW_QUEUE_URL = redis_test_url()
    connection = redis.Redis.from_url(settings.PAGE_VIEW_QUEUE_URL)
    connection.flushdb()
    connection.set(tracking.KICK, b"1", px=600_000)
    yield connection
    connection.flushdb()


@pytest.mark.redis
def test_queued_page_views_are_stored_once_by_the_drain(
    client, queue, django_capture_on_commit_callbacks
):
    beacon(client, ANNE, "https://www.exemple.fr/tarifs", utm_source="newsletter")
    beacon(client, ANNE, "https://www.exemple.fr/blog", utm_source="autre")
    beacon(client, BRUNO, "https://www.exemple.fr/")

    assert page_views() == [] and tracking.waiting() == 3  # answered, not stored yet

    # The views' processing (after commit) moves the visitors' last activity.
    with django_capture_on_commit_callbacks(execute=True):
        assert page_views_drain() == 3
    assert page_views_drain() == 0
    anne = Visitor.objects.get(visitor_id=ANNE).contact
    assert page_views(anne) == ["https://www.exemple.fr/blog", "https://www.exemple.fr/tarifs"]
    assert (anne.stage, anne.email, anne.utm_source) == ("suspect", None, "newsletter")
    assert anne.last_activity_at is not None
    # Bruno saw one page: his view is kept, without a contact (yet).
    assert AnonymousView.objects.get().visitor_id == BRUNO
    assert Contact.objects.count() == 1 and tracking.waiting() == 0


@pytest.mark.redis
def test_a_drainer_killed_midway_loses_nothing_and_stores_nothing_twice(client, queue):
    for n in range(5):
        beacon(client, ANNE, f"https://www.exemple.fr/{n}")
    # A first drainer stores a batch of two and dies before forgetting it…
    tracking.lock()
    page_views_record_many(views=[tracking.parse(raw) for raw in tracking.take(2)])
    queue.delete(tracking.LOCK)  # …its lock expires.
    # A second takes the batch left on the processing list, and dies before storing it.
    tracking.lock()
    assert len(tracking.take(2)) == 2
    queue.delete(tracking.LOCK)
    assert page_views() == ["https://www.exemple.fr/0", "https://www.exemple.fr/1"]

    assert page_views_drain(batch_size=2) == 5  # the dead one's batch, then the rest

    assert page_views() == [f"https://www.exemple.fr/{n}" for n in range(5)]
    assert tracking.waiting() == 0


@pytest.mark.redis
def test_a_drainer_whose_lock_expired_leaves_the_next_drainers_batch_alone(client, queue):
    for n in range(3):
        beacon(client, ANNE, f"https://www.exemple.fr/{n}")
    slow = tracking.lock()
    tracking.take(2)
    queue.delete(tracking.LOCK)  # expired while the slow drainer was still at work
    assert tracking.lock() is not None  # a new drainer took over

    assert tracking.done(slow, 2) is False
    assert tracking.waiting() == 3  # nothing trimmed by the slow one


@pytest.mark.redis
def test_one_drain_at_a_time(client, queue):
    beacon(client, ANNE, "https://www.exemple.fr/")
    token = tracking.lock()

    assert page_views_drain() == 0 and page_views() == []

    tracking.release(token)
    assert page_views_drain() == 1


@pytest.mark.redis
def test_the_first_view_after_a_quiet_second_kicks_a_drain_and_later_ones_wait(client, queue):
    queue.delete(tracking.KICK)
    beacon(client, ANNE, "https://www.exemple.fr/1")  # kick: the drain task runs (eagerly here)
    beacon(client, ANNE, "https://www.exemple.fr/2")  # kicked less than a second ago: waits

    assert page_views() == ["https://www.exemple.fr/1"]
    assert tracking.waiting() == 1


@pytest.fixture
def form():
    return Form.objects.create(name="Livre blanc")


def submit(client, form, visitor_id):
    data = {"email": "anne@exemple.fr", "consent": "on", "visitor_id": visitor_id}
    assert client.post(reverse("form-post", args=[form.key]), data).status_code == 200


@pytest.mark.redis
def test_a_form_sent_before_the_drain_still_gets_the_visitors_page_views(client, queue, form):
    beacon(client, ANNE, "https://www.exemple.fr/tarifs", utm_campaign="printemps")
    beacon(client, ANNE, "https://www.exemple.fr/demo")

    submit(client, form, ANNE)
    page_views_drain()

    lead = Contact.objects.get()
    assert lead.email == "anne@exemple.fr" and lead.stage == "lead"
    assert page_views(lead) == ["https://www.exemple.fr/demo", "https://www.exemple.fr/tarifs"]
    assert lead.utm_campaign == "printemps"  # the anonymous first touch is the person's
    assert Visitor.objects.get(visitor_id=ANNE).contact == lead


@pytest.mark.redis
def test_views_drained_before_and_after_the_form_all_join_the_lead(client, queue, form):
    beacon(client, ANNE, "https://www.exemple.fr/tarifs")
    beacon(client, ANNE, "https://www.exemple.fr/blog")
    page_views_drain()
    anonymous = Visitor.objects.get(visitor_id=ANNE).contact
    beacon(client, ANNE, "https://www.exemple.fr/demo")  # still queued when the form is sent

    submit(client, form, ANNE)
    page_views_drain()

    lead = Contact.objects.get()
    assert page_views(lead) == [
        "https://www.exemple.fr/blog", "https://www.exemple.fr/demo", "https://www.exemple.fr/tarifs"
    ]  # fmt: skip
    merge = ContactMerge.objects.get()
    assert (merge.into, merge.merged_contact_id, merge.events_moved) == (lead, anonymous.pk, 2)


def test_without_redis_a_page_view_is_stored_at_once(client, settings):
    settings.PAGE_VIEW_QUEUE_URL = ""
    beacon(client, ANNE, "https://www.exemple.fr/tarifs")
    beacon(client, ANNE, "https://www.exemple.fr/blog")
    assert page_views(Visitor.objects.get(visitor_id=ANNE).contact) == [
        "https://www.exemple.fr/blog", "https://www.exemple.fr/tarifs"
    ]  # fmt: skip
    assert page_views_drain() == 0


def test_a_page_view_is_stored_at_once_when_the_queue_is_unreachable(client, settings, caplog):
    settings.PAGE_VIEW_QUEUE_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    beacon(client, ANNE, "https://www.exemple.fr/tarifs")
    assert page_views() == ["https://www.exemple.fr/tarifs"]
    assert "queue unavailable" in caplog.text


@pytest.mark.postgres
@pytest.mark.redis
def test_a_view_that_cannot_be_stored_is_set_aside_and_does_not_stall_the_queue(
    client, queue, monkeypatch
):
    monkeypatch.setattr("contacts.intake.page_views.PAGE_VIEW_MAX_ATTEMPTS", 2)
    beacon(client, ANNE, "https://www.exemple.fr/1")
    # The beacon refuses NUL characters; a view queued by some older or buggy version may not.
    poison = tracking.QueuedView(
        id="poison", visitor_id=ANNE, url="https://www.exemple.fr/nul", title="\x00",
        referrer="", utm={}, at=timezone.now(),
    )  # fmt: skip
    queue.rpush(tracking.QUEUE, poison.dump())
    beacon(client, ANNE, "https://www.exemple.fr/2")

    assert page_views_drain() == 0  # PostgreSQL refuses the batch…
    assert page_views() == [] and tracking.waiting() == 3
    assert page_views_drain() == 3  # …again: then it is stored view by view

    assert page_views() == ["https://www.exemple.fr/1", "https://www.exemple.fr/2"]
    assert tracking.waiting() == 0
    assert tracking.parse(queue.lindex(tracking.SET_ASIDE, 0)).id == "poison"
