"""Each contact's known outcome: written by the sales outcome, by ``outcome_record`` for the
import, the API and admin (the latest by date holds), and filled from the stage history."""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.apps import apps
from django.urls import reverse
from django.utils import timezone

from contacts.models import Contact, ContactOutcome, StageChange
from contacts.outcomes import outcome_record, outcomes_from_stage_changes
from contacts.sales.claims import contact_claim
from contacts.sales.outcomes import OutcomeRefused, contact_outcome_record
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

backfill = importlib.import_module("contacts.migrations.0019_contact_outcomes_from_sales")


@pytest.fixture
def my_lead(sales_rep):
    lead = ContactFactory(stage=Contact.Stage.SQL, score=75)
    contact_claim(contact_id=lead.pk, user=sales_rep)
    lead.refresh_from_db()
    return lead


def test_a_rep_winning_a_lead_records_it_won(sales_client, my_lead):
    response = sales_client.post(
        reverse("queue-lead", args=[my_lead.pk]), {"outcome": "won", "amount": "1200"}
    )

    assert response.status_code == 302
    outcome = ContactOutcome.objects.get(contact=my_lead)
    change = my_lead.stage_changes.get(to_stage="client")
    assert (outcome.result, outcome.source) == ("won", "sales")
    assert outcome.at == change.at and outcome.stage_change == change


def test_a_rep_losing_a_lead_records_it_lost(sales_rep, my_lead):
    change = contact_outcome_record(
        contact=my_lead, user=sales_rep, outcome="lost", lost_reason="budget"
    )

    outcome = ContactOutcome.objects.get(contact=my_lead)
    assert (outcome.result, outcome.at, outcome.stage_change) == ("lost", change.at, change)


def test_a_lead_recycled_to_marketing_has_no_known_outcome(sales_rep, my_lead):
    contact_outcome_record(contact=my_lead, user=sales_rep, outcome="recycled", reason="Trop tôt")

    assert not ContactOutcome.objects.filter(contact=my_lead).exists()


def test_a_refused_outcome_records_nothing(other_rep, my_lead):
    with pytest.raises(OutcomeRefused):
        contact_outcome_record(contact=my_lead, user=other_rep, outcome="won")

    my_lead.refresh_from_db()
    assert my_lead.stage == Contact.Stage.SQL
    assert not ContactOutcome.objects.exists()


def test_a_lead_lost_then_won_later_is_known_as_won(sales_rep, my_lead):
    contact_outcome_record(contact=my_lead, user=sales_rep, outcome="lost", lost_reason="timing")
    Contact.objects.filter(pk=my_lead.pk).update(stage=Contact.Stage.SQL)
    my_lead.refresh_from_db()
    contact_claim(contact_id=my_lead.pk, user=sales_rep)

    contact_outcome_record(contact=my_lead, user=sales_rep, outcome="won")

    assert ContactOutcome.objects.get(contact=my_lead).result == "won"


def test_an_imported_outcome_older_than_the_known_one_changes_nothing():
    contact = ContactFactory()
    now = timezone.now()
    outcome_record(contact=contact, result="won", at=now, source="sales")

    kept = outcome_record(
        contact=contact, result="lost", at=now - timedelta(days=30), source="import"
    )

    assert (kept.result, kept.source, kept.at) == ("won", "sales", now)
    assert ContactOutcome.objects.get(contact=contact).result == "won"


def test_a_later_outcome_replaces_the_known_one():
    contact = ContactFactory()
    now = timezone.now()
    outcome_record(contact=contact, result="lost", at=now - timedelta(days=3), source="import")

    outcome_record(contact=contact, result="won", at=now, source="api")

    outcome = ContactOutcome.objects.get(contact=contact)
    assert (outcome.result, outcome.source, outcome.at) == ("won", "api", now)


