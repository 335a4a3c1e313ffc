"""Rules, decay and thresholds are edited in admin; bad definitions are refused, nothing saved."""

import pytest
from django.urls import reverse

from scoring.models import ScoreRule, Threshold

pytestmark = pytest.mark.django_db

RULE = {"name": "Webinar", "event_type": "form_submit", "points": "8", "priority": "100",
        "active": "on", "cap_period": ""}  # fmt: skip


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def add_rule(admin_client, **changes):
    return admin_client.post(reverse("admin:scoring_scorerule_add"), {**RULE, **changes})


def test_a_valid_rule_is_saved(admin_client):
    response = add_rule(admin_client, form="webinar-2026")
    assert response.status_code == 302
    assert ScoreRule.objects.get(name="Webinar").form == "webinar-2026"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"url_pattern": "/pricing/(pro"}, "url_pattern"),
        ({"points": "2.5"}, "points"),
        ({"points": "beaucoup"}, "points"),
        ({"points": "0"}, "points"),
        ({"event_type": "telepathy"}, "event_type"),
        ({"max_points": "10"}, "cap_period"),
        ({"max_points": "10", "cap_period": "day", "max_times": "2"}, "max_times"),
        (
            {
                "starts_at_0": "2026-05-02",
                "starts_at_1": "10:00",
                "ends_at_0": "2026-05-01",
                "ends_at_1": "10:00",
            },
            "ends_at",
        ),
    ],
)
def test_a_bad_rule_is_refused_with_a_message_and_nothing_saved(admin_client, changes, field):
    before = ScoreRule.objects.count()
    response = add_rule(admin_client, **changes)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field]
    assert ScoreRule.objects.count() == before


def test_a_threshold_that_puts_mql_above_sql_is_refused(admin_client):
    mql = Threshold.objects.get(stage="mql")
    url = reverse("admin:scoring_threshold_change", args=[mql.pk])
    response = admin_client.post(url, {"stage": "mql", "min_score": "75", "exit_below": "10",
                                       "demote": "on", "active": "on"})  # fmt: skip
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["min_score"]
    assert "75" in errors[0] and "60" in errors[0]
    mql.refresh_from_db()
    assert mql.min_score == 20


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"stage": "ambassador", "event_types": "referral,telepathy"}, "event_types"),
        ({"stage": "sql", "min_score": "60", "demote": "on", "exit_below": "10"}, "demote"),
        ({"stage": "hmql", "demote": "on"}, "min_score"),
    ],
)
def test_bad_thresholds_are_refused(admin_client, data, field):
    threshold = Threshold.objects.get(stage=data["stage"])
    url = reverse("admin:scoring_threshold_change", args=[threshold.pk])
    response = admin_client.post(url, {"active": "on", **data})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field]
