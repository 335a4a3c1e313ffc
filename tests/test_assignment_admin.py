"""Assignment in admin: teams with their reps, the rules in order (checked against the field's
type, the custom field and the team), and the pure routing they feed."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import translation

from contacts.models import AssignmentRule, CustomField, SalesRep, Team
from contacts.sales import routing
from tests.factories import ContactFactory, UserFactory


@pytest.fixture(autouse=True)
def _english():
    with translation.override("en"):
        yield


@pytest.fixture
def team(db) -> Team:
    return Team.objects.create(name="Europe", assignment="rules")


def rep_in(team: Team | None, username: str) -> SalesRep:
    return SalesRep.objects.create(user=UserFactory(username=username, roles=["sales"]), team=team)


def errors(**fields) -> dict[str, list[str]]:
    try:
        AssignmentRule(**fields).full_clean()
    except ValidationError as error:
        return error.message_dict
    return {}


def test_a_well_formed_rule_passes(team):
    assert errors(position=1, field="country", operator="in", values="France", team=team) == {}
    assert errors(field="company_size", operator="between", number_max=50, team=team) == {}


@pytest.mark.parametrize(
    ("_case", "fields", "field", "message"),
    [
        ("between on text", {"field": "country", "operator": "between", "number_min": 1},
         "operator", "“Between” compares numbers"),
        ("equals on a number", {"field": "company_size", "operator": "equals", "value": "5"},
         "operator", "This field is a number"),
        ("no bound", {"field": "company_size", "operator": "between"},
         "number_min", "at least one bound"),
        ("bounds reversed", {"field": "company_size", "operator": "between", "number_min": 9,
                             "number_max": 2}, "number_max", "cannot be below"),
        ("one of without values", {"field": "country", "operator": "in"},
         "values", "Give the values"),
        ("unknown field", {"field": "email", "operator": "equals", "value": "x"},
         "field", "Choose a contact field"),
        ("custom field gone", {"field": "custom:gone", "operator": "equals", "value": "x"},
         "field", "No custom field has this key"),
    ],
)  # fmt: skip
def test_a_rule_that_cannot_hold_is_refused_with_the_reason(team, _case, fields, field, message):
    found = errors(team=team, **fields)

    assert message in " ".join(found.get(field, [])), found


def test_a_choice_rule_takes_only_the_fields_choices(team):
    CustomField.objects.create(key="plan", label="Plan", kind="choice", choices="Pro\nFree")
    CustomField.objects.create(key="renewal", label="Renewal", kind="date")

    found = errors(field="custom:plan", operator="in", values="pro\nGold", team=team)
    dated = errors(field="custom:renewal", operator="equals", value="2026-01-01", team=team)

    assert found == {"values": ["“Gold” is not one of the choices: Pro, Free."]}
    assert dated["field"] == ["A date field cannot route leads: choose another field."]


def test_a_named_rep_must_be_of_the_team_and_the_team_assign_by_rules(team):
    other = Team.objects.create(name="Amériques", assignment="round_robin")
    outsider, member = rep_in(other, "otto"), rep_in(other, "mia")

    assert (
        "not in the rule's team"
        in errors(field="country", operator="equals", value="France", team=team, rep=outsider)[
            "rep"
        ][0]
    )
    assert (
        "Only a team assigning by rules"
        in errors(field="country", operator="equals", value="France", team=other, rep=member)[
            "rep"
        ][0]
    )


def test_only_one_team_is_the_default(db):
    Team.objects.create(name="A", is_default=True)

    with pytest.raises(ValidationError, match="default team already"):
        Team(name="B", is_default=True).validate_constraints()


def test_admin_lists_teams_reps_and_rules_in_order(admin_client, team):
    hugo = rep_in(team, "hugo")
    hugo.max_open_leads = 20
    hugo.save()
    ContactFactory(stage="sql", owner=hugo.user)
    AssignmentRule.objects.create(
        position=2, field="company_size", operator="between", number_min=1000, team=team,
        rep=hugo,
    )  # fmt: skip
    AssignmentRule.objects.create(
        position=1, field="country", operator="in", values="France\nBelgique", team=team
    )

    def read(url: str) -> str:
        return admin_client.get(url, headers={"accept-language": "en"}).content.decode()

    rules = read(reverse("admin:contacts_assignmentrule_changelist"))
    teams = read(reverse("admin:contacts_team_changelist"))
    page = read(reverse("admin:contacts_team_change", args=[team.pk]))
    reps = read(reverse("admin:contacts_salesrep_changelist"))

    first, second = "Country is one of France, Belgique", "Company size at least 1000"
    assert first in rules and second in rules and rules.index(first) < rules.index(second)
    assert "Europe" in teams and "Rules (territory or a contact field)" in teams
    assert 'name="reps-0-on_duty"' in page and 'name="reps-0-max_open_leads"' in page
    assert first in page
    assert '<td class="field-open_leads">1</td>' in reps


def test_admin_adds_a_rule_on_a_custom_field(admin_client, team):
    CustomField.objects.create(key="seats", label="Seats", kind="number")
    url = reverse("admin:contacts_assignmentrule_add")
    form = admin_client.get(url).content.decode()  # the site's language: French
    assert "Seats" in form  # a field to choose
    assert "Les règles sont essayées dans cet ordre" in form

    response = admin_client.post(url, {
        "position": 1, "field": "custom:seats", "operator": "between", "value": "",
        "values": "", "number_min": "50", "number_max": "", "team": team.pk, "rep": "",
        "active": "on",
    })  # fmt: skip

    assert response.status_code == 302
    rule = AssignmentRule.objects.get()
    assert (rule.field, rule.number_min, rule.number_max) == ("custom:seats", 50, None)


# --- Routing, pure ------------------------------------------------------------------------------


def rule(**fields) -> routing.Rule:
    return routing.Rule(id=1, position=1, team_id=1, **fields)


@pytest.mark.parametrize(
    ("_case", "the_rule", "fields", "holds"),
    [
        ("equals, case and spaces", rule(field="country", operator="equals", value="France"),
         {"country": "  FRANCE "}, True),
        ("equals, other", rule(field="country", operator="equals", value="France"),
         {"country": "Francia"}, False),
        ("blank never", rule(field="country", operator="equals", value=""),
         {"country": ""}, False),
        ("one of", rule(field="industry", operator="in", values=("Banque", "Assurance")),
         {"industry": "assurance"}, True),
        ("between, bound included", rule(field="company_size", operator="between",
                                         number_min=Decimal(10), number_max=Decimal(50)),
         {"company_size": 50}, True),
        ("between, above", rule(field="company_size", operator="between",
                                number_max=Decimal(50)), {"company_size": 51}, False),
        ("between, unknown size", rule(field="company_size", operator="between",
                                       number_min=Decimal(1)), {"company_size": None}, False),
        ("custom number", rule(field="custom:seats", operator="between", number_min=Decimal(2)),
         {"custom:seats": 2.5}, True),
    ],
)  # fmt: skip
def test_routing_rules_hold_as_written(_case, the_rule, fields, holds):
    assert the_rule.holds(fields) is holds


def test_round_robin_starts_after_the_last_rep_and_skips_the_full():
    room: dict[int, int | None] = {3: None, 5: 1, 8: None}

    assert routing.round_robin([8, 3, 5], after=3, room=room, count=5) == [5, 8, 3, 8, 3]
    assert room[5] == 0


def test_round_robin_stops_when_everyone_is_full():
    room: dict[int, int | None] = {1: 1, 2: 0}

    assert routing.round_robin([1, 2], after=None, room=room, count=3) == [1]
    assert routing.round_robin([], after=None, room={}, count=3) == []
