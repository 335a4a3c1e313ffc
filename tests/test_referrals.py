"""A referral links the new lead to the client who brought them; the client becomes an
ambassador (scoring's threshold on referral events). Shown on both contact pages."""

import pytest
from django.urls import reverse

from contacts.intake.capture import api_key_create
from contacts.models import Contact, ContactAudit, Event
from contacts.referrals import contact_referral_link
from tests.factories import ContactFactory
from tests.test_api import post as api_post
from tests.utils import record

pytestmark = pytest.mark.django_db


@pytest.fixture
def referrer():
    return ContactFactory(
        email="marc@client.fr", first_name="Marc", last_name="Client", stage=Contact.Stage.CLIENT
    )


def test_an_event_naming_a_referrer_links_the_lead_and_makes_the_client_an_ambassador(
    referrer, django_capture_on_commit_callbacks
):
    lead = ContactFactory(first_name="Nina", last_name="Nouvelle", stage=Contact.Stage.LEAD)

    record(lead, "form_submit", capture=django_capture_on_commit_callbacks,
           referrer_email="MARC@client.fr")  # fmt: skip

    lead.refresh_from_db()
    referrer.refresh_from_db()
    assert lead.referred_by == referrer
    assert referrer.events.filter(type=Event.Type.REFERRAL).count() == 1
    assert referrer.stage == Contact.Stage.AMBASSADOR
    assert ContactAudit.objects.filter(contact=lead, action=ContactAudit.Action.REFERRAL).exists()


def test_the_first_referrer_stays_and_a_replay_adds_nothing(
    referrer, django_capture_on_commit_callbacks
):
    other = ContactFactory(stage=Contact.Stage.CLIENT)
    lead = ContactFactory()

    # Linking is an event handler: it runs when the events are handled, after commit.
    for referrer_id in (referrer.pk, referrer.pk, other.pk):
        record(lead, "custom", capture=django_capture_on_commit_callbacks, referrer_id=referrer_id)

    lead.refresh_from_db()
    assert lead.referred_by == referrer
    assert Event.objects.filter(type=Event.Type.REFERRAL).count() == 1


@pytest.mark.parametrize("properties", [{"referrer_id": "abc"}, {"referrer_id": 10**30},
                                        {"referrer_email": "nobody@nowhere.fr"}])  # fmt: skip
def test_an_unknown_referrer_is_ignored(properties, django_capture_on_commit_callbacks):
    lead = ContactFactory()
    record(lead, "custom", capture=django_capture_on_commit_callbacks, **properties)
    lead.refresh_from_db()
    assert lead.referred_by is None


def test_a_contact_cannot_refer_itself(referrer, django_capture_on_commit_callbacks):
    record(referrer, "custom", capture=django_capture_on_commit_callbacks, referrer_id=referrer.pk)
    referrer.refresh_from_db()
    assert referrer.referred_by is None


def test_both_contact_pages_show_the_referral(marketer_client, referrer):
    lead = ContactFactory(first_name="Nina", last_name="Nouvelle")
    contact_referral_link(contact=lead, referrer=referrer)

    lead_page = marketer_client.get(reverse("contact-detail", args=[lead.pk])).content.decode()
    client_page = marketer_client.get(reverse("contact-detail", args=[referrer.pk]))

    assert "Marc Client" in lead_page.split('data-testid="referred-by"')[1].split("</dd>")[0]
    assert "Nina Nouvelle" in client_page.content.decode().split('data-testid="referrals"')[1]


def test_the_api_links_a_contact_to_its_referrer(client, referrer):
    key = api_key_create(name="CRM")[1]

    response = api_post(
        client, "contacts",
        {"contacts": [{"email": "nina@exemple.fr", "referrer_email": "marc@client.fr"}]}, key,
    )  # fmt: skip

    assert response.status_code == 200
    assert response.json()["contacts"][0]["referred_by_id"] == referrer.pk
    assert Contact.objects.get(email="nina@exemple.fr").referred_by == referrer
    unknown = api_post(
        client, "contacts", {"contacts": [{"email": "x@exemple.fr", "referrer_id": 999999}]}, key
    )
    assert unknown.status_code == 400
    assert unknown.json()["detail"][0]["loc"][-1] == "referrer_id"
    assert not Contact.objects.filter(email="x@exemple.fr").exists()


def test_the_api_events_link_a_referrer_too(client, referrer, django_capture_on_commit_callbacks):
    key = api_key_create(name="CRM")[1]
    body = {"events": [{"email": "zoe@exemple.fr", "type": "form_submit",
                        "properties": {"referrer_id": referrer.pk}}]}  # fmt: skip

    with django_capture_on_commit_callbacks(execute=True):
        assert api_post(client, "events", body, key).status_code == 200

    assert Contact.objects.get(email="zoe@exemple.fr").referred_by == referrer


def test_an_admin_sets_the_referrer_and_it_is_audited(client, admin_user, referrer):
    lead = ContactFactory(email="nina@exemple.fr", first_name="Nina", last_name="N")
    client.force_login(admin_user)

    response = client.post(
        reverse("admin:contacts_contact_change", args=[lead.pk]),
        {"email": "nina@exemple.fr", "first_name": "Nina", "last_name": "N",
         "referred_by": referrer.pk, "stagechange_set-TOTAL_FORMS": 0,
         "stage_changes-TOTAL_FORMS": 0, "stage_changes-INITIAL_FORMS": 0},
    )  # fmt: skip

    assert response.status_code == 302, response.content.decode()[:2000]
    lead.refresh_from_db()
    assert lead.referred_by == referrer
    [audit] = ContactAudit.objects.filter(contact=lead, action=ContactAudit.Action.REFERRAL)
    assert audit.actor == admin_user


def test_a_person_can_correct_the_referrer_events_cannot(admin_user, referrer):
    right = ContactFactory(stage=Contact.Stage.CLIENT)
    lead = ContactFactory()
    contact_referral_link(contact=lead, referrer=referrer)

    assert not contact_referral_link(contact=lead, referrer=right)
    assert contact_referral_link(contact=lead, referrer=right, actor=admin_user, replace=True)

    lead.refresh_from_db()
    assert lead.referred_by == right
    assert right.events.filter(type=Event.Type.REFERRAL).count() == 1
