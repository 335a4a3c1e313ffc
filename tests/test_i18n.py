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


def test_the_shipped_french_catalog_holds_every_translation_of_its_source():
    """The compiled catalog (what users get) is the .po compiled: a catalog that msgfmt refuses
    (an entry twice, after a merge) leaves the old .mo in place, and new strings in English."""
    import gettext
    import re
    from pathlib import Path

    from django.conf import settings

    folder = Path(settings.BASE_DIR) / "locale" / "fr" / "LC_MESSAGES"
    source = (folder / "django.po").read_text(encoding="utf-8")
    entries = re.findall(
        r'^(?:msgctxt "(.*)"\n)?msgid "(.+)"\nmsgstr "(.+)"$', source, flags=re.MULTILINE
    )
    keys = [f"{context}\x04{msgid}" if context else msgid for context, msgid, _ in entries]
    assert len(keys) == len(set(keys)), "an entry is in django.po twice"
    with (folder / "django.mo").open("rb") as compiled:
        catalog = gettext.GNUTranslations(compiled)._catalog  # type: ignore[attr-defined]
    escapes = {"\\n": "\n", "\\t": "\t", '\\"': '"', "\\\\": "\\"}
    unescaped = [re.sub(r'\\[nt"\\]', lambda m: escapes[m.group(0)], key) for key in keys]
    missing = [key for key in unescaped if key not in catalog]
    assert len(entries) > 1000 and not missing, missing[:10]
