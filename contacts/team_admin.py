"""Sales teams in admin: each team's assignment (pull queue, round robin, rules), its reps with
their duty and capacity, and the assignment rules in their order."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from contacts import reasons
from contacts.models import AssignmentRule, Contact, CustomField, SalesRep, Team
from contacts.models.assignment import FIELDS
from contacts.models.custom_fields import PREFIX


class SalesRepInline(admin.TabularInline):
    model = SalesRep
    fields = ["user", "on_duty", "max_open_leads", "time_zone", "email_digest"]
    raw_id_fields = ["user"]
    extra = 0


class AssignmentRuleInline(admin.TabularInline):
    model = AssignmentRule
    fields = ["position", "summary", "rep", "active"]
    readonly_fields = ["summary"]
    extra = 0
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # added on the rules' own page, where the form checks them

    @admin.display(description=_("condition"))
    def summary(self, rule: AssignmentRule) -> str:
        return rule_condition(rule)


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "assignment", "is_default", "reps_on_duty"]
    list_filter = ["assignment"]
    fields = ["name", "assignment", "is_default"]
    inlines = [SalesRepInline, AssignmentRuleInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        on_duty = Count("reps", filter=Q(reps__on_duty=True))
        return super().get_queryset(request).annotate(on_duty=on_duty)

    @admin.display(description=_("reps on duty"), ordering="on_duty")
    def reps_on_duty(self, team: Team) -> int:
        return team.on_duty  # type: ignore[attr-defined]


def field_choices() -> list[tuple[str, Any]]:
    """The contact's fields, then the custom fields a rule can compare (not dates)."""
    custom = (
        CustomField.objects.exclude(kind=CustomField.Kind.DATE)
        .order_by("position", "label")
        .values_list("key", "label")
    )
    return [
        *((name, Contact._meta.get_field(name).verbose_name) for name in FIELDS),
        *((f"{PREFIX}{key}", label) for key, label in custom),
    ]


def rule_condition(rule: AssignmentRule) -> str:
    """ "Country is one of France, Belgium", as the audit note will say it."""
    custom = rule.custom_field() if rule.field.startswith(PREFIX) else None
    params: dict[str, Any] = {
        "field": rule.field,
        "operator": rule.operator,
        "value": rule.value.strip(),
        "values": rule.value_list(),
        "min": _number(rule.number_min),
        "max": _number(rule.number_max),
    }
    if custom is not None:
        params["label"] = custom.label
    return reasons.assignment_condition(params)


def _number(value: Decimal | None) -> object:
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else value


class AssignmentRuleForm(forms.ModelForm):
    field = forms.ChoiceField(label=_("contact field"), choices=field_choices)

    class Meta:
        model = AssignmentRule
        fields = [
            "position", "field", "operator", "value", "values", "number_min", "number_max",
            "team", "rep", "active",
        ]  # fmt: skip


@admin.register(AssignmentRule)
class AssignmentRuleAdmin(admin.ModelAdmin):
    """The rules in the order they are tried: the first that holds for a new SQL routes it."""

    form = AssignmentRuleForm
    list_display = ["position", "condition", "team", "rep", "active"]
    list_display_links = ["condition"]
    list_editable = ["position", "active"]
    list_filter = ["team", "active"]
    list_select_related = ["team", "rep__user"]

    @admin.display(description=_("condition"))
    def condition(self, rule: AssignmentRule) -> str:
        return rule_condition(rule)


@admin.register(SalesRep)
class SalesRepAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "on_duty", "max_open_leads", "open_leads"]
    list_editable = ["on_duty", "max_open_leads"]
    list_filter = ["team", "on_duty"]
    list_select_related = ["user", "team"]
    raw_id_fields = ["user"]
    search_fields = ["user__username", "user__first_name", "user__last_name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[SalesRep]:
        # The same count capacity reads: the SQLs the rep owns.
        sqls = Q(user__owned_contacts__stage=Contact.Stage.SQL)
        owned = Count("user__owned_contacts", filter=sqls)
        return super().get_queryset(request).annotate(open_count=owned)

    @admin.display(description=_("open leads"), ordering="open_count")
    def open_leads(self, rep: SalesRep) -> int:
        return rep.open_count  # type: ignore[attr-defined]
