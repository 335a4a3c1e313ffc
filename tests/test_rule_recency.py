"""Recency: a fading rule's points follow the age of the event. Live scoring, the nightly beat
(``fade_apply``) and a full rescore give the same ledger and scores for the same moment, on
SQLite and PostgreSQL."""

import random
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from contacts.models import Contact
from contacts.pipeline import events_process
from scoring import rescore
from scoring.fading import fade_apply
from scoring.models import ScoreEntry, ScoreRule
from tests.factories import ContactFactory, EventFactory

pytestmark = pytest.mark.django_db
T = datetime(2026, 6, 1, 21, 50, tzinfo=UTC)  # 23:50 in Paris: midnight is near


def add_fading_rules() -> None:
    ScoreRule.objects.all().delete()
    ScoreRule.objects.create(name="Pricing, recent", event_type="page_view", points=10,
                             url_contains="/pricing", fade_full_days=30, fade_zero_days=90)  # fmt: skip
    # No "at most N times" here: which events a cap keeps depends on the order they arrive in
    # live (the earliest at a rescore), and a fading line's worth on its event's age.
    ScoreRule.objects.create(name="Careers, recent", event_type="page_view", points=-6,
                             url_contains="/careers", fade_full_days=0, fade_zero_days=20)  # fmt: skip
    ScoreRule.objects.create(name="Two demos", event_type="demo_request", points=20,
                             count_at_least=2, count_within_days=60, fade_full_days=7,
                             fade_zero_days=30)  # fmt: skip
    ScoreRule.objects.create(name="Download", event_type="download", points=1)


def arrive(contacts, rng: random.Random, n: int, now: datetime) -> None:
    """``n`` events up to 120 days old, scored live at ``now`` in two batches."""
    ids = []
    for _ in range(n):
        kind, properties = rng.choice([("page_view", {"url": "/pricing"}),
                                       ("page_view", {"url": "/careers"}),
                                       ("demo_request", {}), ("download", {})])  # fmt: skip
        at = now - timedelta(minutes=rng.randint(0, 60 * 24 * 120))
        ids.append(EventFactory(contact=rng.choice(contacts), type=kind, occurred_at=at,
                                properties=properties, pending=True).pk)  # fmt: skip
    with time_machine.travel(now, tick=False):
        events_process(event_ids=ids[: n // 2])
        events_process(event_ids=ids[n // 2 :])


def ledger() -> set[tuple]:
    return set(ScoreEntry.objects.values_list("contact_id", "rule__name", "event_id", "points",
                                              "reason"))  # fmt: skip


def scores() -> dict[int, int]:
    return dict(Contact.objects.values_list("pk", "score"))


def rescored_at(moment: datetime) -> tuple[set[tuple], dict[int, int]]:
    ScoreEntry.objects.all().delete()
    Contact.objects.update(score=0)
    with time_machine.travel(moment, tick=False):
        run = rescore.rescore_start(reason="test")
        rescore.rescore_run(rescore_id=run.pk)
    run.refresh_from_db()
    assert run.status == "done", run.error
    return ledger(), scores()


@pytest.mark.parametrize("seed", [3, 4])
def test_live_scoring_the_nightly_fading_and_a_rescore_agree_at_every_moment(seed):
    add_fading_rules()
    rng = random.Random(seed)
    contacts = ContactFactory.create_batch(4, stage="client")  # clients: no stage moves
    arrive(contacts, rng, 120, T)
    assert ledger() == rescored_at(T)[0]
    faded = set()
    for days in (0.01, 1, 13, 40, 95):  # the first: just past midnight, a new calendar day
        moment = T + timedelta(days=days)
        arrive(contacts, rng, 20, moment)  # new events (some old ones), scored live then
        fade_apply(as_of=moment)
        live, live_scores = ledger(), scores()
        faded |= {line for line in live if 0 <= abs(line[3]) < 6}
        assert fade_apply(as_of=moment) == 0  # already right: nothing written twice
        assert rescored_at(moment) == (live, live_scores)
        for contact in Contact.objects.all():
            assert contact.score == sum(contact.score_entries.values_list("points", flat=True))
    assert {line[1] for line in faded} >= {"Pricing, recent", "Careers, recent"}


def test_the_explanation_shows_how_a_rule_fades(marketer_client):
    add_fading_rules()
    contact = ContactFactory(stage="client")
    EventFactory(contact=contact, occurred_at=T - timedelta(days=60), pending=True,
                 properties={"url": "/pricing"})  # fmt: skip
    with time_machine.travel(T, tick=False):
        events_process(event_ids=list(contact.events.values_list("pk", flat=True)))
    contact.refresh_from_db()
    assert contact.score == 5

    with time_machine.travel(T + timedelta(days=20), tick=False):
        assert fade_apply() == 1
        body = marketer_client.get(reverse("score-explanation", args=[contact.pk])).content.decode()

    contact.refresh_from_db()
    assert contact.score == 1  # 80 days old: 10 x 10 / 60, truncated
    assert "+1" in body
    assert "points pleins pendant 30 jours, aucun à partir de 90 jours" in body


def test_a_faded_out_line_still_counts_for_at_most_once_live_and_at_a_rescore():
    add_fading_rules()
    ScoreRule.objects.filter(name="Pricing, recent").update(max_times=1)
    contact = ContactFactory(stage="client")
    for age in (100, 0):  # in time order: the old visit took the only time, faded out
        EventFactory(contact=contact, occurred_at=T - timedelta(days=age), pending=True,
                     properties={"url": "/pricing"})  # fmt: skip
        with time_machine.travel(T, tick=False):
            events_process(event_ids=list(contact.events.values_list("pk", flat=True)))
    live = ledger()
    assert [line[3] for line in live] == [0]
    assert rescored_at(T) == (live, {contact.pk: 0})
