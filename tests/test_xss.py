"""Stored XSS: what a visitor, an integration or an import file writes is shown as text on every
page, in the admin's email preview and in the emails sent; email templates cannot hold
``javascript:`` (or ``data:``, ``vbscript:``) links and never send one.

The browser test enters the payloads through the public form (the embed snippet), the API and a
CSV import, then opens every page that shows them with a dialog trap that fails on any alert."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import translation

from contacts.intake import embed_snippet
from contacts.models import Form
from nurturing import rendering
from nurturing.models import Enrollment, Message, Step
from nurturing.services import message_click
from nurturing.tests.helpers import email_step, sequence_with
from tests.factories import ContactFactory

SCRIPT = "<script>alert(1)</script>"
IMAGE = '"><img src=x onerror=alert(1)>'
JAVASCRIPT = "javascript:alert(1)"


# --- The admin's email preview ----------------------------------------------------------------


@pytest.mark.django_db
def test_the_email_preview_shows_a_scripted_first_name_as_text(admin_client):
    contact = ContactFactory(first_name=SCRIPT, last_name=IMAGE, company=JAVASCRIPT)
    sequence = sequence_with(
        email_step(
            body="Bonjour {{ first_name }} {{ last_name }}",
            body_html="<p>Bonjour {{ first_name }} {{ last_name }}</p>",
        )
    )
    step = sequence.steps.get()

    response = admin_client.get(
        reverse("admin:nurturing_step_preview", args=[sequence.pk, step.pk]),
        {"contact": str(contact.pk)},
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert SCRIPT not in html and "<img src=x" not in html
    # The text part once escaped; the HTML part escaped in the email, then again in srcdoc.
    assert "Bonjour &lt;script&gt;alert(1)&lt;/script&gt; &quot;&gt;&lt;img" in html
    assert "&lt;p&gt;Bonjour &amp;lt;script&amp;gt;" in html


# --- The HTML part of an email -------------------------------------------------------------------


def render(body_html: str, **values: str) -> rendering.Rendered:
    context = rendering.contact_context(
        **{"first_name": "", "last_name": "", "email": "z@exemple.fr", **values}
    )
    return rendering.render_email(
        rendering.EmailTemplates("Sujet", "Texte", body_html),
        context,
        enrollment_id=1,
        step_id=2,
    )


def test_contact_values_are_escaped_in_the_html_part_of_an_email():
    rendered = render(
        '<p>Bonjour {{ first_name }} {{ last_name }}</p><p title="{{ last_name }}">x</p>',
        first_name=SCRIPT,
        last_name=IMAGE,
    )
    assert SCRIPT not in rendered.body_html and "<img src=x" not in rendered.body_html
    assert "Bonjour &lt;script&gt;alert(1)&lt;/script&gt; &quot;&gt;&lt;img" in rendered.body_html


def test_a_javascript_address_made_from_a_contact_value_is_never_sent_nor_tracked():
    rendered = render(
        '<a href="{{ company }}">site</a> <img src="{{ job_title }}"> <a href="https://ex.fr/">ok</a>',
        company=JAVASCRIPT,
        job_title="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    )
    assert "javascript:" not in rendered.body_html and "data:" not in rendered.body_html
    assert rendered.links == ["https://ex.fr/"]
    assert '<a href="#">site</a>' in rendered.body_html


@pytest.mark.parametrize(
    "source",
    ["{{ first_name|safe }}", "{% autoescape off %}{{ first_name }}{% endautoescape %}"],
)
def test_a_template_cannot_mark_contact_values_safe(source):
    with pytest.raises(rendering.TemplateProblem, match="Template error"):
        rendering.check_template(source, html=True)


@pytest.mark.parametrize(
    ("_case", "body_html"),
    [
        ("javascript", '<a href="javascript:alert(1)">x</a>'),
        ("upper case", "<a href='JavaScript:alert(1)'>x</a>"),
        ("tab inside", '<a href="java\tscript:alert(1)">x</a>'),
        ("entity", '<a href="&#106;avascript:alert(1)">x</a>'),
        ("leading space", '<a href=" javascript:alert(1)">x</a>'),
        ("unquoted", "<a href=javascript:alert(1)>x</a>"),
        ("data", '<img src="data:text/html,<script>alert(1)</script>">'),
        ("vbscript", '<a href="vbscript:msgbox(1)">x</a>'),
        ("form action", '<form action="javascript:alert(1)"><button>x</button></form>'),
        ("script", "<script>alert(1)</script>"),
        ("event handler", '<img src="https://ex.fr/a.png" onerror="alert(1)">'),
    ],
)
@pytest.mark.django_db
def test_an_email_template_with_a_script_or_a_javascript_link_is_refused_when_saved(
    _case, body_html
):
    sequence = sequence_with()
    step = Step(sequence=sequence, position=1, kind="email", subject="Sujet", body_text="Texte")
    step.body_html = body_html
    with translation.override("en"), pytest.raises(ValidationError) as error:
        step.full_clean()
    message = " ".join(error.value.message_dict["body_html"])
    assert "Emails may not hold scripts, event handlers or links other than http" in message


@pytest.mark.django_db
def test_an_email_template_with_web_mail_and_phone_links_is_accepted():
    sequence = sequence_with(
        email_step(
            body_html='<a href="https://ex.fr/?a=1&amp;b=2">web</a> <a href="mailto:a@ex.fr">m</a> '
            '<a href="tel:+33102030405">t</a> <a href="{{ unsubscribe_url }}">u</a> '
            '<a href="#haut">h</a> <img src="http://ex.fr/logo.png" alt="">'
        )
    )
    assert sequence.steps.count() == 1


@pytest.mark.django_db
def test_the_admin_refuses_a_javascript_link_with_a_clear_message(admin_client):
    sequence = sequence_with(name="Bienvenue")
    url = reverse("admin:nurturing_sequence_change", args=[sequence.pk])
    data = {
        "name": "Bienvenue", "description": "", "active": "on", "trigger": "manual",
        "trigger_stage": "", "trigger_event_type": "", "trigger_tag": "", "trigger_count": "1",
        "trigger_within_days": "", "segment_query": "", "reentry": "never", "cooldown_days": "0",
        "goal_event_type": "", "goal_tag": "",
        "steps-TOTAL_FORMS": "1", "steps-INITIAL_FORMS": "0", "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
        "steps-0-position": "1", "steps-0-kind": "email", "steps-0-name": "",
        "steps-0-subject": "Bonjour", "steps-0-body_text": "Texte",
        "steps-0-body_html": '<a href="javascript:alert(1)">Voir</a>',
        "steps-0-condition": "", "steps-0-split_percent": "50", "steps-0-points": "0",
        "steps-0-stage": "", "steps-0-delay": "", "steps-0-window_weekdays": "",
        "steps-0-window_time_zone": "",
    }  # fmt: skip
    response = admin_client.post(url, data, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200, response.status_code  # the form again, not a redirect
    assert "“javascript:alert(1)”" in response.content.decode()
    assert not Step.objects.filter(sequence=sequence).exists()


@pytest.mark.django_db
def test_a_stored_javascript_link_is_never_followed_by_the_click_redirect():
    contact = ContactFactory()
    sequence = sequence_with(email_step())
    enrollment = Enrollment.objects.create(
        contact=contact, sequence=sequence, step=sequence.steps.get()
    )
    message = Message.objects.create(
        enrollment=enrollment, step=sequence.steps.get(), contact=contact, to=contact.email,
        subject="s", body_text="t", message_id="<m@ex.fr>", links=[JAVASCRIPT, "https://ex.fr/"],
    )  # fmt: skip
    assert message_click(message=message, link=0) is None
    assert message_click(message=message, link=1) == "https://ex.fr/"


# --- The form embed snippet ------------------------------------------------------------------


@pytest.mark.django_db
def test_the_embed_snippet_holds_the_consent_wording_as_text():
    form = Form.objects.create(name="Démo", consent_text=f"J'accepte {SCRIPT} {IMAGE}")
    snippet = embed_snippet(form, "https://crm.exemple.fr")
    assert SCRIPT not in snippet and "<img src=x" not in snippet
    assert "J&#x27;accepte &lt;script&gt;alert(1)&lt;/script&gt; &quot;&gt;&lt;img" in snippet
    assert f'action="https://crm.exemple.fr/f/{form.key}/"' in snippet
