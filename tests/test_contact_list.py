from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.factories import ContactFactory, LeadSourceFactory, UserFactory

URL = reverse("contact-list")


def names_in(response) -> list[str]:
    return [contact.display_name for contact in response.context["page"]]


@pytest.mark.django_db
def test_search_finds_contacts_by_email_name_or_company(marketer_client):
    ContactFactory(
        first_name="Élodie", last_name="Fournier", email="elodie@acme.fr", company="Acme"
    )
    ContactFactory(
        first_name="Jérôme", last_name="Blanc", email="jb@globex.fr", company="Globex SA"
    )
    ContactFactory(first_name="Zoé", last_name="Martin", email="zoe@initech.fr", company="Initech")

    assert names_in(marketer_client.get(URL, {"q": "globex"})) == ["Jérôme Blanc"]
    assert names_in(marketer_client.get(URL, {"q": "elodie@"})) == ["Élodie Fournier"]
    assert names_in(marketer_client.get(URL, {"q": "Zoé Martin"})) == ["Zoé Martin"]
    assert names_in(marketer_client.get(URL, {"q": "nobody-here"})) == []


@pytest.mark.django_db
def test_filters_combine_stage_owner_source_score_and_activity(marketer_client, sales_rep):
    ads = LeadSourceFactory(name="Google Ads")
    now = timezone.now()
    wanted = ContactFactory(
        stage="sql",
        owner=sales_rep,
        source=ads,
        score=70,
        last_activity_at=now - timedelta(days=3),
        first_name="Wanted",
        last_name="One",
    )
    ContactFactory(
        stage="sql",
        owner=sales_rep,
        source=ads,
        score=70,
        last_activity_at=now - timedelta(days=40),
    )
    ContactFactory(stage="sql", owner=None, source=ads, score=70, last_activity_at=now)
    ContactFactory(stage="mql", owner=sales_rep, source=ads, score=70, last_activity_at=now)
    ContactFactory(stage="sql", owner=sales_rep, source=ads, score=10, last_activity_at=now)
    ContactFactory(
        stage="sql", owner=sales_rep, source=LeadSourceFactory(), score=70, last_activity_at=now
    )

    response = marketer_client.get(URL, {
        "stage": "sql", "owner": sales_rep.pk, "source": ads.pk,
        "score_min": 50, "score_max": 100, "activity": "7",
    })  # fmt: skip

    assert names_in(response) == [wanted.display_name]


@pytest.mark.django_db
def test_unassigned_and_never_active_filters(marketer_client, sales_rep):
    ContactFactory(owner=sales_rep, last_activity_at=timezone.now())
    quiet = ContactFactory(owner=None, last_activity_at=None, first_name="Quiet", last_name="Lead")

    assert names_in(marketer_client.get(URL, {"owner": "none", "activity": "never"})) == [
        quiet.display_name
    ]


@pytest.mark.django_db
def test_sorting_by_score_both_ways_and_by_funnel_stage(marketer_client):
    for score, stage in [(5, "client"), (50, "lead"), (20, "mql")]:
        ContactFactory(first_name=f"S{score}", last_name="X", score=score, stage=stage)

    assert names_in(marketer_client.get(URL, {"sort": "score"})) == ["S5 X", "S20 X", "S50 X"]
    assert names_in(marketer_client.get(URL, {"sort": "-score"})) == ["S50 X", "S20 X", "S5 X"]
    # Stage sorts in funnel order, not alphabetically ("client" < "lead" < "mql").
    assert names_in(marketer_client.get(URL, {"sort": "stage"})) == ["S50 X", "S20 X", "S5 X"]


@pytest.mark.django_db
def test_pagination_keeps_the_filters_in_its_links(marketer_client, settings):
    settings.CONTACTS_PER_PAGE = 10
    ContactFactory.create_batch(25, stage="mql")
    ContactFactory.create_batch(3, stage="lead")

    first = marketer_client.get(URL, {"stage": "mql"})
    third = marketer_client.get(URL, {"stage": "mql", "page": 3})

    assert first.context["page"].paginator.count == 25
    assert len(third.context["page"]) == 5
    assert "?stage=mql&amp;page=2" in first.content.decode()


