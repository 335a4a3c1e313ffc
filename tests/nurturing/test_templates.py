"""Email templates: refused when saved if broken or reaching outside their plain values."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.utils import translation

from nurturing import rendering
from nurturing.models import Step
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("Bonjour {{ first_name|nosuchfilter }}", "Template error"),
        ("{% if first_name %}oui", "Template error"),
        ("{{ contact.email }}", "Unknown variable(s): contact"),
        ("{{ settings.SECRET_KEY }}", "Unknown variable(s): settings"),
        ("{% for x in contacts %}{{ x }}{% endfor %}", "Unknown variable(s): contacts"),
        ("{% if request %}x{% endif %}", "Unknown variable(s): request"),
        ("{{ first_name|default:secret }}", "Unknown variable(s): secret"),
        ("{% load static %}", "Template error"),
        ("{% include 'base.html' %}", "Template error"),
        ("{% debug %}", "Template error"),
        ("{{ first_name.__class__ }}", "Template error"),
    ],
)
def test_a_broken_or_overreaching_template_is_refused_with_the_reason(source, message):
    with (
        translation.override("en"),
        pytest.raises(
            rendering.TemplateProblem, match=message.replace("(", r"\(").replace(")", r"\)")
        ),
    ):
        rendering.check_template(source)


@pytest.mark.parametrize(
    "source",
    [
        "Bonjour {{ first_name|default:'vous' }}, {{ company }}",
        "{% if offer_code %}Code {{ offer_code }} ({{ offer_percent }} %){% endif %}",
        "{% with name=full_name %}{{ name|upper }}{% endwith %}",
        "{{ unsubscribe_url }} {{ offer_expires_at }} {{ score }} {{ stage }}",
    ],
)
def test_a_template_using_the_plain_values_is_accepted(source):
    rendering.check_template(source)


@pytest.mark.django_db
def test_saving_an_email_step_with_an_unknown_variable_is_refused_in_clean():
    sequence = sequence_with()
    step = Step(
        sequence=sequence,
        position=1,
        kind="email",
        subject="Bonjour {{ contact }}",
        body_text="Texte",
    )
    with pytest.raises(ValidationError) as error:
        step.full_clean()
    assert "contact" in str(error.value.message_dict["subject"])


def test_html_is_escaped_in_the_html_part_only_and_links_are_tracked():
    context = rendering.contact_context(first_name="<b>Zoé</b>", last_name="", email="z@x.fr")
    rendered = rendering.render_email(
        rendering.EmailTemplates("Salut {{ first_name }}", "Voir https://ex.fr/a?x=1&y=2", ""),
        context,
        enrollment_id=3,
        step_id=4,
    )
    assert rendered.subject == "Salut <b>Zoé</b>"
    assert "&lt;b&gt;" not in rendered.body_text
    assert rendered.links == ["https://ex.fr/a?x=1&y=2"]
    assert 'href="https://ex.fr' not in rendered.body_html  # the click redirect instead
    assert "/e/c/" in rendered.body_html and "/e/o/" in rendered.body_html


@pytest.mark.django_db
def test_admin_refuses_a_broken_step_and_previews_an_email_for_a_chosen_contact(admin_client):
    sequence = sequence_with(
        email_step(
            subject="{{ first_name }}, -{{ offer_percent }} %",
            body="Code {{ offer_code }} jusqu'au {{ offer_expires_at }}",
            offer_percent=10,
            offer_code="POELE",
            offer_valid_hours=24,
        ),
    )
    step = sequence.steps.get()
    contact = ContactFactory(first_name="Élodie")
    url = f"/admin/nurturing/sequence/{sequence.pk}/preview/{step.pk}/"

    page = admin_client.get(url, {"contact": contact.email})

    assert page.status_code == 200
    text = page.content.decode()
    assert "Élodie, -10 %" in text
    assert "POELE-" in text
    assert admin_client.get(url, {"contact": "nobody@example.fr"}).status_code == 200

    change = admin_client.get(f"/admin/nurturing/sequence/{sequence.pk}/change/")
    assert url in change.content.decode()


@pytest.mark.django_db
def test_admin_add_form_shows_the_template_error(admin_client):
    data = {
        "name": "Essai",
        "trigger": "manual",
        "reentry": "once",
        "cooldown_days": 30,
        "trigger_count": 1,
        "active": "on",
        "steps-TOTAL_FORMS": 1,
        "steps-INITIAL_FORMS": 0,
        "steps-0-position": 1,
        "steps-0-kind": "email",
        "steps-0-subject": "Hi {{ password }}",
        "steps-0-body_text": "Texte",
    }
    response = admin_client.post("/admin/nurturing/sequence/add/", data)
    assert response.status_code == 200
    assert "password" in response.content.decode()
    assert not sequence_exists("Essai")


def sequence_exists(name):
    from nurturing.models import Sequence

    return Sequence.objects.filter(name=name).exists()
