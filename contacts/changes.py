"""Contacts created or whose profile changed, told to the apps above (``contacts`` imports
none of them): each handler of ``settings.LEADFUNNEL_CONTACT_HANDLERS`` (read like
``MIDDLEWARE``) is called with the contacts' ids and the fields that changed (None: created),
in the caller's transaction. Scoring recomputes their fit (``scoring.handlers``). New contacts
are also announced to webhook subscriptions (``contacts.webhooks``: ``imported`` says an import
made them)."""

from __future__ import annotations

from collections.abc import Collection

from django.conf import settings
from django.utils.module_loading import import_string

from contacts.webhooks.outbox import webhooks_contacts_created


def contacts_changed(
    contact_ids: Collection[int], fields: Collection[str] | None, *, imported: bool = False
) -> None:
    if not contact_ids:
        return
    if fields is None:
        webhooks_contacts_created(list(contact_ids), imported=imported)
    for path in settings.LEADFUNNEL_CONTACT_HANDLERS:
        import_string(path)(contact_ids=contact_ids, fields=fields)
