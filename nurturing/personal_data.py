"""What nurturing keeps about a person, for the contact's export and erasure
(``settings.LEADFUNNEL_PERSONAL_DATA``: contacts calls this without importing nurturing)."""

from __future__ import annotations

from typing import Any

from contacts.models import Contact
from nurturing.models import Message


def export(contact: Contact) -> dict[str, Any]:
    # Enrolments and messages point at the contact: its export lists them already.
    return {}


def erase(contact: Contact) -> None:
    """Messages keep their status and dates (campaign counts stay right), not who they were to
    or what they said to that person."""
    Message.objects.filter(contact=contact).update(
        to="", subject="", body_text="", body_html="", links=[], error=""
    )
