import csv
import io
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.validators import validate_email
from django.urls import reverse
from django.utils import timezone

from contacts import broker
from contacts.imports import parsing
from contacts.imports.forms import ImportMappingForm
from contacts.imports.jobs import contacts_import, imports_sweep
from contacts.imports.writes import known_contacts
from contacts.models import (
    Contact,
    Event,
    ImportJob,
    ImportRowError,
    PendingEvent,
    StageChange,
    StageStay,
)
from tests.factories import ContactFactory, LeadSourceFactory

ENGLISH = {"HTTP_ACCEPT_LANGUAGE": "en"}

# UTF-8 with a BOM, semicolons, accents, a blank line, a quoted newline, blank extra and missing
# cells, duplicates differing in case and spaces, an invalid email, a row without email.
SALON = (
    "Prénom;Nom;Courriel;Société;Source\r\n"
    "Hélène;Dupré;helene@exemple.fr;Café Crème;salon\r\n"  # line 2: created
    "François;Lefèvre; FRANCOIS@exemple.fr ;Société Générale\r\n"  # 3: created, no Source cell
    "\r\n"  # 4: blank
    'Zoé;Noël;zoe@exemple.fr;"Les Ateliers\r\nRéunis";salon;;\r\n'  # 5-6: created
    "Élodie;Bérard;pas-un-email;ACME;salon\r\n"  # 7: rejected
    ";Sans;;Personne;salon\r\n"  # 8: rejected, no email
    "Francis;;francois@EXEMPLE.fr  ;Autre société;salon\r\n"  # 9: merged into line 3
    "Hélène;;HELENE@exemple.fr;;salon\r\n"  # 10: merged into line 2
).encode("utf-8-sig")

# Windows-1252 (œ is not Latin-1), commas, quoted commas, a value too long for its field.
EXCEL = (
    '"E-mail","First Name","Last Name","Company","Job title"\r\n'
    'andre@exemple.fr,André,Müller,"Bâtiments, Cœur & Cie",Directeur général\r\n'
    f"long@exemple.fr,Long,Titre,Acme,{'x' * 151}\r\n"
    "agnes@exemple.fr,Agnès,Ñúñez,,\r\n"
).encode("cp1252")

TABS = "Email\tPrénom\tTel\nbob@exemple.fr\tBob\t+33 1 02 03 04 05\n".encode()


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    broker.reset()
    return tmp_path


def upload(client, content: bytes, name: str = "salon.csv", **fields):
    file = SimpleUploadedFile(name, content, content_type="text/csv")
    return client.post(reverse("contact-import"), {"file": file, **fields}, **ENGLISH)


def start(client, job: ImportJob, capture, mapping: list[str] | None = None):
    data = {f"column_{i}": value for i, value in enumerate(mapping or job.mapping)}
    with capture(execute=True):  # the task runs eagerly once the mapping is saved
        response = client.post(reverse("contact-import-job", args=[job.pk]), data)
    job.refresh_from_db()
    return response


def run_import(client, capture, content: bytes, name: str = "salon.csv", **fields) -> ImportJob:
    response = upload(client, content, name, **fields)
    assert response.status_code == 302, response.content.decode()
    job = ImportJob.objects.latest("pk")
    start(client, job, capture)
    assert job.status == ImportJob.Status.DONE, job.error
    return job


def counts(job: ImportJob) -> tuple[int, int, int, int]:
    return (job.created_count, job.merged_count, job.unchanged_count, job.rejected_count)


# --- Reading files (no database) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "encoding", "delimiter", "columns"),
    [
        (SALON, "utf-8-sig", ";", ["Prénom", "Nom", "Courriel", "Société", "Source"]),
        (EXCEL, "cp1252", ",", ["E-mail", "First Name", "Last Name", "Company", "Job title"]),
        (TABS, "utf-8-sig", "\t", ["Email", "Prénom", "Tel"]),
        (b"email\nbob@exemple.fr\n", "utf-8-sig", ",", ["email"]),
        ("Email\tNom\n".encode("utf-16"), "utf-16", "\t", ["Email", "Nom"]),
    ],
)
def test_encoding_delimiter_and_header_are_detected(content, encoding, delimiter, columns):
    detected = parsing.detect(content)
    assert (detected.encoding, detected.delimiter, detected.columns) == (
        encoding,
        delimiter,
        columns,
    )


