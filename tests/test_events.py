import pytest
from django.db import transaction
from django.utils import timezone

from contacts.models import Event
from contacts.services import event_record, events_process, events_sweep
from tests import handlers
from tests.factories import ContactFactory, EventFactory


@pytest.fixture
def seen(settings):
    handlers.SEEN = []
    settings.LEADFUNNEL_EVENT_HANDLERS = ["tests.handlers.remember"]
    return handlers.SEEN


@pytest.mark.django_db
def test_the_same_event_sent_twice_is_stored_once(seen, django_capture_on_commit_callbacks):
    contact = ContactFactory()
    with django_capture_on_commit_callbacks(execute=True):
        first, created_first = event_record(
            contact=contact, type="download", idempotency_key="crm-42", properties={"file": "a.pdf"}
        )
        again, created_again = event_record(
            contact=contact, type="download", idempotency_key="crm-42", properties={"file": "a.pdf"}
        )

    assert (created_first, created_again) == (True, False)
    assert again.pk == first.pk
    assert Event.objects.filter(idempotency_key="crm-42").count() == 1
    assert [e.pk for e in seen] == [first.pk]


@pytest.mark.django_db
def test_handlers_run_after_commit_in_the_order_settings_name_them(
    settings, django_capture_on_commit_callbacks
):
    calls = []
    handlers.SEEN = calls
    settings.LEADFUNNEL_EVENT_HANDLERS = ["tests.handlers.tag", "tests.handlers.remember"]
    contact = ContactFactory()

    with django_capture_on_commit_callbacks(execute=True):
        event, _ = event_record(contact=contact, type="page_view", properties={"url": "/pricing"})
        assert calls == []

    event.refresh_from_db()
    assert event.processed_at is not None
    assert calls[0].pk == event.pk
    # "tag" ran first: the event "remember" saw had already been tagged in the database.
    assert Event.objects.get(pk=event.pk).properties["tagged"] is True


@pytest.mark.django_db(transaction=True)
def test_an_event_in_a_rolled_back_transaction_is_never_handed_on(seen):
    contact = ContactFactory()
    with pytest.raises(RuntimeError), transaction.atomic():
        event_record(contact=contact, type="page_view")
        raise RuntimeError("the request failed after storing the event")

    assert not Event.objects.exists()
    assert seen == []


@pytest.mark.django_db
def test_a_task_delivered_twice_hands_the_event_on_once(seen):
    event = EventFactory(processed_at=None)

    assert events_process(event_ids=[event.pk]) == 1
    assert events_process(event_ids=[event.pk]) == 0

    assert [e.pk for e in seen] == [event.pk]


@pytest.mark.django_db
def test_one_broken_event_does_not_hold_back_its_batch(settings):
    handlers.SEEN = []
    settings.LEADFUNNEL_EVENT_HANDLERS = ["tests.handlers.fail_on_poison"]
    good = [EventFactory(processed_at=None) for _ in range(3)]
    poison = EventFactory(processed_at=None, properties={"poison": True})

    processed = events_process(event_ids=[e.pk for e in [*good, poison]])

    assert processed == 3
    assert sorted(e.pk for e in handlers.SEEN) == sorted(e.pk for e in good)
    poison.refresh_from_db()
    assert poison.processed_at is None
    assert poison.attempts == 1
    assert "breaks the handler" in poison.last_error
    assert Event.objects.filter(processed_at__isnull=False).count() == 3


@pytest.mark.django_db
def test_the_sweep_processes_events_whose_task_never_ran(seen, settings):
    settings.EVENT_SWEEP_GRACE_SECONDS = 30
    old = EventFactory(
        processed_at=None, received_at=timezone.now() - timezone.timedelta(minutes=5)
    )
    fresh = EventFactory(processed_at=None)  # its task may still be on its way

    assert events_sweep() == 1

    old.refresh_from_db()
    fresh.refresh_from_db()
    assert old.processed_at is not None
    assert fresh.processed_at is None


@pytest.mark.django_db
def test_the_sweep_gives_up_on_an_event_after_the_maximum_attempts(settings):
    handlers.SEEN = []
    settings.LEADFUNNEL_EVENT_HANDLERS = ["tests.handlers.fail_on_poison"]
    settings.EVENT_SWEEP_GRACE_SECONDS = 0
    settings.EVENT_MAX_ATTEMPTS = 3
    poison = EventFactory(processed_at=None, properties={"poison": True})

    for _ in range(5):
        events_sweep()

    poison.refresh_from_db()
    assert poison.attempts == 3
    assert poison.processed_at is None


@pytest.mark.django_db
def test_touchpoints_update_last_activity_but_stage_changes_do_not():
    contact = ContactFactory(last_activity_at=None)
    viewed_at = timezone.now() - timezone.timedelta(days=2)
    event_record(contact=contact, type="page_view", occurred_at=viewed_at)
    event_record(
        contact=contact, type="page_view", occurred_at=viewed_at - timezone.timedelta(days=9)
    )
    event_record(contact=contact, type="stage_changed", occurred_at=timezone.now())

    contact.refresh_from_db()
    assert contact.last_activity_at == viewed_at


@pytest.mark.django_db
def test_an_unknown_event_type_is_refused():
    with pytest.raises(ValueError, match="unknown event type"):
        event_record(contact=ContactFactory(), type="telepathy")
    assert not Event.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_events_of_one_transaction_go_out_as_one_task_even_after_a_rollback(seen, monkeypatch):
    from contacts import services

    sent: list[list[int]] = []
    monkeypatch.setattr(services, "_enqueue", sent.append)
    contact = ContactFactory()

    with pytest.raises(RuntimeError), transaction.atomic():
        event_record(contact=contact, type="page_view")
        raise RuntimeError("rolled back: its callback is gone")
    with transaction.atomic():
        first, _ = event_record(contact=contact, type="page_view")
        second, _ = event_record(contact=contact, type="download")

    assert sent == [[first.pk, second.pk]]


@pytest.mark.django_db
def test_a_batch_is_stored_once_per_key_and_handed_on_in_one_task(
    seen, django_capture_on_commit_callbacks
):
    from contacts.services import NewEvent, events_record_many

    ana, bob = ContactFactory(last_activity_at=None), ContactFactory(last_activity_at=None)
    EventFactory(contact=ana, idempotency_key="already-here")
    t0 = timezone.now() - timezone.timedelta(days=3)

    def batch():
        return [
            NewEvent(ana.pk, "page_view", t0, {"url": "/prix", "titre": "Élan"}, "api", "k1"),
            NewEvent(ana.pk, "download", t0 + timezone.timedelta(hours=2), {}, "api", "k2"),
            NewEvent(ana.pk, "download", t0, {}, "api", "k2"),  # repeated in the batch
            NewEvent(bob.pk, "page_view", t0, {}, "api", "already-here"),  # stored before
            NewEvent(bob.pk, "demo_request", t0 - timezone.timedelta(days=1), {}, "api", None),
        ]

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        ids = events_record_many(events=batch())
    assert len(ids) == 3 and len(callbacks) == 1
    assert sorted(e.pk for e in seen) == sorted(ids)
    assert Event.objects.get(idempotency_key="k1").properties == {"url": "/prix", "titre": "Élan"}
    ana.refresh_from_db()
    bob.refresh_from_db()
    assert ana.last_activity_at == t0 + timezone.timedelta(hours=2)
    assert bob.last_activity_at == t0 - timezone.timedelta(days=1)

    again = events_record_many(events=batch()[:4])  # a retried call stores nothing new
    assert again == [] and Event.objects.count() == 4
