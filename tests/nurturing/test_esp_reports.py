"""What each ESP's tracking post means as a bounce report: the payloads as the ESPs document
them, parsed by anymail's own views, then ``nurturing.esp.reports_for`` (no database)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from anymail.webhooks.amazon_ses import AmazonSESTrackingWebhookView
from anymail.webhooks.brevo import BrevoTrackingWebhookView
from anymail.webhooks.mailgun import MailgunTrackingWebhookView
from anymail.webhooks.postmark import PostmarkTrackingWebhookView
from anymail.webhooks.sendgrid import SendGridTrackingWebhookView
from django.test import RequestFactory

from nurturing import esp
from nurturing.bounces import Report

# Anymail 15 keeps SendGrid's webhook but no longer tests it against SendGrid: it says so.
pytestmark = pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning")

DATA = Path(__file__).resolve().parents[1] / "data" / "esp"


def sample(name: str, **changes: Any) -> dict[str, Any]:
    payload = json.loads((DATA / name).read_text().replace("MESSAGE_PK", "42"))
    return {**payload, **changes}


def brevo(**changes: Any) -> tuple[type, Any]:
    return BrevoTrackingWebhookView, sample("brevo_hard_bounce.json", **changes)


def mailgun(**changes: Any) -> tuple[type, Any]:
    payload = sample("mailgun_failed_permanent.json")
    payload["event-data"] = {**payload["event-data"], **changes}
    return MailgunTrackingWebhookView, payload


def sendgrid(**changes: Any) -> tuple[type, Any]:
    event = {
        "email": "example@test.com", "timestamp": 1513299569, "smtp-id": "<14c5d75ce93.dfd@ismtpd>",
        "event": "bounce", "category": "cat facts", "sg_event_id": "6g4ZI7SA-xmRDv57GoPIPw==",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "reason": "500 unknown recipient", "status": "5.0.0", "type": "bounce",
        "lf_message": "42",
    }  # fmt: skip
    event = {key: value for key, value in {**event, **changes}.items() if value is not None}
    return SendGridTrackingWebhookView, [event]


def postmark(**changes: Any) -> tuple[type, Any]:
    event = {
        "RecordType": "Bounce", "ID": 4323372036854775807, "Type": "HardBounce", "TypeCode": 1,
        "Name": "Hard bounce", "Tag": "Test", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {"lf_message": "42"}, "ServerID": 23, "MessageStream": "outbound",
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": "john@example.com", "From": "sender@example.com",
        "BouncedAt": "2026-12-06T16:33:54.9070259Z", "DumpAvailable": True, "Inactive": True,
        "CanActivate": True, "Subject": "Test subject",
    }  # fmt: skip
    return PostmarkTrackingWebhookView, {**event, **changes}


def ses(event_type: str = "Bounce", **detail: Any) -> tuple[type, Any]:
    mail = {
        "timestamp": "2026-12-06T00:40:02.012Z", "source": "sender@example.com",
        "messageId": "0100017f-example", "destination": ["recipient@example.com"],
        "headers": [{"name": "X-Metadata", "value": '{"lf_message": "42"}'}],
    }  # fmt: skip
    if event_type == "Bounce":
        body = {
            "bounceType": "Permanent", "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": "recipient@example.com", "action": "failed",
                                   "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
            "timestamp": "2026-12-06T00:40:03.000Z", "feedbackId": "feedback-1",
            **detail,
        }  # fmt: skip
    else:
        body = {
            "complainedRecipients": [{"emailAddress": "recipient@example.com"}],
            "timestamp": "2026-12-06T00:41:00.000Z", "feedbackId": "feedback-2",
            "complaintFeedbackType": "abuse",
        }  # fmt: skip
    message = {"eventType": event_type, "mail": mail, event_type.lower(): body}
    notification = {
        "Type": "Notification", "MessageId": "sns-message-1",
        "TopicArn": "arn:aws:sns:eu-west-3:123456789012:ses-events",
        "Message": json.dumps(message), "Timestamp": "2026-12-06T00:40:04.000Z",
    }  # fmt: skip
    return AmazonSESTrackingWebhookView, notification


def reports(view_class: type, payload: Any) -> list[Report]:
    request = RequestFactory().post(
        "/esp/tracking/", data=json.dumps(payload), content_type="application/json"
    )
    view = view_class(webhook_secret="user:pass", webhook_signing_key="key")
    return esp.reports_for(view.parse_events(request), esp_name=view.esp_name)


@pytest.mark.parametrize(
    ("_case", "post", "kind", "status"),
    [
        ("brevo hard bounce", brevo(), "hard", "5.1.1"),
        ("brevo soft bounce", brevo(event="soft_bounce", reason="452 4.2.2 Mailbox full"), "soft", "4.2.2"),
        ("brevo hard bounce quoting a 4xx", brevo(reason="452 4.2.2 Over quota for good"), "hard", "4.2.2"),
        ("brevo invalid address", brevo(event="invalid_email", reason=""), "hard", ""),
        ("brevo deferred", brevo(event="deferred", reason="421 try later"), "deferred", "421"),
        ("brevo complaint", brevo(event="spam"), "complaint", "5.1.1"),
        ("brevo unsubscribe", brevo(event="unsubscribe", reason=""), "unsubscribed", ""),
        ("brevo blocked by brevo", brevo(event="blocked", reason="blocked"), "soft", ""),
        ("mailgun permanent failure", mailgun(), "hard", "550"),
        ("mailgun temporary failure", mailgun(severity="temporary"), "deferred", "550"),
        ("mailgun complaint", mailgun(event="complained"), "complaint", "550"),
        ("mailgun unsubscribe", mailgun(event="unsubscribed"), "unsubscribed", "550"),
        ("sendgrid bounce", sendgrid(), "hard", "500"),
        ("sendgrid blocked", sendgrid(type="blocked", reason="421 try later"), "soft", "421"),
        ("sendgrid dropped, bounced before", sendgrid(event="dropped", reason="Bounced Address", type=None, status=None), "hard", ""),
        ("sendgrid dropped, complained before", sendgrid(event="dropped", reason="Spam Reporting Address", type=None, status=None), "complaint", ""),
        ("sendgrid spam report", sendgrid(event="spamreport"), "complaint", "500"),
        ("sendgrid deferred", sendgrid(event="deferred", response="450 busy"), "deferred", "450"),
        ("postmark hard bounce", postmark(), "hard", "5.1.1"),
        ("postmark soft bounce", postmark(Type="SoftBounce", Details="smtp;452 4.2.2 Mailbox full"), "soft", "4.2.2"),
        ("postmark transient", postmark(Type="Transient", Details="timeout"), "deferred", ""),
        ("postmark complaint", postmark(RecordType="SpamComplaint", Type="SpamComplaint"), "complaint", "5.1.1"),
        ("ses permanent bounce", ses(), "hard", "5.1.1"),
        ("ses transient bounce", ses(bounceType="Transient", bounceSubType="MailboxFull", bouncedRecipients=[{"emailAddress": "recipient@example.com"}]), "soft", ""),
        ("ses complaint", ses("Complaint"), "complaint", ""),
    ],
)  # fmt: skip
def test_an_esp_event_becomes_a_report_of_its_kind_for_our_message(_case, post, kind, status):
    [report] = reports(*post)

    assert report.kind == kind
    assert report.status == status
    assert report.message_id == 42
    assert report.source.startswith("esp:") and report.reference
    assert report.email and "@" in report.email
    assert report.occurred_at is not None


@pytest.mark.parametrize(
    ("_case", "post"),
    [
        ("brevo delivered", brevo(event="delivered")),
        ("brevo opened", brevo(event="unique_opened")),
        ("brevo click", brevo(event="click", link="https://example.fr")),
        ("mailgun delivered", mailgun(event="delivered")),
        ("sendgrid open", sendgrid(event="open")),
        ("postmark delivery", postmark(RecordType="Delivery")),
    ],
)  # fmt: skip
def test_events_that_say_nothing_about_the_address_are_ignored(_case, post):
    assert reports(*post) == []


def test_the_same_event_has_the_same_reference_and_another_one_another():
    [first] = reports(*brevo())
    [again] = reports(*brevo())
    [later] = reports(*brevo(ts_epoch=1796547781000 + 60_000))

    assert first.reference == again.reference != later.reference
    assert first.source == "esp:brevo"


def test_an_event_without_our_message_id_is_matched_by_address_only():
    [report] = reports(*brevo(**{"X-Mailin-custom": None}))
    [foreign] = reports(*postmark(Metadata={"lf_message": "not-ours"}))

    assert report.message_id is None and report.email == "example@example.com"
    assert foreign.message_id is None
