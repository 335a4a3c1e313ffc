"""Custom fields at work: their definitions changed by admins and by the import's mapping step,
the values a contact takes (checked by kind), and the list filters and segments on them.

Why one JSON column and not a table of values, and what the filters cost at 100,000
contacts: ``contacts.models.custom_fields``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import date
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connections, transaction
from django.db.models import Q, QuerySet
from django.utils.translation import gettext as _

from contacts.changes import contacts_changed
from contacts.models import Contact, CustomField
from contacts.models.custom_fields import convert_value

CHUNK = 1000


def active_custom_fields() -> list[CustomField]:
    return list(CustomField.objects.active())


# --- A contact's values ---------------------------------------------------------------------


def custom_values_accept(
    values: Mapping[str, Any], fields: Iterable[CustomField] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """JSON values by key (the API) → (typed values, errors by key). Only active fields take
    values; null clears one."""
    by_key = {field.key: field for field in (active_custom_fields() if fields is None else fields)}
    clean: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key, value in values.items():
        field = by_key.get(key)
        if field is None:
            errors[key] = _("No custom field has this key.")
            continue
        try:
            clean[key] = field.accept(value)
        except ValueError as error:
            errors[key] = str(error)
    return clean, errors


def custom_values_merge(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The values after ``changes`` (None removes a value)."""
    merged = dict(current or {})
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def custom_values_shown(contact: Contact, fields: Iterable[CustomField]) -> list[dict[str, Any]]:
    """(label, value) of the active fields, for the contact page: dates as dates."""
    shown = []
    for field in fields:
        value = (contact.custom_fields or {}).get(field.key)
        if value is not None and field.kind == CustomField.Kind.DATE:
            try:
                value = date.fromisoformat(value)
            except (TypeError, ValueError):
                pass
        shown.append({"key": field.key, "label": field.label, "kind": field.kind, "value": value})
    return shown


# --- Definitions ----------------------------------------------------------------------------


@transaction.atomic
def custom_field_create(
    *, key: str, label: str, kind: str, choices: Collection[str] = ()
) -> CustomField:
    """A new field (the import's mapping step); ``ValidationError`` as the admin gives."""
    last = CustomField.objects.order_by("-position").values_list("position", flat=True).first()
    field = CustomField(
        key=key, label=label[:100], kind=kind, choices="\n".join(choices),
        position=(last or 0) + 1,
    )  # fmt: skip
    field.full_clean()
    field.save()
    return field


def conversion_problems(field: CustomField, kind: str, choices: list[str]) -> tuple[int, str]:
    """How many stored values of ``field`` would not be a ``kind`` value, and one of them."""
    count, example = 0, ""
    for values in _holders(field.key).values_list("custom_fields", flat=True).iterator(CHUNK):
        try:
            convert_value(values.get(field.key), kind, choices)
        except ValueError:
            count += 1
            example = example or str(values.get(field.key))
    return count, example


@transaction.atomic
def custom_field_change(*, field: CustomField, kind: str, choices: str) -> int:
    """Save a field whose kind or choices change, its stored values converted to the new
    kind (a text "12" becomes the number 12); refused (``ValidationError``, nothing written)
    if some value cannot be. Returns the contacts whose value changed."""
    choice_list = [line.strip() for line in choices.splitlines() if line.strip()]
    count, example = conversion_problems(field, kind, choice_list)
    if count:
        raise ValidationError(
            {"kind": conversion_message(count, example, kind)}, code="unconvertible"
        )
    changed: list[Contact] = []
    rows = _holders(field.key).values_list("pk", "custom_fields")
    for pk, values in rows.iterator(CHUNK):
        new = convert_value(values.get(field.key), kind, choice_list)
        if new != values.get(field.key):
            changed.append(Contact(pk=pk, custom_fields={**values, field.key: new}))
    field.kind, field.choices = kind, choices
    field.save()
    _write(changed)
    return len(changed)


def conversion_message(count: int, example: str, kind: str) -> str:
    return _(
        "%(count)s contacts have a value that is not a %(kind)s (such as “%(example)s”): "
        "correct or clear those values first, or keep the kind."
    ) % {"count": count, "kind": CustomField.Kind(kind).label.lower(), "example": example[:60]}


@transaction.atomic
def custom_field_delete(*, field: CustomField) -> int:
    """Delete a field and its values on every contact. Returns the contacts that had one."""
    changed = [
        Contact(pk=pk, custom_fields={k: v for k, v in values.items() if k != field.key})
        for pk, values in _holders(field.key).values_list("pk", "custom_fields").iterator(CHUNK)
    ]
    field.delete()
    _write(changed)
    return len(changed)


def _holders(key: str) -> QuerySet[Contact]:
    return Contact.objects.filter(custom_fields__has_key=key).order_by("pk")


def _write(contacts: list[Contact]) -> None:
    Contact.objects.bulk_update(contacts, ["custom_fields"], batch_size=CHUNK)
    # Fit rules may read the values.
    contacts_changed([contact.pk for contact in contacts], {"custom_fields"})


# --- Filters (the contact list, segments) ---------------------------------------------------


def custom_filter(contacts: QuerySet[Contact], field: CustomField, **bounds: Any) -> QuerySet:
    """Contacts whose value of ``field`` is ``equals`` (a choice), contains ``contains`` (a
    text), or lies within ``low``/``high`` (a number or an ISO date; both included).

    The one place where PostgreSQL and SQLite differ: an exact value is a containment there
    (``custom_fields @> {"plan": "pro"}``), which the GIN index serves; SQLite compares
    ``json_extract``. Ranges compare the stored JSON values on both (numbers as numbers,
    ISO dates as text)."""
    lookup = f"custom_fields__{field.key}"
    query = Q()
    if bounds.get("equals") not in (None, ""):
        if connections[contacts.db].vendor == "postgresql":
            query &= Q(custom_fields__contains={field.key: bounds["equals"]})
        else:
            query &= Q(**{lookup: bounds["equals"]})
    if bounds.get("contains"):
        query &= Q(**{f"{lookup}__icontains": bounds["contains"]})
    for name, operator in (("low", "gte"), ("high", "lte")):
        value = bounds.get(name)
        if value is None:
            continue
        if isinstance(value, date):
            value = value.isoformat()
        query &= Q(**{f"{lookup}__{operator}": value})
    return contacts.filter(query)
