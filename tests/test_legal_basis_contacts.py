"""A contact's legal basis, date of notice and consent to open tracking: shown on its page,
set on its edit form, through the API, by imports and by a form whose consent covers opens."""

from __future__ import annotations

from datetime import date

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from contacts import broker
from contacts.intake.capture import api_key_create
from contacts.models import Contact, Form, ImportJob
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def detail(client, contact, testid):
    page = client.get(reverse("contact-detail", args=[contact.pk])).content.decode()
    return page.split(f'data-testid="{testid}">')[1].split("</dd>")[0]


def test_the_contact_page_says_why_marketing_email_may_not_go(marketer_client, settings):
    settings.NURTURING_OPEN_TRACKING = "consent"
    personal = ContactFactory(
        email="paul.martin@gmail.com",
        consent_basis="legitimate_interest",
        legitimate_interest_notice_on=date(2026, 1, 5),
    )
    informed = ContactFactory(
        email="paul@fournisseur.example.fr",
        consent_basis="legitimate_interest",
        legitimate_interest_notice_on=date(2026, 1, 5),
        open_tracking_consent_at=timezone.now(),
        open_tracking_consent_source="salon 2026",
    )

    assert "Intérêt légitime sur une adresse personnelle" in detail(
        marketer_client, personal, "marketing-email"
    )
    basis = detail(marketer_client, informed, "legal-basis")
    assert "Intérêt légitime" in basis and "informé le 5 janvier 2026" in basis
    may = detail(marketer_client, informed, "marketing-email")
    assert "Peuvent être envoyés" in may and "«\xa0Intérêt légitime\xa0»" in may
    opens = detail(marketer_client, informed, "open-tracking")
    assert "Suivies" in opens and "salon 2026" in opens
    assert "Non suivies" in detail(marketer_client, personal, "open-tracking")


def test_the_contact_page_says_a_bounced_address_gets_no_marketing_email(marketer_client):
    bounced = ContactFactory(
        email="ancien@fournisseur.example.fr", consent="granted", consent_basis="consent",
        email_status="hard_bounce", email_status_at=timezone.now(),
    )  # fmt: skip
    may = detail(marketer_client, bounced, "marketing-email")
    assert "Pas maintenant" in may and "Échec définitif" in may


def test_the_edit_form_sets_the_basis_the_notice_and_the_open_tracking_consent(marketer_client):
    contact = ContactFactory(email="paul@fournisseur.example.fr", first_name="Paul")
    url = reverse("contact-edit", args=[contact.pk])
    fields = {"email": contact.email, "first_name": "Paul"}

    response = marketer_client.post(url, {
        **fields, "consent_basis": "legitimate_interest",
        "legitimate_interest_notice_on": "2026-01-05", "open_tracking": "on",
    })  # fmt: skip

    assert response.status_code == 302
    contact.refresh_from_db()
    assert contact.consent_basis == "legitimate_interest"
    assert contact.legitimate_interest_notice_on == date(2026, 1, 5)
    assert contact.open_tracking_consent_at is not None
    assert contact.open_tracking_consent_source == "fiche du contact"
    given_at = contact.open_tracking_consent_at

    marketer_client.post(url, {**fields, "consent_basis": "legitimate_interest",
                               "legitimate_interest_notice_on": "2026-01-05",
                               "open_tracking": "on",
                               "open_tracking_consent_source": "fiche du contact"})  # fmt: skip
    contact.refresh_from_db()
    assert contact.open_tracking_consent_at == given_at  # ticked again: the date stays

    marketer_client.post(url, {**fields, "consent_basis": "legitimate_interest"})
    contact.refresh_from_db()
    assert contact.open_tracking_consent_at is None and contact.open_tracking_consent_source == ""


def test_a_bad_notice_date_gets_a_clear_message_and_changes_nothing(marketer_client):
    contact = ContactFactory(email="paul@fournisseur.example.fr", first_name="Paul")
    before = Contact.objects.values().get(pk=contact.pk)

    response = marketer_client.post(
        reverse("contact-edit", args=[contact.pk]),
        {"email": contact.email, "first_name": "Paul", "legitimate_interest_notice_on": "05/13"},
    )

    assert response.status_code == 200
    assert response.context["form"].errors["legitimate_interest_notice_on"]
    assert Contact.objects.values().get(pk=contact.pk) == before