@pytest.mark.parametrize(
    "content",
    [
        b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00[Content_Types].xml",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        b"email\x00name\n",
        b"email\x01\x02\x03\n",
        b"\x81\x8d\x8f",  # neither UTF-8 nor Windows-1252
        b"\r\n\r\n",
    ],
)
def test_what_is_not_a_csv_is_refused(content):
    with pytest.raises(parsing.NotACsv):
        parsing.detect(content)


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("Email", "email"), ("E-mail", "email"), ("COURRIEL", "email"),
        ("Adresse e-mail", "email"), ("Mail", "email"), ("First Name", "first_name"),
        ("Prénom", "first_name"), ("prenom", "first_name"), ("Last Name", "last_name"),
        ("Nom", "last_name"), ("Nom de famille", "last_name"), ("Société", "company"),
        ("Societe", "company"), ("Entreprise", "company"), ("Company", "company"),
        ("Phone", "phone"), ("Téléphone", "phone"), ("Tel", "phone"), ("Tél.", "phone"),
        ("Job title", "job_title"), ("Fonction", "job_title"), ("Poste", "job_title"),
        ("Titre", "job_title"), ("utm_source", "utm_source"), ("UTM Campaign", "utm_campaign"),
        ("Source", "source"), ("Lead Source", "source"), ("Prospect ID", "external_id"),
            ("Do Not Email", "do_not_email"), ("Converted", "outcome"), ("Remarques", ""),
    ],
)  # fmt: skip
def test_common_english_and_french_headers_are_proposed(header, field):
    assert parsing.propose_mapping([header]) == [field]


def test_a_field_is_proposed_for_its_first_column_only():
    assert parsing.propose_mapping(["Email", "Mail", "Nom"]) == ["email", "", "last_name"]


def test_the_mapping_form_needs_one_email_column_and_no_field_twice():
    form = ImportMappingForm(
        {"column_0": "company", "column_1": "company"}, columns=["A", "B"], mapping=["", ""]
    )
    assert not form.is_valid()
    assert len(form.non_field_errors()) == 2  # company twice, no email


# --- Importing ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_messy_french_file_imports_with_exact_counts_and_accents(
    marketer_client, marketer, django_capture_on_commit_callbacks
):
    # The "Source" column names it ("salon", any case); rows without one get the file's.
    source = LeadSourceFactory(name="Salon", slug="vivatech")
    response = upload(marketer_client, SALON, source=source.pk)
    job = ImportJob.objects.get()
    assert response.url == reverse("contact-import-job", args=[job.pk])
    assert job.mapping == ["first_name", "last_name", "email", "company", "source"]
    page = marketer_client.get(response.url).content.decode()
    assert "Café Crème" in page  # first values shown under each column

    start(marketer_client, job, django_capture_on_commit_callbacks)

    assert job.status == ImportJob.Status.DONE
    assert counts(job) == (3, 2, 0, 2)
    assert (job.rows_total, job.rows_done) == (7, 7)
    assert list(job.row_errors.values_list("line_number", flat=True)) == [7, 8]
    helene = Contact.objects.get(email="helene@exemple.fr")
    assert (helene.first_name, helene.last_name, helene.company) == (
        "Hélène",
        "Dupré",
        "Café Crème",
    )
    assert (helene.stage, helene.source) == ("lead", source)
    francois = Contact.objects.get(email__iexact="francois@exemple.fr")
    # The first row wins; later duplicates only fill what it left blank.
    assert (francois.email, francois.first_name, francois.company) == (
        "FRANCOIS@exemple.fr",
        "François",
        "Société Générale",
    )
    assert Contact.objects.get(email="zoe@exemple.fr").company == "Les Ateliers\r\nRéunis"
    change = StageChange.objects.get(contact=helene)
    assert (change.from_stage, change.to_stage, change.cause) == ("suspect", "lead", "import")
    assert "salon.csv" in change.reason
    assert change.actor_name == "Claire Martin"
    assert Event.objects.filter(type="stage_changed").count() == 3


