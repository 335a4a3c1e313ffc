"""Rules, decay and thresholds are edited in admin; bad definitions are refused, nothing saved."""

import pytest
from django.urls import reverse

from scoring.models import ScoreRule, Threshold

pytestmark = pytest.mark.django_db

RULE = {"name": "Webinar", "event_type": "form_submit", "points": "8", "priority": "100",
        "active": "on", "cap_period": ""}  # fmt: skip


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def add_rule(admin_client, **changes):
    return admin_client.post(reverse("admin:scoring_scorerule_add"), {**RULE, **changes})


def test_a_valid_rule_is_saved(admin_client):
    response = add_rule(admin_client, form="webinar-2026")
    assert response.status_code == 302
    assert ScoreRule.objects.get(name="Webinar").form == "webinar-2026"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"url_pattern": "/pricing/(pro"}, "url_pattern"),
        ({"points": "2.5"}, "points"),
        ({"points": "beaucoup"}, "points"),
        ({"points": "0"}, "points"),
        ({"event_type": "telepathy"}, "event_type"),
        ({"max_points": "10"}, "cap_period"),
        ({"max_points": "10", "cap_period": "day", "max_times": "2"}, "max_times"),
        (
            {
                "starts_at_0": "2026-05-02",
                "starts_at_1": "10:00",
                "ends_at_0": "2026-05-01",
                "ends_at_1": "10:00",
            },
            "ends_at",
        ),
    ],
)
def test_a_bad_rule_is_refused_with_a_message_and_nothing_saved(admin_client, changes, field):
    before = ScoreRule.objects.count()
    response = add_rule(admin_client, **changes)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field]
    assert ScoreRule.objects.count() == before


def test_a_threshold_that_puts_mql_above_sql_is_refused(admin_client):
    mql = Threshold.objects.get(stage="mql")
    url = reverse("admin:scoring_threshold_change", args=[mql.pk])
    response = admin_client.post(url, {"stage": "mql", "min_score": "75", "exit_below": "10",
                                       "demote": "on", "active": "on"})  # fmt: skip
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["min_score"]
    assert "75" in errors[0] and "60" in errors[0]
    mql.refresh_from_db()
    assert mql.min_score == 20


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"stage": "ambassador", "event_types": "referral,telepathy"}, "event_types"),
        ({"stage": "sql", "min_score": "60", "demote": "on", "exit_below": "10"}, "demote"),
        ({"stage": "hmql", "demote": "on"}, "min_score"),
    ],
)
def test_bad_thresholds_are_refused(admin_client, data, field):
    threshold = Threshold.objects.get(stage=data["stage"])
    url = reverse("admin:scoring_threshold_change", args=[threshold.pk])
    response = admin_client.post(url, {"active": "on", **data})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field]


def test_the_preview_shows_the_effect_of_an_unsaved_change(admin_client):
    from contacts.pipeline import events_process
    from tests.factories import ContactFactory, EventFactory

    lead = ContactFactory(stage="lead", first_name="Océane", last_name="Petit")
    events_process(event_ids=[EventFactory(contact=lead, type="download", pending=True).pk])
    download = ScoreRule.objects.get(name="Download")
    data = {"name": "Download", "event_type": "download", "points": "25", "priority": "10",
            "active": "on", "cap_period": "", "_rule_id": download.pk}  # fmt: skip

    response = admin_client.post(reverse("admin:scoring_scorerule_preview"), data)

    body = response.content.decode()
    assert response.status_code == 200
    preview = response.context["preview"]
    assert (preview.contacts_changed, preview.gained, preview.stage_changes) == (1, 1, 1)
    assert "Océane Petit" in body and "MQL" in body
    download.refresh_from_db()
    assert download.points == 1  # nothing saved


def test_a_bad_change_gets_no_preview_but_its_errors(admin_client):
    response = admin_client.post(
        reverse("admin:scoring_scorerule_preview"), {**RULE, "url_pattern": "(unclosed"}
    )
    assert response.status_code == 200
    assert response.context["preview"] is None
    assert "url_pattern" in response.content.decode()


