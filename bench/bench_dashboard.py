"""Server time of the marketer's dashboard panels, the contact list with filters and the sales
queue at size (1,000,000 contacts and 10,000,000 events at scale 1), against the bare SQL of the
same aggregates in the same run.

The data is generated inside PostgreSQL (generate_series), about 1.5 stage changes per contact
over a year, claims on most SQLs, a cost per source and month. Generating it takes several
minutes on a small machine: BENCH_REUSE=1 keeps data of the same size from an earlier run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import timedelta

from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.utils import timezone

from bench.common import percentile, result, timings_ms
from bench.seed import EVENT_MIX, URLS

NAME = "dashboard"
TARGET_P95_MS = 300
STAGES = ["suspect", "lead", "mql", "hmql", "sql", "client", "ambassador"]
SOURCES = 8
EVENT_CHUNK = 1_000_000


def execute(sql: str, params: list[object] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def scalar(sql: str, params: list[object] | None = None) -> object:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchone()[0]


def seed(contacts: int, events: int, rep_id: int) -> None:
    from contacts.reports.rollups import rollups_rebuild

    started = time.monotonic()
    execute(
        "TRUNCATE scoring_scoreentry, scoring_rescore, contacts_pendingevent, contacts_event, "
        "contacts_stagechange, "
        "contacts_eventdailycount, contacts_leadsourcecost, contacts_contact CASCADE"
    )
    execute("DELETE FROM contacts_leadsource")
    execute(
        "INSERT INTO contacts_leadsource (name, slug, channel, utm_source, utm_medium, "
        "utm_campaign, active, created_at) SELECT 'Source ' || i, 'source-' || i, 'paid', "
        "'google', 'cpc', '', true, now() FROM generate_series(1, %s) i",
        [SOURCES],
    )
    # A cost per source and month over the last 13 months.
    execute(
        "INSERT INTO contacts_leadsourcecost (source_id, starts_on, ends_on, amount, note) "
        "SELECT s.id, (date_trunc('month', now()) - m * interval '1 month')::date, "
        "(date_trunc('month', now()) - (m - 1) * interval '1 month' - interval '1 day')::date, "
        "1000 + 250 * (s.id %% 5), '' "
        "FROM contacts_leadsource s CROSS JOIN generate_series(0, 12) m"
    )
    # Funnel shape: many suspects, few ambassadors; names and companies vary for search.
    # Contacts arrive over the last 365 days.
    execute(
        """
        INSERT INTO contacts_contact (email, first_name, last_name, company, phone, job_title,
            utm_source, utm_medium, utm_campaign, utm_term, utm_content, stage,
            stage_entered_at, score, consent, consent_method, do_not_email, created_at,
            updated_at, last_activity_at, source_id, first_source_id)
        SELECT
            CASE WHEN r < 0.35 THEN NULL ELSE 'contact' || i || '@exemple' || (i %% 97) || '.fr' END,
            (ARRAY['Élodie','Jérôme','Zoé','Hélène','Bruno','Claire','Noël','Agnès'])[1 + i %% 8],
            (ARRAY['Martin','Bernard','Dubois','Durand','Lefèvre','Moreau','Fournier'])[1 + i %% 7],
            'Société ' || (i %% 5000), '', '', '', '', '', '', '',
            CASE WHEN r < 0.35 THEN 'suspect' WHEN r < 0.63 THEN 'lead' WHEN r < 0.78 THEN 'mql'
                 WHEN r < 0.86 THEN 'hmql' WHEN r < 0.91 THEN 'sql' WHEN r < 0.98 THEN 'client'
                 ELSE 'ambassador' END,
            now(), (r * 120)::int, 'unknown', '', false,
            now() - (i %% 365) * interval '1 day' - (i %% 1440) * interval '1 minute', now(),
            CASE WHEN i %% 10 = 0 THEN NULL ELSE now() - (i %% 200) * interval '1 hour' END,
            (SELECT min(id) FROM contacts_leadsource) + i %% %s,
            (SELECT min(id) FROM contacts_leadsource) + i %% %s
        FROM (SELECT i, random() AS r FROM generate_series(1, %s) i) AS g
        """,
        [SOURCES, SOURCES, contacts],
    )
    print(f"   contacts: {time.monotonic() - started:.0f} s", flush=True)
    # Each contact walked the funnel one stage at a time up to where it is now, a few hours
    # to a few weeks per step (capped at now).
    rank = f"array_position(ARRAY{STAGES!r}::text[], c.stage::text)"
    execute(
        f"""
        INSERT INTO contacts_stagechange (contact_id, from_stage, to_stage, outcome, cause,
            actor_id, actor_name, reason, at)
        SELECT c.id, (ARRAY{STAGES!r}::text[])[step], (ARRAY{STAGES!r}::text[])[step + 1], '',
            'threshold', NULL, '', '',
            least(now() - interval '1 minute', c.created_at
                + step * (24 + c.id %% 300) * interval '1 hour')
        FROM contacts_contact c CROSS JOIN LATERAL generate_series(1, {rank} - 1) AS step
        ORDER BY c.id, step
        """
    )
    execute(
        "UPDATE contacts_contact c SET stage_entered_at = s.at FROM (SELECT contact_id, "
        "max(at) AS at FROM contacts_stagechange GROUP BY contact_id) s WHERE s.contact_id = c.id"
    )
    # Most SQLs (and every client) were claimed, from minutes to two days after entering SQL.
    execute(
        """
        UPDATE contacts_contact c SET owner_id = %s,
            claimed_at = s.at + ((c.id * 7) %% 2880) * interval '1 minute'
        FROM contacts_stagechange s
        WHERE s.contact_id = c.id AND s.to_stage = 'sql'
          AND (c.stage IN ('client', 'ambassador') OR c.id %% 5 <> 0)
        """,
        [rep_id],
    )
    # Every client's won outcome, with an amount (the sources panel's revenue), and an estimate
    # on a third of the claimed SQLs (the pipeline's expected value).
    execute(
        """
        INSERT INTO contacts_contactoutcome (contact_id, result, at, source, stage_change_id,
            recorded_at, amount, currency, product, lead_source_id, first_lead_source_id)
        SELECT s.contact_id, 'won', s.at, 'sales', s.id, s.at, 500 + (s.contact_id %% 50) * 100,
            'EUR', '', c.source_id, c.first_source_id
        FROM contacts_stagechange s JOIN contacts_contact c ON c.id = s.contact_id
        WHERE s.to_stage = 'client'
        """
    )
    execute(
        """
        INSERT INTO contacts_dealestimate (contact_id, amount, currency, updated_by_id, updated_at)
        SELECT c.id, 1000 + (c.id %% 20) * 250, 'EUR', c.owner_id, c.claimed_at
        FROM contacts_contact c
        WHERE c.stage = 'sql' AND c.owner_id IS NOT NULL AND c.id %% 3 = 0
        """
    )
    print(f"   stage changes and claims: {time.monotonic() - started:.0f} s", flush=True)
    low, high = (
        scalar("SELECT min(id) FROM contacts_contact"),
        scalar("SELECT max(id) FROM contacts_contact"),
    )
    for offset in range(0, events, EVENT_CHUNK):
        size = min(EVENT_CHUNK, events - offset)
        execute(
            f"""
            INSERT INTO contacts_event (contact_id, type, occurred_at, received_at, properties,
                source, idempotency_key)
            SELECT %s + (i::bigint * 7919 %% (%s - %s + 1)), t, o, o, jsonb_build_object('url',
                {URLS}[1 + i %% 5]),
                CASE WHEN t = 'page_view' THEN 'beacon' WHEN t = 'form_submit' THEN 'form'
                     WHEN t LIKE 'email%%' THEN 'email' ELSE 'api' END,
                NULL
            FROM (SELECT i, {EVENT_MIX} AS t,
                         now() - (i %% 365) * interval '1 day' - (i %% 1440) * interval '1 minute' AS o
                  FROM (SELECT i, random() AS r FROM generate_series(%s, %s) i) g) e
            """,
            [low, high, low, offset + 1, offset + size],
        )
        print(f"   events {offset + size:,}: {time.monotonic() - started:.0f} s", flush=True)
    rollups_rebuild()
    print(f"   rollup rebuilt: {time.monotonic() - started:.0f} s", flush=True)
    execute("VACUUM ANALYZE contacts_contact")
    execute("VACUUM ANALYZE contact_search")  # the search reads it (autovacuum may be off)
    execute("VACUUM ANALYZE contacts_stagechange")
    execute("VACUUM ANALYZE contacts_contactoutcome")
    execute("VACUUM ANALYZE contacts_dealestimate")
    execute("VACUUM ANALYZE contacts_event")
    execute("VACUUM ANALYZE contacts_eventdailycount")
    execute("VACUUM ANALYZE contacts_stagestay")
    print(f"   analyzed: {time.monotonic() - started:.0f} s", flush=True)


def bare_pipeline() -> None:
    """The pipeline's grouping alone: claimed SQLs by rep, source and age, with estimates."""
    execute(
        """
        SELECT c.owner_id, c.source_id, now() - coalesce(c.claimed_at, c.stage_entered_at)
            < interval '1 day', count(*), count(e.contact_id), sum(e.amount)
        FROM contacts_contact c LEFT JOIN contacts_dealestimate e ON e.contact_id = c.id
        WHERE c.stage = 'sql' AND c.owner_id IS NOT NULL GROUP BY 1, 2, 3
        """
    )


