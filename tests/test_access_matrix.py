"""Least privilege as a matrix: each role × each contact-scoped URL (GET and its POST action) ×
contacts in each state → the status the table below says (``contacts.access`` is the rule).
The URLconf is walked, so a new URL taking a contact id fails here until it is in the table."""

import pytest
from django.test import Client
from django.urls import NoReverseMatch, reverse

from contacts.models import Contact, ContactAudit, Notification, SalesRep, Team
from nurturing.models import Sequence
from tests.factories import ContactFactory, UserFactory
from tests.test_contact_visibility import NOT_A_CONTACT as NOT_A_CONTACT_BEFORE
from tests.test_contact_visibility import url_names_with_an_id

pytestmark = pytest.mark.django_db

# URLs whose integer argument is an import job or a sequence, not a contact.
NOT_A_CONTACT = NOT_A_CONTACT_BEFORE | {
    "contact-import-summary",
    "contact-import-mapping-save",
    "contact-import-mapping-apply",
    "nurturing-sequence-activate",
    "notification-open",  # a notification (another user's is a 404: tests/test_notifications.py)
}

ROLES = ["anonymous", "marketer", "rep_a", "rep_b", "manager_a", "manager_b", "manager_all",
         "admin"]  # fmt: skip
# The contacts, in the order of each cell's five letters: an unclaimed SQL (the queue), rep A's
# lead, rep B's lead, a marketing lead (MQL, nobody's), rep A's client.
STATES = ["queue", "a_lead", "b_lead", "marketing", "a_client"]
CODES = {"2": 200, "3": 302, "4": 403, "N": 404, "5": 405}
# Teams: North = rep A + manager A; South = rep B + manager B; manager_all has no team (and so
# manages every rep's contacts). 3 = a redirect: to the login page for the anonymous, else the
# answer of an action (done, or refused with a message when the contact's state forbids it).
# fmt: off
MATRIX = {
    #                                    anonymous marketer rep_a    rep_b    manager_a manager_b manager_all admin
    ("contact-detail", "get"):          ("33333", "22222", "22NN2", "2N2NN", "22NN2", "2N2NN", "222N2", "22222"),
    ("score-explanation", "get"):       ("33333", "22222", "22NN2", "2N2NN", "22NN2", "2N2NN", "222N2", "22222"),
    ("nurturing-contact-enrollments", "get"):
                                        ("33333", "22222", "22NN2", "2N2NN", "22NN2", "2N2NN", "222N2", "22222"),
    ("queue-lead", "get"):              ("33333", "44444", "22NN2", "2N2NN", "22NN2", "2N2NN", "222N2", "22222"),
    ("queue-lead", "post"):             ("33333", "44444", "43NN3", "4N3NN", "44NN4", "4N4NN", "444N4", "33333"),
    ("contact-edit", "get"):            ("33333", "22222", "44444", "44444", "44444", "44444", "44444", "22222"),
    ("contact-edit", "post"):           ("33333", "22222", "44444", "44444", "44444", "44444", "44444", "22222"),
    ("contact-email-status-clear", "get"):
                                        ("33333", "55555", "44444", "44444", "44444", "44444", "44444", "55555"),
    ("contact-email-status-clear", "post"):
                                        ("33333", "33333", "44444", "44444", "44444", "44444", "44444", "33333"),
    ("contact-export-json", "get"):     ("55555", "55555", "55555", "55555", "55555", "55555", "55555", "55555"),
    ("contact-export-json", "post"):    ("33333", "22222", "44444", "44444", "44444", "44444", "44444", "22222"),
    ("contact-erase", "get"):           ("33333", "22222", "44444", "44444", "44444", "44444", "44444", "22222"),
    ("contact-erase", "post"):          ("33333", "33333", "44444", "44444", "44444", "44444", "44444", "33333"),
    ("nurturing-contact-enroll", "get"):
                                        ("33333", "55555", "44444", "44444", "44444", "44444", "44444", "55555"),
    ("nurturing-contact-enroll", "post"):
                                        ("33333", "33333", "44444", "44444", "44444", "44444", "44444", "33333"),
    ("queue-claim", "get"):             ("55555", "55555", "55555", "55555", "55555", "55555", "55555", "55555"),
    ("queue-claim", "post"):            ("33333", "44444", "33333", "33333", "33333", "33333", "33333", "33333"),
    ("queue-team-reassign", "get"):     ("55555", "55555", "55555", "55555", "55555", "55555", "55555", "55555"),
    ("queue-team-reassign", "post"):    ("33333", "44444", "44444", "44444", "43NN3", "4N3NN", "433N3", "33333"),
    ("queue-team-release", "get"):      ("55555", "55555", "55555", "55555", "55555", "55555", "55555", "55555"),
    ("queue-team-release", "post"):     ("33333", "44444", "44444", "44444", "43NN3", "4N3NN", "433N3", "33333"),
    ("contact-activities", "get"):      ("33333", "22222", "22NN2", "2N2NN", "22NN2", "2N2NN", "222N2", "22222"),
    ("contact-activity-note", "get"):   ("55555", "55555", "55555", "55555", "55555", "55555", "55555", "55555"),
    ("contact-activity-note", "post"):  ("33333", "34434", "33NN3", "3N3NN", "33NN3", "3N3NN", "333N3", "33333"),
    ("contact-activity-call", "get"):   ("55555", "55555", "55555", "55555", "55555", "55555", "55555", "55555"),
    ("contact-activity-call", "post"):  ("33333", "34434", "33NN3", "3N3NN", "33NN3", "3N3NN", "333N3", "33333"),
    ("contact-activity-meeting", "get"):
                                        ("55555", "55555", "55555", "55555", "55555", "55555", "55555", "55555"),
    ("contact-activity-meeting", "post"):
                                        ("33333", "34434", "33NN3", "3N3NN", "33NN3", "3N3NN", "333N3", "33333"),
    ("contact-activity-email", "get"):  ("55555", "55555", "55555", "55555", "55555", "55555", "55555", "55555"),
    ("contact-activity-email", "post"): ("33333", "34434", "33NN3", "3N3NN", "33NN3", "3N3NN", "333N3", "33333"),
    ("queue-lead-estimate", "get"):     ("55555", "55555", "55555", "55555", "55555", "55555", "55555", "55555"),
    ("queue-lead-estimate", "post"):    ("33333", "44444", "43NN3", "4N3NN", "44NN4", "4N4NN", "444N4", "33333"),
}
# Pages without a contact id: who may open them (the lists and exports of every contact are
# marketers'; a rep never lists or exports them). "pipeline" is the deals page (skipped while
# the URL does not exist).
PAGES = {
    #                     anonymous marketer rep_a rep_b manager_a manager_b manager_all admin
    "contact-list":       (302, 200, 403, 403, 403, 403, 403, 200),
    "contact-export":     (302, 200, 403, 403, 403, 403, 403, 200),
    "contact-create":     (302, 200, 403, 403, 403, 403, 403, 200),
    "contact-import":     (302, 200, 403, 403, 403, 403, 403, 200),
    "home":               (302, 200, 302, 302, 302, 302, 302, 200),
    "nurturing-sequences": (302, 200, 403, 403, 403, 403, 403, 200),
    "nurturing-enroll-list": (302, 200, 403, 403, 403, 403, 403, 200),
    "score-quality":      (302, 200, 403, 403, 403, 403, 403, 200),
    "queue":              (302, 403, 200, 200, 200, 200, 200, 200),
    "queue-mine":         (302, 403, 200, 200, 200, 200, 200, 200),
    "queue-team":         (302, 403, 403, 403, 200, 200, 200, 200),
    "pipeline":           (302, 403, 403, 403, 200, 200, 200, 200),
}
# fmt: on
# What each POST sends: enough for the action to go through when it is allowed.
POST_DATA = {
    "queue-lead": lambda world: {"outcome": "recycled", "reason": "Pas encore prêt"},
    "contact-edit": lambda world: {"email": "not an address"},  # refused by the form: 200
    "nurturing-contact-enroll": lambda world: {"sequence": world["sequence"].pk},
    "queue-team-reassign": lambda world: {"to": world["users"]["manager_a"].pk},
    "queue-team-release": lambda world: {"reason": "Parti en congés"},
    "contact-activity-note": lambda world: {"body": "Rappeler après l’été"},
    "contact-activity-call": lambda world: {"call_outcome": "reached", "duration_minutes": "5"},
    "contact-activity-meeting": lambda world: {"body": "Démo sur site"},
    "contact-activity-email": lambda world: {"subject": "Votre devis", "body": "Bonjour, voici."},
    "queue-lead-estimate": lambda world: {"expected_amount": "1200", "expected_currency": "EUR"},
}


