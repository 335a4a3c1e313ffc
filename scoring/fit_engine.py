"""Fit ("right person", beside engagement): fit rules on a contact's fields in, points and a
grade out, explained line by line.

Pure, like ``scoring.engine``: frozen dataclasses, no ORM. ``scoring.fit`` feeds it the
contacts' fields and the rules from the database and writes what it returns; the contact page
shows its lines ("why this fit").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from contacts.field_matching import folded, number_between

# The contact fields a fit rule may look at: text fields, then the one number.
# (Email: "contains @gmail." for free addresses. Not the UTM fields: visits write them around
# the contact services, and they say where a person came from, not who they are.)
TEXT_FIELDS = ("job_title", "company", "country", "industry", "email")
NUMBER_FIELDS = ("company_size",)
FIELDS = (*TEXT_FIELDS, *NUMBER_FIELDS)
# How a rule compares: text contains / equals / is one of (whatever the case and the spaces
# around), or a number within a range (either bound may be left open; both included).
TEXT_OPERATORS = ("contains", "equals", "in")
NUMBER_OPERATORS = ("between",)
# A custom field (``contacts.models.custom_fields``) is named "custom:<key>"; a date one is
# compared with "before" and "after" (the day itself excluded); its values come as stored,
# dates as ISO text, numbers as int or float.
CUSTOM_PREFIX = "custom:"
DATE_OPERATORS = ("before", "after")
GRADES = ("A", "B", "C", "D")  # best first


@dataclass(frozen=True)
class FitRule:
    id: int
    name: str
    field: str
    operator: str
    points: int
    value: str = ""  # for contains and equals
    values: tuple[str, ...] = ()  # for "is one of"
    number_min: Decimal | int | None = None  # for "between"
    number_max: Decimal | int | None = None
    active: bool = True
    day: date | None = None  # for "before" and "after"

    def holds(self, fields: Mapping[str, Any]) -> bool:
        """Whether the contact's ``fields`` meet the rule (a blank field meets none)."""
        if not self.active:
            return False
        value = fields.get(self.field)
        if self.operator in DATE_OPERATORS:
            day = _day(value)
            if day is None or self.day is None:
                return False
            return day < self.day if self.operator == "before" else day > self.day
        if self.operator == "between":
            return number_between(value, self.number_min, self.number_max)
        text = folded(value)
        if not text:
            return False
        if self.operator == "contains":
            return bool(self.value.strip()) and folded(self.value) in text
        if self.operator == "equals":
            return text == folded(self.value)
        if self.operator == "in":
            return text in {folded(choice) for choice in self.values}
        return False


@dataclass(frozen=True)
class FitLine:
    """One rule that holds for the contact: what it looked at and what it gave."""

    rule_id: int
    rule: str
    field: str
    value: Any  # the contact's value the rule read
    points: int


@dataclass(frozen=True)
class Grades:
    """Cut-offs: A from ``a``, B from ``b``, C from ``c`` fit points, D below."""

    a: int = 30
    b: int = 15
    c: int = 5

    def grade(self, points: int) -> str:
        if points >= self.a:
            return "A"
        if points >= self.b:
            return "B"
        if points >= self.c:
            return "C"
        return "D"


def fit_score(fields: Mapping[str, Any], rules: Iterable[FitRule]) -> tuple[int, list[FitLine]]:
    """The contact's fit points: the sum of the points of every active rule its ``fields``
    meet, with one line per such rule, in the rules' order."""
    lines = [
        FitLine(rule.id, rule.name, rule.field, fields.get(rule.field), rule.points)
        for rule in rules
        if rule.holds(fields)
    ]
    return sum(line.points for line in lines), lines


def fit(fields: Mapping[str, Any], rules: Sequence[FitRule], grades: Grades) -> tuple[int, str]:
    """(fit score, grade) of one contact."""
    points, _ = fit_score(fields, rules)
    return points, grades.grade(points)


def grade_meets(grade: str, least: str) -> bool:
    """Whether ``grade`` is ``least`` or better (A is best); no requirement: always; a
    contact without a grade meets none."""
    if not least:
        return True
    return grade in GRADES and GRADES.index(grade) <= GRADES.index(least)


def _day(value: Any) -> date | None:
    """A date, or the date an ISO text writes; None for anything else."""
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def custom_fields_flat(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """A contact's custom field values as the rules name them ("custom:<key>")."""
    return {f"{CUSTOM_PREFIX}{key}": value for key, value in (values or {}).items()}
