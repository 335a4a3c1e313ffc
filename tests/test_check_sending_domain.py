"""`manage.py check_sending_domain` against a real DNS server (tests/dns_server.py, UDP on a
free port) serving good, missing and broken SPF, DKIM and DMARC records; and against no DNS
server at all, where it says so and exits non-zero without a traceback."""

from __future__ import annotations

from io import StringIO

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.management import call_command
from django.core.management.base import CommandError

from nurturing.dkim_signing import public_key_record
from tests.dns_server import DnsServer, txt
from tests.test_settings import PRODUCTION, manage
from tests.utils import free_port

SELECTOR = "lf2026"
RELAY = "185.70.40.7"  # the SMTP relay's public address (only this DNS server knows it)


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(autouse=True)
def french(monkeypatch):
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
    monkeypatch.setenv("LANG", "fr_FR.UTF-8")


@pytest.fixture
def configured(settings, key, tmp_path):
    path = tmp_path / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    settings.DEFAULT_FROM_EMAIL = "Boutique <marketing@boutique.example.fr>"
    settings.DKIM_SELECTOR, settings.DKIM_DOMAIN = SELECTOR, ""
    settings.DKIM_PRIVATE_KEY, settings.DKIM_PRIVATE_KEY_FILE = "", str(path)
    settings.EMAIL_BACKEND = "nurturing.smtp.EmailBackend"
    settings.EMAIL_HOST = "smtp.relay.example"
    return settings


def good_zone(key) -> dict:
    return {
        ("boutique.example.fr", "TXT"): [
            txt("google-site-verification=abc123"),
            txt("v=spf1 mx include:_spf.relay.example -all"),
        ],
        ("boutique.example.fr", "MX"): ["10 mx.boutique.example.fr."],
        ("mx.boutique.example.fr", "A"): ["80.67.169.12"],
        ("_spf.relay.example", "TXT"): [txt("v=spf1 ip4:185.70.40.0/24 ip6:2a0b:7280::/32 ~all")],
        ("smtp.relay.example", "A"): [RELAY],
        (f"{SELECTOR}._domainkey.boutique.example.fr", "TXT"): [txt(public_key_record(key))],
        ("_dmarc.boutique.example.fr", "TXT"): [
            txt("v=DMARC1; p=quarantine; rua=mailto:dmarc@boutique.example.fr")
        ],
    }


@pytest.fixture
def dns_zone():
    servers = []

    def serve(records):
        server = DnsServer(records)
        servers.append(server)
        return server

    yield serve
    for server in servers:
        server.stop()


def check(server, *args) -> tuple[str, str | None]:
    """The command's output, and its error when it ends with one."""
    out = StringIO()
    try:
        call_command(
            "check_sending_domain", *args, "--nameserver", server.address, "--timeout", "5",
            stdout=out,
        )  # fmt: skip
    except CommandError as error:
        return out.getvalue(), str(error)
    return out.getvalue(), None


def test_a_domain_with_everything_in_place_passes(configured, key, dns_zone):
    server = dns_zone(good_zone(key))

    output, error = check(server)

    assert error is None, output
    assert "Domaine d’envoi : boutique.example.fr" in output
    assert "[OK] SPF: Enregistrement SPF trouvé : v=spf1 mx include:_spf.relay.example -all" in (
        output
    )
    assert f"[OK] SPF: Le serveur SMTP smtp.relay.example ({RELAY}) y est autorisé." in output
    assert "[OK] DKIM:" in output and "correspond à la clé privée configurée (2048 bits)" in output
    assert "[OK] DMARC:" in output and "p=quarantine" in output
    assert "mailto:dmarc@boutique.example.fr" in output
    assert "SPF, DKIM et DMARC sont en place." in output


def test_spf_is_read_at_the_bounce_address_domain_when_there_is_one(configured, key, dns_zone):
    configured.NURTURING_BOUNCE_ADDRESS = "retours@rebonds.example.net"
    zone = good_zone(key)
    zone[("rebonds.example.net", "TXT")] = [txt("v=spf1 ip4:185.70.40.7 -all")]
    zone[("boutique.example.fr", "TXT")] = [txt("v=spf1 ip4:192.0.2.1 -all")]
    server = dns_zone(zone)

    output, error = check(server)

    assert error is None, output
    assert "[OK] SPF: Enregistrement SPF trouvé\xa0: v=spf1 ip4:185.70.40.7 -all" in output
    assert f"[OK] SPF: Le serveur SMTP smtp.relay.example ({RELAY}) y est autorisé." in output


def test_a_domain_without_records_is_told_what_to_publish(configured, key, dns_zone):
    server = dns_zone({("boutique.example.fr", "A"): ["80.67.169.12"]})

    output, error = check(server)

    assert error == "3 problèmes à corriger (SPF, DKIM, DMARC)."
    assert "[MANQUANT] SPF: Aucun enregistrement SPF pour boutique.example.fr" in output
    assert f"[MANQUANT] DKIM: Aucun enregistrement DKIM en {SELECTOR}._domainkey" in output
    assert public_key_record(key) in output  # the record to publish, ready to paste
    assert "[MANQUANT] DMARC: Aucun enregistrement DMARC en _dmarc.boutique.example.fr" in output


