"""Outbound webhooks in admin: the subscriptions (URL, events, secret, active) and the delivery
log (each message, each try and its answer). Registered from ``contacts.admin``."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from contacts.models import (
    Contact,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEventType,
    WebhookSubscription,
)
from contacts.webhooks.delivery import INTERRUPTED, deliveries_retry, subscription_enable


class WebhookSubscriptionForm(forms.ModelForm):
    url = forms.URLField(label=_("URL"), max_length=500, assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        label=_("Events"), choices=WebhookEventType.choices, widget=forms.CheckboxSelectMultiple
    )
    stages = forms.MultipleChoiceField(
        label=_("Only these stages"),
        choices=Contact.Stage.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text=_("For “Contact entered a stage”; none ticked: every stage."),
    )

    class Meta:
        model = WebhookSubscription
        fields = ["name", "url", "event_types", "stages", "include_imports", "active"]


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(admin.ModelAdmin):
    form = WebhookSubscriptionForm
    list_display = ["name", "url", "events", "active", "consecutive_failures", "disabled_at"]
    list_filter = ["active"]
    search_fields = ["name", "url"]
    readonly_fields = ["secret", "consecutive_failures", "disabled_at", "created_at"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = ["name", "url", "event_types", "stages", "include_imports", "active"]
        return fields if obj is None else [*fields, *self.readonly_fields]

    @admin.display(description=_("events"))
    def events(self, subscription: WebhookSubscription) -> str:
        labels = dict(WebhookEventType.choices)
        return ", ".join(str(labels.get(code, code)) for code in subscription.event_types)

    def save_model(
        self, request: HttpRequest, obj: WebhookSubscription, form, change: bool
    ) -> None:  # type: ignore[no-untyped-def]
        turned_on = change and obj.active and obj.disabled_at is not None
        super().save_model(request, obj, form, change)
        if turned_on:
            subscription_enable(subscription=obj)
            messages.info(request, _("Active again: the deliveries that were waiting will go."))


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    fields = ["at", "response_status", "duration_ms", "response_body", "error_text"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("error"))
    def error_text(self, attempt: WebhookAttempt) -> str:
        if attempt.error == INTERRUPTED:
            return str(
                _("Interrupted: the worker stopped before the answer was recorded; sent again "
                  "with the same webhook-id.")
            )  # fmt: skip
        return attempt.error


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "created_at", "subscription", "event_type", "contact_id", "status", "attempts",
        "response_status", "delivered_at",
    ]  # fmt: skip
    list_filter = ["status", "event_type", "subscription"]
    search_fields = ["webhook_id"]
    list_select_related = ["subscription"]
    fields = [
        "webhook_id", "subscription", "event_type", "contact_id", "status", "attempts",
        "next_attempt_at", "delivered_at", "response_status", "response_body", "duration_ms",
        "error", "payload",
    ]  # fmt: skip
    readonly_fields = fields
    inlines = [WebhookAttemptInline]
    actions = ["send_again"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("payload"))
    def payload(self, delivery: WebhookDelivery) -> str:
        return format_html("<pre>{}</pre>", json.dumps(json.loads(delivery.body), indent=2))

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("contacts.change_webhooksubscription")

    @admin.action(description=_("Send the failed ones again"), permissions=["retry"])
    def send_again(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        count = deliveries_retry(deliveries=queryset)
        self.message_user(
            request,
            ngettext(
                "%(count)d delivery will be sent again.",
                "%(count)d deliveries will be sent again.",
                count,
            )
            % {"count": count},
        )
