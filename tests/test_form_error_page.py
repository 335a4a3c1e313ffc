"""The page a visitor sees when a public form post has errors (a plain HTML form, no script):
in the visitor's language, fields named as people name them, and a "Back" link only to the
site the form belongs to."""

import pytest
from django.urls import reverse

from contacts.models import Form

pytestmark = pytest.mark.django_db


@pytest.fixture
def form():
    return Form.objects.create(name="Livre blanc", allowed_origins="https://www.exemple.fr")


def post(client, form, referer=None, language=None, **data):
    fields = {"email": "pas-un-email", "page": "https://www.exemple.fr/livre-blanc", **data}
    headers = {}
    if referer is not None:
        headers["Referer"] = referer
    if language:
        headers["Accept-Language"] = language
    return client.post(reverse("form-post", args=[form.key]), fields, headers=headers)


def back_link(response):
    body = response.content.decode()
    marker = 'data-testid="back" href="'
    if marker not in body:
        return None
    return body.split(marker, 1)[1].split('"', 1)[0]


def test_the_back_link_goes_to_the_page_of_an_allowed_origin(client, form):
    response = post(client, form, referer="https://www.exemple.fr/livre-blanc?x=1")
    assert response.status_code == 400
    assert back_link(response) == "https://www.exemple.fr/livre-blanc?x=1"


@pytest.mark.parametrize(
    "referer",
    [
        "javascript:alert(document.domain)",
        "https://evil.example/phish",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/x",
        "not a url at all",
    ],
)
def test_a_referer_of_another_site_or_scheme_is_never_linked(client, form, referer):
    response = post(client, form, referer=referer)

    assert response.status_code == 400
    # Not the header: the form's own page (its "page" field, on an allowed origin).
    assert back_link(response) == "https://www.exemple.fr/livre-blanc"
    assert "evil.example" not in response.content.decode()
    assert "javascript:" not in response.content.decode()


def test_no_usable_address_means_no_back_link(client, form):
    response = post(client, form, referer="https://evil.example/", page="https://evil.example/")
    assert response.status_code == 400 and back_link(response) is None


def test_a_form_open_to_any_site_links_back_to_any_http_page(client):
    open_form = Form.objects.create(name="Ouvert")
    response = post(client, open_form, referer="https://partenaire.example/page")
    assert back_link(response) == "https://partenaire.example/page"
    assert back_link(post(client, open_form, referer="javascript:alert(1)", page="")) is None


@pytest.mark.parametrize(
    ("language", "title", "html_lang"),
    [
        ("en-GB,en;q=0.9", "Please check the form", "en"),
        ("fr-FR,fr;q=0.9", "Veuillez vérifier", "fr"),
    ],
)
def test_the_page_speaks_the_visitors_language(client, form, language, title, html_lang):
    response = post(client, form, language=language)
    body = response.content.decode()
    assert title in body and f'<html lang="{html_lang}"' in body


def test_fields_are_named_as_people_name_them(client, form):
    response = post(client, form, language="en", email="ok@exemple.fr", page="not a page")

    body = response.content.decode()
    assert response.status_code == 400
    assert "Page address" in body
    assert "page:" not in body
