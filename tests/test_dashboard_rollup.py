"""The daily event rollup: kept up to date batch by batch as events are processed, and always
equal to what a rebuild from the event table gives."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command

from contacts.events import NewEvent, event_record, events_record_many
from contacts.models import Contact, Event, EventDailyCount, StageChange, StageStay
from contacts.pipeline import events_process
from contacts.reports.rollups import rollups_rebuild
from contacts.stages import stage_move
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
TYPES = ["page_view", "email_open", "email_click", "download", "form_submit", "demo_request"]
SOURCES = ["beacon", "api", "form", "email", ""]


def snapshot() -> dict[tuple[date, str, str], int]:
    return {
        (row.day, row.type, row.source): row.count
        for row in EventDailyCount.objects.all()
        if row.count
    }


@pytest.fixture(autouse=True)
def no_scoring(settings):
    settings.LEADFUNNEL_EVENT_HANDLERS = [
        "tests.handlers.fail_on_poison",
        "contacts.reports.rollups.on_event",
    ]


def test_incremental_counts_equal_a_rebuild_from_the_events():
    rng = random.Random(6)
    contacts = ContactFactory.create_batch(5)
    # Around midnight in Paris, both sides of the DST change, one at a time and in batches.
    start = datetime(2026, 3, 27, 22, 0, tzinfo=PARIS)
    moments = [start + timedelta(minutes=rng.randrange(0, 4 * 24 * 60)) for _ in range(300)]
    for moment in moments[:40]:
        event_record(contact=rng.choice(contacts), type=rng.choice(TYPES),
                     occurred_at=moment, source=rng.choice(SOURCES))  # fmt: skip
    events_record_many(
        events=[
            NewEvent(contact_id=rng.choice(contacts).pk, type=rng.choice(TYPES),
                     occurred_at=moment, properties={}, source=rng.choice(SOURCES))
            for moment in moments[40:]
        ]
    )  # fmt: skip
    ids = list(Event.objects.order_by("pk").values_list("pk", flat=True))
    for start_at in range(0, len(ids), 70):  # several batches, one delivered twice
        events_process(event_ids=ids[start_at : start_at + 70])
    events_process(event_ids=ids[:70])

    incremental = snapshot()
    assert sum(incremental.values()) == 300

    rollups_rebuild()

    assert snapshot() == incremental


def test_days_are_counted_in_the_sites_time_zone():
    contact = ContactFactory()
    late = datetime(2026, 2, 3, 23, 30, tzinfo=PARIS)  # 22:30 UTC
    after_midnight = datetime(2026, 2, 4, 0, 30, tzinfo=PARIS)  # still the 3rd in UTC
    for moment in (late, after_midnight):
        event_record(contact=contact, type="page_view", occurred_at=moment, source="beacon")
    events_process(event_ids=list(Event.objects.values_list("pk", flat=True)))

    assert snapshot() == {
        (date(2026, 2, 3), "page_view", "beacon"): 1,
        (date(2026, 2, 4), "page_view", "beacon"): 1,
    }
    rollups_rebuild()
    assert snapshot() == {
        (date(2026, 2, 3), "page_view", "beacon"): 1,
        (date(2026, 2, 4), "page_view", "beacon"): 1,
    }


def test_unprocessed_and_failing_events_are_in_neither_count():
    contact = ContactFactory()
    moment = datetime(2026, 2, 3, 10, tzinfo=PARIS)
    good, _ = event_record(contact=contact, type="download", occurred_at=moment, source="api")
    bad, _ = event_record(contact=contact, type="download", occurred_at=moment, source="api",
                          properties={"poison": True})  # fmt: skip
    event_record(contact=contact, type="download", occurred_at=moment, source="api")  # waiting

    events_process(event_ids=[good.pk, bad.pk])

    assert snapshot() == {(date(2026, 2, 3), "download", "api"): 1}
    rollups_rebuild()
    assert snapshot() == {(date(2026, 2, 3), "download", "api"): 1}


def test_the_rebuild_command_repairs_a_rollup_and_says_so():
    contact = ContactFactory()
    event_record(
        contact=contact, type="download", occurred_at=datetime(2026, 2, 3, 10, tzinfo=PARIS)
    )
    events_process(event_ids=list(Event.objects.values_list("pk", flat=True)))
    EventDailyCount.objects.update(count=99)  # drifted (a restore, a bug)
    out = StringIO()

    call_command("rollup_rebuild", stdout=out)

    assert snapshot() == {(date(2026, 2, 3), "download", ""): 1}
    assert "Rebuilt 1 daily event counts and 0 stage stays." in out.getvalue()


def stays() -> set[tuple]:
    return set(
        StageStay.objects.values_list(
            "stage_change_id", "source_id", "stage", "entered_at", "left_at", "next_stage"
        )
    )


def test_stage_stays_are_the_same_whatever_order_their_events_are_processed_in():
    first = ContactFactory(stage="suspect", created_at=datetime(2026, 1, 2, 9, tzinfo=PARIS))
    second = ContactFactory(stage="suspect", created_at=datetime(2026, 1, 3, 9, tzinfo=PARIS))
    for contact, path in [(first, ["lead", "mql", "sql", "lead"]), (second, ["lead", "client"])]:
        for day, stage in enumerate(path, start=5):
            stage_move(contact=contact, to=stage, cause=StageChange.Cause.USER,
                       at=datetime(2026, 1, day, 10, tzinfo=PARIS))  # fmt: skip
    changes = Event.objects.filter(type="stage_changed").order_by("-occurred_at")
    for event in changes:  # newest first, one at a time: the worst order
        events_process(event_ids=[event.pk])

    incremental = stays()
    assert len(incremental) == 6
    sql_stay = StageStay.objects.get(stage="sql")
    assert (sql_stay.entered_at, sql_stay.left_at, sql_stay.next_stage) == (
        datetime(2026, 1, 7, 10, tzinfo=PARIS), datetime(2026, 1, 8, 10, tzinfo=PARIS), "lead",
    )  # fmt: skip
    suspect_stay = StageStay.objects.get(stage_change__contact=second, stage="suspect")
    assert suspect_stay.entered_at == second.created_at

    rollups_rebuild()

    assert stays() == incremental
    assert Contact.objects.count() == 2


def test_the_demo_data_comes_with_its_daily_counts(settings):
    call_command("demo", contacts=200, events=2000, stdout=StringIO())

    counted = sum(EventDailyCount.objects.values_list("count", flat=True))
    assert counted == Event.objects.filter(pending__isnull=True).count() > 2000
    assert StageStay.objects.count() == StageChange.objects.count() > 200
