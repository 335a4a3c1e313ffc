"""Importing what a team's CRM exports, keeping its meaning: a source per row (with aliases and
unknown values confirmed), consent and opt-outs honoured at send time, outcomes, placeholders
read as blank, CRM id headers, and id-only rows that are leads."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from contacts import broker
from contacts.intake.capture import api_key_create
from contacts.models import (
    Contact,
    ContactOutcome,
    ImportJob,
    ImportPlaceholder,
    LeadSource,
    LeadSourceAlias,
    StageChange,
)
from contacts.sales.claims import contact_claim
from nurturing import enrolment, scheduler, sending
from nurturing.models import Message
from tests.factories import ContactFactory, LeadSourceFactory
from tests.nurturing.helpers import SmtpSink, email_step, sequence_with, smtp_server
from tests.utils import record

pytestmark = pytest.mark.django_db

# Shaped like a real CRM export: English headers, two id columns, no email column, "Select"
# and other placeholders, "google" beside "Google", Yes/No opt-outs, a 0/1 outcome.
CRM_EXPORT = (
    b"Prospect ID,Lead Number,Lead Origin,Lead Source,Do Not Email,Do Not Call,Converted,"
    b"First Name,Last Name,Company,What is your current occupation,Job Title\r\n"
    b"7927b2df-8bba,660737,API,Olark Chat,No,No,0,Ann,Lee,Acme,Unemployed,Select\r\n"
    b"2a272436-5132,660728,API,google,Yes,No,0,Bob,Ray,Beta,Select,Manager\r\n"
    b"8cc8c611-a219,660727,Landing Page Submission,Google,No,No,1,Cat,Kim,Gamma,Student,N/A\r\n"
    b"0cc2df48-7cf4,660719,Landing Page Submission,Direct Traffic,Yes,Yes,1,Dan,Roe,Delta,,-\r\n"
    b"3256f628-e534,660681,Landing Page Submission,Select,no,NO,,Eve,Poe,Epsilon,,Director\r\n"
)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    broker.reset()
    return tmp_path


@pytest.fixture
def sources(db):
    google = LeadSourceFactory(name="Google", slug="google")
    direct = LeadSourceFactory(name="Direct", slug="direct")
    LeadSourceAlias.objects.create(source=direct, alias="Direct traffic")
    return google, direct


def upload(client, content: bytes, name: str = "leads.csv", **fields) -> ImportJob:
    file = SimpleUploadedFile(name, content, content_type="text/csv")
    response = client.post(reverse("contact-import"), {"file": file, **fields})
    assert response.status_code == 302, response.content.decode()
    return ImportJob.objects.latest("pk")


def mapping_page(client, job: ImportJob):
    """The mapping step as the marketer's browser submits it: every proposed value."""
    response = client.get(reverse("contact-import-job", args=[job.pk]))
    assert response.status_code == 200
    form = response.context["form"]
    data = {name: field.value() for name, field in ((f.name, f) for f in form)}
    return response, {name: value for name, value in data.items() if value not in (None, False)}


def start(client, job: ImportJob, capture, data: dict) -> ImportJob:
    with capture(execute=True):
        response = client.post(reverse("contact-import-job", args=[job.pk]), data)
    assert response.status_code == 302, response.content.decode()
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE, job.error
    return job


def send_through_smtp(settings) -> SmtpSink:
    """Send the due messages to a real SMTP server (aiosmtpd); what it received."""
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command
    sink = SmtpSink()
    controller = smtp_server(sink)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    try:
        sending.messages_send()
    finally:
        controller.stop()
    return sink


def by_id(external_id: str) -> Contact:
    return Contact.objects.select_related("source").get(external_id=external_id)


