"""A marketing email's bytes, built directly.

Python's email generator (behind ``EmailMessage.message().as_bytes()``) costs a few
milliseconds per message, more than the SMTP exchange itself. Our messages always have the
same shape (text + HTML alternatives, UTF-8, a few headers), so they are written out here with
the C-speed quoted-printable encoder, and handed to Django's email backend as an
``EmailMessage`` whose ``message()`` returns these bytes.
"""

from __future__ import annotations

import binascii
import re
import secrets
import time
from email.utils import formatdate
from functools import lru_cache
from typing import Any

from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import sanitize_address


@lru_cache(maxsize=64)
def _address(value: str) -> str:
    return sanitize_address(value, "utf-8")


# An address that needs no quoting or encoding (most of them): used as it is.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")


def address(value: str) -> str:
    """``sanitize_address`` (which parses every address with the email package, a fifth of a
    millisecond) for the addresses that need it."""
    if _PLAIN_ADDRESS.fullmatch(value):
        return value
    return sanitize_address(value, "utf-8")


# RFC 2047 encoded words of at most 75 characters: 39 UTF-8 bytes make 52 base64 characters,
# with "=?utf-8?b?" and "?=" 64, which leaves room for the header's name on the first line.
_WORD_BYTES = 39


def _header(value: str) -> str:
    if "\n" in value or "\r" in value:
        value = value.replace("\r", " ").replace("\n", " ")  # no header injection
    if value.isascii() and len(value) < 900:
        return value
    # email.header.Header weighs quoted-printable against base64 character by character
    # (half a millisecond for a subject); base64 words are as valid and cost microseconds.
    data = value.encode()
    words = []
    start = 0
    while start < len(data):
        end = min(start + _WORD_BYTES, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # not inside a character
            end -= 1
        words.append(f"=?utf-8?b?{binascii.b2a_base64(data[start:end], newline=False).decode()}?=")
        start = end
    return "\r\n ".join(words)


@lru_cache(maxsize=2)
def _date(second: int) -> str:
    return formatdate(second, localtime=False, usegmt=True)


def _qp(text: str) -> bytes:
    body = text.replace("\r\n", "\n").encode()
    encoded = binascii.b2a_qp(body, quotetabs=False, istext=True, header=False)
    return encoded.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def build(
    *, from_email: str, to: str, subject: str, text: str, html: str, headers: dict[str, str]
) -> bytes:
    lines = [
        f"From: {_address(from_email)}",  # the same sender for every message: encoded once
        f"To: {address(to)}",
        f"Subject: {_header(subject)}",
        f"Date: {_date(int(time.time()))}",
        *(f"{name}: {_header(value)}" for name, value in headers.items()),
        "MIME-Version: 1.0",
    ]
    text_part = [
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: quoted-printable",
        "",
    ]
    if not html:
        head = "\r\n".join([*lines, *text_part]).encode()
        return head + b"\r\n" + _qp(text) + b"\r\n"
    boundary = f"=_lf_{secrets.token_hex(12)}"
    head = "\r\n".join(
        [*lines, f'Content-Type: multipart/alternative; boundary="{boundary}"', "", ""]
    )
    html_part = [
        'Content-Type: text/html; charset="utf-8"',
        "Content-Transfer-Encoding: quoted-printable",
        "",
    ]
    return b"".join(
        [
            head.encode(),
            f"--{boundary}\r\n".encode(),
            "\r\n".join(text_part).encode(),
            b"\r\n",
            _qp(text),
            f"\r\n--{boundary}\r\n".encode(),
            "\r\n".join(html_part).encode(),
            b"\r\n",
            _qp(html),
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )


class _Built:
    """What Django's backends call on ``EmailMessage.message()``'s result."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def as_bytes(self, unixfrom: bool = False, linesep: str = "\n", **kwargs: Any) -> bytes:
        return self.data if linesep == "\r\n" else self.data.replace(b"\r\n", linesep.encode())

    def as_string(self, unixfrom: bool = False, linesep: str = "\n", **kwargs: Any) -> str:
        return self.as_bytes(linesep=linesep).decode("ascii", errors="replace")

    def get_charset(self) -> None:
        return None


class BuiltEmail(EmailMultiAlternatives):
    """An ``EmailMultiAlternatives`` (so every backend, locmem included, takes it) whose MIME
    form is built by ``build``."""

    _built: _Built | None = None

    def message(self) -> Any:  # type: ignore[override]
        """Built once (a sender may make it ahead, while the server reads the one before)."""
        if self._built is None:
            self._built = self._build()
        return self._built

    def _build(self) -> _Built:
        html = next((content for content, kind in self.alternatives if kind == "text/html"), "")
        return _Built(
            build(
                from_email=self.from_email,
                to=self.to[0],
                subject=self.subject,
                text=self.body,
                html=html,
                headers=self.extra_headers,
            )
        )
