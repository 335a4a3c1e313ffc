"""Preview equals save: on the demo data, what the rule preview announces is what the rescore
that saving queues does, move for move, and the sales queue grows by the new SQLs it names."""

import io
from collections import Counter

import pytest
from django.core.management import call_command

from contacts.models import Contact, StageChange
from scoring import rescore
from scoring.models import ScoreRule
from scoring.preview import rescore_preview, rules_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("demo", stdout=io.StringIO(), contacts=300, events=6000)


def raise_download(rule):
    rule.points = 3  # the testers' change: Download from +1 to +3


def lower_pricing(rule):
    rule.points, rule.max_points, rule.cap_period = 5, None, ""


def deactivate(rule):
    rule.active = False


def email_clicks_count_more(rule):
    rule.points, rule.max_points, rule.cap_period = 40, None, ""


CHANGES = [
    ("Download", raise_download),
    ("Pricing page", lower_pricing),
    ("Demo request", deactivate),
    ("Email clicked", email_clicks_count_more),
    ("Download", deactivate),
]


def saved_and_rescored(rule: ScoreRule) -> tuple[rescore.Rescore, Counter]:
    before = set(StageChange.objects.values_list("pk", flat=True))
    rule.save()
    run = rescore.rescore_start(reason="test")
    rescore.rescore_run(rescore_id=run.pk)
    run.refresh_from_db()
    assert run.status == "done", run.error
    made = StageChange.objects.exclude(pk__in=before)
    return run, Counter(made.values_list("from_stage", "to_stage"))


def test_the_preview_of_each_rule_change_is_what_saving_it_does(demo):
    for name, change in CHANGES:
        rule = ScoreRule.objects.get(name=name)
        change(rule)
        queue_before = Contact.objects.sql_queue().count()

        preview = rescore_preview(rules=rules_with(rule.to_engine()))
        run, moves = saved_and_rescored(rule)

        assert run.contacts_changed == preview.contacts_changed, name
        assert run.stage_moves == preview.stage_changes == moves.total(), name
        assert {(a, b): n for a, b, n in preview.moves} == dict(moves), name
        queue_after = Contact.objects.sql_queue().count()
        assert queue_after == queue_before + preview.new_sqls - preview.sqls_leaving, name


def test_a_new_rule_is_previewed_as_it_will_be_saved(demo):
    rule = ScoreRule(name="Newsletter readers", event_type="email_open", points=12)
    queue_before = Contact.objects.sql_queue().count()

    preview = rescore_preview(rules=rules_with(rule.to_engine()))
    run, moves = saved_and_rescored(rule)

    assert preview.new_sqls > 0  # the demo's openers are numerous: the queue notices
    assert (run.contacts_changed, run.stage_moves) == (
        preview.contacts_changed,
        preview.stage_changes,
    )
    assert {(a, b): n for a, b, n in preview.moves} == dict(moves)
    assert Contact.objects.sql_queue().count() == (
        queue_before + preview.new_sqls - preview.sqls_leaving
    )
