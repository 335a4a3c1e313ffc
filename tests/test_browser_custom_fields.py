"""In a real Chromium: an admin imports a file, turns a column the contacts do not have into a
number custom field in the mapping step, then filters the contact list on it."""

import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from contacts import broker
from contacts.models import Contact, CustomField
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FILE = "Email;Prénom;Nombre de postes\nana@exemple.fr;Ana;1 200\nbob@exemple.fr;Bob;12\n"


def test_a_column_becomes_a_custom_field_and_a_filter(live_server, page, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    broker.reset()
    UserFactory(username="admin", is_staff=True, is_superuser=True)
    csv_file = tmp_path / "clients.csv"
    csv_file.write_text(FILE, encoding="utf-8")

    page.goto(live_server.url + reverse("contact-import"))
    page.fill("#id_username", "admin")
    page.fill("#id_password", "secret-pass-123")
    page.click("button[type=submit]")
    page.set_input_files("input[type=file]", str(csv_file))
    page.click("form[enctype] button[type=submit]")

    expect(page.locator("table.mapping")).to_be_visible()
    row = page.locator("table.mapping tbody tr").nth(2)
    expect(row).to_contain_text("Nombre de postes")
    row.get_by_label("créer comme champ personnalisé").check()
    row.locator("select[name=kind_2]").select_option("number")
    page.click("text=Lancer l’import")

    expect(page.locator("[data-count=created]")).to_have_text("2")
    seats = CustomField.objects.get()
    assert (seats.key, seats.label, seats.kind) == (
        "nombre_de_postes",
        "Nombre de postes",
        "number",
    )
    assert Contact.objects.get(email="ana@exemple.fr").custom_fields == {"nombre_de_postes": 1200}

    page.goto(live_server.url + reverse("contact-list"))
    expect(page.locator("table.contacts tbody tr")).to_have_count(2)
    page.fill("#id_cf_nombre_de_postes_min", "100")
    page.locator("#id_cf_nombre_de_postes_min").dispatch_event("change")
    expect(page.locator("table.contacts tbody tr")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"cf_nombre_de_postes_min=100"))
    page.click("text=Ana")
    expect(page.locator("[data-testid=custom-nombre_de_postes]")).to_have_text("1\u202f200")
