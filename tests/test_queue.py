"""The sales queue: waiting SQLs in order, claiming (one winner), returning untouched claims,
a rep's leads and their outcomes, admin release and reassignment. Everything is audited."""

from datetime import timedelta

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from contacts.models import Contact, ContactAudit, Event, StageChange
from contacts.sales.claims import (
    claims_release_stale,
    contact_claim,
    contact_claim_next,
    contact_reassign,
    contact_release,
)
from contacts.sales.outcomes import OutcomeRefused, contact_outcome_record
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def sql(**fields) -> Contact:
    return ContactFactory(stage=Contact.Stage.SQL, **fields)


def said(response) -> str:
    return " ".join(str(message) for message in get_messages(response.wsgi_request))


def audits(contact, action=None) -> list[ContactAudit]:
    rows = ContactAudit.objects.filter(contact=contact)
    return list(rows.filter(action=action) if action else rows)


# --- The list --------------------------------------------------------------------------------


def test_the_queue_lists_unclaimed_sqls_highest_score_then_longest_wait(sales_client, other_rep):
    now = timezone.now()
    newer = sql(first_name="Newer", last_name="Fifty", score=50, stage_entered_at=now)
    older = sql(first_name="Older", last_name="Fifty", score=50,
                stage_entered_at=now - timedelta(hours=1))  # fmt: skip
    top = sql(first_name="Top", last_name="Ninety", score=90, stage_entered_at=now)
    sql(first_name="Taken", last_name="Already", score=99, owner=other_rep, claimed_at=now)
    ContactFactory(first_name="Only", last_name="Mql", stage=Contact.Stage.MQL, score=200)

    body = sales_client.get(reverse("queue")).content.decode()

    order = [body.index(c.display_name) for c in (top, older, newer)]
    assert order == sorted(order)
    assert "Taken Already" not in body and "Only Mql" not in body


def test_a_lead_waiting_past_the_sla_is_marked_overdue(sales_client, settings):
    settings.SLA_HOURS = 4
    late = sql(stage_entered_at=timezone.now() - timedelta(hours=5))
    fresh = sql(stage_entered_at=timezone.now() - timedelta(hours=3))

    body = sales_client.get(reverse("queue")).content.decode()

    row = {c: body.split(f'id="lead-{c.pk}"')[1].split("</tr>")[0] for c in (late, fresh)}
    assert 'class="badge overdue"' in row[late]
    assert 'class="badge overdue"' not in row[fresh]


def test_the_list_refreshes_itself_as_an_htmx_partial(sales_client):
    lead = sql()
    page = sales_client.get(reverse("queue")).content.decode()
    assert 'hx-trigger="every 5s"' in page and "<html" in page

    partial = sales_client.get(reverse("queue"), HTTP_HX_REQUEST="true").content.decode()

    assert "<html" not in partial and lead.display_name in partial
    assert partial.lstrip().startswith('<div id="queue-list"')


def test_the_queue_page_costs_the_same_queries_for_5_or_50_leads(
    sales_client, django_assert_max_num_queries
):
    for _ in range(5):
        sql()
    with django_assert_max_num_queries(12) as few:
        sales_client.get(reverse("queue"))
    for _ in range(45):
        sql()
    with django_assert_max_num_queries(len(few.captured_queries)):
        sales_client.get(reverse("queue"))


# --- Claiming --------------------------------------------------------------------------------


def test_claiming_makes_the_rep_the_owner_and_is_audited(sales_client, sales_rep):
    lead = sql()

    response = sales_client.post(reverse("queue-claim", args=[lead.pk]))

    assert response.status_code == 302
    assert response["Location"] == reverse("queue-lead", args=[lead.pk])
    lead.refresh_from_db()
    assert lead.owner == sales_rep and lead.claimed_at is not None
    [audit] = audits(lead, ContactAudit.Action.CLAIMED)
    assert audit.actor == sales_rep and audit.owner == sales_rep
    assert lead.display_name not in sales_client.get(reverse("queue")).content.decode()