@pytest.mark.django_db
def test_an_htmx_request_gets_only_the_results_and_a_reload_the_whole_page(marketer_client):
    ContactFactory(first_name="Agnès", last_name="Roux")

    full = marketer_client.get(URL, {"q": "Agnès"})
    partial = marketer_client.get(URL, {"q": "Agnès"}, headers={"HX-Request": "true"})
    restore = marketer_client.get(
        URL, {"q": "Agnès"}, headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )

    for response in (full, partial, restore):
        assert "Agnès Roux" in response.content.decode()
    assert "<html" in full.content.decode() and 'id="contact-filters"' in full.content.decode()
    assert "<html" not in partial.content.decode()
    assert 'id="contact-filters"' not in partial.content.decode()
    assert "<html" in restore.content.decode()
    assert "HX-Request" in partial["Vary"]


@pytest.mark.django_db
def test_an_unknown_stage_in_the_url_is_ignored_with_a_notice(marketer_client):
    ContactFactory.create_batch(2)

    response = marketer_client.get(URL, {"stage": "prospect", "score_min": "lots"})

    assert response.status_code == 200
    assert response.context["page"].paginator.count == 2
    notices = response.context["notices"]
    assert len(notices) == 2
    assert any("prospect" in notice for notice in notices)


@pytest.mark.django_db
def test_names_with_html_are_shown_escaped(marketer_client):
    contact = ContactFactory(first_name="<script>alert(1)</script>", company="<b>Evil</b> Corp")

    for url in (URL, reverse("contact-detail", args=[contact.pk])):
        body = marketer_client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
        assert "<b>Evil</b>" not in body


@pytest.mark.django_db
def test_the_list_runs_the_same_number_of_queries_for_5_or_50_contacts(
    marketer_client, django_assert_num_queries
):
    owners = UserFactory.create_batch(3, roles=["sales"])
    sources = LeadSourceFactory.create_batch(3)

    def add(n: int) -> None:
        for i in range(n):
            ContactFactory(owner=owners[i % 3], source=sources[i % 3])

    add(5)
    with CaptureQueriesContext(connection) as few:
        marketer_client.get(URL)
    add(45)
    with django_assert_num_queries(len(few.captured_queries)):
        response = marketer_client.get(URL)
    assert len(response.context["page"]) == 50
    assert len(few.captured_queries) <= 10


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_search_is_answered_from_its_trigram_index():
    from django.db import connection

    from contacts.models import Contact

    ContactFactory(first_name="Élodie", last_name="Fournier", company="Société Générale")
    query = Contact.objects.search("élodie fournier")
    assert [c.first_name for c in query] == ["Élodie"]
    sql, params = query.order_by().query.sql_with_params()
    with connection.cursor() as cursor:
        # A tiny table would be scanned, or walked in key order.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "_trgm" in plan


@pytest.mark.django_db
def test_a_search_with_too_many_matches_says_more_than_the_cap(marketer_client, monkeypatch):
    from contacts.views import CappedPaginator

    monkeypatch.setattr(CappedPaginator, "cap", 3)
    ContactFactory.create_batch(5, company="Société Martin")

    page = marketer_client.get("/contacts/", {"q": "martin"}).content.decode()
    assert "Plus de 3 contacts" in page
    assert marketer_client.get("/contacts/", {"q": "martin", "page": 2}).status_code == 200


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_search_follows_every_change_of_a_contact():
    """contact_search is kept by triggers: edits, bulk inserts, erasure and deletion."""
    from contacts.models import Contact

    anne = ContactFactory(first_name="Anne", last_name="Lefèvre", company="Ébénisterie")
    assert list(Contact.objects.search("lefèvre")) == [anne]
    anne.last_name = "Garnier"
    anne.save()
    assert list(Contact.objects.search("lefèvre")) == []
    assert list(Contact.objects.search("garnier ébénisterie")) == [anne]
    Contact.objects.filter(pk=anne.pk).update(score=42)  # not a searched column
    assert list(Contact.objects.search("garnier")) == [anne]
    Contact.objects.bulk_create([Contact(email=f"bulk{n}@zoë.example") for n in range(3)])
    assert Contact.objects.search("zoë").count() == 3
    Contact.objects.filter(email__startswith="bulk").delete()
    assert Contact.objects.search("zoë").count() == 0
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM contact_search")
        assert cursor.fetchone()[0] == Contact.objects.count()
