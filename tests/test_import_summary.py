"""Before anything is written, the mapping step sums the file up: rows, columns, a few values
per imported field, and warnings (broken quoting, extra cells, empty columns, repeated emails
or ids, an email column full of non-addresses), refreshed by htmx when the mapping changes."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from contacts import broker
from contacts.imports import parsing
from contacts.imports.summary import file_figures, summary_for
from contacts.models import Contact, ImportJob, ImportRowError

# Lines: 1 header; 2-3 fine; 4 repeats line 2's email in another case; 5 has a stray ";" (one
# cell too many); 6 opens a quote never closed where it should be, swallowing 7 and 8 up to the
# quote on line 8; 9 an invalid email; 10 a short row. "Fax" is empty.
MESSY = (
    "Courriel;Prénom;Fax;Société\r\n"
    "helene@exemple.fr;Hélène;;Café Crème\r\n"
    "zoe@exemple.fr;Zoé;;ACME\r\n"
    "HELENE@exemple.fr;Hélène;;\r\n"
    "bob@exemple.fr;Bob;;Dupont; Fils\r\n"
    'anne@exemple.fr;"Anne;;Quote\r\n'
    "marc@exemple.fr;Marc;;X\r\n"
    'luc@exemple.fr;Luc";;Y\r\n'
    "pas-un-email;Paul;;Z\r\n"
    "jean@exemple.fr;Jean\r\n"
).encode()


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    broker.reset()


def upload(client, content: bytes = MESSY, name: str = "messy.csv") -> ImportJob:
    file = SimpleUploadedFile(name, content, content_type="text/csv")
    response = client.post(reverse("contact-import"), {"file": file})
    assert response.status_code == 302, response.content.decode()
    return ImportJob.objects.latest("pk")


@pytest.mark.django_db
def test_the_mapping_step_shows_rows_values_and_warnings_and_writes_nothing(marketer_client):
    job = upload(marketer_client)

    page = marketer_client.get(reverse("contact-import-job", args=[job.pk])).content.decode()

    assert job.mapping == ["email", "first_name", "", "company"]
    assert 'data-summary="rows">7 lignes' in page  # 9 records, the quote swallowed two
    assert "4 colonnes" in page
    assert "Rien n’est écrit tant que vous ne lancez pas l’import." in page
    assert "Hélène · Zoé · Bob" in page  # distinct values of the first-name column
    assert "1 ligne a plus de cellules que l’en-tête (lignes 5)" in page
    assert "1 ligne ouvre un guillemet qui n’est pas fermé là où il le faudrait (lignes 6)" in page
    assert "1 ligne a moins de cellules que l’en-tête" in page
    assert "Une colonne ignorée est vide\u00a0: «\u00a0Fax\u00a0»." in page
    assert "1 ligne reprend l’adresse e-mail d’une ligne précédente" in page
    assert "1 valeur de la colonne e-mail n’est pas une adresse valide (14\u00a0%)" in page
    # Nothing written: no contact, no refused row, the job still waits for its mapping.
    assert not Contact.objects.exists()
    assert not ImportRowError.objects.exists()
    job.refresh_from_db()
    assert job.status == ImportJob.Status.MAPPING and job.rows_total == 0


@pytest.mark.django_db
def test_the_summary_partial_follows_the_mapping_being_chosen(marketer_client):
    job = upload(marketer_client)
    url = reverse("contact-import-summary", args=[job.pk])

    # The first names chosen as the email column, the empty fax as the phone.
    response = marketer_client.get(
        url,
        {"column_0": "", "column_1": "email", "column_2": "phone", "column_3": "company"},
        HTTP_HX_REQUEST="true",
    )

    partial = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in partial and 'data-summary="rows"' in partial  # the content only
    assert "7 valeurs de la colonne e-mail ne sont pas des adresses valides (100\u00a0%)" in partial
    assert "«\u00a0Prénom\u00a0» est-elle vraiment la colonne des e-mails\u00a0?" in partial
    assert "La colonne «\u00a0Fax\u00a0» est vide" in partial
    job.refresh_from_db()
    assert job.mapping == ["email", "first_name", "", "company"]  # a preview: nothing saved


def test_figures_count_without_a_database():
    rows = parsing.read_rows(MESSY.decode(), ";")

    figures = file_figures(rows, 4, delimiter=";")

    assert figures["rows"] == 7
    assert [column["filled"] for column in figures["columns"]] == [7, 7, 0, 5]
    assert figures["columns"][0]["repeated"] == 1
    assert figures["columns"][0]["emails"] == 6
    assert figures["extra_cells"] == {"count": 1, "lines": [5]}
    assert figures["unclosed_quotes"] == {"count": 1, "lines": [6]}
    summary = summary_for(figures, ["Courriel", "Prénom", "Fax", "Société"], ["email", "", "", ""])
    assert [(field.column, field.filled) for field in summary.mapped] == [("Courriel", 7)]
    assert len([warning for warning in summary.warnings if warning.serious]) == 4


def test_an_external_id_column_repeated_is_reported():
    content = "ID client;Nom\n42;A\n43;B\n42;C\n"

    figures = file_figures(parsing.read_rows(content, ";"), 2, delimiter=";")
    summary = summary_for(figures, ["ID client", "Nom"], ["external_id", "last_name"])

    assert [warning.text for warning in summary.warnings] == [
        "1 ligne reprend l’identifiant externe d’une ligne précédente\u00a0: elle est fusionnée "
        "avec la première."
    ]


@pytest.mark.django_db
def test_placeholders_count_as_blank_in_the_summary(marketer_client):
    job = upload(
        marketer_client,
        b"Email,Job Title\nana@exemple.fr,Select\nbob@exemple.fr,N/A\nzoe@exemple.fr,-\n",
        "crm.csv",
    )

    page = marketer_client.get(reverse("contact-import-job", args=[job.pk])).content.decode()

    assert job.mapping == ["email", "job_title"]
    assert "La colonne «\u00a0Job Title\u00a0» est vide" in page  # "Select" is nobody's job
    assert "Select" not in page.split('data-summary="rows"')[1]
