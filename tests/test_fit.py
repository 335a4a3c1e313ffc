"""Fit on the contacts: recomputed when a contact is created or its fields change (forms,
admin, API, import) and for everyone when fit rules or grade cut-offs change; thresholds that
ask for a grade, live and at a rescore alike; a grade that changes moves the stage."""

import json
from datetime import UTC, datetime

import pytest
from django.urls import reverse
from django.utils import translation

from contacts.intake.capture import api_key_create
from contacts.models import Contact
from contacts.services import contact_create, contact_update
from scoring import rescore
from scoring.fit import fit_recompute
from scoring.live import active_rules
from scoring.models import FitGrades, FitRule, ScoreRule, Threshold
from scoring.preview import rescore_plan
from tests.factories import ContactFactory
from tests.test_csv_import import run_import
from tests.utils import record

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def fit_rules():
    return [
        FitRule.objects.create(name="Director", field="job_title", operator="contains",
                               value="directeur", points=20),
        FitRule.objects.create(name="Mid-size", field="company_size", operator="between",
                               number_min=50, number_max=1000, points=10),
        FitRule.objects.create(name="Industrie", field="industry", operator="in",
                               values="Énergie\nBâtiment", points=5),
    ]  # fmt: skip


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def fit_of(contact):
    contact.refresh_from_db()
    return contact.fit_score, contact.fit_grade


def test_a_new_contact_gets_its_fit_and_an_edit_changes_it(fit_rules):
    contact = contact_create(email="ana@exemple.fr", job_title="Directeur général",
                             company_size=200)  # fmt: skip
    assert (contact.fit_score, contact.fit_grade) == (30, "A")  # on the instance returned
    assert fit_of(contact) == (30, "A")
    contact_update(contact=contact, job_title="Stagiaire")
    assert (contact.fit_score, contact.fit_grade) == (10, "C")
    contact_update(contact=contact, industry="  bâtiment ")
    assert fit_of(contact) == (15, "B")


def test_without_fit_rules_everyone_is_d_with_no_points():
    contact = contact_create(email="bob@exemple.fr", job_title="Directeur")
    assert fit_of(contact) == (0, "D")


def test_the_contact_form_takes_the_new_fields_and_keeps_accents(marketer_client, fit_rules):
    response = marketer_client.post(reverse("contact-create"), {
        "email": "eloise@exemple.fr", "first_name": "Éloïse", "job_title": "Directrice",
        "country": "Côte d’Ivoire", "industry": "Énergie", "company_size": "80",
        "consent": "unknown",
    })  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    contact = Contact.objects.get(email="eloise@exemple.fr")
    assert (contact.country, contact.industry, contact.company_size) == (
        "Côte d’Ivoire", "Énergie", 80)  # fmt: skip
    assert (contact.fit_score, contact.fit_grade) == (15, "B")


