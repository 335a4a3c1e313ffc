"""A bad row refuses that row, never the whole file; every refusal reads in the reader's
language, on the page and in the errors CSV."""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from contacts.models import Contact, ImportJob
from tests.test_csv_import import ENGLISH, counts, media, run_import  # noqa: F401 (fixture)

# One NUL byte in the middle of line 3 (a broken export, a bad copy and paste).
WITH_NUL = (
    b"email,first_name,company\n"
    b"ana@exemple.fr,Ana,Acme\n"
    b"bob@exemple.fr,B\x00b,Beta\n"
    b"cy@exemple.fr,Cy,Gamma\n"
)

# Line 3 opens a quote that "Dan" only closes two lines later; line 7 has a stray delimiter.
UNCLOSED_QUOTE = (
    b"email,first_name,company\n"
    b"ana@exemple.fr,Ana,Acme\n"  # 2: imported
    b'bob@exemple.fr,"Bob,Beta\n'  # 3-5: one row for the parser, refused
    b"cy@exemple.fr,Cy,Gamma\n"
    b'dan@exemple.fr,"Dan",Delta\n'
    b"eve@exemple.fr,Eve,Epsilon\n"  # 6: imported
    b"fay@exemple.fr,Fay,Acme, Inc.\n"  # 7: four cells under three columns, refused
    b"gus@exemple.fr,Gus,Gamma,,\n"  # 8: blank cells past the header are harmless
    b"hal@exemple.fr,Hal\n"  # 9: a short row (Excel drops empty trailing cells)
)


def report(client, job: ImportJob, **headers) -> tuple[str, list[list[str]]]:
    page = client.get(reverse("contact-import-job", args=[job.pk]), **headers)
    download = client.get(reverse("contact-import-errors", args=[job.pk]), **headers)
    body = b"".join(download.streaming_content).decode("utf-8").lstrip("\ufeff")
    delimiter = ";" if "Ligne" in body.splitlines()[0] else ","
    return page.content.decode(), list(csv.reader(io.StringIO(body), delimiter=delimiter))


@pytest.mark.django_db
def test_a_nul_byte_refuses_its_row_and_the_rest_of_the_file_is_imported(
    marketer_client, django_capture_on_commit_callbacks
):
    job = run_import(marketer_client, django_capture_on_commit_callbacks, WITH_NUL, "nul.csv")

    assert counts(job) == (2, 0, 0, 1)
    assert set(Contact.objects.values_list("email", flat=True)) == {
        "ana@exemple.fr",
        "cy@exemple.fr",
    }
    page, rows = report(marketer_client, job, **ENGLISH)
    assert "Line 3 contains a control character (such as a NUL byte)" in page
    assert rows[1][0] == "3" and "NUL" in rows[1][1]
    assert rows[1][2] == "bob@exemple.fr,B\ufffdb,Beta"  # shown where it was


@pytest.mark.django_db
def test_an_unclosed_quote_is_reported_with_its_lines_and_the_good_rows_are_imported(
    marketer_client, django_capture_on_commit_callbacks
):
    job = run_import(
        marketer_client, django_capture_on_commit_callbacks, UNCLOSED_QUOTE, "quote.csv"
    )

    assert set(Contact.objects.values_list("email", flat=True)) == {
        "ana@exemple.fr",
        "eve@exemple.fr",
        "gus@exemple.fr",
        "hal@exemple.fr",
    }
    assert counts(job) == (4, 0, 0, 2)
    page, rows = report(marketer_client, job, **ENGLISH)
    assert "Line 3 opens a quote that is not closed where it should be: lines 3 to 5" in page
    assert "Line 7 has 4 cells where the header has 3" in page
    assert [row[0] for row in rows[1:]] == ["3", "7"]


@pytest.mark.django_db
def test_refusals_are_shown_in_the_language_of_whoever_reads_them(
    client, marketer, django_capture_on_commit_callbacks
):
    client.force_login(marketer)  # French, the default
    content = UNCLOSED_QUOTE + b"pas-un-email,Ivy,Iota\n"
    job = run_import(client, django_capture_on_commit_callbacks, content, "quote.csv")

    french_page, french_rows = report(client, job)
    client.post(reverse("language-set"), {"language": "en"})
    english_page, english_rows = report(client, job)

    assert "pas-un-email\xa0» n’est pas une adresse e-mail valide." in french_page
    assert "“pas-un-email” is not a valid email address." in english_page
    assert french_rows[0] == ["Ligne", "Motif", "Contenu de la ligne"]
    assert english_rows[0] == ["Line", "Reason", "Row"]
    assert "n’est pas une adresse e-mail valide" in french_rows[-1][1]
    assert "is not a valid email address" in english_rows[-1][1]
    assert "La ligne 7 a 4 cellules" in french_rows[2][1]
    assert "Line 7 has 4 cells" in english_rows[2][1]


@pytest.mark.django_db
def test_the_mapping_page_shows_a_nul_byte_as_a_replacement_character(marketer_client):
    response = marketer_client.post(
        reverse("contact-import"),
        {"file": SimpleUploadedFile("nul.csv", WITH_NUL, content_type="text/csv")},
    )
    assert response.status_code == 302  # the file is taken; its bad row is refused later
    page = marketer_client.get(response.url).content.decode()
    assert "B\ufffdb" in page and "\x00" not in page
