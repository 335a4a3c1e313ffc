import threading

import pytest
from django.db import connection
from django.utils import translation

from contacts.models import ALLOWED_TRANSITIONS, Contact, Event, StageChange
from contacts.stages import StageConflict, TransitionNotAllowed, stage_move
from tests.factories import ContactFactory

STAGES = Contact.Stage.values
ALL_PAIRS = [(a, b) for a in STAGES for b in STAGES]
# The funnel as a sales and marketing team runs it; spelled out so a change to the table shows up.
EXPECTED_ALLOWED = {
    ("suspect", "lead"),
    ("lead", "mql"), ("lead", "hmql"), ("lead", "sql"), ("lead", "client"),
    ("mql", "lead"), ("mql", "hmql"), ("mql", "sql"), ("mql", "client"),
    ("hmql", "lead"), ("hmql", "mql"), ("hmql", "sql"), ("hmql", "client"),
    ("sql", "lead"), ("sql", "client"),
    ("sql", "mql"), ("sql", "hmql"),  # a rescore finding today's rules stop short of SQL
    ("client", "ambassador"),
    ("ambassador", "client"),
}  # fmt: skip


def test_the_transition_table_is_the_funnel_we_expect():
    table = {(a, b) for a, targets in ALLOWED_TRANSITIONS.items() for b in targets}
    assert table == EXPECTED_ALLOWED


def test_the_database_check_lists_every_stage():
    check = next(c for c in Contact._meta.constraints if c.name == "contact_stage_valid")
    assert sorted(check.condition.children[0][1]) == sorted(STAGES)


@pytest.mark.django_db
@pytest.mark.parametrize(("from_stage", "to_stage"), sorted(EXPECTED_ALLOWED))
def test_an_allowed_move_changes_the_stage_and_records_why(from_stage, to_stage, marketer):
    contact = ContactFactory(stage=from_stage)

    change = stage_move(
        contact=contact, to=to_stage, cause="user", actor=marketer, reason="Called them"
    )

    contact.refresh_from_db()
    assert contact.stage == to_stage
    assert contact.stage_entered_at == change.at
    assert (change.from_stage, change.to_stage, change.cause) == (from_stage, to_stage, "user")
    assert change.actor == marketer and change.reason == "Called them"
    event = Event.objects.get(contact=contact, type=Event.Type.STAGE_CHANGED)
    assert event.properties["from"] == from_stage and event.properties["to"] == to_stage
    assert event.properties["stage_change_id"] == change.pk


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("from_stage", "to_stage"), [p for p in ALL_PAIRS if p not in EXPECTED_ALLOWED]
)
def test_a_refused_move_changes_nothing(from_stage, to_stage):
    contact = ContactFactory(stage=from_stage)
    before = Contact.objects.values().get(pk=contact.pk)

    with pytest.raises(TransitionNotAllowed) as refused:
        stage_move(contact=contact, to=to_stage, cause="user")

    assert str(Contact.Stage(from_stage).label) in str(refused.value)
    assert Contact.objects.values().get(pk=contact.pk) == before
    assert not StageChange.objects.exists()
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_an_unknown_stage_is_refused_with_its_name():
    contact = ContactFactory(stage="lead")
    with pytest.raises(TransitionNotAllowed, match="prospect"):
        stage_move(contact=contact, to="prospect", cause="user")


@pytest.mark.django_db
def test_an_anonymous_suspect_cannot_become_a_lead_without_an_email():
    visitor = ContactFactory(anonymous=True)
    with translation.override("en"), pytest.raises(TransitionNotAllowed, match="email"):
        stage_move(contact=visitor, to="lead", cause="system")
    visitor.refresh_from_db()
    assert visitor.stage == "suspect"


@pytest.mark.django_db
def test_a_move_from_a_stale_read_is_refused_and_writes_nothing():
    contact = ContactFactory(stage="lead")
    stale = Contact.objects.get(pk=contact.pk)
    stage_move(contact=contact, to="mql", cause="threshold", actor_name="Threshold: MQL")

    with pytest.raises(StageConflict):
        stage_move(contact=stale, to="sql", cause="user")

    contact.refresh_from_db()
    assert contact.stage == "mql"
    assert StageChange.objects.filter(contact=contact).count() == 1


@pytest.mark.django_db
def test_the_stage_changed_event_is_handed_to_the_handlers_after_commit(
    django_capture_on_commit_callbacks, settings
):
    seen = []
    settings.LEADFUNNEL_EVENT_HANDLERS = ["tests.handlers.remember"]
    from tests import handlers

    handlers.SEEN = seen
    contact = ContactFactory(stage="lead")

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        stage_move(contact=contact, to="mql", cause="threshold")
        assert seen == []  # nothing before commit

    assert len(callbacks) == 1
    assert [(e.type, e.properties["to"]) for e in seen] == [("stage_changed", "mql")]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_moves_of_one_contact_cannot_both_apply():
    contact = ContactFactory(stage="lead")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def move(to: str) -> None:
        mine = Contact.objects.get(pk=contact.pk)  # each thread reads "lead"
        barrier.wait()
        try:
            stage_move(contact=mine, to=to, cause="user")
            outcomes.append(f"moved to {to}")
        except StageConflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=move, args=(to,)) for to in ("mql", "sql")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(o == "conflict" for o in outcomes) == [False, True]
    changes = list(StageChange.objects.filter(contact=contact))
    assert len(changes) == 1
    contact.refresh_from_db()
    assert contact.stage == changes[0].to_stage
    assert Event.objects.filter(contact=contact, type="stage_changed").count() == 1


@pytest.mark.django_db
def test_many_moves_at_once_record_each_step_and_skip_contacts_moved_meanwhile():
    from contacts.stages import PlannedMove, stage_move_many

    climber = ContactFactory(stage="lead")
    stale = ContactFactory(stage="mql")  # planned as a lead, but someone moved it already
    visitor = ContactFactory(anonymous=True)
    ContactFactory.create_batch(3, stage="lead")

    changes = stage_move_many(
        moves=[
            PlannedMove(climber.pk, "lead", "mql", reason="score 25 ≥ 20"),
            PlannedMove(climber.pk, "mql", "hmql", reason="score 25 ≥ 20"),
            PlannedMove(stale.pk, "lead", "mql"),
            PlannedMove(stale.pk, "mql", "hmql"),  # a later step of a failed move: skipped
            PlannedMove(visitor.pk, "suspect", "lead"),  # anonymous: skipped
        ],
        cause="threshold",
    )

    assert [(c.contact_id, c.from_stage, c.to_stage) for c in changes] == [
        (climber.pk, "lead", "mql"), (climber.pk, "mql", "hmql"),
    ]  # fmt: skip
    for contact, stage in [(climber, "hmql"), (stale, "mql"), (visitor, "suspect")]:
        contact.refresh_from_db()
        assert contact.stage == stage
    events = Event.objects.filter(type="stage_changed").order_by("id")
    assert [e.properties["stage_change_id"] for e in events] == [c.pk for c in changes]
    assert StageChange.objects.count() == 2


@pytest.mark.django_db
def test_many_moves_refuse_a_transition_the_funnel_does_not_allow():
    from contacts.stages import PlannedMove, stage_move_many

    client = ContactFactory(stage="client")
    with pytest.raises(TransitionNotAllowed):
        stage_move_many(moves=[PlannedMove(client.pk, "client", "lead")], cause="threshold")
    client.refresh_from_db()
    assert client.stage == "client" and not StageChange.objects.exists()