@pytest.fixture
def world(db):
    north, south = Team.objects.create(name="North"), Team.objects.create(name="South")
    users = {
        "marketer": UserFactory(username="claire", roles=["marketing"]),
        "rep_a": UserFactory(username="hugo", roles=["sales"]),
        "rep_b": UserFactory(username="lea", roles=["sales"]),
        "manager_a": UserFactory(username="nadia", roles=["sales_manager"]),
        "manager_b": UserFactory(username="samir", roles=["sales_manager"]),
        "manager_all": UserFactory(username="victor", roles=["sales_manager"]),
        "admin": UserFactory(username="admin", is_staff=True, is_superuser=True),
    }
    for name, team in [("rep_a", north), ("manager_a", north), ("rep_b", south),
                       ("manager_b", south)]:  # fmt: skip
        SalesRep.objects.create(user=users[name], team=team)
    SalesRep.objects.create(user=users["manager_all"])
    sql = Contact.Stage.SQL
    contacts = {
        "queue": ContactFactory(stage=sql, last_name="Enfile"),
        "a_lead": ContactFactory(stage=sql, owner=users["rep_a"], last_name="Alpha"),
        "b_lead": ContactFactory(stage=sql, owner=users["rep_b"], last_name="Bravo"),
        "marketing": ContactFactory(stage=Contact.Stage.MQL, last_name="Marketing"),
        "a_client": ContactFactory(
            stage=Contact.Stage.CLIENT, owner=users["rep_a"], last_name="Cliente"
        ),
    }
    sequence = Sequence.objects.create(name="Bienvenue", trigger="manual", active=True)
    return {"users": users, "contacts": contacts, "sequence": sequence}