def test_a_crm_export_without_emails_keeps_its_sources_opt_outs_outcomes_and_leads(
    marketer_client, sources, django_capture_on_commit_callbacks
):
    google, direct = sources
    job = upload(marketer_client, CRM_EXPORT)
    # The first id column is proposed as the external id, the second left alone.
    assert job.mapping == [
        "external_id", "", "", "source", "do_not_email", "do_not_call", "outcome",
        "first_name", "last_name", "company", "", "job_title",
    ]  # fmt: skip
    page, data = mapping_page(marketer_client, job)
    html = page.content.decode()
    # The unknown value is listed (not "google", "Google", the alias, nor the placeholder).
    assert "Olark Chat" in html and "Select</li>" not in html
    assert list(page.context["unknown_sources"])[0].value == "Olark Chat"
    assert data["rows_are_leads"] is True  # no email column, an id: proposed as leads
    # Without the permission to add sources, no box: the marketer is told what will happen.
    assert 'name="create_sources"' not in html
    assert "Vous ne pouvez pas créer de sources de lead" in html

    job = start(marketer_client, job, django_capture_on_commit_callbacks, data)

    assert (job.created_count, job.rejected_count) == (5, 0)
    assert Contact.objects.filter(stage="lead").count() == 5  # leads, not anonymous suspects
    ann, bob, cat, dan, eve = (by_id(pk) for pk in [
        "7927b2df-8bba", "2a272436-5132", "8cc8c611-a219", "0cc2df48-7cf4", "3256f628-e534",
    ])  # fmt: skip
    assert [c.source for c in (ann, bob, cat, dan, eve)] == [None, google, google, direct, None]
    assert [c.job_title for c in (ann, bob, cat, dan, eve)] == ["", "Manager", "", "", "Director"]
    assert [c.do_not_email for c in (ann, bob, cat, dan, eve)] == [False, True, False, True, False]
    assert [c.do_not_call for c in (ann, bob, cat, dan, eve)] == [False, False, False, True, False]
    outcomes = dict(ContactOutcome.objects.values_list("contact__external_id", "result"))
    assert outcomes == {
        "7927b2df-8bba": "lost", "2a272436-5132": "lost", "8cc8c611-a219": "won",
        "0cc2df48-7cf4": "won",
    }  # fmt: skip
    assert set(ContactOutcome.objects.values_list("source", flat=True)) == {"import"}
    # Never silent: the report says which value left how many rows without a source.
    assert (job.unsourced_count, job.unknown_sources) == (1, ["Olark Chat"])
    report = marketer_client.get(reverse("contact-import-job", args=[job.pk])).content.decode()
    assert "Olark Chat" in report and "1 ligne" in report
    assert not LeadSource.objects.filter(name="Olark Chat").exists()

    # The same file again changes nothing and records no outcome twice.
    recorded = dict(ContactOutcome.objects.values_list("contact_id", "recorded_at"))
    again = upload(marketer_client, CRM_EXPORT)
    _page, data = mapping_page(marketer_client, again)
    again = start(marketer_client, again, django_capture_on_commit_callbacks, data)
    assert (again.created_count, again.merged_count, again.unchanged_count) == (0, 0, 5)
    assert dict(ContactOutcome.objects.values_list("contact_id", "recorded_at")) == recorded


def test_an_unknown_source_is_created_only_when_confirmed_by_someone_allowed(
    marketer_client, marketer, sources, django_capture_on_commit_callbacks
):
    marketer.user_permissions.add(Permission.objects.get(codename="add_leadsource"))
    job = upload(marketer_client, CRM_EXPORT)
    page, data = mapping_page(marketer_client, job)
    assert 'name="create_sources"' in page.content.decode()

    job = start(
        marketer_client, job, django_capture_on_commit_callbacks, {**data, "create_sources": "on"}
    )

    olark = LeadSource.objects.get(name="Olark Chat")
    assert by_id("7927b2df-8bba").source == olark
    assert (job.unsourced_count, job.unknown_sources) == (0, [])


def test_without_the_permission_the_box_is_ignored(
    marketer_client, sources, django_capture_on_commit_callbacks
):
    job = upload(marketer_client, CRM_EXPORT)
    _page, data = mapping_page(marketer_client, job)
    start(
        marketer_client, job, django_capture_on_commit_callbacks, {**data, "create_sources": "on"}
    )
    assert not LeadSource.objects.filter(name="Olark Chat").exists()
    assert by_id("7927b2df-8bba").source is None


