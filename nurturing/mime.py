"""A marketing email's bytes, built directly.

Python's email generator (behind ``EmailMessage.message().as_bytes()``) costs a few
milliseconds per message, more than the SMTP exchange itself. Our messages always have the
same shape (text + HTML alternatives, UTF-8, a few headers), so they are written out here with
the C-speed quoted-printable encoder, and handed to Django's email backend as an
``EmailMessage`` whose ``message()`` returns these bytes.
"""

from __future__ import annotations

import binascii
import secrets
from email.header import Header
from email.utils import formatdate
from functools import lru_cache
from typing import Any

from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import sanitize_address


@lru_cache(maxsize=64)
def _address(value: str) -> str:
    return sanitize_address(value, "utf-8")


def _header(value: str) -> str:
    if value.isascii() and len(value) < 900:
        return value
    return Header(value, "utf-8", maxlinelen=76).encode(linesep="\r\n")


def _qp(text: str) -> bytes:
    body = text.replace("\r\n", "\n").encode()
    encoded = binascii.b2a_qp(body, quotetabs=False, istext=True, header=False)
    return encoded.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def build(
    *, from_email: str, to: str, subject: str, text: str, html: str, headers: dict[str, str]
) -> bytes:
    lines = [
        f"From: {_address(from_email)}",  # the same sender for every message: encoded once
        f"To: {sanitize_address(to, 'utf-8')}",
        f"Subject: {_header(subject)}",
        f"Date: {formatdate(localtime=False, usegmt=True)}",
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

    def message(self) -> Any:  # type: ignore[override]
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
