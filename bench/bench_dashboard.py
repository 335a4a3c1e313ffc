"""Server time of the marketer's pages at size (funnel panel, contact list with filters),
against the bare SQL of the same queries in the same run. Issue 6 adds its own panels here."""

from __future__ import annotations

from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client

from bench.common import percentile, result, timings_ms

NAME = "dashboard"
TARGET_P95_MS = 300
STAGES = ["suspect", "lead", "mql", "hmql", "sql", "client", "ambassador"]


def seed(contacts: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE contacts_event, contacts_stagechange, contacts_contact CASCADE")
        cursor.execute("DELETE FROM contacts_leadsource")
        cursor.execute(
            "INSERT INTO contacts_leadsource (name, slug, channel, utm_source, utm_medium, "
            "utm_campaign, active, created_at) SELECT 'Source ' || i, 'source-' || i, 'paid', "
            "'google', 'cpc', '', true, now() FROM generate_series(1, 8) i"
        )
        # Funnel shape: many suspects, few ambassadors; names and companies vary for search.
        cursor.execute(
            """
            INSERT INTO contacts_contact (email, first_name, last_name, company, phone, job_title,
                utm_source, utm_medium, utm_campaign, utm_term, utm_content, stage,
                stage_entered_at, score, consent, consent_method, do_not_email, created_at,
                updated_at, last_activity_at, source_id)
            SELECT
                CASE WHEN r < 0.35 THEN NULL ELSE 'contact' || i || '@exemple' || (i %% 97) || '.fr' END,
                (ARRAY['Élodie','Jérôme','Zoé','Hélène','Bruno','Claire','Noël','Agnès'])[1 + i %% 8],
                (ARRAY['Martin','Bernard','Dubois','Durand','Lefèvre','Moreau','Fournier'])[1 + i %% 7],
                'Société ' || (i %% 5000), '', '', '', '', '', '', '',
                CASE WHEN r < 0.35 THEN 'suspect' WHEN r < 0.63 THEN 'lead' WHEN r < 0.78 THEN 'mql'
                     WHEN r < 0.86 THEN 'hmql' WHEN r < 0.91 THEN 'sql' WHEN r < 0.98 THEN 'client'
                     ELSE 'ambassador' END,
                now() - (i %% 180) * interval '1 day', (r * 120)::int, 'unknown', '', false,
                now() - (i %% 180) * interval '1 day', now(),
                CASE WHEN i %% 10 = 0 THEN NULL ELSE now() - (i %% 200) * interval '1 hour' END,
                (SELECT min(id) FROM contacts_leadsource) + i %% 8
            FROM (SELECT i, random() AS r FROM generate_series(1, %s) i) AS g
            """,
            [contacts],
        )
        cursor.execute("ANALYZE contacts_contact")


def bare_sql_list(where: str, params: list[object]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM contacts_contact c WHERE {where}", params)
        cursor.execute(
            "SELECT c.*, s.name, u.username FROM contacts_contact c "
            "LEFT JOIN contacts_leadsource s ON s.id = c.source_id "
            "LEFT JOIN auth_user u ON u.id = c.owner_id "
            f"WHERE {where} ORDER BY c.last_activity_at DESC NULLS LAST, c.id DESC LIMIT 50",
            params,
        )
        cursor.fetchall()


def bare_sql_funnel() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT stage, count(*) FROM contacts_contact GROUP BY stage")
        cursor.fetchall()


def run(scale: float) -> list[dict]:
    contacts = max(1000, int(100_000 * scale))
    seed(contacts)
    user, _ = User.objects.get_or_create(username="bench-marketer")
    user.groups.add(Group.objects.get_or_create(name="marketing")[0])
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)

    like = "%martin%"
    search_where = (
        "(upper(c.email) LIKE upper(%s) OR upper(c.first_name) LIKE upper(%s) "
        "OR upper(c.last_name) LIKE upper(%s) OR upper(c.company) LIKE upper(%s))"
    )
    pages = [
        ("funnel panel", "/contacts/panels/funnel/", bare_sql_funnel),
        ("contact list", "/contacts/", lambda: bare_sql_list("true", [])),
        ("contact list, search", "/contacts/?q=martin",
         lambda: bare_sql_list(search_where, [like] * 4)),
        ("contact list, stage + score filter", "/contacts/?stage=sql&score_min=50",
         lambda: bare_sql_list("c.stage = 'sql' AND c.score >= 50", [])),
    ]  # fmt: skip
    results = []
    for label, url, bare in pages:

        def get(url: str = url) -> None:
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)

        page_ms = timings_ms(get, repeat=30)
        sql_ms = timings_ms(bare, repeat=30)
        p95 = percentile(page_ms, 95)
        results.append(
            result(
                name=NAME,
                metric=f"{label} p95 server time ({contacts:,} contacts)",
                value=p95,
                unit="ms",
                baseline=percentile(sql_ms, 95),
                target=f"p95 < {TARGET_P95_MS} ms",
                passed=p95 < TARGET_P95_MS,
                scale=scale,
                p50_ms=round(percentile(page_ms, 50), 2),
                bare_sql_p50_ms=round(percentile(sql_ms, 50), 2),
                contacts=contacts,
            )
        )
    return results
