import pytest
from django.urls import reverse
from django.utils import translation

from contacts.stages import stage_move
from tests.factories import ContactFactory, EventFactory


@pytest.mark.django_db
def test_the_contact_page_shows_why_the_contact_is_where_it_is(marketer_client, marketer):
    contact = ContactFactory(stage="lead", first_name="Hélène", company="Café Lumière")
    stage_move(contact=contact, to="mql", cause="threshold", actor_name="Seuil MQL : 20 points")
    stage_move(contact=contact, to="sql", cause="user", actor=marketer, reason="A demandé une démo")
    EventFactory(contact=contact, type="download", properties={"url": "/livre-blanc.pdf"})

    with translation.override("fr"):
        body = marketer_client.get(reverse("contact-detail", args=[contact.pk])).content.decode()

    assert 'data-testid="stage">SQL<' in body
    assert "Café Lumière" in body
    assert "Seuil MQL : 20 points" in body  # the threshold that moved it
    assert "Claire Martin" in body and "A demandé une démo" in body  # the person, and why
    assert "/livre-blanc.pdf" in body


@pytest.mark.django_db
def test_older_timeline_pages_load_in_place(marketer_client):
    contact = ContactFactory()
    for n in range(60):
        EventFactory(contact=contact, properties={"url": f"/page-{n}"})
    url = reverse("contact-detail", args=[contact.pk])

    partial = marketer_client.get(url, {"events": 2}, headers={"HX-Request": "true"})

    body = partial.content.decode()
    assert "<html" not in body and "Profil" not in body
    assert body.count('class="event ') == 10


@pytest.mark.django_db
def test_an_unknown_contact_is_a_404_page(marketer_client):
    response = marketer_client.get(reverse("contact-detail", args=[999999]))
    assert response.status_code == 404
