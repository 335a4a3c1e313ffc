"""Embeddable forms: a visitor's submission makes or completes a contact, with consent proof."""

from datetime import UTC, datetime

import pytest
import time_machine
from django.urls import reverse

from contacts.events import event_record
from contacts.intake.capture import visitor_contact
from contacts.models import Consent, Contact, ContactMerge, Event, Form, Visitor
from tests.factories import ContactFactory, LeadSourceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def form():
    return Form.objects.create(
        name="Livre blanc", source=LeadSourceFactory(name="Salon"),
        thank_you_url="https://www.exemple.fr/merci", allowed_origins="https://www.exemple.fr",
    )  # fmt: skip


def submit(client, form, headers=None, **data):
    fields = {"email": "elodie@exemple.fr", "first_name": "Élodie", "consent": "on",
              "page": "https://www.exemple.fr/livre-blanc", **data}  # fmt: skip
    return client.post(reverse("form-post", args=[form.key]), fields, headers=headers or {})


def test_a_plain_html_submission_makes_a_lead_records_consent_and_redirects(client, form):
    response = submit(client, form, utm_source="linkedin", utm_campaign="printemps")

    assert response.status_code == 302 and response["Location"] == "https://www.exemple.fr/merci"
    contact = Contact.objects.get(email="elodie@exemple.fr")
    assert (contact.stage, contact.first_name, contact.source, contact.utm_source) == (
        "lead",
        "Élodie",
        form.source,
        "linkedin",
    )
    assert contact.consent == "granted"
    proof = Consent.objects.get(contact=contact)
    assert (proof.wording, proof.wording_version, proof.ip) == (form.consent_text, 1, "127.0.0.1")
    assert proof.page == "https://www.exemple.fr/livre-blanc"
    event = Event.objects.get(contact=contact, type="form_submit")
    assert event.properties["form"] == form.key


def test_a_known_person_keeps_what_we_know_and_gets_blanks_filled(client, form):
    known = ContactFactory(email="Elodie@Exemple.fr", first_name="Élo", company="", source=None)
    submit(client, form, first_name="Autre", company="Brasserie Dupré")
    known.refresh_from_db()
    assert (known.first_name, known.company) == ("Élo", "Brasserie Dupré")
    assert Contact.objects.count() == 1


def test_a_script_gets_json_and_cors_for_an_allowed_origin_only(client, form):
    allowed = submit(
        client, form, headers={"Origin": "https://www.exemple.fr", "Accept": "application/json"}
    )
    assert allowed.status_code == 200 and allowed.json() == {"ok": True}
    assert allowed["Access-Control-Allow-Origin"] == "https://www.exemple.fr"
    other = submit(
        client, form, headers={"Origin": "https://evil.example", "Accept": "application/json"}
    )
    assert other.status_code == 403


def test_bad_input_is_explained_and_stores_nothing(client, form):
    page = submit(client, form, email="pas-un-email")
    assert page.status_code == 400 and "E-mail" in page.content.decode()  # its label
    script = submit(client, form, email="", headers={"Accept": "application/json"})
    assert script.status_code == 400 and "email" in script.json()["errors"]
    assert not Contact.objects.exists()


def test_the_honeypot_thanks_bots_and_keeps_nothing(client, form):
    response = submit(client, form, website="http://spam.example")
    assert response.status_code == 302
    assert not Contact.objects.exists()


def test_too_many_submissions_from_one_address_are_refused(client, form, settings):
    settings.FORM_RATE_PER_MINUTE = 2
    statuses = [submit(client, form, email=f"p{n}@exemple.fr").status_code for n in range(3)]
    assert statuses == [302, 302, 429]
    assert Contact.objects.count() == 2


@pytest.mark.parametrize(
    ("proxies", "forwarded", "recorded"),
    [
        (0, "203.0.113.7", "127.0.0.1"),  # no proxy: the header is the sender's word, ignored
        (1, "6.6.6.6, 203.0.113.7", "203.0.113.7"),  # the proxy's entry, not the forged one
        (2, "6.6.6.6, 203.0.113.7, 10.0.0.2", "203.0.113.7"),
        (1, "", "127.0.0.1"),  # a proxy that did not say: the connection's address
        (1, "not an address", "127.0.0.1"),
    ],
)
def test_behind_trusted_proxies_the_senders_address_is_read_from_x_forwarded_for(
    client, form, settings, proxies, forwarded, recorded
):
    settings.TRUSTED_PROXY_COUNT = proxies
    submit(client, form, headers={"X-Forwarded-For": forwarded})
    assert Consent.objects.get().ip == recorded


def test_the_rate_limit_counts_each_sender_behind_a_proxy_apart(client, form, settings):
    settings.TRUSTED_PROXY_COUNT, settings.FORM_RATE_PER_MINUTE = 1, 1
    # Mid-minute, held there: the limit's window is a calendar minute, which a slow machine
    # could otherwise cross between the first post and the third.
    with time_machine.travel(datetime(2026, 12, 6, 10, 0, 30, tzinfo=UTC), tick=False):
        first = submit(client, form, headers={"X-Forwarded-For": "203.0.113.7"})
        other = submit(
            client, form, email="b@exemple.fr", headers={"X-Forwarded-For": "203.0.113.8"}
        )
        again = submit(
            client, form, email="c@exemple.fr", headers={"X-Forwarded-For": "203.0.113.7"}
        )
    assert (first.status_code, other.status_code, again.status_code) == (302, 302, 429)


def test_a_submission_stitches_the_visitors_anonymous_history(
    client, form, django_capture_on_commit_callbacks
):
    visitor = visitor_contact(visitor_id="v-1234567890abcdef")
    with django_capture_on_commit_callbacks(execute=True):
        for url in ("/tarifs", "/blog/scoring"):
            event_record(contact=visitor, type="page_view", properties={"url": url})

    with django_capture_on_commit_callbacks(execute=True):
        submit(client, form, visitor_id="v-1234567890abcdef")

    lead = Contact.objects.get(email="elodie@exemple.fr")
    urls = set(lead.events.filter(type="page_view").values_list("properties__url", flat=True))
    assert urls == {"/tarifs", "/blog/scoring"}
    assert not Contact.objects.filter(pk=visitor.pk).exists()
    merge = ContactMerge.objects.get()
    assert (merge.into, merge.merged_contact_id, merge.events_moved) == (lead, visitor.pk, 2)
    assert Visitor.objects.get(visitor_id="v-1234567890abcdef").contact == lead
    assert lead.score == sum(lead.score_entries.values_list("points", flat=True))


def test_an_unknown_or_inactive_form_is_a_404(client, form):
    assert client.post("/f/nope/", {"email": "a@b.fr"}).status_code == 404
    form.active = False
    form.save()
    assert submit(client, form).status_code == 404


def test_admin_shows_a_working_embed_snippet(client, admin_user, form):
    client.force_login(admin_user)
    body = client.get(reverse("admin:contacts_form_change", args=[form.pk])).content.decode()
    assert (
        f"/f/{form.key}/" in body
        and "/t.js" in body
        and 'name="website"' in body.replace("&quot;", '"')
    )
