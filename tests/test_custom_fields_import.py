"""Custom fields in the CSV import: proposed by their label, values typed by kind, a bad value
refuses its row with the reason (as a bad company size does) while the others go in, and a
column can become a new custom field in the mapping step."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from contacts import broker
from contacts.models import Contact, CustomField, ImportJob
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

ENGLISH = {"headers": {"accept-language": "en"}}

FILE = (
    b"Email;Postes;Renouvellement;Offre;Note\r\n"
    b"ana@exemple.fr;1 200;31/03/2027;pro;Rappeler en mars\r\n"  # 2: all good
    b"bob@exemple.fr;beaucoup;2027-01-15;Starter;\r\n"  # 3: not a number
    b"cyd@exemple.fr;12,5;;Gold;\r\n"  # 4: not a choice
    b"dan@exemple.fr;;le 3 mars;;\r\n"  # 5: not a date
    b"eve@exemple.fr;7;;;\r\n"  # 6: good, blanks stay blank
)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    broker.reset()


@pytest.fixture
def fields():
    return {
        "seats": CustomField.objects.create(key="seats", label="Postes", kind="number"),
        "renewal": CustomField.objects.create(key="renewal", label="Renouvellement", kind="date"),
        "plan": CustomField.objects.create(
            key="plan", label="Offre", kind="choice", choices="Starter\nPro"
        ),
        "note": CustomField.objects.create(key="note", label="Note", kind="text"),
    }


def upload(client, content: bytes, **data) -> ImportJob:
    file = SimpleUploadedFile("clients.csv", content, content_type="text/csv")
    response = client.post(reverse("contact-import"), {"file": file, **data}, **ENGLISH)
    assert response.status_code == 302, response.content.decode()
    return ImportJob.objects.latest("pk")


def start(client, job: ImportJob, capture, **extra):
    data = {f"column_{i}": value for i, value in enumerate(job.mapping)}
    with capture(execute=True):
        response = client.post(
            reverse("contact-import-job", args=[job.pk]), {**data, **extra}, **ENGLISH
        )
    job.refresh_from_db()
    return response


def custom(email: str) -> dict:
    return Contact.objects.get(email=email).custom_fields


def test_custom_columns_are_proposed_typed_and_bad_values_refuse_their_row(
    marketer_client, fields, django_capture_on_commit_callbacks
):
    job = upload(marketer_client, FILE)
    assert job.mapping == ["email", "custom:seats", "custom:renewal", "custom:plan", "custom:note"]
    page = marketer_client.get(reverse("contact-import-job", args=[job.pk]), **ENGLISH)
    assert '<option value="custom:seats" selected>Postes</option>' in page.content.decode()

    start(marketer_client, job, django_capture_on_commit_callbacks)

    assert job.status == ImportJob.Status.DONE, job.error
    assert (job.created_count, job.rejected_count) == (2, 3)
    assert custom("ana@exemple.fr") == {
        "seats": 1200, "renewal": "2027-03-31", "plan": "Pro", "note": "Rappeler en mars",
    }  # fmt: skip
    assert custom("eve@exemple.fr") == {"seats": 7}
    result = marketer_client.get(reverse("contact-import-job", args=[job.pk]), **ENGLISH)
    body = result.content.decode()
    assert "“beaucoup” is not a number for “Postes”: write it as 1200 or 4.5." in body
    assert "“Gold” is not a choice of “Offre”: Starter, Pro." in body
    assert "“le 3 mars” is not a date for “Renouvellement”" in body
    french = marketer_client.get(reverse("contact-import-job", args=[job.pk])).content.decode()
    nbsp = "\u00a0"  # before the colon and inside the quotes, as French writes them
    assert f"«{nbsp}beaucoup{nbsp}» n’est pas un nombre pour «{nbsp}Postes{nbsp}»{nbsp}:" in french


def test_an_import_fills_blank_custom_values_and_overwrites_only_when_asked(
    marketer_client, fields, django_capture_on_commit_callbacks
):
    ContactFactory(email="ana@exemple.fr", custom_fields={"seats": 5, "other": "kept"})
    start(marketer_client, upload(marketer_client, FILE), django_capture_on_commit_callbacks)
    assert custom("ana@exemple.fr") == {
        "seats": 5, "other": "kept", "renewal": "2027-03-31", "plan": "Pro",
        "note": "Rappeler en mars",
    }  # fmt: skip
    again = upload(marketer_client, FILE)
    start(marketer_client, again, django_capture_on_commit_callbacks)
    assert (again.created_count, again.merged_count, again.unchanged_count) == (0, 0, 2)

    overwrite = upload(marketer_client, FILE, overwrite="on")
    start(marketer_client, overwrite, django_capture_on_commit_callbacks)
    assert custom("ana@exemple.fr")["seats"] == 1200
    assert custom("ana@exemple.fr")["other"] == "kept"


def test_a_column_becomes_a_new_custom_field_in_the_mapping_step(
    admin_client, django_capture_on_commit_callbacks
):
    content = b"Email;Budget annuel\r\nana@exemple.fr;12 000\r\nbob@exemple.fr;1,5\r\n"
    job = upload(admin_client, content)
    assert job.mapping == ["email", ""]
    page = admin_client.get(reverse("contact-import-job", args=[job.pk]), **ENGLISH)
    assert "create as a custom field" in page.content.decode()

    start(admin_client, job, django_capture_on_commit_callbacks, new_1="on", kind_1="number")

    budget = CustomField.objects.get()
    assert (budget.key, budget.label, budget.kind) == ("budget_annuel", "Budget annuel", "number")
    assert job.mapping == ["email", "custom:budget_annuel"]
    assert custom("ana@exemple.fr") == {"budget_annuel": 12000}
    assert custom("bob@exemple.fr") == {"budget_annuel": 1.5}


def test_a_new_field_needs_an_ignored_column_and_a_free_key(
    admin_client, django_capture_on_commit_callbacks
):
    CustomField.objects.create(key="budget", label="Budget", kind="number")
    job = upload(admin_client, b"Email;Budget;Pays\r\nana@exemple.fr;12;FR\r\n")
    job.mapping = ["email", "", "country"]
    job.save()
    response = start(admin_client, job, django_capture_on_commit_callbacks, new_1="on", new_2="on")
    body = response.content.decode()
    assert "A custom field “budget” exists already: choose it in the list." in body
    assert "This column fills a field already." in body
    assert job.status == ImportJob.Status.MAPPING
    assert CustomField.objects.count() == 1


def test_a_marketer_without_the_permission_cannot_create_fields(
    marketer_client, django_capture_on_commit_callbacks
):
    job = upload(marketer_client, b"Email;Budget\r\nana@exemple.fr;12\r\n")
    page = marketer_client.get(reverse("contact-import-job", args=[job.pk]), **ENGLISH)
    assert "create as a custom field" not in page.content.decode()
    start(marketer_client, job, django_capture_on_commit_callbacks, new_1="on", kind_1="number")
    assert job.status == ImportJob.Status.DONE
    assert not CustomField.objects.exists()
    assert custom("ana@exemple.fr") == {}
