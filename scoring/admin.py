import copy

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.humanize.templatetags.humanize import intcomma
from django.core.exceptions import ValidationError
from django.db import models
from django.forms.models import construct_instance
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from contacts import legal_basis, reasons
from contacts.admin import ReadOnlyAdmin
from contacts.models import Event
from contacts.reasons import coded
from scoring.describe import rule_conditions
from scoring.fit_admin import FitGradesAdmin, FitRuleAdmin  # noqa: F401 (registers them)
from scoring.live import active_rules, active_thresholds
from scoring.models import DecayRule, Rescore, ScoreEntry, ScoreRule, Threshold
from scoring.preview import Preview, rescore_preview, rules_with
from scoring.rescore import rescore_start
from scoring.suggestions_admin import SuggestionAdmin  # noqa: F401 (registers it)


class ConfirmNewSqlsForm(forms.ModelForm):
    """A change whose preview sends more than ``SCORING_CONFIRM_NEW_SQLS`` new SQLs to the
    sales queue is saved only once the box saying so is ticked: the figure is the plan the
    rescore will apply (``scoring.preview``), computed when the form is sent."""

    confirm_new_sqls = forms.BooleanField(
        label=_("Yes, send these new SQLs to the sales queue"), required=False
    )
    preview: Preview | None = None

    def clean(self) -> dict[str, object]:
        cleaned = super().clean()
        if self.errors or cleaned.get("confirm_new_sqls"):
            return cleaned
        changed = construct_instance(self, copy.copy(self.instance))
        try:
            changed.clean()  # the model's own checks run after this one: no preview of a bad rule
        except ValidationError:
            return cleaned
        self.preview = self.preview_of(changed)
        if self.preview.needs_confirmation:
            raise forms.ValidationError(
                _(
                    "Saving this would send %(count)s contacts to the sales queue as new SQLs "
                    "(more than %(limit)s). Check the preview, tick the box below to confirm, "
                    "and save again."
                )
                % {
                    "count": intcomma(self.preview.new_sqls),
                    "limit": intcomma(settings.SCORING_CONFIRM_NEW_SQLS),
                },
                code="confirm_new_sqls",
            )
        return cleaned

    @property
    def confirmation_needed(self) -> bool:
        return any(e.code == "confirm_new_sqls" for e in self.non_field_errors().as_data())

    def preview_of(self, changed: models.Model) -> Preview:
        raise NotImplementedError


class ThresholdForm(ConfirmNewSqlsForm):
    def preview_of(self, changed: models.Model) -> Preview:
        engine_threshold = changed.to_engine()  # type: ignore[attr-defined]
        others = [
            t for t in active_thresholds()
            if t.stage != engine_threshold.stage and t.id != self.instance.pk
        ]  # fmt: skip
        thresholds = [*others, engine_threshold] if engine_threshold.active else others
        return rescore_preview(rules=active_rules(), thresholds=thresholds)


