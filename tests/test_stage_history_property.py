"""A contact's stage is a function of the rules and its history, not of the order of edits.

Hypothesis writes histories: touchpoints arriving one by one (scored live), with rule and
threshold edits in between, each followed by the rescore that saving queues. Whatever it
writes, the stages at the end must be those one clean rescore under the final rules and
thresholds gives: the plan of that rescore moves nobody, and running it moves nobody.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from contacts.models import Contact
from contacts.services import contact_update
from scoring import rescore
from scoring.live import active_rules
from scoring.models import FitRule, ScoreRule, Threshold
from scoring.preview import rescore_plan
from tests.factories import ContactFactory
from tests.utils import record

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
CONTACTS = 2
# What a contact may do: (event type, properties). Default rules score most of them; the demo
# request and the high-intent page also qualify for thresholds on their own.
TOUCHPOINTS = [
    ("download", {}),
    ("page_view", {"url": "https://ex.fr/pricing"}),
    ("page_view", {"url": "https://ex.fr/careers"}),
    ("page_view", {"url": "https://ex.fr/blog", "content_tag": "high-intent"}),
    ("newsletter_subscribe", {}),
    ("newsletter_unsubscribe", {}),
    ("email_click", {"url": "https://ex.fr/offre"}),
    ("demo_request", {}),
]
RULES = ["Download", "Pricing page", "Careers page", "Newsletter unsubscribe", "Email clicked"]

touchpoint = st.tuples(
    st.just("event"), st.integers(0, CONTACTS - 1), st.integers(0, len(TOUCHPOINTS) - 1)
)
rule_edit = st.tuples(
    st.just("rule"),
    st.sampled_from(RULES),
    st.integers(-20, 45).filter(bool),  # points
    st.booleans(),  # active
)


@st.composite
def threshold_edit(draw):
    mql = draw(st.integers(5, 40))
    return (
        "threshold",
        mql,
        draw(st.integers(0, mql)),  # MQL's exit score
        draw(st.integers(mql, 90)),  # SQL at
        draw(st.booleans()),  # MQL may fall back
        draw(st.sampled_from(["", "B"])),  # the fit grade SQL asks for
    )


# A contact's job title changes, so does its fit grade (B as a director, D otherwise): a fact
# about the person, kept at its place among the touchpoints.
fit_change = st.tuples(st.just("fit"), st.integers(0, CONTACTS - 1), st.booleans())

history = st.lists(
    st.one_of(touchpoint, touchpoint, touchpoint, rule_edit, threshold_edit(), fit_change),
    min_size=1,
    max_size=24,
)


def rescore_now() -> int:
    run = rescore.rescore_start(reason="edit")
    rescore.rescore_run(rescore_id=run.pk)
    run.refresh_from_db()
    assert run.status == "done", run.error
    return run.stage_moves


def apply(step, contacts, capture, at) -> None:
    kind, *values = step
    if kind == "noop":
        return
    if kind == "fit":
        contact, director = values
        contact_update(
            contact=contacts[contact], job_title="Directeur" if director else "Stagiaire"
        )
        return
    if kind == "event":
        contact, which = values
        event_type, properties = TOUCHPOINTS[which]
        record(contacts[contact], event_type, capture=capture, occurred_at=at, **properties)
    elif kind == "rule":
        name, points, active = values
        ScoreRule.objects.filter(name=name).update(points=points, active=active)
        rescore_now()
    else:
        mql, exit_below, sql, demote, grade = values
        Threshold.objects.filter(stage="mql").update(
            min_score=mql, exit_below=exit_below, demote=demote
        )
        Threshold.objects.filter(stage="sql").update(min_score=sql, min_fit_grade=grade)
        rescore_now()


def final_edits(steps):
    """The rule and threshold edits that hold at the end of ``steps``, in one go."""
    rules, threshold = {}, None
    for step in steps:
        if step[0] == "rule":
            rules[step[1]] = step
        elif step[0] == "threshold":
            threshold = step
    return [*rules.values(), *([threshold] if threshold else [])]


def stages_after(steps, capture, *, edits_before=0) -> tuple[list[str], list[str]]:
    """Play ``steps`` in a database of their own (rolled back): each contact's stage, then the
    stages a clean rescore plans and leaves."""
    with transaction.atomic():
        FitRule.objects.create(name="Director", field="job_title", operator="contains",
                               value="directeur", points=20)  # fmt: skip
        contacts = ContactFactory.create_batch(CONTACTS, stage="lead")
        for n, step in enumerate(steps):
            apply(step, contacts, capture, T0 + timedelta(minutes=n - edits_before))
        ids = [contact.pk for contact in contacts]
        stages = [Contact.objects.get(pk=pk).stage for pk in ids]
        planned = {c.contact_id: c.new_stage for c in rescore_plan(active_rules()).contacts}
        assert rescore_now() == 0
        rescored = [Contact.objects.get(pk=pk).stage for pk in ids]
        assert [planned[pk] for pk in ids] == rescored
        transaction.set_rollback(True)
    return stages, rescored


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=history)
# The testers' case: an SQL made live by a rule that was then taken back.
@example(steps=[("rule", "Download", 45, True), ("event", 0, 0), ("event", 0, 0),
                ("rule", "Download", 1, True)])  # fmt: skip
# SQL needs fit B: a demo request as a D leaves an MQL; becoming B makes it an SQL, D again
# an MQL, and another demo request as a D leaves it there.
@example(steps=[("threshold", 20, 10, 60, True, "B"), ("event", 0, 7), ("fit", 0, True),
                ("event", 0, 0), ("fit", 0, False), ("event", 0, 7)])  # fmt: skip
def test_stages_after_any_order_of_edits_are_those_of_one_clean_rescore(
    steps, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    stages, rescored = stages_after(steps, capture)
    # The same touchpoints at the same times, the final rules and thresholds set before them.
    events_only = [step if step[0] in {"event", "fit"} else ("noop",) for step in steps]
    final = final_edits(steps)
    clean, _ = stages_after([*final, *events_only], capture, edits_before=len(final))

    assert stages == rescored  # one clean rescore moves nobody
    assert stages == clean  # and the order of the edits left no trace


def test_the_same_history_edited_in_two_orders_ends_in_the_same_stages(
    django_capture_on_commit_callbacks,
):
    """The testers' case, written out: a rule that lived a moment made an SQL live; in one
    database the rule came and went before the touchpoints, in the other between them."""
    capture = django_capture_on_commit_callbacks
    finals = []
    for order in ("edit first", "edit between"):
        with transaction.atomic():
            contact = ContactFactory(stage="lead")
            download = ScoreRule.objects.get(name="Download")
            if order == "edit first":
                ScoreRule.objects.filter(pk=download.pk).update(points=75)
                rescore_now()
                ScoreRule.objects.filter(pk=download.pk).update(points=1)
                rescore_now()
            record(contact, "download", capture=capture, occurred_at=T0)
            if order == "edit between":
                ScoreRule.objects.filter(pk=download.pk).update(points=75)
                rescore_now()  # an SQL now
                ScoreRule.objects.filter(pk=download.pk).update(points=1)
                rescore_now()
            record(contact, "page_view", capture=capture, occurred_at=T0 + timedelta(hours=1),
                   url="https://ex.fr/pricing")  # fmt: skip
            contact.refresh_from_db()
            finals.append((contact.stage, contact.score))
            transaction.set_rollback(True)
    assert finals == [("lead", 16), ("lead", 16)]
