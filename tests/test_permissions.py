"""Each role against each page: who sees it, who is refused (403) and who must log in first."""

import pytest
from django.urls import reverse

from tests.factories import ContactFactory

PERSONAS = ["anonymous", "no_role_user", "marketer", "sales_rep", "admin_user"]

# page -> expected status per persona (302 = sent to the login page)
MATRIX = {
    "home": {"anonymous": 302, "no_role_user": 403, "marketer": 200, "sales_rep": 302, "admin_user": 200},
    "contact-list": {"anonymous": 302, "no_role_user": 403, "marketer": 200, "sales_rep": 403, "admin_user": 200},
    "contact-create": {"anonymous": 302, "no_role_user": 403, "marketer": 200, "sales_rep": 403, "admin_user": 200},
    "contact-detail": {"anonymous": 302, "no_role_user": 403, "marketer": 200, "sales_rep": 200, "admin_user": 200},
    "contact-edit": {"anonymous": 302, "no_role_user": 403, "marketer": 200, "sales_rep": 403, "admin_user": 200},
    "funnel-panel": {"anonymous": 302, "no_role_user": 403, "marketer": 200, "sales_rep": 403, "admin_user": 200},
    "score-quality": {"anonymous": 302, "no_role_user": 403, "marketer": 200, "sales_rep": 403, "admin_user": 200},
    "queue": {"anonymous": 302, "no_role_user": 403, "marketer": 403, "sales_rep": 200, "admin_user": 200},
    "queue-mine": {"anonymous": 302, "no_role_user": 403, "marketer": 403, "sales_rep": 200, "admin_user": 200},
    "queue-lead": {"anonymous": 302, "no_role_user": 403, "marketer": 403, "sales_rep": 200, "admin_user": 200},
    "contact-erase": {"anonymous": 302, "no_role_user": 403, "marketer": 200, "sales_rep": 403, "admin_user": 200},
    "admin:index": {"anonymous": 302, "no_role_user": 302, "marketer": 302, "sales_rep": 302, "admin_user": 200},
}  # fmt: skip
NEEDS_CONTACT = {"contact-detail", "contact-edit", "queue-lead", "contact-erase"}


@pytest.mark.django_db
@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("page", sorted(MATRIX))
def test_each_role_gets_what_it_should_on_each_page(client, request, persona, page):
    if persona != "anonymous":
        client.force_login(request.getfixturevalue(persona))
    # An SQL in the queue: a contact a sales rep may open (tests/test_contact_visibility.py).
    args = [ContactFactory(stage="sql").pk] if page in NEEDS_CONTACT else []
    url = reverse(page, args=args)

    response = client.get(url)

    expected = MATRIX[page][persona]
    assert response.status_code == expected, f"{persona} on {url}"
    if expected == 302 and persona == "anonymous":
        assert response["Location"].startswith(
            reverse("login") if page != "admin:index" else "/admin/login/"
        )
    if expected == 403:  # our explanation page, not a bare error
        assert {"403.html", "no_role.html"} & {t.name for t in response.templates}


@pytest.mark.django_db
def test_a_sales_rep_landing_on_the_home_page_is_sent_to_the_queue(client, sales_rep):
    client.force_login(sales_rep)
    response = client.get(reverse("home"), follow=True)
    assert response.redirect_chain[-1][0] == reverse("queue")
    assert response.status_code == 200


@pytest.mark.django_db
def test_a_user_without_a_team_is_told_what_to_do(client, no_role_user):
    client.force_login(no_role_user)
    response = client.get(reverse("home"))
    assert response.status_code == 403
    assert "administrat" in response.content.decode()


@pytest.mark.django_db
def test_logging_in_and_out(client, marketer):
    response = client.post(reverse("login"), {"username": "claire", "password": "secret-pass-123"})
    assert response.status_code == 302 and response["Location"] == reverse("home")
    assert client.get(reverse("contact-list")).status_code == 200

    client.post(reverse("logout"))

    assert client.get(reverse("contact-list")).status_code == 302


@pytest.mark.django_db
def test_a_wrong_password_is_refused_with_a_message(client, marketer):
    response = client.post(reverse("login"), {"username": "claire", "password": "nope"})
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()
    assert client.get(reverse("contact-list")).status_code == 302


@pytest.mark.django_db
def test_the_health_check_needs_no_login(client):
    response = client.get(reverse("healthz"))
    assert response.status_code == 200 and response.content == b"ok"