def test_a_per_row_source_wins_over_the_files_and_rows_without_one_get_the_files(
    marketer_client, sources, django_capture_on_commit_callbacks
):
    google, _direct = sources
    fair = LeadSourceFactory(name="Salon", slug="salon")
    content = (
        b"Email,Source du lead\r\na@example.fr,GOOGLE\r\nb@example.fr,\r\nc@example.fr,Olark\r\n"
    )
    job = upload(marketer_client, content, source=fair.pk)
    _page, data = mapping_page(marketer_client, job)
    start(marketer_client, job, django_capture_on_commit_callbacks, data)
    sources_by_email = dict(Contact.objects.values_list("email", "source__name"))
    # An unknown value keeps no source, not even the file's.
    assert sources_by_email == {
        "a@example.fr": "Google",
        "b@example.fr": "Salon",
        "c@example.fr": None,
    }


def test_the_source_column_changed_in_the_mapping_lists_its_values_before_creating(
    marketer_client, marketer, sources, django_capture_on_commit_callbacks
):
    marketer.user_permissions.add(Permission.objects.get(codename="add_leadsource"))
    content = b"Email,Origine,Canal\r\na@example.fr,google,Webinar\r\n"
    job = upload(marketer_client, content)
    _page, data = mapping_page(marketer_client, job)
    assert data["sources_of"] == ""  # "google" is known: nothing listed
    data.update({"column_1": "", "column_2": "source", "create_sources": "on"})
    response = marketer_client.post(reverse("contact-import-job", args=[job.pk]), data)
    assert response.status_code == 200  # not started: "Webinar" had not been shown
    assert "Webinar" in response.content.decode()
    assert not LeadSource.objects.filter(name="Webinar").exists()
    data["sources_of"] = response.context["form"].data["sources_of"]
    start(marketer_client, job, django_capture_on_commit_callbacks, data)
    assert Contact.objects.get().source.name == "Webinar"


CONSENT_FILE = (
    "Courriel;Consentement;Date du consentement;Base légale;Preuve du consentement;Désabonné\r\n"
    "ana@example.fr;Oui;31/03/2024;Intérêt légitime;salon 2024;Non\r\n"
    "ben@example.fr;Opt-in;2024-04-02 10:30;consent;formulaire web;X\r\n"
    "cyd@example.fr;withdrawn;;;;\r\n"
    "dee@example.fr;peut-être;;;;\r\n"
).encode()


def test_consent_columns_are_read_and_shown_on_the_contact(
    marketer_client, django_capture_on_commit_callbacks
):
    job = upload(marketer_client, CONSENT_FILE)
    assert job.mapping == ["email", "consent", "consent_at", "consent_basis", "consent_method",
                           "unsubscribed"]  # fmt: skip
    _page, data = mapping_page(marketer_client, job)
    job = start(marketer_client, job, django_capture_on_commit_callbacks, data)

    assert (job.created_count, job.rejected_count) == (3, 1)
    assert "peut-être" in job.row_errors.get().reason
    ana = Contact.objects.get(email="ana@example.fr")
    assert (ana.consent, ana.consent_basis, ana.consent_method, ana.do_not_email) == (
        "granted",
        "legitimate_interest",
        "salon 2024",
        False,
    )
    assert ana.consent_at == datetime(2024, 3, 31, tzinfo=ZoneInfo("Europe/Paris"))
    ben = Contact.objects.get(email="ben@example.fr")
    assert (ben.consent, ben.do_not_email) == ("granted", True)  # unsubscribed: do not email
    assert Contact.objects.get(email="cyd@example.fr").consent == "withdrawn"
    page = marketer_client.get(reverse("contact-detail", args=[ana.pk])).content.decode()
    assert "Intérêt légitime" in page and "salon 2024" in page
    page = marketer_client.get(reverse("contact-detail", args=[ben.pk])).content.decode()
    opt_outs = page.split('data-testid="opt-outs"')[1].split("</dd>")[0]
    assert "Ne pas contacter par e-mail" in opt_outs and "Ne pas appeler" not in opt_outs


