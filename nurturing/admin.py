from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from contacts import legal_basis
from contacts.admin import ReadOnlyAdmin
from contacts.models import Contact
from nurturing import enrolment, outbox, rendering, sending
from nurturing.models import (
    Bounce,
    Enrollment,
    Message,
    Sequence,
    SplitBranch,
    Step,
    UnmatchedMail,
)


class StepInline(admin.StackedInline):
    model = Step
    extra = 0
    ordering = ["position", "id"]
    fk_name = "sequence"
    fieldsets = [
        (None, {"fields": [("position", "kind", "name")]}),
        (_("Email"), {
            "classes": ["collapse"],
            "fields": ["subject", "body_text", "body_html",
                       ("offer_percent", "offer_code", "offer_valid_hours")],
            "description": _("Variables: %(names)s. Links are tracked; the unsubscribe link and "
                             "headers are added.") % {"names": ", ".join(
                                 f"{{{{ {name} }}}}" for name in rendering.VARIABLES)},
        }),
        (_("Wait"), {"classes": ["collapse"], "fields": [
            "delay", ("window_weekdays", "window_start_hour", "window_end_hour"),
            "window_time_zone"]}),
        (_("Condition, split and targets"), {"classes": ["collapse"], "fields": [
            "condition", ("condition_event_type", "condition_tag"),
            ("condition_score", "condition_stage"), "split_percent", ("yes_step", "no_step")]}),
        (_("Score and stage"), {"classes": ["collapse"], "fields": [("points", "stage")]}),
    ]  # fmt: skip
    readonly_fields: list[str] = []

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)
        # Targets are steps of this sequence only.
        for name in ("yes_step", "no_step"):
            field = formset.form.base_fields[name]
            field.queryset = Step.objects.filter(sequence=obj) if obj else Step.objects.none()
        return formset


def sequence_warnings(sequence: Sequence) -> list[str]:
    """What the sequence's editor should know about opens and legal bases."""
    warnings = []
    if sequence.steps.filter(kind=Step.Kind.CONDITION, condition=Step.Condition.OPENED).exists():
        warnings.append(
            str(_("A condition of this sequence depends on opens. %(note)s Use the condition "
                  "“Clicked the previous email” to branch on clicks.")
                % {"note": legal_basis.open_tracking_note()})
        )  # fmt: skip
    if sequence.allowed_bases == Sequence.AllowedBases.ANY:
        warnings.append(
            str(_("This sequence emails contacts whatever their legal basis. Choose which "
                  "bases it sends to (“Legal basis”) so that the others are left out."))
        )  # fmt: skip
    return warnings


@admin.register(Sequence)
class SequenceAdmin(admin.ModelAdmin):
    list_display = ["name", "trigger", "goal_event_type", "reentry", "active", "results_link"]
    list_filter = ["active", "trigger"]
    search_fields = ["name"]
    inlines = [StepInline]
    actions = ["activate", "enroll_segment"]
    fieldsets = [
        (None, {"fields": ["name", "description", "active"]}),
        (_("Trigger"), {"fields": [
            "trigger", "trigger_stage", ("trigger_event_type", "trigger_tag"),
            ("trigger_count", "trigger_within_days"), "segment_query"]}),
        (_("Re-entry and goal"), {"fields": [
            ("reentry", "cooldown_days"), ("goal_event_type", "goal_tag")]}),
        (_("Legal basis"), {"fields": ["allowed_bases"]}),
    ]  # fmt: skip

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        # A new sequence sends to consented contacts until someone widens it; "any" is what
        # sequences made before the bases were checked keep (nurturing migration 0011). It
        # starts switched off: it goes live through its pre-flight (the results page's
        # "Activate…"), which shows who would enter and what it would send.
        return {"allowed_bases": Sequence.AllowedBases.CONSENT, "active": False,
                **super().get_changeform_initial_data(request)}  # fmt: skip

    @admin.display(description=_("results"))
    def results_link(self, sequence: Sequence) -> str:
        return format_html(
            '<a href="{}">{}</a>', reverse("nurturing-sequence", args=[sequence.pk]), _("results")
        )

    @admin.action(description=_("Enrol the selected sequence's segment (pre-flight first)"))
    def enroll_segment(self, request: HttpRequest, queryset: QuerySet[Sequence]) -> Any:
        sequence = self._one(request, queryset)
        if sequence is None:
            return None
        if enrolment.segment_selects_everyone(sequence.segment_query):
            self.message_user(
                request, _("“%(name)s” has no segment.") % {"name": sequence}, messages.WARNING
            )
            return None
        query = urlencode({"sequence": sequence.pk, "query": sequence.segment_query})
        return redirect(f"{reverse('nurturing-enroll-preflight')}?{query}")

    @admin.action(description=_("Activate the selected sequence (pre-flight first)"))
    def activate(self, request: HttpRequest, queryset: QuerySet[Sequence]) -> Any:
        sequence = self._one(request, queryset)
        if sequence is None:
            return None
        return redirect("nurturing-sequence-activate", pk=sequence.pk)

    def _one(self, request: HttpRequest, queryset: QuerySet[Sequence]) -> Sequence | None:
        """Pre-flight pages show one sequence: the actions that lead there take one."""
        if queryset.count() != 1:
            self.message_user(
                request,
                _("Choose one sequence: its pre-flight page shows what it would send."),
                messages.WARNING,
            )
            return None
        return queryset.get()

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:sequence_id>/preview/<int:step_id>/",
                self.admin_site.admin_view(self.preview_view),
                name="nurturing_step_preview",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:  # fmt: skip
        sequence = self.get_object(request, object_id)
        previews = []
        if sequence is not None and request.method == "GET":
            for warning in sequence_warnings(sequence):
                self.message_user(request, warning, messages.WARNING)
        if sequence is not None:
            previews = [
                (step, reverse("admin:nurturing_step_preview", args=[sequence.pk, step.pk]))
                for step in sequence.steps.filter(kind=Step.Kind.EMAIL).order_by("position", "id")
            ]
        return super().change_view(
            request, object_id, form_url, {**(extra_context or {}), "email_previews": previews}
        )

    def preview_view(self, request: HttpRequest, sequence_id: int, step_id: int) -> HttpResponse:
        """The email as a chosen contact would receive it (with a sample offer), rendered from
        what is saved."""
        step = get_object_or_404(Step, pk=step_id, sequence_id=sequence_id, kind=Step.Kind.EMAIL)
        form = PreviewForm(request.GET or None)
        contact = form.found() if form.is_valid() else None
        rendered = None
        if contact is not None:
            rendered = outbox.email_preview(step=step, contact=contact)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Preview of “%(step)s”") % {"step": step},
            "opts": self.model._meta,
            "sequence": step.sequence,
            "step": step,
            "form": form,
            "contact": contact,
            "rendered": rendered,
        }
        return render(request, "admin/nurturing/step_preview.html", context)


