"""Five worker processes sweeping 10,000 new SQLs at once into a round-robin team of four, on
PostgreSQL: each rep gets their share (± 1), every lead exactly one owner and one audit row."""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter

import pytest
from django.contrib.auth.models import Group, User
from django.db import connections
from django.utils import timezone

from contacts.models import Contact, ContactAudit, Notification, SalesRep, Team
from contacts.sales.assignment import sqls_assign

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

LEADS = 10_000
REPS = 4
WORKERS = 5


def sweep(start, results) -> None:
    """One worker process: its own connection (the parent closed its own before the fork)."""
    try:
        start.wait()
        results.put(("given", sqls_assign()))
    except BaseException as error:  # reported in the parent, not lost in the child
        results.put(("error", repr(error)))
    finally:
        connections.close_all()


@pytest.fixture
def round_robin_team() -> list[int]:
    team = Team.objects.create(name="Ventes", assignment="round_robin", is_default=True)
    sales = Group.objects.get_or_create(name="sales")[0]
    for i in range(REPS):
        user = User.objects.create(username=f"rep{i}")
        user.groups.add(sales)
        SalesRep.objects.create(user=user, team=team)
    now = timezone.now()
    Contact.objects.bulk_create(
        (
            Contact(email=f"sql{i}@example.fr", stage=Contact.Stage.SQL, stage_entered_at=now)
            for i in range(LEADS)
        ),
        batch_size=2000,
    )
    return list(SalesRep.objects.values_list("pk", flat=True))


def test_five_workers_share_ten_thousand_sqls_evenly_and_never_twice(round_robin_team):
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(WORKERS), context.Queue()
    connections.close_all()  # each child opens its own connection
    workers = [context.Process(target=sweep, args=(start, results)) for _ in range(WORKERS)]
    began = time.monotonic()
    for worker in workers:
        worker.start()
    reports = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    elapsed = time.monotonic() - began

    assert [kind for kind, _ in reports] == ["given"] * WORKERS, reports
    given = [count for _, count in reports]
    assert sum(given) == LEADS
    assert sum(1 for count in given if count) > 1, given  # the work really was shared
    shares = Counter(
        Contact.objects.filter(stage=Contact.Stage.SQL).values_list("owner_id", flat=True)
    )
    assert set(shares) == set(round_robin_team)  # every lead has an owner, one of the reps
    assert max(shares.values()) - min(shares.values()) <= 1, shares
    assert all(abs(count - LEADS // REPS) <= 1 for count in shares.values()), shares
    audits = ContactAudit.objects.filter(action=ContactAudit.Action.ASSIGNED)
    per_lead = Counter(audits.values_list("contact_id", flat=True))
    assert len(per_lead) == LEADS and set(per_lead.values()) == {1}
    owners = dict(Contact.objects.values_list("pk", "owner_id"))
    assert all(owners[lead] == owner for lead, owner in audits.values_list("contact", "owner"))
    assert Notification.objects.filter(kind=Notification.Kind.ASSIGNED).count() == LEADS
    print(f"\n{LEADS} SQLs assigned by {WORKERS} workers in {elapsed:.1f} s: {given}")
