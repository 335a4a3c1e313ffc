import io
from collections import defaultdict
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db.models import F, Max, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from contacts.models import ALLOWED_TRANSITIONS, Contact, Event, LeadSource, StageChange
from contacts.sales.claims import claims_release_stale
from leadfunnel.management.commands import demo as demo_command

pytestmark = pytest.mark.django_db

Stage = Contact.Stage


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Every load sets four passwords; the real hasher would make these tests three times slower.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def load_demo(**options) -> str:
    out = io.StringIO()
    call_command("demo", stdout=out, **{"contacts": 300, "events": 6000, **options})
    return out.getvalue()


def table_counts() -> dict[str, int]:
    return {
        "contacts": Contact.objects.count(),
        "events": Event.objects.count(),
        "stage changes": StageChange.objects.count(),
        "sources": LeadSource.objects.count(),
        "users": User.objects.count(),
    }


def test_every_stage_of_the_funnel_has_contacts():
    load_demo()

    counts = Contact.objects.stage_counts()
    assert all(counts.values()), counts
    assert sum(counts.values()) == 300
    assert counts[Stage.SUSPECT] > counts[Stage.LEAD] > counts[Stage.MQL] > counts[Stage.SQL]


def test_suspects_are_anonymous_visitors_who_only_browsed():
    load_demo()

    suspects = Contact.objects.filter(stage=Stage.SUSPECT)
    assert not suspects.filter(~Q(email=None) | ~Q(first_name="") | ~Q(last_name="")).exists()
    assert not StageChange.objects.filter(contact__in=suspects).exists()
    assert set(Event.objects.filter(contact__in=suspects).values_list("type", flat=True)) == {
        Event.Type.PAGE_VIEW
    }


def test_known_contacts_have_accented_names_and_unique_lowercase_emails():
    load_demo()

    known = Contact.objects.exclude(stage=Stage.SUSPECT)
    emails = list(known.values_list("email", flat=True))
    assert all(email and email == email.strip().lower() for email in emails)
    assert len(set(emails)) == len(emails)
    names = known.values_list("first_name", "last_name")
    assert any(not f"{first}{last}".isascii() for first, last in names)
    assert not known.filter(Q(company="") | Q(source=None)).exists()


def test_each_known_contact_has_a_continuous_history_ending_in_its_stage():
    load_demo()
    now = timezone.now()
    histories = defaultdict(list)
    for change in StageChange.objects.select_related("contact").order_by("contact", "at", "id"):
        histories[change.contact].append(change)

    assert len(histories) == Contact.objects.exclude(stage=Stage.SUSPECT).count()
    for contact, changes in histories.items():
        previous, previous_at = Stage.SUSPECT, contact.created_at
        for change in changes:
            assert change.from_stage == previous
            assert change.to_stage in ALLOWED_TRANSITIONS[change.from_stage]
            assert previous_at < change.at < now
            previous, previous_at = change.to_stage, change.at
        assert contact.stage == changes[-1].to_stage
        assert contact.stage_entered_at == changes[-1].at


def test_some_contacts_fell_back_down_the_funnel():
    load_demo()

    fell_back = StageChange.objects.filter(from_stage=Stage.MQL, to_stage=Stage.LEAD)
    lost = StageChange.objects.filter(
        from_stage=Stage.SQL, to_stage=Stage.LEAD, outcome=StageChange.Outcome.LOST
    )
    assert fell_back.exists()
    assert lost.exclude(actor=None).exists()


def test_stage_changes_record_who_moved_the_contact():
    load_demo()

    changes = StageChange.objects.all()
    assert not changes.filter(from_stage=Stage.SUSPECT).exclude(cause="system").exists()
    assert not changes.filter(to_stage=Stage.MQL).exclude(cause="threshold").exists()
    won = changes.filter(to_stage=Stage.CLIENT)
    assert set(won.values_list("actor__username", flat=True)) == {"hugo", "lea"}
    assert not won.exclude(cause="user").exists()


def test_events_lie_in_the_last_180_days_and_after_their_contact_appeared():
    load_demo()
    now = timezone.now()

    events = Event.objects.all()
    assert not events.filter(occurred_at__lt=now - timedelta(days=180)).exists()
    assert not events.filter(occurred_at__gt=now).exists()
    assert not events.filter(occurred_at__lt=F("contact__created_at")).exists()


def test_every_stage_changed_event_points_to_its_stage_change():
    load_demo()
    changes = {change.pk: change for change in StageChange.objects.all()}

    events = Event.objects.filter(type=Event.Type.STAGE_CHANGED)
    assert events.count() == len(changes)
    for event in events:
        change = changes[event.properties["stage_change_id"]]
        assert event.idempotency_key == f"stage_change:{change.pk}"
        assert event.contact_id == change.contact_id
        assert event.occurred_at == change.at
        assert (event.properties["from"], event.properties["to"]) == (
            change.from_stage,
            change.to_stage,
        )


def test_events_follow_the_funnel():
    load_demo()

    def stages_with(event_type: str) -> set[str]:
        return set(Event.objects.filter(type=event_type).values_list("contact__stage", flat=True))

    assert stages_with(Event.Type.PURCHASE) == {Stage.CLIENT, Stage.AMBASSADOR}
    assert stages_with(Event.Type.REVIEW) == {Stage.AMBASSADOR}
    assert stages_with(Event.Type.REFERRAL) == {Stage.AMBASSADOR}
    demo_requesters = Contact.objects.filter(events__type=Event.Type.DEMO_REQUEST).distinct()
    reached_sql = Contact.objects.filter(stage_changes__to_stage=Stage.SQL).distinct()
    assert set(demo_requesters) == set(reached_sql)


