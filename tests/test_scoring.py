"""Live scoring, thresholds and decay against the real database, with the classic rules the
suite scores with (conftest.py; the shipped set is tested in test_default_rules.py)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone, translation

from contacts.models import Contact, Event, StageChange
from contacts.pipeline import events_process
from contacts.stages import stage_move
from scoring.decay import decay_apply
from scoring.models import ScoreEntry, ScoreRule, Threshold
from tests.factories import ContactFactory, EventFactory
from tests.utils import record

pytestmark = pytest.mark.django_db


def ledger_sum(contact: Contact) -> int:
    return contact.score_entries.aggregate(total=Sum("points"))["total"] or 0


def test_the_suite_scores_with_the_classic_rules():
    rules = {r.name: r.points for r in ScoreRule.objects.all()}
    assert rules == {
        "Download": 1, "Newsletter signup": 5, "Email opened": 2, "Email clicked": 10,
        "Pricing page": 15, "Demo request": 20, "Careers page": -5, "Newsletter unsubscribe": -5,
    }  # fmt: skip
    with translation.override("en"):
        thresholds = {t.stage: str(t) for t in Threshold.objects.all()}
    assert thresholds["mql"] == "Threshold: MQL at 20 points"
    assert thresholds["sql"] == "Threshold: SQL at 60 points or Demo requested"
    assert thresholds["ambassador"] == "Threshold: Ambassador at Referral or Review"


def test_a_pricing_page_view_scores_and_is_explained_in_the_ledger(
    django_capture_on_commit_callbacks,
):
    contact = ContactFactory(stage="lead")
    event = record(
        contact,
        "page_view",
        capture=django_capture_on_commit_callbacks,
        url="https://ex.fr/pricing",
    )

    entry = ScoreEntry.objects.get(contact=contact)
    assert (entry.points, entry.event, entry.rule.name, entry.at) == (
        15,
        event,
        "Pricing page",
        event.occurred_at,
    )
    assert contact.score == 15 == ledger_sum(contact)
    assert contact.stage == "lead"


def test_a_demo_request_takes_a_lead_to_sql_in_one_recorded_move(
    django_capture_on_commit_callbacks,
):
    contact = ContactFactory(stage="lead")
    record(contact, "demo_request", capture=django_capture_on_commit_callbacks)

    assert contact.stage == "sql"
    # One move: the contact was never an MQL or an HMQL, so no stay of zero minutes there.
    change = StageChange.objects.get(contact=contact)
    assert (change.from_stage, change.to_stage, change.cause) == ("lead", "sql", "threshold")
    assert change.moved_by == "Seuil\xa0: SQL à 60\xa0points ou Démo demandée"
    assert change.reason_text == "Démo demandée"


def test_the_same_event_sent_twice_scores_once(django_capture_on_commit_callbacks):
    contact = ContactFactory(stage="lead")
    for _ in range(2):
        record(
            contact, "download", key="crm-download-1", capture=django_capture_on_commit_callbacks
        )
    assert contact.score == 1 == ledger_sum(contact)


def test_mql_hysteresis_drop_to_lead_only_below_the_exit_score(django_capture_on_commit_callbacks):
    contact = ContactFactory(stage="lead")
    record(contact, "page_view", url="/pricing", capture=django_capture_on_commit_callbacks)
    record(contact, "newsletter_subscribe", capture=django_capture_on_commit_callbacks)
    assert (contact.score, contact.stage) == (20, "mql")

    record(contact, "page_view", url="/careers", capture=django_capture_on_commit_callbacks)
    assert (contact.score, contact.stage) == (15, "mql")  # below 20, not below 10: stays

    record(contact, "newsletter_unsubscribe", capture=django_capture_on_commit_callbacks)
    assert (contact.score, contact.stage) == (10, "mql")
    record(
        contact, "newsletter_unsubscribe", key="second", capture=django_capture_on_commit_callbacks
    )
    assert (contact.score, contact.stage) == (5, "lead")
    assert StageChange.objects.filter(contact=contact, to_stage="lead", cause="threshold").exists()


def test_a_review_makes_a_client_an_ambassador(django_capture_on_commit_callbacks):
    contact = ContactFactory(stage="client")
    record(contact, "review", capture=django_capture_on_commit_callbacks, rating=5)
    assert contact.stage == "ambassador"


def test_a_scanner_click_is_recorded_but_scores_nothing(
    django_capture_on_commit_callbacks, settings
):
    contact = ContactFactory(stage="lead")
    record(contact, "email_click", machine=True, capture=django_capture_on_commit_callbacks)
    entry = ScoreEntry.objects.get(contact=contact)
    assert (entry.points, entry.filtered) == (0, True)
    assert contact.score == 0

    settings.SCORE_MACHINE_SIGNALS = True
    record(contact, "email_click", machine=True, capture=django_capture_on_commit_callbacks)
    assert contact.score == 10


def test_odd_events_match_nothing_and_do_not_break_their_batch():
    contact = ContactFactory(stage="lead")
    odd = [
        EventFactory(contact=contact, pending=True, type="page_view", properties={"url": 42}),
        EventFactory(
            contact=contact, pending=True, type="page_view", properties=["not", "a", "dict"]
        ),
        EventFactory(contact=contact, pending=True, type="download", properties={"url": None}),
    ]
    assert events_process(event_ids=[e.pk for e in odd]) == 3
    contact.refresh_from_db()
    assert contact.score == 1 == ledger_sum(contact)
    assert not Event.objects.unprocessed().exists()


def test_a_batch_is_scored_in_a_few_queries_not_one_per_event():
    def batch(n: int) -> list[int]:
        contacts = ContactFactory.create_batch(n, stage="lead")
        return [EventFactory(contact=c, type="download", pending=True).pk for c in contacts]

    small, large = batch(10), batch(100)
    with CaptureQueriesContext(connection) as ten:
        events_process(event_ids=small)
    with CaptureQueriesContext(connection) as hundred:
        events_process(event_ids=large)
    assert ScoreEntry.objects.count() == 110
    # SQLite splits a bulk insert by its variable limit, hence the little slack.
    assert len(hundred.captured_queries) <= len(ten.captured_queries) + 2 < 25


def test_decay_takes_points_once_per_quiet_spell_and_spares_active_contacts():
    now = timezone.now()
    quiet = ContactFactory(stage="mql", score=15, last_activity_at=now - timedelta(days=100))
    ScoreEntry.objects.create(
        contact=quiet, points=15, reason="history", at=now - timedelta(days=100)
    )
    busy = ContactFactory(stage="mql", score=30, last_activity_at=now - timedelta(days=3))

    assert decay_apply(as_of=now) == 1
    assert decay_apply(as_of=now + timedelta(hours=2)) == 0  # the same day: nothing more
    assert decay_apply(as_of=now + timedelta(days=30)) == 0  # the same quiet spell: nothing more

    quiet.refresh_from_db()
    busy.refresh_from_db()
    assert (quiet.score, quiet.stage) == (5, "lead")  # 15 - 10, and below MQL's exit score
    assert quiet.score == ledger_sum(quiet)
    assert busy.score == 30 and not busy.score_entries.exists()


@pytest.mark.parametrize(
    ("properties", "machine", "points"),
    [
        (
            {"user_agent": "Mozilla/5.0 (Macintosh) Safari/605.1.15", "seconds_after_send": 5400},
            False,
            2,
        ),
        ({"user_agent": "Barracuda Sentinel (EE)", "seconds_after_send": 5400}, True, 0),
        ({"user_agent": "Mozilla/5.0 (Windows NT 10.0)", "seconds_after_send": 3}, True, 0),
    ],
)
def test_email_opens_from_scanners_are_flagged_on_the_event_and_not_scored(
    django_capture_on_commit_callbacks, properties, machine, points
):
    contact = ContactFactory(stage="lead")
    event = record(contact, "email_open", capture=django_capture_on_commit_callbacks, **properties)
    event.refresh_from_db()
    assert event.properties["machine"] is machine
    assert contact.score == points
    assert ScoreEntry.objects.get(event=event).filtered is machine


def test_a_stage_change_alone_does_not_send_a_contact_back_up_the_funnel(
    django_capture_on_commit_callbacks,
):
    # A rep recycled this SQL to marketing: its score still reaches SQL, but moving it back
    # is the next scored touchpoint's business, not the recycle's own stage_changed event.
    contact = ContactFactory(stage="sql", score=80, email="recycle@exemple.fr")
    with django_capture_on_commit_callbacks(execute=True):
        stage_move(contact=contact, to="lead", cause="user", reason="pas de budget")
    contact.refresh_from_db()
    assert contact.stage == "lead"

    record(contact, "page_view", capture=django_capture_on_commit_callbacks, url="/prix")
    assert contact.stage == "lead"  # a touchpoint no rule scores is not a step of its score
    record(contact, "download", capture=django_capture_on_commit_callbacks)
    assert contact.stage == "sql"


def test_a_batch_writes_points_and_last_activity_and_a_failed_event_gives_none(settings):
    """Points wait for the end of the batch and go out with its last activity; an event
    that breaks a later handler gives no points, and the others score once."""
    settings.LEADFUNNEL_EVENT_HANDLERS = [
        "scoring.handlers.on_event",
        "tests.handlers.fail_on_poison",
    ]
    anne = ContactFactory(stage="lead", last_activity_at=None)
    bruno = ContactFactory(stage="lead", last_activity_at=timezone.now() - timedelta(days=3))
    now = timezone.now()
    good = [
        EventFactory(pending=True, contact=anne, type="download", occurred_at=now - timedelta(hours=2)),
        EventFactory(pending=True, contact=anne, type="newsletter_subscribe", occurred_at=now - timedelta(hours=1)),
        EventFactory(pending=True, contact=bruno, type="download", occurred_at=now - timedelta(days=1)),
    ]  # fmt: skip
    poison = EventFactory(
        pending=True,
        contact=bruno,
        type="demo_request",
        occurred_at=now,
        properties={"poison": True},
    )

    assert events_process(event_ids=[e.pk for e in [*good, poison]]) == 3

    anne.refresh_from_db()
    bruno.refresh_from_db()
    assert (anne.score, bruno.score) == (6, 1)
    assert anne.score == ledger_sum(anne) and bruno.score == ledger_sum(bruno)
    assert bruno.stage == "lead"  # the demo request that would make him an SQL failed
    assert anne.last_activity_at == good[1].occurred_at
    assert bruno.last_activity_at == poison.occurred_at  # it happened, even if unhandled


@pytest.mark.parametrize(
    ("user_agent", "machine"),
    [("Barracuda Sentinel (EE)", True), ("Mozilla/5.0 (Macintosh) Safari/605.1.15", False)],
)
def test_an_open_stored_without_its_machine_flag_gets_it_when_scored(user_agent, machine):
    contact = ContactFactory(stage="lead")
    event = EventFactory(
        contact=contact,
        type="email_open",
        properties={"user_agent": user_agent, "seconds_after_send": 5400, "campaign": "c1"},
        pending=True,
    )

    events_process(event_ids=[event.pk])

    event.refresh_from_db()
    assert event.properties == {
        "user_agent": user_agent, "seconds_after_send": 5400, "campaign": "c1", "machine": machine
    }  # fmt: skip
    assert ScoreEntry.objects.get(event=event).filtered is machine