def test_the_api_sets_the_fields_and_answers_with_the_fit(client, fit_rules):
    key = api_key_create(name="CRM")[1]
    body = {"contacts": [{"email": "chloe@exemple.fr", "job_title": "Directeur achats",
                          "company_size": 120, "industry": "Énergie", "country": "France"}]}  # fmt: skip
    response = client.post("/api/v1/contacts", data=json.dumps(body),
                           content_type="application/json",
                           headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert response.status_code == 200, response.content
    [out] = response.json()["contacts"]
    assert (out["fit_score"], out["fit_grade"], out["industry"]) == (35, "A", "Énergie")
    detail = client.get(f"/api/v1/contacts/{out['id']}", headers={"Authorization": f"Bearer {key}"})
    assert (detail.json()["fit_score"], detail.json()["fit_grade"]) == (35, "A")
    bad = client.post("/api/v1/contacts", content_type="application/json",
                      data=json.dumps({"contacts": [{"email": "x@exemple.fr",
                                                     "company_size": "beaucoup"}]}),
                      headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert bad.status_code == 400
    assert "company_size" in json.dumps(bad.json())


def test_an_import_sets_the_fit_of_new_and_known_contacts(
    marketer_client, django_capture_on_commit_callbacks, fit_rules
):
    known = ContactFactory(email="known@exemple.fr", job_title="")
    content = (
        "email;fonction;secteur;effectif;pays\n"
        "new@exemple.fr;Directeur technique;Bâtiment;1 200;Sénégal\n"
        "known@exemple.fr;Directrice adjointe;Énergie;75;France\n"
        "bad@exemple.fr;Directeur;Énergie;beaucoup;France\n"
    ).encode()
    job = run_import(marketer_client, django_capture_on_commit_callbacks, content,
                     overwrite="on")  # fmt: skip
    assert (job.created_count, job.rejected_count) == (1, 1)
    new = Contact.objects.get(email="new@exemple.fr")
    assert (new.company_size, new.country, new.industry) == (1200, "Sénégal", "Bâtiment")
    assert (new.fit_score, new.fit_grade) == (25, "B")  # 1,200 people: out of the range
    assert fit_of(known) == (15, "B")  # "directrice" does not contain "directeur"
    assert "beaucoup" in job.row_errors.get().message


def test_a_rule_change_recomputes_everyone_from_admin(admin_client, fit_rules):
    people = [ContactFactory(job_title=title) for title in ("Directeur", "Stagiaire", "")]
    fit_recompute()
    assert [fit_of(p) for p in people] == [(20, "B"), (0, "D"), (0, "D")]
    response = admin_client.post(reverse("admin:scoring_fitrule_add"), {
        "name": "Interns", "field": "job_title", "operator": "contains", "value": "stagiaire",
        "points": "-5", "active": "on",
    }, headers={"accept-language": "en"})  # fmt: skip
    assert response.status_code == 302
    assert [fit_of(p) for p in people] == [(20, "B"), (-5, "D"), (0, "D")]
    director = FitRule.objects.get(name="Director")
    admin_client.post(reverse("admin:scoring_fitrule_change", args=[director.pk]), {
        "name": "Director", "field": "job_title", "operator": "contains", "value": "directeur",
        "points": "40", "active": "on",
    })  # fmt: skip
    assert fit_of(people[0]) == (40, "A")
    admin_client.post(reverse("admin:scoring_fitrule_delete", args=[director.pk]), {"post": "yes"})
    assert fit_of(people[0]) == (0, "D")


def test_new_grade_cut_offs_regrade_everyone(admin_client, fit_rules):
    director = ContactFactory(job_title="Directeur")
    fit_recompute()
    assert fit_of(director) == (20, "B")
    response = admin_client.post(reverse("admin:scoring_fitgrades_add"),
                                 {"a_from": "20", "b_from": "10", "c_from": "1"})  # fmt: skip
    assert response.status_code == 302
    assert fit_of(director) == (20, "A")
    assert FitGrades.objects.count() == 1


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"field": "job_title", "operator": "between", "number_min": "10"}, "operator",
         "“Between” compares numbers: choose company size, or a text condition."),
        ({"field": "company_size", "operator": "contains", "value": "50"}, "operator",
         "Company size is a number: use “is a number between”."),
        ({"field": "company_size", "operator": "between"}, "number_min",
         "Give at least one bound of the range."),
        ({"field": "company_size", "operator": "between", "number_min": "500",
          "number_max": "50"}, "number_max", "The upper bound cannot be below the lower bound."),
        ({"field": "country", "operator": "in", "values": " \n "}, "values",
         "Give the values, one per line."),
        ({"field": "country", "operator": "equals"}, "value", "Give the value to compare with."),
        ({"field": "country", "operator": "equals", "value": "France", "points": "0"}, "points",
         "A rule must give or take at least one point."),
    ],
)  # fmt: skip
def test_admin_refuses_a_bad_fit_rule_with_a_clear_message(admin_client, data, field, message):
    post = {"name": "Rule", "points": "5", "active": "on", "value": "", "values": "", **data}
    response = admin_client.post(reverse("admin:scoring_fitrule_add"), post,
                                 headers={"accept-language": "en"})  # fmt: skip
    assert response.status_code == 200
    assert message in response.context["adminform"].form.errors[field]
    assert not FitRule.objects.exists()


