"""An SMTP email backend that lets its caller mark a message "handed over" at the last moment.

``EmailBackend`` is Django's SMTP backend (same settings: ``EMAIL_HOST``, ``EMAIL_PORT``,
TLS/SSL, login, ``EMAIL_TIMEOUT``; ``EMAIL_URL=smtp://…`` chooses it, see settings), and any
code may send through it. What it adds, for ``nurturing.sending``: a message that carries a
``hand_over`` object is sent command by command, as ``smtplib.SMTP.sendmail`` would, with three
calls to that object:

- ``begin()`` as MAIL FROM goes: the hand-over mark leaves for the database, its answer is not
  awaited (the server's answers to MAIL, RCPT and DATA give it the time; from after RCPT, one
  round trip, one send worker went at 0.52 of bare smtplib, from MAIL 0.69: bench
  ``scheduler``, 6 December, quiet machine);
- ``confirm()`` after the server's 354 to DATA: the mark must be committed when it returns, as
  the end of the data goes next (so a dead worker leaves the message "in doubt", never silently
  sent twice);
- ``meanwhile()`` while the server reads the data: the caller prepares its next message (with
  ``prepare``, which makes its bytes, signed, then).

Every other backend gets the message whole, after the caller has committed the mark; this one
saves the mark's round trip (it overlaps the exchange) and keeps a refused sender or
recipient from leaving a message in doubt (a mark sent does not make a message in doubt: only
``confirm`` does; a worker that dies between a refusal and its recording leaves it in doubt,
never sent twice). A message's ``envelope_sender`` (django-anymail's
name for it), when set, is the envelope sender instead of its From. It also skips re-parsing
plain addresses (``email.utils.parseaddr`` costs more than the exchange on a local server), and
signs each message with DKIM when the settings ask for it (``nurturing.dkim_signing``).
"""

from __future__ import annotations

import re
import smtplib
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.mail.backends import smtp

from nurturing import mime

_LEADING_DOT = re.compile(rb"(?m)^\.")


class EmailBackend(smtp.EmailBackend):
    takes_hand_over = True  # what nurturing.sending looks for

    def _send(self, email_message: Any) -> bool:
        recipients = email_message.recipients()
        if not recipients:
            return False
        payload = getattr(email_message, "smtp_payload", None) or _payload(email_message)
        hand_over = getattr(email_message, "hand_over", None)
        connection = self.connection
        connection.ehlo_or_helo_if_needed()
        # A per-message return path (VERP, nurturing.verp) under anymail's attribute name, so
        # that ESP backends honour the same one.
        envelope_sender = getattr(email_message, "envelope_sender", None)
        sender = f"<{envelope_sender}>" if envelope_sender else _envelope(email_message.from_email)
        connection.putcmd("mail", f"FROM:{sender}")
        if hand_over is not None:
            hand_over.begin()  # its answer is read after DATA's: two round trips to do it in
        code, reply = connection.getreply()
        if code != 250:
            _reset_transaction(connection)
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        refused = {}
        for recipient in recipients:
            address = mime.address(recipient)
            quoted = smtplib.quoteaddr(address) if "<" in address else f"<{address}>"
            connection.putcmd("rcpt", f"TO:{quoted}")
            code, reply = connection.getreply()
            if code not in (250, 251):
                refused[address] = (code, reply)
        if len(refused) == len(recipients):
            _reset_transaction(connection)
            raise smtplib.SMTPRecipientsRefused(refused)
        connection.putcmd("data")
        code, reply = connection.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        if hand_over is not None:
            hand_over.confirm()
        connection.send(payload)
        if hand_over is not None:
            hand_over.meanwhile()
        code, reply = connection.getreply()
        if code != 250:
            raise smtplib.SMTPDataError(code, reply)
        return True

    def prepare(self, email_message: Any) -> None:
        """Make a message's bytes (and its DKIM signature) ahead: ``nurturing.sending`` calls
        this for the next message while the server reads the one before."""
        email_message.smtp_payload = _payload(email_message)


@lru_cache(maxsize=16)
def _envelope(from_email: str) -> str:
    return smtplib.quoteaddr(mime.address(from_email))


def _payload(email_message: Any) -> bytes:
    """The message's bytes as they go after DATA: dots doubled at line starts, then the final
    dot (``smtplib.SMTP.data``), signed first when DKIM signing is on."""
    data = email_message.message().as_bytes(linesep="\r\n")
    signer = _dkim_signer()
    if signer is not None:
        data = signer.signature(data) + data
    data = _LEADING_DOT.sub(b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _dkim_signer() -> Any:
    """The DKIM signer when signing is on; when off, dkimpy (and dnspython, which it imports,
    a third of a second on a loaded machine) is not even imported."""
    if not (settings.DKIM_SELECTOR or settings.DKIM_PRIVATE_KEY or settings.DKIM_PRIVATE_KEY_FILE):
        return None
    from nurturing import dkim_signing

    return dkim_signing.signer()


def _reset_transaction(connection: Any) -> None:
    """After a refusal the server expects a new transaction (``smtplib``'s ``_rset``)."""
    try:
        connection.rset()
    except smtplib.SMTPServerDisconnected:
        pass