def sizes() -> tuple[int, int]:
    contacts = scalar("SELECT count(*) FROM contacts_contact")
    events = scalar("SELECT reltuples::bigint FROM pg_class WHERE relname = 'contacts_event'")
    return int(contacts), int(events)


def run(scale: float) -> list[dict]:
    contacts = max(1000, int(1_000_000 * scale))
    events = max(10_000, int(10_000_000 * scale))
    marketer, _ = User.objects.get_or_create(username="bench-marketer")
    marketer.groups.add(Group.objects.get_or_create(name="marketing")[0])
    rep, _ = User.objects.get_or_create(username="bench-rep")
    rep.groups.add(Group.objects.get_or_create(name="sales")[0])
    manager, _ = User.objects.get_or_create(username="bench-manager")
    manager.groups.add(Group.objects.get_or_create(name="sales_manager")[0])
    have_contacts, have_events = sizes()
    reuse = (
        os.environ.get("BENCH_REUSE") == "1"
        and have_contacts == contacts
        and abs(have_events - events) < events * 0.02
    )
    if not reuse:
        print(f"   generating {contacts:,} contacts and {events:,} events", flush=True)
        seed(contacts, events, rep.pk)
    stage_changes = int(scalar("SELECT count(*) FROM contacts_stagechange"))

    from bench import bare_dashboard as bare

    today = timezone.localdate()
    periods = {
        "30 days": (today - timedelta(days=29), today),
        "90 days": (today - timedelta(days=89), today),
    }
    marketer_client = Client(HTTP_HOST="localhost")
    marketer_client.force_login(marketer)
    rep_client = Client(HTTP_HOST="localhost")
    rep_client.force_login(rep)
    manager_client = Client(HTTP_HOST="localhost")
    manager_client.force_login(manager)
    htmx = {"HTTP_HX_REQUEST": "true"}

    pages: list[tuple[str, Client, str, Callable[[], object]]] = []
    for label, (start, end) in periods.items():
        query = f"?from={start.isoformat()}&to={end.isoformat()}"
        pages += [
            (f"conversion panel, {label}", marketer_client,
             f"/dashboard/conversion/{query}", lambda s=start, e=end: bare.conversion(s, e)),
            (f"velocity panel, {label}", marketer_client,
             f"/dashboard/velocity/{query}", lambda s=start, e=end: bare.velocity(s, e)),
            (f"sources panel, {label}", marketer_client,
             f"/dashboard/sources/{query}", lambda s=start, e=end: bare.sources(s, e)),
            (f"SLA panel, {label}", marketer_client,
             f"/dashboard/sla/{query}", lambda s=start, e=end: bare.sla(s, e)),
            (f"touchpoints panel, {label}", marketer_client,
             f"/dashboard/touchpoints/{query}", lambda s=start, e=end: bare.touchpoints(s, e)),
        ]  # fmt: skip
    like = "%martin%"
    search_where = (
        "c.id IN (SELECT contact_id FROM contact_search WHERE upper(email::text) LIKE upper(%s) "
        "OR upper(first_name::text) LIKE upper(%s) OR upper(last_name::text) LIKE upper(%s) "
        "OR upper(company::text) LIKE upper(%s) OR upper(external_id::text) LIKE upper(%s))"
    )
    rare = "%4242%"
    pages += [
        ("dashboard page", marketer_client, "/", lambda: None),
        ("funnel panel", marketer_client, "/dashboard/funnel/", bare.funnel),
        ("score distribution panel", marketer_client, "/scoring/panels/distribution/",
         bare.score_distribution),
        ("contact list", marketer_client, "/contacts/", lambda: bare.contact_list("true", [])),
        ("contact list, search a common name", marketer_client, "/contacts/?q=martin",
         lambda: bare.contact_list(search_where, [like] * 5)),
        ("contact list, search a rare number", marketer_client, "/contacts/?q=4242",
         lambda: bare.contact_list(search_where, [rare] * 5)),
        ("contact list, stage + score filter", marketer_client, "/contacts/?stage=sql&score_min=50",
         lambda: bare.contact_list("c.stage = 'sql' AND c.score >= 50", [])),
        ("contact list, source + last 7 days", marketer_client,
         f"/contacts/?source={scalar('SELECT min(id) FROM contacts_leadsource')}&activity=7",
         lambda: bare.contact_list(
             "c.source_id = (SELECT min(id) FROM contacts_leadsource) "
             "AND c.last_activity_at >= now() - interval '7 days'", [])),
        ("sales queue", rep_client, "/queue/", bare.queue),
        ("pipeline (manager, every rep)", manager_client, "/pipeline/", bare_pipeline),
    ]  # fmt: skip

    results = []
    for label, client, url, bare_call in pages:

        def get(client: Client = client, url: str = url) -> None:
            response = client.get(
                url, **(htmx if "/dashboard/" in url or "/panels/" in url else {})
            )
            assert response.status_code == 200, (url, response.status_code)

        page_ms = timings_ms(get, repeat=30)
        sql_ms = timings_ms(bare_call, repeat=30)
        p95 = percentile(page_ms, 95)
        bare_p95 = percentile(sql_ms, 95) if label != "dashboard page" else None
        print(f"   {label}: p50 {percentile(page_ms, 50):.1f} ms, p95 {p95:.1f} ms "
              f"(bare SQL p95 {bare_p95 if bare_p95 is None else round(bare_p95, 1)} ms)",
              flush=True)  # fmt: skip
        results.append(
            result(
                name=NAME,
                metric=f"{label} p95 server time ({contacts:,} contacts, {events:,} events)",
                value=p95,
                unit="ms",
                baseline=bare_p95,
                target=f"p95 < {TARGET_P95_MS} ms",
                passed=p95 < TARGET_P95_MS,
                scale=scale,
                url=url,
                p50_ms=round(percentile(page_ms, 50), 2),
                bare_sql_p50_ms=round(percentile(sql_ms, 50), 2) if bare_p95 else None,
                contacts=contacts,
                events=events,
                stage_changes=stage_changes,
            )
        )
    results += orm_against_bare(periods, scale, like, search_where)
    return results


