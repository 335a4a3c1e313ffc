"""Live scoring under concurrency, on PostgreSQL: an API process stores batches while two
workers score them, with contacts shared between batches. Nothing deadlocks, every event is
scored once, and every score equals its ledger.

The workers take each batch as the after-commit task would hand it to them, and a third
hands the same batches again (a task delivered twice), so batches overlap in contacts and
in events."""

import importlib
import queue
import random
import threading
from datetime import timedelta

import pytest
from django.apps import apps
from django.db import connection
from django.db.models import Count, Sum
from django.utils import timezone

from contacts.events import NewEvent, events_record_many
from contacts.models import Contact, Event, StageChange
from contacts.pipeline import events_process, events_sweep
from scoring.models import ScoreEntry

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CONTACTS = 60
BATCHES = 24
BATCH = 50
WORKERS = 3
KINDS = ["download", "email_open", "page_view", "newsletter_subscribe", "demo_request"]


def test_workers_scoring_overlapping_batches_while_events_arrive(monkeypatch, settings):
    # An earlier transactional test may have flushed the shipped rules: put them back.
    importlib.import_module("scoring.migrations.0002_default_rules").create_defaults(apps, None)
    contacts = Contact.objects.bulk_create(
        Contact(email=f"c{n}@exemple.fr", stage="lead") for n in range(CONTACTS)
    )
    ids = [contact.pk for contact in contacts]
    handed: queue.Queue[list[int] | None] = queue.Queue()
    # The after-commit send, as the broker would deliver it, twice over (a redelivery).
    monkeypatch.setattr(
        "contacts.events.events_send", lambda event_ids: [handed.put(event_ids)] * 2
    )
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            while (event_ids := handed.get()) is not None:
                events_process(event_ids=event_ids)
        except BaseException as error:  # a deadlock would land here
            failures.append(error)
        finally:
            connection.close()

    def api() -> None:
        rng = random.Random(3)
        now = timezone.now()
        try:
            for b in range(BATCHES):
                events_record_many(events=[
                    NewEvent(rng.choice(ids), rng.choice(KINDS),
                             now - timedelta(minutes=rng.randint(0, 5000)),
                             {"url": "https://ex.fr/pricing"} if n % 7 == 0 else {},
                             "api", f"b{b}-{n}")
                    for n in range(BATCH)
                ])  # fmt: skip
        except BaseException as error:
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    producer = threading.Thread(target=api)
    producer.start()
    producer.join(timeout=120)
    for _ in threads:
        handed.put(None)
    for thread in threads:
        thread.join(timeout=120)
    # Events left for later (their contact was in another worker's batch) went out again as
    # tasks after the workers stopped reading: the sweep takes them, as beat's would.
    settings.EVENT_SWEEP_GRACE_SECONDS = 0
    events_sweep()

    assert failures == []
    assert Event.objects.filter(source="api").count() == BATCHES * BATCH
    assert not Event.objects.unprocessed().exists()
    # Each scored event has exactly one line per rule it matched (no event scored twice).
    doubles = (
        ScoreEntry.objects.filter(rule__isnull=False)
        .values("event_id", "rule_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    assert not doubles.exists()
    assert (
        ScoreEntry.objects.filter(event__type="download").count()
        == Event.objects.filter(type="download").count()
    )
    ledger = dict(ScoreEntry.objects.values_list("contact_id").annotate(total=Sum("points")))
    for contact in Contact.objects.all():
        assert contact.score == ledger.get(contact.pk, 0), contact.pk
        latest = (
            Event.objects.filter(contact=contact)
            .exclude(type__in=Event.SYSTEM_TYPES)
            .order_by("-occurred_at")
            .first()
        )
        assert contact.last_activity_at == (latest.occurred_at if latest else None)
    # The demo requests made SQLs, each move recorded once.
    assert (
        StageChange.objects.filter(to_stage="sql").count()
        == Contact.objects.filter(stage="sql").count()
        > 0
    )


def test_events_of_a_contact_another_batch_holds_are_left_for_later(monkeypatch):
    """A worker skips the contacts another worker's open batch holds: their events stay in
    the queue and go out again after commit, and the rest of its batch is handled at once."""
    importlib.import_module("scoring.migrations.0002_default_rules").create_defaults(apps, None)
    held, free = Contact.objects.bulk_create(
        [
            Contact(email="tenue@exemple.fr", stage="lead"),
            Contact(email="libre@exemple.fr", stage="lead"),
        ]
    )
    sent: list[list[int]] = []
    monkeypatch.setattr("contacts.events.events_send", sent.append)
    now = timezone.now()
    ids = events_record_many(events=[
        NewEvent(held.pk, "download", now, {}, "api", "held-1"),
        NewEvent(free.pk, "download", now, {}, "api", "free-1"),
    ])  # fmt: skip
    sent.clear()
    locked, release = threading.Event(), threading.Event()

    def other_worker() -> None:  # an open batch holding one contact
        from django.db import transaction

        try:
            with transaction.atomic():
                Contact.objects.select_for_update(no_key=True).filter(pk=held.pk).exists()
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    locked.wait(30)
    try:
        assert events_process(event_ids=ids) == 1
        assert sent == [[ids[0]]]  # the held contact's event, sent again after commit
        held_event, free_event = Event.objects.filter(pk__in=ids).order_by("pk")
        assert Event.objects.unprocessed().filter(pk=held_event.pk).exists()
        assert not Event.objects.unprocessed().filter(pk=free_event.pk).exists()
    finally:
        release.set()
        thread.join(30)

    assert events_process(event_ids=sent[0]) == 1
    held.refresh_from_db()
    free.refresh_from_db()
    assert (held.score, free.score) == (1, 1)
    assert not Event.objects.unprocessed().exists()
