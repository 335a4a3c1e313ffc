"""Reading the values of imported consent, opt-out and outcome columns (no database)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from contacts.imports import meaning, parsing
from contacts.imports.consent import consent_changes

PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("Yes", True), ("Y", True), ("TRUE", True), ("1", True), ("Oui", True), ("x", True),
     ("No", False), ("n", False), ("False", False), ("0", False), ("Non", False)],
)  # fmt: skip
def test_yes_and_no_as_people_write_them(value, expected):
    assert meaning.yes_no(value, field="do_not_email") is expected


def test_a_flag_the_import_cannot_read_refuses_the_row():
    row = parsing.Row(line_number=2, cells=["a@example.fr", "maybe"])
    with pytest.raises(parsing.RowRefused) as refused:
        parsing.clean_row(row, ["email", "do_not_email"], ",")
    assert "maybe" in str(refused.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", "won"), ("0", "lost"), ("Won", "won"), ("Lost", "lost"), ("Gagné", "won"),
     ("Perdu", "lost"), ("Yes", "won"), ("No", "lost"), ("Converted", "won")],
)  # fmt: skip
def test_outcomes_in_english_french_and_numbers(value, expected):
    fields = {"outcome": value}
    meaning.read_meaning(fields)
    assert fields["outcome"] == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2024-03-31", datetime(2024, 3, 31, tzinfo=PARIS)),
     ("31/03/2024", datetime(2024, 3, 31, tzinfo=PARIS)),
     ("02/05/2024", datetime(2024, 5, 2, tzinfo=PARIS)),  # day first
     ("03/31/2024", datetime(2024, 3, 31, tzinfo=PARIS)),  # 31 cannot be a month
     ("2024-03-31 10:30", datetime(2024, 3, 31, 10, 30, tzinfo=PARIS)),
     ("2024-03-31T08:30:00Z", datetime(2024, 3, 31, 8, 30, tzinfo=ZoneInfo("UTC")))],
)  # fmt: skip
def test_dates_as_exports_write_them(value, expected):
    assert meaning.when(value, field="consent_at") == expected


def test_blank_placeholders_are_blank_in_every_column():
    row = parsing.Row(line_number=2, cells=["a@example.fr", "Select", " n/a ", "—", "Acme"])
    clean = parsing.clean_row(
        row, ["email", "job_title", "phone", "country", "company"], ",",
        placeholders=frozenset({"select", "n/a", "—"}),
    )  # fmt: skip
    assert clean.fields == {"email": "a@example.fr", "company": "Acme"}


def test_an_unsubscribed_yes_is_a_do_not_email():
    fields = {"unsubscribed": "Oui"}
    meaning.read_meaning(fields)
    assert fields == {"do_not_email": True}


@pytest.mark.parametrize(
    ("_case", "contact", "incoming", "expected"),
    [
        ("opt-out set", {"do_not_email": False}, {"do_not_email": True}, {"do_not_email": True}),
        ("opt-out never lifted", {"do_not_email": True}, {"do_not_email": False}, {}),
        ("withdrawn stays", {"consent": "withdrawn"}, {"consent": "granted"}, {}),
        ("granted fills unknown", {}, {"consent": "granted", "consent_basis": "consent"},
         {"consent": "granted", "consent_basis": "consent"}),
        ("withdrawal wins", {"consent": "granted"}, {"consent": "withdrawn"},
         {"consent": "withdrawn"}),
    ],
)  # fmt: skip
def test_an_opt_out_is_sticky(_case, contact, incoming, expected):
    known = {"do_not_email": False, "do_not_call": False, "consent": "unknown",
             "consent_at": None, "consent_basis": "", "consent_method": "", **contact}  # fmt: skip
    assert consent_changes(known, incoming, overwrite=True) == expected


@pytest.mark.parametrize(
    "header",
    ["Prospect ID", "Lead Number", "CRM ID", "ID client", "Customer ID", "Record ID"],
)
def test_crm_id_headers_are_proposed_as_the_external_id_first_one_only(header):
    assert parsing.propose_mapping([header, "Lead Number"]) == ["external_id", ""]