def interleaved_ms(
    one: Callable[[], object], other: Callable[[], object], *, repeat: int
) -> tuple[list[float], list[float]]:
    """Both calls timed in turn, so that a shared machine's load weighs on both alike."""
    for _ in range(3):
        one(), other()
    first, second = [], []
    for _ in range(repeat):
        for call, samples in ((one, first), (other, second)):
            started = time.perf_counter()
            call()
            samples.append((time.perf_counter() - started) * 1000)
    return first, second


def orm_against_bare(
    periods: dict[str, tuple], scale: float, like: str, search_where: str
) -> list[dict]:
    """The figures' hand-written SQL (what the panels run) against its ORM version (kept in
    orm_dashboard.py), function against function, timed in turn: the ORM's own cost."""
    from bench import orm_dashboard as orm
    from contacts.models import Contact
    from contacts.reports import dashboard, timing

    now = timezone.now()
    calls: list[tuple[str, Callable[[], object], Callable[[], object]]] = []
    for label, (start, end) in periods.items():
        period = dashboard.Period(start, end)
        low, high = period.bounds()
        calls += [
            (f"conversion, {label}", lambda a=low, b=high: list(orm.conversion_counts(a, b)),
             lambda a=low, b=high: dashboard.conversion_counts(a, b)),
            (f"velocity, {label}", lambda p=period: orm.velocity(p),
             lambda p=period: timing.velocity(p)),
            (f"SLA, {label}", lambda p=period: orm.sla(p, now),
             lambda p=period: timing.sla(p, now)),
        ]  # fmt: skip
    calls.append((
        "search a common name, 50 ids (model of contact_search against a RawSQL subquery)",
        lambda: list(Contact.objects.search("martin").order_by("-pk").values_list("pk", flat=True)[:50]),
        lambda: orm.search_raw("martin"),
    ))  # fmt: skip
    results = []
    for label, orm_call, hand in calls:
        orm_ms, hand_ms = interleaved_ms(orm_call, hand, repeat=30)
        p95, hand_p95 = percentile(orm_ms, 95), percentile(hand_ms, 95)
        print(f"   ORM {label}: p50 {percentile(orm_ms, 50):.1f} ms, p95 {p95:.1f} ms "
              f"(hand-written SQL p50 {percentile(hand_ms, 50):.1f}, p95 {hand_p95:.1f} ms)",
              flush=True)  # fmt: skip
        results.append(
            result(
                name=NAME, metric=f"ORM against hand-written SQL: {label}, p95",
                value=p95, unit="ms", baseline=hand_p95,
                target="(ratio < 1.15: the ORM version is used)", passed=True,
                scale=scale, p50_ms=round(percentile(orm_ms, 50), 2),
                hand_p50_ms=round(percentile(hand_ms, 50), 2),
            )
        )  # fmt: skip
    return results