def test_an_opt_out_is_sticky_and_imported_opt_outs_are_never_emailed(
    marketer_client, sources, settings, django_capture_on_commit_callbacks
):
    # Given the CRM export (no emails) then a file giving them emails, where the opted-out
    # Bob is now "No" and "overwrite" is ticked...
    job = upload(marketer_client, CRM_EXPORT)
    _page, data = mapping_page(marketer_client, job)
    start(marketer_client, job, django_capture_on_commit_callbacks, data)
    emails = (
        b"Prospect ID,Email,Do Not Email,Consent\r\n"
        b"7927b2df-8bba,ann@example.fr,No,\r\n"
        b"2a272436-5132,bob@example.fr,No,granted\r\n"
        b"8cc8c611-a219,cat@example.fr,,withdrawn\r\n"
        b"0cc2df48-7cf4,dan@example.fr,,\r\n"
        b"3256f628-e534,eve@example.fr,Yes,\r\n"
    )
    job = upload(marketer_client, emails, overwrite="on")
    _page, data = mapping_page(marketer_client, job)
    job = start(marketer_client, job, django_capture_on_commit_callbacks, data)
    assert job.merged_count == 5
    opted_out = set(Contact.objects.filter(do_not_email=True).values_list("email", flat=True))
    assert opted_out == {"bob@example.fr", "dan@example.fr", "eve@example.fr"}

    # ...when a sequence emails them all through a real SMTP server...
    sequence = sequence_with(email_step())
    enrolment.enrollments_start(
        sequence=sequence, contact_ids=list(Contact.objects.values_list("pk", flat=True))
    )
    scheduler.enrollments_advance()
    sink = send_through_smtp(settings)

    # ...only the one who may be emailed gets it (Cat withdrew her consent).
    assert sorted(r.recipients[0] for r in sink.received) == ["ann@example.fr"]


def test_placeholders_are_an_editable_list(marketer_client, django_capture_on_commit_callbacks):
    ImportPlaceholder.objects.create(value="(vide)")
    ImportPlaceholder.objects.filter(value="none").delete()
    content = b"Email,Company,Job title\r\na@example.fr,(VIDE),none\r\nb@example.fr,null,Select\r\n"
    job = upload(marketer_client, content)
    _page, data = mapping_page(marketer_client, job)
    start(marketer_client, job, django_capture_on_commit_callbacks, data)
    assert dict(Contact.objects.values_list("email", "company")) == {
        "a@example.fr": "", "b@example.fr": ""
    }  # fmt: skip
    assert dict(Contact.objects.values_list("email", "job_title")) == {
        "a@example.fr": "none", "b@example.fr": ""
    }  # fmt: skip


def test_outcomes_are_dated_by_a_mapped_date_and_the_latest_holds(
    marketer_client, django_capture_on_commit_callbacks
):
    content = (
        "Email,Status,Close date\r\n"
        "a@example.fr,Won,2024-05-01\r\n"
        "b@example.fr,Perdu,02/05/2024\r\n"
        "c@example.fr,Gagné,\r\n"
    ).encode()
    job = upload(marketer_client, content)
    _page, data = mapping_page(marketer_client, job)
    data["column_1"] = "outcome"  # "Status" is not proposed: the marketer picks it
    start(marketer_client, job, django_capture_on_commit_callbacks, data)
    outcomes = {o.contact.email: o for o in ContactOutcome.objects.select_related("contact")}
    paris = ZoneInfo("Europe/Paris")
    assert (outcomes["a@example.fr"].result, outcomes["a@example.fr"].at) == (
        "won",
        datetime(2024, 5, 1, tzinfo=paris),
    )
    assert (outcomes["b@example.fr"].result, outcomes["b@example.fr"].at) == (
        "lost",
        datetime(2024, 5, 2, tzinfo=paris),
    )
    assert outcomes["c@example.fr"].result == "won"  # dated by the import

    # An older verdict in a later file changes nothing.
    older = b"Email,Outcome,Outcome date\r\na@example.fr,Lost,2024-01-01\r\n"
    job = upload(marketer_client, older)
    _page, data = mapping_page(marketer_client, job)
    start(marketer_client, job, django_capture_on_commit_callbacks, data)
    assert ContactOutcome.objects.get(contact__email="a@example.fr").result == "won"


def test_the_api_sets_opt_outs_and_never_lifts_them(client):
    _key, secret = api_key_create(name="crm")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    url = "/api/v1/contacts"
    body = {"contacts": [{"email": "a@example.fr", "do_not_email": True, "do_not_call": True}]}
    response = client.post(url, body, content_type="application/json", **headers)
    assert response.status_code == 200, response.content
    assert response.json()["contacts"][0]["do_not_email"] is True
    body = {"contacts": [{"email": "a@example.fr", "do_not_email": False}]}
    client.post(url, body, content_type="application/json", **headers)
    contact = Contact.objects.get()
    assert (contact.do_not_email, contact.do_not_call) == (True, True)