def test_claim_refuses_a_lead_someone_else_claimed(client, sales_rep, other_rep):
    lead = sql(first_name="Élodie", last_name="Fournier")
    contact_claim(contact_id=lead.pk, user=other_rep)
    client.force_login(sales_rep)

    response = client.post(reverse("queue-claim", args=[lead.pk]))

    assert response.status_code == 302 and response["Location"] == reverse("queue")
    # Who was faster, not whom the lead is about: it is another rep's lead now.
    assert "Léa Dubois" in said(response) and "Élodie Fournier" not in said(response)
    lead.refresh_from_db()
    assert lead.owner == other_rep
    assert len(audits(lead, ContactAudit.Action.CLAIMED)) == 1


@pytest.mark.parametrize("stage", ["mql", "lead", "client"])
def test_claim_refuses_a_lead_that_is_no_longer_an_sql(sales_client, stage):
    lead = ContactFactory(stage=stage, first_name="Marc", last_name="Petit")

    response = sales_client.post(reverse("queue-claim", args=[lead.pk]), follow=True)

    assert response.status_code == 200
    # Not a contact a rep may open any more: refused without naming it.
    assert said(response) and "Marc Petit" not in response.content.decode() + said(response)
    lead.refresh_from_db()
    assert lead.owner is None and not audits(lead)


def test_claiming_a_lead_that_does_not_exist_is_a_message_not_a_500(sales_client):
    response = sales_client.post(reverse("queue-claim", args=[999999]), follow=True)
    assert response.status_code == 200
    assert said(response)  # "This lead no longer exists."


def test_claim_needs_a_post(sales_client):
    lead = sql()
    assert sales_client.get(reverse("queue-claim", args=[lead.pk])).status_code == 405
    lead.refresh_from_db()
    assert lead.owner is None


def test_claim_next_takes_the_head_of_the_queue_and_then_the_next(client, sales_rep, other_rep):
    second = sql(score=70)
    first = sql(score=80)
    client.force_login(sales_rep)

    response = client.post(reverse("queue-claim-next"))

    assert response["Location"] == reverse("queue-lead", args=[first.pk])
    assert contact_claim_next(user=other_rep) == second.pk
    assert contact_claim_next(user=other_rep) is None
    assert {c.owner_id for c in Contact.objects.filter(pk__in=[first.pk, second.pk])} == {
        sales_rep.pk,
        other_rep.pk,
    }


def test_claim_next_on_an_empty_queue_says_so(sales_client):
    response = sales_client.post(reverse("queue-claim-next"), follow=True)
    assert response.status_code == 200 and said(response)


def test_a_marketer_cannot_claim(marketer_client):
    lead = sql()
    assert marketer_client.post(reverse("queue-claim", args=[lead.pk])).status_code == 403
    assert marketer_client.post(reverse("queue-claim-next")).status_code == 403
    lead.refresh_from_db()
    assert lead.owner is None


# --- Claims left untouched -------------------------------------------------------------------


def test_a_claim_left_without_outcome_past_the_limit_returns_to_the_queue(
    settings, sales_rep, other_rep
):
    settings.CLAIM_RELEASE_HOURS = 48
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        old = sql()
        contact_claim(contact_id=old.pk, user=sales_rep)
    with time_machine.travel(start + timedelta(hours=40), tick=False):
        recent = sql()
        contact_claim(contact_id=recent.pk, user=other_rep)

    with time_machine.travel(start + timedelta(hours=49), tick=False):
        assert claims_release_stale() == 1
        assert claims_release_stale() == 0

    old.refresh_from_db()
    recent.refresh_from_db()
    assert old.owner is None and old.claimed_at is None
    assert recent.owner == other_rep
    [expired] = audits(old, ContactAudit.Action.EXPIRED)
    assert "Hugo Bernard" in expired.note and expired.actor is None
    assert Contact.objects.sql_queue().filter(pk=old.pk).exists()


def test_the_beat_task_releases_stale_claims(settings, sales_rep):
    from contacts.tasks import release_stale_claims_task

    settings.CLAIM_RELEASE_HOURS = 1
    lead = sql(owner=sales_rep, claimed_at=timezone.now() - timedelta(hours=2))
    assert release_stale_claims_task.delay().get() == 1
    lead.refresh_from_db()
    assert lead.owner is None
    assert "release-stale-claims" in settings.CELERY_BEAT_SCHEDULE


