"""In a real Chromium: a marketer uploads an Excel workbook, reads the summary before anything is
written (refreshed as she changes a column's field), saves her mapping by name, starts the
import and sees its counts; on the next workbook, with its columns reordered, she applies the
saved mapping instead of choosing each column again."""

from __future__ import annotations

import io
from datetime import date

import pytest
from django.urls import reverse
from openpyxl import Workbook
from playwright.sync_api import expect

from contacts import broker
from contacts.models import Contact, ImportJob, SavedMapping
from tests.browser_pages import DESKTOP, PHONE, visitor
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def workbook(rows: list[list[object]]) -> bytes:
    book = Workbook(write_only=True)
    sheet = book.create_sheet("Export")
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


MARCH = workbook(
    [
        ["Adresse", "Prénom", "Numéro", "Créé le"],
        ["helene@exemple.fr", "Hélène", 33612345678, date(2024, 3, 5)],
        ["zoe@exemple.fr", "Zoé", None, date(2024, 3, 6)],
        ["ZOE@exemple.fr", "Zoé", 33698765432, None],
    ]
)
APRIL = workbook(
    [
        ["Numéro", "Commentaire", "adresse", "Prénom"],
        [33611111111, "salon", "noel@exemple.fr", "Noël"],
    ]
)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    broker.reset()


def upload(page, content: bytes, name: str) -> None:
    page.get_by_label("Fichier CSV ou Excel").set_input_files(
        {"name": name, "mimeType": XLSX_TYPE, "buffer": content}
    )
    page.get_by_role("button", name="Envoyer le fichier").click()


def test_upload_a_workbook_read_the_summary_save_the_mapping_and_import(live_server, chromium):
    UserFactory(username="claire", first_name="Claire", roles=["marketing"])

    with visitor(chromium, live_server.url, "claire", viewport=DESKTOP) as claire:
        page = claire.open(reverse("contact-import"))
        upload(page, MARCH, "mars.xlsx")

        summary = page.locator("#import-summary")
        expect(page.get_by_text("Classeur Excel, feuille «\u00a0Export\u00a0».")).to_be_visible()
        expect(summary.locator('[data-summary="rows"]')).to_have_text("3 lignes")
        expect(summary).to_contain_text("Rien n’est écrit tant que vous ne lancez pas l’import.")
        # "Adresse" is no header the import knows: no identity column yet.
        expect(summary).not_to_contain_text("reprend l’adresse e-mail")
        assert not Contact.objects.exists()

        page.get_by_label("Adresse", exact=True).select_option("email")
        expect(summary).to_contain_text("1 ligne reprend l’adresse e-mail d’une ligne précédente")
        page.get_by_label("Numéro").select_option("phone")
        expect(summary.locator("table")).to_contain_text("33612345678 · 33698765432")
        assert claire.overflow() == []

        page.get_by_label("Enregistrer cette correspondance sous le nom").fill("Export CRM")
        page.get_by_role("button", name="Enregistrer la correspondance").click()
        expect(
            page.get_by_text("Correspondance «\u00a0Export CRM\u00a0» enregistrée.")
        ).to_be_visible()
        expect(page.get_by_label("Adresse", exact=True)).to_have_value("email")

        page.get_by_role("button", name="Lancer l’import").click()
        expect(page.locator('[data-count="created"]')).to_have_text("2")
        expect(page.locator('[data-count="merged"]')).to_have_text("1")
        helene = Contact.objects.get(email="helene@exemple.fr")
        assert (helene.first_name, helene.phone) == ("Hélène", "33612345678")

    saved = SavedMapping.objects.get()
    assert [pair["header"] for pair in saved.columns] == ["Adresse", "Prénom", "Numéro"]

    with visitor(chromium, live_server.url, "claire", viewport=PHONE) as claire:
        page = claire.open(reverse("contact-import"))
        upload(page, APRIL, "avril.xlsx")

        page.get_by_label("Correspondance enregistrée").select_option(label="Export CRM")
        page.get_by_role("button", name="Appliquer cette correspondance").click()
        expect(page.get_by_text("3 colonnes reconnues")).to_be_visible()
        expect(page.get_by_label("adresse", exact=True)).to_have_value("email")
        expect(page.get_by_label("Commentaire")).to_have_value("")
        problems = claire.overflow()
        assert problems == [], "\n".join(problems)

        page.get_by_role("button", name="Lancer l’import").click()
        expect(page.locator('[data-count="created"]')).to_have_text("1")
    noel = Contact.objects.get(email="noel@exemple.fr")
    assert (noel.first_name, noel.phone) == ("Noël", "33611111111")
    assert ImportJob.objects.filter(status="done").count() == 2
