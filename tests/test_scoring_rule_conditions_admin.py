"""Numeric and count conditions are edited in admin: bad ones refused with a clear message (in
the reader's language), good ones saved and listed in plain words."""

from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import translation

from scoring.models import ScoreRule

pytestmark = pytest.mark.django_db

RULE = {"name": "Long read", "event_type": "page_view", "points": "5", "priority": "100",
        "active": "on", "cap_period": ""}  # fmt: skip


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def add_rule(admin_client, language="en", **changes):
    return admin_client.post(reverse("admin:scoring_scorerule_add"), {**RULE, **changes},
                             headers={"accept-language": language})  # fmt: skip


def test_a_numeric_and_count_rule_is_saved_and_listed_in_plain_words(admin_client):
    response = add_rule(admin_client, property_name="seconds", property_operator="gte",
                        property_number="120", count_at_least="3", count_within_days="30",
                        url_contains="/pricing", max_times="1")  # fmt: skip
    assert response.status_code == 302
    rule = ScoreRule.objects.get(name="Long read")
    assert (rule.property_number, rule.count_at_least, rule.count_within_days) == (
        Decimal("120"), 3, 30)  # fmt: skip
    listing = admin_client.get(reverse("admin:scoring_scorerule_changelist"),
                               headers={"accept-language": "en"}).content.decode()  # fmt: skip
    assert "URL contains /pricing, seconds ≥ 120, at least 3 in 30 days" in listing
    french = admin_client.get(reverse("admin:scoring_scorerule_changelist"),
                              headers={"accept-language": "fr"}).content.decode()  # fmt: skip
    assert "URL contient /pricing, seconds ≥ 120, au moins 3 en 30 jours" in french


def test_between_is_described_with_both_bounds(admin_client):
    response = add_rule(admin_client, property_name="amount", property_operator="between",
                        property_number="-2.5", property_number_max="99.95")  # fmt: skip
    assert response.status_code == 302
    rule = ScoreRule.objects.get(name="Long read")
    with translation.override("en"):
        assert rule.description() == "Page view with amount between -2.5 and 99.95"
    with translation.override("fr"):
        assert rule.description() == "Page vue avec amount entre -2,5 et 99,95"


def test_a_rule_posted_without_a_comparison_still_compares_for_equality(admin_client):
    assert add_rule(admin_client, property_name="plan", property_value="pro").status_code == 302
    assert ScoreRule.objects.get(name="Long read").property_operator == "eq"


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"property_operator": "gt", "property_name": "seconds"}, "property_number",
         "A numeric comparison needs a number."),
        ({"property_operator": "gt", "property_number": "120"}, "property_name",
         "Say which property to compare."),
        ({"property_operator": "gt", "property_name": "seconds", "property_number": "lots"},
         "property_number", "Enter a number."),
        ({"property_operator": "gte", "property_name": "seconds", "property_number": "1",
          "property_value": "120"}, "property_value", "leave “property equals” empty"),
        ({"property_operator": "between", "property_name": "amount", "property_number": "10"},
         "property_number_max", "“Between” needs both bounds."),
        ({"property_operator": "between", "property_name": "amount", "property_number": "10",
          "property_number_max": "9.99"}, "property_number_max",
         "The upper bound cannot be below the lower bound."),
        ({"property_operator": "lt", "property_name": "amount", "property_number": "10",
          "property_number_max": "20"}, "property_number_max",
         "Only “between” takes an upper bound."),
        ({"property_name": "seconds", "property_value": "120", "property_number": "5"},
         "property_operator", "Choose a numeric comparison"),
        ({"property_operator": "above"}, "property_operator", "Select a valid choice."),
        ({"count_at_least": "3"}, "count_at_least",
         "A count needs both a number of events and of days."),
        ({"count_at_least": "1", "count_within_days": "30"}, "count_at_least",
         "Count at least 2 events"),
        ({"count_at_least": "3", "count_within_days": "0"}, "count_within_days",
         "Count over at least 1 day."),
        ({"count_at_least": "-3", "count_within_days": "7"}, "count_at_least", ""),
        ({"fade_full_days": "30"}, "fade_full_days",
         "Fading needs both the days of full points and the age with none."),
        ({"fade_full_days": "30", "fade_zero_days": "30"}, "fade_zero_days",
         "The points must be gone after the days of full points."),
        ({"fade_full_days": "0", "fade_zero_days": "30", "max_points": "10", "cap_period": "week"},
         "max_points", "cannot cap points per period"),
    ],
)  # fmt: skip
def test_a_bad_condition_is_refused_with_a_clear_message(admin_client, changes, field, message):
    response = add_rule(admin_client, **changes)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors[field]
    assert message in errors[0]
    assert not ScoreRule.objects.filter(name="Long read").exists()


def test_the_messages_are_translated(admin_client):
    response = add_rule(admin_client, "fr", property_operator="between", property_name="amount",
                        property_number="10", property_number_max="9")  # fmt: skip
    errors = response.context["adminform"].form.errors["property_number_max"]
    assert errors == ["La borne haute ne peut pas être sous la borne basse."]


def test_a_fading_rule_is_saved_and_described(admin_client):
    response = add_rule(admin_client, fade_full_days="0", fade_zero_days="60", max_times="1")
    assert response.status_code == 302
    rule = ScoreRule.objects.get(name="Long read")
    with translation.override("en"):
        assert rule.description() == "Page view with full points for 0 days, none from 60 days"


def test_the_preview_says_in_plain_words_what_the_rule_scores(admin_client):
    data = {**RULE, "property_name": "seconds", "property_operator": "gt", "property_number": "90",
            "count_at_least": "2", "count_within_days": "7"}  # fmt: skip
    response = admin_client.post(reverse("admin:scoring_scorerule_preview"), data,
                                 headers={"accept-language": "fr"})  # fmt: skip
    assert response.status_code == 200
    assert "Cette règle note\xa0: Page vue avec seconds &gt; 90, au moins 2 en 7 jours" in (
        response.content.decode()
    )
