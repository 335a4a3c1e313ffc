"""Custom fields: typed fields an admin adds to contacts (text, number, date, choice).

Storage: one JSON column on the contact (``Contact.custom_fields``: key → typed value), not an
entity-attribute-value table. What reads custom fields reads whole contacts: the contact page,
the API, the CSV export, the fit engine (every contact, in chunks), the import (known contacts
by the thousand); with EAV each of those is a second query or a join and the import's COPY a
second table. Values are stored typed, so the database compares them as the kinds say:
numbers as JSON numbers (``(custom_fields -> 'seats') >= 10`` compares numbers on PostgreSQL,
``json_extract`` does on SQLite), dates as ISO ``YYYY-MM-DD`` strings (their text order is
their date order), a choice as the choice's own spelling.

List filters and segments (``contacts.custom_field_values.custom_filter``) find a choice by
containment on PostgreSQL (``custom_fields @> '{"plan": "pro"}'``), which the GIN index
``contact_custom_fields_gin`` (jsonb_path_ops, contacts migration 0023) serves when the value
is selective: 50 contacts of 100,000 counted in 24 ms against 199 ms by a scan. Ranges (number
min/max, date from/to) and "text contains" read the column of the rows the other filters leave,
as a range on an unindexed column does: counting 100,000 contacts, a number range took
118-160 ms against 79-132 ms for the same range on ``company_size``, a date range 108-162 ms,
a text contains 96-128 ms against 79-83 ms on ``last_name`` (PostgreSQL 15, 6 December 2026,
the shared 2-core machine at load 9, interleaved runs). A B-tree per key would need DDL each
time an admin adds a field; the contact list caps its count at 10,001 and pages in its own
index order, so that cost is paid once per filtered page.
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
KEY_MAX_LENGTH = 32  # a fit rule names it as "custom:<key>" in 40 characters
TEXT_MAX_LENGTH = 500
NUMBER_LIMIT = 10**15  # beyond, a float no longer holds every integer
# Names a key may not take: the contact's own fields (and what the ORM reads as them).
RESERVED_KEYS = frozenset({"pk", "id", "custom", "custom_fields"})
PREFIX = "custom:"  # how imports and fit rules name a custom field beside the contact's fields


class CustomFieldQuerySet(models.QuerySet["CustomField"]):
    def active(self) -> CustomFieldQuerySet:
        return self.filter(active=True).order_by("position", "label", "pk")


class CustomField(models.Model):
    """A field an admin adds to every contact: "Seats" (number), "Plan" (choice)…"""

    class Kind(models.TextChoices):
        TEXT = "text", _("Text")
        NUMBER = "number", _("Number")
        DATE = "date", _("Date")
        CHOICE = "choice", _("Choice")

    key = models.CharField(
        _("key"),
        max_length=KEY_MAX_LENGTH,
        unique=True,
        help_text=_(
            "How imports, the API and segments name it: lower-case letters, digits and _, "
            "starting with a letter (e.g. plan or renewal_date). Cannot change once created."
        ),
    )
    label = models.CharField(_("label"), max_length=100)
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices, default=Kind.TEXT)
    choices = models.TextField(
        _("choices"), blank=True, help_text=_("For a choice field: the choices, one per line.")
    )
    active = models.BooleanField(
        _("active"),
        default=True,
        help_text=_("Inactive: hidden from pages, filters, imports and the API; values are kept."),
    )
    position = models.PositiveIntegerField(_("order"), default=0)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    objects = CustomFieldQuerySet.as_manager()

    class Meta:
        ordering = ["position", "label", "pk"]
        verbose_name = _("custom field")
        verbose_name_plural = _("custom fields")

    def __str__(self) -> str:
        return self.label

    def choice_list(self) -> list[str]:
        return [line.strip() for line in self.choices.splitlines() if line.strip()]

    def clean(self) -> None:
        errors: dict[str, Any] = {}
        if self.key:
            errors.update(_key_errors(self.key))
        choices = self.choice_list()
        if self.kind == self.Kind.CHOICE:
            if not choices:
                errors["choices"] = _("A choice field needs its choices, one per line.")
            folded = [choice.casefold() for choice in choices]
            doubles = sorted({c for c in choices if folded.count(c.casefold()) > 1})
            if doubles:
                errors["choices"] = _("“%(choice)s” is given twice.") % {"choice": doubles[0]}
            if any(len(choice) > TEXT_MAX_LENGTH for choice in choices):
                errors["choices"] = _("A choice is at most %(limit)d characters.") % {
                    "limit": TEXT_MAX_LENGTH
                }
        elif choices:
            errors["choices"] = _("Only a choice field has choices: leave this empty.")
        if errors:
            raise ValidationError(errors)

    # --- Values -----------------------------------------------------------------------------

    def parse(self, raw: str) -> Any:
        """A value as people write it (an import's cell, a form's text) → the stored value;
        ``ValueError`` with the reason when it is none; None for blank."""
        return parse_value(self.kind, self.choice_list(), raw)

    def accept(self, value: Any) -> Any:
        """A JSON value (the API) → the stored value; ``ValueError`` when its type is wrong."""
        return accept_value(self.kind, self.choice_list(), value)


def builtin_names() -> frozenset[str]:
    from contacts.models.people import Contact

    names = {field.name for field in Contact._meta.get_fields()}
    names |= {field.attname for field in Contact._meta.concrete_fields}
    return frozenset(names) | RESERVED_KEYS


def _key_errors(key: str) -> dict[str, Any]:
    if not KEY_PATTERN.match(key):
        return {
            "key": _(
                "Use lower-case letters, digits and _ only, starting with a letter "
                "(e.g. renewal_date)."
            )
        }
    if key in builtin_names():
        return {
            "key": _("“%(key)s” is a contact field already: choose another key.") % {"key": key}
        }
    return {}


def key_from_label(label: str) -> str:
    """ "Nombre de postes" → "nombre_de_postes": a key for a column turned into a field."""
    decomposed = unicodedata.normalize("NFKD", label.casefold())
    letters = "".join(char for char in decomposed if not unicodedata.combining(char))
    words = re.sub(r"[^a-z0-9]+", "_", letters).strip("_")
    if not words or not words[0].isalpha():
        words = f"field_{words}".strip("_")
    key = words[:KEY_MAX_LENGTH].rstrip("_")
    if key in builtin_names():
        key = f"{key[: KEY_MAX_LENGTH - 6]}_extra"
    return key


# --- Parsing and checking values (pure: no database) --------------------------------------------


def parse_value(kind: str, choices: list[str], raw: str) -> Any:
    """See ``CustomField.parse``."""
    text = (raw or "").strip()
    if not text:
        return None
    if kind == CustomField.Kind.NUMBER:
        return parse_number(text)
    if kind == CustomField.Kind.DATE:
        return parse_date(text)
    if kind == CustomField.Kind.CHOICE:
        return _choice(choices, text)
    if len(text) > TEXT_MAX_LENGTH:
        raise ValueError(_("at most %(limit)d characters") % {"limit": TEXT_MAX_LENGTH})
    return text


def accept_value(kind: str, choices: list[str], value: Any) -> Any:
    """See ``CustomField.accept``: JSON typed as the kind says (null: no value)."""
    if value is None:
        return None
    if kind == CustomField.Kind.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(_("a number is expected"))
        return _number(Decimal(str(value)))
    if not isinstance(value, str):
        raise ValueError(_("a text is expected"))
    if kind == CustomField.Kind.DATE:
        try:
            return date.fromisoformat(value.strip()).isoformat()
        except ValueError as error:
            raise ValueError(_("a date is expected, written YYYY-MM-DD")) from error
    return parse_value(kind, choices, value)


def _choice(choices: list[str], text: str) -> str:
    folded = " ".join(text.split()).casefold()
    for choice in choices:
        if " ".join(choice.split()).casefold() == folded:
            return choice
    raise ValueError(_("one of: %(choices)s") % {"choices": ", ".join(choices)})


THOUSANDS = re.compile(r"[\s\u00a0\u202f']")


def parse_number(text: str) -> int | float:
    """ "1 200", "1,200", "1.5", "1,5" (a French decimal), "-3" → a number."""
    digits = THOUSANDS.sub("", text)
    if "," in digits and "." in digits:  # the last one is the decimal point
        if digits.rindex(",") > digits.rindex("."):
            digits = digits.replace(".", "").replace(",", ".")
        else:
            digits = digits.replace(",", "")
    elif digits.count(",") == 1 and not re.fullmatch(r"-?\d{1,3},\d{3}", digits):
        digits = digits.replace(",", ".")  # "1,5": a decimal comma
    else:
        digits = digits.replace(",", "")  # "1,200" or "1,200,000": thousands
    if not re.fullmatch(r"[-+]?\d+(\.\d+)?", digits):
        raise ValueError(_("a number is expected, such as 1200 or 4.5"))
    try:
        return _number(Decimal(digits))
    except InvalidOperation as error:
        raise ValueError(_("a number is expected, such as 1200 or 4.5")) from error


def _number(value: Decimal) -> int | float:
    if not value.is_finite() or abs(value) >= NUMBER_LIMIT:
        raise ValueError(_("a number is expected, smaller than a million billion"))
    if value == value.to_integral_value():
        return int(value)
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(_("a number is expected"))
    return number


DATE_FORMATS = ("%d/%m/%Y", "%d.%m.%Y", "%d-%m-%Y")


def parse_date(text: str) -> str:
    """ISO (2026-03-31, or a date and time: its date), else day first as in France
    (31/03/2026) → "2026-03-31"."""
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).date().isoformat()
    except ValueError:
        pass
    for pattern in DATE_FORMATS:
        try:
            return datetime.strptime(text, pattern).date().isoformat()  # noqa: DTZ007 (a day)
        except ValueError:
            continue
    raise ValueError(_("a date is expected, such as 2026-03-31 or 31/03/2026"))


def convert_value(value: Any, kind: str, choices: list[str]) -> Any:
    """A stored value of one kind as another kind, for a field whose kind changes;
    ``ValueError`` when it cannot be."""
    if value is None:
        return None
    if kind == CustomField.Kind.TEXT:
        text = str(value)
        if len(text) > TEXT_MAX_LENGTH:
            raise ValueError(_("at most %(limit)d characters") % {"limit": TEXT_MAX_LENGTH})
        return text
    return parse_value(kind, choices, str(value))
