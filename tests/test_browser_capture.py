"""In a real Chromium: a visitor browses a site on another origin, then fills the embedded form;
the pages seen before are stitched onto the new lead."""

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from contacts.intake.views import embed_snippet
from contacts.models import AnonymousView, Contact, ContactMerge, Event, Form
from tests.utils import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def site(tmp_path):
    """The company's own website: a static server on another origin than LeadFunnel."""
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=tmp_path)
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def page_html(title, body):
    return f'<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8"><title>{title}</title></head><body>{body}</body></html>'


def test_a_visitor_who_fills_the_embedded_form_keeps_the_pages_seen_before(
    live_server, page, site, settings
):
    root, origin = site
    settings.TRACKING_ORIGINS = [origin]
    form = Form.objects.create(
        name="Démo", allowed_origins=origin, thank_you_url=f"{origin}/merci.html"
    )
    script = f'<script src="{live_server.url}/t.js" async></script>'
    (root / "tarifs.html").write_text(
        page_html("Tarifs", f"<h1>Nos tarifs</h1>{script}"), encoding="utf-8"
    )
    (root / "demo.html").write_text(
        page_html("Demande de démo", embed_snippet(form, live_server.url)), encoding="utf-8"
    )
    (root / "merci.html").write_text(page_html("Merci", "<h1>Merci !</h1>"), encoding="utf-8")

    page.goto(f"{origin}/tarifs.html?utm_source=linkedin&utm_campaign=automne")
    wait_for(lambda: AnonymousView.objects.count() == 1)  # one page: no contact yet
    page.goto(f"{origin}/demo.html")
    wait_for(lambda: Event.objects.filter(type="page_view").count() == 2)
    anonymous = Contact.objects.get()
    assert anonymous.email is None and anonymous.utm_source == "linkedin"

    expect(page.locator("input[name=visitor_id]")).not_to_have_value("")
    page.fill("input[name=email]", "helene.dupre@exemple.fr")
    page.fill("input[name=first_name]", "Hélène")
    page.check("input[name=consent]")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Merci !")

    lead = Contact.objects.get(email="helene.dupre@exemple.fr")
    assert (lead.stage, lead.first_name, lead.consent) == ("lead", "Hélène", "granted")
    assert (lead.utm_source, lead.utm_campaign) == ("linkedin", "automne")  # the first touch
    seen = set(
        Event.objects.filter(contact=lead, type="page_view").values_list(
            "properties__url", flat=True
        )
    )
    assert seen == {
        f"{origin}/tarifs.html?utm_source=linkedin&utm_campaign=automne",
        f"{origin}/demo.html",
    }
    assert ContactMerge.objects.get().events_moved >= 2
    assert not Contact.objects.filter(pk=anonymous.pk).exists()
