"""Marketers' results pages and the enrolments section of a contact's page."""

from __future__ import annotations

import pytest
from django.utils import translation

from nurturing import enrolment, scheduler
from nurturing.models import Enrollment, Message, Step
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def split_run(django_capture_on_commit_callbacks):
    sequence = sequence_with(
        {"kind": "split", "split_percent": 50, "yes": 2, "no": 4},
        email_step(subject="Version A"),
        {"kind": "exit"},
        email_step(subject="Version B"),
        name="Relance été",
    )
    contacts = ContactFactory.create_batch(20)
    enrolment.enrollments_start(sequence=sequence, contact_ids=[c.pk for c in contacts])
    with django_capture_on_commit_callbacks(execute=True):
        scheduler.enrollments_advance()
    first = Message.objects.order_by("pk").first()
    Message.objects.filter(pk=first.pk).update(opened_at=first.sent_at, clicked_at=first.sent_at)
    Enrollment.objects.filter(pk=first.enrollment_id).update(status="goal_reached")
    return sequence, first


def test_the_sequence_list_shows_each_sequences_totals(marketer_client, split_run):
    sequence, _ = split_run
    page = marketer_client.get("/nurturing/sequences/")
    assert page.status_code == 200
    row = page.context["summaries"][0]
    assert (row["enrolled"], row["sent"], row["opened"], row["clicked"], row["goal_reached"]) == (
        20, 20, 1, 1, 1,
    )  # fmt: skip
    assert "Relance été" in page.content.decode()
    fragment = marketer_client.get("/nurturing/sequences/", HTTP_HX_REQUEST="true")
    assert b"<html" not in fragment.content and b"Relance" in fragment.content


def test_the_results_page_counts_per_step_and_per_branch(marketer_client, split_run):
    sequence, first = split_run
    page = marketer_client.get(f"/nurturing/sequences/{sequence.pk}/")
    assert page.status_code == 200
    steps = {row["step"].position: row for row in page.context["steps"]}
    assert steps[2]["sent"] + steps[4]["sent"] == 20
    [split] = page.context["splits"]
    branches = {row["branch"]: row for row in split["branches"]}
    assert set(branches) == {"A", "B"}
    assert branches["A"]["enrolled"] + branches["B"]["enrolled"] == 20
    winner = Enrollment.objects.get(pk=first.enrollment_id).branch
    assert branches[winner]["goal_reached"] == 1 and branches[winner]["clicked"] == 1
    assert page.context["totals"]["goal_reached"] == 1


def test_two_splits_in_a_sequence_each_count_their_own_branches(
    marketer_client, django_capture_on_commit_callbacks
):
    # Split "Objet" (subject line): A → "Objet court" then split "Offre"; B → "Objet long".
    # Split "Offre": A → "Remise 10 %", B → "Livraison offerte".
    sequence = sequence_with(
        {"kind": "split", "split_percent": 50, "yes": 2, "no": 8, "name": "Objet"},
        email_step(subject="Objet court"),
        {"kind": "split", "split_percent": 50, "yes": 4, "no": 6, "name": "Offre"},
        email_step(subject="Remise 10 %"),
        {"kind": "exit"},
        email_step(subject="Livraison offerte"),
        {"kind": "exit"},
        email_step(subject="Objet long"),
    )
    contacts = ContactFactory.create_batch(60)
    enrolment.enrollments_start(sequence=sequence, contact_ids=[c.pk for c in contacts])
    with django_capture_on_commit_callbacks(execute=True):
        scheduler.enrollments_advance()
    Message.objects.update(status="sent")
    remise = Message.objects.filter(subject="Remise 10 %").first()
    Message.objects.filter(pk=remise.pk).update(opened_at=remise.created_at)
    Enrollment.objects.filter(pk=remise.enrollment_id).update(status="goal_reached")

    page = marketer_client.get(f"/nurturing/sequences/{sequence.pk}/")

    splits = {
        split["step"].name: {row["branch"]: row for row in split["branches"]}
        for split in page.context["splits"]
    }
    sent = {
        subject: Message.objects.filter(subject=subject).count()
        for subject in ("Objet court", "Objet long", "Remise 10 %", "Livraison offerte")
    }
    assert all(sent.values()), sent  # 60 contacts: every branch of both splits was taken
    objet, offre = splits["Objet"], splits["Offre"]
    assert objet["A"]["enrolled"] + objet["B"]["enrolled"] == 60
    # Only the enrolments that went down "Objet" A met the second split.
    assert offre["A"]["enrolled"] + offre["B"]["enrolled"] == objet["A"]["enrolled"]
    assert objet["B"]["enrolled"] == sent["Objet long"]
    # Each branch counts the mail of its own path: A of "Objet" its subject line and the
    # offers after it; each branch of "Offre" its own offer only.
    assert (
        objet["A"]["sent"] == sent["Objet court"] + sent["Remise 10 %"] + sent["Livraison offerte"]
    )
    assert objet["B"]["sent"] == sent["Objet long"]
    assert offre["A"]["sent"] == sent["Remise 10 %"]
    assert offre["B"]["sent"] == sent["Livraison offerte"]
    assert (offre["A"]["opened"], offre["A"]["goal_reached"]) == (1, 1)
    assert (offre["B"]["opened"], offre["B"]["goal_reached"]) == (0, 0)
    assert (objet["A"]["goal_reached"], objet["B"]["goal_reached"]) == (1, 0)
    # An enrolment keeps the branch of each split it went through, not only the last.
    for enrollment in Enrollment.objects.all():
        kept = dict(enrollment.split_branches.values_list("step__name", "branch"))
        subjects = set(enrollment.messages.values_list("subject", flat=True))
        assert ("Objet court" in subjects) == (kept["Objet"] == "A")
        assert ("Offre" in kept) == (kept["Objet"] == "A")
        if "Offre" in kept:
            assert ("Remise 10 %" in subjects) == (kept["Offre"] == "A")
    text = page.content.decode()
    assert text.count("data-split=") == 2 and "Objet" in text and "Offre" in text


