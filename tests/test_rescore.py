"""Rescoring in set-based SQL gives exactly the ledger that live scoring gives, event by event."""

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum

from contacts.models import Contact, Event, StageChange
from contacts.pipeline import events_process
from scoring import rescore
from scoring.models import Rescore, ScoreEntry, ScoreRule, Threshold
from scoring.preview import rescore_preview, rules_with
from tests.factories import ContactFactory, EventFactory

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def add_tricky_rules() -> None:
    ScoreRule.objects.create(
        name="Pro plan pages",
        event_type="page_view",
        points=7,
        url_pattern=r"/pricing/(pro|team)$",
        max_times=2,
    )
    ScoreRule.objects.create(
        name="Webinar form",
        event_type="form_submit",
        points=12,
        form="webinar",
        max_points=20,
        cap_period="week",
    )
    ScoreRule.objects.create(
        name="Plan property",
        event_type="trial_started",
        points=9,
        property_name="plan",
        property_value="5",
    )
    # Numbers: JSON numbers and plain decimal strings; text, booleans, missing keys never match.
    ScoreRule.objects.create(name="Long read", event_type="page_view", points=4,
                             property_name="seconds", property_operator="gte",
                             property_number=Decimal("120"))  # fmt: skip
    ScoreRule.objects.create(name="Refund", event_type="purchase", points=-6,
                             property_name="amount", property_operator="lt",
                             property_number=Decimal("-0.5"), max_times=3)  # fmt: skip
    ScoreRule.objects.create(name="Mid-size order", event_type="purchase", points=8,
                             property_name="amount", property_operator="between",
                             property_number=Decimal("0.1"), property_number_max=Decimal("99.95"),
                             max_points=16, cap_period="month")  # fmt: skip
    ScoreRule.objects.create(name="Spring campaign", event_type="download", points=3,
                             starts_at=T0 + timedelta(days=10), ends_at=T0 + timedelta(days=20))  # fmt: skip


# Numbers and things that are not: compared as numbers by the engine and both databases alike.
NUMBERS = [120, 119.99, "120", "120.0", "119.9999", 1e3, 0.1, "0.1", 0.1 + 0.2, 99.95, "99.95",
           99.950001, -0.5, "-0.5", -0.51, "-3", -130, "007", "abc", "", " 120", "120\n",
           "1e3", "+5", ".5", "5.", "1,5", True, False, None, [120], {"n": 120},
           "123456789012345", "1234567890123456.5", "12345678901.2345", 12345678901.2343]  # fmt: skip


def random_events(contacts, rng: random.Random, n: int) -> list[int]:
    kinds = [
        ("page_view", lambda: {"url": rng.choice(["/pricing", "/pricing/pro", "/pricing/team",
                                                  "/careers", "/blog/x", "/PRICING/pro"])}),
        ("page_view", lambda: {"url": 42}),
        ("form_submit", lambda: {"form": rng.choice(["webinar", "contact"])}),
        ("trial_started", lambda: {"plan": rng.choice([5, "5", "pro"])}),
        ("download", lambda: {"file": "x.pdf"}),
        ("page_view", lambda: {"url": "/docs", "seconds": rng.choice(NUMBERS)}),
        ("purchase", lambda: {"amount": rng.choice(NUMBERS)}),
        ("purchase", lambda: {"other": 50}),
        ("email_open", lambda: {}),
        ("email_click", lambda: {"machine": rng.random() < 0.3}),
        ("newsletter_subscribe", lambda: {}),
        ("newsletter_unsubscribe", lambda: {}),
    ]  # fmt: skip
    ids = []
    for _ in range(n):
        kind, properties = rng.choice(kinds)
        ids.append(EventFactory(
            contact=rng.choice(contacts), type=kind, properties=properties(), pending=True,
            occurred_at=T0 + timedelta(minutes=rng.randint(0, 60 * 24 * 40)),
        ).pk)  # fmt: skip
    return ids


def ledger() -> set[tuple]:
    return set(ScoreEntry.objects.filter(event__isnull=False).values_list(
        "contact_id", "rule_id", "event_id", "points", "filtered", "reason"))  # fmt: skip


def scores() -> dict[int, int]:
    return dict(Contact.objects.values_list("pk", "score"))


def test_a_full_rescore_rebuilds_exactly_the_live_ledger():
    add_tricky_rules()
    rng = random.Random(7)
    contacts = ContactFactory.create_batch(12, stage="client")  # clients: no stage moves here
    events_process(event_ids=random_events(contacts, rng, 400))
    live_ledger, live_scores = ledger(), scores()
    assert len(live_ledger) > 100
    assert {"Long read", "Refund", "Mid-size order"} <= {line[-1] for line in live_ledger}

    ScoreEntry.objects.all().delete()
    Contact.objects.update(score=0)
    run = rescore.rescore_start(reason="test")
    rescore.rescore_run(rescore_id=run.pk)

    run.refresh_from_db()
    assert run.status == "done" and run.steps_done == run.steps_total
    assert ledger() == live_ledger
    assert scores() == live_scores
    for contact in Contact.objects.all():
        assert contact.score == (contact.score_entries.aggregate(s=Sum("points"))["s"] or 0)


