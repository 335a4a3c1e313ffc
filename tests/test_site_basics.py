"""What a browser asks for on its own or a user types: the favicon, and /logout/ by address."""

import pytest
from django.contrib.auth import get_user
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_the_favicon_is_served_at_the_site_root_and_linked_from_every_page(client, marketer):
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon["Content-Type"] in (
        "image/x-icon",
        "image/vnd.microsoft.icon",
    )
    assert b"".join(icon.streaming_content)[:4] == b"\x00\x00\x01\x00"  # an ICO file
    login_page = client.get(reverse("login")).content.decode()
    assert 'rel="icon"' in login_page and "favicon.svg" in login_page


def test_opening_logout_by_address_asks_to_confirm_and_keeps_the_session(client, marketer):
    client.force_login(marketer)

    page = client.get("/logout/")

    assert page.status_code == 200
    body = page.content.decode()
    assert 'method="post"' in body and 'action="/logout/"' in body
    assert "csrfmiddlewaretoken" in body
    assert get_user(client).is_authenticated  # a link or an image cannot log anyone out


def test_the_confirmation_button_logs_out(client, marketer):
    client.force_login(marketer)

    response = client.post("/logout/")

    assert response.status_code == 302 and response["Location"] == reverse("login")
    assert not get_user(client).is_authenticated


def test_logout_by_address_when_logged_out_goes_to_the_login_page(client):
    response = client.get("/logout/")
    assert response.status_code == 302 and response["Location"] == reverse("login")
