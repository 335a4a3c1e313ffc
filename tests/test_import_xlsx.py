"""An Excel workbook imports as a CSV does: upload, the same mapping step, the same job, the same
report and idempotency; numbers, dates and accents as the marketer sees them in Excel. Other zip
files (Word, OpenDocument, a damaged workbook) are refused with a message saying what they are."""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime, time, timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from openpyxl import Workbook

from contacts import broker
from contacts.imports import files, parsing, spreadsheets
from contacts.models import Contact, ImportJob, ImportRowError

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def workbook(*sheets: tuple[str, list[list[object]]]) -> bytes:
    """An .xlsx written as Excel would (openpyxl's write-only mode, as a large export is)."""
    book = Workbook(write_only=True)
    for title, rows in sheets:
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


# A first sheet left empty, then the leads: accents, a phone typed as a number (Excel stores a
# double), a date cell, blank cells, a blank row, a duplicate in another case, an invalid email.
LEADS = workbook(
    ("Notes", []),
    (
        "Leads salon",
        [
            ["Prénom", "Nom", "Courriel", "Téléphone", "Inscrit le", "Société"],
            ["Hélène", "Dupré", "helene@exemple.fr", 33612345678, date(2024, 3, 5), "Café Crème"],
            ["François", None, "francois@exemple.fr", 33698765432.0, None, "Société Générale"],
            [None, None, None, None, None, None],
            ["Zoé", "Noël", "pas-un-email", None, datetime(2024, 3, 6, 14, 30), None],
            ["Hélène", None, "HELENE@EXEMPLE.FR", None, None, None],
        ],
    ),
)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    broker.reset()
    return tmp_path


def upload(client, content: bytes, name: str = "leads.xlsx"):
    file = SimpleUploadedFile(name, content, content_type=XLSX_TYPE)
    return client.post(reverse("contact-import"), {"file": file})


def start(client, job: ImportJob, capture, mapping: list[str]) -> ImportJob:
    data = {f"column_{index}": value for index, value in enumerate(mapping)}
    with capture(execute=True):
        client.post(reverse("contact-import-job", args=[job.pk]), data)
    job.refresh_from_db()
    return job


# --- Reading a workbook (no database) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("_case", "value", "text"),
    [
        ("text with accents", "Hélène Dupré", "Hélène Dupré"),
        ("phone typed as a number", 33612345678.0, "33612345678"),
        ("an integer", 42, "42"),
        ("a decimal", 12.5, "12.5"),
        ("tiny decimal", 1.5e-07, "0.00000015"),
        ("huge number", 1e20, "100000000000000000000"),
        ("a date", date(2024, 3, 5), "2024-03-05"),
        ("a date at midnight", datetime(2024, 3, 5), "2024-03-05"),
        ("a date and time", datetime(2024, 3, 5, 14, 30), "2024-03-05 14:30:00"),
        ("a time", time(9, 15), "09:15:00"),
        ("a duration", timedelta(hours=26, minutes=5), "26:05:00"),
        ("true", True, "TRUE"),
        ("blank", None, ""),
    ],
)
def test_a_cell_reads_as_the_text_excel_shows(_case, value, text):
    assert spreadsheets.cell_text(value) == text


def test_the_first_non_empty_sheet_is_read_with_its_rows_numbered_as_in_excel():
    detected = files.detect(LEADS)

    assert (detected.file_format, detected.sheet) == ("xlsx", "Leads salon")
    assert detected.columns == ["Prénom", "Nom", "Courriel", "Téléphone", "Inscrit le", "Société"]
    rows = list(spreadsheets.read_rows(LEADS, "Leads salon"))
    assert [row.line_number for row in rows] == [2, 3, 5, 6]  # row 4 is blank
    assert rows[0].cells == [
        "Hélène", "Dupré", "helene@exemple.fr", "33612345678", "2024-03-05", "Café Crème",
    ]  # fmt: skip
    assert rows[2].cells[4] == "2024-03-06 14:30:00"


def test_a_hidden_sheet_is_not_read():
    book = Workbook()
    hidden = book.active
    hidden.title = "Brouillon"
    hidden.append(["Email"])
    hidden.append(["brouillon@exemple.fr"])
    hidden.sheet_state = "hidden"
    shown = book.create_sheet("Leads")
    shown.append(["Courriel", "Nom"])
    buffer = io.BytesIO()
    book.save(buffer)

    detected = files.detect(buffer.getvalue())

    assert (detected.sheet, detected.columns) == ("Leads", ["Courriel", "Nom"])


def test_cells_past_the_header_are_dropped_and_a_header_may_start_lower():
    content = workbook(
        (
            "Feuille 1",
            [[], [None, "Email", "Nom"], [None, "a@exemple.fr", "A", "note hors tableau"]],
        )
    )

    detected = files.detect(content)
    rows = list(spreadsheets.read_rows(content, detected.sheet))

    assert detected.columns == ["Email", "Nom"]
    assert [(row.line_number, row.cells) for row in rows] == [(3, ["a@exemple.fr", "A"])]


