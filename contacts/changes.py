"""Contacts created or whose profile changed, told to the apps above (``contacts`` imports
none of them): each handler of ``settings.LEADFUNNEL_CONTACT_HANDLERS`` (read like
``MIDDLEWARE``) is called with the contacts' ids and the fields that changed (None: created),
in the caller's transaction. Scoring recomputes their fit (``scoring.handlers``).

Before the handlers, contacts keeps its own record of first touch: a contact that has a source
and no first source yet takes it as its first source, once (``Contact.first_source``). The
services set it on the instance they save and say so (``first_sources=False``: no query per
contact); imports and any other bulk writer leave it to this function. New contacts are also
announced to webhook subscriptions (``contacts.webhooks``: ``imported`` says an import made
them)."""

from __future__ import annotations

from collections.abc import Collection

from django.conf import settings
from django.db.models import F
from django.utils.module_loading import import_string

from contacts.models import Contact
from contacts.webhooks.outbox import webhooks_contacts_created


def contacts_changed(
    contact_ids: Collection[int],
    fields: Collection[str] | None,
    *,
    imported: bool = False,
    first_sources: bool = True,
) -> None:
    if not contact_ids:
        return
    if first_sources and (fields is None or "source" in fields or "source_id" in fields):
        _first_sources_keep(contact_ids)
    if fields is None:
        webhooks_contacts_created(list(contact_ids), imported=imported)
    for path in settings.LEADFUNNEL_CONTACT_HANDLERS:
        import_string(path)(contact_ids=contact_ids, fields=fields)


# Ids per statement: an import tells a hundred thousand at once (SQLite caps the parameters).
CHUNK = 5000


def _first_sources_keep(contact_ids: Collection[int]) -> None:
    ids = list(contact_ids)
    for start in range(0, len(ids), CHUNK):
        Contact.objects.filter(
            pk__any=set(ids[start : start + CHUNK]), first_source__isnull=True,
            source__isnull=False,
        ).update(first_source=F("source"))  # fmt: skip
