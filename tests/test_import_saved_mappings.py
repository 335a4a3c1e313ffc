"""A marketer saves a mapping by name in the mapping step and applies it to a later file: matched
on header names (case, accents and punctuation aside), whatever the column order; headers it does
not know stay ignored. Saved mappings are listed and deleted in the admin."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from contacts import broker
from contacts.imports.saved import mapping_from_saved
from contacts.models import Contact, ImportJob, SavedMapping

# A CRM export whose headers the proposal does not know.
MARCH = (
    "Adresse;Prenom client;Numéro;Entreprise;Commentaire\n"
    "helene@exemple.fr;Hélène;06 12 34 56 78;Café Crème;VIP\n"
).encode()
# The April export: columns in another order, a new one, the header in another case.
APRIL = (
    "Nouvelle colonne;NUMERO;Entreprise;adresse;Prénom client\n"
    "x;07 00 00 00 01;ACME;zoe@exemple.fr;Zoé\n"
).encode()


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    broker.reset()


def upload(client, content: bytes, name: str) -> ImportJob:
    file = SimpleUploadedFile(name, content, content_type="text/csv")
    response = client.post(reverse("contact-import"), {"file": file})
    assert response.status_code == 302, response.content.decode()
    return ImportJob.objects.latest("pk")


def mapping_data(mapping: list[str], **extra: str) -> dict[str, str]:
    return {**{f"column_{i}": value for i, value in enumerate(mapping)}, **extra}


@pytest.mark.django_db
def test_a_saved_mapping_applies_by_header_names_to_a_reordered_file(
    marketer_client, marketer, django_capture_on_commit_callbacks
):
    march = upload(marketer_client, MARCH, "mars.csv")
    assert march.mapping == ["", "", "", "company", ""]  # only "Entreprise" is known
    chosen = ["email", "first_name", "phone", "company", ""]

    response = marketer_client.post(
        reverse("contact-import-mapping-save", args=[march.pk]),
        mapping_data(chosen, mapping_name="Export CRM"),
        follow=True,
    )

    page = response.content.decode()
    assert "Correspondance «\u00a0Export CRM\u00a0» enregistrée." in page
    saved = SavedMapping.objects.get()
    assert (saved.name, saved.created_by) == ("Export CRM", marketer)
    assert saved.columns == [
        {"header": "Adresse", "field": "email"},
        {"header": "Prenom client", "field": "first_name"},
        {"header": "Numéro", "field": "phone"},
        {"header": "Entreprise", "field": "company"},
    ]
    march.refresh_from_db()
    assert march.mapping == chosen  # the page keeps what was chosen
    assert march.status == ImportJob.Status.MAPPING and not Contact.objects.exists()

    april = upload(marketer_client, APRIL, "avril.csv")
    page = marketer_client.get(reverse("contact-import-job", args=[april.pk])).content.decode()
    assert f'<option value="{saved.pk}">Export CRM</option>' in page
    response = marketer_client.post(
        reverse("contact-import-mapping-apply", args=[april.pk]),
        {"saved_mapping": saved.pk},
        follow=True,
    )

    assert "Correspondance «\u00a0Export CRM\u00a0» appliquée\u00a0: 4 colonnes reconnues." in (
        response.content.decode()
    )
    april.refresh_from_db()
    assert april.mapping == ["", "phone", "company", "email", "first_name"]
    with django_capture_on_commit_callbacks(execute=True):
        marketer_client.post(
            reverse("contact-import-job", args=[april.pk]), mapping_data(april.mapping)
        )
    zoe = Contact.objects.get(email="zoe@exemple.fr")
    assert (zoe.first_name, zoe.phone, zoe.company) == ("Zoé", "07 00 00 00 01", "ACME")


@pytest.mark.django_db
def test_saving_under_a_taken_name_replaces_that_mapping(marketer_client):
    job = upload(marketer_client, MARCH, "mars.csv")
    url = reverse("contact-import-mapping-save", args=[job.pk])
    marketer_client.post(url, mapping_data(["email", "", "", "", ""], mapping_name="CRM"))

    response = marketer_client.post(
        url, mapping_data(["email", "first_name", "", "", ""], mapping_name="crm "), follow=True
    )

    assert "Correspondance «\u00a0crm\u00a0» mise à jour." in response.content.decode()
    saved = SavedMapping.objects.get()
    assert [pair["field"] for pair in saved.columns] == ["email", "first_name"]


@pytest.mark.django_db
def test_a_mapping_without_name_or_identity_is_not_saved(marketer_client):
    job = upload(marketer_client, MARCH, "mars.csv")
    url = reverse("contact-import-mapping-save", args=[job.pk])

    no_name = marketer_client.post(url, mapping_data(["email"]), follow=True).content.decode()
    no_email = marketer_client.post(
        url, mapping_data(["", "first_name"], mapping_name="X"), follow=True
    ).content.decode()

    assert "La correspondance n’a pas été enregistrée\u00a0: Ce champ est obligatoire." in no_name
    assert "La correspondance n’a pas été enregistrée\u00a0: Choisissez la colonne" in no_email
    assert not SavedMapping.objects.exists()


@pytest.mark.django_db
def test_saving_and_applying_are_for_marketers_only(sales_client, marketer):
    saved = SavedMapping.objects.create(name="CRM", columns=[])
    job = ImportJob.objects.create(filename="a.csv", columns=["Email"], mapping=["email"])

    save = sales_client.post(
        reverse("contact-import-mapping-save", args=[job.pk]), {"mapping_name": "X"}
    )
    apply = sales_client.post(
        reverse("contact-import-mapping-apply", args=[job.pk]), {"saved_mapping": saved.pk}
    )

    assert (save.status_code, apply.status_code) == (403, 403)
    assert SavedMapping.objects.get().name == "CRM"


def test_a_field_the_import_no_longer_offers_is_left_ignored():
    saved = SavedMapping(
        name="Ancien",
        columns=[
            {"header": "E-mail", "field": "email"},
            {"header": "Fax", "field": "fax_number"},
            {"header": "Courriel 2", "field": "email"},
        ],
    )

    assert mapping_from_saved(saved, ["Fax", "e mail", "Courriel 2"]) == ["", "email", ""]


@pytest.mark.django_db
def test_saved_mappings_are_listed_and_deleted_in_the_admin(admin_client):
    saved = SavedMapping.objects.create(
        name="Export CRM", columns=[{"header": "Adresse", "field": "email"}]
    )

    listing = admin_client.get(reverse("admin:contacts_savedmapping_changelist"))
    detail = admin_client.get(reverse("admin:contacts_savedmapping_change", args=[saved.pk]))
    deleted = admin_client.post(
        reverse("admin:contacts_savedmapping_delete", args=[saved.pk]), {"post": "yes"}
    )

    assert "Export CRM" in listing.content.decode()
    assert "Adresse → email" in detail.content.decode()
    assert deleted.status_code == 302
    assert not SavedMapping.objects.exists()
