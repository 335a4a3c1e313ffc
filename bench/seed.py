"""Fast synthetic data for benchmarks, generated inside PostgreSQL."""

from __future__ import annotations

from django.db import connection


def reset() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE scoring_scoreentry, scoring_rescore, contacts_pendingevent, contacts_event, "
            "contacts_stagechange, contacts_anonymousview, contacts_contact CASCADE"
        )


def contacts(n: int, *, stage_sql: str = "'client'") -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO contacts_contact (email, first_name, last_name, company, phone, job_title,
                utm_source, utm_medium, utm_campaign, utm_term, utm_content, stage,
                stage_entered_at, score, consent, consent_method, do_not_email, created_at,
                updated_at, last_activity_at)
            SELECT 'bench' || i || '@exemple.fr', 'Prénom' || i, 'Nom', 'Société', '', '', '', '',
                '', '', '', {stage_sql}, now(), 0, 'granted', '', false, now(), now(), now()
            FROM generate_series(1, %s) i
            """,
            [n],
        )
        cursor.execute("ANALYZE contacts_contact")
        cursor.execute("ANALYZE contact_search")


EVENT_MIX = """
CASE
  WHEN r < 0.45 THEN 'page_view' WHEN r < 0.60 THEN 'email_open' WHEN r < 0.70 THEN 'email_click'
  WHEN r < 0.80 THEN 'download' WHEN r < 0.86 THEN 'newsletter_subscribe'
  WHEN r < 0.90 THEN 'newsletter_unsubscribe' WHEN r < 0.95 THEN 'form_submit'
  ELSE 'demo_request' END
"""
URLS = "(ARRAY['/pricing', '/blog/scoring', '/careers', '/features', '/pricing/pro'])"


def events(n: int) -> None:
    """n events spread over every contact and the last 180 days, already handled."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id), max(id) FROM contacts_contact")
        low, high = cursor.fetchone()
        cursor.execute(
            f"""
            INSERT INTO contacts_event (contact_id, type, occurred_at, received_at, properties,
                source, idempotency_key)
            SELECT %s + (i %% (%s - %s + 1)), {EVENT_MIX},
                now() - (i %% 180) * interval '1 day' - (i %% 1440) * interval '1 minute', now(),
                jsonb_build_object('url', {URLS}[1 + i %% 5], 'form', 'contact'),
                'bench', NULL
            FROM (SELECT i, random() AS r FROM generate_series(1, %s) i) g
            """,
            [low, high, low, n],
        )
        cursor.execute("ANALYZE contacts_event")
