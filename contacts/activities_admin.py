"""Admin for reps' activities (read only) and email templates (shared ones are made here)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from contacts.models import Activity, EmailTemplate
from contacts.sales.activity_forms import EmailTemplateForm


class EmailTemplateAdminForm(EmailTemplateForm):
    class Meta(EmailTemplateForm.Meta):
        fields = ["owner", "name", "subject", "body"]


@admin.register(EmailTemplate)
class EmailTemplateAdmin(admin.ModelAdmin):
    form = EmailTemplateAdminForm
    list_display = ["name", "owner", "subject", "updated_at"]
    list_filter = [("owner", admin.EmptyFieldListFilter)]
    search_fields = ["name", "subject"]
    raw_id_fields = ["owner"]


@admin.register(Activity)
class ActivityAdmin(admin.ModelAdmin):
    list_display = ["at", "kind", "contact", "user", "call_outcome", "duration_minutes"]
    list_filter = ["kind", "call_outcome"]
    list_select_related = ["contact", "user"]
    raw_id_fields = ["contact", "user", "event"]
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # logged from the lead's page, with its event and audit row

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
