"""The email digest, through a real SMTP server: what was not read yet, in the user's language,
at 08:00 their time (or hourly), never twice, retried when SMTP is down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from contacts.digest import next_digest_at
from contacts.models import Contact, Notification, SalesRep
from contacts.notifications import notify
from contacts.tasks import send_digests_task
from leadfunnel.models import Profile
from tests.factories import ContactFactory
from tests.utils import free_port

pytestmark = pytest.mark.django_db

Kind = Notification.Kind
# Sunday 6 December 2026, 14:00 UTC: 09:00 in Montréal, 15:00 in Paris.
NOON = datetime(2026, 12, 6, 14, 0, tzinfo=UTC)


@pytest.fixture
def smtp(settings, django_smtp_sink):
    settings.SITE_URL = "https://leads.exemple.fr"
    return django_smtp_sink


def body(received) -> str:
    return received.message.get_body(("plain",)).get_content()


def test_a_daily_digest_goes_at_eight_in_the_reps_time_zone_once(smtp, sales_rep):
    SalesRep.objects.create(user=sales_rep, time_zone="America/Montreal")
    lead = ContactFactory(first_name="Zoé", last_name="Lœwy", stage=Contact.Stage.SQL,
                          owner=sales_rep)  # fmt: skip
    with time_machine.travel(NOON, tick=False) as clock:
        notify(user_ids=[sales_rep.pk], kind=Kind.HARD_BOUNCE, contact_id=lead.pk,
               params={"email": "zoe@exemple.fr", "detail": "boîte pleine"})  # fmt: skip
        read = notify(user_ids=[sales_rep.pk], kind=Kind.NEW_SQL, params={"count": 4})[0]
        Notification.objects.filter(pk=read.pk).update(read_at=NOON)  # seen in the app
        assert send_digests_task.delay().get() == 0
        due = SalesRep.objects.get(pk=sales_rep.pk).digest_due_at
        assert due == datetime(2026, 12, 7, 13, 0, tzinfo=UTC)  # 08:00 in Montréal

        clock.move_to(due - timedelta(minutes=1))
        assert send_digests_task.delay().get() == 0 and smtp.received == []
        clock.move_to(due)
        assert send_digests_task.delay().get() == 1
        clock.shift(timedelta(minutes=5))
        assert send_digests_task.delay().get() == 0  # never twice

    [mail] = smtp.received
    assert mail.recipients == [sales_rep.email]
    assert mail.message["Subject"] == "LeadFunnel\u00a0: 1 nouvelle notification"
    text = body(mail)
    assert "Bonjour Hugo Bernard," in text
    assert "L’email à Zoé Lœwy est revenu en échec" in text and "(boîte pleine)" in text
    assert f"https://leads.exemple.fr/queue/leads/{lead.pk}/" in text
    assert "4 nouveaux SQL" not in text  # read in the app: not emailed
    assert "https://leads.exemple.fr/notifications/settings/" in text
    assert Notification.objects.get(kind=Kind.HARD_BOUNCE).emailed_at is not None
    assert SalesRep.objects.get(pk=sales_rep.pk).digest_due_at is None  # nothing waits


def test_the_digest_is_in_the_users_language(smtp, sales_rep):
    Profile.objects.create(user=sales_rep, language="en")
    with time_machine.travel(NOON, tick=False) as clock:
        notify(user_ids=[sales_rep.pk], kind=Kind.NEW_SQL, params={"count": 3})
        notify(user_ids=[sales_rep.pk], kind=Kind.NO_NEXT_STEP, params={"hours": 48},
               contact_id=ContactFactory(first_name="Œdipe", last_name="Éluard").pk)  # fmt: skip
        send_digests_task.delay()
        clock.move_to(datetime(2026, 12, 7, 7, 0, tzinfo=UTC))  # 08:00 in Paris
        assert send_digests_task.delay().get() == 1
    [mail] = smtp.received
    assert mail.message["Subject"] == "LeadFunnel: 2 new notifications"
    text = body(mail)
    assert "3 new SQLs arrived in the queue." in text
    assert "Œdipe Éluard has had no next step for 48 hours." in text


def test_smtp_down_keeps_the_digest_due_and_the_next_sweep_sends_it(smtp, sales_rep, settings):
    SalesRep.objects.create(user=sales_rep, email_digest=SalesRep.Digest.HOURLY)
    with time_machine.travel(NOON, tick=False) as clock:
        notify(user_ids=[sales_rep.pk], kind=Kind.NEW_SQL, params={"count": 2})
        send_digests_task.delay()
        assert SalesRep.objects.get(pk=sales_rep.pk).digest_due_at == NOON + timedelta(hours=1)

        clock.move_to(NOON + timedelta(hours=1))
        working_port, settings.EMAIL_PORT = settings.EMAIL_PORT, free_port()  # nobody there
        assert send_digests_task.delay().get() == 0
        assert SalesRep.objects.get(pk=sales_rep.pk).digest_due_at == NOON + timedelta(hours=1)
        assert Notification.objects.get().emailed_at is None

        clock.shift(timedelta(minutes=5))
        settings.EMAIL_PORT = working_port
        assert send_digests_task.delay().get() == 1
        assert send_digests_task.delay().get() == 0
    assert len(smtp.received) == 1
    assert Notification.objects.get().emailed_at is not None


def test_no_digest_when_off_or_nothing_to_say(smtp, sales_rep, other_rep):
    SalesRep.objects.create(user=sales_rep, email_digest=SalesRep.Digest.OFF)
    with time_machine.travel(NOON, tick=False) as clock:
        notify(user_ids=[sales_rep.pk], kind=Kind.NEW_SQL)
        note = notify(user_ids=[other_rep.pk], kind=Kind.NEW_SQL)[0]
        send_digests_task.delay()
        assert SalesRep.objects.get(pk=sales_rep.pk).digest_due_at is None
        Notification.objects.filter(pk=note.pk).update(read_at=timezone.now())  # read it
        clock.move_to(NOON + timedelta(days=1))
        assert send_digests_task.delay().get() == 0
    assert smtp.received == []
    assert SalesRep.objects.get(pk=other_rep.pk).digest_due_at is None


def test_a_rep_deactivated_after_the_digest_was_scheduled_gets_none(smtp, sales_rep):
    with time_machine.travel(NOON, tick=False) as clock:
        notify(user_ids=[sales_rep.pk], kind=Kind.NEW_SQL)
        send_digests_task.delay()  # scheduled for tomorrow 08:00
        assert SalesRep.objects.get(pk=sales_rep.pk).digest_due_at is not None
        sales_rep.is_active = False
        sales_rep.save(update_fields=["is_active"])
        clock.move_to(NOON + timedelta(days=1))
        assert send_digests_task.delay().get() == 0
    assert smtp.received == []


@pytest.mark.parametrize(
    ("zone", "after", "due"),
    [
        ("Europe/Paris", "2026-12-06T06:59:00+00:00", "2026-12-06T07:00:00+00:00"),
        ("Europe/Paris", "2026-12-06T07:00:00+00:00", "2026-12-07T07:00:00+00:00"),
        ("Europe/Paris", "2026-03-28T12:00:00+00:00", "2026-03-29T06:00:00+00:00"),  # DST
        ("Asia/Tokyo", "2026-12-06T14:00:00+00:00", "2026-12-06T23:00:00+00:00"),
        ("", "2026-12-06T14:00:00+00:00", "2026-12-07T07:00:00+00:00"),  # the site's
    ],
)
def test_daily_digest_time(zone, after, due, settings):
    settings.TIME_ZONE = "Europe/Paris"
    at = next_digest_at(frequency="daily", time_zone=zone, after=datetime.fromisoformat(after))
    assert at == datetime.fromisoformat(due)
