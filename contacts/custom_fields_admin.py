"""Custom fields in admin: the key is fixed once created (imports, segments and fit rules name
it); a kind or choices change converts the stored values, or is refused with the values that
stand in the way; deleting a field deletes its values."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.humanize.templatetags.humanize import intcomma
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from contacts.custom_field_values import (
    conversion_message,
    conversion_problems,
    custom_field_change,
    custom_field_delete,
)
from contacts.models import CustomField


class CustomFieldForm(forms.ModelForm):
    class Meta:
        model = CustomField
        fields = ["key", "label", "kind", "choices", "active", "position"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.instance.pk and not self.errors and {"kind", "choices"} & set(self.changed_data):
            kind = data.get("kind", self.instance.kind)
            choices = [line.strip() for line in data.get("choices", "").splitlines()]
            choices = [choice for choice in choices if choice]
            count, example = conversion_problems(self.instance, kind, choices)
            if count:
                raise forms.ValidationError(conversion_message(count, example, kind))
        return data


@admin.register(CustomField)
class CustomFieldAdmin(admin.ModelAdmin):
    form = CustomFieldForm
    list_display = ["label", "key", "kind", "choice_summary", "active", "position"]
    list_editable = ["position"]
    list_filter = ["kind", "active"]
    search_fields = ["label", "key"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["key"] if obj is not None else []

    @admin.display(description=_("choices"))
    def choice_summary(self, field: CustomField) -> str:
        return ", ".join(field.choice_list())

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change and {"kind", "choices"} & set(form.changed_data):
            kind, choices = obj.kind, obj.choices
            obj.kind, obj.choices = form.initial["kind"], form.initial["choices"]
            obj.save()  # the other changes; the kind goes with its values
            converted = custom_field_change(field=obj, kind=kind, choices=choices)
            if converted:
                messages.info(
                    request,
                    gettext("%(count)s contacts had their value converted.")
                    % {"count": intcomma(converted)},
                )
            return
        super().save_model(request, obj, form, change)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        custom_field_delete(field=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[CustomField]) -> None:
        for field in queryset:
            custom_field_delete(field=field)
