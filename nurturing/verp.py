"""The VERP return path: each marketing message's envelope sender names the message.

With ``NURTURING_BOUNCE_ADDRESS=bounces@example.com``, message 1234 leaves with the envelope
sender ``bounces+1234-<mac>@example.com`` (the header From stays): a bounce comes back to that
address, so it names its message even when the server that wrote it quotes nothing of the
original. ``<mac>`` is an HMAC of the message id keyed by SECRET_KEY, 12 hexadecimal digits (48
bits: forging one takes billions of tries, each a mail through the mailbox): anyone can send
mail to ``bounces+…``, and only a token we made is trusted. Digits and lower-case hexadecimal
survive MTAs that lower-case local parts, and are read back case-insensitively.
"""

from __future__ import annotations

import hmac
import re
from functools import lru_cache

from django.conf import settings
from django.utils.crypto import salted_hmac

_SALT = "nurturing.verp"
MAC_LENGTH = 12


def return_path(message_id: int) -> str:
    """The envelope sender for our message ``message_id``; "" when no bounce address is set."""
    base = settings.NURTURING_BOUNCE_ADDRESS
    if not base:
        return ""
    local, domain = base.rsplit("@", 1)
    return f"{local}+{message_id}-{_mac(message_id)}@{domain}"


def message_from_address(address: str) -> int | None:
    """The message id a return path of ours carries; None when it carries none."""
    found = read(address)
    return found[0] if found and found[1] else None


def read(text: str) -> tuple[int, bool] | None:
    """The first token of ours in ``text`` (an address, a header): (message id, whether its MAC
    is right), or None when there is no token at all."""
    match = _pattern().search(text)
    if match is None:
        return None
    message_id = int(match["id"])
    mac = match["mac"].lower()
    # A bounce may come back days later, after SECRET_KEY was rotated: the old keys still read.
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return message_id, any(hmac.compare_digest(mac, _mac(message_id, key)) for key in keys)


def _mac(message_id: int, secret: str | None = None) -> str:
    digest = salted_hmac(_SALT, str(message_id), secret=secret, algorithm="sha256").hexdigest()
    return digest[:MAC_LENGTH]


@lru_cache(maxsize=4)
def _compiled(base: str) -> re.Pattern[str]:
    local, domain = base.rsplit("@", 1)
    return re.compile(
        rf"{re.escape(local)}\+(?P<id>\d{{1,18}})-(?P<mac>[0-9a-f]{{{MAC_LENGTH}}})@"
        rf"{re.escape(domain)}",
        re.IGNORECASE,
    )


def _pattern() -> re.Pattern[str]:
    return _compiled(settings.NURTURING_BOUNCE_ADDRESS or "bounces@invalid")
