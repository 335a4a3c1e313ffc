"""My day at size, for the ``queue`` benchmark: the server time of /queue/today/ for a rep with
200 follow-ups (overdue, today, the coming days; half on leads) and 50 open SQLs (half without
a next step) in the benchmark's large contact table, against the queue page's p95 measured in
the same run (the page a rep opens beside it)."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from bench.common import percentile, result, timings_ms

TARGET_MY_DAY_P95_MS = 300
FOLLOW_UPS = 200
OPEN_LEADS = 50


def my_day_row(*, name: str, queue_page_p95_ms: float, **common: Any) -> dict:
    from contacts.models import Contact, FollowUp

    rep, _ = User.objects.get_or_create(username="bench-my-day-rep")
    rep.groups.add(Group.objects.get_or_create(name="sales")[0])
    FollowUp.objects.filter(owner=rep).delete()
    now = timezone.now()
    leads = list(
        Contact.objects.filter(stage=Contact.Stage.SQL, owner__isnull=True).values_list(
            "pk", flat=True
        )[:OPEN_LEADS]
    )
    Contact.objects.filter(pk__in=leads).update(owner=rep, claimed_at=now - timedelta(hours=30))
    rng = random.Random(16)
    FollowUp.objects.bulk_create(
        FollowUp(
            owner=rep,
            created_by=rep,
            title=f"Follow-up {i}",
            contact_id=leads[i % (OPEN_LEADS // 2)] if i % 2 else None,
            due_at=(due := now + timedelta(minutes=rng.randint(-3 * 1440, 10 * 1440))),
            remind_at=due if due > now else None,
        )  # fmt: skip
        for i in range(FOLLOW_UPS)
    )
    client = Client(HTTP_HOST="localhost")
    client.force_login(rep)

    def get() -> None:
        response = client.get("/queue/today/")
        assert response.status_code == 200, response.status_code

    try:
        samples = timings_ms(get, repeat=40)
    finally:
        FollowUp.objects.filter(owner=rep).delete()
        Contact.objects.filter(pk__in=leads).update(owner=None, claimed_at=None)
    p95 = percentile(samples, 95)
    return result(
        name=name,
        metric=f"My day p95 server time ({FOLLOW_UPS} follow-ups, {OPEN_LEADS} open leads)",
        value=p95, unit="ms", baseline=queue_page_p95_ms,
        target=f"p95 < {TARGET_MY_DAY_P95_MS} ms", passed=p95 < TARGET_MY_DAY_P95_MS,
        p50_ms=round(percentile(samples, 50), 2), **common,
    )  # fmt: skip
