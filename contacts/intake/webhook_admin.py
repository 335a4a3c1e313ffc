"""Admin for inbound webhooks: the endpoints (with the URL and header to give the sender) and
their delivery log, read-only."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from contacts.intake.webhooks import (
    CONTACT_TARGETS,
    FLAGS,
    SIGNATURE_HEADERS,
    SUBMISSION_TARGETS,
)
from contacts.models import InboundDelivery, InboundSource

SCHEMES = {
    "typeform": _("Typeform signs with this secret: paste it as the webhook's secret."),
    "tally": _("Tally signs with this secret: paste it as the webhook's signing secret."),
    "mautic": _("Mautic signs with the Secret field of its webhook form: paste this secret "
                "there (or Mautic's into the field here: the same on both sides)."),
    "generic": _("Send the hex HMAC-SHA256 of the raw body, keyed with the secret, as "
                 "“sha256=<hex>”."),
}  # fmt: skip


class InboundSourceForm(forms.ModelForm):
    class Meta:
        model = InboundSource
        fields = ["name", "kind", "secret", "form_name", "source", "mapping", "active"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        mapping, kind = data.get("mapping"), data.get("kind")
        if mapping in (None, ""):
            data["mapping"] = mapping = {}
        if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
        ):
            self.add_error(
                "mapping", _('A JSON object of names to text, e.g. {"company": "Société"}.')
            )
            return data
        known = {*CONTACT_TARGETS, *FLAGS} | (
            set(SUBMISSION_TARGETS) if kind == "generic" else set()
        )
        unknown = sorted(
            k
            for k in mapping
            if k not in known
            and not (
                kind == "generic" and k.startswith("properties.") and len(k) > len("properties.")
            )
        )
        if unknown:
            self.add_error(
                "mapping",
                _("Unknown targets: %(names)s. Known: %(known)s.")
                % {"names": ", ".join(unknown), "known": ", ".join(sorted(known))},
            )
        elif kind == "generic" and not {"email", "external_id"} & set(mapping):
            self.add_error("mapping", _("Map “email” or “external_id”: a submission needs one."))
        return data


@admin.register(InboundSource)
class InboundSourceAdmin(admin.ModelAdmin):
    form = InboundSourceForm
    list_display = ["name", "kind", "source", "active", "deliveries_link", "created_at"]
    list_filter = ["kind", "active"]
    search_fields = ["name", "form_name"]
    readonly_fields = ["endpoint"]

    @admin.display(description=_("give the sender"))
    def endpoint(self, source: InboundSource) -> str:
        if not source.pk:
            return str(_("Save to get the address."))
        url = self.request_base + reverse("inbound-webhook", args=[source.key])
        return format_html(
            "<p>{}: <code>{}</code></p><p>{}: <code>{}</code></p><p>{}</p>",
            _("URL (POST)"), url, _("Signature header"), SIGNATURE_HEADERS[source.kind],
            SCHEMES[source.kind],
        )  # fmt: skip

    @admin.display(description=_("deliveries"))
    def deliveries_link(self, source: InboundSource) -> str:
        url = (
            reverse("admin:contacts_inbounddelivery_changelist") + f"?source__id__exact={source.pk}"
        )
        return format_html('<a href="{}">{}</a>', url, _("log"))

    def get_form(self, request: HttpRequest, obj: InboundSource | None = None, **kwargs: Any):  # type: ignore[no-untyped-def]
        self.request_base = f"{request.scheme}://{request.get_host()}"
        return super().get_form(request, obj, **kwargs)


@admin.register(InboundDelivery)
class InboundDeliveryAdmin(admin.ModelAdmin):
    list_display = ["received_at", "source", "status", "http_status", "reason", "submission_ids",
                    "contact_link"]  # fmt: skip
    list_filter = ["status", "source"]
    search_fields = ["submission_ids", "reason"]
    list_select_related = ["source"]
    date_hierarchy = "received_at"
    fields = ["source", "received_at", "status", "http_status", "reason", "submission_ids",
              "contact_link", "payload_size", "payload_shown"]  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description=_("contact"))
    def contact_link(self, delivery: InboundDelivery) -> str:
        if delivery.contact_id is None:
            return "—"
        url = reverse("contact-detail", args=[delivery.contact_id])
        return format_html('<a href="{}">{}</a>', url, delivery.contact_id)

    @admin.display(description=_("payload size (bytes)"))
    def payload_size(self, delivery: InboundDelivery) -> str:
        if delivery.payload_truncated:
            return str(
                _("%(size)s (only the beginning is kept)") % {"size": delivery.payload_bytes}
            )
        return str(delivery.payload_bytes)

    @admin.display(description=_("payload"))
    def payload_shown(self, delivery: InboundDelivery) -> str:
        return format_html('<pre style="white-space:pre-wrap">{}</pre>', delivery.payload)