@pytest.mark.django_db
def test_a_windows_excel_file_keeps_its_accents_and_rejects_too_long_values(
    marketer_client, django_capture_on_commit_callbacks
):
    job = run_import(marketer_client, django_capture_on_commit_callbacks, EXCEL, "export.csv")

    assert (job.encoding, job.delimiter) == ("cp1252", ",")
    assert counts(job) == (2, 0, 0, 1)
    andre = Contact.objects.get(email="andre@exemple.fr")
    assert (andre.first_name, andre.last_name) == ("André", "Müller")
    assert (andre.company, andre.job_title) == ("Bâtiments, Cœur & Cie", "Directeur général")
    assert Contact.objects.get(email="agnes@exemple.fr").last_name == "Ñúñez"
    error = ImportRowError.objects.get()
    assert error.line_number == 3
    assert "151" in error.reason and "150" in error.reason


@pytest.mark.django_db
def test_a_tab_separated_file_imports(marketer_client, django_capture_on_commit_callbacks):
    job = run_import(marketer_client, django_capture_on_commit_callbacks, TABS, "bob.tsv")

    assert counts(job) == (1, 0, 0, 0)
    assert Contact.objects.get(email="bob@exemple.fr").phone == "+33 1 02 03 04 05"


@pytest.mark.django_db
def test_importing_the_same_file_again_changes_nothing(
    marketer_client, django_capture_on_commit_callbacks
):
    source = LeadSourceFactory()
    run_import(marketer_client, django_capture_on_commit_callbacks, SALON, source=source.pk)
    before = list(Contact.objects.order_by("pk").values())

    again = run_import(marketer_client, django_capture_on_commit_callbacks, SALON, source=source.pk)

    assert counts(again) == (0, 0, 5, 2)
    assert list(Contact.objects.order_by("pk").values()) == before
    assert StageChange.objects.count() == 3


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overwrite", "expected"),
    [
        (False, ("Marie", "Nouvelle SA", "Ancien poste")),
        (True, ("Mariette", "Nouvelle SA", "Nouveau poste")),
    ],
)
def test_existing_contacts_get_blanks_filled_or_values_overwritten(
    marketer_client, django_capture_on_commit_callbacks, overwrite, expected
):
    source, other_source = LeadSourceFactory(), LeadSourceFactory()
    marie = ContactFactory(
        email="marie@exemple.fr", first_name="Marie", company="", job_title="Ancien poste",
        source=None,
    )  # fmt: skip
    paul = ContactFactory(email="paul@exemple.fr", first_name="Paul", source=other_source)
    content = (
        "Email,Prénom,Société,Fonction\n"
        "MARIE@exemple.fr,Mariette,Nouvelle SA,Nouveau poste\n"
        "paul@exemple.fr,,,\n"
    ).encode()
    fields = {"source": source.pk, **({"overwrite": "on"} if overwrite else {})}

    job = run_import(marketer_client, django_capture_on_commit_callbacks, content, **fields)

    assert counts(job) == (0, 1, 1, 0)
    marie.refresh_from_db()
    paul.refresh_from_db()
    assert (marie.first_name, marie.company, marie.job_title) == expected
    assert marie.email == "marie@exemple.fr"  # the email's case is not rewritten
    assert marie.source == source  # a contact without a source gets the chosen one
    assert paul.source == other_source  # a known first touch is kept
    assert not StageChange.objects.exists()  # known contacts keep their stage


@pytest.mark.django_db
def test_a_job_runs_once_even_if_its_task_is_delivered_twice(
    marketer_client, django_capture_on_commit_callbacks
):
    job = run_import(marketer_client, django_capture_on_commit_callbacks, TABS)

    assert contacts_import(job=job) is False
    job.refresh_from_db()
    assert counts(job) == (1, 0, 0, 0)


