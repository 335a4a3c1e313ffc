"""The local mail folder: without EMAIL_URL (as in `make run`) every email the app sends is
written to ``EMAIL_FILE_PATH`` (var/mail/) as one .eml file, which any mail client opens and the
"Sent emails" page (/mail/) lists."""

from __future__ import annotations

import email
import email.policy
import logging
import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage as ParsedEmail
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

logger = logging.getLogger(__name__)
BACKEND = "leadfunnel.mailbox.FolderBackend"
# <nanoseconds>-<random>.eml: names sort by the time of sending and cannot be guessed into a path.
FILE_NAME = re.compile(r"\d{19,20}-[0-9a-f]{8}\.eml")


class FolderBackend(BaseEmailBackend):
    """Django email backend writing one .eml file per message (atomically: a reader never sees
    half a file), and one short log line (INFO)."""

    def __init__(self, file_path: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.folder = Path(file_path or settings.EMAIL_FILE_PATH)

    def send_messages(self, email_messages: Iterable[EmailMessage]) -> int:
        self.folder.mkdir(parents=True, exist_ok=True)
        sent = 0
        for message in email_messages:
            if not message.recipients():
                continue
            name = f"{time.time_ns()}-{secrets.token_hex(4)}.eml"
            partial = self.folder / f".{name}.part"
            partial.write_bytes(message.message().as_bytes(linesep="\r\n"))
            os.replace(partial, self.folder / name)
            logger.info("Email to %s written to %s", ", ".join(message.to), name)
            sent += 1
        return sent


def in_use() -> bool:
    return settings.EMAIL_BACKEND == BACKEND


def folder() -> Path:
    return Path(settings.EMAIL_FILE_PATH)


@dataclass(frozen=True)
class StoredEmail:
    name: str
    sent_at: datetime
    sender: str
    to: str
    subject: str
    headers: list[tuple[str, str]]
    text: str
    html: str


def latest(limit: int = 100) -> tuple[list[StoredEmail], int]:
    """The newest ``limit`` emails of the folder (newest first), and how many there are."""
    try:
        names = sorted(
            (entry.name for entry in os.scandir(folder()) if FILE_NAME.fullmatch(entry.name)),
            reverse=True,
        )
    except FileNotFoundError:
        return [], 0
    return [found for name in names[:limit] if (found := read(name))], len(names)


def read(name: str) -> StoredEmail | None:
    if not FILE_NAME.fullmatch(name):
        return None
    try:
        data = (folder() / name).read_bytes()
    except FileNotFoundError:
        return None
    parsed: ParsedEmail = email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[assignment]
    return StoredEmail(
        name=name,
        sent_at=datetime.fromtimestamp(int(name.split("-")[0]) / 1e9, tz=UTC),
        sender=str(parsed.get("From", "")),
        to=str(parsed.get("To", "")),
        subject=str(parsed.get("Subject", "")),
        headers=[(key, str(value)) for key, value in parsed.items()],
        text=_part(parsed, "plain"),
        html=_part(parsed, "html"),
    )


def _part(parsed: ParsedEmail, kind: str) -> str:
    part = parsed.get_body(preferencelist=(kind,))
    if part is None or part.get_content_subtype() != kind:
        return ""
    return str(part.get_content())
