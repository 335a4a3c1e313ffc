"""A contact's time zone: set by the form, the admin, the API and the import; used by send
windows that say "the contact's time zone"."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse

from contacts.intake.capture import api_key_create
from contacts.models import Contact, ImportJob
from nurturing import scheduler
from nurturing.enrolment import enrollments_start
from nurturing.models import Enrollment, Step
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with
from tests.test_csv_import import counts, run_import

pytestmark = pytest.mark.django_db


def test_the_contact_form_takes_a_time_zone_in_any_case_and_refuses_an_unknown_one(
    marketer_client,
):
    contact = ContactFactory(email="ines@exemple.fr")
    url = reverse("contact-edit", args=[contact.pk])
    fields = {"email": "ines@exemple.fr", "first_name": "Inès"}

    refused = marketer_client.post(url, {**fields, "time_zone": "Mars/Olympus_Mons"})
    assert refused.status_code == 200
    assert "Mars/Olympus_Mons" in refused.content.decode()
    contact.refresh_from_db()
    assert contact.time_zone == ""

    marketer_client.post(url, {**fields, "time_zone": "america/montreal"})
    contact.refresh_from_db()
    assert contact.time_zone == "America/Montreal"


def test_the_admin_sets_a_time_zone(admin_client):
    contact = ContactFactory()
    page = admin_client.get(reverse("admin:contacts_contact_change", args=[contact.pk]))
    assert 'name="time_zone"' in page.content.decode()


def test_the_api_upsert_sets_a_time_zone_and_a_wrong_one_is_a_400(client):
    key = api_key_create(name="CRM")[1]

    def post(contacts):  # type: ignore[no-untyped-def]
        return client.post(
            "/api/v1/contacts", data=json.dumps({"contacts": contacts}),
            content_type="application/json", headers={"Authorization": f"Bearer {key}"},
        )  # fmt: skip

    wrong = post([{"email": "noa@exemple.fr", "time_zone": "Europe/Lutece"}])
    assert wrong.status_code == 400
    assert wrong.json()["detail"][0]["loc"][-1] == "time_zone"
    assert not Contact.objects.exists()

    ok = post([{"email": "noa@exemple.fr", "time_zone": "asia/tokyo"}])
    assert ok.status_code == 200, ok.content
    assert ok.json()["contacts"][0]["time_zone"] == "Asia/Tokyo"
    assert Contact.objects.get().time_zone == "Asia/Tokyo"
    assert post([{"email": "noa@exemple.fr", "time_zone": ""}]).status_code == 200
    assert Contact.objects.get().time_zone == ""


def test_the_import_maps_a_fuseau_horaire_column_and_refuses_an_unknown_zone(
    marketer_client, django_capture_on_commit_callbacks
):
    content = (
        b"Courriel;Fuseau horaire\n"
        b"lea@exemple.fr;America/Montreal\n"
        b"tom@exemple.fr;Lune/Tranquillite\n"
        b"sam@exemple.fr;\n"
    )
    job = run_import(marketer_client, django_capture_on_commit_callbacks, content)

    assert job.mapping == ["email", "time_zone"]
    assert counts(job) == (2, 0, 0, 1)
    assert Contact.objects.get(email="lea@exemple.fr").time_zone == "America/Montreal"
    assert Contact.objects.get(email="sam@exemple.fr").time_zone == ""
    [error] = ImportJob.objects.get().row_errors.all()
    assert "Lune/Tranquillite" in error.message


def window_sequence(zone: str):  # type: ignore[no-untyped-def]
    # Weekdays, 9:00 to 12:00, then an email.
    return sequence_with(
        {"kind": "wait", "window_weekdays": "0,1,2,3,4", "window_start_hour": 9,
         "window_end_hour": 12, "window_time_zone": zone},
        email_step(),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("zone", "contact_zone", "opens_at"),
    [
        # Monday 2 March 2026, 10:00 in Paris = 04:00 in Montreal: Montreal's window opens at
        # 9:00 local (14:00 UTC), Paris's is open already.
        ("contact", "America/Montreal", datetime(2026, 3, 2, 14, 0, tzinfo=UTC)),
        ("site", "America/Montreal", None),
        ("contact", "", None),  # no time zone: the site's
    ],
)
def test_a_send_window_in_the_contacts_time_zone_waits_for_its_local_hours(
    settings, zone, contact_zone, opens_at
):
    settings.TIME_ZONE = "Europe/Paris"
    now = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("Europe/Paris"))
    contact = ContactFactory(time_zone=contact_zone)
    sequence = window_sequence(zone)
    with time_machine.travel(now, tick=False):
        enrollments_start(sequence=sequence, contact_ids=[contact.pk])
        scheduler.enrollments_advance()
    enrolment = Enrollment.objects.get()
    if opens_at is None:  # inside the window: on to the email at once
        assert enrolment.messages.count() == 1
        return
    assert enrolment.messages.count() == 0
    assert enrolment.next_run_at == opens_at
    assert enrolment.step.kind == Step.Kind.WAIT

    with time_machine.travel(opens_at, tick=False):
        scheduler.enrollments_advance()
    assert enrolment.messages.count() == 1


def test_a_friday_evening_in_montreal_waits_for_its_monday_across_the_dst_change(settings):
    settings.TIME_ZONE = "Europe/Paris"
    # Friday 6 March 2026, 18:00 in Montreal (23:00 UTC); Montreal moves to summer time on
    # Sunday 8 March, Paris only on 29 March: Monday 9:00 in Montreal is 13:00 UTC.
    contact = ContactFactory(time_zone="America/Montreal")
    sequence = window_sequence("contact")
    with time_machine.travel(datetime(2026, 3, 6, 23, 0, tzinfo=UTC), tick=False):
        enrollments_start(sequence=sequence, contact_ids=[contact.pk])
        scheduler.enrollments_advance()
    assert Enrollment.objects.get().next_run_at == datetime(2026, 3, 9, 13, 0, tzinfo=UTC)
