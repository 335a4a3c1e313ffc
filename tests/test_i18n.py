"""French by default, English on request, per user; accents round-trip; locale formats."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse

from leadfunnel.models import Profile
from tests.factories import ContactFactory


@pytest.mark.django_db
def test_the_interface_is_french_by_default(client):
    body = client.get(reverse("login")).content.decode()
    assert '<html lang="fr">' in body
    assert "Se connecter" in body


@pytest.mark.django_db
def test_a_user_who_picks_english_keeps_it_at_the_next_login(client, marketer):
    client.force_login(marketer)
    assert "Tableau de bord" in client.get(reverse("home")).content.decode()

    client.post(reverse("language-set"), {"language": "en", "next": reverse("home")})
    assert "Dashboard" in client.get(reverse("home")).content.decode()
    assert Profile.objects.get(user=marketer).language == "en"

    client.post(reverse("logout"))
    client.cookies.clear()  # another browser: only the profile remembers
    client.post(reverse("login"), {"username": "claire", "password": "secret-pass-123"})
    body = client.get(reverse("home")).content.decode()
    assert '<html lang="en">' in body and "Dashboard" in body


@pytest.mark.django_db
def test_an_unknown_language_or_an_outside_next_url_is_ignored(client, marketer):
    client.force_login(marketer)
    response = client.post(
        reverse("language-set"), {"language": "xx", "next": "https://evil.example/"}
    )
    assert response["Location"] == "/"
    assert not Profile.objects.filter(user=marketer).exists()


@pytest.mark.django_db
def test_dates_and_numbers_follow_the_language(client, marketer, settings):
    contact = ContactFactory(
        first_name="Françoise",
        score=1234,
        created_at=datetime(2026, 3, 14, 9, 5, tzinfo=ZoneInfo("Europe/Paris")),
    )
    client.force_login(marketer)
    url = reverse("contact-detail", args=[contact.pk])

    french = client.get(url).content.decode()
    client.post(reverse("language-set"), {"language": "en"})
    english = client.get(url).content.decode()

    assert "14 mars 2026" in french and "1\xa0234" in french
    assert "March 14, 2026" in english and "1,234" in english
    assert "Françoise" in french and "Françoise" in english