def login(role, world):
    client = Client()
    if role != "anonymous":
        client.force_login(world["users"][role])
    return client


CASES = [
    pytest.param(
        name,
        method,
        role,
        state,
        CODES[row[ROLES.index(role)][STATES.index(state)]],
        id=f"{name}-{method}-{role}-{state}",
    )  # fmt: skip
    for (name, method), row in MATRIX.items()
    for role in ROLES
    for state in STATES
]


@pytest.mark.parametrize("name,method,role,state,expected", CASES)
def test_each_role_gets_what_the_matrix_says(world, name, method, role, state, expected):
    contact = world["contacts"][state]
    client = login(role, world)
    url = reverse(name, args=[contact.pk])

    if method == "post":
        response = client.post(url, POST_DATA.get(name, lambda w: {})(world))
    else:
        response = client.get(url)

    assert response.status_code == expected, f"{role} {method.upper()} {url} ({state})"
    if expected == 302 and role == "anonymous":
        assert response["Location"].startswith(reverse("login"))
    if expected in (403, 404):
        # Refused: nothing of the contact is shown (404 is the page for a missing id).
        assert contact.last_name not in response.content.decode()
    if expected == 200 and method == "get":
        assert contact.last_name in response.content.decode()


@pytest.mark.parametrize("page", sorted(PAGES))
@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_what_the_table_says_on_pages_without_a_contact(world, page, role):
    try:
        url = reverse(page)
    except NoReverseMatch:
        pytest.skip(f"no URL named {page} yet")
    response = login(role, world).get(url)
    assert response.status_code == PAGES[page][ROLES.index(role)], f"{role} on {url}"


def test_every_url_taking_a_contact_id_is_in_the_matrix():
    in_matrix = {name for name, _method in MATRIX}
    missing = set(url_names_with_an_id()) - NOT_A_CONTACT - in_matrix
    assert not missing, f"add these contact URLs to MATRIX in {__file__}: {sorted(missing)}"
    # Each is tried with GET at least (a POST-only URL: 405), and POST where it acts.
    assert all((name, "get") in MATRIX for name in in_matrix)


# --- What the matrix's answers mean --------------------------------------------------------