def zipped(files_in_zip: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as package:
        for name, content in files_in_zip.items():
            package.writestr(name, content)
    return buffer.getvalue()


DOCX = zipped({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>"})
ODT = zipped({"mimetype": b"application/vnd.oasis.opendocument.text", "content.xml": b"<x/>"})
BROKEN = LEADS[: len(LEADS) // 2]
EMPTY = workbook(("Feuil1", []), ("Feuil2", [[None, None]]))


@pytest.mark.parametrize(
    ("_case", "content", "message"),
    [
        ("a Word document", DOCX, "Ceci est un document Word"),
        ("an OpenDocument text", ODT, "Ceci est un fichier OpenDocument"),
        ("a damaged workbook", BROKEN, "est endommagé ou incomplet"),
        ("a zip of something else", zipped({"a.txt": b"a"}), "Ceci est une archive zip"),
        ("an empty workbook", EMPTY, "Les feuilles du classeur sont toutes vides"),
        ("an old .xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "Excel 97-2003"),
    ],
)
@pytest.mark.django_db
def test_a_zip_that_is_not_a_workbook_is_refused_saying_what_it_is(
    marketer_client, media, _case, content, message
):
    response = upload(marketer_client, content, "contacts.xlsx")

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ImportJob.objects.exists()
    assert not any(media.rglob("*.*"))


# --- Importing through the pages ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_workbook_imports_like_a_csv_and_again_changes_nothing(
    marketer_client, django_capture_on_commit_callbacks
):
    response = upload(marketer_client, LEADS)

    job = ImportJob.objects.get()
    assert response.url == reverse("contact-import-job", args=[job.pk])
    assert (job.file_format, job.sheet) == ("xlsx", "Leads salon")
    assert job.mapping == ["first_name", "last_name", "email", "phone", "", "company"]
    page = marketer_client.get(response.url).content.decode()
    assert "Classeur Excel, feuille «\u00a0Leads salon\u00a0»" in page
    assert "33612345678" in page and "2024-03-05" in page  # first values of the columns
    assert not Contact.objects.exists()

    # The date column goes to a text field, as a marketer may do with a sign-up date.
    mapping = ["first_name", "last_name", "email", "phone", "utm_content", "company"]
    start(marketer_client, job, django_capture_on_commit_callbacks, mapping)

    assert job.status == ImportJob.Status.DONE, job.error
    assert (job.created_count, job.merged_count, job.unchanged_count, job.rejected_count) == (
        2, 1, 0, 1,
    )  # fmt: skip
    helene = Contact.objects.get(email="helene@exemple.fr")
    assert (helene.first_name, helene.last_name, helene.company, helene.phone) == (
        "Hélène", "Dupré", "Café Crème", "33612345678",
    )  # fmt: skip
    assert helene.utm_content == "2024-03-05"
    francois = Contact.objects.get(email="francois@exemple.fr")
    assert (francois.last_name, francois.phone, francois.utm_content) == ("", "33698765432", "")
    refused = ImportRowError.objects.get()
    assert refused.line_number == 5  # the row number Excel shows
    assert "pas-un-email" in refused.raw

    # The same workbook again: every row unchanged or refused, nothing written twice.
    upload(marketer_client, LEADS)
    again = start(
        marketer_client,
        ImportJob.objects.latest("pk"),
        django_capture_on_commit_callbacks,
        mapping,
    )
    assert (again.created_count, again.merged_count, again.unchanged_count) == (0, 0, 3)
    assert again.rejected_count == 1
    assert Contact.objects.count() == 2


@pytest.mark.django_db
def test_the_rejected_rows_of_a_workbook_download_with_their_excel_row_numbers(
    marketer_client, django_capture_on_commit_callbacks
):
    upload(marketer_client, LEADS)
    job = start(
        marketer_client,
        ImportJob.objects.get(),
        django_capture_on_commit_callbacks,
        ["first_name", "last_name", "email", "phone", "", "company"],
    )

    response = marketer_client.get(reverse("contact-import-errors", args=[job.pk]))
    body = b"".join(response.streaming_content).decode("utf-8-sig")

    assert "5;" in body and "pas-un-email" in body and "Zoé" in body


def test_a_notes_cell_with_line_breaks_and_commas_is_no_broken_quote_in_a_workbook():
    row = parsing.Row(line_number=2, cells=["a@exemple.fr", "ligne 1,\nligne 2, fin,"])

    clean = parsing.clean_row(row, ["email", "job_title"], "")

    assert clean.fields["job_title"] == "ligne 1,\nligne 2, fin,"