# --- My leads and outcomes -------------------------------------------------------------------


@pytest.fixture
def my_lead(sales_rep):
    lead = sql(first_name="Chloé", last_name="Garnier", score=75)
    contact_claim(contact_id=lead.pk, user=sales_rep)
    lead.refresh_from_db()
    return lead


def test_my_leads_lists_what_the_rep_claimed_and_nothing_else(sales_client, my_lead, other_rep):
    theirs = sql(first_name="Paul", last_name="Autre", owner=other_rep, claimed_at=timezone.now())

    body = sales_client.get(reverse("queue-mine")).content.decode()

    assert "Chloé Garnier" in body and theirs.display_name not in body


def test_a_lead_page_has_the_score_explanation_and_timeline_at_hand(sales_client, my_lead):
    Event.objects.create(contact=my_lead, type="demo_request", properties={"title": "Démo produit"})

    body = sales_client.get(reverse("queue-lead", args=[my_lead.pk])).content.decode()

    explanation = reverse("score-explanation", args=[my_lead.pk])
    assert f'hx-get="{explanation}"' in body and f'href="{explanation}"' in body
    assert "Démo produit" in body
    assert 'name="outcome"' in body


def test_a_rep_calls_or_writes_to_a_lead_from_its_page_unless_told_not_to(sales_client, my_lead):
    my_lead.phone, my_lead.email = "+33 (0)1 23.45-67 89", "chloe.garnier@exemple.fr"
    my_lead.save()
    page = reverse("queue-lead", args=[my_lead.pk])

    body = sales_client.get(page).content.decode()
    assert 'href="tel:+33123456789"' in body  # the "(0)" is not dialled after +33
    assert 'href="mailto:chloe.garnier@exemple.fr"' in body

    my_lead.do_not_call = my_lead.do_not_email = True
    my_lead.save()
    body = sales_client.get(page).content.decode()
    assert "tel:" not in body and "mailto:" not in body
    assert "+33 (0)1 23.45-67 89" in body and "Ne pas appeler" in body


def test_the_contact_page_links_the_phone_and_the_email(marketer_client):
    contact = ContactFactory(phone="06 12 34 56 78", email="lea@exemple.fr")
    hidden = ContactFactory(phone="n/c", email="x@exemple.fr", do_not_email=True)

    body = marketer_client.get(reverse("contact-detail", args=[contact.pk])).content.decode()
    assert 'href="tel:0612345678"' in body and 'href="mailto:lea@exemple.fr"' in body
    body = marketer_client.get(reverse("contact-detail", args=[hidden.pk])).content.decode()
    assert "tel:" not in body and "mailto:" not in body


def test_won_makes_a_client_records_a_purchase_and_audits(sales_client, sales_rep, my_lead):
    response = sales_client.post(
        reverse("queue-lead", args=[my_lead.pk]), {"outcome": "won", "amount": "1200"}
    )

    assert response.status_code == 302
    my_lead.refresh_from_db()
    assert my_lead.stage == Contact.Stage.CLIENT and my_lead.owner == sales_rep
    change = my_lead.stage_changes.get(to_stage="client")
    assert change.outcome == "won" and change.actor == sales_rep and change.cause == "user"
    assert my_lead.events.filter(type=Event.Type.PURCHASE, source="sales").count() == 1
    assert audits(my_lead, ContactAudit.Action.OUTCOME)


def test_lost_with_a_reason_from_the_list_goes_back_to_lead_and_leaves_the_rep(
    sales_client, my_lead
):
    sales_client.post(
        reverse("queue-lead", args=[my_lead.pk]),
        {"outcome": "lost", "lost_reason": "competitor", "reason": "Moins cher ailleurs"},
    )

    my_lead.refresh_from_db()
    assert my_lead.stage == Contact.Stage.LEAD and my_lead.owner is None
    change = my_lead.stage_changes.get(outcome="lost")
    assert change.from_stage == "sql" and "Moins cher ailleurs" in change.reason


