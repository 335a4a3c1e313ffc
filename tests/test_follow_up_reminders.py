"""Follow-up reminders: at the due time the rep finds it in the app and in their mailbox (a real
SMTP server), once, whatever the number of sweeps running, and later if the mail server was
down; and the flag on claimed SQLs left without a next step."""

import multiprocessing
import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connections
from django.utils import timezone

from contacts.models import Contact, FollowUp, NextStepFlag, Notification, SalesRep
from contacts.sales.follow_ups import (
    follow_up_complete,
    follow_up_create,
    follow_up_reschedule,
    no_next_step_flag,
    reminders_send,
)
from contacts.tasks import flag_no_next_step_task, send_reminders_task
from leadfunnel.models import Profile
from tests.factories import ContactFactory, UserFactory
from tests.nurturing.helpers import SmtpSink, smtp_server
from tests.utils import free_port

DUE = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)  # 15:00 in Paris, 10:00 in Montreal


@pytest.fixture
def sink(django_smtp_sink):
    return django_smtp_sink


def follow_up(rep, title="Call Anne back", due=DUE, **fields) -> FollowUp:
    with time_machine.travel(due - timedelta(days=1), tick=False):
        return follow_up_create(owner=rep, title=title, due_at=due, **fields)


@pytest.mark.django_db
def test_the_reminder_arrives_in_the_app_and_by_email_at_the_due_time(sink, sales_rep):
    SalesRep.objects.create(user=sales_rep, time_zone="America/Montreal")
    Profile.objects.create(user=sales_rep, language="en")
    anne = ContactFactory(first_name="Anne", last_name="Dupont", owner=sales_rep, stage="sql")
    task = follow_up(sales_rep, contact=anne, note="Ask about the budget")

    assert reminders_send(now=DUE - timedelta(minutes=1)) == 0
    assert sink.received == [] and not Notification.objects.exists()

    assert reminders_send(now=DUE) == 1

    note = Notification.objects.get()
    assert note.user == sales_rep and note.kind == Notification.Kind.FOLLOW_UP_DUE
    assert note.contact == anne and note.emailed_at == DUE
    assert note.params == {"follow_up": task.pk, "title": "Call Anne back",
                           "due_at": DUE.isoformat()}  # fmt: skip
    [received] = sink.received
    message = received.message
    assert received.recipients == [sales_rep.email]
    assert message["Subject"] == "Reminder: Call Anne back"
    text = message.get_content()
    assert "10 a.m." in text  # Montreal time, in English
    assert "Anne Dupont" in text and f"/queue/leads/{anne.pk}/" in text
    assert "Ask about the budget" in text
    task.refresh_from_db()
    assert task.remind_at is None and task.reminded_at == DUE

    assert reminders_send(now=DUE + timedelta(minutes=5)) == 0  # once
    assert len(sink.received) == 1 and Notification.objects.count() == 1


@pytest.mark.django_db
def test_the_email_is_in_french_for_a_rep_without_a_language(sink, sales_rep):
    follow_up(sales_rep, title="Relancer Anne")
    reminders_send(now=DUE)
    message = sink.received[0].message
    assert message["Subject"] == "Rappel\u00a0: Relancer Anne"
    assert "15:00" in message.get_content()  # Paris


@pytest.mark.django_db
def test_a_rep_who_wants_no_email_gets_the_bell_only(sink, sales_rep):
    SalesRep.objects.create(user=sales_rep, email_digest=SalesRep.Digest.OFF)
    task = follow_up(sales_rep)
    assert reminders_send(now=DUE) == 1
    assert sink.received == []
    assert Notification.objects.get().emailed_at is None
    task.refresh_from_db()
    assert task.remind_at is None


@pytest.mark.django_db
def test_a_follow_up_done_or_moved_before_its_time_does_not_remind_then(sink, sales_rep):
    done, moved = follow_up(sales_rep, title="Done early"), follow_up(sales_rep, title="Moved")
    follow_up_complete(follow_up=done, actor=sales_rep)
    follow_up_reschedule(follow_up=moved, due_at=DUE + timedelta(hours=2), actor=sales_rep)

    assert reminders_send(now=DUE + timedelta(minutes=1)) == 0
    assert reminders_send(now=DUE + timedelta(hours=2)) == 1
    assert [r.message["Subject"] for r in sink.received] == ["Rappel\u00a0: Moved"]