def test_saving_a_rule_rescores_everyone_and_shows_progress(
    admin_client, django_capture_on_commit_callbacks
):
    from contacts.pipeline import events_process
    from scoring.models import Rescore
    from tests.factories import ContactFactory, EventFactory

    lead = ContactFactory(stage="lead")
    events_process(event_ids=[EventFactory(contact=lead, type="download", pending=True).pk])
    download = ScoreRule.objects.get(name="Download")
    url = reverse("admin:scoring_scorerule_change", args=[download.pk])

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, {**RULE, "name": "Download", "event_type": "download",
                                           "points": "25"}, follow=True)  # fmt: skip

    run = Rescore.objects.get()
    assert run.status == "done" and run.contacts_changed == 1 and run.stage_moves == 1
    lead.refresh_from_db()
    assert (lead.score, lead.stage) == (25, "mql")
    progress = reverse("admin:scoring_rescore_progress", args=[run.pk])
    assert progress in response.content.decode()
    page = admin_client.get(progress)
    assert page.status_code == 200 and 'data-status="done"' in page.content.decode()
    fragment = admin_client.get(progress, headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in fragment and "100 %" in fragment


def leads_who_downloaded(n):
    from contacts.pipeline import events_process
    from tests.factories import ContactFactory, EventFactory

    leads = ContactFactory.create_batch(n, stage="lead")
    events_process(
        event_ids=[EventFactory(contact=c, type="download", pending=True).pk for c in leads]
    )
    return leads


DOWNLOAD_65 = {"name": "Download", "event_type": "download", "points": "65", "priority": "10",
               "active": "on", "cap_period": ""}  # fmt: skip


def test_the_preview_says_how_many_new_sqls_reach_the_sales_queue(admin_client):
    leads_who_downloaded(3)
    download = ScoreRule.objects.get(name="Download")

    response = admin_client.post(
        reverse("admin:scoring_scorerule_preview"), {**DOWNLOAD_65, "_rule_id": download.pk}
    )

    body = response.content.decode()
    assert "3 nouveaux SQL arriveraient dans la file commerciale." in body
    assert 'data-move="lead-sql">Lead → SQL\u00a0: 3<' in body


def test_a_change_sending_too_many_new_sqls_asks_for_confirmation_first(
    admin_client, settings, django_capture_on_commit_callbacks
):
    from contacts.models import Contact
    from scoring.models import Rescore

    settings.SCORING_CONFIRM_NEW_SQLS = 2
    leads_who_downloaded(3)
    download = ScoreRule.objects.get(name="Download")
    url = reverse("admin:scoring_scorerule_change", args=[download.pk])

    response = admin_client.post(url, DOWNLOAD_65)

    assert response.status_code == 200  # the form again, nothing saved, nobody rescored
    body = response.content.decode()
    assert "enverrait 3\u00a0contacts dans la file commerciale" in body or (
        "enverrait 3 contacts dans la file commerciale" in body
    )
    assert 'name="confirm_new_sqls"' in body
    assert ScoreRule.objects.get(pk=download.pk).points == 1
    assert not Rescore.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, {**DOWNLOAD_65, "confirm_new_sqls": "on"})

    assert response.status_code == 302
    assert ScoreRule.objects.get(pk=download.pk).points == 65
    assert Contact.objects.sql_queue().count() == 3


def test_a_threshold_change_is_confirmed_the_same_way(admin_client, settings):
    settings.SCORING_CONFIRM_NEW_SQLS = 0
    leads_who_downloaded(1)
    sql = Threshold.objects.get(stage="sql")
    data = {"stage": "sql", "min_score": "1", "event_types": "demo_request", "content_tag": "",
            "active": "on"}  # fmt: skip

    response = admin_client.post(reverse("admin:scoring_threshold_change", args=[sql.pk]), data)

    assert response.status_code == 200 and 'name="confirm_new_sqls"' in response.content.decode()
    assert Threshold.objects.get(pk=sql.pk).min_score == 60
