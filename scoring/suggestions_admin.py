"""The admin's page for rule suggestions: start a run, follow it, review the suggested rules
with their support and lift, preview what applying some would do, apply them."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from contacts.admin import ReadOnlyAdmin
from scoring.live import active_rules
from scoring.models import Suggestion
from scoring.preview import rescore_preview
from scoring.suggestions import is_fit, suggested_rule, suggestion_start, suggestions_apply


@admin.register(Suggestion)
class SuggestionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "status", "requested_by", "won", "lost", "auc_suggested",
                    "auc_current", "rule_count"]  # fmt: skip
    list_filter = ["status"]
    change_list_template = "admin/scoring/suggestion/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("start/", view(require_POST(self.start_view)), name="scoring_suggestion_start"),
            path("<int:pk>/review/", view(self.review_view), name="scoring_suggestion_review"),
            path(
                "<int:pk>/preview/",
                view(require_POST(self.preview_view)),
                name="scoring_suggestion_preview",
            ),  # fmt: skip
            path(
                "<int:pk>/apply/",
                view(require_POST(self.apply_view)),
                name="scoring_suggestion_apply",
            ),  # fmt: skip
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, *args, **kwargs) -> HttpResponse:  # type: ignore[no-untyped-def, override]
        return HttpResponseRedirect(reverse("admin:scoring_suggestion_review", args=[object_id]))

    @admin.display(description=_("rules"))
    def rule_count(self, run: Suggestion) -> int:
        return len(run.rules)

    def _may_apply(self, request: HttpRequest) -> bool:
        return request.user.has_perm("scoring.add_scorerule")

    def start_view(self, request: HttpRequest) -> HttpResponse:
        if not self._may_apply(request):
            raise PermissionDenied
        run = suggestion_start(requested_by=request.user)
        return HttpResponseRedirect(reverse("admin:scoring_suggestion_review", args=[run.pk]))

    def review_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        run = get_object_or_404(Suggestion, pk=pk)
        template = "admin/scoring/suggestion/review.html"
        if getattr(request, "htmx", False) and run.running:
            template += "#progress"
        rows = [(i, entry, suggested_rule(entry)) for i, entry in enumerate(run.rules)]
        fit_rows = [row for row in rows if is_fit(row[1])]
        rows = [row for row in rows if not is_fit(row[1])]
        context = {**self.admin_site.each_context(request), "run": run, "rows": rows,
                   "fit_rows": fit_rows,
                   "opts": Suggestion._meta, "may_apply": self._may_apply(request),
                   "title": gettext("Suggested rules")}  # fmt: skip
        return render(request, template, context)

    def preview_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """What applying the ticked suggestions would do, before anything is saved (htmx)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        run = get_object_or_404(Suggestion, pk=pk)
        chosen = _chosen(request, run)
        preview = None
        if any(not is_fit(run.rules[i]) for i in chosen):
            added = []
            for i in chosen:
                if is_fit(run.rules[i]):
                    continue  # fit moves no points: its grades are shown, not previewed
                rule = suggested_rule(run.rules[i])
                rule.pk = -(i + 1)  # not saved: an id no saved rule has
                added.append(rule.to_engine())
            preview = rescore_preview(rules=[*active_rules(), *added])
        return render(request, "admin/scoring/suggestion/preview.html", {"preview": preview})

    def apply_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not self._may_apply(request):
            raise PermissionDenied
        run = get_object_or_404(Suggestion, pk=pk)
        chosen = _chosen(request, run)
        if not chosen:
            messages.warning(request, gettext("Tick the suggestions to apply."))
        else:
            created = suggestions_apply(suggestion=run, indexes=chosen, requested_by=request.user)
            messages.success(
                request,
                ngettext(
                    "%(count)s rule was added; everyone is being rescored.",
                    "%(count)s rules were added; everyone is being rescored.",
                    len(created),
                )
                % {"count": len(created)},
            )
        return HttpResponseRedirect(reverse("admin:scoring_suggestion_review", args=[pk]))


def _chosen(request: HttpRequest, run: Suggestion) -> list[int]:
    chosen = []
    for value in request.POST.getlist("rule"):
        if value.isdigit() and int(value) < len(run.rules):
            chosen.append(int(value))
    return chosen
