"""Assignment beside the pull queue: the sweep gives new SQLs to reps as each team chose (round
robin, rules by a contact field, capacity, duty), audited and notified; pull mode is the queue."""

from __future__ import annotations

from collections import Counter

import pytest
from django.conf import settings
from django.utils import timezone, translation

from contacts import reasons
from contacts.models import (
    AssignmentRule,
    Contact,
    ContactAudit,
    CustomField,
    Notification,
    SalesRep,
    Team,
)
from contacts.sales.assignment import sqls_assign
from contacts.sales.claims import contact_claim
from contacts.tasks import assign_sqls_task
from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english():
    """Notes are read in English here (the French one is checked by name)."""
    with translation.override("en"):
        yield


@pytest.fixture
def make_rep():
    def make(username: str, team: Team | None, **seat) -> SalesRep:
        user = UserFactory(username=username, first_name=username.title(), last_name="Rep",
                           roles=["sales"])  # fmt: skip
        return SalesRep.objects.create(user=user, team=team, **seat)

    return make


def sqls(count: int, **fields) -> list[Contact]:
    return [ContactFactory(stage=Contact.Stage.SQL, **fields) for _ in range(count)]


def owners(leads: list[Contact]) -> list[int | None]:
    found = dict(Contact.objects.filter(pk__in=[c.pk for c in leads]).values_list("pk", "owner"))
    return [found[c.pk] for c in leads]


def test_with_every_team_in_pull_mode_the_queue_stays_as_it_is(make_rep):
    team = Team.objects.create(name="Ventes", is_default=True)  # pull: the default mode
    make_rep("hugo", team)
    leads = sqls(3)

    assert sqls_assign() == 0

    assert owners(leads) == [None, None, None]
    assert Contact.objects.sql_queue().count() == 3
    assert not ContactAudit.objects.exists() and not Notification.objects.exists()


def test_round_robin_gives_each_rep_on_duty_their_turn_across_sweeps(make_rep):
    team = Team.objects.create(name="Ventes", assignment="round_robin", is_default=True)
    anne, bruno, chloe = (make_rep(name, team) for name in ("anne", "bruno", "chloe"))
    first = sqls(4)

    assert sqls_assign() == 4
    later = sqls(2)
    assert sqls_assign() == 2

    turns = [anne.pk, bruno.pk, chloe.pk, anne.pk, bruno.pk, chloe.pk]
    assert owners(first + later) == turns
    assert not Contact.objects.sql_queue().exists()
    lead = Contact.objects.get(pk=first[0].pk)
    assert lead.claimed_at is not None
    assert list(Contact.objects.for_owner(anne.user)) == [first[0], first[3]]


def test_each_assignment_is_audited_with_its_rule_and_notified_to_the_rep(make_rep):
    team = Team.objects.create(name="Ventes", assignment="round_robin", is_default=True)
    hugo = make_rep("hugo", team)
    [lead] = sqls(1)

    sqls_assign()

    audit = ContactAudit.objects.get(contact=lead)
    assert audit.action == ContactAudit.Action.ASSIGNED
    assert audit.owner == hugo.user and audit.actor is None
    assert audit.note_text == "No rule matched: round robin in Ventes, the default team"
    with translation.override("fr"):
        assert audit.note_text == (
            "Aucune règle ne s’applique\u00a0: tour de rôle dans Ventes, l’équipe par défaut"
        )
    notification = Notification.objects.get(user=hugo.user)
    assert notification.kind == Notification.Kind.ASSIGNED
    assert notification.contact_id == lead.pk and notification.audit == audit
    assert reasons.text(notification.params["rule"]) == audit.note_text


def test_reps_off_duty_or_without_the_sales_role_are_skipped(make_rep):
    team = Team.objects.create(name="Ventes", assignment="round_robin", is_default=True)
    make_rep("away", team, on_duty=False)
    gone = make_rep("gone", team)
    gone.user.is_active = False
    gone.user.save()
    left = make_rep("left", team)
    left.user.groups.clear()
    hugo = make_rep("hugo", team)
    leads = sqls(3)

    sqls_assign()

    assert owners(leads) == [hugo.pk] * 3


