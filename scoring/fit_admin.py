"""Fit rules and grade cut-offs in admin: saving or deleting one recomputes everyone's fit
(``scoring.fit.fit_recompute``, a few seconds for 100,000 contacts) and says what changed."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.humanize.templatetags.humanize import intcomma
from django.db import models
from django.http import HttpRequest
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from scoring.fit import fit_recompute
from scoring.fit_models import FitGrades, FitRule, field_choices, field_label


class FitRecomputeMixin:
    """Saving or deleting changes everyone's fit: recompute it at once and say so."""

    def _recompute(self, request: HttpRequest) -> None:
        changes = fit_recompute()
        messages.info(
            request,
            gettext(
                "Fit recomputed for everyone: %(scored)s contacts changed fit score, "
                "%(regraded)s changed grade, %(moves)s changed stage."
            )
            % {
                "scored": intcomma(changes.scored),
                "regraded": intcomma(len(changes.regraded)),
                "moves": intcomma(changes.stage_moves),
            },
        )

    def save_model(self, request: HttpRequest, obj: models.Model, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        self._recompute(request)

    def delete_model(self, request: HttpRequest, obj: models.Model) -> None:
        super().delete_model(request, obj)  # type: ignore[misc]
        self._recompute(request)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        super().delete_queryset(request, queryset)  # type: ignore[misc]
        self._recompute(request)


class FitRuleForm(forms.ModelForm):
    # The contact's fields and the custom fields as they are when the form is built.
    field = forms.ChoiceField(label=_("contact field"), choices=field_choices)

    class Meta:
        model = FitRule
        fields = ["name", "field", "operator", "value", "values", "number_min", "number_max",
                  "day", "points", "active"]  # fmt: skip


@admin.register(FitRule)
class FitRuleAdmin(FitRecomputeMixin, admin.ModelAdmin):
    form = FitRuleForm
    list_display = ["name", "field_name", "operator", "condition_value", "points", "active"]
    list_filter = ["active", "field", "operator"]
    search_fields = ["name", "value", "values"]
    fields = ["name", "field", "operator", "value", "values", "number_min", "number_max", "day",
              "points", "active"]  # fmt: skip

    @admin.display(description=_("contact field"), ordering="field")
    def field_name(self, rule: FitRule) -> str:
        return field_label(rule.field)

    @admin.display(description=_("value"))
    def condition_value(self, rule: FitRule) -> str:
        if rule.operator == FitRule.Operator.BETWEEN:
            low = "…" if rule.number_min is None else intcomma(rule.number_min)
            high = "…" if rule.number_max is None else intcomma(rule.number_max)
            return f"{low} – {high}"
        if rule.operator == FitRule.Operator.IN:
            return ", ".join(rule.value_list())
        if rule.day is not None:
            return rule.day.isoformat()
        return rule.value


@admin.register(FitGrades)
class FitGradesAdmin(FitRecomputeMixin, admin.ModelAdmin):
    list_display = ["__str__", "a_from", "b_from", "c_from"]
    fields = ["a_from", "b_from", "c_from"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not FitGrades.objects.exists()
