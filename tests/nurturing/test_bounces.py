"""Recording bounces and complaints (nurturing.bounces): what a contact, its messages and its
timeline show afterwards, whatever source reported them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from contacts.models import Contact, Event
from nurturing import enrolment, scheduler
from nurturing.bounces import Kind, Report, record_reports
from nurturing.models import Bounce, Enrollment, Message
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with, wait_step

pytestmark = pytest.mark.django_db


def sent_message(contact, *steps):
    """The first email of a sequence, as sent to ``contact`` (its enrolment goes on)."""
    sequence = sequence_with(*(steps or (email_step(),)))
    enrolment.enrollments_start(sequence=sequence, contact_ids=[contact.pk])
    scheduler.enrollments_advance()
    message = Message.objects.get(contact=contact)
    Message.objects.filter(pk=message.pk).update(status="sent", sent_at=timezone.now())
    message.refresh_from_db()
    return message


def record(*reports, capture):
    with capture(execute=True):
        return record_reports(reports)


def test_a_hard_bounce_refuses_the_address_at_once_and_the_next_email_says_why(
    django_capture_on_commit_callbacks,
):
    contact = ContactFactory(email="parti@example.fr")
    message = sent_message(contact, email_step(), wait_step(days=2), email_step("Suite"))

    result = record(
        Report(kind=Kind.HARD, message_id=message.pk, status="5.1.1",
               diagnostic="550 5.1.1 User unknown", source="mailbox", reference="dsn-1"),
        capture=django_capture_on_commit_callbacks,
    )  # fmt: skip

    assert (result.recorded, result.duplicates, result.unmatched) == (1, 0, [])
    contact.refresh_from_db()
    assert contact.email_status == Contact.EmailStatus.HARD_BOUNCE
    assert "User unknown" in contact.email_status_detail
    message.refresh_from_db()
    assert message.status == "bounced" and "5.1.1" in message.delivery_note
    event = Event.objects.get(contact=contact, type="email_bounced")
    assert event.properties["kind"] == "hard" and event.properties["status"] == "5.1.1"

    later = timezone.now() + timedelta(days=3)
    scheduler.enrollments_advance(as_of=later)
    following = Message.objects.get(contact=contact, subject="Suite")
    assert following.status == "suppressed" and following.error == "hard bounce"
    assert following.error_label == "L’adresse est en échec (échec définitif)"


def test_the_same_report_twice_counts_once(django_capture_on_commit_callbacks):
    contact = ContactFactory()
    message = sent_message(contact)
    report = Report(kind=Kind.SOFT, message_id=message.pk, status="4.2.2",
                    source="esp:brevo", reference="evt-9")  # fmt: skip

    first = record(report, report, capture=django_capture_on_commit_callbacks)
    again = record(report, capture=django_capture_on_commit_callbacks)

    assert (first.recorded, first.duplicates) == (1, 1)
    assert (again.recorded, again.duplicates) == (0, 1)
    assert Bounce.objects.count() == 1
    assert Event.objects.filter(contact=contact, type="email_bounced").count() == 1


def test_a_report_matching_nothing_is_handed_back(django_capture_on_commit_callbacks):
    nobody = Report(kind=Kind.HARD, email="inconnu@example.fr", source="mailbox", reference="x")

    result = record(nobody, capture=django_capture_on_commit_callbacks)

    assert result.unmatched == [nobody] and result.recorded == 0
    assert not Bounce.objects.exists()


def test_a_report_by_address_finds_the_contact_and_its_latest_email(
    django_capture_on_commit_callbacks,
):
    contact = ContactFactory(email="Marie@Example.fr")
    message = sent_message(contact)

    record(Report(kind=Kind.COMPLAINT, email="marie@example.FR", source="esp:ses"),
           capture=django_capture_on_commit_callbacks)  # fmt: skip

    bounce = Bounce.objects.get()
    assert (bounce.contact_id, bounce.message_id) == (contact.pk, message.pk)
    message.refresh_from_db()
    assert message.status == "complained"


def test_a_complaint_ends_every_enrolment_and_refuses_the_address(
    django_capture_on_commit_callbacks,
):
    contact = ContactFactory()
    message = sent_message(contact, email_step(), wait_step(days=2), email_step("Suite"))
    other = sequence_with(wait_step(days=1), email_step("Autre"))
    enrolment.enrollments_start(sequence=other, contact_ids=[contact.pk])

    record(Report(kind=Kind.COMPLAINT, message_id=message.pk, source="mailbox",
                  reference="arf-1"), capture=django_capture_on_commit_callbacks)  # fmt: skip

    contact.refresh_from_db()
    assert contact.email_status == Contact.EmailStatus.COMPLAINT
    enrolments = Enrollment.objects.filter(contact=contact)
    assert {(e.status, e.end_reason) for e in enrolments} == {("exited", "spam complaint")}
    assert Event.objects.filter(contact=contact, type="email_complaint").count() == 1


def soft(contact, days_ago, n):
    return Report(kind=Kind.SOFT, email=contact.email, status="4.2.2",
                  diagnostic="452 4.2.2 Mailbox full", source="mailbox", reference=f"soft-{n}",
                  occurred_at=timezone.now() - timedelta(days=days_ago))  # fmt: skip


def test_five_soft_bounces_within_the_window_refuse_the_address_four_do_not(
    django_capture_on_commit_callbacks, settings
):
    settings.NURTURING_SOFT_BOUNCE_LIMIT, settings.NURTURING_SOFT_BOUNCE_DAYS = 5, 30
    contact = ContactFactory()
    sent_message(contact)

    record(*(soft(contact, days, n) for n, days in enumerate([40, 35, 20, 10, 5, 1])),
           capture=django_capture_on_commit_callbacks)  # fmt: skip
    contact.refresh_from_db()
    assert contact.email_status == ""  # four in the last 30 days; the two older do not count

    record(soft(contact, 0, 99), capture=django_capture_on_commit_callbacks)
    contact.refresh_from_db()
    assert contact.email_status == Contact.EmailStatus.SOFT_BOUNCES
    assert Event.objects.filter(contact=contact, type="email_bounced").count() == 7


def test_soft_bounces_before_a_person_cleared_the_address_count_no_more(
    django_capture_on_commit_callbacks, marketer
):
    from contacts.email_status import contact_email_status_clear

    contact = ContactFactory()
    sent_message(contact)
    record(*(soft(contact, 1, n) for n in range(5)), capture=django_capture_on_commit_callbacks)
    contact.refresh_from_db()
    assert contact_email_status_clear(contact=contact, actor=marketer)

    record(soft(contact, 0, 10), capture=django_capture_on_commit_callbacks)

    contact.refresh_from_db()
    assert contact.email_status == ""
    assert contact.audits.get().action == "email_cleared"


def test_a_deferral_is_noted_on_the_message_only(django_capture_on_commit_callbacks):
    contact = ContactFactory()
    message = sent_message(contact)

    record(Report(kind=Kind.DEFERRED, message_id=message.pk, status="4.4.1",
                  diagnostic="Connection timed out", source="esp:postmark"),
           capture=django_capture_on_commit_callbacks)  # fmt: skip

    message.refresh_from_db()
    assert message.status == "sent"
    assert message.delivery_note_text == "Différé\u00a0: 4.4.1 Connection timed out"
    contact.refresh_from_db()
    assert contact.email_status == ""
    assert not Event.objects.filter(contact=contact, type="email_bounced").exists()


def test_an_email_service_unsubscribe_is_our_own_unsubscribe(django_capture_on_commit_callbacks):
    contact = ContactFactory()
    message = sent_message(contact, email_step(), wait_step(days=2), email_step("Suite"))

    record(Report(kind=Kind.UNSUBSCRIBED, message_id=message.pk, source="esp:brevo",
                  reference="u-1"), capture=django_capture_on_commit_callbacks)  # fmt: skip

    contact.refresh_from_db()
    assert contact.do_not_email
    assert Enrollment.objects.get(contact=contact).status == "unsubscribed"
    assert Event.objects.filter(contact=contact, type="newsletter_unsubscribe").count() == 1


def test_a_bounce_of_an_old_address_leaves_the_new_one_alone(django_capture_on_commit_callbacks):
    from contacts.services import contact_update

    contact = ContactFactory(email="ancien@example.fr")
    message = sent_message(contact)
    contact_update(contact=contact, email="nouveau@example.fr")

    record(Report(kind=Kind.HARD, message_id=message.pk, status="5.1.1", source="mailbox"),
           capture=django_capture_on_commit_callbacks)  # fmt: skip

    contact.refresh_from_db()
    assert contact.email_status == ""
    message.refresh_from_db()
    assert message.status == "bounced"  # the message did bounce


def test_a_new_email_address_clears_the_bounce(django_capture_on_commit_callbacks):
    from contacts.services import contact_update

    contact = ContactFactory()
    message = sent_message(contact)
    record(Report(kind=Kind.HARD, message_id=message.pk, source="mailbox"),
           capture=django_capture_on_commit_callbacks)  # fmt: skip
    contact.refresh_from_db()
    assert contact.email_status == Contact.EmailStatus.HARD_BOUNCE

    contact_update(contact=contact, email="corrige@example.fr")

    contact.refresh_from_db()
    assert contact.email_status == "" and contact.email_status_detail == ""


def test_an_unknown_kind_is_refused_before_anything_is_stored():
    with pytest.raises(ValueError, match="unknown report kinds"):
        record_reports([Report(kind="hard"), Report(kind="bounced")])
    assert not Bounce.objects.exists()


def test_a_hard_bounce_tells_the_contacts_owner_by_email(
    django_capture_on_commit_callbacks, smtp, sales_rep
):
    from nurturing import sending

    sales_rep.email = "commercial@boutique.example.fr"
    sales_rep.save()
    contact = ContactFactory(first_name="Paul", last_name="Martin", owner=sales_rep)
    message = sent_message(contact)

    for _ in range(2):  # a second hard bounce tells no one again
        record(Report(kind=Kind.HARD, email=contact.email, status="5.1.1",
                      diagnostic="User unknown", source="mailbox"),
               capture=django_capture_on_commit_callbacks)  # fmt: skip
    assert sending.messages_send() == 1

    [received] = smtp.received
    assert received.recipients == ["commercial@boutique.example.fr"]
    mail = received.message
    assert "Paul Martin" in mail["Subject"]
    text = mail.get_body(("plain",)).get_content()
    assert "changé d’entreprise" in text and "5.1.1 User unknown" in text
    note = Message.objects.get(internal=True)
    assert note.enrollment_id == message.enrollment_id and note.status == "sent"


def test_the_shipped_score_rules_take_points_for_a_bounce_and_a_complaint(
    django_capture_on_commit_callbacks,
):
    import importlib

    from django.apps import apps

    shipped = importlib.import_module("scoring.migrations.0014_better_defaults")
    shipped.install_better_defaults(apps, None)
    bounced, complained, full = ContactFactory(), ContactFactory(), ContactFactory()
    first, second, third = sent_message(bounced), sent_message(complained), sent_message(full)

    record(Report(kind=Kind.HARD, message_id=first.pk, source="mailbox"),
           Report(kind=Kind.COMPLAINT, message_id=second.pk, source="mailbox"),
           Report(kind=Kind.SOFT, message_id=third.pk, source="mailbox", status="4.2.2"),
           capture=django_capture_on_commit_callbacks)  # fmt: skip

    bounced.refresh_from_db(), complained.refresh_from_db(), full.refresh_from_db()
    assert bounced.score < 0 and complained.score < bounced.score
    assert full.score == 0  # a full mailbox says nothing of the person's interest


def test_an_untouched_shipped_bounce_rule_is_brought_to_hard_bounces_only():
    import importlib

    from django.apps import apps

    from scoring.models import ScoreRule

    as_shipped = ScoreRule.objects.create(
        name="Email bounced", event_type="email_bounced", points=-15, max_times=1
    )
    edited = ScoreRule.objects.create(
        name="Email bounced (ours)", event_type="email_bounced", points=-20, max_times=1
    )

    migration = importlib.import_module("scoring.migrations.0016_bounce_rule_hard_only")
    migration.hard_bounces_only(apps, None)

    as_shipped.refresh_from_db(), edited.refresh_from_db()
    assert (as_shipped.property_name, as_shipped.property_value) == ("kind", "hard")
    assert edited.property_name == ""


def test_a_report_about_an_email_in_doubt_settles_it(django_capture_on_commit_callbacks):
    bounced, deferred = ContactFactory(), ContactFactory()
    first, second = sent_message(bounced), sent_message(deferred)
    handed_over = timezone.now() - timedelta(minutes=5)
    Message.objects.filter(pk__in=[first.pk, second.pk]).update(
        status="in_doubt", sent_at=None, handed_over_at=handed_over
    )

    record(Report(kind=Kind.HARD, message_id=first.pk, source="mailbox"),
           Report(kind=Kind.DEFERRED, message_id=second.pk, source="esp:ses"),
           capture=django_capture_on_commit_callbacks)  # fmt: skip

    first.refresh_from_db(), second.refresh_from_db()
    assert (first.status, second.status) == ("bounced", "sent")
    assert first.sent_at == second.sent_at == handed_over