@pytest.mark.django_db
def test_the_sweep_sends_lost_jobs_again_and_fails_dead_ones(
    marketer_client, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(broker, "send", lambda task, *args: False)  # the broker is down
    upload(marketer_client, TABS)
    lost = ImportJob.objects.get()
    start(marketer_client, lost, django_capture_on_commit_callbacks)
    assert lost.status == ImportJob.Status.QUEUED
    ImportJob.objects.filter(pk=lost.pk).update(queued_at=timezone.now() - timedelta(minutes=5))
    dead = ImportJob.objects.create(
        filename="dead.csv", status=ImportJob.Status.RUNNING, encoding="utf-8", delimiter=",",
        started_at=timezone.now() - timedelta(hours=2),
    )  # fmt: skip
    monkeypatch.undo()

    assert imports_sweep() == (1, 1)

    lost.refresh_from_db()
    dead.refresh_from_db()
    assert (lost.status, lost.created_count) == (ImportJob.Status.DONE, 1)
    assert dead.status == ImportJob.Status.FAILED
    assert dead.error_text  # the marketer is told why and what to do


# --- Pages -------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        # A zip that is no workbook (an .xlsx is read: tests/test_import_xlsx.py).
        (
            b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00" + b"\x00" * 64,
            "contacts.xlsx",
            "it is damaged or incomplete",
        ),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 64, "contacts.csv", "not a CSV file"),
    ],
)
def test_a_spreadsheet_or_an_image_is_refused_and_nothing_stored(
    marketer_client, media, content, name, message
):
    response = upload(marketer_client, content, name)

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ImportJob.objects.exists()
    assert not any(media.rglob("*.*"))


@pytest.mark.django_db
def test_the_rejected_rows_download_as_csv_without_formulas(
    marketer_client, django_capture_on_commit_callbacks
):
    content = b"email,company\nok@exemple.fr,Acme\n=1+2,-Evil\n"
    job = run_import(marketer_client, django_capture_on_commit_callbacks, content)
    assert counts(job) == (1, 0, 0, 1)
    page = marketer_client.get(reverse("contact-import-job", args=[job.pk]), **ENGLISH)
    assert reverse("contact-import-errors", args=[job.pk]) in page.content.decode()

    response = marketer_client.get(reverse("contact-import-errors", args=[job.pk]), **ENGLISH)

    body = b"".join(response.streaming_content).decode("utf-8")
    assert response["Content-Type"].startswith("text/csv")
    assert body.startswith("\ufeff")
    header, row = list(csv.reader(io.StringIO(body[1:])))
    assert header == ["Line", "Reason", "Row"]
    assert row[0] == "3"
    assert "=1+2" in row[1]  # the reason names the refused address
    assert row[2] == "'=1+2,-Evil"


@pytest.mark.django_db
def test_the_progress_partial_polls_while_the_job_runs(marketer_client, marketer):
    upload(marketer_client, TABS)
    job = ImportJob.objects.get()
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.RUNNING, rows_total=200, rows_done=50
    )
    url = reverse("contact-import-job", args=[job.pk])

    partial = marketer_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    full = marketer_client.get(url).content.decode()

    assert "<html" not in partial
    assert f'hx-get="{url}"' in partial and 'hx-trigger="every 1s"' in partial
    assert '<progress max="100" value="25">' in partial
    assert f'href="{url}"' in partial  # reloading the page works without JavaScript
    assert "<html" in full and 'hx-trigger="every 1s"' in full

    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.DONE)
    done = marketer_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in done  # polling stops with the last swap
    assert 'data-count="created"' in done


