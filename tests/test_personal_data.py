"""Personal data of one contact: export as JSON, erase (anonymise, keep the counts, suppress
the email everywhere a person can be created again), and the optional purge of old prospects."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from contacts.intake.capture import api_key_create
from contacts.models import (
    Consent,
    Contact,
    ContactAudit,
    Form,
    ImportJob,
    ImportRowError,
    Suppression,
    Visitor,
)
from contacts.privacy import (
    ContactSuppressed,
    contact_erase,
    contact_export,
    contacts_purge_inactive,
)
from contacts.services import contact_ids_by_email, contact_upsert
from scoring.models import ScoreEntry
from tests.factories import ContactFactory, EventFactory, StageChangeFactory
from tests.test_api import post as api_post
from tests.test_csv_import import counts, run_import

pytestmark = pytest.mark.django_db

EMAIL = "Helene.Dupre@Exemple.fr"


@pytest.fixture
def person():
    """Hélène, with what a contact accumulates: events, a consent, a visitor id, score lines,
    stage history."""
    contact = ContactFactory(
        email=EMAIL, first_name="Hélène", last_name="Dupré", company="Café Crème",
        phone="+33 6 12 34 56 78", job_title="Gérante", stage=Contact.Stage.MQL, score=25,
    )  # fmt: skip
    page = EventFactory(contact=contact, type="page_view",
                        properties={"url": "https://ex.fr/tarifs?email=helene@exemple.fr"},
                        idempotency_key="signup:helene.dupre@exemple.fr")  # fmt: skip
    EventFactory(contact=contact, type="download", properties={"title": "Livre blanc"})
    Consent.objects.create(contact=contact, wording="J'accepte", wording_version=2,
                           ip="203.0.113.9", page="https://ex.fr/livre-blanc")  # fmt: skip
    Visitor.objects.create(visitor_id="v-123", contact=contact)
    ScoreEntry.objects.create(
        contact=contact, points=25, event=page, reason="Pricing page", at=timezone.now()
    )
    StageChangeFactory(contact=contact, from_stage="lead", to_stage="mql",
                       reason="Appel avec Hélène Dupré")  # fmt: skip
    return contact


def export(client, contact) -> dict:
    response = client.post(reverse("contact-export-json", args=[contact.pk]))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert f"contact-{contact.pk}.json" in response["Content-Disposition"]
    return json.loads(response.content)


def test_the_export_holds_profile_events_consents_score_ledger_and_stage_history(
    marketer_client, marketer, person
):
    data = export(marketer_client, person)

    assert data["profile"]["email"] == EMAIL and data["profile"]["last_name"] == "Dupré"
    assert sorted(e["type"] for e in data["events"]) == ["download", "page_view"]
    assert data["consents"][0]["ip"] == "203.0.113.9"
    assert data["score_entries"][0]["points"] == 25
    assert data["stage_changes"][0]["to_stage"] == "mql"
    assert data["visitors"][0]["visitor_id"] == "v-123"
    [audit] = ContactAudit.objects.filter(contact=person, action=ContactAudit.Action.EXPORTED)
    assert audit.actor == marketer


def test_the_export_is_a_post_for_marketers_only(client, marketer_client, sales_rep, person):
    url = reverse("contact-export-json", args=[person.pk])
    assert marketer_client.get(url).status_code == 405
    client.force_login(sales_rep)
    assert client.post(url).status_code == 403
    assert not ContactAudit.objects.filter(action=ContactAudit.Action.EXPORTED).exists()


def test_the_contact_page_offers_export_and_erase(marketer_client, person):
    body = marketer_client.get(reverse("contact-detail", args=[person.pk])).content.decode()
    assert reverse("contact-export-json", args=[person.pk]) in body
    assert reverse("contact-erase", args=[person.pk]) in body


def test_erasing_anonymises_the_person_and_keeps_the_counts(marketer_client, marketer, person):
    stages_before = Contact.objects.stage_counts()
    confirm = marketer_client.get(reverse("contact-erase", args=[person.pk]))
    assert confirm.status_code == 200 and "Hélène Dupré" in confirm.content.decode()

    response = marketer_client.post(reverse("contact-erase", args=[person.pk]))

    assert response.status_code == 302
    person.refresh_from_db()
    assert person.erased_at is not None and person.email is None
    assert (person.first_name, person.last_name, person.company, person.phone,
            person.job_title) == ("", "", "", "", "")  # fmt: skip
    assert person.do_not_email and person.score == 25 and person.stage == "mql"
    assert Contact.objects.stage_counts() == stages_before
    assert sorted(person.events.values_list("type", flat=True)) == ["download", "page_view"]
    assert all(
        properties == {} for properties in person.events.values_list("properties", flat=True)
    )
    assert not Consent.objects.filter(contact=person).exists()
    assert not Visitor.objects.filter(contact=person).exists()
    assert person.score_entries.count() == 1 and person.stage_changes.count() == 1
    assert Suppression.objects.filter(email_hash=Suppression.hash("helene.dupre@exemple.fr"))
    [audit] = ContactAudit.objects.filter(contact=person, action=ContactAudit.Action.ERASED)
    assert audit.actor == marketer

    # Nothing that names her is left in what we keep about her.
    kept = json.dumps(contact_export(contact=person, actor=marketer), default=str)
    for trace in ("Hélène", "Dupré", "helene", "Café Crème", "203.0.113.9", "v-123", "12 34"):
        assert trace.lower() not in kept.lower(), trace
    page = marketer_client.get(reverse("contact-detail", args=[person.pk])).content.decode()
    assert "Hélène" not in page
    assert person.display_name in page  # "Erased contact #<id>", in the page's language


def test_erasing_twice_is_harmless(marketer, person):
    assert contact_erase(contact=person, actor=marketer)
    assert not contact_erase(contact=person, actor=marketer)
    assert ContactAudit.objects.filter(action=ContactAudit.Action.ERASED).count() == 1


def test_a_marketer_cannot_create_an_erased_person_again(marketer_client, marketer, person):
    contact_erase(contact=person, actor=marketer)

    response = marketer_client.post(reverse("contact-create"), {"email": "HELENE.DUPRE@exemple.fr"})

    assert response.status_code == 200 and response.context["form"].errors["email"]
    assert not Contact.objects.filter(email__iexact=EMAIL).exists()


def test_the_upsert_service_refuses_an_erased_email_whatever_its_case(marketer, person):
    contact_erase(contact=person, actor=marketer)
    with pytest.raises(ContactSuppressed):
        contact_upsert(email="  helene.dupre@EXEMPLE.FR ")
    with pytest.raises(ContactSuppressed):
        contact_ids_by_email([EMAIL], create_missing=True)


def test_a_form_cannot_bring_an_erased_person_back(client, marketer, person):
    form = Form.objects.create(name="Livre blanc")
    contact_erase(contact=person, actor=marketer)

    response = client.post(
        reverse("form-post", args=[form.key]),
        {"email": EMAIL, "consent": "on"},
        headers={"Accept": "application/json"},
    )

    assert response.status_code == 400 and response.json()["errors"]["email"]
    assert not Contact.objects.filter(email__iexact=EMAIL).exists()


def test_the_api_cannot_bring_an_erased_person_back(client, marketer, person):
    key = api_key_create(name="CRM")[1]
    contact_erase(contact=person, actor=marketer)

    contacts = api_post(client, "contacts", {"contacts": [{"email": EMAIL}]}, key)
    events = api_post(
        client, "events", {"events": [{"email": EMAIL.upper(), "type": "page_view"}]}, key
    )

    for response, items in ((contacts, "contacts"), (events, "events")):
        assert response.status_code == 400
        [error] = response.json()["detail"]
        assert error["loc"][-3:] == [items, 0, "email"] and EMAIL.lower() in error["msg"].lower()
    assert not Contact.objects.filter(email__iexact=EMAIL).exists()


def test_a_csv_import_reports_an_erased_person_as_a_refused_row(
    marketer_client, marketer, person, django_capture_on_commit_callbacks, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    contact_erase(contact=person, actor=marketer)
    content = b"email,first_name\nhelene.dupre@exemple.fr,H\nnew@exemple.fr,N\n"

    job = run_import(marketer_client, django_capture_on_commit_callbacks, content, "x.csv")

    assert counts(job) == (1, 0, 0, 1)
    [error] = ImportRowError.objects.filter(job=job)
    assert error.line_number == 2 and "helene.dupre@exemple.fr" in error.message
    assert not Contact.objects.filter(email__iexact=EMAIL).exists()
    assert ImportJob.objects.get(pk=job.pk).rows_done == 2


# --- Purge of inactive prospects -------------------------------------------------------------


@pytest.fixture
def old_contacts():
    long_ago = timezone.now() - timedelta(days=3 * 366)
    return {
        "quiet lead": ContactFactory(stage="lead", created_at=long_ago, last_activity_at=long_ago),
        "never active": ContactFactory(stage="mql", created_at=long_ago, last_activity_at=None),
        "active lead": ContactFactory(
            stage="lead", created_at=long_ago, last_activity_at=timezone.now() - timedelta(days=30)
        ),
        "quiet client": ContactFactory(
            stage="client", created_at=long_ago, last_activity_at=long_ago
        ),
        # A prospect too: never a client (RETENTION_YEARS: every stage before client).
        "quiet sql": ContactFactory(stage="sql", created_at=long_ago, last_activity_at=long_ago),
        "quiet ambassador": ContactFactory(
            stage="ambassador", created_at=long_ago, last_activity_at=long_ago
        ),
        "consented lately": ContactFactory(
            stage="lead",
            created_at=long_ago,
            last_activity_at=long_ago,
            consent="granted",
            consent_at=timezone.now() - timedelta(days=200),
        ),
        "imported lately": ContactFactory(
            stage="lead", created_at=timezone.now() - timedelta(days=20), last_activity_at=long_ago
        ),
    }


def test_the_purge_is_off_by_default(settings, old_contacts):
    assert settings.RETENTION_YEARS == 0
    assert contacts_purge_inactive() == 0
    assert not Contact.objects.filter(erased_at__isnull=False).exists()


def test_the_purge_erases_prospects_inactive_for_the_set_years_only(settings, old_contacts):
    from contacts.tasks import purge_inactive_contacts_task

    settings.RETENTION_YEARS = 2

    assert purge_inactive_contacts_task.delay().get() == 3

    erased = {name for name, c in old_contacts.items() if Contact.objects.get(pk=c.pk).erased_at}
    assert erased == {"quiet lead", "never active", "quiet sql"}
    assert ContactAudit.objects.filter(action=ContactAudit.Action.PURGED).count() == 3
    assert Suppression.objects.count() == 3
    assert contacts_purge_inactive() == 0


def test_the_purge_at_three_years_keeps_prospects_active_within_them(settings):
    """The CNIL's rule: a prospect without activity for 3 years goes (RETENTION_YEARS=3)."""
    now = timezone.now()
    four_years, two_years = now - timedelta(days=4 * 366), now - timedelta(days=2 * 366)
    gone = ContactFactory(stage="mql", created_at=four_years, last_activity_at=four_years)
    kept = ContactFactory(stage="mql", created_at=four_years, last_activity_at=two_years)
    client = ContactFactory(stage="client", created_at=four_years, last_activity_at=four_years)
    settings.RETENTION_YEARS = 3

    assert contacts_purge_inactive(now=now) == 1

    assert Contact.objects.get(pk=gone.pk).erased_at is not None
    assert Contact.objects.get(pk=gone.pk).email is None
    assert Contact.objects.get(pk=kept.pk).erased_at is None
    assert Contact.objects.get(pk=client.pk).erased_at is None
