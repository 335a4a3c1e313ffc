import pytest
from django.db import transaction
from django.utils import timezone

from contacts.events import event_record
from contacts.models import Contact, Event, PendingEvent
from contacts.pipeline import events_process, events_sweep
from tests import handlers
from tests.factories import ContactFactory, EventFactory
from tests.utils import is_pending


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

    assert not is_pending(event)
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
    event = EventFactory(pending=True)

    assert events_process(event_ids=[event.pk]) == 1
    assert events_process(event_ids=[event.pk]) == 0

    assert [e.pk for e in seen] == [event.pk]


@pytest.mark.django_db
def test_one_broken_event_does_not_hold_back_its_batch(settings):
    handlers.SEEN = []
    settings.LEADFUNNEL_EVENT_HANDLERS = ["tests.handlers.fail_on_poison"]
    good = [EventFactory(pending=True) for _ in range(3)]
    poison = EventFactory(pending=True, properties={"poison": True})

    processed = events_process(event_ids=[e.pk for e in [*good, poison]])

    assert processed == 3
    assert sorted(e.pk for e in handlers.SEEN) == sorted(e.pk for e in good)
    waiting = PendingEvent.objects.get()
    assert waiting.event_id == poison.pk
    assert waiting.attempts == 1
    assert "breaks the handler" in waiting.last_error
    assert Event.objects.exclude(pk__in=Event.objects.unprocessed()).count() == 3


@pytest.mark.django_db
def test_the_sweep_processes_events_whose_task_never_ran(seen, settings):
    settings.EVENT_SWEEP_GRACE_SECONDS = 30
    old = EventFactory(pending=True, received_at=timezone.now() - timezone.timedelta(minutes=5))
    fresh = EventFactory(pending=True)  # its task may still be on its way

    assert events_sweep() == 1

    assert not is_pending(old)
    assert is_pending(fresh)


@pytest.mark.django_db
def test_the_sweep_gives_up_on_an_event_after_the_maximum_attempts(settings):
    handlers.SEEN = []
    settings.LEADFUNNEL_EVENT_HANDLERS = ["tests.handlers.fail_on_poison"]
    settings.EVENT_SWEEP_GRACE_SECONDS = 0
    settings.EVENT_MAX_ATTEMPTS = 3
    poison = EventFactory(pending=True, properties={"poison": True})

    for _ in range(5):
        events_sweep()

    assert PendingEvent.objects.get(event=poison).attempts == 3


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
    from contacts.events import events_send_on_commit

    sent: list[list[int]] = []
    monkeypatch.setattr("contacts.events.events_send", sent.append)
    contact = ContactFactory()

    with pytest.raises(RuntimeError), transaction.atomic():
        event_record(contact=contact, type="page_view")
        raise RuntimeError("rolled back: its callback is gone")
    # A caller recording several events in one transaction sends them itself, as one task.
    with transaction.atomic():
        first, _ = event_record(contact=contact, type="page_view", send=False)
        second, _ = event_record(contact=contact, type="download", send=False)
        events_send_on_commit([first.pk, second.pk])

    assert sent == [[first.pk, second.pk]]


@pytest.mark.django_db
def test_a_batch_is_stored_once_per_key_and_handed_on_in_one_task(
    seen, django_capture_on_commit_callbacks
):
    from contacts.events import NewEvent, events_record_many

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


@pytest.mark.django_db
def test_a_handled_event_leaves_the_queue_and_the_event_row_is_never_rewritten(seen):
    event = EventFactory(pending=True, properties={"url": "/prix", "titre": "Été"})
    before = Event.objects.values().get(pk=event.pk)

    assert events_process(event_ids=[event.pk]) == 1

    assert not PendingEvent.objects.exists()
    assert Event.objects.values().get(pk=event.pk) == before


@pytest.mark.django_db
def test_events_the_handlers_record_are_handled_in_the_same_run_not_a_task_of_their_own(
    settings, monkeypatch
):

    sent: list[list[int]] = []
    monkeypatch.setattr("contacts.events.events_send", sent.append)
    handlers.SEEN = []
    settings.LEADFUNNEL_EVENT_HANDLERS = ["scoring.handlers.on_event", "tests.handlers.remember"]
    lead = ContactFactory(stage="lead")
    demo = EventFactory(contact=lead, type="demo_request", pending=True)

    events_process(event_ids=[demo.pk])

    # lead → SQL: the demo request, then the stage_changed event it caused.
    assert [(e.type, e.properties.get("to")) for e in handlers.SEEN] == [
        ("demo_request", None),
        ("stage_changed", "sql"),
    ]
    assert not PendingEvent.objects.exists()
    assert sent == []


@pytest.mark.django_db
def test_the_sweep_drops_queue_rows_whose_event_was_deleted_and_moves_on(seen, settings):
    settings.EVENT_SWEEP_GRACE_SECONDS = 0
    orphans = [EventFactory(pending=True) for _ in range(3)]
    waiting = EventFactory(pending=True)
    # Deleted around the ORM (a raw purge): the queue rows stay behind.
    Event.objects.filter(pk__in=[e.pk for e in orphans])._raw_delete("default")

    assert events_sweep(batch_size=2) == 1

    assert [e.pk for e in seen] == [waiting.pk]
    assert not PendingEvent.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("properties", "machine"),
    [
        ({"user_agent": "Mimecast Security"}, True),
        ({"user_agent": "Mozilla/5.0", "seconds_after_send": 2}, True),
        ({"user_agent": "Mozilla/5.0", "seconds_after_send": 3600}, False),
    ],
)
def test_an_email_open_is_flagged_as_machine_or_person_when_it_is_stored(properties, machine):
    from contacts.events import NewEvent, events_record_many

    contact = ContactFactory()
    single, _ = event_record(contact=contact, type="email_open", properties=properties)
    [batched] = events_record_many(
        events=[NewEvent(contact.pk, "email_click", timezone.now(), properties)]
    )

    assert Event.objects.get(pk=single.pk).properties == {**properties, "machine": machine}
    assert Event.objects.get(pk=batched).properties == {**properties, "machine": machine}


@pytest.mark.django_db
def test_any_lookup_matches_a_list_and_nothing_for_an_empty_one():
    contacts = ContactFactory.create_batch(3)
    wanted = [contacts[0].pk, contacts[2].pk]

    assert (
        sorted(Contact.objects.filter(pk__any=set(wanted)).values_list("pk", flat=True)) == wanted
    )
    assert list(Event.objects.filter(contact__any=wanted)) == []
    assert not Contact.objects.filter(pk__any=set()).exists()


@pytest.mark.django_db
def test_processing_some_events_leaves_the_others_of_the_same_transaction_alone(seen):
    contact = ContactFactory()
    with transaction.atomic():
        first, _ = event_record(contact=contact, type="download")
        second, _ = event_record(contact=contact, type="download")

        assert events_process(event_ids=[first.pk]) == 1

    assert [e.pk for e in seen] == [first.pk]
    assert is_pending(second)
