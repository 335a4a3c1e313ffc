"""DKIM signing of what nurturing's SMTP backend sends: the bytes a real SMTP server (aiosmtpd)
receives verify with dkimpy against the published key, the one-click unsubscribe headers are
signed, and settings that cannot sign are refused by `manage.py check`."""

from __future__ import annotations

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from dkim.util import parse_tag_value

from nurturing import enrolment, scheduler, sending
from nurturing.dkim_signing import public_key_record
from nurturing.models import Message
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with
from tests.test_settings import PRODUCTION, manage

pytestmark = pytest.mark.django_db

SELECTOR = "lf2026"


def pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def key_file(key, tmp_path):
    path = tmp_path / "dkim.pem"
    path.write_bytes(pem(key))
    return path


@pytest.fixture
def signing(settings, key_file):
    settings.DEFAULT_FROM_EMAIL = "Boutique Dupré <marketing@boutique.example.fr>"
    settings.DKIM_SELECTOR = SELECTOR
    settings.DKIM_DOMAIN = ""
    settings.DKIM_PRIVATE_KEY = ""
    settings.DKIM_PRIVATE_KEY_FILE = str(key_file)
    return settings


@pytest.fixture
def sink(nurturing_smtp):
    return nurturing_smtp


def published(key, domain="boutique.example.fr"):
    """dkimpy's DNS lookup, answered with ``key``'s record at the selector's name only."""

    def dnsfunc(name, timeout=5):
        if name == f"{SELECTOR}._domainkey.{domain}.".encode():
            return public_key_record(key).encode()
        return None

    return dnsfunc


def send_one(**step) -> bytes:
    contact = ContactFactory(first_name="Hélène", email="helene@example.fr")
    sequence = sequence_with(email_step(**step))
    enrolment.enrollments_start(sequence=sequence, contact_ids=[contact.pk])
    scheduler.enrollments_advance()
    assert sending.messages_send() == 1
    return Message.objects.get().pk


def signature_tags(data: bytes) -> dict[bytes, bytes]:
    header = dkim.rfc822_parse(data)[0][0]
    assert header[0] == b"DKIM-Signature"
    return parse_tag_value(header[1])


def test_a_sent_email_verifies_with_the_published_key_and_signs_the_unsubscribe_headers(
    signing, sink, key
):
    send_one(
        subject="{{ first_name }}, les poêles assorties à votre casserole en acier émaillé — été",
        body="Bonjour {{ first_name }},\n.Une ligne qui commence par un point.\n"
        "Voyez https://boutique.example.fr/poêles   \n\n\n",
    )

    [received] = sink.received
    assert dkim.verify(received.data, dnsfunc=published(key))
    tags = signature_tags(received.data)
    assert tags[b"d"] == b"boutique.example.fr" and tags[b"s"] == SELECTOR.encode()
    assert tags[b"a"] == b"rsa-sha256" and tags[b"c"] == b"relaxed/relaxed"
    signed = [name.strip() for name in tags[b"h"].split(b":")]
    assert {b"list-unsubscribe", b"list-unsubscribe-post", b"from", b"to", b"subject"} <= set(
        signed
    )
    mail = received.message
    assert mail["Subject"].startswith("Hélène, les poêles assorties")
    assert "=?utf-8?b?" in received.data.decode("ascii")  # the subject went as encoded words
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert ".Une ligne qui commence par un point." in mail.get_body(("plain",)).get_content()


def test_every_email_of_a_batch_verifies_those_signed_ahead_too(signing, sink, key):
    contacts = ContactFactory.create_batch(3)
    sequence = sequence_with(email_step())
    enrolment.enrollments_start(sequence=sequence, contact_ids=[c.pk for c in contacts])
    scheduler.enrollments_advance()

    assert sending.messages_send() == 3  # the 2nd and 3rd are made while the server reads

    assert len(sink.received) == 3
    assert all(dkim.verify(r.data, dnsfunc=published(key)) for r in sink.received)
    assert sorted(r.message["To"] for r in sink.received) == sorted(c.email for c in contacts)