def test_recycle_goes_back_to_lead_with_its_reason(sales_client, my_lead):
    sales_client.post(
        reverse("queue-lead", args=[my_lead.pk]),
        {"outcome": "recycled", "reason": "Projet repoussé à l'an prochain"},
    )
    my_lead.refresh_from_db()
    assert my_lead.stage == Contact.Stage.LEAD
    change = my_lead.stage_changes.get(outcome=StageChange.Outcome.RECYCLED)
    assert change.reason == "Projet repoussé à l'an prochain"


@pytest.mark.parametrize(
    "data, field",
    [
        ({"outcome": "lost"}, "lost_reason"),
        ({"outcome": "lost", "lost_reason": "other"}, "reason"),
        ({"outcome": "lost", "lost_reason": "other", "reason": "   "}, "reason"),
        ({"outcome": "recycled"}, "reason"),
        ({}, "outcome"),
        ({"outcome": "teleported"}, "outcome"),
    ],
)
def test_an_outcome_without_its_reason_is_refused_with_a_clear_error(
    sales_client, my_lead, data, field
):
    response = sales_client.post(reverse("queue-lead", args=[my_lead.pk]), data)

    assert response.status_code == 400
    assert response.context["form"].errors[field]
    assert 'role="alert"' in response.content.decode()
    my_lead.refresh_from_db()
    assert my_lead.stage == Contact.Stage.SQL and not my_lead.stage_changes.exists()
    assert not audits(my_lead, ContactAudit.Action.OUTCOME)


def test_the_service_refuses_a_missing_reason_too(sales_rep, my_lead):
    with pytest.raises(OutcomeRefused):
        contact_outcome_record(contact=my_lead, user=sales_rep, outcome="lost")
    with pytest.raises(OutcomeRefused):
        contact_outcome_record(contact=my_lead, user=sales_rep, outcome="recycled")
    my_lead.refresh_from_db()
    assert my_lead.stage == Contact.Stage.SQL


def test_a_rep_cannot_record_the_outcome_of_someone_elses_lead(client, other_rep, my_lead):
    client.force_login(other_rep)

    response = client.post(
        reverse("queue-lead", args=[my_lead.pk]), {"outcome": "won", "amount": "1200"}
    )

    assert response.status_code == 404  # another rep's lead: as if it did not exist
    my_lead.refresh_from_db()
    assert my_lead.stage == Contact.Stage.SQL


def test_an_outcome_on_a_lead_that_moved_on_is_a_message_not_a_500(sales_client, my_lead):
    Contact.objects.filter(pk=my_lead.pk).update(stage=Contact.Stage.CLIENT)

    response = sales_client.post(
        reverse("queue-lead", args=[my_lead.pk]), {"outcome": "won", "amount": "1200"}, follow=True
    )

    assert response.status_code == 200 and "Chloé Garnier" in said(response)
    assert not my_lead.events.filter(type=Event.Type.PURCHASE).exists()


# --- Admin: release and reassign -------------------------------------------------------------


def test_admin_releases_and_reassigns_leads_with_audit_rows(
    client, admin_user, sales_rep, other_rep, my_lead
):
    client.force_login(admin_user)
    changelist = reverse("admin:contacts_contact_changelist")

    client.post(changelist, {"action": "reassign", "_selected_action": [my_lead.pk],
                             "rep": other_rep.pk})  # fmt: skip
    my_lead.refresh_from_db()
    assert my_lead.owner == other_rep
    [moved] = audits(my_lead, ContactAudit.Action.REASSIGNED)
    assert moved.actor == admin_user and "Hugo Bernard" in moved.note

    client.post(changelist, {"action": "release", "_selected_action": [my_lead.pk]})
    my_lead.refresh_from_db()
    assert my_lead.owner is None
    [released] = audits(my_lead, ContactAudit.Action.RELEASED)
    assert released.actor == admin_user
    assert Contact.objects.sql_queue().filter(pk=my_lead.pk).exists()


def test_reassigning_a_contact_that_is_not_an_sql_changes_nothing(admin_user, sales_rep):
    client_contact = ContactFactory(stage=Contact.Stage.CLIENT)
    assert not contact_reassign(contact=client_contact, to=sales_rep, actor=admin_user)
    assert not contact_release(contact=client_contact, actor=admin_user)
    assert not audits(client_contact)
