"""Stored XSS: what a visitor, an integration or an import file writes is shown as text on every
page, in the admin's email preview and in the emails sent; email templates cannot hold
``javascript:`` (or ``data:``, ``vbscript:``) links and never send one.

The browser test enters the payloads through the public form (the embed snippet), the API and a
CSV import, then opens every page that shows them with a dialog trap that fails on any alert."""

from __future__ import annotations

import csv
import io
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import translation
from playwright.sync_api import expect

from contacts import broker
from contacts.intake.capture import api_key_create
from contacts.intake.views import embed_snippet
from contacts.models import Contact, Event, Form, ImportJob, LeadSource, StageChange
from contacts.sales.claims import contact_claim
from contacts.stages import stage_move
from nurturing import rendering
from nurturing.models import Enrollment, Message, Step
from nurturing.tracking import message_click
from tests.browser_pages import visitor
from tests.factories import ContactFactory, UserFactory
from tests.nurturing.helpers import email_step, sequence_with
from tests.utils import wait_for

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
    with (
        translation.override("en"),
        pytest.raises(rendering.TemplateProblem, match="Template error"),
    ):
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
    response = admin_client.post(url, data)
    assert response.status_code == 200, response.status_code  # the form again, not a redirect
    page = response.content.decode()
    assert "Un e-mail ne peut contenir ni script" in page and "“javascript:alert(1)”" in page
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


# --- In a real browser: entered through the form, the API and an import, shown everywhere ------


@pytest.fixture
def site(tmp_path):
    """The company's own website, on another origin, where the embed snippet is pasted."""
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=tmp_path)
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def shows(page, *texts: str) -> None:
    """Each text is on the page as text (escaped, not markup), and no payload made an element."""
    body = page.locator("body").inner_text()
    for text in texts:
        assert text in body, f"{page.url}: {text!r} is not shown as text"
    assert page.locator("img[src=x], script:text('alert(1)')").count() == 0


