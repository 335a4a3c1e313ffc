"""Numeric and count conditions of score rules, in the pure engine: no database, no clock."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from scoring import engine
from scoring.engine import Earned, EventFact, Rule

PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
LONG_VIEW = Rule(
    id=1, name="Long view", event_type="page_view", points=5, property_name="seconds",
    property_operator="gte", property_number=Decimal("120"),
)  # fmt: skip
PRICING_3_IN_30 = Rule(
    id=2, name="Pricing 3 in 30 days", event_type="page_view", points=10,
    url_contains="/pricing", count_at_least=3, count_within_days=30,
)  # fmt: skip


def view(n: int, at: datetime = T0, url: str = "/pricing", contact: int = 7, **props) -> EventFact:
    return EventFact(n, contact, "page_view", at, {"url": url, **props})


def score(rules, events, earned=None, **kw):
    return engine.score_events(rules, events, earned or Earned(), tz=PARIS, **kw)


def numeric(operator: str, low: str, high: str | None = None) -> Rule:
    return replace(LONG_VIEW, property_operator=operator, property_number=Decimal(low),
                   property_number_max=Decimal(high) if high else None)  # fmt: skip


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (42, Decimal(42)), (-3, Decimal(-3)), (3.5, Decimal("3.5")), (0.1, Decimal("0.1")),
        ("42", Decimal(42)), ("-3.5", Decimal("-3.5")), ("007", Decimal(7)),
        ("123456789012345", Decimal("123456789012345")),
        (True, None), (False, None), (None, None), ("", None), ("abc", None), ("1e3", None),
        (" 42", None), ("42\n", None), ("+4", None), ("4.", None), (".5", None), ("1,5", None),
        ("١٢", None), ("1234567890123456.5", None), ([1], None), ({"a": 1}, None),
        (float("nan"), None), (float("inf"), None),
    ],
)  # fmt: skip
def test_what_counts_as_a_number(value, number):
    assert engine.as_number(value) == number


@pytest.mark.parametrize(
    ("rule", "value", "matches"),
    [
        (numeric("gt", "120"), 121, True), (numeric("gt", "120"), 120, False),
        (numeric("gte", "120"), 120, True), (numeric("gte", "120"), "120.0", True),
        (numeric("gte", "120"), 119.99, False), (numeric("lt", "0"), -0.5, True),
        (numeric("lt", "0"), "-0.5", True), (numeric("lte", "-2"), -2, True),
        (numeric("lte", "-2"), "-1.9999", False), (numeric("gt", "0.1"), 0.1, False),
        (numeric("gte", "0.1"), 0.1, True), (numeric("gt", "0.3"), 0.1 + 0.2, True),
        (numeric("between", "1", "5"), 1, True), (numeric("between", "1", "5"), "5", True),
        (numeric("between", "1", "5"), 5.0001, False), (numeric("between", "1", "5"), 0, False),
        (numeric("gte", "0"), True, False), (numeric("lte", "1"), False, False),
        (numeric("gte", "0"), "lots", False), (numeric("gte", "0"), None, False),
        (numeric("gte", "0"), [], False),
    ],
)  # fmt: skip
def test_a_numeric_condition_compares_numbers_and_nothing_else(rule, value, matches):
    assert rule.matches(view(1, seconds=value)) is matches


def test_a_numeric_condition_never_matches_a_missing_property():
    assert numeric("lt", "100").matches(view(1)) is False
    assert numeric("between", "-1", "1").matches(view(1, other=0)) is False


def test_equals_still_compares_text():
    plan = replace(LONG_VIEW, property_operator="eq", property_name="plan", property_value="5",
                   property_number=None)  # fmt: skip
    assert plan.matches(view(1, plan=5)) and plan.matches(view(1, plan="5"))
    assert not plan.matches(view(1, plan=5.0))


def test_the_event_that_brings_the_count_to_n_scores_and_so_does_each_one_after():
    visits = [view(i, T0 + timedelta(days=i)) for i in range(5)]
    lines, _ = score([PRICING_3_IN_30], visits)
    assert [line.event_id for line in lines] == [2, 3, 4]


def test_a_count_scores_once_with_at_most_one_time():
    once = replace(PRICING_3_IN_30, max_times=1)
    lines, earned = score([once], [view(i, T0 + timedelta(days=i)) for i in range(5)])
    assert [(line.event_id, line.points) for line in lines] == [(2, 10)]
    later, _ = score([once], [view(9, T0 + timedelta(days=9))], earned)
    assert later == []


def test_a_count_looks_back_d_days_both_ends_included():
    edge = [view(1, T0), view(2, T0 + timedelta(days=15)), view(3, T0 + timedelta(days=30))]
    assert [line.event_id for line in score([PRICING_3_IN_30], edge)[0]] == [3]
    late = [view(1, T0), view(2, T0 + timedelta(days=15)),
            view(3, T0 + timedelta(days=30, microseconds=1))]  # fmt: skip
    assert score([PRICING_3_IN_30], late)[0] == []


def test_a_count_counts_only_events_meeting_the_other_conditions():
    mixed = [view(1, T0), view(2, T0, url="/blog"), view(3, T0 + timedelta(hours=1)),
             view(4, T0 + timedelta(hours=2), url="/careers"), view(5, T0 + timedelta(hours=3))]  # fmt: skip
    assert [line.event_id for line in score([PRICING_3_IN_30], mixed)[0]] == [5]


def test_events_at_the_same_moment_all_count():
    same = [view(3, T0), view(1, T0), view(2, T0)]
    assert sorted(line.event_id for line in score([PRICING_3_IN_30], same)[0]) == [1, 2, 3]


def test_machine_signals_do_not_count_unless_the_setting_counts_them():
    visits = [view(1, T0), view(2, T0 + timedelta(hours=1), machine=True),
              view(3, T0 + timedelta(hours=2))]  # fmt: skip
    lines, _ = score([PRICING_3_IN_30], visits)
    assert [(line.event_id, line.filtered) for line in lines] == [(2, True)]
    counted, _ = score([PRICING_3_IN_30], visits, count_machine_signals=True)
    assert [(line.event_id, line.points) for line in counted] == [(3, 10)]


def test_stored_events_count_and_a_late_arrival_completes_a_later_events_count():
    stored = [view(1, T0), view(3, T0 + timedelta(days=2))]
    lines, _ = score([PRICING_3_IN_30], [view(2, T0 + timedelta(days=1))], prior=stored)
    assert [(line.event_id, line.at) for line in lines] == [(3, T0 + timedelta(days=2))]
    # Already scored for the rule: not again.
    scored = Earned(scored=frozenset({(2, "event:2"), (2, "event:3")}))
    stored.append(view(2, T0 + timedelta(days=1)))
    again, _ = score([PRICING_3_IN_30], [view(4, T0 + timedelta(days=1))], scored, prior=stored)
    assert [line.event_id for line in again] == [4]


def test_a_late_arrival_outside_a_stored_events_window_completes_nothing():
    stored = [view(1, T0 + timedelta(days=40)), view(3, T0 + timedelta(days=41))]
    lines, _ = score([PRICING_3_IN_30], [view(2, T0)], prior=stored)
    assert lines == []


def test_count_and_numeric_conditions_together():
    rule = replace(PRICING_3_IN_30, property_name="seconds", property_operator="gt",
                   property_number=Decimal("30"))  # fmt: skip
    visits = [view(1, T0, seconds=45), view(2, T0 + timedelta(hours=1), seconds=10),
              view(3, T0 + timedelta(hours=2), seconds="31"),
              view(4, T0 + timedelta(hours=3), seconds="31.5")]  # fmt: skip
    assert [line.event_id for line in score([rule], visits)[0]] == [4]


def test_rules_without_the_new_conditions_score_as_before():
    plain = Rule(id=3, name="Pricing", event_type="page_view", points=15, url_contains="/pricing")
    lines, _ = score([plain], [view(1), view(2, T0 + timedelta(hours=1))], prior=[view(0)])
    assert [line.event_id for line in lines] == [1, 2]


# --- Recency ---------------------------------------------------------------------------------

FADING = Rule(id=5, name="Pricing, recent", event_type="page_view", points=10,
              url_contains="/pricing", fade_full_days=30, fade_zero_days=90)  # fmt: skip


@pytest.mark.parametrize(
    ("age_days", "points", "worth"),
    [(0, 10, 10), (30, 10, 10), (31, 10, 9), (60, 10, 5), (89, 10, 0), (90, 10, 0),
     (400, 10, 0), (-3, 10, 10), (31, -10, -9), (75, -10, -2), (45, 7, 5)],
)  # fmt: skip
def test_points_fade_linearly_from_full_to_none_truncated_toward_zero(age_days, points, worth):
    rule = replace(FADING, points=points)
    at = T0 - timedelta(days=age_days)
    assert engine.faded_points(rule, points, at, as_of=T0, tz=PARIS) == worth


def test_ages_are_calendar_days_of_the_site_time_zone():
    rule = replace(FADING, fade_full_days=0, fade_zero_days=2)
    late = datetime(2026, 5, 3, 21, 30, tzinfo=UTC)  # 23:30 on the 3rd in Paris
    just_after_midnight = datetime(2026, 5, 3, 22, 5, tzinfo=UTC)  # 00:05 on the 4th
    assert engine.faded_points(rule, 10, late, as_of=late, tz=PARIS) == 10
    assert engine.faded_points(rule, 10, late, as_of=just_after_midnight, tz=PARIS) == 5


def test_a_fading_line_says_how_the_rule_fades_and_stays_at_zero():
    old = [view(1, T0 - timedelta(days=100)), view(2, T0 - timedelta(days=45)), view(3, T0)]
    lines, _ = score([FADING], old, as_of=T0)
    assert [(line.event_id, line.points) for line in lines] == [(1, 0), (2, 7), (3, 10)]
    assert {line.reason for line in lines} == {
        'rule_fading{"rule":"Pricing, recent","points":10,"full":30,"zero":90}'}  # fmt: skip


def test_a_faded_out_line_still_counts_for_at_most_n_times():
    once = replace(FADING, max_times=1)
    lines, earned = score([once], [view(1, T0 - timedelta(days=100))], as_of=T0)
    assert [line.points for line in lines] == [0]
    again, _ = score([once], [view(2, T0)], earned, as_of=T0)
    assert again == []


def test_without_a_moment_points_do_not_fade():
    lines, _ = score([FADING], [view(1, T0 - timedelta(days=100))])
    assert [line.points for line in lines] == [10]
