"""The contact page explains a score (the ledger by cause) and a stage (the move, the next step).

The UI runs in French in tests and these labels have no translation yet: the assertions read
rule names, numbers, URLs and stored texts, which are what a marketer checks anyway.
"""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from contacts.events import event_record
from scoring.decay import decay_apply
from scoring.models import ScoreRule
from tests.factories import ContactFactory
from tests.utils import record

pytestmark = pytest.mark.django_db


def explanation_url(contact) -> str:
    return reverse("score-explanation", args=[contact.pk])


def causes(body: str) -> dict[str, tuple[int, int]]:
    """{cause name: (signed total, lines listed)} as the page shows them."""
    found = {}
    scored = body.split('<ol class="causes">')[1].split("</ol>")[0] if "causes" in body else ""
    for chunk in scored.split('<li class="cause ')[1:]:
        name = re.search(r'<strong class="cause-name">(.*?)</strong>', chunk).group(1)
        total = re.search(r'data-testid="group-total">(.*?)<', chunk).group(1)
        found[name] = (int(total.replace("−", "-").replace("+", "")), chunk.count('class="line"'))
    return found


def section(body: str, testid: str) -> str:
    return re.search(rf'data-testid="{testid}">(.*?)<', body, re.DOTALL).group(1)


def test_a_marketer_reads_why_a_lead_became_an_sql(
    marketer_client, django_capture_on_commit_callbacks
):
    contact = ContactFactory(stage="lead")
    now = timezone.now()
    capture = django_capture_on_commit_callbacks
    record(contact, "page_view", capture=capture, occurred_at=now - timedelta(days=3),
           url="https://ex.fr/pricing", title="Tarifs")  # fmt: skip
    record(contact, "page_view", capture=capture, occurred_at=now - timedelta(days=2),
           url="https://ex.fr/pricing?plan=pro")  # fmt: skip
    record(contact, "demo_request", capture=capture, occurred_at=now - timedelta(days=1))

    body = marketer_client.get(explanation_url(contact)).content.decode()

    assert contact.score == 50 and contact.stage == "sql"
    assert causes(body) == {"Pricing page": (30, 2), "Demo request": (20, 1)}
    assert sum(total for total, _ in causes(body).values()) == contact.score
    assert body.index("Pricing page") < body.index("Demo request")  # largest first
    assert "https://ex.fr/pricing?plan=pro" in body and "Tarifs" in body
    assert section(body, "score") == "50"
    assert section(body, "moved-by") == "Seuil\xa0: SQL à 60\xa0points ou Démo demandée"
    assert section(body, "move-reason") == "Démo demandée"  # the event type's label
    assert 'data-testid="next-stage"' not in body  # SQL onwards is the sales team's work


def test_decay_has_its_own_line_and_the_totals_still_make_the_score(
    marketer_client, django_capture_on_commit_callbacks
):
    contact = ContactFactory(stage="lead")
    record(contact, "page_view", capture=django_capture_on_commit_callbacks, url="/pricing")
    assert decay_apply(as_of=timezone.now() + timedelta(days=91)) == 1
    contact.refresh_from_db()

    body = marketer_client.get(explanation_url(contact)).content.decode()

    assert causes(body) == {"Pricing page": (15, 1), "90 days without activity": (-10, 1)}
    assert contact.score == 5 == sum(total for total, _ in causes(body).values())
    assert "−10" in body


def test_machine_signals_are_listed_apart_and_score_nothing(
    marketer_client, django_capture_on_commit_callbacks
):
    contact = ContactFactory(stage="lead")
    capture = django_capture_on_commit_callbacks
    record(contact, "email_click", capture=capture, machine=True, url="https://ex.fr/offre")
    record(contact, "download", capture=capture, url="/guide.pdf")

    body = marketer_client.get(explanation_url(contact)).content.decode()

    assert causes(body) == {"Download": (1, 1)}  # the click is not among the scored causes
    machine = body.split('<div class="machine">')[1].split("</div>")[0]
    assert "Email clicked" in machine and "https://ex.fr/offre" in machine
    assert machine.count('class="line"') == 1
    assert contact.score == 1


def test_lines_of_a_deleted_rule_keep_their_reason(
    marketer_client, django_capture_on_commit_callbacks
):
    contact = ContactFactory(stage="lead")
    record(contact, "download", capture=django_capture_on_commit_callbacks, url="/a.pdf")
    record(contact, "download", capture=django_capture_on_commit_callbacks, url="/b.pdf")
    ScoreRule.objects.filter(name="Download").delete()

    body = marketer_client.get(explanation_url(contact)).content.decode()

    assert causes(body) == {"Download": (2, 2)}
    assert "kind-deleted" in body and contact.score == 2


