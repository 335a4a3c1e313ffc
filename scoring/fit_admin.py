"""Fit rules and grade cut-offs in admin: saving or deleting one recomputes everyone's fit
(``scoring.fit.fit_recompute``, a few seconds for 100,000 contacts) and says what changed."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.humanize.templatetags.humanize import intcomma
from django.db import models
from django.http import HttpRequest
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from scoring.fit import fit_recompute
from scoring.fit_models import FitGrades, FitRule


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


@admin.register(FitRule)
class FitRuleAdmin(FitRecomputeMixin, admin.ModelAdmin):
    list_display = ["name", "field", "operator", "condition_value", "points", "active"]
    list_filter = ["active", "field", "operator"]
    search_fields = ["name", "value", "values"]
    fields = ["name", "field", "operator", "value", "values", "number_min", "number_max",
              "points", "active"]  # fmt: skip

    @admin.display(description=_("value"))
    def condition_value(self, rule: FitRule) -> str:
        if rule.operator == FitRule.Operator.BETWEEN:
            low = "…" if rule.number_min is None else intcomma(rule.number_min)
            high = "…" if rule.number_max is None else intcomma(rule.number_max)
            return f"{low} – {high}"
        if rule.operator == FitRule.Operator.IN:
            return ", ".join(rule.value_list())
        return rule.value


@admin.register(FitGrades)
class FitGradesAdmin(FitRecomputeMixin, admin.ModelAdmin):
    list_display = ["__str__", "a_from", "b_from", "c_from"]
    fields = ["a_from", "b_from", "c_from"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not FitGrades.objects.exists()