def test_a_rep_sees_do_not_call_beside_the_phone(sales_client, sales_rep):
    lead = ContactFactory(stage="sql", phone="+33 6 12 34 56 78", do_not_call=True)
    contact_claim(contact_id=lead.pk, user=sales_rep)
    page = sales_client.get(reverse("queue-lead", args=[lead.pk])).content.decode()
    assert 'data-testid="do-not-call">Ne pas appeler<' in page


def test_an_admin_adds_an_alias_inline_and_a_clashing_one_is_refused(admin_client, sources):
    google, direct = sources
    url = reverse("admin:contacts_leadsource_change", args=[google.pk])
    form = {
        "name": "Google", "slug": "google", "channel": "paid", "utm_source": "",
        "utm_medium": "", "utm_campaign": "", "active": "on",
        "created_at_0": "2026-01-01", "created_at_1": "00:00:00",
        "aliases-TOTAL_FORMS": "1", "aliases-INITIAL_FORMS": "0",
        "aliases-0-alias": "AdWords", "aliases-0-source": str(google.pk),
        "costs-TOTAL_FORMS": "0", "costs-INITIAL_FORMS": "0",
    }  # fmt: skip
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert LeadSourceAlias.objects.get(source=google).key == "adwords"

    form["aliases-0-alias"] = "direct"  # another source's name
    response = admin_client.post(url, form)
    assert response.status_code == 200
    assert "Une autre source de lead porte ce nom." in response.content.decode()


def test_a_queued_email_is_not_sent_once_an_import_opts_the_contact_out(
    marketer_client, settings, django_capture_on_commit_callbacks
):
    # Given a contact whose sequence email is already waiting in the outbox...
    contact = ContactFactory(email="zoe@example.fr", external_id="crm-9")
    sequence = sequence_with(email_step())
    enrolment.enrollments_start(sequence=sequence, contact_ids=[contact.pk])
    scheduler.enrollments_advance()
    # ...when the CRM's export says she must not be emailed...
    job = upload(marketer_client, b"CRM ID;Do Not Email\r\ncrm-9;Oui\r\n")
    _page, data = mapping_page(marketer_client, job)
    start(marketer_client, job, django_capture_on_commit_callbacks, data)
    sink = send_through_smtp(settings)
    # ...the send refuses it.
    assert sink.received == []
    assert Message.objects.get().status == "suppressed"


def test_id_only_rows_stay_suspects_unless_the_file_says_they_are_leads(
    marketer_client, django_capture_on_commit_callbacks
):
    content = b"Customer ID,First Name,Company\r\nc-1,Ann,Acme\r\nc-2,Bob,Beta\r\n"
    job = upload(marketer_client, content)
    _page, data = mapping_page(marketer_client, job)
    del data["rows_are_leads"]  # the marketer unticks it
    start(marketer_client, job, django_capture_on_commit_callbacks, data)
    assert set(Contact.objects.values_list("stage", flat=True)) == {"suspect"}

    again = upload(marketer_client, content)
    _page, data = mapping_page(marketer_client, again)
    again = start(marketer_client, again, django_capture_on_commit_callbacks, data)

    assert (again.merged_count, again.unchanged_count) == (2, 0)
    assert set(Contact.objects.values_list("stage", flat=True)) == {"lead"}
    assert StageChange.objects.filter(to_stage="lead", cause="import").count() == 2


def test_an_imported_lead_known_only_by_its_crm_id_is_scored_on_to_mql(
    marketer_client, sources, django_capture_on_commit_callbacks
):
    job = upload(marketer_client, CRM_EXPORT)
    _page, data = mapping_page(marketer_client, job)
    start(marketer_client, job, django_capture_on_commit_callbacks, data)
    ann = by_id("7927b2df-8bba")
    assert (ann.email, ann.stage) == (None, "lead")

    record(ann, "page_view", url="/pricing", capture=django_capture_on_commit_callbacks)
    record(ann, "newsletter_subscribe", capture=django_capture_on_commit_callbacks)

    assert (ann.score, ann.stage) == (20, "mql")
