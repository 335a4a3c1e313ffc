"""Numeric and count conditions: live scoring and a full rescore agree, on SQLite and PostgreSQL,
events arriving in several batches and out of order."""

import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from contacts.models import Contact, Event
from contacts.pipeline import events_process
from scoring import rescore
from scoring.live import event_fact
from scoring.models import ScoreEntry, ScoreRule
from tests.factories import ContactFactory, EventFactory
from tests.test_rescore import NUMBERS

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
OPERATORS = [("gt", "120", None), ("gte", "120", None), ("lt", "-0.5", None),
             ("lte", "0.1", None), ("between", "0.1", "99.95"), ("between", "-3", "-3"),
             ("gte", "0.3", None), ("gt", "12345678901.2344", None),
             ("lte", "12345678901.2344", None), ("gt", "9999999999.9999", None)]  # fmt: skip


def test_sql_and_engine_read_every_value_as_the_same_number_or_none():
    contact = ContactFactory(stage="client")
    events = [EventFactory(contact=contact, properties={"n": value}) for value in NUMBERS]
    events.append(EventFactory(contact=contact, properties={"other": 1}))  # no such key
    for operator, low, high in OPERATORS:
        rule = ScoreRule(name="n", event_type="page_view", points=1, property_name="n",
                         property_operator=operator, property_number=Decimal(low),
                         property_number_max=Decimal(high) if high else None).to_engine()  # fmt: skip
        in_sql = set(rescore.matching_events(rule).values_list("pk", flat=True))
        in_python = {event.pk for event in events if rule.matches(event_fact(event))}
        assert in_sql == in_python, (operator, low, high)
        assert in_python  # each comparison matches something, and not everything
        assert len(in_python) < len(events)
    for broken in [{"property_operator": "gt"}, {"property_operator": "between"},
                   {"property_operator": "above", "property_number": 1}]:  # fmt: skip
        rule = ScoreRule(name="n", event_type="page_view", points=1, property_name="n",
                         **{"property_number": 0, **broken}).to_engine()  # fmt: skip
        rule = replace(rule, property_number=broken.get("property_number"))
        assert not rescore.matching_events(rule).exists()
        assert not any(rule.matches(event_fact(event)) for event in events)


def add_count_rules() -> None:
    ScoreRule.objects.all().delete()
    ScoreRule.objects.create(name="Pricing 3 in 30 days", event_type="page_view", points=10,
                             url_contains="/pricing", count_at_least=3, count_within_days=30)  # fmt: skip
    ScoreRule.objects.create(name="Pricing twice in 7 days, once", event_type="page_view",
                             points=7, url_contains="/pricing", count_at_least=2,
                             count_within_days=7, max_times=1)  # fmt: skip
    ScoreRule.objects.create(name="Long reads, 2 a week", event_type="page_view", points=4,
                             property_name="seconds", property_operator="gte",
                             property_number=Decimal("60"), count_at_least=2,
                             count_within_days=7, max_points=6, cap_period="week")  # fmt: skip
    ScoreRule.objects.create(name="Clicks 2 in 1 day", event_type="email_click", points=3,
                             count_at_least=2, count_within_days=1)  # fmt: skip


def events_in_batches(contacts, rng: random.Random, n: int, batches: int) -> None:
    """``n`` events over 90 days, stored and scored batch by batch in a shuffled order: later
    batches bring events earlier than those already scored."""
    moments = [T0 + timedelta(minutes=rng.randint(0, 60 * 24 * 90)) for _ in range(n)]
    moments += [moments[0]] * 3 + [moments[1] + timedelta(days=30)]  # ties and a window's edge
    rng.shuffle(moments)
    size = len(moments) // batches + 1
    for start in range(0, len(moments), size):
        ids = []
        for at in moments[start : start + size]:
            kind, properties = rng.choice([
                ("page_view", {"url": rng.choice(["/pricing", "/pricing/pro", "/blog"])}),
                ("page_view", {"url": "/pricing", "machine": True}),
                ("page_view", {"url": "/docs", "seconds": rng.choice([30, 60, "90", "x", True])}),
                ("email_click", {"user_agent": "Mozilla/5.0"}),
            ])  # fmt: skip
            ids.append(EventFactory(contact=rng.choice(contacts), type=kind, occurred_at=at,
                                    properties=properties, pending=True).pk)  # fmt: skip
        events_process(event_ids=ids)