@pytest.mark.django_db
def test_the_import_is_for_marketers_only(sales_client, marketer):
    job = ImportJob.objects.create(filename="a.csv", encoding="utf-8", delimiter=",")
    for url in (
        reverse("contact-import"),
        reverse("contact-import-job", args=[job.pk]),
        reverse("contact-import-errors", args=[job.pk]),
    ):
        assert sales_client.get(url).status_code == 403
    assert upload(sales_client, TABS).status_code == 403
    assert ImportJob.objects.count() == 1


@pytest.mark.django_db
def test_the_contact_list_links_to_the_import(marketer_client):
    body = marketer_client.get(reverse("contact-list")).content.decode()
    assert f'href="{reverse("contact-import")}"' in body


# A CRM export: people known by their CRM id, with or without an email (see the test below).
CRM = (
    "Identifiant;Courriel;Prénom;Téléphone\r\n"
    "CRM-1;;Anne;\r\n"  # line 2: merged into the contact known by id only (name filled)
    "CRM-2;;Bruno;01 02 03 04 05\r\n"  # 3: created, a suspect without email
    "CRM-3;carla@exemple.fr;Carla;\r\n"  # 4: created, a lead with its id
    "CRM-3;;;06 07 08 09 10\r\n"  # 5: no email: merged into line 4 by its id
    "CRM-5;dora@exemple.fr;;\r\n"  # 6: merged: the known Dora gets her id
    "CRM-6;eve@exemple.fr;;\r\n"  # 7: rejected: Eve and CRM-6 are two different contacts
    "CRM-7;fred@exemple.fr;;\r\n"  # 8: rejected: CRM-7 is Gina, not Fred
    "CRM-8;hugo@exemple.fr;Hugo;\r\n"  # 9: merged: the anonymous CRM-8 gets an email, is a lead
    "CRM-3;ines@exemple.fr;;\r\n"  # 10: rejected: CRM-3 is Carla's on line 4
    ";;Personne;\r\n"  # 11: rejected: neither email nor id
).encode()


@pytest.mark.django_db
def test_rows_without_email_are_matched_on_their_external_id_and_conflicts_are_refused(
    marketer_client, django_capture_on_commit_callbacks
):
    anne = ContactFactory(anonymous=True, external_id="CRM-1")
    dora = ContactFactory(email="dora@exemple.fr", first_name="Dora")
    eve = ContactFactory(email="eve@exemple.fr", external_id="CRM-66")
    other = ContactFactory(email="other@exemple.fr", external_id="CRM-6")
    gina = ContactFactory(email="gina@exemple.fr", external_id="CRM-7")
    hugo = ContactFactory(anonymous=True, external_id="CRM-8")
    response = upload(marketer_client, CRM, "crm.csv")
    assert response.status_code == 302
    job = ImportJob.objects.get()
    assert job.mapping == ["external_id", "email", "first_name", "phone"]
    start(marketer_client, job, django_capture_on_commit_callbacks)

    assert counts(job) == (2, 4, 0, 4)
    assert sorted(job.row_errors.values_list("line_number", flat=True)) == [7, 8, 10, 11]
    refused = {error.line_number: error.reason for error in job.row_errors.all()}
    # Stored as codes, read in the reader's language (French here).
    assert "deux contacts différents" in refused[7] and "gina@exemple.fr" in refused[8]
    assert "ligne 4" in refused[10]
    anne.refresh_from_db()
    assert (anne.first_name, anne.email, anne.stage) == ("Anne", None, "suspect")
    bruno = Contact.objects.get(external_id="CRM-2")
    assert (bruno.first_name, bruno.phone, bruno.email, bruno.stage) == (
        "Bruno", "01 02 03 04 05", None, "suspect",
    )  # fmt: skip
    carla = Contact.objects.get(external_id="CRM-3")
    assert (carla.email, carla.phone, carla.stage) == ("carla@exemple.fr", "06 07 08 09 10", "lead")
    dora.refresh_from_db()
    assert dora.external_id == "CRM-5"
    for untouched in (eve, other, gina):
        assert Contact.objects.get(pk=untouched.pk).external_id == untouched.external_id
    assert not Contact.objects.filter(email="fred@exemple.fr").exists()
    hugo.refresh_from_db()
    assert (hugo.email, hugo.first_name, hugo.stage) == ("hugo@exemple.fr", "Hugo", "lead")
    assert hugo.stage_changes.get().cause == StageChange.Cause.IMPORT
    assert Contact.objects.count() == 8

    before = list(Contact.objects.order_by("pk").values())
    again = run_import(marketer_client, django_capture_on_commit_callbacks, CRM, "crm.csv")
    assert counts(again) == (0, 0, 6, 4)
    assert list(Contact.objects.order_by("pk").values()) == before