def test_a_manager_sees_the_team_leads_by_rep_and_not_another_teams(world):
    page = login("manager_a", world).get(reverse("queue-team")).content.decode()
    assert "Alpha" in page and world["users"]["rep_a"].get_full_name() in page
    assert "Bravo" not in page and "Cliente" not in page and "Enfile" not in page


def test_a_manager_reassigns_a_team_lead_and_both_reps_are_told(world):
    users, lead = world["users"], world["contacts"]["a_lead"]
    client = login("manager_a", world)

    response = client.post(
        reverse("queue-team-reassign", args=[lead.pk]), {"to": users["manager_a"].pk}, follow=True
    )

    assert [m.level_tag for m in response.context["messages"]] == ["success"]
    assert Contact.objects.get(pk=lead.pk).owner == users["manager_a"]
    audit = ContactAudit.objects.get(contact=lead, action=ContactAudit.Action.REASSIGNED)
    assert audit.actor == users["manager_a"]
    assert Notification.objects.filter(
        user=users["rep_a"], kind=Notification.Kind.TAKEN, contact=lead
    ).exists()
    # The manager gave it to themself: no note to tell them what they did.
    assert not Notification.objects.filter(kind=Notification.Kind.ASSIGNED).exists()


def test_the_new_owner_is_notified_of_a_reassigned_lead(world):
    users, lead = world["users"], world["contacts"]["a_lead"]
    SalesRep.objects.filter(pk=users["rep_b"].pk).update(team=Team.objects.get(name="North"))

    login("manager_a", world).post(
        reverse("queue-team-reassign", args=[lead.pk]), {"to": users["rep_b"].pk}
    )

    note = Notification.objects.get(kind=Notification.Kind.ASSIGNED)
    assert (note.user, note.contact) == (users["rep_b"], lead)
    assert login("rep_b", world).get(reverse("queue-lead", args=[lead.pk])).status_code == 200
    assert login("rep_a", world).get(reverse("queue-lead", args=[lead.pk])).status_code == 404


def test_a_manager_cannot_give_a_lead_to_a_rep_of_another_team(world):
    users, lead = world["users"], world["contacts"]["a_lead"]

    response = login("manager_a", world).post(
        reverse("queue-team-reassign", args=[lead.pk]), {"to": users["rep_b"].pk}, follow=True
    )

    assert [m.level_tag for m in response.context["messages"]] == ["error"]
    assert Contact.objects.get(pk=lead.pk).owner == users["rep_a"]


def test_a_manager_releases_a_team_lead_with_a_reason(world):
    lead = world["contacts"]["a_lead"]
    client = login("manager_a", world)

    refused = client.post(reverse("queue-team-release", args=[lead.pk]), {"reason": " "})
    assert Contact.objects.get(pk=lead.pk).owner == world["users"]["rep_a"]
    assert refused.status_code == 302
    client.post(reverse("queue-team-release", args=[lead.pk]), {"reason": "Parti en congés"})

    assert Contact.objects.get(pk=lead.pk).owner is None
    audit = ContactAudit.objects.get(contact=lead, action=ContactAudit.Action.RELEASED)
    assert "Parti en congés" in audit.note
    page = login("rep_b", world).get(reverse("queue")).content.decode()
    assert "Alpha" in page  # back in the queue


def test_a_manager_does_not_record_the_outcome_of_a_reps_lead(world):
    lead = world["contacts"]["a_lead"]
    page = login("manager_a", world).get(reverse("queue-lead", args=[lead.pk])).content.decode()
    assert 'name="outcome"' not in page
    assert 'data-testid="team-lead-link"' in page  # but is sent to the team page
    rep_page = login("rep_a", world).get(reverse("queue-lead", args=[lead.pk])).content.decode()
    assert 'name="outcome"' in rep_page and "team-lead-link" not in rep_page
    assert Contact.objects.get(pk=lead.pk).stage == Contact.Stage.SQL


def test_the_team_link_is_for_managers(world):
    team = reverse("queue-team")
    assert f'href="{team}"' in login("manager_a", world).get(reverse("queue")).content.decode()
    assert f'href="{team}"' not in login("rep_a", world).get(reverse("queue")).content.decode()