def test_broken_records_are_each_named(configured, key, dns_zone):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    zone = good_zone(key)
    zone[("boutique.example.fr", "TXT")] = [txt("v=spf1 +all")]
    zone[(f"{SELECTOR}._domainkey.boutique.example.fr", "TXT")] = [txt(public_key_record(other))]
    zone[("_dmarc.boutique.example.fr", "TXT")] = [txt("v=DMARC1; rua=mailto:d@example.fr")]
    server = dns_zone(zone)

    output, error = check(server)

    assert error == "3 problèmes à corriger (SPF, DKIM, DMARC)."
    assert "[ERREUR] SPF: L’enregistrement SPF se termine par +all" in output
    assert "[ERREUR] DKIM:" in output and "ne correspond pas à la clé privée configurée" in output
    assert public_key_record(key) in output
    assert "[ERREUR] DMARC:" in output and "pas de politique valable" in output


@pytest.mark.parametrize(
    ("_case", "spf", "host", "expected"),
    [
        ("_two_records", ["v=spf1 -all", "v=spf1 ip4:185.70.40.7 -all"], "smtp.relay.example",
         "[ERREUR] SPF: 2 enregistrements SPF pour boutique.example.fr"),
        ("_server_not_in_it", ["v=spf1 ip4:203.0.113.0/24 -all"], "80.67.169.40",
         "[ERREUR] SPF: Le serveur SMTP 80.67.169.40 (80.67.169.40) n’y est pas autorisé"),
        ("_a_mechanism_with_prefix", ["v=spf1 a:mx.boutique.example.fr/24 -all"], "80.67.169.40",
         "[OK] SPF: Le serveur SMTP 80.67.169.40 (80.67.169.40) y est autorisé."),
        ("_redirect", ["v=spf1 redirect=_spf.relay.example"], "smtp.relay.example",
         f"[OK] SPF: Le serveur SMTP smtp.relay.example ({RELAY}) y est autorisé."),
        ("_exists_cannot_be_told", ["v=spf1 exists:%{i}.spf.example -all"], "smtp.relay.example",
         "[ATTENTION] SPF: Impossible de dire si le serveur SMTP smtp.relay.example"),
        ("_neutral", ["v=spf1 ip4:185.70.40.7 ?all"], "smtp.relay.example",
         "[ATTENTION] SPF: L’enregistrement SPF se termine par ?all"),
        ("_local_relay", ["v=spf1 ip4:185.70.40.7 -all"], "127.0.0.1",
         "[ATTENTION] SPF: Impossible de dire si le serveur SMTP est autorisé : EMAIL_HOST "
         "(127.0.0.1)"),
    ],
)  # fmt: skip
def test_spf_findings(configured, key, dns_zone, _case, spf, host, expected):
    configured.EMAIL_HOST = host
    zone = good_zone(key)
    zone[("boutique.example.fr", "TXT")] = [txt(record) for record in spf]
    server = dns_zone(zone)

    output, _error = check(server)

    assert expected in output, output


def test_dmarc_p_none_without_reports_is_a_warning_not_a_failure(configured, key, dns_zone):
    zone = good_zone(key)
    zone[("_dmarc.boutique.example.fr", "TXT")] = [txt("v=DMARC1; p=none")]
    server = dns_zone(zone)

    output, error = check(server)

    assert error is None
    assert "[ATTENTION] DMARC: Enregistrement DMARC en _dmarc.boutique.example.fr avec p=none" in (
        output
    )
    assert "[ATTENTION] DMARC: L’enregistrement DMARC n’a pas d’adresse rua=" in output


def test_a_subdomain_falls_under_its_parents_dmarc_record(configured, key, dns_zone):
    configured.DEFAULT_FROM_EMAIL = "marketing@news.boutique.example.fr"
    configured.DKIM_DOMAIN = "boutique.example.fr"
    server = dns_zone(good_zone(key))

    output, _error = check(server, "news.boutique.example.fr")

    assert "[OK] DMARC: Enregistrement DMARC en _dmarc.boutique.example.fr" in output


def test_without_dkim_settings_it_says_signing_is_off(settings, key, dns_zone):
    settings.DEFAULT_FROM_EMAIL = "marketing@boutique.example.fr"
    settings.DKIM_SELECTOR = settings.DKIM_PRIVATE_KEY = settings.DKIM_PRIVATE_KEY_FILE = ""
    server = dns_zone(good_zone(key))

    output, error = check(server)

    assert "[MANQUANT] DKIM: La signature DKIM est désactivée" in output
    assert error == "1 problème à corriger (DKIM)."


def test_it_speaks_english_to_an_english_user(configured, key, dns_zone, monkeypatch):
    monkeypatch.setenv("LANG", "en_GB.UTF-8")
    server = dns_zone({})

    output, error = check(server)

    assert "[MISSING] SPF: No SPF record at boutique.example.fr" in output
    assert error == "3 problems to fix (SPF, DKIM, DMARC)."


def test_without_a_reachable_dns_server_it_says_so_and_fails_without_a_traceback():
    env = {**PRODUCTION, "LANG": "fr_FR.UTF-8", "LANGUAGE_CODE": "fr"}
    silent = f"127.0.0.1:{free_port()}"  # nothing listens there

    result = manage("check_sending_domain", "example.fr", "--nameserver", silent,
                    "--timeout", "1", env=env)  # fmt: skip

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "Le DNS est injoignable" in result.stderr and "rien n’a été vérifié" in result.stderr