def test_capacity_counts_open_leads_and_the_rest_waits_for_the_next_sweep(make_rep):
    team = Team.objects.create(name="Ventes", assignment="round_robin", is_default=True)
    anne = make_rep("anne", team, max_open_leads=2)
    bruno = make_rep("bruno", team, max_open_leads=1)
    [claimed] = sqls(1)
    contact_claim(contact_id=claimed.pk, user=anne.user)  # one open lead already
    leads = sqls(4)

    assert sqls_assign() == 2

    assert Counter(owners(leads)) == {anne.pk: 1, bruno.pk: 1, None: 2}
    assert Contact.objects.sql_queue().count() == 2  # still in the pull queue
    # Anne's lead is won: she has room again, the next sweep gives her one.
    Contact.objects.filter(pk=claimed.pk).update(stage=Contact.Stage.CLIENT)
    assert sqls_assign() == 1
    assert Counter(owners(leads)) == {anne.pk: 2, bruno.pk: 1, None: 1}


def test_when_room_is_short_the_best_lead_of_the_queue_gets_it(make_rep):
    team = Team.objects.create(name="Ventes", assignment="round_robin", is_default=True)
    hugo = make_rep("hugo", team, max_open_leads=1)
    warm = ContactFactory(stage="sql", score=70)
    hot = ContactFactory(stage="sql", score=120)

    sqls_assign()

    assert owners([warm, hot]) == [None, hugo.pk]


def test_when_no_rep_can_take_a_lead_it_stays_in_the_queue_for_anyone_to_claim(make_rep):
    team = Team.objects.create(name="Ventes", assignment="round_robin", is_default=True)
    make_rep("away", team, on_duty=False)
    [lead] = sqls(1)

    assert sqls_assign() == 0

    assert list(Contact.objects.sql_queue()) == [lead]
    assert not ContactAudit.objects.exists()


def test_rules_route_by_country_and_the_rest_goes_to_the_default_team(make_rep):
    europe = Team.objects.create(name="Europe", assignment="round_robin")
    americas = Team.objects.create(name="Amériques", assignment="round_robin", is_default=True)
    elsa = make_rep("elsa", europe)
    amos = make_rep("amos", americas)
    AssignmentRule.objects.create(
        position=1, field="country", operator="in", values="France\nBelgique", team=europe
    )
    french, belgian = ContactFactory(stage="sql", country=" france "), *sqls(1, country="Belgique")
    other = ContactFactory(stage="sql", country="Canada")

    sqls_assign()

    assert owners([french, belgian, other]) == [elsa.pk, elsa.pk, amos.pk]
    note = ContactAudit.objects.get(contact=french).note_text
    assert note == "Rule 1 (Country is one of France, Belgique): round robin in Europe"


def test_company_size_between_gives_the_named_rep_their_accounts(make_rep):
    team = Team.objects.create(name="Ventes", assignment="rules", is_default=True)
    key_accounts, other = make_rep("karim", team), make_rep("olga", team)
    AssignmentRule.objects.create(
        position=1, field="company_size", operator="between", number_min=1000, team=team,
        rep=key_accounts,
    )  # fmt: skip
    big = ContactFactory(stage="sql", company_size=5000)
    edge = ContactFactory(stage="sql", company_size=1000)
    small = ContactFactory(stage="sql", company_size=999)
    unknown = ContactFactory(stage="sql", company_size=None)

    sqls_assign()

    assert owners([big, edge]) == [key_accounts.pk] * 2
    # The others go round robin in the team, the named rep included.
    assert Counter(owners([small, unknown])) == {key_accounts.pk: 1, other.pk: 1}
    assert ContactAudit.objects.get(contact=big).note_text == (
        "Rule 1 (Company size at least 1000): given to Karim Rep"
    )


