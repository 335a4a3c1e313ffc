"""A contact that jumps stages leaves no stay of zero minutes in the stages it skipped: the
dashboard's conversion and time-in-stage panels count only stages the contact was in."""

import pytest

from contacts.models import StageChange, StageStay
from scoring.models import ScoreRule
from tests.factories import ContactFactory
from tests.test_dashboard import figure, panel
from tests.utils import record

pytestmark = pytest.mark.django_db


def test_an_mql_that_requests_a_demo_goes_to_sql_without_an_hmql_stay(
    marketer_client, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    ScoreRule.objects.filter(name="Download").update(points=20)
    contact = ContactFactory(stage="lead")
    record(contact, "download", capture=capture)
    assert contact.stage == "mql"

    record(contact, "demo_request", capture=capture)

    assert contact.stage == "sql"
    assert list(StageChange.objects.filter(contact=contact).order_by("at", "id").values_list(
        "from_stage", "to_stage")) == [("lead", "mql"), ("mql", "sql")]  # fmt: skip
    assert not StageStay.objects.filter(stage="hmql").exists()
    conversion = panel(marketer_client, "dashboard-conversion", query="")
    assert figure(conversion, 'data-stage="mql"', "entered") == "1"
    assert figure(conversion, 'data-stage="mql"', "moved_on") == "1"
    assert figure(conversion, 'data-stage="hmql"', "entered") == "0"
    velocity = panel(marketer_client, "dashboard-velocity", query="")
    assert figure(velocity, 'data-stage="hmql"', "median") == "—"
    assert figure(velocity, 'data-stage="mql"', "stays") == "1"


def test_a_lead_that_jumps_to_sql_counts_as_a_lead_that_moved_on_not_as_an_mql(
    marketer_client, django_capture_on_commit_callbacks
):
    contact = ContactFactory(stage="lead")
    record(contact, "demo_request", capture=django_capture_on_commit_callbacks)

    assert contact.stage == "sql"
    conversion = panel(marketer_client, "dashboard-conversion", query="")
    assert figure(conversion, 'data-stage="lead"', "moved_on") == "1"
    assert figure(conversion, 'data-stage="mql"', "entered") == "0"
    assert figure(conversion, 'data-stage="hmql"', "entered") == "0"
    velocity = panel(marketer_client, "dashboard-velocity", query="")
    assert figure(velocity, 'data-stage="mql"', "stays") == "0"