def to_sql(contact: Contact) -> None:
    for stage in ["mql", "hmql", "sql"]:
        contact.refresh_from_db()
        stage_move(contact=contact, to=stage, cause=StageChange.Cause.USER)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_payloads_from_the_form_the_api_and_an_import_never_run_on_any_page(
    live_server, chromium, site, settings, tmp_path
):
    settings.LEADFUNNEL_EVENT_HANDLERS = ["contacts.reports.rollups.on_event"]  # no scoring
    settings.MEDIA_ROOT = tmp_path / "media"
    broker.reset()
    root, origin = site
    UserFactory(username="claire", roles=["marketing"])
    hugo = UserFactory(username="hugo", roles=["sales"])
    UserFactory(username="admin", is_staff=True, is_superuser=True)
    source = LeadSource.objects.create(name=f"Salon {IMAGE}", slug="salon")
    form = Form.objects.create(
        name=f"Démo {SCRIPT}", source=source, consent_text=f"J'accepte {SCRIPT} {IMAGE}"
    )
    sequence = sequence_with(
        email_step(
            subject="Bonjour {{ first_name }}",
            body="Bonjour {{ first_name }} {{ last_name }} de {{ company }}",
            body_html='<p>Bonjour {{ first_name }} {{ last_name }}</p><a href="{{ company }}">site</a>',
        ),
        name=f"Relance {SCRIPT}",
    )
    step = sequence.steps.get()
    (root / "demo.html").write_text(
        f'<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8"><title>Démo</title></head>'
        f"<body>{embed_snippet(form, live_server.url)}</body></html>",
        encoding="utf-8",
    )

    # A visitor fills the embedded form.
    with visitor(chromium, live_server.url, "") as stranger:
        page = stranger.open_url(f"{origin}/demo.html")
        shows(page, f"J'accepte {SCRIPT} {IMAGE}")
        page.fill("input[name=email]", "xss-form@exemple.fr")
        page.fill("input[name=first_name]", SCRIPT)
        page.fill("input[name=last_name]", IMAGE)
        page.fill("input[name=company]", JAVASCRIPT)
        page.check("input[name=consent]")
        page.click("button[type=submit]")
        stranger.settle()
    by_form = Contact.objects.get(email="xss-form@exemple.fr")
    assert (by_form.first_name, by_form.last_name, by_form.company) == (SCRIPT, IMAGE, JAVASCRIPT)

    # An integration sends a contact and an event.
    _key, plain = api_key_create(name="site")
    with visitor(chromium, live_server.url, "") as integration:
        api = integration.page.request
        headers = {"Authorization": f"Bearer {plain}"}
        person = {"email": "xss-api@exemple.fr", "first_name": SCRIPT, "last_name": IMAGE,
                  "company": JAVASCRIPT, "job_title": SCRIPT}  # fmt: skip
        answer = api.post(f"{live_server.url}/api/v1/contacts", headers=headers,
                          data={"contacts": [person]})  # fmt: skip
        assert answer.status == 200, answer.text()
        event = {"email": "xss-api@exemple.fr", "type": "page_view",
                 "properties": {"url": "https://ex.fr/", "title": IMAGE}, "source": IMAGE}  # fmt: skip
        answer = api.post(f"{live_server.url}/api/v1/events", headers=headers,
                          data={"events": [event]})  # fmt: skip
        assert answer.status == 200, answer.text()
    by_api = Contact.objects.get(email="xss-api@exemple.fr")
    assert Event.objects.filter(contact=by_api, properties__title=IMAGE).exists()

    # A marketer imports a file whose header, values and name carry the payloads.
    rows = [["Email", "Prénom", "Nom", "Société", IMAGE],
            ["xss-import@exemple.fr", SCRIPT, IMAGE, JAVASCRIPT, SCRIPT]]  # fmt: skip
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=";").writerows(rows)
    filename = "<img src=x onerror=alert(1)>.csv"  # a browser sends " as %22, and / cuts a name
    with visitor(chromium, live_server.url, "claire") as claire:
        page = claire.open(reverse("contact-import"))
        page.set_input_files(
            "input[type=file]",
            files=[
                {"name": filename, "mimeType": "text/csv", "buffer": buffer.getvalue().encode()}
            ],
        )
        page.click("main form button[type=submit]")
        claire.settle()
        shows(page, filename, IMAGE, SCRIPT)  # the file's name, a column and its first values
        page.get_by_role("button", name="Lancer l’import").click()
        claire.settle()
        wait_for(lambda: ImportJob.objects.get().status == ImportJob.Status.DONE)
    by_import = Contact.objects.get(email="xss-import@exemple.fr")
    assert (by_import.first_name, by_import.company) == (SCRIPT, JAVASCRIPT)

    # The form's lead waits in the queue; the imported one is Hugo's; the API's is enrolled.
    to_sql(by_form)
    to_sql(by_import)
    contact_claim(contact_id=by_import.pk, user=hugo)
    Enrollment.objects.create(contact=by_api, sequence=sequence, step=step)
    people = [by_form, by_api, by_import]

    with visitor(chromium, live_server.url, "claire") as claire:
        shows(claire.open(reverse("home")), IMAGE, SCRIPT)  # sources panel, campaign panel
        shows(claire.open(reverse("contact-list")), SCRIPT, IMAGE)
        shows(claire.open(reverse("contact-list") + "?q=xss"), SCRIPT, IMAGE)
        for contact in people:
            shows(
                claire.open(reverse("contact-detail", args=[contact.pk])), SCRIPT, IMAGE, JAVASCRIPT
            )
            claire.open(reverse("contact-edit", args=[contact.pk]))
        shows(claire.open(reverse("contact-detail", args=[by_api.pk])), f"Relance {SCRIPT}")
        shows(claire.open(reverse("dashboard-sources")), IMAGE)
        shows(claire.open(reverse("nurturing-sequences")), SCRIPT)
        shows(claire.open(reverse("nurturing-sequence", args=[sequence.pk])), SCRIPT)
        shows(claire.open(reverse("contact-import")), filename)
        job = ImportJob.objects.get()
        shows(claire.open(reverse("contact-import-job", args=[job.pk])), filename)

    with visitor(chromium, live_server.url, "hugo") as rep:
        shows(rep.open(reverse("queue")), SCRIPT, IMAGE)
        shows(rep.open(reverse("queue-mine")), SCRIPT, IMAGE)
        shows(rep.open(reverse("queue-lead", args=[by_import.pk])), SCRIPT, IMAGE, JAVASCRIPT)

    with visitor(chromium, live_server.url, "admin") as admin_person:
        shows(admin_person.open(reverse("admin:contacts_contact_changelist")), SCRIPT)
        shows(admin_person.open(reverse("admin:contacts_form_changelist")), SCRIPT)
        shows(admin_person.open(reverse("admin:nurturing_sequence_changelist")), SCRIPT)
        shows(admin_person.open(reverse("admin:nurturing_sequence_change", args=[sequence.pk])))
        page = admin_person.open(reverse("admin:contacts_form_change", args=[form.pk]))
        snippet = page.locator("textarea[readonly]").input_value()
        assert "J&#x27;accepte &lt;script&gt;alert(1)&lt;/script&gt; &quot;&gt;&lt;img" in snippet
        for contact in people:
            admin_person.open(reverse("admin:contacts_contact_change", args=[contact.pk]))
            preview = reverse("admin:nurturing_step_preview", args=[sequence.pk, step.pk])
            page = admin_person.open(f"{preview}?contact={contact.pk}")
            shows(page, f"Bonjour {SCRIPT}", f"Bonjour {SCRIPT} {IMAGE} de {JAVASCRIPT}")
            email = page.frame_locator("iframe")
            expect(email.locator("p")).to_have_text(f"Bonjour {SCRIPT} {IMAGE}")
            expect(email.locator("a")).to_have_attribute("href", "#")