def rescore_from_scratch() -> Rescore:
    ScoreEntry.objects.all().delete()
    Contact.objects.update(score=0)
    run = rescore.rescore_start(reason="test")
    rescore.rescore_run(rescore_id=run.pk)
    run.refresh_from_db()
    return run


def test_a_full_rescore_counts_machine_signals_when_the_setting_says_so(settings):
    settings.SCORE_MACHINE_SIGNALS = True
    add_tricky_rules()
    rng = random.Random(11)
    contacts = ContactFactory.create_batch(8, stage="client")
    events_process(event_ids=random_events(contacts, rng, 300))
    live_ledger, live_scores = ledger(), scores()
    assert not any(filtered for *_, filtered, _ in live_ledger)

    assert rescore_from_scratch().status == "done"

    assert ledger() == live_ledger
    assert scores() == live_scores


def test_a_rescore_writes_only_the_lines_and_scores_that_change():
    contacts = ContactFactory.create_batch(3, stage="client")
    for contact in contacts[:2]:
        EventFactory(contact=contact, type="download", pending=True)
    EventFactory(contact=contacts[2], type="demo_request", pending=True)
    events_process(event_ids=list(Event.objects.values_list("pk", flat=True)))
    untouched = ScoreEntry.objects.get(contact=contacts[2])
    ScoreRule.objects.filter(name="Download").update(points=4)

    run = rescore.rescore_start(reason="Download now 4")
    rescore.rescore_run(rescore_id=run.pk)

    run.refresh_from_db()
    assert (run.lines, run.contacts_changed) == (4, 2)  # two lines out, two in
    assert scores() == {contacts[0].pk: 4, contacts[1].pk: 4, contacts[2].pk: 20}
    assert ScoreEntry.objects.get(contact=contacts[2]).pk == untouched.pk


def test_a_threshold_change_moves_stages_at_the_rescore_both_ways():
    at = {score: ContactFactory(stage="lead", score=score) for score in (5, 25, 45)}
    at |= {-score: ContactFactory(stage="mql", score=score) for score in (5, 25, 45)}
    for contact in Contact.objects.all():  # each score as a manual adjustment the rescore keeps
        ScoreEntry.objects.create(contact=contact, points=contact.score, reason="manual",
                                  at=T0)  # fmt: skip
    Threshold.objects.filter(stage="mql").update(min_score=40, exit_below=30)

    run = rescore.rescore_start(reason="MQL at 40")
    rescore.rescore_run(rescore_id=run.pk)

    run.refresh_from_db()
    assert (run.contacts_changed, run.stage_moves) == (0, 3)
    stages = dict(Contact.objects.values_list("pk", "stage"))
    assert [stages[at[key].pk] for key in (5, 25, 45, -5, -25, -45)] == [
        "lead", "lead", "mql", "lead", "lead", "mql"]  # fmt: skip
    assert set(StageChange.objects.filter(cause="threshold").values_list(
        "contact_id", "from_stage", "to_stage")) == {
        (at[45].pk, "lead", "mql"), (at[-5].pk, "mql", "lead"), (at[-25].pk, "mql", "lead")}  # fmt: skip


def test_a_rule_change_previewed_then_rescored(django_capture_on_commit_callbacks):
    rng = random.Random(3)
    contacts = ContactFactory.create_batch(30, stage="lead")
    events_process(event_ids=random_events(contacts, rng, 300))
    mqls_before = Contact.objects.filter(stage="mql").count()
    pricing = ScoreRule.objects.get(name="Pricing page")
    pricing.points, pricing.max_points, pricing.cap_period = 40, None, ""

    preview = rescore_preview(rules=rules_with(pricing.to_engine()))

    assert preview.gained > 0 and preview.lost == 0
    assert preview.stage_changes > 0 and preview.sample
    assert ScoreEntry.objects.filter(rule=pricing, points=40).count() == 0  # nothing written
    with django_capture_on_commit_callbacks(execute=True):  # the task runs eagerly in tests
        pricing.save()
        run = rescore.rescore_start(reason="Pricing page now 40")
    run.refresh_from_db()
    assert run.status == "done"
    assert run.contacts_changed == preview.contacts_changed
    assert run.stage_moves >= preview.stage_changes
    assert Contact.objects.exclude(stage="lead").count() > mqls_before
    assert StageChange.objects.filter(cause="threshold").count() >= preview.stage_changes


def test_a_deleted_rule_loses_its_points_at_the_rescore():
    contact = ContactFactory(stage="client")
    events_process(event_ids=[EventFactory(contact=contact, type="download", pending=True).pk])
    contact.refresh_from_db()
    assert contact.score == 1
    ScoreRule.objects.filter(name="Download").delete()

    run = rescore.rescore_start(reason="Download removed")
    rescore.rescore_run(rescore_id=run.pk)

    contact.refresh_from_db()
    assert contact.score == 0 and not contact.score_entries.exists()


def test_a_rescore_runs_once_even_if_its_task_arrives_twice():
    run = rescore.rescore_start(reason="twice")
    assert rescore.rescore_run(rescore_id=run.pk) is not None
    assert rescore.rescore_run(rescore_id=run.pk) is None
    assert Rescore.objects.get(pk=run.pk).status == "done"
