"""The bounce mail of tests/data/bounces/, filled in for one of our messages.

The files are real vendors' shapes (Postfix, Exchange Online and Gmail DSNs, Exim and qmail
plain-text bounces, a Yahoo feedback-loop ARF report, an Outlook auto-reply, unrelated mail),
written by RFC 3464, RFC 3462 and RFC 5965 with placeholders for what depends on the message:
%%RETURN_PATH%% (its VERP address), %%RECIPIENT%%, %%MESSAGE_ID%% (its Message-ID header)
and %%BOUNCE_ADDRESS%% (the mailbox's plain address).
"""

from __future__ import annotations

from pathlib import Path

from nurturing import verp

FOLDER = Path(__file__).resolve().parent.parent / "data" / "bounces"
BOUNCE_ADDRESS = "bounces@leadfunnel.test"


def bounce(
    name: str,
    *,
    recipient: str = "claire.martin@example.org",
    message_pk: int | None = None,
    message_id: str = "<unknown-original@elsewhere.example>",
    return_path: str = "",
) -> bytes:
    """The file's bytes (CRLF line ends, as IMAP carries mail) for that message."""
    if not return_path:
        return_path = verp.return_path(message_pk) if message_pk else BOUNCE_ADDRESS
    text = (FOLDER / f"{name}.eml").read_text()
    for placeholder, value in {
        "%%RETURN_PATH%%": return_path,
        "%%RECIPIENT%%": recipient,
        "%%MESSAGE_ID%%": message_id,
        "%%BOUNCE_ADDRESS%%": BOUNCE_ADDRESS,
    }.items():
        text = text.replace(placeholder, value)
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()
