"""Reading bounce mail (nurturing.bounce_mail) and VERP tokens (nurturing.verp): no database,
real RFC 3464 / RFC 5965 messages in several vendors' shapes (tests/data/bounces/)."""

from __future__ import annotations

import base64

import pytest

from nurturing import bounce_mail, verp
from tests.nurturing.bounce_data import BOUNCE_ADDRESS, bounce

OUR_MESSAGE_ID = "<nurturing.12.34@leadfunnel.test>"


@pytest.fixture(autouse=True)
def bounce_address(settings):
    settings.NURTURING_BOUNCE_ADDRESS = BOUNCE_ADDRESS


def read(raw: bytes) -> bounce_mail.Reading:
    return bounce_mail.read_mail(raw)


# --- VERP -------------------------------------------------------------------------------------


def test_a_return_path_names_its_message_and_reads_back_whatever_the_case():
    address = verp.return_path(4321)

    local, domain = address.split("@")
    assert domain == "leadfunnel.test" and local.startswith("bounces+4321-")
    assert verp.message_from_address(address) == 4321
    assert verp.message_from_address(address.upper()) == 4321  # MTAs that lower/upper-case


@pytest.mark.parametrize(
    ("_case", "tamper"),
    [
        ("another message id, same signature", lambda a: a.replace("+4321-", "+4322-")),
        ("a changed signature", lambda a: a[:-22] + ("0" if a[-22] != "0" else "1") + a[-21:]),
    ],
)
def test_a_tampered_return_path_is_not_trusted(_case, tamper):
    address = tamper(verp.return_path(4321))
    assert verp.read(address) is not None and verp.read(address)[1] is False
    assert verp.message_from_address(address) is None


def test_a_token_signed_with_a_retired_secret_key_still_reads(settings):
    address = verp.return_path(77)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789"

    assert verp.message_from_address(address) == 77
    assert verp.return_path(77) != address


def test_without_a_bounce_address_messages_keep_their_sender(settings):
    settings.NURTURING_BOUNCE_ADDRESS = ""
    assert verp.return_path(4321) == ""


# --- Vendors' shapes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("_case", "name", "kind", "status", "format"),
    [
        ("Postfix DSN, user unknown", "postfix_dsn", "hard", "5.1.1", "dsn"),
        ("Exchange Online DSN, mailbox full", "exchange_dsn", "soft", "5.2.2", "dsn"),
        ("Gmail DSN, delayed", "gmail_dsn", "deferred", "4.4.1", "dsn"),
        ("Exim without DSN", "exim_plain", "hard", "5.1.1", "detector"),
        ("qmail without DSN", "qmail_plain", "hard", "5.1.1", "detector"),
        ("Yahoo feedback loop (ARF)", "yahoo_arf", "complaint", "", "arf"),
    ],
)
def test_each_vendor_shape_reads_as_one_failure(_case, name, kind, status, format):
    reading = read(bounce(name, message_pk=55, message_id=OUR_MESSAGE_ID))

    [failure] = reading.failures
    assert (failure.kind, failure.status, reading.format) == (kind, status, format)
    assert reading.review == "" and reading.ignored == ""


@pytest.mark.parametrize(
    ("name", "message_pk", "enrollment_step"),
    [
        ("postfix_dsn", 55, (12, 34)),  # token in To and Delivered-To, Message-ID in headers part
        ("exim_plain", 55, (12, 34)),  # token in To, Message-ID in the quoted original
        ("yahoo_arf", 55, (12, 34)),  # token in the original's Return-Path (sent to the FBL)
        ("exchange_dsn", None, (12, 34)),  # to the plain address: the Message-ID only
        ("qmail_plain", None, None),  # nothing but the recipient
    ],
)
def test_the_message_is_found_by_token_then_message_id(name, message_pk, enrollment_step):
    reading = read(bounce(name, message_pk=message_pk, message_id=OUR_MESSAGE_ID))

    assert reading.message_id == message_pk
    assert reading.enrollment_step == enrollment_step


def test_a_dsn_names_the_recipient_and_keeps_the_servers_words():
    [failure] = read(bounce("postfix_dsn", recipient="Paul.Durand@Example.org")).failures
    assert failure.email == "Paul.Durand@Example.org"
    assert failure.diagnostic.startswith("550 5.1.1 <Paul.Durand@Example.org>: Recipient address")


def test_a_forged_token_sends_the_mail_to_review():
    genuine = verp.return_path(55)
    forged = genuine.replace("+55-", "+56-")

    reading = read(bounce("postfix_dsn", return_path=forged))

    assert reading.failures == () and reading.message_id is None
    assert reading.review == "forged VERP token"


