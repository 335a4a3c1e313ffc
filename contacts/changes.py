"""Contacts created or whose profile changed, told to the apps above (``contacts`` imports
none of them): each handler of ``settings.LEADFUNNEL_CONTACT_HANDLERS`` (read like
``MIDDLEWARE``) is called with the contacts' ids and the fields that changed (None: created),
in the caller's transaction. Scoring recomputes their fit (``scoring.handlers``)."""

from __future__ import annotations

from collections.abc import Collection

from django.conf import settings
from django.utils.module_loading import import_string


def contacts_changed(contact_ids: Collection[int], fields: Collection[str] | None) -> None:
    if not contact_ids:
        return
    for path in settings.LEADFUNNEL_CONTACT_HANDLERS:
        import_string(path)(contact_ids=contact_ids, fields=fields)
