import csv
import io

import pytest
from django.urls import reverse

from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def read(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode("utf-8")
    assert body.startswith("\ufeff")  # spreadsheets need the BOM to read UTF-8 accents
    return list(csv.reader(io.StringIO(body[1:]), delimiter=";"))


def test_the_filtered_list_exports_with_accents_and_no_formulas(marketer_client):
    ContactFactory(
        first_name="Hélène",
        last_name="Dupré",
        company='=HYPERLINK("http://evil")',
        phone="+33 1 23 45 67 89",
        stage="sql",
        score=-5,
        email="helene@exemple.fr",
    )
    ContactFactory(first_name="Autre", stage="lead")

    response = marketer_client.get(reverse("contact-export"), {"stage": "sql"})

    assert response["Content-Type"].startswith("text/csv")
    header, *rows = read(response)
    assert header[:4] == ["E-mail", "Identifiant externe", "Prénom", "Nom"]
    assert len(rows) == 1
    row = dict(zip(header, rows[0], strict=True))
    assert (row["Prénom"], row["Nom"]) == ("Hélène", "Dupré")
    assert row["Entreprise"] == '\'=HYPERLINK("http://evil")'
    assert row["Téléphone"] == "'+33 1 23 45 67 89"
    assert row["Score"] == "-5"  # a number stays a number


def test_export_is_for_marketers_only(sales_client):
    assert sales_client.get(reverse("contact-export")).status_code == 403


def test_the_list_links_to_the_export_of_what_it_shows(marketer_client):
    ContactFactory(stage="mql")  # an empty list offers no export
    body = marketer_client.get(
        reverse("contact-list"), {"stage": "mql", "page": 2}
    ).content.decode()
    assert 'href="/contacts/export.csv?stage=mql"' in body
