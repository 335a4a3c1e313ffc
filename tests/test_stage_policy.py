"""Stages are a function of the rules and the history: what a rescore recomputes, what a person
did that it keeps, and what "why this stage" says afterwards."""

import pytest
from django.urls import reverse

from contacts.models import Contact, StageChange
from contacts.sales.claims import contact_claim
from contacts.sales.outcomes import contact_outcome_record
from contacts.stages import stage_move
from scoring import rescore
from scoring.models import ScoreRule
from tests.factories import ContactFactory
from tests.utils import record

pytestmark = pytest.mark.django_db


def rescore_now() -> None:
    run = rescore.rescore_start(reason="test")
    rescore.rescore_run(rescore_id=run.pk)


@pytest.fixture
def short_lived_rule():
    """A rule an admin saved by mistake and takes away twenty seconds later."""
    return ScoreRule.objects.create(name="Typo: downloads +75", event_type="download", points=75)


def why_this_stage(client, contact) -> str:
    body = client.get(reverse("score-explanation", args=[contact.pk])).content.decode()
    return body.split('<div class="why-stage">')[1].split("</dl>")[0]


def reached_sql_by_mistake(capture, rule) -> Contact:
    contact = ContactFactory(stage="lead")
    record(contact, "download", capture=capture)
    assert (contact.stage, contact.score) == ("sql", 76)
    rule.active = False
    rule.save()
    return contact


def test_a_rescore_takes_an_sql_only_a_short_lived_rule_made_back_out_of_the_queue(
    marketer_client, django_capture_on_commit_callbacks, short_lived_rule
):
    contact = reached_sql_by_mistake(django_capture_on_commit_callbacks, short_lived_rule)

    rescore_now()

    contact.refresh_from_db()
    assert (contact.stage, contact.score) == ("lead", 1)
    assert not Contact.objects.sql_queue().filter(pk=contact.pk).exists()
    last = contact.stage_changes.order_by("-at", "-id").first()
    assert (last.from_stage, last.to_stage, last.cause) == ("sql", "lead", "threshold")
    why = why_this_stage(marketer_client, contact)
    assert "Score 76" not in why and "≥" not in why  # the short-lived rule's figures are gone
    assert "Les règles actuelles ne vont pas plus loin\xa0: score 1" in why


def test_a_rescore_re_promotes_and_why_this_stage_states_the_figures_of_now(
    marketer_client, django_capture_on_commit_callbacks, short_lived_rule
):
    contact = reached_sql_by_mistake(django_capture_on_commit_callbacks, short_lived_rule)
    rescore_now()
    ScoreRule.objects.filter(name="Download").update(points=65)  # a deliberate change this time

    rescore_now()

    contact.refresh_from_db()
    assert (contact.stage, contact.score) == ("sql", 65)
    why = why_this_stage(marketer_client, contact)
    assert "Score 65\xa0≥\xa060" in why and "Score 76" not in why  # (a bare "76" may be in a time)
    assert 'data-testid="score-now">65<' in why


def test_why_this_stage_names_the_event_that_holds_now_not_the_rule_that_moved_it(
    marketer_client, django_capture_on_commit_callbacks, short_lived_rule
):
    contact = ContactFactory(stage="lead")
    capture = django_capture_on_commit_callbacks
    record(contact, "download", capture=capture)
    record(contact, "demo_request", capture=capture)  # already an SQL: nothing moves
    short_lived_rule.delete()

    rescore_now()

    contact.refresh_from_db()
    assert (contact.stage, contact.score) == ("sql", 21)  # the demo request keeps it there
    why = why_this_stage(marketer_client, contact)
    assert "Démo demandée" in why and "Score 76" not in why  # (a bare "76" may be in a time)


def test_a_claimed_sql_stays_with_its_rep_whatever_the_rescore_finds(
    django_capture_on_commit_callbacks, short_lived_rule, sales_rep
):
    contact = reached_sql_by_mistake(django_capture_on_commit_callbacks, short_lived_rule)
    contact_claim(contact_id=contact.pk, user=sales_rep)

    rescore_now()

    contact.refresh_from_db()
    assert (contact.stage, contact.owner, contact.score) == ("sql", sales_rep, 1)


def test_a_claim_is_part_of_the_history_even_after_its_release(
    django_capture_on_commit_callbacks, short_lived_rule, sales_rep
):
    from contacts.sales.claims import contact_release

    contact = reached_sql_by_mistake(django_capture_on_commit_callbacks, short_lived_rule)
    contact_claim(contact_id=contact.pk, user=sales_rep)
    contact_release(contact=contact, actor=sales_rep)

    rescore_now()

    contact.refresh_from_db()
    assert (contact.stage, contact.owner) == ("sql", None)  # a rep took it as an SQL


def test_a_contact_a_person_moved_keeps_that_stage_at_the_rescore(admin_user):
    contact = ContactFactory(stage="lead")
    stage_move(contact=contact, to="sql", cause="user", actor=admin_user, reason="met at a fair")

    rescore_now()

    contact.refresh_from_db()
    assert (contact.stage, contact.score) == ("sql", 0)


def test_a_lost_lead_stays_a_lead_until_its_next_touchpoint_live_or_rescored(
    django_capture_on_commit_callbacks, sales_rep
):
    ScoreRule.objects.filter(name="Download").update(points=70)
    contact = ContactFactory(stage="lead")
    capture = django_capture_on_commit_callbacks
    record(contact, "download", capture=capture)
    contact_claim(contact_id=contact.pk, user=sales_rep)
    contact_outcome_record(contact=contact, user=sales_rep, outcome="lost", lost_reason="budget")

    rescore_now()
    contact.refresh_from_db()
    assert (contact.stage, contact.score) == ("lead", 70)  # the rep's verdict stands

    record(contact, "download", capture=capture)  # the next touchpoint: thresholds carry on
    assert contact.stage == "sql"
    rescore_now()
    contact.refresh_from_db()
    assert contact.stage == "sql"  # the rescore agrees with the live path


def test_a_rescore_moves_no_contact_someone_owns(django_capture_on_commit_callbacks, sales_rep):
    contact = ContactFactory(stage="mql", owner=sales_rep)  # given to a rep in admin

    rescore_now()

    contact.refresh_from_db()
    assert contact.stage == "mql"
    assert not StageChange.objects.filter(contact=contact).exists()