def test_the_next_stage_hint_shows_the_current_thresholds(
    marketer_client, django_capture_on_commit_callbacks
):
    lead = ContactFactory(stage="lead")
    client = ContactFactory(stage="client")

    lead_body = marketer_client.get(explanation_url(lead)).content.decode()
    client_body = marketer_client.get(explanation_url(client)).content.decode()

    hints = re.findall(r'data-testid="next-stage">(.*?)</li>', lead_body, re.DOTALL)
    assert [("MQL" in h, "20" in h) for h in hints][0] == (True, True)
    assert "SQL" in hints[-1] and "60" in hints[-1] and "Démo demandée" in hints[-1]
    assert "demo_request" not in lead_body
    assert "Recommandation" in section(client_body, "next-stage")


def test_the_contact_page_loads_the_explanation_with_a_plain_link_as_fallback(marketer_client):
    contact = ContactFactory()
    body = marketer_client.get(reverse("contact-detail", args=[contact.pk])).content.decode()

    url = explanation_url(contact)
    assert f'id="score-explanation" hx-get="{url}" hx-trigger="load"' in body
    assert f'<a href="{url}">' in body


def test_htmx_gets_the_fragment_and_a_plain_request_the_whole_page(
    marketer_client, django_capture_on_commit_callbacks
):
    contact = ContactFactory(stage="lead")
    record(contact, "download", capture=django_capture_on_commit_callbacks, url="/guide.pdf")

    fragment = marketer_client.get(explanation_url(contact), headers={"HX-Request": "true"})
    page = marketer_client.get(explanation_url(contact))

    assert "<html" not in fragment.content.decode() and "Download" in fragment.content.decode()
    assert "<html" in page.content.decode() and "Download" in page.content.decode()
    assert f'href="{reverse("contact-detail", args=[contact.pk])}"' in page.content.decode()
    assert "HX-Request" in fragment["Vary"]


def test_a_sales_rep_may_read_it_others_may_not(client, sales_client, no_role_user):
    contact = ContactFactory(stage="sql")  # in the queue: a rep may open it
    url = explanation_url(contact)

    assert sales_client.get(url).status_code == 200
    assert sales_client.get(reverse("score-explanation", args=[999999])).status_code == 404
    client.logout()
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and reverse("login") in anonymous["Location"]
    client.force_login(no_role_user)
    assert client.get(url).status_code == 403


def test_names_and_event_data_are_escaped(marketer_client, django_capture_on_commit_callbacks):
    contact = ContactFactory(stage="lead", first_name="<script>alert(1)</script>")
    record(contact, "download", capture=django_capture_on_commit_callbacks,
           url="/x.pdf?<script>", title="<img src=x onerror=alert(2)>")  # fmt: skip

    body = marketer_client.get(explanation_url(contact)).content.decode()

    assert "<script>" not in body.split("</head>")[1]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<img src=x" not in body and "&lt;img src=x onerror=alert(2)&gt;" in body


def test_the_number_of_queries_does_not_grow_with_the_ledger(
    marketer_client, django_capture_on_commit_callbacks
):
    small, large = ContactFactory(stage="lead"), ContactFactory(stage="lead")
    with django_capture_on_commit_callbacks(execute=True):
        # Both reach MQL: the stage's reasons now are read the same way for both.
        for contact, n in ((small, 20), (large, 40)):
            for i in range(n):
                event_record(contact=contact, type="download", properties={"url": f"/{i}.pdf"})
    large.refresh_from_db()
    marketer_client.get(explanation_url(small))  # warm the session

    with CaptureQueriesContext(connection) as few:
        marketer_client.get(explanation_url(small))
    with CaptureQueriesContext(connection) as many:
        body = marketer_client.get(explanation_url(large)).content.decode()

    assert len(few.captured_queries) == len(many.captured_queries)
    assert causes(body) == {"Download": (40, 20)}  # 20 listed, the rest counted
    assert large.score == 40


def test_each_rule_is_explained_in_plain_words_with_its_conditions(
    marketer_client, django_capture_on_commit_callbacks
):
    ScoreRule.objects.create(name="Lecture longue", event_type="page_view", points=5,
                             url_contains="/docs", property_name="seconds",
                             property_operator="gte", property_number=120, count_at_least=2,
                             count_within_days=30)  # fmt: skip
    contact = ContactFactory(stage="lead")
    now = timezone.now()
    for days, seconds in ((3, 150), (2, "200.5"), (1, "long")):
        record(contact, "page_view", capture=django_capture_on_commit_callbacks,
               occurred_at=now - timedelta(days=days), url="/docs/api", seconds=seconds)  # fmt: skip

    body = marketer_client.get(explanation_url(contact)).content.decode()

    assert causes(body)["Lecture longue"] == (5, 1)  # the second long read in 30 days
    assert section(body, "rule-description") == (
        "Page vue avec URL contient /docs, seconds ≥ 120, au moins 2 en 30 jours"
    )
