"""Rules suggested from the team's won and lost contacts, as an admin uses them: start a run,
see it refused when there are too few outcomes, review the rules with their figures, preview
some, add them; the added rules then score every contact exactly as the model ranked them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.urls import reverse

from bench.quality_data import people
from contacts.models import Contact, Event
from contacts.outcomes import outcome_record
from scoring.models import ScoreRule, Suggestion
from scoring.suggest import Events, features
from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def seeded_history(n: int = 400) -> tuple[list[Contact], list]:
    """Generated B2B histories (hidden intent, known outcomes) stored as contacts, events and
    outcomes, all decided after the last event."""
    now = datetime.now(UTC)
    crowd = list(people(n, seed=11, as_of=now - timedelta(days=1)))
    contacts = ContactFactory.create_batch(n, stage="lead")
    Event.objects.bulk_create(
        Event(contact=contact, type=t.type, occurred_at=t.occurred_at, properties=t.properties)
        for contact, person in zip(contacts, crowd, strict=True)
        for t in person.touches
    )
    for contact, person in zip(contacts, crowd, strict=True):
        outcome_record(contact=contact, result="won" if person.converted else "lost",
                       source="import", at=now)  # fmt: skip
    return contacts, crowd


def start(admin_client, django_capture_on_commit_callbacks) -> Suggestion:
    with django_capture_on_commit_callbacks(execute=True):  # the task runs eagerly in tests
        response = admin_client.post(reverse("admin:scoring_suggestion_start"))
    run = Suggestion.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:scoring_suggestion_review", args=[run.pk])
    return run


def test_too_few_outcomes_are_refused_with_how_many_are_needed(
    admin_client, django_capture_on_commit_callbacks
):
    for i, contact in enumerate(ContactFactory.create_batch(10)):
        outcome_record(contact=contact, result="won" if i % 2 else "lost", source="admin")

    run = start(admin_client, django_capture_on_commit_callbacks)

    page = admin_client.get(reverse("admin:scoring_suggestion_review", args=[run.pk]))
    text = page.content.decode()
    assert 'data-status="refused"' in text
    assert "au moins 50 contacts gagnés et 50 perdus" in text  # the admin reads French
    assert "il y en a 5 gagnés et 5 perdus" in text
    assert not ScoreRule.objects.filter(max_times=1, name__icontains="within").exists()


def test_suggested_rules_are_reviewed_previewed_and_added_and_score_as_the_model_ranked(
    admin_client, django_capture_on_commit_callbacks
):
    contacts, _ = seeded_history()
    ScoreRule.objects.update(active=False)  # only the suggested rules will score

    run = start(admin_client, django_capture_on_commit_callbacks)
    run.refresh_from_db()
    assert run.status == "done", run.message
    assert run.won + run.lost == len(contacts) and run.held_out > 0
    assert run.auc_suggested > 0.65 and run.rules

    review = admin_client.get(reverse("admin:scoring_suggestion_review", args=[run.pk]))
    text = review.content.decode()
    assert 'data-figure="auc-suggested"' in text
    assert f"{run.auc_suggested:.3f}".replace(".", ",") in text  # in the admin's French
    assert text.count('name="rule"') == len(run.rules)

    preview = admin_client.post(
        reverse("admin:scoring_suggestion_preview", args=[run.pk]), {"rule": ["0", "1"]}
    )
    assert 'data-figure="changed"' in preview.content.decode()
    assert not ScoreRule.objects.filter(active=True).exists()  # a preview saves nothing

    every = [str(i) for i in range(len(run.rules))]
    with django_capture_on_commit_callbacks(execute=True):
        applied = admin_client.post(
            reverse("admin:scoring_suggestion_apply", args=[run.pk]), {"rule": every}
        )
    assert applied.status_code == 302
    added = list(ScoreRule.objects.filter(active=True))
    assert len(added) == len(run.rules)
    # Once per contact, or each recent event while it is at most D days old.
    recent = [rule for rule in added if rule.fade_full_days is not None]
    assert recent and all(r.fade_zero_days == r.fade_full_days + 1 and r.max_times is None
                          for r in recent)  # fmt: skip
    assert all(rule.max_times == 1 for rule in added if rule not in recent)

    # Every contact's score is the sum of the points of the suggestions it meets.
    rows = Event.objects.values_list("contact_id", "type", "occurred_at", "properties")
    found = features(Events.from_rows(list(rows), [c.pk for c in contacts]))
    expected = np.zeros(len(contacts), dtype=np.int64)
    for entry in run.rules:
        condition = entry["condition"]
        column = next(i for i, c in enumerate(found.conditions) if c.describe() == condition)
        expected += found.matrix[:, column].astype(np.int64) * entry["points"]
    scores = dict(Contact.objects.values_list("pk", "score"))
    assert [scores[c.pk] for c in contacts] == expected.tolist()

    # Applying again adds nothing twice.
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse("admin:scoring_suggestion_apply", args=[run.pk]), {"rule": every})
    assert ScoreRule.objects.filter(active=True).count() == len(added)


def test_a_marketer_without_rule_rights_cannot_start_or_apply(client, marketer):
    client.force_login(marketer)

    response = client.post(reverse("admin:scoring_suggestion_start"))

    assert response.status_code in {302, 403}
    assert not Suggestion.objects.exists()


def test_staff_without_scoring_rights_cannot_read_or_start_suggestions(
    client, django_capture_on_commit_callbacks
):
    run = Suggestion.objects.create(status="done")
    client.force_login(UserFactory(username="support", is_staff=True))

    review = client.get(reverse("admin:scoring_suggestion_review", args=[run.pk]))
    preview = client.post(reverse("admin:scoring_suggestion_preview", args=[run.pk]))
    with django_capture_on_commit_callbacks(execute=True):
        start = client.post(reverse("admin:scoring_suggestion_start"))

    assert (review.status_code, preview.status_code, start.status_code) == (403, 403, 403)
    assert Suggestion.objects.count() == 1


def test_fit_rules_are_suggested_from_contact_fields_and_added_as_fit_rules(
    admin_client, django_capture_on_commit_callbacks
):
    """Directors buy, students and free-mail addresses rarely do; every visit is alike."""
    import random

    from scoring.fit_models import FitRule
    from scoring.suggest_fit import fit_features, outcome_people

    rng = random.Random(5)
    titles = ["Marketing Director", "Sales Director", "Student", "Project Manager", "Analyst"]
    contacts = []
    for n in range(600):
        title, gmail = rng.choice(titles), rng.random() < 0.3
        chance = (0.75 if "Director" in title else 0.1 if title == "Student" else 0.35) * (
            0.4 if gmail else 1
        )
        contact = ContactFactory(
            job_title=title, company_size=rng.choice([5, 40, 300]),
            email=f"p{n}@{'gmail.com' if gmail else f'firm{n % 40}.fr'}",
        )  # fmt: skip
        contact.events.create(type="page_view", properties={"url": "/blog/a"})
        outcome_record(contact=contact, result="won" if rng.random() < chance else "lost",
                       source="import")  # fmt: skip
        contacts.append(contact)

    run = start(admin_client, django_capture_on_commit_callbacks)
    run.refresh_from_db()
    fit = [(i, entry) for i, entry in enumerate(run.rules) if entry["kind"] == "fit"]
    by_value = {entry["condition"].get("value"): entry["points"] for _, entry in fit}
    assert by_value.get("director", 0) > 0 and by_value.get("@gmail.", 0) < 0, by_value
    assert run.auc_fit > 0.7 and run.auc_fit > run.auc_fit_current

    review = admin_client.get(reverse("admin:scoring_suggestion_review", args=[run.pk]))
    text = review.content.decode()
    assert 'id="fit-suggestions"' in text and 'data-figure="auc-fit"' in text
    assert "Fonction contient director" in text  # named in the admin's French

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse("admin:scoring_suggestion_apply", args=[run.pk]),
                          {"rule": [str(i) for i, _ in fit]})  # fmt: skip
    assert FitRule.objects.count() == len(fit)
    assert not ScoreRule.objects.filter(name__contains="contient").exists()

    # Each contact's fit score is the sum of the fit suggestions it meets.
    found = fit_features(outcome_people([c.pk for c in contacts]))
    expected = np.zeros(len(contacts), dtype=np.int64)
    for _, entry in fit:
        column = next(i for i, c in enumerate(found.conditions)
                      if c.describe() == entry["condition"])  # fmt: skip
        expected += found.matrix[:, column].astype(np.int64) * entry["points"]
    fit_scores = dict(Contact.objects.values_list("pk", "fit_score"))
    assert [fit_scores[c.pk] for c in contacts] == expected.tolist()