class PreviewForm(forms.Form):
    contact = forms.CharField(label=_("Contact (email or id)"), max_length=254)

    def clean_contact(self) -> str:
        value = self.cleaned_data["contact"].strip()
        if self._find(value) is None:
            raise forms.ValidationError(_("No contact with this email or id."))
        return value

    @staticmethod
    def _find(value: str) -> Contact | None:
        if value.isdigit():
            return Contact.objects.filter(pk=int(value)).first()
        return Contact.objects.filter(email__iexact=value).first()

    def found(self) -> Contact | None:
        return self._find(self.cleaned_data["contact"])


class SplitBranchInline(admin.TabularInline):
    model = SplitBranch
    fields = readonly_fields = ["step", "branch", "at"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Enrollment)
class EnrollmentAdmin(ReadOnlyAdmin):
    inlines = [SplitBranchInline]
    list_display = ["contact", "sequence", "status", "step", "next_run_at", "entered_at", "branch"]
    list_filter = ["status", "sequence"]
    search_fields = ["contact__email", "contact__last_name"]
    raw_id_fields = ["contact"]
    list_select_related = ["contact", "sequence", "step"]
    readonly_fields = [field.name for field in Enrollment._meta.fields]


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ["to", "subject", "status", "error_label", "attempts", "created_at", "sent_at",
                    "opened_at", "clicked_at", "delivery_note"]  # fmt: skip
    list_filter = ["status", "internal"]
    search_fields = ["to", "subject", "message_id"]
    list_select_related = ["contact"]
    readonly_fields = [field.name for field in Message._meta.fields]
    actions = ["send_again", "mark_delivered"]

    @admin.display(description=_("why"))
    def error_label(self, message: Message) -> str:
        return message.error_label

    @admin.action(description=_("Send again (messages in doubt or failed)"))
    def send_again(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        count = sending.messages_retry(messages=queryset)
        self.message_user(
            request,
            ngettext(
                "%(count)d message will be sent again.",
                "%(count)d messages will be sent again.",
                count,
            )
            % {"count": count},
            messages.SUCCESS if count else messages.WARNING,
        )

    @admin.action(description=_("Mark as delivered (messages in doubt)"))
    def mark_delivered(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        count = sending.messages_mark_delivered(messages=queryset)
        self.message_user(
            request,
            ngettext(
                "%(count)d message marked as delivered.",
                "%(count)d messages marked as delivered.",
                count,
            )
            % {"count": count},
            messages.SUCCESS if count else messages.WARNING,
        )


@admin.register(Bounce)
class BounceAdmin(ReadOnlyAdmin):
    """Delivery reports as recorded (nurturing.bounces): read only."""

    list_display = ["occurred_at", "email", "kind", "status", "diagnostic", "source", "contact"]
    list_filter = ["kind", "source"]
    search_fields = ["email", "reference", "diagnostic"]
    raw_id_fields = ["contact", "message"]
    list_select_related = ["contact"]
    readonly_fields = [field.name for field in Bounce._meta.fields]


@admin.register(UnmatchedMail)
class UnmatchedMailAdmin(ReadOnlyAdmin):
    """Mail from the bounce mailbox that matched nothing: read here, deleted once dealt with."""

    list_display = ["received_at", "sender", "subject", "why", "size"]
    list_filter = ["reason"]
    search_fields = ["sender", "subject", "reference"]
    date_hierarchy = "received_at"
    fields = ["received_at", "sent_at", "sender", "subject", "why", "reported", "headers_list",
              "size", "reference", "raw_text"]  # fmt: skip
    readonly_fields = fields

    @admin.display(description=_("why"), ordering="reason")
    def why(self, mail: UnmatchedMail) -> str:
        return mail.reason_label

    @admin.display(description=_("reported"))
    def reported(self, mail: UnmatchedMail) -> str:
        return "; ".join(
            " ".join(part for part in (f["kind"], f["email"], f["status"], f["diagnostic"]) if part)
            for f in mail.findings
        )

    @admin.display(description=_("headers"))
    def headers_list(self, mail: UnmatchedMail) -> str:
        return format_html_join(
            "", "<div><b>{}</b>: {}</div>", sorted(mail.headers.items())
        ) if mail.headers else ""  # fmt: skip

    @admin.display(description=_("raw mail"))
    def raw_text(self, mail: UnmatchedMail) -> str:
        text = bytes(mail.raw).decode("utf-8", "replace")
        if mail.size > len(mail.raw):
            text += "\n[…]"
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)