class RescoreOnSaveMixin:
    """Saving or deleting changes everyone's score: queue a rescore and say where to follow it."""

    def _rescore(self, request: HttpRequest, what: str) -> None:
        run = rescore_start(reason=what, requested_by=request.user)
        url = reverse("admin:scoring_rescore_progress", args=[run.pk])
        messages.info(
            request,
            format_html(
                '{} <a href="{}">{}</a>',
                gettext("Everyone is being rescored with the new rules."),
                url,
                gettext("Follow the progress"),
            ),
        )

    def save_model(self, request: HttpRequest, obj: models.Model, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        self._rescore(request, coded("rescore_saved", what=str(obj)))

    def delete_model(self, request: HttpRequest, obj: models.Model) -> None:
        super().delete_model(request, obj)  # type: ignore[misc]
        self._rescore(request, coded("rescore_deleted", what=str(obj)))


class ScoreRuleForm(ConfirmNewSqlsForm):
    """A rule posted without a comparison (written before there were numeric ones) compares
    for equality, as it always did."""

    class Meta:
        model = ScoreRule
        fields = ["name", "event_type", "points", "active", "priority", "url_contains",
                  "url_pattern", "content_tag", "form", "property_name", "property_operator",
                  "property_value", "property_number", "property_number_max", "count_at_least",
                  "count_within_days", "fade_full_days", "fade_zero_days", "max_times",
                  "max_points", "cap_period", "starts_at", "ends_at"]  # fmt: skip

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["property_operator"].required = False

    def clean_property_operator(self) -> str:
        return self.cleaned_data.get("property_operator") or ScoreRule.Comparison.EQUALS

    def preview_of(self, changed: models.Model) -> Preview:
        return rescore_preview(rules=rules_with(changed.to_engine()))  # type: ignore[attr-defined]


@admin.register(ScoreRule)
class ScoreRuleAdmin(RescoreOnSaveMixin, admin.ModelAdmin):
    form = ScoreRuleForm
    list_display = ["name", "event_type", "points", "conditions", "cap", "active", "priority"]
    list_filter = ["active", "event_type"]
    search_fields = ["name", "url_contains", "url_pattern", "content_tag", "form"]
    fieldsets = [
        (None, {"fields": ["name", "event_type", "points", "active", "priority"]}),
        (
            _("Conditions (all must hold)"),
            {"fields": ["url_contains", "url_pattern", "content_tag", "form",
                        "property_name", "property_operator", "property_value",
                        "property_number", "property_number_max"]},
        ),
        (
            _("Count"),
            {"fields": ["count_at_least", "count_within_days"],
             "description": _("Optional: score only once the contact has done this often.")},
        ),
        (
            _("Recency"),
            {"fields": ["fade_full_days", "fade_zero_days"],
             "description": _("Optional: points that fade with the age of the event.")},
        ),
        (_("Caps"), {"fields": ["max_times", "max_points", "cap_period"]}),
        (_("Validity"), {"fields": ["starts_at", "ends_at"]}),
    ]  # fmt: skip

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None) -> HttpResponse:  # fmt: skip
        rule = self.get_object(request, object_id)
        if rule is not None and request.method == "GET":
            self._warn_about_opens(request, rule)
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: models.Model, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        super().save_model(request, obj, form, change)
        self._warn_about_opens(request, obj)

    def _warn_about_opens(self, request: HttpRequest, rule: ScoreRule) -> None:
        """A rule on opens scores only the contacts whose opens are tracked: say how many."""
        if rule.event_type == Event.Type.EMAIL_OPEN:
            note = gettext("This rule scores email opens. %(note)s") % {
                "note": legal_basis.open_tracking_note()
            }
            self.message_user(request, note, messages.WARNING)

    def get_urls(self) -> list[URLPattern]:
        preview = self.admin_site.admin_view(require_POST(self.preview_view))
        return [
            path("preview/", preview, name="scoring_scorerule_preview"),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        """What saving the form as it stands would do, before anything is saved (htmx)."""
        rule_id = request.POST.get("_rule_id") or None
        obj = get_object_or_404(ScoreRule, pk=rule_id) if rule_id else None
        if not self.has_change_permission(request, obj) and not self.has_add_permission(request):
            raise Http404
        data = request.POST.copy()
        data["confirm_new_sqls"] = "on"  # the preview is shown here, not asked about
        form = self.get_form(request, obj, change=obj is not None)(data, instance=obj)
        context = {"form": form, "preview": None}
        if form.is_valid():
            unsaved = form.save(commit=False)
            rule = unsaved.to_engine()
            context["preview"] = rescore_preview(rules=rules_with(rule))
            context["description"] = unsaved.description()
        return render(request, "admin/scoring/preview.html", context)

    @admin.display(description=_("conditions"))
    def conditions(self, rule: ScoreRule) -> str:
        return rule_conditions(rule.to_engine()) or "—"

    @admin.display(description=_("cap"))
    def cap(self, rule: ScoreRule) -> str:
        if rule.max_times:
            return _("%(n)s× per contact") % {"n": rule.max_times}
        if rule.max_points:
            return _("%(n)s pts per %(period)s") % {
                "n": rule.max_points,
                "period": rule.get_cap_period_display(),
            }
        return "—"


@admin.register(DecayRule)
class DecayRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "inactive_days", "points", "percent", "active"]
    list_filter = ["active"]


@admin.register(Threshold)
class ThresholdAdmin(RescoreOnSaveMixin, admin.ModelAdmin):
    form = ThresholdForm
    list_display = ["stage", "min_score", "event_types", "content_tag", "min_fit_grade",
                    "exit_below", "demote", "active"]  # fmt: skip
    list_filter = ["active", "stage"]


@admin.register(ScoreEntry)
class ScoreEntryAdmin(ReadOnlyAdmin):
    """The ledger: written by scoring only, read here."""

    list_display = ["at", "contact", "points", "reason_text", "filtered", "rule", "decay_rule"]
    list_filter = ["filtered", "rule", "decay_rule"]
    search_fields = ["contact__email", "reason"]
    list_select_related = ["contact", "rule", "decay_rule"]
    raw_id_fields = ["contact", "event"]
    date_hierarchy = "at"

    @admin.display(description=_("reason"))
    def reason_text(self, entry: ScoreEntry) -> str:
        return reasons.text(entry.reason)


@admin.register(Rescore)
class RescoreAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "status", "reason_text", "requested_by", "percent_done",
                    "contacts_changed", "stage_moves", "seconds"]  # fmt: skip
    list_filter = ["status"]
    actions = ["rescore_now"]

    def get_urls(self) -> list[URLPattern]:
        progress = self.admin_site.admin_view(self.progress_view)
        return [
            path("<int:pk>/progress/", progress, name="scoring_rescore_progress"),
            *super().get_urls(),
        ]

    def progress_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        run = get_object_or_404(Rescore, pk=pk)
        template = "admin/scoring/rescore_progress.html"
        if getattr(request, "htmx", False):
            template += "#progress"
        context = {**self.admin_site.each_context(request), "run": run, "opts": Rescore._meta,
                   "title": gettext("Rescore")}  # fmt: skip
        return render(request, template, context)

    @admin.display(description=_("why"))
    def reason_text(self, run: Rescore) -> str:
        return reasons.text(run.reason)

    @admin.display(description=_("progress"))
    def percent_done(self, run: Rescore) -> str:
        return f"{run.percent} %"

    @admin.action(description=_("Rescore everyone now"))
    def rescore_now(self, request: HttpRequest, queryset: object) -> None:
        RescoreOnSaveMixin._rescore(self, request, coded("rescore_requested"))  # type: ignore[arg-type]
