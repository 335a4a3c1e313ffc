"""Enrolling, advancing, goals, caps: the scheduler's behaviour on a real database."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from contacts.models import Contact, Event, StageChange
from contacts.stages import stage_move
from nurturing import enrolment, scheduler, sending, triggers
from nurturing.models import Enrollment, Message, Sequence
from scoring.models import ScoreEntry
from tests.factories import ContactFactory, UserFactory
from tests.nurturing.helpers import email_step, sequence_with, wait_step
from tests.utils import record

pytestmark = pytest.mark.django_db


def tick(capture):
    with capture(execute=True):
        scheduler.enrollments_advance()


def test_an_email_step_writes_the_rendered_message_and_the_wait_sets_the_next_run(
    django_capture_on_commit_callbacks, mailoutbox
):
    sequence = sequence_with(email_step(), wait_step(days=2), email_step(subject="Encore"))
    contact = ContactFactory(first_name="Hélène")
    with time_machine.travel("2026-03-02 09:00Z", tick=False) as traveller:
        enrollment = enrolment.enrollment_start(sequence=sequence, contact=contact)
        tick(django_capture_on_commit_callbacks)

        enrollment.refresh_from_db()
        message = Message.objects.get()
        assert message.subject == "Bonjour Hélène"
        assert message.to == contact.email
        assert "https://shop.example.fr/po" in message.links[0]
        assert enrollment.next_run_at == timezone.now() + timedelta(days=2)
        assert [m.subject for m in mailoutbox] == ["Bonjour Hélène"]  # sent after commit

        traveller.shift(timedelta(days=1))
        tick(django_capture_on_commit_callbacks)
        assert Message.objects.count() == 1  # still waiting

        traveller.shift(timedelta(days=1))
        tick(django_capture_on_commit_callbacks)
        enrollment.refresh_from_db()
        assert Message.objects.count() == 2
        assert enrollment.status == Enrollment.Status.COMPLETED
        assert [line["kind"] for line in enrollment.history] == ["email", "wait", "email"]


@pytest.mark.parametrize(
    ("reentry", "after_days", "again"),
    [
        ("once", 400, False),
        ("cooldown", 10, False),
        ("cooldown", 31, True),
        ("not_while_active", 0, True),
    ],
)
def test_the_reentry_policy_decides_whether_a_contact_may_enter_again(reentry, after_days, again):
    sequence = sequence_with(email_step(), reentry=reentry, cooldown_days=30)
    contact = ContactFactory()
    first = enrolment.enrollment_start(sequence=sequence, contact=contact)
    assert enrolment.enrollment_start(sequence=sequence, contact=contact) is None  # while active
    enrolment.enrollments_end(
        enrollments=Enrollment.objects.filter(pk=first.pk), status="completed"
    )

    later = timezone.now() + timedelta(days=after_days, minutes=1)
    second = enrolment.enrollment_start(sequence=sequence, contact=contact, as_of=later)
    assert (second is not None) is again
    assert Enrollment.objects.filter(contact=contact).count() == (2 if again else 1)


def test_anonymous_contacts_and_inactive_sequences_enrol_nobody():
    sequence = sequence_with(email_step())
    assert (
        enrolment.enrollment_start(sequence=sequence, contact=ContactFactory(anonymous=True))
        is None
    )
    sequence.active = False
    sequence.save()
    assert enrolment.enrollment_start(sequence=sequence, contact=ContactFactory()) is None
    assert not Enrollment.objects.exists()


def test_a_goal_event_ends_the_enrolment_at_once_even_mid_wait_as_a_conversion(
    django_capture_on_commit_callbacks,
):
    sequence = sequence_with(
        wait_step(hours=1),
        email_step(),
        wait_step(days=3),
        email_step(subject="Rappel"),
        goal_event_type="purchase",
    )
    contact = ContactFactory()
    enrollment = enrolment.enrollment_start(sequence=sequence, contact=contact)
    with time_machine.travel(timezone.now() + timedelta(hours=2), tick=False):
        tick(django_capture_on_commit_callbacks)
    assert Message.objects.count() == 1

    record(contact, "purchase", capture=django_capture_on_commit_callbacks, product_tag="pan")

    enrollment.refresh_from_db()
    assert enrollment.status == Enrollment.Status.GOAL_REACHED
    assert enrollment.next_run_at is None
    with time_machine.travel(timezone.now() + timedelta(days=5), tick=False):
        tick(django_capture_on_commit_callbacks)
    assert Message.objects.count() == 1  # the reminder never went


def test_a_goal_event_from_before_the_enrolment_does_not_count(django_capture_on_commit_callbacks):
    sequence = sequence_with(wait_step(days=1), goal_event_type="purchase")
    contact = ContactFactory()
    old = Event.objects.create(
        contact=contact, type="purchase", occurred_at=timezone.now() - timedelta(days=1)
    )
    enrollment = enrolment.enrollment_start(sequence=sequence, contact=contact)
    triggers.events_apply(events=Event.objects.filter(pk=old.pk).rows())
    enrollment.refresh_from_db()
    assert enrollment.status == Enrollment.Status.ACTIVE


def test_a_deleted_contact_ends_its_enrolment_quietly(django_capture_on_commit_callbacks):
    sequence = sequence_with(wait_step(hours=1), email_step())
    contact = ContactFactory()
    enrollment = enrolment.enrollment_start(sequence=sequence, contact=contact)
    contact.delete()
    with time_machine.travel(timezone.now() + timedelta(hours=2), tick=False):
        tick(django_capture_on_commit_callbacks)
    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.end_reason) == ("exited", "contact deleted")
    assert not Message.objects.exists()


def test_score_and_stage_steps_go_through_the_ledger_and_the_stage_service(
    django_capture_on_commit_callbacks,
):
    sequence = sequence_with(
        {"kind": "score", "points": -10, "name": "Pas de réponse"},
        {"kind": "stage", "stage": "mql", "name": "Qualifié"},
        name="Relance",
    )
    contact = ContactFactory(score=15)
    ScoreEntry.objects.create(contact=contact, points=15, reason="earlier", at=timezone.now())
    enrolment.enrollment_start(sequence=sequence, contact=contact)
    tick(django_capture_on_commit_callbacks)

    contact.refresh_from_db()
    line = ScoreEntry.objects.get(points=-10)
    assert "Relance" in line.reason and line.rule_id is None and line.event_id is None
    assert contact.score == 5
    change = StageChange.objects.get(contact=contact, to_stage="mql")
    assert "Relance" in change.actor_name


def test_a_refused_stage_move_is_skipped_and_the_sequence_goes_on(
    django_capture_on_commit_callbacks,
):
    sequence = sequence_with({"kind": "stage", "stage": "mql"}, email_step())
    contact = ContactFactory(stage=Contact.Stage.CLIENT)
    enrolment.enrollment_start(sequence=sequence, contact=contact)
    tick(django_capture_on_commit_callbacks)
    contact.refresh_from_db()
    assert contact.stage == "client"
    assert Message.objects.count() == 1


def test_notify_owner_mails_the_owner_and_not_the_contact(
    django_capture_on_commit_callbacks, mailoutbox
):
    owner = UserFactory(email="hugo@example.fr")
    sequence = sequence_with({"kind": "notify_owner", "name": "Appeler"})
    contact = ContactFactory(owner=owner, first_name="Zoé")
    enrolment.enrollment_start(sequence=sequence, contact=contact)
    tick(django_capture_on_commit_callbacks)
    message = Message.objects.get()
    assert message.internal and message.to == "hugo@example.fr"
    assert [m.to for m in mailoutbox] == [["hugo@example.fr"]]
    assert "Zoé" in mailoutbox[0].subject
    assert "List-Unsubscribe" not in mailoutbox[0].extra_headers


def test_the_daily_cap_defers_an_email_and_sends_it_later(
    settings, django_capture_on_commit_callbacks
):
    settings.NURTURING_DAILY_EMAIL_CAP = 2
    contact = ContactFactory()
    with time_machine.travel("2026-03-02 08:00Z", tick=False) as traveller:
        for number in range(2):
            sequence = sequence_with(email_step(), name=f"Earlier {number}")
            enrolment.enrollment_start(sequence=sequence, contact=contact)
        tick(django_capture_on_commit_callbacks)
        assert Message.objects.count() == 2

        traveller.shift(timedelta(hours=2))
        third = enrolment.enrollment_start(sequence=sequence_with(email_step()), contact=contact)
        tick(django_capture_on_commit_callbacks)
        third.refresh_from_db()
        assert Message.objects.count() == 2
        assert third.status == "active"
        assert third.next_run_at == timezone.now() + timedelta(hours=22)

        traveller.shift(timedelta(hours=22))
        tick(django_capture_on_commit_callbacks)
        assert Message.objects.filter(enrollment=third).count() == 1


def test_a_split_sends_each_enrolment_down_one_branch_and_remembers_it(
    django_capture_on_commit_callbacks,
):
    sequence = sequence_with(
        {"kind": "split", "split_percent": 50, "yes": 2, "no": 4},
        email_step(subject="A"),
        {"kind": "exit"},
        email_step(subject="B"),
    )
    contacts = ContactFactory.create_batch(40)
    enrolment.enrollments_start(sequence=sequence, contact_ids=[c.pk for c in contacts])
    tick(django_capture_on_commit_callbacks)
    for enrollment in Enrollment.objects.all():
        subjects = list(enrollment.messages.values_list("subject", flat=True))
        assert subjects == [enrollment.branch]
    assert set(Enrollment.objects.values_list("branch", flat=True)) == {"A", "B"}


def test_entering_a_stage_starts_the_sequences_it_triggers(django_capture_on_commit_callbacks):
    sequence = sequence_with(email_step(), trigger="stage_entered", trigger_stage="mql")
    contact = ContactFactory(stage="lead")
    with django_capture_on_commit_callbacks(execute=True):
        stage_move(contact=contact, to="mql", cause="user")
    enrollment = Enrollment.objects.get(sequence=sequence)
    assert enrollment.contact == contact
    assert enrollment.source == "trigger"


def test_an_event_count_trigger_waits_for_enough_tagged_events_within_its_days(
    django_capture_on_commit_callbacks,
):
    sequence = sequence_with(
        email_step(),
        trigger="event",
        trigger_event_type="page_view",
        trigger_tag="tv",
        trigger_count=3,
        trigger_within_days=30,
    )
    contact = ContactFactory()
    capture = django_capture_on_commit_callbacks
    Event.objects.create(
        contact=contact,
        type="page_view",
        properties={"content_tag": "tv"},
        occurred_at=timezone.now() - timedelta(days=40),
    )
    record(contact, "page_view", capture=capture, content_tag="tv")
    record(contact, "page_view", capture=capture, content_tag="radio")
    assert not Enrollment.objects.exists()
    record(contact, "page_view", capture=capture, content_tag="tv")
    assert not Enrollment.objects.exists()  # two within 30 days
    record(contact, "page_view", capture=capture, content_tag="tv")
    assert Enrollment.objects.filter(sequence=sequence, contact=contact).count() == 1
    record(contact, "page_view", capture=capture, content_tag="tv")
    assert Enrollment.objects.filter(sequence=sequence, contact=contact).count() == 1


def test_a_segment_enrols_the_contacts_the_contact_list_filters_select():
    sequence = sequence_with(
        email_step(), trigger="segment", segment_query="stage=mql&score_min=20"
    )
    wanted = ContactFactory(stage="mql", score=25)
    ContactFactory(stage="mql", score=5)
    ContactFactory(stage="lead", score=50)
    assert enrolment.segment_enroll(sequence=sequence) == 1
    assert list(Enrollment.objects.values_list("contact", flat=True)) == [wanted.pk]
    assert enrolment.segment_enroll(sequence=sequence) == 0  # already in


def test_do_not_email_contacts_are_never_sent_marketing_email(
    django_capture_on_commit_callbacks, mailoutbox
):
    sequence = sequence_with(email_step())
    contact = ContactFactory(do_not_email=True)
    withdrawn = ContactFactory(consent=Contact.Consent.WITHDRAWN)
    enrolment.enrollments_start(sequence=sequence, contact_ids=[contact.pk, withdrawn.pk])
    tick(django_capture_on_commit_callbacks)
    assert set(Message.objects.values_list("status", flat=True)) == {"suppressed"}
    assert mailoutbox == []


def test_consent_is_checked_again_at_send_time(django_capture_on_commit_callbacks, mailoutbox):
    sequence = sequence_with(email_step())
    contact = ContactFactory()
    enrolment.enrollment_start(sequence=sequence, contact=contact)
    with django_capture_on_commit_callbacks(execute=False):
        scheduler.enrollments_advance()  # queued, its send task not run yet
    Contact.objects.filter(pk=contact.pk).update(do_not_email=True)
    assert sending.messages_send() == 0
    assert Message.objects.get().status == "suppressed"
    assert mailoutbox == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_schedulers_ticking_at_once_never_run_a_step_twice():
    sequence = sequence_with(email_step(), wait_step(days=1), email_step(subject="Deux"))
    first = sequence.steps.get(position=1)
    Enrollment.objects.bulk_create(
        Enrollment(contact=contact, sequence=sequence, step=first, next_run_at=timezone.now())
        for contact in ContactFactory.create_batch(300)
    )
    counts: list[int] = []
    barrier = threading.Barrier(2)

    def tick() -> None:
        barrier.wait()
        try:
            counts.append(scheduler.enrollments_advance(batch_size=25))
        finally:
            connection.close()

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 300
    assert all(counts)  # both really worked
    assert Message.objects.count() == 300
    for enrollment in Enrollment.objects.all():
        assert [line["kind"] for line in enrollment.history] == ["email"]


def test_without_a_daily_cap_every_email_goes(settings, django_capture_on_commit_callbacks):
    settings.NURTURING_DAILY_EMAIL_CAP = 0
    contact = ContactFactory()
    for number in range(5):
        enrolment.enrollment_start(sequence=sequence_with(email_step(), name=f"S{number}"),
                                  contact=contact)  # fmt: skip
    tick(django_capture_on_commit_callbacks)
    assert Message.objects.filter(contact=contact, status="sent").count() == 5


def test_a_segment_sequence_takes_in_newly_matching_contacts_on_the_tick(
    django_capture_on_commit_callbacks,
):
    sequence = sequence_with(email_step(), trigger="segment", segment_query="stage=mql")
    first = ContactFactory(stage="mql")
    with time_machine.travel("2026-03-02 08:00Z", tick=False) as clock:
        assert enrolment.segments_enroll() == 1
        later = ContactFactory(stage="mql")
        assert enrolment.segments_enroll() == 0  # read again only every 15 minutes
        clock.shift(timedelta(minutes=16))
        assert enrolment.segments_enroll() == 1
    assert set(Enrollment.objects.values_list("contact", flat=True)) == {first.pk, later.pk}
    assert Sequence.objects.get(pk=sequence.pk).segment_enrolled_at is not None
