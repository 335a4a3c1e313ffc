"""Outbound webhooks against a real HTTP receiver that checks each signature with the Standard
Webhooks library: subscribing in admin, the four events, after commit only, a receiver that is
down and comes back, one that fails until the subscription is disabled, never twice on success.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from contacts import broker
from contacts.models import (
    Contact,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from contacts.outcomes import outcome_record
from contacts.sales.outcomes import contact_outcome_record
from contacts.services import contact_create
from contacts.stages import stage_move
from contacts.webhooks import outbox
from contacts.webhooks.delivery import deliveries_send, webhooks_tick
from nurturing import enrolment, rendering, scheduler
from nurturing.models import Message
from tests.factories import ContactFactory, UserFactory
from tests.nurturing.helpers import email_step, sequence_with
from tests.utils import free_port
from tests.webhooks_receiver import Receiver

pytestmark = pytest.mark.django_db

ALL = [
    "contact.created",
    "contact.stage_entered",
    "contact.outcome_recorded",
    "contact.unsubscribed",
]


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.stop()


@pytest.fixture(autouse=True)
def _broker_up():
    broker.reset()


def subscribe(receiver: Receiver | None, url: str = "", **fields) -> WebhookSubscription:
    subscription = WebhookSubscription.objects.create(
        name=fields.pop("name", "CRM"),
        url=url or receiver.url,
        event_types=fields.pop("event_types", ALL),
        **fields,
    )
    if receiver is not None:
        receiver.secret = subscription.secret
    return subscription


def later(minutes: float):
    return time_machine.travel(timezone.now() + timedelta(minutes=minutes), tick=False)


# --- Subscribing, signing, the payloads --------------------------------------------------------


def test_an_admin_subscribes_and_each_message_is_signed_with_the_secret_shown(
    client, admin_user, receiver, django_capture_on_commit_callbacks
):
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:contacts_webhooksubscription_add"),
        {
            "name": "n8n",
            "url": receiver.url,
            "event_types": ["contact.created"],
            "active": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()
    subscription = WebhookSubscription.objects.get()
    page = client.get(
        reverse("admin:contacts_webhooksubscription_change", args=[subscription.pk])
    ).content.decode()
    assert subscription.secret.startswith("whsec_") and subscription.secret in page
    receiver.secret = subscription.secret

    with django_capture_on_commit_callbacks(execute=True):  # the worker runs after commit
        contact = contact_create(email="ines@exemple.fr", first_name="Inès", external_id="P-42")

    [received] = receiver.received
    assert received.verified, received.error
    delivery = WebhookDelivery.objects.get()
    assert received.webhook_id == delivery.webhook_id
    assert received.payload["type"] == "contact.created"
    data = received.payload["data"]["contact"]
    assert (data["id"], data["email"], data["external_id"], data["first_name"]) == (
        contact.pk, "ines@exemple.fr", "P-42", "Inès",
    )  # fmt: skip
    assert data["stage"] == "lead"
    assert (delivery.status, delivery.response_status) == ("delivered", 200)
    assert delivery.response_body == '{"received":true}' and delivery.duration_ms is not None
    assert not WebhookAttempt.objects.exists()  # the log of failed tries
    log = client.get(reverse("admin:contacts_webhookdelivery_change", args=[delivery.pk]))
    assert "ines@exemple.fr" in log.content.decode() and "Remis" in log.content.decode()


def test_a_wrong_secret_fails_the_receivers_check(receiver):
    subscribe(receiver, event_types=["contact.created"])
    receiver.secret = WebhookSubscription(name="other").secret
    ContactFactory()  # not through the service: nothing queued
    contact_create(email="bob@exemple.fr")
    deliveries_send()
    [received] = receiver.received
    assert not received.verified and "signature" in received.error.lower()


def test_stage_entered_goes_only_for_the_stages_chosen(receiver):
    subscribe(receiver, event_types=["contact.stage_entered"], stages=["sql"])
    contact = contact_create(email="lea@exemple.fr")  # entered "lead": not wanted
    stage_move(contact=contact, to="sql", cause="user", reason="Demande de démo")

    assert deliveries_send() == 1
    [received] = receiver.received
    assert received.verified
    assert received.payload["type"] == "contact.stage_entered"
    data = received.payload["data"]
    assert (data["stage"], data["from_stage"], data["cause"]) == ("sql", "lead", "user")
    assert data["contact"]["stage"] == "sql"


def test_a_sales_outcome_is_sent_and_an_imported_one_only_when_asked(receiver, sales_rep):
    crm = subscribe(receiver, event_types=["contact.outcome_recorded"])
    slack = subscribe(
        None, url=receiver.url, name="Slack", event_types=["contact.outcome_recorded"]
    )
    slack.include_imports = True
    slack.save()
    won = ContactFactory(stage="sql", owner=sales_rep, claimed_at=timezone.now())
    contact_outcome_record(contact=won, user=sales_rep, outcome="won")
    imported = ContactFactory()
    outcome_record(contact=imported, result="lost", source="import")

    deliveries_send()
    by_subscription = dict(WebhookDelivery.objects.values_list("webhook_id", "subscription__name"))
    sent = sorted(
        (
            r.payload["data"]["contact"]["id"],
            r.payload["data"]["result"],
            by_subscription[r.webhook_id],
        )
        for r in receiver.received
    )
    assert sent == sorted(
        [(won.pk, "won", "CRM"), (won.pk, "won", "Slack"), (imported.pk, "lost", "Slack")]
    )
    assert crm.deliveries.get().event_type == "contact.outcome_recorded"


def test_an_unsubscribe_by_the_email_link_is_sent(receiver, django_capture_on_commit_callbacks):
    subscribe(receiver, event_types=["contact.unsubscribed"])
    contact = ContactFactory(first_name="Inès")
    enrolment.enrollment_start(sequence=sequence_with(email_step()), contact=contact)
    with django_capture_on_commit_callbacks(execute=True):
        scheduler.enrollments_advance()
    message = Message.objects.get()
    token = rendering.make_token("unsubscribe", message.enrollment_id, message.step_id)

    with django_capture_on_commit_callbacks(execute=True):
        response = Client().post(
            f"/e/u/{token}",
            data="List-Unsubscribe=One-Click",
            content_type="application/x-www-form-urlencoded",
        )

    assert response.status_code == 200
    [received] = receiver.received
    assert received.verified
    assert received.payload["type"] == "contact.unsubscribed"
    assert received.payload["data"]["contact"]["do_not_email"] is True


# --- After commit, and with the broker down ----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_nothing_is_sent_for_a_rolled_back_change_and_a_committed_one_after_commit(receiver):
    subscribe(receiver, event_types=["contact.created"])

    with pytest.raises(RuntimeError), transaction.atomic():
        contact_create(email="fantome@exemple.fr")
        raise RuntimeError("the view failed after the write")

    assert not WebhookDelivery.objects.exists()
    assert webhooks_tick() == {"reaped": 0, "due": 0}
    assert receiver.received == []

    contact_create(email="reel@exemple.fr")  # commits: the (eager) task sends it at once
    assert [r.payload["data"]["contact"]["email"] for r in receiver.received] == ["reel@exemple.fr"]


def test_a_delivery_written_while_the_broker_was_down_goes_with_the_next_tick(
    receiver, monkeypatch, django_capture_on_commit_callbacks
):
    subscribe(receiver, event_types=["contact.created"])
    lost = []
    monkeypatch.setattr(broker, "send", lambda task, *args: lost.append(task) or False)
    with django_capture_on_commit_callbacks(execute=True):
        contact_create(email="pendant-la-panne@exemple.fr")
    assert outbox.SEND_TASK in lost and receiver.received == []
    monkeypatch.undo()

    webhooks_tick()  # beat, once Redis is back

    assert len(receiver.received) == 1
    assert WebhookDelivery.objects.get().status == "delivered"


# --- Retries, giving up, disabling ------------------------------------------------------------


def test_a_receiver_down_then_back_gets_the_message_once(settings):
    port = free_port()
    subscription = subscribe(
        None, url=f"http://127.0.0.1:{port}/hook", event_types=["contact.created"]
    )
    contact_create(email="patience@exemple.fr")
    delivery = WebhookDelivery.objects.get()

    assert deliveries_send() == 0  # connection refused
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert "Connection" in delivery.error or "refused" in delivery.error.lower()
    assert deliveries_send() == 0  # not due again before its backoff
    receiver = Receiver(port, secret=subscription.secret)
    try:
        with later(minutes=settings.WEBHOOK_RETRY_SECONDS / 60 + 1):
            assert deliveries_send() == 1
            assert deliveries_send() == 0
            webhooks_tick()
        [received] = receiver.received
        assert received.verified and received.webhook_id == delivery.webhook_id
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == ("delivered", 2)
        assert delivery.response_status == 200
        [failed] = delivery.attempt_log.all()
        assert failed.response_status is None and "refused" in failed.error.lower()
    finally:
        receiver.stop()


def test_a_failing_receiver_is_retried_with_backoff_then_disabled_and_admins_told(
    client, settings, receiver, admin_user, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 3
    receiver.status = 500
    UserFactory(username="marketing-only", email="claire@exemple.fr", roles=["marketing"])
    subscription = subscribe(receiver, name="CRM Pipedrive", event_types=["contact.created"])
    contact_create(email="un@exemple.fr")
    contact_create(email="deux@exemple.fr")

    minutes = 0.0
    with django_capture_on_commit_callbacks(execute=True):
        for attempt in range(1, 4):
            with later(minutes):
                assert deliveries_send() == 0
            # Doubling: 1, 2, then 4 minutes (WEBHOOK_RETRY_SECONDS = 60).
            minutes += 2 ** (attempt - 1) * settings.WEBHOOK_RETRY_SECONDS / 60 + 0.1

    # One POST per round: after a failure, the rest of the batch waits for that endpoint.
    assert len(receiver.received) == 3
    subscription.refresh_from_db()
    assert not subscription.active and subscription.disabled_at is not None
    [notice] = mail.outbox
    assert notice.to == [admin_user.email]
    assert notice.subject == "Webhook «\xa0CRM Pipedrive\xa0» désactivé"
    assert "HTTP 500" in notice.body and receiver.url in notice.body
    client.force_login(admin_user)
    index = client.get(reverse("admin:index")).content.decode()
    assert "Le webhook «\xa0CRM Pipedrive\xa0» a été désactivé" in index

    contact_create(email="trois@exemple.fr")  # nothing new is queued for it
    assert WebhookDelivery.objects.count() == 2
    with later(minutes + 60):
        assert deliveries_send() == 0
    assert len(receiver.received) == 3

    receiver.status = 200  # fixed: the admin turns it back on
    form = {"name": subscription.name, "url": subscription.url,
            "event_types": ["contact.created"], "active": "on"}  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:contacts_webhooksubscription_change", args=[subscription.pk]), form
        )
    assert response.status_code == 302
    emails = sorted(r.payload["data"]["contact"]["email"] for r in receiver.received[3:])
    assert emails == ["deux@exemple.fr", "un@exemple.fr"]
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}


def test_a_delivery_gives_up_after_its_attempts_and_an_admin_sends_it_again(
    client, settings, receiver, admin_user, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    receiver.status = 503
    subscribe(receiver, event_types=["contact.created"])
    contact_create(email="tenace@exemple.fr")
    deliveries_send()
    with later(10):
        deliveries_send()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("failed", 2, 503)

    receiver.status = 200
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("admin:contacts_webhookdelivery_changelist"),
            {"action": "send_again", "_selected_action": [delivery.pk]},
        )
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    assert receiver.ids() == [delivery.webhook_id] * 3  # the same id on every try


def test_a_delivered_message_is_never_sent_again(receiver):
    subscribe(receiver, event_types=["contact.created"])
    contact_create(email="une-fois@exemple.fr")
    assert deliveries_send() == 1
    with later(60):
        webhooks_tick()
        assert deliveries_send() == 0
    assert len(receiver.received) == 1


def test_an_import_sends_its_new_contacts_only_to_subscriptions_that_include_imports(receiver):
    everything = subscribe(receiver, event_types=["contact.created"], include_imports=True)
    subscribe(None, url=receiver.url, name="Slack", event_types=["contact.created"])
    from contacts.changes import contacts_changed

    people = ContactFactory.create_batch(3)
    contacts_changed([c.pk for c in people], None, imported=True)  # as an import batch does

    assert set(WebhookDelivery.objects.values_list("subscription", flat=True)) == {everything.pk}
    assert deliveries_send() == 3
    assert Contact.objects.count() == 3


def test_erasing_a_contact_deletes_its_deliveries_and_what_waited_is_not_sent(receiver, admin_user):
    from contacts.privacy import contact_erase

    subscribe(receiver, event_types=["contact.created"])
    contact = contact_create(email="oubliez-moi@exemple.fr")
    assert WebhookDelivery.objects.filter(contact_id=contact.pk).exists()

    contact_erase(contact=contact, actor=admin_user)

    assert not WebhookDelivery.objects.exists()
    assert deliveries_send() == 0 and receiver.received == []


def test_a_csv_import_posts_its_contacts_and_leads_only_where_imports_are_included(
    marketer_client, receiver, settings, tmp_path, django_capture_on_commit_callbacks
):
    from contacts.models import ImportJob
    from tests.test_csv_import import run_import

    settings.MEDIA_ROOT = tmp_path
    crm = subscribe(
        receiver, event_types=["contact.created", "contact.stage_entered"], include_imports=True
    )
    subscribe(None, url=receiver.url, name="Slack", event_types=["contact.stage_entered"])

    run_import(
        marketer_client,
        django_capture_on_commit_callbacks,
        b"email,first_name\nana@exemple.fr,Ana\nbob@exemple.fr,Bob\n",
    )

    assert ImportJob.objects.get().created_count == 2
    assert set(WebhookDelivery.objects.values_list("subscription", flat=True)) == {crm.pk}
    sent = sorted(
        (r.payload["type"], r.payload["data"]["contact"]["email"]) for r in receiver.received
    )
    assert sent == [
        ("contact.created", "ana@exemple.fr"),
        ("contact.created", "bob@exemple.fr"),
        ("contact.stage_entered", "ana@exemple.fr"),
        ("contact.stage_entered", "bob@exemple.fr"),
    ]
    assert all(r.verified for r in receiver.received)


def test_an_imported_outcome_column_posts_each_outcome_where_imports_are_included(
    marketer_client, receiver, settings, tmp_path, django_capture_on_commit_callbacks
):
    from tests.test_csv_import import run_import

    settings.MEDIA_ROOT = tmp_path
    crm = subscribe(receiver, event_types=["contact.outcome_recorded"], include_imports=True)
    subscribe(None, url=receiver.url, name="Slack", event_types=["contact.outcome_recorded"])

    run_import(
        marketer_client,
        django_capture_on_commit_callbacks,
        b"email,first_name,converted\nana@exemple.fr,Ana,1\nbob@exemple.fr,Bob,0\n",
    )

    assert set(WebhookDelivery.objects.values_list("subscription", flat=True)) == {crm.pk}
    sent = sorted(
        (r.payload["data"]["contact"]["email"], r.payload["data"]["result"])
        for r in receiver.received
    )
    assert sent == [("ana@exemple.fr", "won"), ("bob@exemple.fr", "lost")]
