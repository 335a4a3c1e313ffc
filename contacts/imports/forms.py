"""Forms of the import: the upload (refuses what is neither a CSV nor an Excel workbook), the
column mapping, and saving or applying a mapping by name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _

from contacts.imports import files, parsing
from contacts.models import CustomField, LeadSource, SavedMapping
from contacts.models.custom_fields import key_from_label

IMPORT_MAX_BYTES = 20 * 1024 * 1024


class ImportUploadForm(forms.Form):
    file = forms.FileField(
        label=_("CSV or Excel file"),
        help_text=_(
            "CSV: comma, semicolon or tab separated, UTF-8 or Windows (Excel) encoding. "
            "Excel (.xlsx): the first sheet that is not empty."
        ),
        widget=forms.ClearableFileInput(
            attrs={
                "accept": ".csv,.txt,.tsv,text/csv,.xlsx,application/"
                "vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            }
        ),
    )
    source = forms.ModelChoiceField(
        LeadSource.objects.filter(active=True),
        label=_("Lead source"),
        required=False,
        empty_label=_("(none)"),
        help_text=_(
            "Given to every imported contact that has no source yet, unless a source column "
            "names one on its row."
        ),
    )
    overwrite = forms.BooleanField(
        label=_("Overwrite existing values"),
        required=False,
        help_text=_("Unchecked: existing contacts only get their blank fields filled in."),
    )

    detected: parsing.Detected

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > IMPORT_MAX_BYTES:
            raise forms.ValidationError(
                _("The file is too large (at most %(size)s).")
                % {"size": filesizeformat(IMPORT_MAX_BYTES)},
                code="too_large",
            )
        raw = upload.read()
        upload.seek(0)
        try:
            self.detected = files.detect(raw)
        except parsing.NotACsv as error:
            raise forms.ValidationError(str(error), code="not_csv") from error
        if not any(self.detected.columns):
            raise forms.ValidationError(_("The file has no header row."), code="no_header")
        return upload


class ImportMappingForm(forms.Form):
    """One select per column of the file: the contact field it fills, or ignore it; then what
    to do with the lead sources no source matches, and whether rows without email are leads."""

    rows_are_leads = forms.BooleanField(
        label=_("These rows are leads"),
        required=False,
        help_text=_(
            "For a CRM's export: rows with an external id but no email become leads, "
            "not anonymous visitors."
        ),
    )
    create_sources = forms.BooleanField(
        label=_("Create the unknown lead sources listed above"),
        required=False,
        help_text=_("Unticked: rows naming an unknown source keep no source."),
    )
    # The column whose unknown sources the page listed ("" for none).
    sources_of = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(
        self,
        *args: Any,
        columns: Sequence[str],
        mapping: Sequence[str],
        custom_fields: Sequence[CustomField] = (),
        may_create_fields: bool = False,
        **kwargs: Any,
    ) -> None:
        """``custom_fields``: the active ones, offered beside the contact's fields;
        ``may_create_fields``: an ignored column may become a new custom field (a user with the
        permission to add them)."""
        super().__init__(*args, **kwargs)
        self.fields["rows_are_leads"].initial = "external_id" in mapping and "email" not in mapping
        self.columns = list(columns)
        self.may_create_fields = may_create_fields
        choices = parsing.field_choices(custom_fields)
        self.labels = dict(choices)
        for index, column in enumerate(self.columns):
            self.fields[f"column_{index}"] = forms.ChoiceField(
                label=column or _("Column %(number)d") % {"number": index + 1},
                choices=choices,
                required=False,
                initial=mapping[index] if index < len(mapping) else parsing.IGNORE,
            )
        if may_create_fields:
            kinds = [(k, label) for k, label in CustomField.Kind.choices if k != "choice"]
            for index, column in enumerate(self.columns):
                self.fields[f"new_{index}"] = forms.BooleanField(
                    label=_("Create “%(column)s” as a custom field") % {"column": column},
                    required=False,
                )
                self.fields[f"kind_{index}"] = forms.ChoiceField(
                    label=_("Kind of “%(column)s”") % {"column": column},
                    choices=kinds,
                    required=False,
                    initial=CustomField.Kind.TEXT,
                )

    def column_fields(self) -> list[forms.BoundField]:
        return [self[f"column_{index}"] for index in range(len(self.columns))]

    def creation_fields(self) -> list[tuple[forms.BoundField, forms.BoundField] | None]:
        """Per column: its "create as a custom field" checkbox and kind, or None."""
        if not self.may_create_fields:
            return [None for _column in self.columns]
        return [(self[f"new_{i}"], self[f"kind_{i}"]) for i in range(len(self.columns))]

    def new_fields(self) -> dict[int, tuple[str, str, str]]:
        """Column index → (key, label, kind) of the custom fields to create."""
        if not self.may_create_fields:
            return {}
        return {
            index: (key_from_label(column), column.strip()[:100],
                    self.cleaned_data.get(f"kind_{index}") or CustomField.Kind.TEXT)
            for index, column in enumerate(self.columns)
            if self.cleaned_data.get(f"new_{index}")
        }  # fmt: skip

    def _clean_new_fields(self, cleaned: dict[str, Any]) -> None:
        wanted = [i for i in range(len(self.columns)) if cleaned.get(f"new_{i}")]
        taken = set(CustomField.objects.values_list("key", flat=True)) if wanted else set()
        for index in wanted:
            column = self.columns[index]
            key = key_from_label(column)
            if cleaned.get(f"column_{index}"):
                self.add_error(f"new_{index}", _("This column fills a field already."))
            elif not column.strip():
                self.add_error(f"new_{index}", _("A column without a header cannot be one."))
            elif key in taken:
                self.add_error(
                    f"new_{index}",
                    _("A custom field “%(key)s” exists already: choose it in the list.")
                    % {"key": key},
                )
            taken.add(key)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        self._clean_new_fields(cleaned)
        chosen = [value for value in self.mapping(cleaned) if value]
        for name in sorted({value for value in chosen if chosen.count(value) > 1}):
            self.add_error(
                None,
                _("“%(field)s” is chosen for several columns: keep one.")
                % {"field": self.labels.get(name, name)},
            )
        if "email" not in chosen and "external_id" not in chosen:
            self.add_error(
                None, _("Choose the column that holds the email address or the external id.")
            )
        return cleaned

    def source_column(self) -> int | None:
        """The column chosen (or proposed, unbound) as the per-row source."""
        for index in range(len(self.columns)):
            name = f"column_{index}"
            value = self.data.get(name) if self.is_bound else self.fields[name].initial
            if value == "source":
                return index
        return None

    def mapping(self, cleaned: dict[str, Any] | None = None) -> list[str]:
        cleaned = self.cleaned_data if cleaned is None else cleaned
        return [cleaned.get(f"column_{index}") or "" for index in range(len(self.columns))]


class SavedMappingNameForm(forms.Form):
    """The name a mapping is saved under (saving again under a name replaces it)."""

    mapping_name = forms.CharField(
        label=_("Save this mapping as"),
        max_length=100,
        help_text=_("To reuse it on a later file: columns are matched by their header."),
    )


class SavedMappingChoiceForm(forms.Form):
    saved_mapping = forms.ModelChoiceField(
        SavedMapping.objects.all(), label=_("Saved mapping"), empty_label=None
    )
