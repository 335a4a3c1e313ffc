"""Twenty reps claiming from a queue of 1,000 SQLs at once, on PostgreSQL: every lead is claimed
exactly once. A naive read-then-save claim runs through the same check as a negative control:
it does give leads to two reps, so the check can fail."""

import random
import threading
from collections import Counter
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from contacts.models import Contact, ContactAudit
from contacts.sales.claims import ClaimRefused, contact_claim, contact_claim_next

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

LEADS = 1000
REPS = 20
REFUSED = object()


@pytest.fixture
def queue_of_sqls() -> list[int]:
    now = timezone.now()
    scores = random.Random(6)
    Contact.objects.bulk_create(
        Contact(
            email=f"sql{i}@example.fr",
            stage=Contact.Stage.SQL,
            stage_entered_at=now,
            score=scores.randint(60, 200),
        )  # fmt: skip
        for i in range(LEADS)
    )
    return list(Contact.objects.sql_queue().values_list("pk", flat=True))


@pytest.fixture
def reps() -> list[User]:
    User.objects.bulk_create(User(username=f"rep{i}") for i in range(REPS))
    return list(User.objects.filter(username__startswith="rep"))


Pause = Callable[[], object] | None


def run_claimers(claim: Callable[[User, Pause], object], reps) -> list[tuple]:
    """Each rep claims in its own thread (own connection) until the queue is empty. All start
    together, and their first claim waits at a barrier between its read and its write (where a
    race would hurt) so that every rep reads the same head of the queue first."""
    start, first_write = threading.Barrier(len(reps)), threading.Barrier(len(reps))
    claims: list[tuple[int, int]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def work(rep: User) -> None:
        pause: Pause = first_write.wait
        try:
            start.wait()
            while True:
                got = claim(rep, pause)
                pause = None
                if got is None:
                    return
                if got is not REFUSED:
                    with lock:
                        claims.append((got, rep.pk))
        except BaseException as error:  # reported below, not lost in the thread
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(rep,)) for rep in reps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    return claims


def assert_each_claimed_once(claims: list[tuple[int, int]], lead_ids: list[int]) -> None:
    counts = Counter(lead for lead, _ in claims)
    doubles = {lead: n for lead, n in counts.items() if n > 1}
    assert not doubles, f"{len(doubles)} leads claimed more than once"
    assert sorted(counts) == sorted(lead_ids), "some leads were never claimed"
    owners = dict(Contact.objects.filter(pk__in=lead_ids).values_list("pk", "owner_id"))
    assert owners == dict(claims), "a rep was told they won a lead another rep owns"


def claim_next(rep: User, pause: Pause) -> object:
    if pause:
        pause()
    return contact_claim_next(user=rep)


def pick(pause: Pause) -> int | None:
    """The row a rep clicks: the head of the queue at first (everyone at once), then one of
    the first rows on their page."""
    visible = list(Contact.objects.sql_queue().values_list("pk", flat=True)[:10])
    if not visible:
        return None
    return visible[0] if pause else random.choice(visible)


def claim_a_row(rep: User, pause: Pause) -> object:
    choice = pick(pause)
    if choice is None:
        return None
    if pause:
        pause()
    try:
        contact_claim(contact_id=choice, user=rep)
    except ClaimRefused:
        return REFUSED
    return choice


def naive_claim(rep: User, pause: Pause) -> object:
    """Read the row, then save it as mine: the bug the queue must not have."""
    choice = pick(pause)
    if choice is None:
        return None
    lead = Contact.objects.get(pk=choice)
    if lead.owner_id is not None:  # even checking after the read does not close the race
        return REFUSED
    if pause:
        pause()
    lead.owner, lead.claimed_at = rep, timezone.now()
    lead.save(update_fields=["owner", "claimed_at"])
    return lead.pk


def test_twenty_reps_claiming_next_get_every_lead_exactly_once(queue_of_sqls, reps):
    claims = run_claimers(claim_next, reps)

    assert_each_claimed_once(claims, queue_of_sqls)
    audited = Counter(
        ContactAudit.objects.filter(action=ContactAudit.Action.CLAIMED).values_list(
            "contact_id", flat=True
        )
    )
    assert set(audited.values()) == {1} and len(audited) == LEADS
    assert len({rep for _, rep in claims}) > 1  # the work really was shared


def test_twenty_reps_clicking_rows_never_both_win_a_lead(queue_of_sqls, reps):
    claims = run_claimers(claim_a_row, reps)

    assert_each_claimed_once(claims, queue_of_sqls)
    assert ContactAudit.objects.filter(action=ContactAudit.Action.CLAIMED).count() == LEADS


def test_the_naive_read_then_save_claim_is_caught_giving_leads_twice(queue_of_sqls, reps):
    claims = run_claimers(naive_claim, reps)

    with pytest.raises(AssertionError, match="claimed more than once"):
        assert_each_claimed_once(claims, queue_of_sqls)
    assert len(claims) > LEADS