@pytest.mark.parametrize(
    ("_case", "fields", "message"),
    [
        ("unknown result", {"result": "converted", "source": "import"}, "unknown outcome"),
        ("unknown source", {"result": "won", "source": "crm"}, "unknown outcome source"),
        (
            "naive date",
            {"result": "won", "source": "api", "at": timezone.now().replace(tzinfo=None)},
            "aware",
        ),
    ],
)
def test_outcome_record_refuses_what_it_cannot_store(_case, fields, message):
    contact = ContactFactory()

    with pytest.raises(ValueError, match=message):
        outcome_record(contact=contact, **fields)

    assert not ContactOutcome.objects.exists()


def move(contact: Contact, to: str, outcome: str, days_ago: int) -> StageChange:
    return StageChange.objects.create(
        contact=contact, from_stage=contact.stage, to_stage=to, outcome=outcome,
        cause=StageChange.Cause.USER, at=timezone.now() - timedelta(days=days_ago),
    )  # fmt: skip


def test_the_migration_fills_outcomes_from_the_sales_history():
    won_late = ContactFactory(stage=Contact.Stage.CLIENT)
    move(won_late, "lead", "lost", days_ago=40)
    won = move(won_late, "client", "won", days_ago=10)
    lost = ContactFactory(stage=Contact.Stage.LEAD)
    lost_change = move(lost, "lead", "lost", days_ago=5)
    disqualified = ContactFactory(stage=Contact.Stage.LEAD)
    move(disqualified, "lead", "disqualified", days_ago=3)
    recycled = ContactFactory(stage=Contact.Stage.LEAD)
    move(recycled, "lead", "recycled", days_ago=2)
    already = ContactFactory(stage=Contact.Stage.CLIENT)
    move(already, "client", "won", days_ago=1)
    outcome_record(contact=already, result="lost", at=timezone.now(), source="import")

    backfill.outcomes_from_stage_history(apps, None)

    outcomes = {row.contact_id: row for row in ContactOutcome.objects.all()}
    assert set(outcomes) == {won_late.pk, lost.pk, disqualified.pk, already.pk}
    assert (outcomes[won_late.pk].result, outcomes[won_late.pk].at) == ("won", won.at)
    assert outcomes[won_late.pk].source == "sales" and outcomes[won_late.pk].stage_change == won
    assert (outcomes[lost.pk].result, outcomes[lost.pk].at) == ("lost", lost_change.at)
    assert outcomes[disqualified.pk].result == "lost"
    assert outcomes[already.pk].source == "import"  # what was known stays


def test_bulk_loads_get_the_same_outcomes_as_the_migration():
    contact = ContactFactory(stage=Contact.Stage.CLIENT)
    changes = [move(contact, "lead", "lost", days_ago=40), move(contact, "client", "won", 10)]

    [outcome] = outcomes_from_stage_changes(reversed(changes))

    assert (outcome.contact_id, outcome.result, outcome.at) == (contact.pk, "won", changes[1].at)


def test_an_admin_records_an_outcome_through_the_service(admin_client):
    contact = ContactFactory()
    url = reverse("admin:contacts_contactoutcome_add")
    data = {"contact": contact.pk, "result": "won", "at_0": "2026-11-02", "at_1": "10:30:00"}

    response = admin_client.post(url, data)

    assert response.status_code == 302
    outcome = ContactOutcome.objects.get(contact=contact)
    assert (outcome.result, outcome.source) == ("won", "admin")
    assert timezone.localtime(outcome.at).strftime("%Y-%m-%d %H:%M") == "2026-11-02 10:30"


def test_an_admin_outcome_older_than_the_known_one_is_refused_politely(admin_client):
    contact = ContactFactory()
    outcome_record(contact=contact, result="lost", at=timezone.now(), source="sales")
    url = reverse("admin:contacts_contactoutcome_add")
    data = {"contact": contact.pk, "result": "won", "at_0": "2020-01-02", "at_1": "10:30:00"}

    response = admin_client.post(url, data, follow=True)

    assert response.status_code == 200
    assert ContactOutcome.objects.get(contact=contact).result == "lost"
    assert "Une issue plus récente était déjà connue" in response.content.decode()
