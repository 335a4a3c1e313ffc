"""The pure engine: no database, explicit time."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nurturing import engine
from nurturing.engine import ContactFacts, EmailFact, EnrollmentState, EventFact, StepSpec

PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday, 10:00 in Paris
STATE = EnrollmentState(id=7, entered_at=T0, step_entered_at=T0)
FACTS = ContactFacts(stage="lead", score=10)


def decide(step, *, state=STATE, facts=FACTS, as_of=T0):
    return engine.decide(step, state, facts, as_of=as_of, tz=PARIS)


def test_an_enrolment_without_a_step_is_complete():
    assert decide(None).action == engine.COMPLETE


@pytest.mark.parametrize(
    ("elapsed", "action", "run_at"),
    [
        (timedelta(0), engine.WAIT, T0 + timedelta(days=2)),
        (timedelta(days=1, hours=23, minutes=59), engine.WAIT, T0 + timedelta(days=2)),
        (timedelta(days=2), engine.GOTO, None),
        (timedelta(days=30), engine.GOTO, None),
    ],
)
def test_a_wait_holds_the_enrolment_until_its_delay_has_passed(elapsed, action, run_at):
    step = StepSpec(id=1, kind="wait", next_id=2, delay=timedelta(days=2))
    decision = decide(step, as_of=T0 + elapsed)
    assert decision.action == action
    assert decision.run_at == run_at
    assert decision.next_step_id == (1 if action == engine.WAIT else 2)


@pytest.mark.parametrize(
    ("start", "expected_local"),
    [
        # Monday 10:00 is inside Mon–Fri 9–17: now.
        (datetime(2026, 3, 2, 10, 0, tzinfo=PARIS), datetime(2026, 3, 2, 10, 0, tzinfo=PARIS)),
        # Monday 07:00: later that morning.
        (datetime(2026, 3, 2, 7, 0, tzinfo=PARIS), datetime(2026, 3, 2, 9, 0, tzinfo=PARIS)),
        # Friday 18:00: Monday 09:00.
        (datetime(2026, 3, 6, 18, 0, tzinfo=PARIS), datetime(2026, 3, 9, 9, 0, tzinfo=PARIS)),
        # Saturday noon: Monday 09:00.
        (datetime(2026, 3, 7, 12, 0, tzinfo=PARIS), datetime(2026, 3, 9, 9, 0, tzinfo=PARIS)),
        # The weekend the clocks go forward (29 March 2026): still 09:00 local on Monday.
        (datetime(2026, 3, 28, 12, 0, tzinfo=PARIS), datetime(2026, 3, 30, 9, 0, tzinfo=PARIS)),
    ],
)
def test_a_send_window_waits_for_the_next_weekday_hours_in_the_time_zone(start, expected_local):
    until = engine.wait_until(
        start.astimezone(UTC),
        delay=None,
        weekdays=(0, 1, 2, 3, 4),
        start_hour=9,
        end_hour=17,
        tz=PARIS,
    )
    assert until == expected_local
    assert until.astimezone(PARIS).hour == expected_local.hour


def test_the_same_window_in_another_time_zone_opens_at_its_own_nine_oclock():
    start = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)  # 08:00 Paris, 02:00 New York
    new_york = ZoneInfo("America/New_York")
    until = engine.wait_until(start, delay=None, start_hour=9, end_hour=17, tz=new_york)
    assert until.astimezone(new_york).hour == 9
    assert until == datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


@given(
    start=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
    ),
    days=st.sets(st.integers(0, 6), min_size=1),
    opens=st.integers(0, 23),
    length=st.integers(1, 24),
    delay_hours=st.integers(0, 200),
)
def test_a_window_wait_always_ends_inside_the_window_and_never_before_the_delay(
    start, days, opens, length, delay_hours
):
    closes = min(opens + length, 24)
    until = engine.wait_until(
        start,
        delay=timedelta(hours=delay_hours),
        weekdays=tuple(days),
        start_hour=opens,
        end_hour=closes,
        tz=PARIS,
    )
    assert until >= start + timedelta(hours=delay_hours)
    assert until - (start + timedelta(hours=delay_hours)) <= timedelta(days=8)
    local = until.astimezone(PARIS)
    assert local.weekday() in days or (closes == 24 and local.hour == 0)
    if closes < 24:
        assert opens <= local.hour < closes or (local.hour == opens + 1 and opens in (2,))


def email(step_id, hours, *, opened=False, clicked=False):
    return EmailFact(step_id, T0 + timedelta(hours=hours), opened, clicked)


@pytest.mark.parametrize(
    ("condition", "facts", "expected"),
    [
        ("opened", FACTS, False),
        ("opened", ContactFacts("lead", 0, emails=(email(1, 0, opened=True),)), True),
        # The previous email is the latest one, not any of them.
        ("opened", ContactFacts("lead", 0, emails=(email(1, 0, opened=True), email(2, 1))), False),
        ("clicked", ContactFacts("lead", 0, emails=(email(1, 0, opened=True),)), False),
        ("clicked", ContactFacts("lead", 0, emails=(email(1, 0, clicked=True),)), True),
        ("score_at_least", ContactFacts("lead", 19), False),
        ("score_at_least", ContactFacts("lead", 20), True),
        ("stage_is", ContactFacts("mql", 0), True),
        ("stage_is", ContactFacts("lead", 0), False),
    ],
)
def test_a_condition_sends_the_enrolment_to_its_yes_or_no_target(condition, facts, expected):
    step = StepSpec(
        id=3,
        kind="condition",
        next_id=4,
        condition=condition,
        score=20,
        stage="mql",
        yes_id=10,
        no_id=20,
    )
    decision = decide(step, facts=facts, as_of=T0 + timedelta(days=1))
    assert decision.next_step_id == (10 if expected else 20)
    assert decision.branch == ("yes" if expected else "no")


def test_a_condition_without_targets_goes_on_to_the_next_step_either_way():
    step = StepSpec(id=3, kind="condition", next_id=4, condition="stage_is", stage="sql")
    assert decide(step).next_step_id == 4


@pytest.mark.parametrize(
    ("condition", "event_at", "tag", "expected"),
    [
        ("event_since_enrolment", T0 - timedelta(minutes=1), "tv", False),
        ("event_since_enrolment", T0 + timedelta(hours=1), "tv", True),
        ("event_since_enrolment", T0 + timedelta(hours=1), "radio", False),
        ("event_since_previous_step", T0 + timedelta(hours=1), "tv", False),
        ("event_since_previous_step", T0 + timedelta(days=1, hours=1), "tv", True),
    ],
)
def test_event_conditions_look_since_the_enrolment_or_the_previous_step(
    condition, event_at, tag, expected
):
    state = EnrollmentState(
        id=7,
        entered_at=T0,
        step_entered_at=T0 + timedelta(days=2),
        previous_step_at=T0 + timedelta(days=1),
    )
    facts = ContactFacts("lead", 0, events=(EventFact("page_view", event_at, frozenset({tag})),))
    step = StepSpec(
        id=3,
        kind="condition",
        condition=condition,
        event_type="page_view",
        tag="tv",
        yes_id=1,
        no_id=2,
    )
    decision = decide(step, state=state, facts=facts, as_of=T0 + timedelta(days=2))
    assert decision.next_step_id == (1 if expected else 2)


def test_a_split_is_deterministic_per_enrolment_and_near_its_percentages():
    step = StepSpec(id=5, kind="split", split_percent=30, yes_id=100, no_id=200)
    branches = []
    for enrollment_id in range(1, 2001):
        state = EnrollmentState(id=enrollment_id, entered_at=T0, step_entered_at=T0)
        first = decide(step, state=state)
        assert decide(step, state=state) == first  # asked again: the same branch
        branches.append(first.branch)
        assert first.next_step_id == (100 if first.branch == "A" else 200)
    share = branches.count("A") / len(branches)
    assert 0.26 < share < 0.34


@pytest.mark.parametrize(("percent", "expected"), [(0, {"B"}), (100, {"A"})])
def test_a_split_at_0_or_100_percent_sends_everyone_one_way(percent, expected):
    step = StepSpec(id=5, kind="split", split_percent=percent, next_id=6)
    seen = {
        decide(step, state=EnrollmentState(id=i, entered_at=T0, step_entered_at=T0)).branch
        for i in range(200)
    }
    assert seen == expected


def test_an_email_step_with_an_offer_gives_a_personal_code_valid_for_its_hours():
    step = StepSpec(
        id=9, kind="email", next_id=10, offer_percent=10, offer_code="POELE", offer_valid_hours=24
    )
    decision = decide(step, as_of=T0)
    offer = decision.details["offer"]
    assert decision.action == "email"
    assert offer["percent"] == 10
    assert offer["code"].startswith("POELE-") and len(offer["code"]) == 12
    assert datetime.fromisoformat(offer["expires_at"]) == T0 + timedelta(hours=24)
    other = decide(step, state=EnrollmentState(id=8, entered_at=T0, step_entered_at=T0))
    assert other.details["offer"]["code"] != offer["code"]


@pytest.mark.parametrize("kind", ["email", "score", "stage", "notify_owner"])
def test_action_steps_are_carried_out_then_go_to_the_next_step(kind):
    decision = decide(StepSpec(id=1, kind=kind, next_id=2))
    assert (decision.action, decision.next_step_id) == (kind, 2)


def test_an_exit_step_ends_the_enrolment():
    assert decide(StepSpec(id=1, kind="exit", next_id=2)).action == engine.EXIT


@pytest.mark.parametrize("attempts", range(0, 40))
def test_retries_never_wait_more_than_five_minutes(attempts):
    assert timedelta(0) < engine.retry_delay(attempts) <= timedelta(minutes=5)


def test_the_daily_cap_defers_to_when_the_oldest_email_of_the_day_is_24_hours_old():
    sent = [T0 - timedelta(hours=20), T0 - timedelta(hours=5), T0 - timedelta(hours=30)]
    assert engine.cap_free_at(sent, cap=3, as_of=T0) is None
    assert engine.cap_free_at(sent, cap=2, as_of=T0) == T0 + timedelta(hours=4)
    assert engine.cap_free_at(sent, cap=0, as_of=T0) is None


@pytest.mark.parametrize(
    ("properties", "tag", "expected"),
    [
        ({"content_tag": "tv"}, "tv", True),
        ({"product_tag": "saucepan"}, "saucepan", True),
        ({"tags": ["kitchen", "saucepan"]}, "saucepan", True),
        ({"category": "tv"}, "", True),
        ({"content_tag": "radio"}, "tv", False),
        ({}, "tv", False),
    ],
)
def test_triggers_match_the_event_type_and_its_tag(properties, tag, expected):
    assert (
        engine.trigger_matches("purchase", properties, wanted_type="purchase", wanted_tag=tag)
        is expected
    )
    assert (
        engine.trigger_matches("page_view", properties, wanted_type="purchase", wanted_tag=tag)
        is False
    )


TOKYO = ZoneInfo("Asia/Tokyo")


@pytest.mark.parametrize(
    ("contact_time_zone", "contact_zone", "run_at"),
    [
        # Monday 10:00 in Paris is 18:00 in Tokyo: Tokyo's 9–12 window is Tuesday 09:00 there.
        (True, TOKYO, datetime(2026, 3, 3, 9, 0, tzinfo=TOKYO)),
        (True, None, None),  # no time zone of its own: the site's window, open now
        (False, TOKYO, None),  # the step says the site's time zone
    ],
)
def test_a_window_in_the_contacts_time_zone_uses_it_when_it_has_one(
    contact_time_zone, contact_zone, run_at
):
    step = StepSpec(
        id=1, kind="wait", next_id=2, weekdays=(0, 1, 2, 3, 4), start_hour=9, end_hour=12,
        contact_time_zone=contact_time_zone,
    )  # fmt: skip
    decision = decide(step, facts=ContactFacts(stage="lead", score=0, time_zone=contact_zone))
    if run_at is None:
        assert decision.action == engine.GOTO
    else:
        assert (decision.action, decision.run_at) == (engine.WAIT, run_at)
