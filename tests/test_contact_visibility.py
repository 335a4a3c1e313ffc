"""Which contacts a sales rep may open: the queue (unclaimed SQLs), the contacts they own (their
leads, their clients, what they were given), nothing else. Every URL that takes a contact id is
listed from the URLconf, so a new one without the check fails here."""

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from contacts.models import Contact
from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.django_db

# URLs whose integer argument is not a contact (or that are not for signed-in users' pages).
NOT_A_CONTACT = {
    "contact-import-job",  # an import job
    "contact-import-errors",
    "nurturing-sequence",  # a sequence
    "nurturing-sequence-enroll",
    "follow-up-done",  # a follow-up (another rep's is a 404: tests/test_my_day.py)
    "follow-up-move",
    "email-template-edit",  # a rep's email template (their own only)
}


def url_names_with_an_id(resolvers=None, namespace=""):
    """Every named URL pattern with an integer argument, outside the admin (staff only) and
    the API (API keys)."""
    found = []
    for entry in resolvers if resolvers is not None else get_resolver().url_patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace in ("admin",) or str(entry.pattern).startswith("api/"):
                continue
            found += url_names_with_an_id(entry.url_patterns, namespace)
        elif isinstance(entry, URLPattern) and entry.name:
            if any(
                c.__class__.__name__ == "IntConverter" for c in entry.pattern.converters.values()
            ):
                found.append(entry.name)
    return found


CONTACT_URLS = sorted(set(url_names_with_an_id()) - NOT_A_CONTACT)


def test_the_contact_urls_are_all_found():
    assert {"contact-detail", "contact-edit", "contact-export-json", "contact-erase",
            "queue-lead", "queue-claim", "score-explanation", "nurturing-contact-enrollments",
            "nurturing-contact-enroll"} <= set(CONTACT_URLS)  # fmt: skip


def answer(client, name, pk, method, htmx=False):
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    url = reverse(name, args=[pk])
    response = getattr(client, method)(url, **headers)
    said = [str(m) for m in get_messages(response.wsgi_request)]
    return response, (response.status_code, response.get("Location"), said)


@pytest.fixture
def world(sales_rep, other_rep):
    return {
        "suspect": ContactFactory(stage=Contact.Stage.SUSPECT, first_name="Sylvie",
                                  last_name="Suspecte", email="sylvie@example.fr"),
        "prospect": ContactFactory(stage=Contact.Stage.MQL, first_name="Marc",
                                   last_name="Prospect", email="marc@example.fr"),
        "other reps client": ContactFactory(stage=Contact.Stage.CLIENT, owner=other_rep,
                                            first_name="Odile", last_name="Autre",
                                            email="odile@example.fr"),
        "other reps lead": ContactFactory(stage=Contact.Stage.SQL, owner=other_rep,
                                          first_name="Olga", last_name="Prise",
                                          email="olga@example.fr"),
        "own lead": ContactFactory(stage=Contact.Stage.SQL, owner=sales_rep,
                                   first_name="Paul", last_name="Mien",
                                   email="paul@example.fr"),
        "own client": ContactFactory(stage=Contact.Stage.CLIENT, owner=sales_rep,
                                     first_name="Clara", last_name="Cliente",
                                     email="clara@example.fr"),
        "waiting in the queue": ContactFactory(stage=Contact.Stage.SQL, first_name="Quentin",
                                               last_name="File", email="quentin@example.fr"),
    }  # fmt: skip


HIDDEN = ["suspect", "prospect", "other reps client", "other reps lead"]
SHOWN = ["own lead", "own client", "waiting in the queue"]
CALLS = [("get", False), ("get", True), ("post", False)]


@pytest.mark.parametrize("name", CONTACT_URLS)
@pytest.mark.parametrize("method,htmx", CALLS)
@pytest.mark.parametrize("whose", HIDDEN)
def test_a_rep_gets_the_same_answer_as_for_a_missing_contact(
    sales_client, sales_rep, world, name, method, htmx, whose
):
    contact = world[whose]
    before = Contact.objects.values("stage", "owner_id").get(pk=contact.pk)
    missing = Contact.objects.order_by("-pk").first().pk + 1000

    response, seen = answer(sales_client, name, contact.pk, method, htmx)
    fresh = Client()  # messages of the first answer must not add to the second's
    fresh.force_login(sales_rep)
    _, nothing = answer(fresh, name, missing, method, htmx)

    if (name, whose) == ("queue-claim", "other reps lead") and method == "post":
        # Losing the race to a colleague: told who was faster, not whom the lead is about.
        assert seen[:2] == nothing[:2] and len(seen[2]) == 1 and "Léa Dubois" in seen[2][0]
    else:
        assert seen == nothing
    assert response.status_code in (302, 403, 404, 405)
    page = b"".join(response.streaming_content) if response.streaming else response.content
    assert contact.email.encode() not in page and contact.last_name.encode() not in page
    assert Contact.objects.values("stage", "owner_id").get(pk=contact.pk) == before


@pytest.mark.parametrize("name", CONTACT_URLS)
@pytest.mark.parametrize("whose", SHOWN)
def test_a_rep_opens_the_queue_and_their_own_contacts(sales_client, world, name, whose):
    contact = world[whose]

    response, _ = answer(sales_client, name, contact.pk, "get")

    # 403: a marketers' page (the same for every contact); 405: a POST-only endpoint.
    assert response.status_code in (200, 403, 405), name
    if response.status_code == 200:
        assert contact.last_name in response.content.decode()


@pytest.mark.parametrize(
    "page", ["contact-detail", "score-explanation", "nurturing-contact-enrollments"]
)
@pytest.mark.parametrize("persona", ["marketer", "admin_user", "marketing_and_sales"])
def test_marketers_and_staff_open_every_contact(client, request, world, persona, page):
    user = (
        UserFactory(username="both", roles=["marketing", "sales"])
        if persona == "marketing_and_sales"
        else request.getfixturevalue(persona)
    )
    client.force_login(user)
    for contact in world.values():
        assert client.get(reverse(page, args=[contact.pk])).status_code == 200


def test_visible_to_is_the_one_rule(sales_rep, marketer, no_role_user, world):
    assert set(Contact.objects.visible_to(sales_rep)) == {world[w] for w in SHOWN}
    assert Contact.objects.visible_to(marketer).count() == len(world)
    assert not Contact.objects.visible_to(no_role_user).exists()


def test_a_rep_no_longer_opens_a_lead_they_recorded_as_lost(sales_client, world):
    lead = world["own lead"]
    sales_client.post(
        reverse("queue-lead", args=[lead.pk]), {"outcome": "lost", "lost_reason": "budget"}
    )
    assert Client().get(reverse("contact-detail", args=[lead.pk])).status_code == 302
    assert sales_client.get(reverse("contact-detail", args=[lead.pk])).status_code == 404


def test_a_reps_contact_page_names_no_contact_the_rep_may_not_open(sales_client, world):
    client_of_mine = world["own client"]
    Contact.objects.filter(pk=client_of_mine.pk).update(referred_by=world["suspect"])
    Contact.objects.filter(pk=world["prospect"].pk).update(referred_by=client_of_mine)

    page = sales_client.get(reverse("contact-detail", args=[client_of_mine.pk])).content.decode()

    assert "Suspecte" not in page and "Prospect" not in page