@pytest.mark.django_db
def test_a_mail_server_down_loses_no_reminder_and_the_bell_tells_once(settings, sales_rep):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nobody listens
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 2
    task = follow_up(sales_rep)

    assert reminders_send(now=DUE) == 0
    assert reminders_send(now=DUE + timedelta(minutes=1)) == 0

    note = Notification.objects.get()  # in the app at once, and once
    assert note.emailed_at is None
    task.refresh_from_db()
    assert task.remind_at == DUE and task.reminder == note

    sink = SmtpSink()
    controller = smtp_server(sink, port=settings.EMAIL_PORT)  # the server is back
    try:
        assert reminders_send(now=DUE + timedelta(minutes=2)) == 1
    finally:
        controller.stop()
    assert len(sink.received) == 1 and Notification.objects.count() == 1
    note.refresh_from_db()
    assert note.emailed_at == DUE + timedelta(minutes=2)


@pytest.mark.django_db
def test_a_refused_address_does_not_hold_back_the_others(sink, sales_rep, other_rep):
    sink.refuse = {sales_rep.email}
    follow_up(sales_rep, title="Refused"), follow_up(other_rep, title="Delivered")
    assert reminders_send(now=DUE) == 2
    assert [r.recipients for r in sink.received] == [[other_rep.email]]
    assert not FollowUp.objects.filter(remind_at__isnull=False).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_sweeps_running_at_once_never_send_a_reminder_twice(sink):
    reps = [UserFactory(roles=["sales"]) for _ in range(6)]
    for i in range(120):
        follow_up(reps[i % 6], title=f"Task {i}")
    barrier = threading.Barrier(4)
    counts = []

    def sweep() -> None:
        try:
            barrier.wait()
            counts.append(reminders_send(now=DUE, batch=10))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    [thread.start() for thread in threads]
    [thread.join() for thread in threads]

    assert sum(counts) == 120
    subjects = [r.message["Subject"] for r in sink.received]
    assert len(subjects) == 120 and len(set(subjects)) == 120
    assert Notification.objects.count() == 120


def _worker(moment: datetime, queue: multiprocessing.Queue) -> None:
    """A worker process: its own connections, the clock moved, beat's task run as a worker does."""
    connections.close_all()
    with time_machine.travel(moment, tick=False):
        result = send_reminders_task.apply()  # as a worker runs it (eager, in this process)
    # .result, not .get(): a test before may have left Celery believing it runs in a task.
    queue.put(result.result if result.successful() else repr(result.result))
    connections.close_all()


def reminders_sent_by_a_worker_at(moment: datetime) -> object:
    """Run beat's reminder task in a worker process whose clock reads ``moment``; what it
    returned (how many reminders it sent)."""
    connections.close_all()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    worker = context.Process(target=_worker, args=(moment, results))
    worker.start()
    worker.join(60)
    assert worker.exitcode == 0
    return results.get(timeout=5)


@pytest.mark.django_db(transaction=True)
def test_beat_task_in_a_worker_process_with_the_clock_moved_delivers_the_reminder(sink, sales_rep):
    task = follow_up(sales_rep, title="Send the quote", due=timezone.now() + timedelta(days=2))

    assert reminders_sent_by_a_worker_at(task.due_at + timedelta(seconds=30)) == 1
    assert [r.message["Subject"] for r in sink.received] == ["Rappel\u00a0: Send the quote"]
    assert Notification.objects.get(user=sales_rep).kind == Notification.Kind.FOLLOW_UP_DUE


@pytest.mark.django_db
def test_a_claimed_sql_without_a_next_step_is_flagged_once_per_claim(settings, sales_rep):
    settings.FOLLOW_UP_FLAG_HOURS = 24
    now = timezone.now()
    idle = ContactFactory(stage="sql", owner=sales_rep, claimed_at=now - timedelta(hours=25))
    planned = ContactFactory(stage="sql", owner=sales_rep, claimed_at=now - timedelta(hours=25))
    ContactFactory(stage="sql", owner=sales_rep, claimed_at=now - timedelta(hours=2))  # fresh
    ContactFactory(stage="client", owner=sales_rep, claimed_at=now - timedelta(hours=50))
    follow_up_create(
        owner=sales_rep, title="Call", due_at=now + timedelta(hours=1), contact=planned
    )

    assert flag_no_next_step_task.apply().result == 1
    note = Notification.objects.get()
    assert (note.kind, note.contact, note.user) == ("no_next_step", idle, sales_rep)
    assert note.params == {"hours": 24}
    assert no_next_step_flag() == 0  # once per claim

    Contact.objects.filter(pk=idle.pk).update(claimed_at=now - timedelta(hours=30))  # claimed anew
    assert no_next_step_flag() == 1
    assert NextStepFlag.objects.filter(contact=idle).count() == 2
