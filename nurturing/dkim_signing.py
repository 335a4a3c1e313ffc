"""DKIM signatures (RFC 6376) on the messages nurturing's SMTP backend sends.

On when ``DKIM_SELECTOR`` and a private key are set (settings.py). Each message is signed for
``DKIM_DOMAIN`` (d=; by default the domain of ``DEFAULT_FROM_EMAIL``, so that DMARC finds the
signature aligned with the From), relaxed/relaxed, rsa-sha256, over ``SIGNED_HEADERS``: the
one-click unsubscribe headers among them, as RFC 8058 requires for a receiver to honour them.
An ESP (django-anymail) signs with its own keys: this is for sending over plain SMTP.

dkimpy canonicalises and hashes, with the same code that verifies (the tests verify with
``dkim.verify``); the RSA signature itself is made by ``cryptography`` (OpenSSL) with the key
loaded once per process. dkimpy's ``dkim.sign`` parses the PEM key on every call and signs in
pure Python: 36 to 48 ms a message with a 2,048-bit key, against about 1 ms through OpenSSL
(6 December, loaded 2-core machine), which would have cut sending from ~600 to ~25 messages/s.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from django.conf import settings
from django.utils.translation import gettext as _
from dkim.canonicalization import CanonicalizationPolicy

# "from" twice: the second, absent, instance is signed as empty, so no second From can be added
# without breaking the signature. Headers a message lacks (List-Unsubscribe on an email to a
# sales rep) are signed as absent in the same way.
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"from",
)
CANONICALIZATION = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
MINIMUM_KEY_BITS = 1024  # receivers ignore shorter keys (RFC 8301); 2,048 is what to generate
_PKCS1 = padding.PKCS1v15()
_PREHASHED = utils.Prehashed(hashes.SHA256())


class DkimSettingsError(ValueError):
    """The DKIM settings cannot sign: the message says which and why."""


@dataclass(frozen=True)
class Signer:
    domain: str
    selector: str
    key: rsa.RSAPrivateKey

    def signature(self, message: bytes) -> bytes:
        """The ``DKIM-Signature`` header line (CRLF-ended) to put before ``message`` (bytes
        with CRLF line ends, as they go after DATA, before dot-stuffing)."""
        head, _blank, body = message.partition(b"\r\n\r\n")
        headers, _body = dkim.rfc822_parse(head + b"\r\n\r\n")
        body_hash = hashlib.sha256(CANONICALIZATION.canonicalize_body(body)).digest()
        tags = b"; ".join(
            [
                b"v=1",
                b"a=rsa-sha256",
                b"c=relaxed/relaxed",
                b"d=" + self.domain.encode("idna"),
                b"s=" + self.selector.encode(),
                b"t=%d" % int(time.time()),
                b"h=" + b" : ".join(SIGNED_HEADERS),
                b"bh=" + base64.b64encode(body_hash),
            ]
        )
        # Everything up to "b=" is hashed as it goes (with b= empty, as a verifier reads it),
        # so its folding is ours to choose; the signature is appended after, folded too.
        value = b" " + dkim.fold(tags, namelen=len(b"DKIM-Signature")) + b";\r\n b="
        hasher = hashlib.sha256()
        dkim.hash_headers(
            hasher,
            CANONICALIZATION,
            CANONICALIZATION.canonicalize_headers(headers),
            SIGNED_HEADERS,
            (b"DKIM-Signature", value),
            None,
        )
        signed = base64.b64encode(self.key.sign(hasher.digest(), _PKCS1, _PREHASHED))
        folded = b"\r\n ".join(signed[start : start + 72] for start in range(0, len(signed), 72))
        return b"DKIM-Signature:" + value + folded + b"\r\n"


def signer() -> Signer | None:
    """The signer the settings describe (its key loaded once), None when signing is off.
    Raises ``DkimSettingsError`` when they are incomplete or the key cannot be used."""
    return _signer(
        settings.DKIM_SELECTOR,
        settings.DKIM_DOMAIN,
        settings.DKIM_PRIVATE_KEY,
        settings.DKIM_PRIVATE_KEY_FILE,
        settings.DEFAULT_FROM_EMAIL,
    )


@lru_cache(maxsize=4)
def _signer(
    selector: str, domain: str, key_text: str, key_file: str, from_email: str
) -> Signer | None:
    if not selector and not key_text and not key_file:
        return None
    if not selector:
        raise DkimSettingsError(
            _("DKIM_SELECTOR is not set: DKIM signing needs the selector as well as the key.")
        )
    if key_text and key_file:
        raise DkimSettingsError(
            _("DKIM_PRIVATE_KEY and DKIM_PRIVATE_KEY_FILE are both set: set only one.")
        )
    if not key_text and not key_file:
        raise DkimSettingsError(
            _(
                "DKIM_SELECTOR is set but no private key: set DKIM_PRIVATE_KEY_FILE or "
                "DKIM_PRIVATE_KEY."
            )
        )
    if key_file:
        try:
            pem = Path(key_file).read_bytes()
        except OSError as error:
            raise DkimSettingsError(
                _("DKIM_PRIVATE_KEY_FILE %(path)s cannot be read: %(error)s.")
                % {"path": key_file, "error": error.strerror or error}
            ) from error
        where = "DKIM_PRIVATE_KEY_FILE"
    else:
        pem, where = key_text.encode(), "DKIM_PRIVATE_KEY"
    from_domain = address_domain(from_email)
    domain = (domain or from_domain).lower().rstrip(".")
    if not aligned(domain, from_domain):
        raise DkimSettingsError(
            _(
                "DKIM_DOMAIN %(domain)s does not match the domain of DEFAULT_FROM_EMAIL "
                "(%(from_domain)s): receivers applying DMARC would not count the signature."
            )
            % {"domain": domain, "from_domain": from_domain or "?"}
        )
    return Signer(domain=domain, selector=selector, key=load_private_key(pem, where))


def load_private_key(pem: bytes, where: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:  # not PEM, encrypted, damaged
        raise DkimSettingsError(
            _("%(setting)s is not a readable private key (PEM, without a password): %(error)s")
            % {"setting": where, "error": error}
        ) from error
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DkimSettingsError(
            _("%(setting)s is not an RSA key: DKIM signing uses rsa-sha256.") % {"setting": where}
        )
    if key.key_size < MINIMUM_KEY_BITS:
        raise DkimSettingsError(
            _(
                "%(setting)s is a %(bits)s-bit key: receivers ignore DKIM keys under 1024 bits; "
                "generate a 2048-bit one."
            )
            % {"setting": where, "bits": key.key_size}
        )
    return key


def public_key_record(key: rsa.RSAPrivateKey) -> str:
    """The TXT record to publish at ``<selector>._domainkey.<domain>`` for ``key``."""
    return f"v=DKIM1; k=rsa; p={public_key_text(key)}"


def public_key_text(key: rsa.RSAPrivateKey) -> str:
    """The p= value: the public key's SubjectPublicKeyInfo, base64 (RFC 6376 3.6.1)."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def address_domain(address: str) -> str:
    return parseaddr(address)[1].rpartition("@")[2].lower().rstrip(".")


def aligned(signing_domain: str, from_domain: str) -> bool:
    """DMARC's relaxed alignment, short of the public suffix list: the From's domain is the
    signing domain or one of its subdomains."""
    return bool(from_domain) and (
        from_domain == signing_domain or from_domain.endswith("." + signing_domain)
    )
