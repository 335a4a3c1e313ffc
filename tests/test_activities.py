"""Activities a rep logs on a lead: the activity, its timeline event and its audit row written
together (or nothing), what score rules and sequence goals make of them, and claims kept by a
rep who works the lead."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from contacts.models import Activity, Contact, ContactAudit, Event, PendingEvent
from contacts.sales.activities import ActivityRefused, activity_log
from contacts.sales.claims import claims_release_stale, contact_claim
from contacts.sales.email_templates import (
    TemplateProblem,
    template_check,
    template_render,
    template_values,
)
from nurturing import enrolment
from nurturing.models import Enrollment
from scoring.models import ScoreEntry, ScoreRule
from tests.factories import ContactFactory, UserFactory
from tests.nurturing.helpers import sequence_with, wait_step

pytestmark = pytest.mark.django_db


def claimed_by(rep, **fields) -> Contact:
    lead = ContactFactory(stage=Contact.Stage.SQL, **fields)
    contact_claim(contact_id=lead.pk, user=rep)
    lead.refresh_from_db()
    return lead


def test_logging_a_call_writes_the_activity_its_timeline_event_and_an_audit_row(sales_rep):
    lead = claimed_by(sales_rep)
    an_hour_ago = timezone.now() - timedelta(hours=1)

    activity = activity_log(
        contact=lead, user=sales_rep, kind="call", call_outcome="reached",
        duration_minutes=12, at=an_hour_ago, body="Rappeler après la démo",
    )  # fmt: skip

    stored = Activity.objects.get()
    assert stored == activity and stored.user == sales_rep and stored.at == an_hour_ago
    assert stored.call_outcome == "reached" and stored.duration_minutes == 12
    event = Event.objects.get(contact=lead, type=Event.Type.SALES_CALL)
    assert stored.event == event and event.occurred_at == an_hour_ago and event.source == "sales"
    assert event.properties["outcome"] == "reached"
    assert event.properties["duration_minutes"] == 12
    assert PendingEvent.objects.filter(event=event).exists()  # on its way to the handlers
    audit = ContactAudit.objects.get(contact=lead, action=ContactAudit.Action.CALL_LOGGED)
    assert audit.actor == sales_rep


@pytest.mark.parametrize(
    ("_case", "fields", "message"),
    [
        ("call without outcome", {"kind": "call"}, "comment s’est passé l’appel"),
        ("empty note", {"kind": "note", "body": "  "}, "Écrivez la note"),
        ("outcome on a note", {"kind": "note", "body": "x", "call_outcome": "reached"},
         "Seul un appel a une issue"),
        ("dans le futur", {"kind": "meeting", "at": timezone.now() + timedelta(days=2)},
         "dans le futur"),
        ("a week long", {"kind": "meeting", "duration_minutes": 7 * 24 * 60}, "une journée au plus"),
    ],
)  # fmt: skip
def test_a_refused_activity_leaves_nothing(sales_rep, _case, fields, message):
    lead = claimed_by(sales_rep)
    audits_before = ContactAudit.objects.count()

    with pytest.raises(ActivityRefused, match=message):
        activity_log(contact=lead, user=sales_rep, **fields)

    assert not Activity.objects.exists()
    assert not Event.objects.filter(type__in=Event.SALES_TYPES).exists()
    assert ContactAudit.objects.count() == audits_before


def test_another_reps_lead_is_refused_but_an_admin_may_log_on_it(sales_rep, other_rep):
    lead = claimed_by(sales_rep)
    marketer = UserFactory(username="marc", roles=["marketing"])

    with pytest.raises(ActivityRefused):
        activity_log(contact=lead, user=other_rep, kind="note", body="Je le prends")
    with pytest.raises(ActivityRefused, match="d’un autre commercial"):
        activity_log(contact=lead, user=marketer, kind="note", body="Vu au salon")
    assert not Activity.objects.exists()

    activity_log(contact=lead, user=UserFactory(username="boss", is_staff=True), kind="note",
                 body="ok")  # fmt: skip
    assert Activity.objects.count() == 1


def test_rep_activities_do_not_count_as_the_contacts_own_activity(sales_rep):
    lead = claimed_by(sales_rep, last_activity_at=timezone.now() - timedelta(days=30))
    before = Contact.objects.get(pk=lead.pk).last_activity_at

    activity_log(contact=lead, user=sales_rep, kind="note", body="Laissé un message")

    assert Contact.objects.get(pk=lead.pk).last_activity_at == before


# --- Score rules and sequence goals --------------------------------------------------------------


def test_a_score_rule_on_a_reached_call_scores_it_and_not_a_voicemail(
    sales_rep, django_capture_on_commit_callbacks
):
    rule = ScoreRule.objects.create(
        name="Joint au téléphone", event_type=Event.Type.SALES_CALL, points=7,
        property_name="outcome", property_value="reached",
    )  # fmt: skip
    lead = claimed_by(sales_rep)
    score = Contact.objects.get(pk=lead.pk).score

    with django_capture_on_commit_callbacks(execute=True):
        activity_log(contact=lead, user=sales_rep, kind="call", call_outcome="voicemail")
    with django_capture_on_commit_callbacks(execute=True):
        activity_log(contact=lead, user=sales_rep, kind="call", call_outcome="reached")

    assert Contact.objects.get(pk=lead.pk).score == score + 7
    assert ScoreEntry.objects.get(rule=rule).event.properties["outcome"] == "reached"


def test_a_sequence_whose_goal_is_a_call_ends_when_the_rep_logs_one(
    sales_rep, django_capture_on_commit_callbacks
):
    sequence = sequence_with(wait_step(days=3), goal_event_type=Event.Type.SALES_CALL)
    lead = claimed_by(sales_rep)
    enrollment = enrolment.enrollment_start(sequence=sequence, contact=lead)

    with django_capture_on_commit_callbacks(execute=True):
        activity_log(contact=lead, user=sales_rep, kind="call", call_outcome="reached")

    enrollment.refresh_from_db()
    assert enrollment.status == Enrollment.Status.GOAL_REACHED
    assert enrollment.next_run_at is None


# --- Claims kept by working the lead -------------------------------------------------------------


def test_a_claim_the_rep_works_on_is_not_released_but_an_untouched_one_is(
    settings, sales_rep, other_rep
):
    settings.CLAIM_RELEASE_HOURS = 48
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        worked = claimed_by(sales_rep)
        untouched = claimed_by(sales_rep)
        noted_by_someone_else = claimed_by(other_rep)
    with time_machine.travel(start + timedelta(hours=30), tick=False):
        activity_log(contact=worked, user=sales_rep, kind="call", call_outcome="no_answer")
        # A staff member's note is not the owner working the lead.
        admin = UserFactory(username="boss", is_staff=True)
        activity_log(contact=noted_by_someone_else, user=admin, kind="note", body="Relancer ?")

    with time_machine.travel(start + timedelta(hours=49), tick=False):
        released = claims_release_stale()

    assert released == 2
    assert Contact.objects.get(pk=worked.pk).owner == sales_rep
    assert Contact.objects.get(pk=untouched.pk).owner is None
    assert Contact.objects.get(pk=noted_by_someone_else.pk).owner is None

    # Past the limit after the rep's last activity, it goes back too.
    with time_machine.travel(start + timedelta(hours=30 + 49), tick=False):
        assert claims_release_stale() == 1
    assert Contact.objects.get(pk=worked.pk).owner is None


def test_releasing_stale_claims_finds_them_in_one_query_however_many_leads(sales_rep, settings):
    settings.CLAIM_RELEASE_HOURS = 48
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        leads = [claimed_by(sales_rep) for _ in range(6)]
    with time_machine.travel(start + timedelta(hours=30), tick=False):
        for lead in leads[:4]:
            activity_log(contact=lead, user=sales_rep, kind="note", body="Vu")

    with time_machine.travel(start + timedelta(hours=49), tick=False):
        with CaptureQueriesContext(connection) as queries:
            assert claims_release_stale() == 2
    selects = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("SELECT")]
    assert len([sql for sql in selects if "EXISTS" in sql.upper()]) == 1
    assert set(Contact.objects.filter(owner=sales_rep).values_list("pk", flat=True)) == {
        lead.pk for lead in leads[:4]
    }


# --- Templates -----------------------------------------------------------------------------------


def test_a_template_fills_the_leads_values_once_and_leaves_a_lookalike_value_alone(sales_rep):
    lead = ContactFactory(first_name="Zoé", company="{{ email }} Œuvres", email="zoe@exemple.fr")
    values = template_values(lead, sales_rep)

    text = template_render("Bonjour {{first_name}}, chez {{ company }} — {{ rep_name }}", values)

    assert text == "Bonjour Zoé, chez {{ email }} Œuvres — Hugo Bernard"


@pytest.mark.parametrize(
    "source", ["{{ firstname }}", "{{ first_name|upper }}", "{% if x %}y{% endif %}", "{{ }}"]
)
def test_a_template_with_anything_but_known_placeholders_is_refused(source):
    with pytest.raises(TemplateProblem):
        template_check(f"Bonjour {source}")