def test_admin_refuses_grades_out_of_order_in_french(admin_client):
    response = admin_client.post(reverse("admin:scoring_fitgrades_add"),
                                 {"a_from": "10", "b_from": "10", "c_from": "20"},
                                 headers={"accept-language": "fr"})  # fmt: skip
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["a_from"] == ["A doit commencer au-dessus de B."]
    assert errors["b_from"] == ["B doit commencer au-dessus de C."]


# --- Thresholds that ask for a fit grade ------------------------------------------------------


@pytest.fixture
def sql_needs_b(fit_rules):
    Threshold.objects.filter(stage="sql").update(min_fit_grade="B")


def rescore_now() -> int:
    run = rescore.rescore_start(reason="test")
    rescore.rescore_run(rescore_id=run.pk)
    run.refresh_from_db()
    return run.stage_moves


def pricing_visits(contact, capture):
    """Three webinars at +20, now (after the contact became a lead): a score of 60."""
    ScoreRule.objects.get_or_create(name="Webinar", event_type="page_view",
                                    url_contains="/webinar", points=20)  # fmt: skip
    for _ in range(3):
        record(contact, "page_view", capture=capture, url="https://ex.fr/webinar")


def test_sql_at_60_needs_fit_b_live_and_the_rescore_agrees(
    django_capture_on_commit_callbacks, sql_needs_b
):
    capture = django_capture_on_commit_callbacks
    good = contact_create(email="good@exemple.fr", job_title="Directeur")
    poor = contact_create(email="poor@exemple.fr", job_title="Stagiaire")
    pricing_visits(good, capture)
    pricing_visits(poor, capture)
    assert (good.score, good.fit_grade, good.stage) == (60, "B", "sql")
    assert (poor.score, poor.fit_grade, poor.stage) == (60, "D", "mql")
    assert all(not c.moves for c in rescore_plan(active_rules()).contacts)
    assert rescore_now() == 0
    change = good.stage_changes.get(to_stage="sql")
    with translation.override("en"):
        assert change.reason_text == "Score 60 ≥ 60, fit B ≥ B"
        assert (
            change.moved_by == "Threshold: SQL at 60 points or Demo requested and fit B or better"
        )


def test_a_better_grade_moves_the_contact_where_its_history_now_leads_and_back(
    django_capture_on_commit_callbacks, sql_needs_b
):
    contact = contact_create(email="riz@exemple.fr", job_title="Stagiaire")
    pricing_visits(contact, django_capture_on_commit_callbacks)
    assert contact.stage == "mql"
    contact_update(contact=contact, job_title="Directeur commercial")
    assert (contact.fit_grade, contact.stage) == ("B", "sql")
    assert rescore_now() == 0  # the rescore agrees
    contact_update(contact=contact, job_title="Stagiaire")  # a threshold made it an SQL
    assert (contact.fit_grade, contact.stage) == ("D", "mql")
    assert rescore_now() == 0


def test_a_threshold_needing_a_grade_moves_no_one_a_person_moved_or_owns(
    django_capture_on_commit_callbacks, sql_needs_b, sales_rep
):
    contact = contact_create(email="own@exemple.fr", job_title="Directeur")
    pricing_visits(contact, django_capture_on_commit_callbacks)
    Contact.objects.filter(pk=contact.pk).update(owner=sales_rep)
    contact_update(contact=contact, job_title="Stagiaire")
    assert (contact.fit_grade, contact.stage) == ("D", "sql")  # someone owns it: kept


def test_without_a_grade_requirement_a_fit_change_moves_no_stage(
    django_capture_on_commit_callbacks, fit_rules
):
    contact = contact_create(email="plain@exemple.fr", job_title="Stagiaire")
    pricing_visits(contact, django_capture_on_commit_callbacks)
    assert contact.stage == "sql"
    changes = contact.stage_changes.count()
    contact_update(contact=contact, job_title="Directeur")
    assert contact.stage == "sql" and contact.stage_changes.count() == changes