@pytest.mark.parametrize(
    ("_case", "old", "new"),
    [
        ("_body", b"Bonjour", b"Bonsoir"),
        ("_unsubscribe_link", b"/e/u/", b"/e/x/"),
        ("_one_click", b"List-Unsubscribe=One-Click", b"List-Unsubscribe=Two-Clicks"),
    ],
)
def test_a_tampered_email_fails_verification(signing, sink, key, _case, old, new):
    send_one()

    [received] = sink.received
    assert old in received.data
    assert not dkim.verify(received.data.replace(old, new, 1), dnsfunc=published(key))


def test_an_aligned_parent_domain_signs(signing, sink, key):
    signing.DEFAULT_FROM_EMAIL = "marketing@news.boutique.example.fr"
    signing.DKIM_DOMAIN = "boutique.example.fr"

    send_one()

    [received] = sink.received
    assert signature_tags(received.data)[b"d"] == b"boutique.example.fr"
    assert dkim.verify(received.data, dnsfunc=published(key))


def test_another_key_does_not_verify(signing, sink):
    send_one()

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    [received] = sink.received
    assert not dkim.verify(received.data, dnsfunc=published(other))


def test_without_dkim_settings_nothing_is_signed(settings, sink):
    settings.DKIM_SELECTOR = settings.DKIM_PRIVATE_KEY = settings.DKIM_PRIVATE_KEY_FILE = ""

    send_one()

    [received] = sink.received
    assert b"DKIM-Signature" not in received.data


def test_a_key_that_cannot_be_read_at_send_time_sends_nothing_and_retries(signing, sink, key_file):
    key_file.unlink()

    contact = ContactFactory()
    sequence = sequence_with(email_step())
    enrolment.enrollments_start(sequence=sequence, contact_ids=[contact.pk])
    scheduler.enrollments_advance()
    assert sending.messages_send() == 0

    assert sink.received == []
    message = Message.objects.get()
    assert message.status == "queued" and "DKIM_PRIVATE_KEY_FILE" in message.error


# --- manage.py check -------------------------------------------------------------------------


def check_output() -> str:
    with pytest.raises(SystemCheckError) as raised:
        call_command("check")
    return str(raised.value)


@pytest.mark.parametrize(
    ("_case", "values", "named"),
    [
        ("_missing_file", {"DKIM_PRIVATE_KEY_FILE": "/nonexistent/dkim.pem"}, "/nonexistent"),
        ("_not_a_key", {"DKIM_PRIVATE_KEY": "bonjour"}, "DKIM_PRIVATE_KEY"),
        ("_no_key", {}, "DKIM_PRIVATE_KEY_FILE"),
        ("_other_domain", {"DKIM_DOMAIN": "autre.example.com"}, "autre.example.com"),
        ("_no_selector", {"DKIM_SELECTOR": ""}, "DKIM_SELECTOR"),
    ],
)
def test_manage_py_check_refuses_dkim_settings_that_cannot_sign(signing, key, _case, values, named):
    signing.DKIM_PRIVATE_KEY_FILE = ""
    signing.DKIM_PRIVATE_KEY = (
        pem(key).decode() if _case in {"_other_domain", "_no_selector"} else ""
    )
    for name, value in values.items():
        setattr(signing, name, value)

    output = check_output()

    assert "leadfunnel.E013" in output and named in output


def test_manage_py_check_refuses_a_key_that_is_not_rsa(signing, tmp_path):
    path = tmp_path / "ec.pem"
    path.write_bytes(pem(ec.generate_private_key(ec.SECP256R1())))
    signing.DKIM_PRIVATE_KEY_FILE = str(path)

    assert "RSA" in check_output()


def test_manage_py_check_accepts_an_inline_key(signing, key, capsys):
    signing.DKIM_PRIVATE_KEY_FILE = ""
    signing.DKIM_PRIVATE_KEY = pem(key).decode()

    call_command("check")

    assert "E013" not in capsys.readouterr().err


def test_manage_py_check_warns_when_the_backend_does_not_sign(signing, capsys):
    signing.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

    call_command("check")

    assert "leadfunnel.W014" in capsys.readouterr().err


def test_an_inline_key_in_the_environment_with_escaped_line_breaks_is_read(key):
    inline = pem(key).decode().replace("\n", "\\n")  # one line, as in an .env file
    env = {**PRODUCTION, "DKIM_SELECTOR": SELECTOR, "DKIM_PRIVATE_KEY": inline,
           "DEFAULT_FROM_EMAIL": "marketing@boutique.example.fr"}  # fmt: skip

    result = manage("check", env=env)

    assert result.returncode == 0, result.stderr