def lines_by_rule() -> Counter:
    """Points per contact and rule, and the lines of rules without a cap event by event."""
    totals: Counter = Counter()
    for contact_id, rule, event_id, points, filtered in ScoreEntry.objects.filter(
        event__isnull=False
    ).values_list("contact_id", "rule__name", "event_id", "points", "filtered"):
        totals[(contact_id, rule)] += points
        if rule in {"Pricing 3 in 30 days", "Clicks 2 in 1 day"} or filtered:
            totals[(contact_id, rule, event_id, points, filtered)] += 1
    return totals


@pytest.mark.parametrize("seed", [1, 2])
def test_count_rules_score_the_same_live_in_batches_out_of_order_and_at_a_rescore(seed):
    add_count_rules()
    rng = random.Random(seed)
    contacts = ContactFactory.create_batch(5, stage="client")  # clients: no stage moves
    events_in_batches(contacts, rng, 240, batches=6)
    live, live_scores = lines_by_rule(), dict(Contact.objects.values_list("pk", "score"))
    assert {rule for _, rule in (key[:2] for key in live)} == set(
        ScoreRule.objects.values_list("name", flat=True)
    )  # every rule scored somewhere
    assert not Event.objects.filter(pending__isnull=False).exists()

    ScoreEntry.objects.all().delete()
    Contact.objects.update(score=0)
    run = rescore.rescore_start(reason="test")
    rescore.rescore_run(rescore_id=run.pk)

    run.refresh_from_db()
    assert run.status == "done", run.error
    assert lines_by_rule() == live
    assert dict(Contact.objects.values_list("pk", "score")) == live_scores


def test_a_late_event_completes_the_count_of_a_later_one_already_scored_live():
    add_count_rules()
    contact = ContactFactory(stage="client")
    for days in (0, 2):
        events_process(event_ids=[EventFactory(contact=contact, occurred_at=T0 + timedelta(
            days=days), properties={"url": "/pricing"}, pending=True).pk])  # fmt: skip
    third = EventFactory(contact=contact, occurred_at=T0 + timedelta(days=40),
                         properties={"url": "/pricing"}, pending=True)  # fmt: skip
    events_process(event_ids=[third.pk])
    assert not ScoreEntry.objects.filter(rule__name="Pricing 3 in 30 days").exists()

    late = EventFactory(contact=contact, occurred_at=T0 + timedelta(days=1),
                        properties={"url": "/pricing"}, pending=True)  # fmt: skip
    events_process(event_ids=[late.pk])

    # The day-2 visit is the third in 30 days; the late day-1 one the second; day 40 is alone.
    lines = ScoreEntry.objects.filter(rule__name="Pricing 3 in 30 days")
    assert [(line.event.occurred_at, line.points) for line in lines] == [
        (T0 + timedelta(days=2), 10)]  # fmt: skip
    contact.refresh_from_db()
    assert contact.score == 10 + 7  # and "twice in 7 days, once" at the day-1 visit


def test_live_scoring_reads_prior_events_once_per_batch_not_per_event():
    add_count_rules()

    def queries(contacts: int) -> int:
        people = ContactFactory.create_batch(contacts, stage="client")
        ids = [EventFactory(contact=person, occurred_at=T0 + timedelta(hours=hour),
                            properties={"url": "/pricing"}, pending=True).pk
               for person in people for hour in range(3)]  # fmt: skip
        with CaptureQueriesContext(connection) as captured:
            events_process(event_ids=ids)
        return sum(1 for q in captured.captured_queries if "contacts_event" in q["sql"])

    assert queries(2) == queries(20)
