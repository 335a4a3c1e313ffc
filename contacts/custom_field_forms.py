"""Custom fields in the contact forms: one input per active field on the contact's edit page,
and the contact list's filters (which segments reuse: a segment is the list's query string).

Names in a query string: ``cf_<key>`` (a choice is, a text contains), ``cf_<key>_min`` and
``cf_<key>_max`` (a number, both included), ``cf_<key>_from`` and ``cf_<key>_to`` (a date,
both included). E.g. a segment ``stage=mql&cf_plan=Pro&cf_seats_min=10``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from contacts.custom_field_values import custom_filter
from contacts.models import Contact, CustomField

PREFIX = "cf_"
Kind = CustomField.Kind


# --- The edit page --------------------------------------------------------------------------


class CustomValueField(forms.CharField):
    """A text input whose value is parsed as the custom field's kind ("1 200", "31/03/2026")."""

    def __init__(self, *, custom: CustomField, **kwargs: Any) -> None:
        self.custom = custom
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        return "" if value is None else value

    def clean(self, value: Any) -> Any:
        text = super().clean(value)
        try:
            return self.custom.parse(text)
        except ValueError as error:
            raise forms.ValidationError(
                _("Not a valid value: %(expected)s.") % {"expected": error}, code="invalid"
            ) from error


def value_fields(fields: Iterable[CustomField], values: Mapping[str, Any]) -> dict[str, Any]:
    """A form field per custom field, showing the contact's ``values``."""
    form_fields: dict[str, forms.Field] = {}
    for field in fields:
        initial = values.get(field.key)
        if field.kind == Kind.CHOICE:
            choices = [("", "—"), *((choice, choice) for choice in field.choice_list())]
            if initial is not None and initial not in field.choice_list():
                choices.append((initial, initial))  # a choice removed since: kept, not lost
            form_field: forms.Field = forms.ChoiceField(choices=choices)
        elif field.kind == Kind.DATE:
            form_field = CustomValueField(
                custom=field, widget=forms.DateInput(attrs={"type": "date"})
            )
        else:
            form_field = CustomValueField(custom=field)
        form_field.label = field.label
        form_field.required = False
        form_field.initial = initial
        form_fields[f"{PREFIX}{field.key}"] = form_field
    return form_fields


def values_from(cleaned: dict[str, Any], fields: Iterable[CustomField]) -> dict[str, Any]:
    """The values the form gives (removed from ``cleaned``); blank clears a value."""
    values = {}
    for field in fields:
        name = f"{PREFIX}{field.key}"
        if name in cleaned:
            values[field.key] = cleaned.pop(name) or None
    return values


# --- The contact list's filters -------------------------------------------------------------


def filter_fields(fields: Iterable[CustomField]) -> dict[str, forms.Field]:
    form_fields: dict[str, forms.Field] = {}
    for field in fields:
        name = f"{PREFIX}{field.key}"
        if field.kind == Kind.CHOICE:
            choices = [("", _("Any")), *((choice, choice) for choice in field.choice_list())]
            form_fields[name] = forms.ChoiceField(
                label=field.label, required=False, choices=choices
            )
        elif field.kind == Kind.NUMBER:
            form_fields[f"{name}_min"] = forms.DecimalField(label=field.label, required=False)
            form_fields[f"{name}_max"] = forms.DecimalField(label=field.label, required=False)
        elif field.kind == Kind.DATE:
            form_fields[f"{name}_from"] = forms.DateField(label=field.label, required=False)
            form_fields[f"{name}_to"] = forms.DateField(label=field.label, required=False)
        else:
            form_fields[name] = forms.CharField(label=field.label, required=False, max_length=200)
    return form_fields


def filters_apply(
    contacts: QuerySet[Contact], cleaned: Mapping[str, Any], fields: Iterable[CustomField]
) -> QuerySet[Contact]:
    for field in fields:
        name = f"{PREFIX}{field.key}"
        if field.kind == Kind.CHOICE and cleaned.get(name):
            contacts = custom_filter(contacts, field, equals=cleaned[name])
        elif field.kind == Kind.TEXT and cleaned.get(name):
            contacts = custom_filter(contacts, field, contains=cleaned[name])
        elif field.kind == Kind.NUMBER:
            low, high = cleaned.get(f"{name}_min"), cleaned.get(f"{name}_max")
            if low is not None or high is not None:
                contacts = custom_filter(contacts, field, low=_number(low), high=_number(high))
        elif field.kind == Kind.DATE:
            low, high = cleaned.get(f"{name}_from"), cleaned.get(f"{name}_to")
            if low is not None or high is not None:
                contacts = custom_filter(contacts, field, low=low, high=high)
    return contacts


def _number(value: Decimal | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def filter_rows(form: forms.Form, fields: Iterable[CustomField]) -> list[dict[str, Any]]:
    """What the list's template draws: per custom field, its label and its inputs."""
    rows = []
    for field in fields:
        name = f"{PREFIX}{field.key}"
        names = {
            Kind.NUMBER: [f"{name}_min", f"{name}_max"],
            Kind.DATE: [f"{name}_from", f"{name}_to"],
        }.get(field.kind, [name])
        rows.append({"label": field.label, "kind": field.kind, "inputs": [form[n] for n in names]})
    return rows