def test_demo_events_are_already_processed():
    load_demo()

    assert not Event.objects.unprocessed().exists()
    assert not Event.objects.exclude(received_at=F("occurred_at")).exists()
    assert not Event.objects.filter(idempotency_key=None).exists()


def test_last_activity_is_the_latest_thing_the_contact_did():
    load_demo()

    latest = Contact.objects.annotate(
        latest=Max("events__occurred_at", filter=~Q(events__type__in=Event.SYSTEM_TYPES))
    )
    assert not latest.filter(latest=None).exists()
    assert not latest.exclude(last_activity_at=F("latest")).exists()


def test_sales_reps_own_clients_and_some_sqls_wait_in_the_queue():
    load_demo()

    sqls = Contact.objects.filter(stage=Stage.SQL)
    assert Contact.objects.sql_queue().exists()
    claimed = sqls.exclude(owner=None)
    assert set(claimed.values_list("owner__username", flat=True)) <= {"hugo", "lea"}
    assert claimed.exists()
    assert not claimed.filter(Q(claimed_at=None) | Q(claimed_at__lt=F("stage_entered_at"))).exists()
    customers = Contact.objects.filter(stage__in=[Stage.CLIENT, Stage.AMBASSADOR])
    assert not customers.filter(Q(owner=None) | Q(claimed_at=None)).exists()
    assert (
        not Contact.objects.filter(stage__in=[Stage.SUSPECT, Stage.LEAD, Stage.MQL])
        .exclude(owner=None)
        .exists()
    )


def test_the_demo_reps_claims_are_fresh_and_outlive_beats_release_sweeps(settings):
    settings.CLAIM_RELEASE_HOURS = 48
    load_demo()
    now = timezone.now()

    claimed = Contact.objects.filter(stage=Stage.SQL).exclude(owner=None)
    assert claimed.exists()
    assert not claimed.filter(claimed_at__lt=now - timedelta(hours=24)).exists()
    # beat sweeps every 15 minutes from `make run`'s start; a day later nothing has expired yet
    for later in (timedelta(minutes=15), timedelta(hours=20)):
        assert claims_release_stale(now=now + later) == 0


def test_running_it_again_adds_nothing():
    load_demo()
    before = table_counts()

    output = load_demo()

    assert table_counts() == before
    assert "Demo data already loaded" in output
    assert "Demo logins (password: leadfunnel)" in output


@pytest.mark.parametrize(
    ("username", "group"),
    [("claire", "marketing"), ("hugo", "sales"), ("lea", "sales"), ("nadia", "sales_manager")],
)
def test_demo_team_logs_in_with_their_roles(client, username, group):
    load_demo()

    user = User.objects.get(username=username)
    assert list(user.groups.values_list("name", flat=True)) == [group]
    assert client.login(username=username, password="leadfunnel")


def test_demo_admin_logs_in_to_the_admin(client):
    load_demo()

    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    assert client.login(username="admin", password="leadfunnel")
    assert client.get("/admin/").status_code == 200


def test_a_second_run_restores_the_demo_logins(client):
    load_demo()
    hugo = User.objects.get(username="hugo")
    hugo.set_password("changed")
    hugo.groups.clear()
    hugo.save()

    load_demo()

    assert client.login(username="hugo", password="leadfunnel")
    assert hugo.groups.filter(name="sales").exists()


def test_the_same_seed_gives_the_same_funnel():
    def loaded() -> list[tuple]:
        load_demo(seed=7)
        rows = list(Contact.objects.order_by("pk").values_list("email", "stage", "last_name"))
        Contact.objects.all().delete()
        LeadSource.objects.all().delete()
        return rows

    first = loaded()
    assert loaded() == first
    load_demo(seed=8)
    assert list(Contact.objects.order_by("pk").values_list("email", "stage", "last_name")) != first


def test_a_failed_load_leaves_nothing_behind(monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("interrupted")

    # Fails after contacts and stage changes are written, before their events.
    monkeypatch.setattr(demo_command, "stage_change_event", fail)
    with pytest.raises(RuntimeError):
        load_demo()
    assert table_counts()["contacts"] == table_counts()["sources"] == 0
    assert not StageChange.objects.exists()

    monkeypatch.undo()
    load_demo()
    assert Contact.objects.count() == 300


def test_too_few_contacts_is_refused():
    with pytest.raises(CommandError, match="at least"):
        load_demo(contacts=10)


def test_the_default_demo_is_big_enough_to_feel_real():
    out = io.StringIO()
    call_command("demo", stdout=out)

    assert Contact.objects.count() >= 2000
    assert Event.objects.exclude(type=Event.Type.STAGE_CHANGED).count() >= 50_000
    oldest = Event.objects.order_by("occurred_at").first()
    assert oldest.occurred_at < timezone.now() - timedelta(days=170)
    assert "Demo funnel loaded" in out.getvalue()


def test_the_demo_manager_sees_her_teams_leads(client):
    load_demo()

    assert client.login(username="nadia", password="leadfunnel")
    page = client.get(reverse("queue-team")).content.decode()

    claimed = Contact.objects.filter(stage="sql", owner__username__in=["hugo", "lea"])
    assert claimed.exists()
    assert all(escape(contact.display_name) in page for contact in claimed[:5])
    assert "Hugo Bernard" in page or "Léa Dubois" in page
