"""Repeated wrong passwords lock the login out (django-axes): per username and address, and per
address; a clear message with a 429; an admin or the ``axes_reset`` command unlocks."""

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from tests.factories import UserFactory

PASSWORD = "secret-pass-123"
LOCKED = "Too many failed logins"

pytestmark = pytest.mark.django_db


def log_in(client, username, password, address="203.0.113.5", url=None, **headers):
    return client.post(
        url or reverse("login"),
        {"username": username, "password": password},
        REMOTE_ADDR=address,
        **headers,
    )


def fail(client, username, times, **kwargs):
    return [log_in(client, username, "wrong", **kwargs).status_code for _ in range(times)]


@pytest.fixture
def admin_account(db):
    return UserFactory(username="admin", is_staff=True, is_superuser=True)


def test_repeated_wrong_passwords_lock_the_account_out_even_for_the_right_one(
    client, admin_account
):
    limit = settings.AXES_FAILURE_LIMIT
    assert 5 <= limit <= 10

    statuses = fail(client, "admin", limit)
    response = log_in(client, "admin", PASSWORD, HTTP_ACCEPT_LANGUAGE="en")

    assert statuses[: limit - 1] == [200] * (limit - 1)
    assert response.status_code == 429
    page = response.content.decode()
    assert LOCKED in page and 'role="alert"' in page and "15 minutes" in page
    assert "registration/login.html" in {t.name for t in response.templates}
    assert client.get(reverse("contact-list")).status_code == 302  # not logged in


def test_the_lockout_message_is_in_the_visitors_language(client, admin_account):
    fail(client, "admin", settings.AXES_FAILURE_LIMIT)
    response = log_in(client, "admin", PASSWORD, HTTP_ACCEPT_LANGUAGE="fr")
    assert response.status_code == 429
    assert "Trop de connexions manquées" in response.content.decode()


def test_another_user_from_another_address_is_not_affected(client, admin_account, marketer):
    fail(client, "admin", settings.AXES_FAILURE_LIMIT)

    other = Client()
    response = log_in(other, "claire", PASSWORD, address="198.51.100.7")

    assert response.status_code == 302
    assert other.get(reverse("contact-list")).status_code == 200


def test_one_address_trying_many_usernames_is_locked_out(client, marketer):
    for n in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, f"guess{n}", "wrong")

    response = log_in(client, "claire", PASSWORD)

    assert response.status_code == 429
    assert log_in(Client(), "claire", PASSWORD, address="198.51.100.7").status_code == 302


def test_a_successful_login_resets_the_count(client, marketer):
    fail(client, "claire", settings.AXES_FAILURE_LIMIT - 1)
    assert log_in(client, "claire", PASSWORD).status_code == 302
    client.post(reverse("logout"))

    fail(client, "claire", settings.AXES_FAILURE_LIMIT - 1)

    assert log_in(client, "claire", PASSWORD).status_code == 302


def test_the_admin_login_page_is_throttled_too(client, admin_account):
    url = reverse("admin:login")
    fail(client, "admin", settings.AXES_FAILURE_LIMIT, url=url)

    response = log_in(client, "admin", PASSWORD, url=url, HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 429 and LOCKED in response.content.decode()
    assert client.get(reverse("admin:index")).status_code == 302


def test_the_reset_command_unlocks(client, admin_account):
    fail(client, "admin", settings.AXES_FAILURE_LIMIT)
    assert log_in(client, "admin", PASSWORD).status_code == 429

    call_command("axes_reset", verbosity=0)

    assert log_in(client, "admin", PASSWORD).status_code == 302


def test_an_admin_unlocks_from_the_admin_site(client, admin_user, marketer):
    from axes.models import AccessAttempt

    fail(client, "claire", settings.AXES_FAILURE_LIMIT)
    assert log_in(client, "claire", PASSWORD).status_code == 429
    staff = Client()
    staff.force_login(admin_user)
    changelist = reverse("admin:axes_accessattempt_changelist")
    assert "claire" in staff.get(changelist).content.decode()

    staff.post(
        changelist,
        {
            "action": "delete_selected",
            "_selected_action": list(AccessAttempt.objects.values_list("pk", flat=True)),
            "post": "yes",
        },
    )

    assert not AccessAttempt.objects.exists()
    assert log_in(client, "claire", PASSWORD).status_code == 302


def test_behind_a_proxy_the_forwarded_address_is_the_one_locked_out(
    client, settings, admin_account
):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.1"
    fail(client, "admin", settings.AXES_FAILURE_LIMIT, address=proxy,
         HTTP_X_FORWARDED_FOR="203.0.113.9")  # fmt: skip

    locked = log_in(client, "admin", PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR="203.0.113.9")
    # A forged left-most entry changes nothing: the proxy appended the real address.
    forged = log_in(client, "admin", PASSWORD, address=proxy,
                    HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.9")  # fmt: skip
    elsewhere = log_in(
        Client(), "admin", PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR="198.51.100.7"
    )

    assert (locked.status_code, forged.status_code, elsewhere.status_code) == (429, 429, 302)