def test_an_auto_reply_is_not_a_bounce():
    reading = read(bounce("auto_reply", message_id=OUR_MESSAGE_ID))
    assert reading.failures == () and reading.ignored == "auto-reply" and reading.review == ""


def test_unrelated_mail_goes_to_review():
    reading = read(bounce("garbage"))
    assert reading.failures == () and reading.review == "not recognised as a bounce"


def test_a_not_spam_feedback_report_is_no_complaint():
    raw = bounce("yahoo_arf", message_pk=55).replace(b"abuse", b"not-spam")
    reading = read(raw)
    assert reading.failures == () and reading.review == "feedback report of type not-spam"


def test_a_success_notice_is_not_a_bounce():
    raw = bounce("postfix_dsn", message_pk=55).replace(b"Action: failed", b"Action: delivered")
    reading = read(raw)
    assert reading.failures == () and reading.ignored.startswith("delivery report of a success")


def test_a_mail_without_a_message_id_is_referenced_by_its_bytes():
    raw = bounce("qmail_plain").replace(b"Message-ID: <20261206094002.27493.qmail", b"X-Old-Id: <")
    assert read(raw).reference.startswith("sha256:")
    assert read(raw).reference == read(raw).reference


# --- Classification ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "status", "diagnostic", "kind"),
    [
        ("failed", "5.1.1", "", "hard"),
        ("failed", "5.1.2", "", "hard"),  # bad destination domain
        ("failed", "5.4.4", "", "hard"),  # unable to route
        ("failed", "5.2.1", "", "hard"),  # mailbox disabled
        ("failed", "5.2.2", "", "soft"),  # mailbox full: soft by convention
        ("failed", "5.2.3", "", "soft"),
        ("failed", "5.3.4", "", "soft"),
        ("failed", "5.4.7", "", "soft"),
        ("failed", "5.7.1", "", "soft"),  # refused on policy: the address may be fine
        ("failed", "5.7.26", "", "soft"),
        ("failed", "4.2.2", "", "soft"),
        ("failed", "4.4.7", "", "soft"),
        ("failed", "", "smtp; 550 no such user", "hard"),
        ("failed", "", "smtp; 552 storage exceeded", "soft"),
        ("failed", "", "smtp; 451 try later", "soft"),
        ("failed", "", "", None),  # nothing to go by: review
        ("delayed", "4.4.1", "", "deferred"),
        ("delivered", "2.0.0", "", ""),
        ("relayed", "2.0.0", "", ""),
        ("expanded", "2.0.0", "", ""),
        ("", "5.1.1", "", None),
    ],
)
def test_classification(action, status, diagnostic, kind):
    assert bounce_mail.classify(action, status, diagnostic) == kind


def test_a_report_with_encoded_parts_reads_the_same():
    raw = bounce("postfix_dsn", message_pk=55, message_id=OUR_MESSAGE_ID)
    head, _, rest = raw.partition(b"Content-Type: message/delivery-status\r\n\r\n")
    fields, _, tail = rest.partition(b"\r\n--4QK7m2X1tBz9sW")
    encoded = base64.encodebytes(fields).replace(b"\n", b"\r\n")
    raw = (
        head + b"Content-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64\r\n"
        b"\r\n" + encoded + b"\r\n--4QK7m2X1tBz9sW" + tail
    )

    reading = read(raw)

    [failure] = reading.failures
    assert (failure.kind, failure.status, reading.message_id) == ("hard", "5.1.1", 55)
    assert reading.enrollment_step == (12, 34)


def test_bytes_that_are_not_utf8_do_not_stop_the_reading():
    raw = bounce("postfix_dsn", message_pk=55).replace(
        b"User unknown in virtual", b"Utilisateur inconnu \xe9\xe0 virtual"
    )
    [failure] = read(raw).failures
    assert failure.kind == "hard" and "Utilisateur inconnu \ufffd\ufffd" in failure.diagnostic


def test_a_bounce_nothing_can_read_goes_to_review_not_for_an_auto_reply():
    raw = (
        b"From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n"
        b"To: bounces@leadfunnel.test\r\nSubject: Returned mail\r\n"
        b"Auto-Submitted: auto-replied\r\nMessage-ID: <odd-1@mx.example.net>\r\n\r\n"
        b"Something went wrong with your message. Sorry.\r\n"
    )
    reading = read(raw)
    assert reading.failures == () and reading.review == "bounce not understood"