def test_a_named_rep_off_duty_leaves_their_leads_to_round_robin_in_the_team(make_rep):
    team = Team.objects.create(name="Ventes", assignment="rules")
    karim = make_rep("karim", team, on_duty=False)
    olga = make_rep("olga", team)
    AssignmentRule.objects.create(
        position=1, field="country", operator="equals", value="France", team=team, rep=karim
    )
    [lead] = sqls(1, country="France")
    [elsewhere] = sqls(1, country="Spain")  # no rule, no default team: the pull queue

    sqls_assign()

    assert owners([lead, elsewhere]) == [olga.pk, None]
    assert ContactAudit.objects.get(contact=lead).note_text == (
        "Rule 1 (Country is “France”): round robin in Ventes"
    )


def test_a_custom_field_rule_routes_on_the_contacts_value(make_rep):
    CustomField.objects.create(key="plan", label="Offre", kind="choice", choices="Pro\nFree")
    CustomField.objects.create(key="seats", label="Postes", kind="number")
    pros = Team.objects.create(name="Pro", assignment="round_robin")
    volume = Team.objects.create(name="Volume", assignment="round_robin")
    paula, victor = make_rep("paula", pros), make_rep("victor", volume)
    AssignmentRule.objects.create(
        position=2, field="custom:plan", operator="equals", value="pro", team=pros
    )
    AssignmentRule.objects.create(
        position=1, field="custom:seats", operator="between", number_min=50, number_max=500,
        team=volume,
    )  # fmt: skip
    pro = ContactFactory(stage="sql", custom_fields={"plan": "Pro", "seats": 10})
    many = ContactFactory(stage="sql", custom_fields={"plan": "Pro", "seats": 80})
    free = ContactFactory(stage="sql", custom_fields={"plan": "Free"})

    sqls_assign()

    # The first rule in order wins: 80 seats goes to Volume though its plan is Pro.
    assert owners([pro, many, free]) == [paula.pk, victor.pk, None]
    assert ContactAudit.objects.get(contact=many).note_text == (
        "Rule 1 (Postes between 50 and 500): round robin in Volume"
    )


def test_a_rule_to_a_pull_team_keeps_its_leads_in_the_queue(make_rep):
    seniors = Team.objects.create(name="Grands comptes")  # pull
    everyone = Team.objects.create(name="Ventes", assignment="round_robin", is_default=True)
    make_rep("sam", seniors)
    hugo = make_rep("hugo", everyone)
    AssignmentRule.objects.create(
        position=1, field="industry", operator="equals", value="Banque", team=seniors
    )
    bank = ContactFactory(stage="sql", industry="banque")
    shop = ContactFactory(stage="sql", industry="Commerce")

    sqls_assign()

    assert owners([bank, shop]) == [None, hugo.pk]
    assert list(Contact.objects.sql_queue()) == [bank]


def test_only_waiting_sqls_are_assigned(make_rep):
    team = Team.objects.create(name="Ventes", assignment="round_robin", is_default=True)
    hugo, other = make_rep("hugo", team), make_rep("other", team)
    mql = ContactFactory(stage="mql")
    [taken] = sqls(1)
    Contact.objects.filter(pk=taken.pk).update(owner=other.user, claimed_at=timezone.now())

    assert sqls_assign() == 0

    assert owners([mql, taken]) == [None, other.pk]
    assert not Notification.objects.filter(user=hugo.user).exists()


def test_the_beat_sweeps_every_minute_through_its_task(make_rep):
    entry = settings.CELERY_BEAT_SCHEDULE["assign-sqls"]
    assert entry["task"] == "contacts.tasks.assign_sqls_task" and entry["schedule"] == 60.0
    team = Team.objects.create(name="Ventes", assignment="round_robin", is_default=True)
    hugo = make_rep("hugo", team)
    leads = sqls(2)

    assert assign_sqls_task() == 2
    assert assign_sqls_task() == 0  # idempotent: a second delivery gives nothing twice

    assert owners(leads) == [hugo.pk] * 2
    assert ContactAudit.objects.filter(action="assigned").count() == 2
