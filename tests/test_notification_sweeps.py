"""The beat sweeps that tell the sales team about the queue: new SQLs (one notice per rep on
duty, however many arrive) and SQLs about to breach the SLA (once per lead)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone, translation

from contacts.models import Contact, Notification, SalesRep
from contacts.notification_text import render
from contacts.tasks import notify_new_sqls_task, notify_sla_warnings_task
from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.django_db

Kind = Notification.Kind


@pytest.fixture
def team(sales_rep, other_rep, admin_user):
    """Hugo on duty (no SalesRep row), Léa off duty, a manager, a marketer; staff are not
    told unless they sell."""
    SalesRep.objects.create(user=other_rep, on_duty=False)
    manager = UserFactory(username="manon", roles=["sales_manager"])
    UserFactory(username="claire", roles=["marketing"])
    return {"hugo": sales_rep, "lea": other_rep, "manon": manager, "admin": admin_user}


def arrive(count: int, *, at=None) -> None:
    at = at or timezone.now()
    Contact.objects.bulk_create(
        Contact(email=f"sql{n}-{at.timestamp()}@exemple.fr", stage=Contact.Stage.SQL,
                stage_entered_at=at)
        for n in range(count)
    )  # fmt: skip


@pytest.fixture
def clock():
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        yield traveller


def later(clock) -> None:
    """A sweep a minute later (it reads up to NEW_SQL_COMMIT_GRACE ago)."""
    clock.shift(timedelta(minutes=1))


def told(user, kind=Kind.NEW_SQL):
    return list(Notification.objects.filter(user=user, kind=kind))


def test_ten_thousand_new_sqls_make_one_notice_per_rep_on_duty(team, clock):
    notify_new_sqls_task.delay()  # the first sweep sets its mark
    later(clock)
    arrive(10_000)
    later(clock)

    started = time.perf_counter()
    assert notify_new_sqls_task.delay().get() == 10_000
    elapsed = time.perf_counter() - started

    hugo, manon = told(team["hugo"]), told(team["manon"])
    assert len(hugo) == 1 and len(manon) == 1
    assert told(team["lea"]) == [] and told(team["admin"]) == []  # off duty; staff
    assert Notification.objects.count() == 2
    with translation.override("fr"):
        assert render(hugo[0], reader=team["hugo"]).text == (
            "10000 nouveaux SQL sont arrivés dans la file."
        )
    print(f"\nnew-SQL sweep over 10,000 SQLs: {elapsed * 1000:.0f} ms")
    assert elapsed < 5, elapsed


def test_more_sqls_count_up_the_unread_notice_and_a_read_one_is_not_reused(team, clock):
    hugo = team["hugo"]
    notify_new_sqls_task.delay()
    later(clock)
    arrive(3)
    later(clock)
    notify_new_sqls_task.delay()
    arrive(2)
    clock.shift(timedelta(seconds=10))
    notify_new_sqls_task.delay()  # too recent: maybe not committed everywhere yet
    assert told(hugo)[0].params["count"] == 3
    later(clock)
    notify_new_sqls_task.delay()
    later(clock)
    notify_new_sqls_task.delay()  # nothing new: nothing changes

    [notice] = told(hugo)
    assert notice.params["count"] == 5 and notice.read_at is None

    Notification.objects.filter(pk=notice.pk).update(read_at=timezone.now())
    lead = ContactFactory(first_name="Inès", last_name="Girard", stage=Contact.Stage.SQL)
    later(clock)
    notify_new_sqls_task.delay()
    fresh = Notification.objects.get(user=hugo, read_at=None)
    assert fresh.contact_id == lead.pk
    with translation.override("en"):
        assert render(fresh, reader=hugo).text == "Inès Girard is a new SQL in the queue."


def test_a_claimed_or_released_sql_is_not_news(team, sales_rep, clock):
    notify_new_sqls_task.delay()
    later(clock)
    ContactFactory(stage=Contact.Stage.SQL, owner=sales_rep)  # claimed at once
    ContactFactory(stage=Contact.Stage.SQL, stage_entered_at=timezone.now() - timedelta(days=2))
    later(clock)
    notify_new_sqls_task.delay()
    assert Notification.objects.count() == 0


def test_the_sla_warning_comes_once_per_lead_before_the_breach(team, settings):
    settings.SLA_HOURS, settings.SLA_WARNING_HOURS = 4, 1
    start = timezone.now().replace(microsecond=0)
    with time_machine.travel(start, tick=False) as clock:
        notify_sla_warnings_task.delay()
        lead = ContactFactory(first_name="Théo", last_name="Lefèvre", stage=Contact.Stage.SQL)
        claimed = ContactFactory(stage=Contact.Stage.SQL, owner=team["hugo"])

        clock.shift(timedelta(hours=2, minutes=59))
        notify_sla_warnings_task.delay()
        assert Notification.objects.filter(kind=Kind.SLA_WARNING).count() == 0  # not yet

        clock.shift(timedelta(minutes=2))  # 3 h 01 in the queue: breached within the hour
        assert notify_sla_warnings_task.delay().get() == 1
        for minutes in (1, 30, 90):  # later sweeps: warned already (and then breached)
            clock.shift(timedelta(minutes=minutes))
            notify_sla_warnings_task.delay()

    warned = Notification.objects.filter(kind=Kind.SLA_WARNING)
    assert sorted(n.user.username for n in warned) == ["hugo", "manon"]  # Léa is off duty
    assert {n.contact_id for n in warned} == {lead.pk} and claimed.pk not in {lead.pk}
    with translation.override("fr"):
        text = render(warned[0], reader=team["hugo"]).text
    assert text.startswith("Théo Lefèvre attend dans la file\u00a0: le SLA est dépassé")
    assert "moins de 1 heure" in text


def test_a_burst_of_leads_reaching_the_warning_is_one_notice_each(team, settings):
    settings.SLA_HOURS, settings.SLA_WARNING_HOURS = 4, 1
    with time_machine.travel(timezone.now(), tick=False) as clock:
        notify_sla_warnings_task.delay()
        arrive(200)  # an import
        clock.shift(timedelta(hours=3, minutes=1))
        assert notify_sla_warnings_task.delay().get() == 200
    [notice] = Notification.objects.filter(user=team["hugo"], kind=Kind.SLA_WARNING)
    with translation.override("en"):
        assert render(notice, reader=team["hugo"]).text == (
            "200 SQLs waiting in the queue breach the SLA in less than 1 hour if nobody "
            "claims them."
        )
    assert Notification.objects.filter(kind=Kind.SLA_WARNING).count() == 2
