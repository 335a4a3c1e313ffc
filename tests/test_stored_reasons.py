"""What the application writes for people to read later (why a contact moved, who moved it,
why an email was not sent) is stored as a code and read in each reader's language: a French
marketer and an English one see the same record each in theirs."""

import re

import pytest
from django.urls import reverse

from contacts.models import Contact, StageChange
from contacts.sales.claims import contact_release
from nurturing import enrolment, scheduler
from tests.nurturing.helpers import email_step, sequence_with
from tests.utils import record

pytestmark = pytest.mark.django_db


def in_language(client, language: str, url: str) -> str:
    client.post(reverse("language-set"), {"language": language})
    return client.get(url).content.decode()


def moved_by(body: str) -> list[str]:
    return re.findall(r'<td [^>]*data-testid="moved-by">(.*?)</td>', body)


def test_a_contact_history_reads_in_each_readers_language(
    marketer_client, django_capture_on_commit_callbacks
):
    # Written by a French marketer, then by the worker (thresholds) in the server's French.
    with django_capture_on_commit_callbacks(execute=True):
        response = marketer_client.post(
            reverse("contact-create"), {"email": "hana@exemple.fr", "first_name": "Hana"}
        )
    assert response.status_code == 302
    contact = Contact.objects.get(email="hana@exemple.fr")
    record(contact, "demo_request", capture=django_capture_on_commit_callbacks)
    assert StageChange.objects.filter(contact=contact).count() == 2  # lead, then SQL
    url = reverse("contact-detail", args=[contact.pk])

    french = in_language(marketer_client, "fr", url)
    english = in_language(marketer_client, "en", url)

    assert "Créé avec une adresse e-mail" in french and "Created with" not in french
    assert "Created with an email address" in english and "Créé avec" not in english
    assert "Seuil\xa0: SQL à 60\xa0points ou Démo demandée" in moved_by(french)
    assert "Threshold: SQL at 60 points or Demo requested" in moved_by(english)
    assert "Démo demandée" in french and "Demo requested" in english
    assert ">demo_request<" not in french and ">demo_request<" not in english
    assert "Claire Martin" in moved_by(english)  # a person is named once, not "User · …"
    for body in (french, english):
        assert not any(" · " in cell for cell in moved_by(body))


def test_why_this_stage_reads_in_each_readers_language(
    marketer_client, django_capture_on_commit_callbacks
):
    contact = Contact.objects.create(email="ivo@exemple.fr", stage="lead")
    record(contact, "demo_request", capture=django_capture_on_commit_callbacks)
    url = reverse("score-explanation", args=[contact.pk])

    french = in_language(marketer_client, "fr", url)
    english = in_language(marketer_client, "en", url)

    assert 'data-testid="move-reason">Démo demandée<' in french
    assert 'data-testid="move-reason">Demo requested<' in english
    assert "Threshold: SQL at 60 points or Demo requested" in english
    assert "(demo_request)" not in english and "(demo_request)" not in french


def test_message_errors_and_enrolment_end_reasons_read_in_each_readers_language(
    marketer_client,
):
    contact = Contact.objects.create(email="jo@exemple.fr", stage="lead", do_not_email=True)
    sequence = sequence_with(email_step(), {"kind": "exit"})
    enrolment.enrollments_start(sequence=sequence, contact_ids=[contact.pk])
    scheduler.enrollments_advance()  # the worker, in the server's language
    url = reverse("nurturing-contact-enrollments", args=[contact.pk])

    french = in_language(marketer_client, "fr", url)
    english = in_language(marketer_client, "en", url)

    assert "Ne pas contacter par e-mail" in french and "Do not email" in english
    assert "Do not email" not in french and "Ne pas contacter" not in english


def test_audit_notes_read_in_the_admins_language(admin_client, sales_rep):
    contact = Contact.objects.create(email="kim@exemple.fr", stage="sql", owner=sales_rep)
    contact_release(contact=contact, actor=None)  # an admin action, or beat
    url = reverse("admin:contacts_contactaudit_changelist")

    french = in_language(admin_client, "fr", url)
    english = in_language(admin_client, "en", url)

    assert "Retiré à Hugo Bernard" in french
    assert "Released from Hugo Bernard" in english
    assert "released_from" not in french and "released_from" not in english


def test_stage_changes_written_before_codes_read_in_each_language(marketer_client):
    from importlib import import_module

    from django.apps import apps

    migration = import_module("contacts.migrations.0015_i18n_stage_change_reason_codes")
    contact = Contact.objects.create(email="lea@exemple.fr", stage="sql")
    old = [
        ("suspect", "lead", "import", "", "Importé depuis salon.csv"),
        ("lead", "mql", "threshold", "Seuil MQL: score ≥ 20", "score 25 ≥ 20"),
        ("mql", "sql", "threshold", "Threshold SQL: score ≥ 60 or demo_request", "demo_request"),
        ("sql", "lead", "user", "", "Trop cher pour eux"),  # a person's words
    ]
    for from_stage, to_stage, cause, actor_name, reason in old:
        StageChange.objects.create(
            contact=contact, from_stage=from_stage, to_stage=to_stage, cause=cause,
            actor_name=actor_name, reason=reason,
        )  # fmt: skip

    migration.to_codes(apps, None)

    english = in_language(marketer_client, "en", reverse("contact-detail", args=[contact.pk]))
    assert "Imported from salon.csv" in english
    assert "Threshold: MQL at 20 points" in english and "Score 25 ≥ 20" in english
    assert "Threshold: SQL at 60 points or Demo requested" in english
    assert "Trop cher pour eux" in english
    assert StageChange.objects.get(reason="Trop cher pour eux")  # left as typed


def test_a_sequences_points_and_move_read_in_each_readers_language(
    marketer_client, django_capture_on_commit_callbacks
):
    sequence = sequence_with({"kind": "score", "points": 5}, {"kind": "stage", "stage": "mql"})
    sequence.name = "Relance"
    sequence.save()
    contact = Contact.objects.create(email="max@exemple.fr", stage="lead")
    enrolment.enrollments_start(sequence=sequence, contact_ids=[contact.pk])
    with django_capture_on_commit_callbacks(execute=True):
        scheduler.enrollments_advance()  # unnamed steps: known by their position
    explanation = reverse("score-explanation", args=[contact.pk])

    french = in_language(marketer_client, "fr", explanation)
    english = in_language(marketer_client, "en", explanation)

    assert "Séquence « Relance » : Étape 1" in french.replace("\xa0", " ")
    assert "Sequence “Relance”: Step 1" in english
    assert "rule deleted since" not in english  # points from a step, not from a lost rule
    history = in_language(marketer_client, "en", reverse("contact-detail", args=[contact.pk]))
    assert "Sequence “Relance”" in moved_by(history)