def test_the_mapping_form_accepts_an_external_id_column_instead_of_an_email():
    form = ImportMappingForm(
        {"column_0": "external_id", "column_1": "first_name"}, columns=["A", "B"], mapping=[]
    )
    assert form.is_valid()
    assert parsing.propose_mapping(["ID externe", "External ID"]) == ["external_id", ""]


@pytest.mark.parametrize(
    "email",
    [
        "helene@exemple.fr", "Hélène@exemple.fr", "zoe@société.fr", "a@xn--socit-esab.fr",
        "x@localhost", "x@[127.0.0.1]", "x@[::1]", "x@[999.1.1.1]", '"dupont fils"@exemple.fr',
        "a..b@exemple.fr", ".a@exemple.fr", "a b@exemple.fr", "a@@exemple.fr", "a@exemple",
        "a@-exemple.fr", "a@exemple.f", "a@exemple.fr.", "a@" + "x" * 64 + ".fr",
        "a" * 310 + "@exemple.fr", "o'neil+news@exemple.fr", "pas-un-email",
    ],
)  # fmt: skip
def test_the_import_accepts_exactly_the_emails_django_accepts(email):
    def accepted(validator):
        try:
            validator(email)
        except ValidationError:
            return False
        return True

    assert accepted(parsing.validate_email) == accepted(validate_email)


@pytest.mark.django_db
def test_new_leads_get_the_stage_change_event_every_lead_has_and_it_is_handled(
    marketer_client, django_capture_on_commit_callbacks
):
    job = run_import(marketer_client, django_capture_on_commit_callbacks, SALON)

    assert counts(job) == (3, 2, 0, 2)
    changes = StageChange.objects.order_by("pk")
    assert len(changes) == 3
    for change in changes:
        event = Event.objects.get(idempotency_key=f"stage_change:{change.pk}")
        expected = change.event_fields()
        assert (event.contact_id, event.type, event.occurred_at, event.source) == (
            change.contact_id, expected["type"], expected["occurred_at"], expected["source"],
        )  # fmt: skip
        assert event.properties == expected["properties"]
    # Handed to the event workers after commit, as every stage change is: handled, dequeued.
    assert not PendingEvent.objects.exists()
    assert StageStay.objects.count() == 3


@pytest.mark.django_db
def test_a_contact_created_while_a_batch_was_read_is_merged_into_not_duplicated(
    marketer_client, django_capture_on_commit_callbacks, monkeypatch
):
    marie = ContactFactory(email="marie@exemple.fr", first_name="Marie", company="")
    read = known_contacts
    reads = []

    def first_read_misses_her(emails, external_ids):
        reads.append(emails)
        return ({}, {}) if len(reads) == 1 else read(emails, external_ids)

    monkeypatch.setattr("contacts.imports.writes.known_contacts", first_read_misses_her)
    content = b"Email,Soci\xc3\xa9t\xc3\xa9\nMARIE@exemple.fr,Nouvelle SA\nnew@exemple.fr,Neuve\n"

    job = run_import(marketer_client, django_capture_on_commit_callbacks, content)

    # The unique email refused the batch's insert; the batch was read again and merged.
    assert len(reads) == 2
    assert counts(job) == (1, 1, 0, 0)
    marie.refresh_from_db()
    assert marie.company == "Nouvelle SA"
    assert Contact.objects.filter(email__iexact="marie@exemple.fr").count() == 1
    assert Contact.objects.count() == 2
