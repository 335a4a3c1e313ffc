"""The lead's pages (the queue's lead page and the contact page) for a lead with 200 activities,
against the same pages for a lead with none, in the database the ``queue`` benchmark seeded
(``bench/bench_queue.py`` calls ``run``). The Activities card shows one page of activities
(``contacts.sales.activity_views.ACTIVITIES_SHOWN``) and the timeline one page of events, so
neither page should grow with the lead's history."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bench.common import percentile, result, timings_ms
from contacts.models import Activity, Contact, Event

ACTIVITIES = 200
FEW = 5
TARGET_P95_MS = 300
REPEAT = 40


def _lead_with_activities(user: Any, contact_id: int, count: int) -> None:
    """Give ``contact_id`` to ``user`` with ``count`` activities (a mix of kinds), each with
    its timeline event, written in bulk (the pages read them, not the services)."""
    now = timezone.now()
    Contact.objects.filter(pk=contact_id).update(owner=user, claimed_at=now)
    kinds = [Activity.Kind.NOTE, Activity.Kind.CALL, Activity.Kind.MEETING, Activity.Kind.EMAIL]
    activities = Activity.objects.bulk_create(
        Activity(
            contact_id=contact_id,
            kind=kinds[i % 4],
            user=user,
            at=now - timedelta(minutes=10 * i),
            call_outcome="reached" if kinds[i % 4] == Activity.Kind.CALL else "",
            duration_minutes=5 if kinds[i % 4] != Activity.Kind.NOTE else None,
            subject=f"Échange n° {i}",
            body="Rappeler après la démo, voir le devis. " * 3,
        )
        for i in range(count)
    )
    events = Event.objects.bulk_create(
        Event(
            contact_id=contact_id,
            type=Activity.EVENT_TYPES[a.kind],
            occurred_at=a.at,
            source="sales",
            properties={"activity_id": a.pk, "by": user.get_username()},
        )
        for a in activities
    )
    for activity, event in zip(activities, events, strict=True):
        activity.event_id = event.pk
    Activity.objects.bulk_update(activities, ["event"])


def _page_figures(client: Client, url: str) -> tuple[list[float], int]:
    # Counted by a wrapper, not CaptureQueriesContext: a request empties the query log when it
    # starts (request_started), which leaves that context counting nothing.
    queries = []
    with connection.execute_wrapper(
        lambda execute, sql, *args: queries.append(sql) or execute(sql, *args)
    ):
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)

    def get() -> None:
        assert client.get(url).status_code == 200

    return timings_ms(get, repeat=REPEAT), len(queries)


def run(*, user: Any, common: dict[str, Any], name: str) -> list[dict]:
    """Three SQLs of the seeded queue, given to ``user``: one with ``ACTIVITIES`` activities,
    one with ``FEW``, one with none. p95 server time of each page for the first against the
    last (the baseline); its query count against the second's (a lead with nothing to list
    skips the list's query, so "none" is not the comparison for the count)."""
    worked, few, quiet = Contact.objects.sql_queue().values_list("pk", flat=True)[:3]
    _lead_with_activities(user, worked, ACTIVITIES)
    _lead_with_activities(user, few, FEW)
    _lead_with_activities(user, quiet, 0)
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    rows = []
    try:
        for page, label in (("queue-lead", "queue lead page"), ("contact-detail", "contact page")):
            busy_ms, busy_queries = _page_figures(client, reverse(page, args=[worked]))
            _few_ms, few_queries = _page_figures(client, reverse(page, args=[few]))
            empty_ms, empty_queries = _page_figures(client, reverse(page, args=[quiet]))
            p95 = percentile(busy_ms, 95)
            rows.append(
                result(
                    name=name,
                    metric=f"{label} p95 server time, lead with {ACTIVITIES} activities "
                    "(baseline: no activity)",
                    value=p95,
                    unit="ms",
                    baseline=percentile(empty_ms, 95),
                    target=f"p95 < {TARGET_P95_MS} ms, as many queries as with {FEW} activities",
                    passed=p95 < TARGET_P95_MS and busy_queries == few_queries,
                    p50_ms=round(percentile(busy_ms, 50), 2),
                    baseline_p50_ms=round(percentile(empty_ms, 50), 2),
                    queries=busy_queries,
                    queries_with_few=few_queries,
                    queries_with_none=empty_queries,
                    **common,
                )
            )
    finally:
        leads = [worked, few, quiet]
        Activity.objects.filter(contact_id__in=leads).delete()
        Event.objects.filter(contact_id__in=leads, source="sales").delete()
        Contact.objects.filter(pk__in=leads).update(owner=None, claimed_at=None)
    return rows
