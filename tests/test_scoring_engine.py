"""The pure scoring engine: no database, no clock."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contacts.machine_signals import is_machine_signal
from scoring import engine
from scoring.engine import DecayRule, Earned, EventFact, Rule, Threshold

PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)  # a Monday

PRICING = Rule(
    id=1, name="Pricing page", event_type="page_view", points=15, url_contains="/pricing"
)
DOWNLOAD = Rule(id=2, name="Download", event_type="download", points=1)
CAREERS = Rule(id=3, name="Careers", event_type="page_view", points=-5, url_contains="/careers")
THRESHOLDS = [
    Threshold(id=1, stage="mql", min_score=20, exit_below=10, demote=True),
    Threshold(id=2, stage="hmql", content_tag="high-intent", exit_below=10, demote=True),
    Threshold(id=3, stage="sql", min_score=60, event_types=("demo_request",)),
    Threshold(id=4, stage="ambassador", event_types=("referral", "review")),
]


def view(n: int, url: str, at: datetime = T0, **props) -> EventFact:
    return EventFact(
        id=n, contact_id=7, type="page_view", occurred_at=at, properties={"url": url, **props}
    )


def score(rules, events, earned=None, **kw):
    return engine.score_events(rules, events, earned or Earned(), tz=PARIS, **kw)


@pytest.mark.parametrize(
    ("rule", "event", "matches"),
    [
        (PRICING, view(1, "https://ex.fr/pricing?plan=pro"), True),
        (PRICING, view(1, "https://ex.fr/PRICING"), True),
        (PRICING, view(1, "https://ex.fr/blog"), False),
        (
            replace(PRICING, url_contains="", url_pattern=r"/pricing/(pro|team)$"),
            view(1, "/pricing/pro"),
            True,
        ),
        (
            replace(PRICING, url_contains="", url_pattern=r"/pricing/(pro|team)$"),
            view(1, "/pricing/free"),
            False,
        ),
        (
            replace(PRICING, url_contains="", content_tag="high-intent"),
            view(1, "/x", content_tag="high-intent"),
            True,
        ),
        (
            replace(PRICING, url_contains="", content_tag="high-intent"),
            view(1, "/x", content_tag="blog"),
            False,
        ),
        (
            replace(PRICING, url_contains="", property_name="plan", property_value="pro"),
            view(1, "/x", plan="pro"),
            True,
        ),
        (
            replace(PRICING, url_contains="", property_name="plan", property_value="pro"),
            view(1, "/x"),
            False,
        ),
        (replace(PRICING, active=False), view(1, "/pricing"), False),
        (replace(PRICING, starts_at=T0 + timedelta(days=1)), view(1, "/pricing"), False),
        (replace(PRICING, ends_at=T0), view(1, "/pricing"), False),
        (replace(PRICING, ends_at=T0 + timedelta(seconds=1)), view(1, "/pricing"), True),
        (PRICING, EventFact(1, 7, "download", T0, {"url": "/pricing"}), False),
        (DOWNLOAD, EventFact(1, 7, "download", T0, {"url": None, "odd": [1, {"x": 2}]}), True),
    ],
)
def test_a_rule_matches_only_events_meeting_all_its_conditions(rule, event, matches):
    assert rule.matches(event) is matches


def test_each_line_says_which_rule_gave_the_points():
    lines, _ = score([PRICING, DOWNLOAD, CAREERS], [view(1, "/pricing"), view(2, "/careers")])
    assert [(line.reason, line.points, line.event_id) for line in lines] == [
        ("Pricing page", 15, 1), ("Careers", -5, 2),
    ]  # fmt: skip


def test_a_rule_capped_at_n_times_scores_n_times():
    rule = replace(DOWNLOAD, max_times=2)
    events = [EventFact(i, 7, "download", T0 + timedelta(hours=i)) for i in range(5)]
    lines, earned = score([rule], events)
    assert [line.event_id for line in lines] == [0, 1]
    more, _ = score([rule], [EventFact(9, 7, "download", T0 + timedelta(days=9))], earned)
    assert more == []


def test_a_points_cap_per_day_clips_then_resets_the_next_day_in_the_site_time_zone():
    rule = replace(PRICING, max_points=20, cap_period="day")
    # 22:30 UTC on the 4th is already the 5th in Paris (UTC+2 in May).
    events = [view(1, "/pricing", T0), view(2, "/pricing", T0 + timedelta(hours=1)),
              view(3, "/pricing", T0 + timedelta(hours=2)),
              view(4, "/pricing", T0.replace(hour=22, minute=30))]  # fmt: skip
    lines, _ = score([rule], events)
    assert [line.points for line in lines] == [15, 5, 15]


def test_a_negative_rule_is_capped_on_the_points_it_takes():
    rule = replace(CAREERS, max_points=5, cap_period="month")
    lines, _ = score([rule], [view(i, "/careers", T0 + timedelta(days=i)) for i in range(3)])
    assert [line.points for line in lines] == [-5]


def test_machine_signals_are_recorded_at_zero_unless_the_setting_counts_them():
    click = Rule(id=4, name="Email click", event_type="email_click", points=10)
    scanned = EventFact(1, 7, "email_click", T0, {"machine": True})
    lines, _ = score([click], [scanned])
    assert [(line.points, line.filtered) for line in lines] == [(0, True)]
    counted, _ = score([click], [scanned], count_machine_signals=True)
    assert [(line.points, line.filtered) for line in counted] == [(10, False)]


@pytest.mark.parametrize(
    ("properties", "machine"),
    [
        ({"user_agent": "Mozilla/5.0 (Windows NT 10.0) Chrome/120"}, False),
        ({"user_agent": "Barracuda Sentinel (EE)"}, True),
        ({"user_agent": "Mozilla/5.0 Mimecast"}, True),
        ({"user_agent": "Mozilla/5.0", "seconds_after_send": 2}, True),
        ({"user_agent": "Mozilla/5.0", "seconds_after_send": 3600}, False),
        ({"machine": True}, True),
        ({}, False),
    ],
)
def test_scanner_opens_and_clicks_are_recognised(properties, machine):
    assert is_machine_signal(properties) is machine


@pytest.mark.parametrize(
    ("stage", "score", "event_type", "tag", "expected"),
    [
        ("lead", 19, "page_view", "", []),
        ("lead", 20, "page_view", "", ["mql"]),
        ("lead", 25, "page_view", "high-intent", ["hmql"]),  # one move, to the highest
        ("lead", 5, "demo_request", "", ["sql"]),
        ("mql", 60, "download", "", ["sql"]),  # never an HMQL: no HMQL stay
        ("mql", 12, "page_view", "", []),  # hysteresis: MQL stays down to 10
        ("mql", 9, "page_view", "", ["lead"]),
        ("hmql", 9, "page_view", "", ["lead"]),
        ("sql", -50, "page_view", "", []),  # never demoted by scoring
        ("client", 0, "referral", "", ["ambassador"]),
        ("client", 999, "page_view", "", []),
        ("ambassador", -10, "page_view", "", []),
        ("suspect", 100, "demo_request", "", []),  # needs an email first: not scoring's call
    ],
)
def test_thresholds_move_to_the_highest_stage_reached_with_hysteresis(
    stage, score, event_type, tag, expected
):
    event = EventFact(1, 7, event_type, T0, {"content_tag": tag} if tag else {})
    moves = engine.stage_moves(stage, score, [event], THRESHOLDS)
    assert [move.to for move in moves] == expected


def test_a_threshold_explains_itself():
    [move] = engine.stage_moves("client", 0, [EventFact(1, 7, "review", T0)], THRESHOLDS)
    assert move.reason == 'qualifying_event{"type":"review"}'  # a code, translated when shown
    moves = engine.stage_moves("lead", 61, [], THRESHOLDS)
    assert moves[-1].reason == 'score_reached{"score":61,"min":60}'
    assert moves[-1].threshold.stage == "sql"


@pytest.mark.parametrize(
    ("days_quiet", "score", "rule", "taken"),
    [
        (89, 50, DecayRule(1, "90 days", 90, points=-10), 0),
        (90, 50, DecayRule(1, "90 days", 90, points=-10), -10),
        (120, 4, DecayRule(1, "90 days", 90, points=-10), -4),  # never below zero
        (120, 0, DecayRule(1, "90 days", 90, points=-10), 0),
        (120, 50, DecayRule(1, "half", 90, percent=50), -25),
        (120, 50, DecayRule(1, "off", 90, points=-10, active=False), 0),
    ],
)
def test_decay(days_quiet, score, rule, taken):
    as_of = T0 + timedelta(days=days_quiet)
    assert engine.decay_points(rule, score=score, last_activity=T0, as_of=as_of) == taken


# --- Properties -------------------------------------------------------------------------------

rules_strategy = st.lists(
    st.builds(
        Rule,
        id=st.integers(1, 6),
        name=st.just("r"),
        event_type=st.sampled_from(["page_view", "download", "email_click"]),
        points=st.integers(-20, 20).filter(bool),
        url_contains=st.sampled_from(["", "/pricing", "/blog"]),
        max_times=st.none() | st.integers(1, 3),
        max_points=st.none(),
        cap_period=st.just(""),
    )
    | st.builds(
        Rule,
        id=st.integers(7, 9),
        name=st.just("capped"),
        event_type=st.sampled_from(["page_view", "download"]),
        points=st.integers(-20, 20).filter(bool),
        max_points=st.integers(1, 40),
        cap_period=st.sampled_from(["day", "week", "month"]),
    ),
    max_size=5,
    unique_by=lambda r: r.id,
)
events_strategy = st.lists(
    st.builds(
        EventFact,
        id=st.integers(1, 40),
        contact_id=st.just(7),
        type=st.sampled_from(["page_view", "download", "email_click"]),
        occurred_at=st.integers(0, 60 * 24 * 40).map(lambda m: T0 + timedelta(minutes=m)),
        properties=st.fixed_dictionaries({"url": st.sampled_from(["/pricing", "/blog/x", "/"])}),
        key=st.sampled_from(["", "k1", "k2", "k3"]),
    ),
    max_size=30,
).map(lambda events: [replace(e, id=n) for n, e in enumerate(events, start=1)])


@settings(max_examples=300, deadline=None)
@given(rules=rules_strategy, events=events_strategy)
def test_property_caps_are_never_exceeded_and_each_event_scores_once_per_rule(rules, events):
    lines, earned = score(rules, events)
    by_rule = {rule.id: rule for rule in rules}
    identity = {event.id: event.identity for event in events}
    scored = [(line.rule_id, identity[line.event_id]) for line in lines]
    assert len(scored) == len(set(scored))  # the same key twice scores once
    for rule in rules:
        mine = [line for line in lines if line.rule_id == rule.id and line.points]
        if rule.max_times:
            assert len(mine) <= rule.max_times
        if rule.cap_period:
            per_period = {}
            for line in mine:
                key = engine.period_start(line.at, rule.cap_period, PARIS)
                per_period[key] = per_period.get(key, 0) + abs(line.points)
            assert all(total <= rule.max_points for total in per_period.values())
        assert all(abs(line.points) <= abs(by_rule[line.rule_id].points) for line in mine)


@settings(max_examples=300, deadline=None)
@given(rules=rules_strategy, events=events_strategy, split=st.integers(0, 30))
def test_property_scoring_in_two_batches_equals_scoring_at_once(rules, events, split):
    """The score is the ledger's sum whichever way the events arrive in batches, and a replayed
    batch (the same idempotency keys) adds nothing."""
    events = sorted(events, key=lambda e: (e.occurred_at, e.id))
    once, _ = score(rules, events)
    first, earned = score(rules, events[:split])
    second, earned = score(rules, events[split:], earned)
    replayed, _ = score(rules, events, earned)
    assert sum(line.points for line in first + second) == sum(line.points for line in once)
    assert replayed == []
