from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from scoring.models import DecayRule, ScoreEntry, ScoreRule, Threshold


@admin.register(ScoreRule)
class ScoreRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "event_type", "points", "conditions", "cap", "active", "priority"]
    list_filter = ["active", "event_type"]
    search_fields = ["name", "url_contains", "url_pattern", "content_tag", "form"]
    fieldsets = [
        (None, {"fields": ["name", "event_type", "points", "active", "priority"]}),
        (
            _("Conditions (all must hold)"),
            {"fields": ["url_contains", "url_pattern", "content_tag", "form",
                        "property_name", "property_value"]},
        ),
        (_("Caps"), {"fields": ["max_times", "max_points", "cap_period"]}),
        (_("Validity"), {"fields": ["starts_at", "ends_at"]}),
    ]  # fmt: skip

    @admin.display(description=_("conditions"))
    def conditions(self, rule: ScoreRule) -> str:
        parts = [
            rule.url_contains and f"URL ∋ {rule.url_contains}",
            rule.url_pattern and f"URL ~ {rule.url_pattern}",
            rule.content_tag and f"#{rule.content_tag}",
            rule.form and f"form {rule.form}",
            rule.property_name and f"{rule.property_name} = {rule.property_value}",
        ]
        return ", ".join(p for p in parts if p) or "—"

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
class ThresholdAdmin(admin.ModelAdmin):
    list_display = ["stage", "min_score", "event_types", "content_tag", "exit_below", "demote",
                    "active"]  # fmt: skip
    list_filter = ["active", "stage"]


@admin.register(ScoreEntry)
class ScoreEntryAdmin(admin.ModelAdmin):
    """The ledger: written by scoring only, read here."""

    list_display = ["at", "contact", "points", "reason", "filtered", "rule", "decay_rule"]
    list_filter = ["filtered", "rule", "decay_rule"]
    search_fields = ["contact__email", "reason"]
    list_select_related = ["contact", "rule", "decay_rule"]
    raw_id_fields = ["contact", "event"]
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