def test_sales_reps_cannot_see_campaign_results(sales_client, split_run):
    sequence, _ = split_run
    assert sales_client.get(f"/nurturing/sequences/{sequence.pk}/").status_code == 403


def test_a_contact_page_loads_its_enrolments_and_emails(marketer_client, split_run):
    _, first = split_run
    contact = first.contact
    page = marketer_client.get(f"/contacts/{contact.pk}/")
    assert f"/nurturing/contacts/{contact.pk}/enrollments/" in page.content.decode()
    section = marketer_client.get(
        f"/nurturing/contacts/{contact.pk}/enrollments/", HTTP_HX_REQUEST="true"
    )
    text = section.content.decode()
    assert "Relance été" in text and first.subject in text
    assert b"<html" not in section.content


def test_a_marketer_enrols_one_contact_by_hand(marketer_client):
    sequence = sequence_with(email_step(), name="Bienvenue")
    contact = ContactFactory()
    response = marketer_client.post(
        f"/nurturing/contacts/{contact.pk}/enroll/", {"sequence": sequence.pk}
    )
    assert response.status_code == 302
    assert Enrollment.objects.filter(contact=contact, sequence=sequence).count() == 1
    again = marketer_client.post(
        f"/nurturing/contacts/{contact.pk}/enroll/", {"sequence": sequence.pk}, follow=True
    )
    assert Enrollment.objects.filter(contact=contact, sequence=sequence).count() == 1
    assert "Bienvenue" in again.content.decode()


def test_a_marketer_enrols_a_filtered_contact_list(marketer_client):
    sequence = sequence_with(email_step(), name="MQL")
    ContactFactory.create_batch(3, stage="mql")
    ContactFactory.create_batch(2, stage="lead")
    response = marketer_client.post(
        f"/nurturing/sequences/{sequence.pk}/enroll/", {"query": "?stage=mql"}
    )
    assert response.status_code == 302
    assert Enrollment.objects.filter(sequence=sequence).count() == 3


def test_the_contact_list_leads_to_enrolling_the_contacts_it_shows(marketer_client):
    sequence = sequence_with(email_step(), name="Relance MQL")
    ContactFactory.create_batch(3, stage="mql")
    ContactFactory.create_batch(2, stage="lead")
    listing = marketer_client.get("/contacts/", {"stage": "mql"})
    assert "/nurturing/enroll/?stage=mql" in listing.content.decode()

    page = marketer_client.get("/nurturing/enroll/", {"stage": "mql"})
    assert page.context["count"] == 3
    assert "Relance MQL" in page.content.decode()

    response = marketer_client.post(
        "/nurturing/sequences/0/enroll/", {"sequence": sequence.pk, "query": "stage=mql"}
    )
    assert response.status_code == 302
    assert Enrollment.objects.filter(sequence=sequence).count() == 3


def test_stored_reasons_are_shown_in_the_readers_language(marketer_client):
    contact = ContactFactory(do_not_email=True)
    sequence = sequence_with(email_step(), {"kind": "exit"})
    enrolment.enrollments_start(sequence=sequence, contact_ids=[contact.pk])
    scheduler.enrollments_advance()
    message = Message.objects.get()
    enrollment = Enrollment.objects.get()
    assert (message.error, enrollment.end_reason) == ("do not email", "exit step")  # codes

    with translation.override("fr"):
        assert message.error_label == "Ne pas contacter par e-mail"
        assert enrollment.end_reason_label == "Étape « Quitter la séquence »"
        # The exit step and the "exited" status no longer share one French word.
        assert str(Step.Kind.EXIT.label) != str(Enrollment.Status.EXITED.label)
    with translation.override("en"):
        assert message.error_label == "Do not email"
    page = marketer_client.get(
        f"/nurturing/contacts/{contact.pk}/enrollments/", HTTP_ACCEPT_LANGUAGE="en"
    )
    assert page.status_code == 200
    Message.objects.update(error="550 5.1.1 No such user here")
    message.refresh_from_db()
    assert message.error_label == "550 5.1.1 No such user here"  # a server's reply, as it is


def test_messages_in_doubt_are_shown_to_the_marketer_and_sent_again_by_a_person(
    marketer_client, admin_client, split_run
):
    sequence, first = split_run
    Message.objects.filter(pk=first.pk).update(status="in_doubt")

    page = marketer_client.get(f"/nurturing/sequences/{sequence.pk}/")
    assert page.context["totals"]["in_doubt"] == 1
    assert 'data-testid="in-doubt"' in page.content.decode()

    changelist = "/admin/nurturing/message/"
    response = admin_client.post(
        changelist, {"action": "send_again", "_selected_action": [first.pk]}, follow=True
    )
    assert response.status_code == 200
    first.refresh_from_db()
    assert (first.status, first.attempts, first.handed_over_at) == ("queued", 0, None)
