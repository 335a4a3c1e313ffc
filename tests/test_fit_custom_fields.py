"""Fit rules on custom fields: the engine's conditions (no database), the admin's checks, and a
rule that changes a contact's grade when its value is written, explained with the field's
label."""

from datetime import date
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from contacts.models import Contact, CustomField
from contacts.services import contact_update
from scoring.fit import fit_recompute
from scoring.fit_engine import FitRule as EngineRule
from scoring.fit_engine import custom_fields_flat, fit_score
from scoring.models import FitRule
from tests.factories import ContactFactory

ENGLISH = {"headers": {"accept-language": "en"}}


def rule(operator, **fields):
    return EngineRule(id=1, name="r", field="custom:x", operator=operator, points=5, **fields)


@pytest.mark.parametrize(
    ("_case", "condition", "value", "holds"),
    [
        ("number in range", rule("between", number_min=10, number_max=100), 50, True),
        ("float in range", rule("between", number_min=10, number_max=100), 99.5, True),
        ("float above", rule("between", number_min=10, number_max=100), 100.5, False),
        ("open top", rule("between", number_min=10), 10**9, True),
        ("text among numbers", rule("between", number_min=10), "50", False),
        ("boolean", rule("between", number_min=0), True, False),
        ("before", rule("before", day=date(2027, 1, 1)), "2026-12-31", True),
        ("before, the day itself", rule("before", day=date(2027, 1, 1)), "2027-01-01", False),
        ("after", rule("after", day=date(2027, 1, 1)), "2027-01-02", True),
        ("after, earlier", rule("after", day=date(2027, 1, 1)), "2026-06-01", False),
        ("date object", rule("after", day=date(2027, 1, 1)), date(2027, 6, 1), True),
        ("not a date", rule("after", day=date(2027, 1, 1)), "bientôt", False),
        ("no value", rule("after", day=date(2027, 1, 1)), None, False),
        ("no date given", rule("after"), "2027-06-01", False),
        ("choice in list", rule("in", values=("Pro", "Enterprise")), "pro", True),
        ("choice not in list", rule("in", values=("Pro", "Enterprise")), "Starter", False),
        ("text contains", rule("contains", value="mars"), "Salon de MARS", True),
        ("text equals", rule("equals", value="vip"), " VIP ", True),
    ],
)  # fmt: skip
def test_custom_field_conditions(_case, condition, value, holds):
    assert condition.holds({"custom:x": value}) is holds


def test_a_contacts_custom_values_are_read_under_their_rule_names():
    fields = custom_fields_flat({"seats": 40, "plan": "Pro"})
    assert fields == {"custom:seats": 40, "custom:plan": "Pro"}
    rules = [
        EngineRule(1, "Big", "custom:seats", "between", 10, number_min=Decimal(20)),
        EngineRule(2, "Pro", "custom:plan", "in", 15, values=("Pro",)),
        EngineRule(3, "Interns", "job_title", "contains", -5, value="stagiaire"),
    ]
    points, lines = fit_score({**fields, "job_title": "CEO"}, rules)
    assert points == 25
    assert [(line.rule, line.value) for line in lines] == [("Big", 40), ("Pro", "Pro")]


@pytest.fixture
def custom(db):
    return {
        "seats": CustomField.objects.create(key="seats", label="Postes", kind="number"),
        "renewal": CustomField.objects.create(key="renewal", label="Renouvellement", kind="date"),
        "plan": CustomField.objects.create(
            key="plan", label="Offre", kind="choice", choices="Starter\nPro\nEnterprise"
        ),
    }


def rule_post(**data):
    return {"name": "Rule", "points": "20", "active": "on", "value": "", "values": "",
            "number_min": "", "number_max": "", "day": "", **data}  # fmt: skip


def test_a_fit_rule_on_a_custom_field_changes_the_grade_and_names_the_field(
    admin_client, marketer_client, custom
):
    ana = ContactFactory(first_name="Ana", custom_fields={"plan": "Pro"})
    fit_recompute()
    assert Contact.objects.get(pk=ana.pk).fit_grade == "D"
    form = admin_client.get(reverse("admin:scoring_fitrule_add")).content.decode()
    assert '<option value="custom:plan">Offre</option>' in form
    response = admin_client.post(
        reverse("admin:scoring_fitrule_add"),
        rule_post(name="Clients Pro", field="custom:plan", operator="in", values="pro\nEnterprise"),
    )
    assert response.status_code == 302
    assert Contact.objects.get(pk=ana.pk).fit_grade == "B"  # 20 points: B from 15

    why = marketer_client.get(reverse("score-explanation", args=[ana.pk]), **ENGLISH)
    assert "<strong>Clients Pro</strong> · Offre: <span>Pro</span>" in why.content.decode()
    listing = admin_client.get(reverse("admin:scoring_fitrule_changelist")).content.decode()
    assert '<td class="field-field_name">Offre</td>' in listing


def test_writing_a_custom_value_regrades_the_contact(custom):
    FitRule.objects.create(name="Grands comptes", field="custom:seats", operator="between",
                           number_min=100, points=30)  # fmt: skip
    FitRule.objects.create(name="Renouvelle bientôt", field="custom:renewal", operator="before",
                           day=date(2027, 1, 1), points=10)  # fmt: skip
    ana = ContactFactory()
    contact_update(contact=ana, custom_fields={"seats": 250})
    assert (ana.fit_score, ana.fit_grade) == (30, "A")
    contact_update(contact=ana, custom_fields={"seats": 20, "renewal": "2026-12-15"})
    assert (ana.fit_score, ana.fit_grade) == (10, "C")


@pytest.mark.parametrize(
    ("_case", "data", "field", "message"),
    [
        ("range on a date", {"field": "custom:renewal", "operator": "between", "number_min": "1"},
         "operator", "This field is a date: use “is a date before” or “after”."),
        ("date without a date", {"field": "custom:renewal", "operator": "after"}, "day",
         "Give the date to compare with."),
        ("date on a text field", {"field": "job_title", "operator": "before", "day": "2027-01-01"},
         "operator", "“Before” and “after” compare dates: choose a date field."),
        ("text on a number", {"field": "custom:seats", "operator": "contains", "value": "1"},
         "operator", "This field is a number: use “is a number between”."),
        ("contains on a choice", {"field": "custom:plan", "operator": "contains", "value": "P"},
         "operator", "This field is a choice: use “equals” or “is one of”."),
        ("unknown choice", {"field": "custom:plan", "operator": "in", "values": "Pro\nGold"},
         "values", "“Gold” is not one of the choices: Starter, Pro, Enterprise."),
        ("a date on a text rule", {"field": "job_title", "operator": "contains", "value": "CEO",
         "day": "2027-01-01"}, "day", "Only “before” and “after” take a date."),
    ],
)  # fmt: skip
def test_admin_refuses_a_bad_custom_field_rule(admin_client, custom, _case, data, field, message):
    response = admin_client.post(reverse("admin:scoring_fitrule_add"), rule_post(**data), **ENGLISH)
    assert response.status_code == 200
    assert message in response.context["adminform"].form.errors[field]
    assert not FitRule.objects.exists()


def test_a_rule_on_a_deleted_field_is_refused_on_save(custom):
    stale = FitRule(name="x", field="custom:gone", operator="equals", value="a", points=5)
    with pytest.raises(ValidationError) as refused:
        stale.full_clean()
    assert refused.value.message_dict["field"] == ["Plus aucun champ personnalisé n’a cette clé."]