def test_the_api_takes_the_basis_the_notice_and_the_open_tracking_consent(client):
    _key, secret = api_key_create(name="crm")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    body = {"contacts": [{
        "email": "paul@fournisseur.example.fr", "consent_basis": "legitimate_interest",
        "legitimate_interest_notice_on": "2026-01-05", "open_tracking_consent": True,
    }]}  # fmt: skip

    response = client.post("/api/v1/contacts", body, content_type="application/json", **headers)

    assert response.status_code == 200, response.content
    out = response.json()["contacts"][0]
    assert out["consent_basis"] == "legitimate_interest"
    assert out["legitimate_interest_notice_on"] == "2026-01-05"
    assert out["open_tracking_consent_at"] is not None
    contact = Contact.objects.get()
    assert contact.open_tracking_consent_source == "api"
    again = {"contacts": [{"email": "Paul@Fournisseur.example.fr", "open_tracking_consent": True}]}
    client.post("/api/v1/contacts", again, content_type="application/json", **headers)
    given_at = contact.open_tracking_consent_at
    contact.refresh_from_db()
    assert contact.open_tracking_consent_at == given_at  # given again: its first date stays
    bad = {"contacts": [{"email": "x@example.fr", "legitimate_interest_notice_on": "demain"}]}
    refused = client.post("/api/v1/contacts", bad, content_type="application/json", **headers)
    assert refused.status_code == 400
    assert not Contact.objects.filter(email="x@example.fr").exists()
    withdraw = {"contacts": [{"email": contact.email, "open_tracking_consent": False}]}
    client.post("/api/v1/contacts", withdraw, content_type="application/json", **headers)
    contact.refresh_from_db()
    assert contact.open_tracking_consent_at is None
    assert contact.legitimate_interest_notice_on == date(2026, 1, 5)


def test_an_import_reads_the_notice_date_and_the_open_tracking_consent(
    marketer_client, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path
    broker.reset()
    known = ContactFactory(email="ben@example.fr")
    content = (
        "Courriel;Base légale;Informé le;Suivi des ouvertures\r\n"
        "ana@fournisseur.example.fr;Intérêt légitime;05/01/2026;Oui\r\n"
        "ben@example.fr;consent;;oui\r\n"
    ).encode()
    file = SimpleUploadedFile("leads.csv", content, content_type="text/csv")
    marketer_client.post(reverse("contact-import"), {"file": file})
    job = ImportJob.objects.latest("pk")
    assert job.mapping == ["email", "consent_basis", "legitimate_interest_notice_on",
                           "open_tracking_consent"]  # fmt: skip
    page = marketer_client.get(reverse("contact-import-job", args=[job.pk]))
    data = {f.name: f.value() for f in page.context["form"]}
    with django_capture_on_commit_callbacks(execute=True):
        marketer_client.post(
            reverse("contact-import-job", args=[job.pk]),
            {k: v for k, v in data.items() if v not in (None, False)},
        )
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE, job.error

    ana = Contact.objects.get(email="ana@fournisseur.example.fr")
    assert ana.legitimate_interest_notice_on == date(2026, 1, 5)
    assert ana.open_tracking_consent_at is not None and ana.open_tracking_consent_source == "import"
    known.refresh_from_db()
    assert known.open_tracking_consent_at is not None


def test_a_form_whose_consent_covers_opens_records_the_open_tracking_consent(client):
    form = Form.objects.create(name="Livre blanc", consent_covers_open_tracking=True)
    plain = Form.objects.create(name="Contact")
    fields = {"first_name": "Élodie", "consent": "on"}

    client.post(reverse("form-post", args=[form.key]), {**fields, "email": "a@exemple.fr"})
    client.post(reverse("form-post", args=[plain.key]), {**fields, "email": "b@exemple.fr"})

    covered = Contact.objects.get(email="a@exemple.fr")
    assert covered.open_tracking_consent_at == covered.consent_at
    assert covered.open_tracking_consent_source == f"form:{form.key} v1"
    assert Contact.objects.get(email="b@exemple.fr").open_tracking_consent_at is None
