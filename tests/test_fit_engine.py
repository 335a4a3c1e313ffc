"""Fit rules and grades, and thresholds that ask for a grade: the pure engine, no database."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from scoring import engine
from scoring.fit_engine import FitRule, Grades, fit, fit_score, grade_meets

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

DIRECTOR = FitRule(1, "Director", "job_title", "contains", 15, value="directeur")
FRANCE = FitRule(2, "France or Belgium", "country", "in", 10, values=("France", "Belgique"))
SAAS = FitRule(3, "SaaS", "industry", "equals", 5, value="Logiciel SaaS")
MID_SIZE = FitRule(4, "50 to 1,000 people", "company_size", "between", 10,
                   number_min=Decimal(50), number_max=Decimal(1000))  # fmt: skip
STUDENT = FitRule(5, "Student", "job_title", "contains", -20, value="étudiant")
RULES = [DIRECTOR, FRANCE, SAAS, MID_SIZE, STUDENT]


def person(**fields):
    return {"job_title": "", "country": "", "industry": "", "company_size": None, **fields}


def test_each_rule_that_holds_is_one_line_with_the_value_it_read_and_its_points():
    points, lines = fit_score(
        person(job_title="Directeur commercial", country="France", company_size=250), RULES
    )
    assert points == 35
    assert [(line.rule, line.field, line.value, line.points) for line in lines] == [
        ("Director", "job_title", "Directeur commercial", 15),
        ("France or Belgium", "country", "France", 10),
        ("50 to 1,000 people", "company_size", 250, 10),
    ]


@pytest.mark.parametrize(
    ("fields", "points"),
    [
        (person(job_title="  DIRECTEUR   Général "), 15),  # case and spaces do not matter
        (person(job_title="Directrice"), 0),  # contains is not "looks like"
        (person(country="belgique"), 10),
        (person(country="Belgique du Sud"), 0),  # one of the list, whole
        (person(industry="logiciel  saas"), 5),
        (person(industry="Logiciel SaaS B2B"), 0),  # equals is whole
        (person(job_title="Étudiant en alternance"), -20),  # accents, negative points
        (person(job_title="ÉTUDIANT"), -20),  # and their capitals
        (person(company_size=50), 10),  # both bounds included
        (person(company_size=1000), 10),
        (person(company_size=49), 0),
        (person(company_size=1001), 0),
        (person(company_size=None), 0),  # unknown size: no range holds
        (person(), 0),  # blank fields meet nothing
    ],
)
def test_operators(fields, points):
    assert fit_score(fields, RULES)[0] == points


def test_an_open_range_and_an_inactive_rule():
    large = FitRule(6, "Large", "company_size", "between", 7, number_min=Decimal(1000))
    assert fit_score(person(company_size=10**6), [large])[0] == 7
    small = FitRule(7, "Small", "company_size", "between", 3, number_max=Decimal(10))
    assert fit_score(person(company_size=0), [small])[0] == 3
    off = FitRule(8, "Off", "country", "equals", 50, value="France", active=False)
    assert fit_score(person(country="France"), [off]) == (0, [])


def test_a_contains_rule_without_a_value_matches_nothing():
    empty = FitRule(9, "Empty", "job_title", "contains", 5, value="  ")
    assert fit_score(person(job_title="CEO"), [empty])[0] == 0


@pytest.mark.parametrize(
    ("points", "grade"), [(-5, "D"), (0, "D"), (4, "D"), (5, "C"), (14, "C"), (15, "B"),
                          (29, "B"), (30, "A"), (300, "A")],
)  # fmt: skip
def test_grades_from_the_cut_offs(points, grade):
    assert Grades(a=30, b=15, c=5).grade(points) == grade


def test_fit_gives_the_score_and_its_grade():
    assert fit(person(job_title="Directeur", country="France"), RULES, Grades()) == (25, "B")
    assert fit(person(job_title="Étudiant"), RULES, Grades(a=10, b=0, c=-10)) == (-20, "D")


def test_grade_meets():
    assert grade_meets("A", "B") and grade_meets("B", "B") and not grade_meets("C", "B")
    assert grade_meets("D", "")  # no requirement
    assert not grade_meets("", "D")  # no grade: meets none


SQL_WITH_B = engine.Threshold(3, "sql", min_score=60, event_types=("demo_request",),
                              min_fit_grade="B")  # fmt: skip
MQL = engine.Threshold(1, "mql", min_score=20, exit_below=10, demote=True)


def test_a_threshold_that_asks_for_a_grade_needs_both():
    demo = engine.EventFact(1, 7, "demo_request", T0)
    assert SQL_WITH_B.reached_by(75, [], "A")
    assert SQL_WITH_B.reached_by(75, [], "B")
    assert not SQL_WITH_B.reached_by(75, [], "C")
    assert not SQL_WITH_B.reached_by(0, [demo], "D")  # the qualifying event too
    assert SQL_WITH_B.reached_by(0, [demo], "B")
    assert not SQL_WITH_B.reached_by(59, [], "A")


def test_the_walk_stops_at_mql_without_the_grade_and_says_why_with_it():
    steps = [engine.Step(T0 + timedelta(minutes=n), 25) for n in range(3)]
    walk_c = engine.stages_walk("lead", 0, steps, [MQL, SQL_WITH_B], "C")
    assert (walk_c.stage, walk_c.score) == ("mql", 75)
    walk_b = engine.stages_walk("lead", 0, steps, [MQL, SQL_WITH_B], "B")
    assert walk_b.stage == "sql"
    assert walk_b.reason.startswith("fit_reached")
    assert '"grade":"B"' in walk_b.reason.replace(" ", "")
    assert '"fit":"B"' in walk_b.threshold.actor_name.replace(" ", "")
