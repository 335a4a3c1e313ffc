"""Inbound webhooks: Typeform, Tally and Mautic post their documented payloads, signed their
own way; each submission makes or completes a contact and records one form_submit event; the
delivery log says what came of every post."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contacts.intake.webhook_capture import inbound_deliveries_sweep, inbound_delivery_process
from contacts.models import (
    Consent,
    Contact,
    Event,
    InboundDelivery,
    InboundSource,
    StageChange,
    Suppression,
)
from tests.factories import ContactFactory, LeadSourceFactory

pytestmark = pytest.mark.django_db
DATA = Path(__file__).parent / "data" / "webhooks"
SECRET = "s3cr3t-partagé-avec-le-formulaire"


def sample(kind: str) -> bytes:
    return (DATA / f"{kind}.json").read_bytes()


def hmac_base64(body: bytes, secret: str = SECRET) -> str:
    # Computed here as each sender's documentation describes it, not with the app's helper.
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


SIGNED = {
    "typeform": lambda body, secret=SECRET: {
        "Typeform-Signature": "sha256=" + hmac_base64(body, secret)
    },
    "tally": lambda body, secret=SECRET: {"Tally-Signature": hmac_base64(body, secret)},
    "mautic": lambda body, secret=SECRET: {"Webhook-Signature": hmac_base64(body, secret)},
    "generic": lambda body, secret=SECRET: {
        "LeadFunnel-Signature": "sha256="
        + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    },
}


def endpoint(kind: str, **fields) -> InboundSource:
    return InboundSource.objects.create(name=f"{kind} site", kind=kind, secret=SECRET, **fields)


@pytest.fixture
def post(client, django_capture_on_commit_callbacks):
    """POST as the sender does; what runs after the commit (the worker's task, eager in the
    tests) runs before this returns."""

    def send(source: InboundSource, body: bytes, headers: dict | None = None):
        headers = SIGNED[source.kind](body) if headers is None else headers
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                reverse("inbound-webhook", args=[source.key]), body,
                content_type="application/json", headers=headers,
            )  # fmt: skip

    return send


def statuses() -> list[str]:
    return list(InboundDelivery.objects.order_by("pk").values_list("status", flat=True))


def test_a_typeform_response_makes_a_lead_with_consent_and_a_form_submit_event(post):
    source = endpoint("typeform", source=LeadSourceFactory(name="Typeform"))

    response = post(source, sample("typeform"))

    assert response.status_code == 200, response.content
    assert response.json() == {"ok": True, "status": "received"}
    contact = Contact.objects.get(email="elodie.martin@brasserie-dupre.fr")
    assert (contact.stage, contact.first_name, contact.company, contact.phone) == (
        "lead", "Élodie", "Brasserie Dupré", "+33612345678",
    )  # fmt: skip
    assert (contact.source.name, contact.utm_source, contact.utm_campaign) == (
        "Typeform", "linkedin", "automne",
    )  # fmt: skip
    assert contact.consent == "granted"
    proof = Consent.objects.get(contact=contact)
    assert proof.wording == "J'accepte de recevoir des e-mails de LeadFunnel."
    event = Event.objects.get(contact=contact, type="form_submit")
    assert event.source == "webhook"
    assert event.occurred_at.isoformat() == "2026-11-18T09:17:02+00:00"
    assert event.properties["form_name"] == "Demande de démo"
    assert event.properties["form"] == "lT4Z3j"
    assert event.properties["topics"] == ["Scoring", "Import"]
    assert event.properties["sales_team_size"] == 12
    delivery = InboundDelivery.objects.get(source=source)
    assert (delivery.status, delivery.http_status, delivery.contact_id) == (
        "accepted", 200, contact.pk,
    )  # fmt: skip
    assert delivery.submission_ids == "a3a12ec67a1365927098a606107fac15"
    assert json.loads(delivery.payload) == json.loads(sample("typeform"))


def test_a_tally_response_maps_choices_to_their_text_and_the_consent_checkbox(post):
    source = endpoint("tally", form_name="Webinaire de novembre")

    response = post(source, sample("tally"))

    assert response.status_code == 200, response.content
    contact = Contact.objects.get(email="karim.benali@atelier-nord.fr")
    assert (contact.first_name, contact.last_name, contact.company) == (
        "Karim", "Benali", "Atelier Nord",
    )  # fmt: skip
    assert contact.consent == "granted"
    assert Consent.objects.get(contact=contact).wording == "J'accepte d'être recontacté par e-mail"
    event = Event.objects.get(contact=contact, type="form_submit")
    assert event.properties["form_name"] == "Webinaire de novembre"
    assert event.properties["Taille de l'équipe"] == ["11 à 50"]
    assert event.properties["submission_id"] == "2wgx4n"


def test_tally_signed_over_the_compact_json_its_documentation_shows_is_accepted(post):
    source = endpoint("tally")
    spaced = json.dumps(json.loads(sample("tally")), indent=2, ensure_ascii=False).encode()
    compact = json.dumps(json.loads(spaced), separators=(",", ":"), ensure_ascii=False).encode()

    response = post(source, spaced, {"Tally-Signature": hmac_base64(compact)})

    assert response.status_code == 200, response.content


def test_a_mautic_form_submission_keeps_the_persons_email_opt_out(post):
    source = endpoint("mautic")

    response = post(source, sample("mautic"))

    assert response.status_code == 200, response.content
    contact = Contact.objects.get(email="sophie.lefevre@cabinet-lefevre.fr")
    assert (contact.first_name, contact.last_name, contact.job_title) == (
        "Sophie", "Lefèvre", "Directrice commerciale",
    )  # fmt: skip
    assert contact.do_not_email is True
    event = Event.objects.get(contact=contact, type="form_submit")
    assert event.properties["form_name"] == "Livre blanc scoring"
    assert event.properties["secteur"] == "Conseil"
    assert event.properties["url"] == "https://www.cabinet-exemple.fr/livre-blanc"
    assert "points" not in event.properties  # Mautic's stored profile is not an answer


def test_mautic_batches_are_one_event_per_submission(post):
    source = endpoint("mautic")
    payload = json.loads(sample("mautic"))
    second = json.loads(json.dumps(payload["mautic.form_on_submit"][0]))
    second["submission"]["id"] = 4813
    second["submission"]["results"]["email"] = "paul@cabinet-lefevre.fr"
    second["submission"]["lead"]["fields"]["core"]["email"]["value"] = "paul@cabinet-lefevre.fr"
    payload["mautic.form_on_submit"].append(second)

    response = post(source, json.dumps(payload).encode())

    assert response.status_code == 200, response.content
    assert Event.objects.filter(type="form_submit").count() == 2
    assert InboundDelivery.objects.get().submission_ids == "4812, 4813"


@pytest.mark.parametrize("kind", ["typeform", "tally", "mautic"])
def test_the_same_submission_sent_twice_is_one_event(post, kind):
    source = endpoint(kind)

    first = post(source, sample(kind))
    again = post(source, sample(kind))

    assert (first.status_code, again.status_code) == (200, 200)
    assert Event.objects.filter(type="form_submit").count() == 1
    assert statuses() == ["accepted", "duplicate"]


def test_a_known_person_keeps_what_we_know_and_gets_blanks_filled(post):
    known = ContactFactory(email="Elodie.Martin@Brasserie-Dupre.fr", first_name="Élo", company="")

    post(endpoint("typeform"), sample("typeform"))

    known.refresh_from_db()
    assert (known.first_name, known.company) == ("Élo", "Brasserie Dupré")
    assert Contact.objects.count() == 1


@pytest.mark.parametrize("kind", ["typeform", "tally", "mautic", "generic"])
def test_a_wrong_signature_is_refused_with_403_and_logged_with_its_reason(post, kind):
    source = endpoint(kind, mapping={"email": "email"} if kind == "generic" else {})
    body = sample("tally") if kind == "generic" else sample(kind)

    response = post(source, body, SIGNED[kind](body, "un-autre-secret"))

    assert response.status_code == 403
    assert Contact.objects.count() == 0
    delivery = InboundDelivery.objects.get()
    assert (delivery.status, delivery.http_status) == ("refused", 403)
    assert (
        delivery.reason == f"L’en-tête {next(iter(SIGNED[kind](b'')))} ne correspond pas au corps."
    )


def test_a_missing_signature_is_refused_with_401(post):
    source = endpoint("typeform")

    response = post(source, sample("typeform"), headers={})

    assert response.status_code == 401
    assert InboundDelivery.objects.get().reason == "Pas d’en-tête Typeform-Signature."
    assert not Event.objects.exists()


def test_a_body_altered_after_signing_is_refused(post):
    source = endpoint("typeform")
    signed = SIGNED["typeform"](sample("typeform"))
    altered = sample("typeform").replace(b"elodie.martin", b"mallory")

    assert post(source, altered, signed).status_code == 403
    assert not Contact.objects.exists()


@pytest.mark.parametrize(
    "_case, body",
    [("truncated", b'{"event_type": "form_response", "form_'), ("not utf-8", b"\xff\xfe{}"),
     ("empty", b""), ("text", b"bonjour"), ("a NUL byte", b"{\x00}")],
)  # fmt: skip
def test_a_signed_body_that_is_not_json_gets_400_never_500(post, _case, body):
    source = endpoint("typeform")

    response = post(source, body)

    assert response.status_code == 400
    assert response.json()["ok"] is False
    assert InboundDelivery.objects.get().reason.startswith("Pas du JSON")


@pytest.mark.parametrize(
    "_case, payload",
    [("a list", []), ("form_response a list", {"event_type": "form_response", "form_response": []}),
     ("answers not a list", {"event_type": "form_response", "form_response": {"answers": 3}}),
     ("no email", {"event_type": "form_response", "form_response": {"token": "t1"}})],
)  # fmt: skip
def test_json_of_the_wrong_shape_is_refused_with_422_never_500(post, _case, payload):
    source = endpoint("typeform")

    response = post(source, json.dumps(payload).encode())

    assert response.status_code == 422
    assert not Contact.objects.exists()


def test_an_event_that_is_not_a_form_submission_is_ignored_with_a_2xx(post):
    source = endpoint("mautic")
    body = json.dumps({"mautic.lead_post_save_new": [{"contact": {"id": 1}}]}).encode()

    response = post(source, body)

    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert not Contact.objects.exists()


def test_an_unknown_key_is_404_and_a_switched_off_endpoint_too(client, post):
    source = endpoint("typeform", active=False)
    unknown = client.post(
        reverse("inbound-webhook", args=["nope"]), b"{}", content_type="application/json"
    )

    off = post(source, sample("typeform"))

    assert (unknown.status_code, off.status_code) == (404, 404)
    assert InboundDelivery.objects.get().reason == "Ce webhook est désactivé."
    assert not Contact.objects.exists()


def test_an_endpoint_switched_off_or_deleted_after_a_post_refuses_the_next_one(post):
    source = endpoint("tally")
    assert post(source, tally_from("a@exemple.fr", "r-1")).status_code == 200

    source.active = False
    source.save()
    off = post(source, tally_from("b@exemple.fr", "r-2"))
    source.delete()
    gone = post(source, tally_from("c@exemple.fr", "r-3"))

    assert (off.status_code, gone.status_code) == (404, 404)
    assert list(Contact.objects.values_list("email", flat=True)) == ["a@exemple.fr"]


def test_a_new_secret_is_used_from_the_next_post(post):
    source = endpoint("tally")
    assert post(source, tally_from("a@exemple.fr", "r-1")).status_code == 200

    source.secret = "un-nouveau-secret"
    source.save()
    old = post(source, tally_from("b@exemple.fr", "r-2"))
    body = tally_from("c@exemple.fr", "r-3")
    new = post(source, body, SIGNED["tally"](body, "un-nouveau-secret"))

    assert (old.status_code, new.status_code) == (403, 200)


def test_a_post_reads_no_session_nor_user_and_sets_no_cookie(client, post):
    source = endpoint("tally")
    client.cookies["sessionid"] = "a-session-from-the-same-domain"

    with CaptureQueriesContext(connection) as queries:
        response = post(source, tally_from("a@exemple.fr", "r-1"))

    assert response.status_code == 200 and not response.cookies
    tables = " ".join(query["sql"] for query in queries.captured_queries)
    assert "contacts_inbounddelivery" in tables
    assert "django_session" not in tables and "auth_user" not in tables


def test_a_post_for_another_host_is_refused_though_it_skips_the_middleware(client):
    source = endpoint("tally")
    body = sample("tally")

    refused = client.post(
        reverse("inbound-webhook", args=[source.key]), body, content_type="application/json",
        headers={**SIGNED["tally"](body), "Host": "evil.example"},
    )  # fmt: skip

    assert refused.status_code == 400
    assert not InboundDelivery.objects.exists()


def test_get_is_not_allowed(client):
    source = endpoint("typeform")

    assert client.get(reverse("inbound-webhook", args=[source.key])).status_code == 405


def test_an_erased_person_is_not_brought_back(post):
    Suppression.objects.create(email_hash=Suppression.hash("karim.benali@atelier-nord.fr"))

    response = post(endpoint("tally"), sample("tally"))

    assert response.status_code == 200  # sending it again would change nothing
    assert statuses() == ["refused"]
    assert not Contact.objects.exists()


def test_a_generic_webhook_follows_the_admins_mapping(post):
    source = endpoint(
        "generic",
        form_name="Devis",
        mapping={
            "email": "lead.contact.email",
            "external_id": "lead.crm_id",
            "last_name": "lead.contact.name",
            "consent": "lead.optin",
            "submission_id": "id",
            "properties.budget": "answers.0.value",
        },
    )
    body = json.dumps({
        "id": "sub-991",
        "lead": {"crm_id": "CRM-42", "optin": "oui",
                 "contact": {"email": "nadia@exemple.fr", "name": "Haddad"}},
        "answers": [{"question": "Budget", "value": "10 000 €"}],
    }).encode()  # fmt: skip

    response = post(source, body)
    again = post(source, body)

    assert (response.status_code, again.status_code, statuses()) == (
        200, 200, ["accepted", "duplicate"],
    )  # fmt: skip
    contact = Contact.objects.get(email="nadia@exemple.fr")
    assert (contact.external_id, contact.last_name, contact.consent) == (
        "CRM-42", "Haddad", "granted",
    )  # fmt: skip
    event = Event.objects.get(contact=contact, type="form_submit")
    assert (event.properties["budget"], event.properties["form_name"]) == ("10 000 €", "Devis")


def test_a_generic_submission_known_only_by_its_external_id_is_kept(post):
    source = endpoint("generic", mapping={"external_id": "id", "properties.plan": "plan"})

    response = post(source, json.dumps({"id": "P-7", "plan": "pro"}).encode())
    again = post(source, json.dumps({"id": "P-7", "plan": "pro"}).encode())

    assert response.status_code == 200
    contact = Contact.objects.get(external_id="P-7")
    assert contact.email is None
    # No submission id mapped: the same body twice is still one submission.
    assert (again.status_code, statuses()) == (200, ["accepted", "duplicate"])
    assert Event.objects.get(contact=contact).properties["plan"] == "pro"


def test_a_new_lead_from_a_webhook_is_recorded_as_a_system_stage_change(post):
    post(endpoint("tally"), sample("tally"))

    change = StageChange.objects.get(contact__email="karim.benali@atelier-nord.fr")
    assert (change.to_stage, change.cause) == ("lead", "system")


def test_the_log_keeps_only_the_beginning_of_a_huge_payload(post):
    source = endpoint("typeform")
    payload = json.loads(sample("typeform"))
    payload["form_response"]["hidden"]["notes"] = "x" * 100_000
    body = json.dumps(payload).encode()

    assert post(source, body).status_code == 200

    delivery = InboundDelivery.objects.get()
    assert len(delivery.payload) == InboundDelivery.PAYLOAD_KEPT
    assert delivery.payload_bytes == len(body) and delivery.payload_truncated
    event = Event.objects.get(type="form_submit")
    assert len(event.properties["notes"]) == 1000


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
SHAPED = {
    "typeform": lambda answers: {"event_type": "form_response",
                                 "form_response": {"token": "t", "answers": answers}},
    "tally": lambda fields: {"eventType": "FORM_RESPONSE", "data": {"fields": fields}},
    "mautic": lambda results: {"mautic.form_on_submit": [{"submission": {"results": results}}]},
    "generic": lambda anything: anything,
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(SHAPED))
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(inner=JSON)
def test_whatever_a_signed_sender_posts_the_answer_is_never_a_server_error(post, kind, inner):
    source = InboundSource.objects.filter(kind=kind).first() or endpoint(
        kind, mapping={"email": "a.email", "external_id": "0", "properties.x": "b.0.c"}
    )  # fmt: skip
    body = json.dumps(SHAPED[kind](inner)).encode()

    response = post(source, body)

    assert response.status_code in (200, 400, 422), response.content


def test_a_delivery_whose_task_was_lost_is_recorded_by_the_sweep_once(client):
    source = endpoint("tally")
    body = sample("tally")
    # No commit callbacks run here: the task a worker would get is lost.
    response = client.post(
        reverse("inbound-webhook", args=[source.key]), body, content_type="application/json",
        headers=SIGNED["tally"](body),
    )  # fmt: skip
    assert response.json() == {"ok": True, "status": "received"}
    assert statuses() == ["received"] and not Contact.objects.exists()

    assert inbound_deliveries_sweep(older_than=0) == 1
    assert inbound_deliveries_sweep(older_than=0) == 0
    delivery = InboundDelivery.objects.get()
    assert not inbound_delivery_process(delivery_id=delivery.pk)  # a second worker: no-op

    assert (delivery.status, delivery.contact.email) == ("accepted", "karim.benali@atelier-nord.fr")
    assert Event.objects.filter(type="form_submit").count() == 1


def test_a_submission_with_the_external_id_of_a_contact_without_email_completes_it(post):
    known = ContactFactory(email=None, external_id="CRM-42", stage="suspect", first_name="")
    source = endpoint(
        "generic", mapping={"email": "email", "external_id": "crm", "first_name": "name"}
    )
    body = json.dumps({"email": "nadia@exemple.fr", "crm": "CRM-42", "name": "Nadia"}).encode()

    assert post(source, body).status_code == 200

    known.refresh_from_db()
    assert (known.email, known.first_name, known.stage) == ("nadia@exemple.fr", "Nadia", "lead")
    assert Contact.objects.count() == 1


def test_another_persons_external_id_is_not_taken_over(post):
    ContactFactory(email="autre@exemple.fr", external_id="CRM-42")
    source = endpoint("generic", mapping={"email": "email", "external_id": "crm"})
    body = json.dumps({"email": "nadia@exemple.fr", "crm": "CRM-42"}).encode()

    assert post(source, body).status_code == 200

    new = Contact.objects.get(email="nadia@exemple.fr")
    assert new.external_id is None
    assert statuses() == ["accepted"]


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_the_admin_shows_the_address_and_header_to_give_the_sender(admin_client):
    source = endpoint("tally")

    page = admin_client.get(reverse("admin:contacts_inboundsource_change", args=[source.pk]))

    html = page.content.decode()
    assert f"http://testserver/hooks/in/{source.key}/" in html
    assert "Tally-Signature" in html


def test_the_admin_refuses_a_mapping_to_an_unknown_field(admin_client):
    response = admin_client.post(reverse("admin:contacts_inboundsource_add"), {
        "name": "Zapier", "kind": "generic", "secret": "abc", "mapping": '{"emial": "a.b"}',
        "active": "on",
    })  # fmt: skip

    assert response.status_code == 200
    assert "Cibles inconnues" in response.content.decode()
    assert not InboundSource.objects.exists()


def test_the_delivery_log_lists_refusals_with_their_reason(admin_client, post):
    source = endpoint("typeform")
    post(source, sample("typeform"), {"Typeform-Signature": "sha256=faux"})
    post(source, sample("typeform"))

    page = admin_client.get(reverse("admin:contacts_inbounddelivery_changelist"))

    html = page.content.decode()
    assert "L’en-tête Typeform-Signature ne correspond pas au corps." in html
    assert "Accepté" in html and "Refusé" in html
    delivery = InboundDelivery.objects.get(status="accepted")
    detail = admin_client.get(reverse("admin:contacts_inbounddelivery_change", args=[delivery.pk]))
    assert "elodie.martin@brasserie-dupre.fr" in detail.content.decode()


def test_a_nul_character_in_an_answer_is_dropped_not_a_failure(post):
    source = endpoint("typeform")
    body = sample("typeform").replace(b'"text": "Brasserie', b'"text": "\\u0000Brasserie')

    assert post(source, body).status_code == 200

    contact = Contact.objects.get(email="elodie.martin@brasserie-dupre.fr")
    assert contact.company == "Brasserie Dupré"
    assert Event.objects.get(type="form_submit").properties["company"] == "Brasserie Dupré"
    assert statuses() == ["accepted"]


def tally_from(email: str, response_id: str) -> bytes:
    payload = json.loads(sample("tally"))
    payload["data"]["responseId"] = payload["data"]["submissionId"] = response_id
    for field in payload["data"]["fields"]:
        if field.get("type") == "INPUT_EMAIL":
            field["value"] = email
    return json.dumps(payload).encode()


@pytest.mark.redis
def test_a_burst_asks_a_worker_once_and_every_delivery_is_recorded(post, settings):
    from contacts.intake import tracking
    from contacts.intake.webhook_capture import KICK, inbound_deliveries_record
    from tests.utils import redis_test_url

    settings.PAGE_VIEW_QUEUE_URL = redis_test_url()  # the tests' own Redis database
    tracking.client().delete(KICK)
    source = endpoint("tally")
    assert post(source, tally_from("a@exemple.fr", "r-1")).status_code == 200
    assert statuses() == ["accepted"]  # the worker asked, it recorded, then let the next ask

    tracking.client().set(KICK, "1", px=60_000)  # a worker was asked a moment ago
    assert post(source, tally_from("b@exemple.fr", "r-2")).status_code == 200
    assert post(source, tally_from("c@exemple.fr", "r-3")).status_code == 200
    assert statuses() == ["accepted", "received", "received"]  # no task per post

    assert inbound_deliveries_record() == 2  # that worker takes them all
    assert statuses() == ["accepted"] * 3 and not tracking.client().exists(KICK)
    assert Contact.objects.filter(email__in=["b@exemple.fr", "c@exemple.fr"]).count() == 2
