"""The fit grade is shown wherever the score is: the contact page with "why this fit", the
contact list (a column, a filter, a sort), the sales queue and "my leads"."""

import pytest
from django.urls import reverse

from contacts.models import Contact
from scoring.fit import fit_recompute
from scoring.models import FitRule
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

ENGLISH = {"headers": {"accept-language": "en"}}


@pytest.fixture
def graded():
    FitRule.objects.create(name="Décideur", field="job_title", operator="contains",
                           value="directeur", points=20)  # fmt: skip
    FitRule.objects.create(name="PME", field="company_size", operator="between",
                           number_min=10, number_max=2000, points=12)  # fmt: skip
    FitRule.objects.create(name="Concurrent", field="industry", operator="equals",
                           value="Marketing automation", points=-30)  # fmt: skip
    people = {
        "A": ContactFactory(first_name="Aline", last_name="Ader", job_title="Directeur général",
                            company_size=1500, stage="sql", score=70),
        "B": ContactFactory(first_name="Bruno", last_name="Bez", job_title="Directeur",
                            stage="sql", score=65),
        "D": ContactFactory(first_name="Denis", last_name="Dru", job_title="Stagiaire",
                            industry="Marketing automation", stage="sql", score=80),
    }  # fmt: skip
    fit_recompute()
    return people


def test_the_contact_page_shows_the_fit_and_why_line_by_line(marketer_client, graded):
    aline = graded["A"]
    page = marketer_client.get(reverse("contact-detail", args=[aline.pk]), **ENGLISH)
    body = page.content.decode()
    assert "32 <span" in body and "Grade A" in body
    why = marketer_client.get(reverse("score-explanation", args=[aline.pk]), **ENGLISH)
    fit = why.content.decode().split('<div class="why-fit">')[1].split('<div class="why-stage">')[0]
    assert 'data-testid="fit-score">32<' in fit
    assert "Décideur" in fit and "Job title: <span>Directeur général</span>" in fit
    assert "PME" in fit and "Company size: <span>1,500</span>" in fit
    assert "Grades: A from 30 points, B from 15, C from 5, D below." in fit
    denis = marketer_client.get(reverse("score-explanation", args=[graded["D"].pk])).content
    assert "Concurrent" in denis.decode() and "−30" in denis.decode()
    french = marketer_client.get(reverse("score-explanation", args=[aline.pk]),
                                 headers={"accept-language": "fr"}).content.decode()  # fmt: skip
    assert "Pourquoi cette adéquation" in french and "Note A" in french


def test_the_contact_list_shows_filters_and_sorts_by_grade(marketer_client, graded):
    body = marketer_client.get(reverse("contact-list"), **ENGLISH).content.decode()
    assert body.count('data-testid="fit"') == 3
    assert 'title="Fit score 32">A</span>' in body
    only_a = marketer_client.get(reverse("contact-list"), {"fit_grade": "A"}, **ENGLISH)
    names = only_a.content.decode()
    assert "Aline" in names and "Bruno" not in names and "Denis" not in names
    by_fit = marketer_client.get(reverse("contact-list"), {"sort": "-fit"}, **ENGLISH)
    order = [name for name in ("Aline", "Bruno", "Denis") if name in by_fit.content.decode()]
    text = by_fit.content.decode()
    assert sorted(order, key=text.index) == ["Aline", "Bruno", "Denis"]
    nonsense = marketer_client.get(reverse("contact-list"), {"fit_grade": "Z"}, **ENGLISH)
    assert "was ignored" in nonsense.content.decode()
    assert nonsense.content.decode().count('data-testid="fit"') == 3


def test_the_sales_queue_shows_each_leads_grade(sales_client, graded, sales_rep):
    body = sales_client.get(reverse("queue"), **ENGLISH).content.decode()
    rows = body.split('data-testid="queue-row"')[1:]
    grades = [row.split('data-testid="fit-grade"')[1].split("</span>")[0][-1] for row in rows]
    assert grades == ["D", "A", "B"]  # by score, as before: the grade is shown, not sorted on
    Contact.objects.filter(pk=graded["B"].pk).update(owner=sales_rep)
    mine = sales_client.get(reverse("queue-mine"), **ENGLISH).content.decode()
    assert 'data-testid="fit-grade"' in mine and 'title="Fit score 20">B</span>' in mine


def test_the_api_lists_the_grade_with_the_contact(client, graded):
    from contacts.intake.capture import api_key_create

    key = api_key_create(name="CRM")[1]
    response = client.get(f"/api/v1/contacts/{graded['D'].pk}",
                          headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert (response.json()["fit_score"], response.json()["fit_grade"]) == (-30, "D")


def test_the_api_lists_contacts_by_grade_page_by_page(client, graded):
    from contacts.intake.capture import api_key_create

    headers = {"Authorization": f"Bearer {api_key_create(name='CRM')[1]}"}
    first = client.get("/api/v1/contacts", {"limit": 2}, headers=headers).json()
    assert [c["fit_grade"] for c in first["contacts"]] == ["A", "B"]
    rest = client.get("/api/v1/contacts", {"after": first["next_after"]}, headers=headers).json()
    assert ([c["fit_grade"] for c in rest["contacts"]], rest["next_after"]) == (["D"], None)
    only_a = client.get("/api/v1/contacts", {"fit_grade": "A"}, headers=headers).json()
    assert [(c["first_name"], c["fit_score"]) for c in only_a["contacts"]] == [("Aline", 32)]
    bad = client.get("/api/v1/contacts", {"fit_grade": "E"}, headers=headers)
    assert bad.status_code == 400 and "fit_grade" in bad.content.decode()
    assert client.get("/api/v1/contacts").status_code == 401


def test_the_csv_export_carries_the_fit(marketer_client, graded):
    response = marketer_client.get(reverse("contact-export"), {"fit_grade": "A"}, **ENGLISH)
    text = b"".join(response.streaming_content).decode("utf-8-sig").splitlines()
    header, row = text[0].split(","), text[1].split(",")
    values = dict(zip(header, row, strict=True))
    assert (values["Fit score"], values["Fit grade"], values["Company size"]) == ("32", "A", "1500")
    assert len(text) == 2


def test_what_the_next_stage_needs_names_the_grade(marketer_client):
    from scoring.models import Threshold

    Threshold.objects.filter(stage="sql").update(min_fit_grade="B")
    lead = ContactFactory(stage="lead")
    body = marketer_client.get(reverse("score-explanation", args=[lead.pk]), **ENGLISH)
    hints = body.content.decode().split('data-testid="next-stage">')[1:]
    assert any("SQL at score ≥ 60 or Demo requested and fit B or better" in h for h in hints)
