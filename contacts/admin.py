from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.db import models
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from contacts.activities_admin import ActivityAdmin  # noqa: F401 (registers it)
from contacts.currencies import currency_choices, default_currency
from contacts.custom_fields_admin import CustomFieldAdmin  # noqa: F401 (registers it)
from contacts.forms import ContactForm
from contacts.intake.capture import api_key_create, api_key_revoke
from contacts.intake.views import embed_snippet
from contacts.models import (
    ApiKey,
    Consent,
    Contact,
    ContactAudit,
    ContactMerge,
    ContactOutcome,
    Event,
    Form,
    ImportPlaceholder,
    LeadSource,
    LeadSourceAlias,
    LeadSourceCost,
    PendingEvent,
    SavedMapping,
    StageChange,
    Suppression,
    Visitor,
)
from contacts.outcomes import outcome_record
from contacts.privacy import ERASED_FIELDS
from contacts.reasons import coded
from contacts.referrals import contact_referral_link
from contacts.roles import SALES
from contacts.sales.claims import contact_reassign, contact_release
from contacts.services import CONTACT_FIELDS, UTM_FIELDS, contact_create, contact_update
from contacts.stages import StageMoveError, stage_move


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows the application writes (facts, queues, logs): looked at here, never edited."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class AuditAdmin(ReadOnlyAdmin):
    """An audit trail: not even deleted by hand."""

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class LeadSourceCostInline(admin.TabularInline):
    model = LeadSourceCost
    extra = 1


class LeadSourceAliasInline(admin.TabularInline):
    """Other spellings of the source that imports match ("adwords", "Google Ads FR")."""

    model = LeadSourceAlias
    extra = 1
    fields = ["alias"]


@admin.register(LeadSource)
class LeadSourceAdmin(admin.ModelAdmin):
    inlines = [LeadSourceAliasInline, LeadSourceCostInline]
    list_display = ["name", "channel", "utm_source", "utm_medium", "utm_campaign", "active"]
    list_filter = ["channel", "active"]
    search_fields = ["name", "utm_source", "utm_campaign"]
    prepopulated_fields = {"slug": ["name"]}


class StageActionForm(helpers.ActionForm):
    stage = forms.ChoiceField(
        label=_("to stage"), required=False, choices=[("", "---------"), *Contact.Stage.choices]
    )
    reason = forms.CharField(label=_("reason"), required=False, max_length=500)
    rep = forms.ModelChoiceField(
        label=_("sales rep"),
        required=False,
        queryset=get_user_model().objects.filter(groups__name=SALES, is_active=True),
    )


class ContactAdminForm(ContactForm):
    class Meta(ContactForm.Meta):
        fields = [*ContactForm.Meta.fields, "referred_by"]


class StageChangeColumns:
    """Who moved the contact and why, in the reader's language (stored as codes)."""

    @admin.display(description=_("by"))
    def moved_by(self, change: StageChange) -> str:
        return change.moved_by

    @admin.display(description=_("reason"))
    def reason_text(self, change: StageChange) -> str:
        return change.reason_text


class StageChangeInline(StageChangeColumns, admin.TabularInline):
    model = StageChange
    fields = ["at", "from_stage", "to_stage", "outcome", "moved_by", "reason_text"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["-at"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


PROFILE_FIELDS = ["email", "first_name", "last_name", "company", "job_title", "phone", "time_zone",
                  "country", "industry", "company_size"]  # fmt: skip


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    form = ContactAdminForm
    raw_id_fields = ["referred_by"]
    list_display = [
        "__str__",
        "email",
        "company",
        "stage",
        "score",
        "fit_grade",
        "source",
        "owner",
        "last_activity_at",
        "created_at",
    ]
    list_filter = [
        "stage", "fit_grade", "source", "owner", "do_not_email", "do_not_call", "consent",
    ]  # fmt: skip
    search_fields = ["email", "first_name", "last_name", "company", "=external_id"]
    list_select_related = ["source", "owner"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "first_source",  # set once, from the first source the contact had
        "stage",
        "stage_entered_at",
        "score",
        "fit_score",
        "fit_grade",
        "owner",
        "claimed_at",
        "consent",
        "consent_at",
        "consent_method",
        "created_at",
        "updated_at",
        "last_activity_at",
        "erased_at",
    ]
    fieldsets = [
        (None, {"fields": [*PROFILE_FIELDS, "external_id"]}),
        (
            _("Source"),
            {"fields": ["source", "first_source", *UTM_FIELDS, "referred_by"]},
        ),
        (
            _("Funnel"),
            {
                "fields": [
                    "stage",
                    "stage_entered_at",
                    "score",
                    "fit_score",
                    "fit_grade",
                    "owner",
                    "claimed_at",
                ]
            },
        ),
        (
            _("Consent"),
            {
                "fields": [
                    "consent",
                    "consent_at",
                    "consent_basis",
                    "consent_method",
                    "legitimate_interest_notice_on",
                    "open_tracking",
                    "open_tracking_consent_source",
                    "do_not_email",
                    "do_not_call",
                ]
            },
        ),
        (_("Dates"), {"fields": ["created_at", "updated_at", "last_activity_at", "erased_at"]}),
    ]
    inlines = [StageChangeInline]
    action_form = StageActionForm
    actions = ["move_stage", "reassign", "release"]

    def get_readonly_fields(self, request: HttpRequest, obj: Contact | None = None) -> list[str]:
        # An erased person's data must not be typed back in (contact_update refuses it too).
        erased = [name for name in ERASED_FIELDS if obj is not None and obj.erased_at]
        return [*self.readonly_fields, *erased]

    def save_model(
        self, request: HttpRequest, obj: Contact, form: forms.ModelForm, change: bool
    ) -> None:
        fields = {
            name: form.cleaned_data[name] for name in CONTACT_FIELDS if name in form.cleaned_data
        }
        referrer = form.cleaned_data.get("referred_by")
        if change:
            contact_update(contact=obj, actor=request.user, **fields)
        else:
            created = contact_create(actor=request.user, **fields)
            obj.__dict__.update(created.__dict__)
        if referrer is not None and "referred_by" in form.changed_data:
            contact_referral_link(contact=obj, referrer=referrer, actor=request.user, replace=True)

    @admin.action(description=_("Reassign to the chosen sales rep (SQLs only)"))
    def reassign(self, request: HttpRequest, queryset: QuerySet[Contact]) -> None:
        rep_id = request.POST.get("rep", "")
        rep = get_user_model().objects.filter(pk=rep_id, groups__name=SALES).first()
        if rep is None:
            self.message_user(request, _("Choose the sales rep."), messages.ERROR)
            return
        done = sum(
            contact_reassign(contact=contact, to=rep, actor=request.user) for contact in queryset
        )
        self.message_user(
            request,
            ngettext("%(n)d lead reassigned.", "%(n)d leads reassigned.", done) % {"n": done},
            messages.SUCCESS if done else messages.WARNING,
        )

    @admin.action(description=_("Release to the sales queue"))
    def release(self, request: HttpRequest, queryset: QuerySet[Contact]) -> None:
        done = sum(contact_release(contact=contact, actor=request.user) for contact in queryset)
        self.message_user(
            request,
            ngettext("%(n)d lead released.", "%(n)d leads released.", done) % {"n": done},
            messages.SUCCESS if done else messages.WARNING,
        )

    @admin.action(description=_("Move to the chosen stage (records who and why)"))
    def move_stage(self, request: HttpRequest, queryset: QuerySet[Contact]) -> None:
        stage = request.POST.get("stage", "")
        reason = request.POST.get("reason", "").strip() or coded("moved_in_admin")
        if stage not in Contact.Stage.values:
            self.message_user(request, _("Choose the stage to move to."), messages.ERROR)
            return
        moved, refused = 0, []
        for contact in queryset:
            try:
                stage_move(
                    contact=contact,
                    to=stage,
                    cause=StageChange.Cause.USER,
                    actor=request.user,
                    reason=reason,
                )
                moved += 1
            except StageMoveError as error:
                refused.append(f"{contact}: {error}")
        if moved:
            self.message_user(
                request,
                ngettext("%(n)d contact moved.", "%(n)d contacts moved.", moved) % {"n": moved},
                messages.SUCCESS,
            )
        for line in refused[:20]:
            self.message_user(request, line, messages.WARNING)


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    """Events are facts: they arrive through event_record (forms, API, tracking), not by hand."""

    list_display = ["occurred_at", "type", "contact", "source", "handled"]
    list_filter = ["type", "source"]
    search_fields = ["contact__email", "idempotency_key"]
    list_select_related = ["contact"]
    raw_id_fields = ["contact"]
    date_hierarchy = "occurred_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Event]:
        waiting = PendingEvent.objects.filter(event_id=OuterRef("pk"))
        return super().get_queryset(request).annotate(waiting=Exists(waiting))

    @admin.display(description=_("handled"), boolean=True)
    def handled(self, event: Event) -> bool:
        return not event.waiting  # type: ignore[attr-defined]


@admin.register(PendingEvent)
class PendingEventAdmin(ReadOnlyAdmin):
    """Events the handlers have not finished with: in flight, or failing (with the error)."""

    list_display = ["event_id", "received_at", "attempts", "short_error"]
    list_filter = ["attempts"]
    readonly_fields = ["event", "received_at", "attempts", "last_error"]
    date_hierarchy = "received_at"

    @admin.display(description=_("last error"))
    def short_error(self, pending: PendingEvent) -> str:
        lines = pending.last_error.strip().splitlines()
        return lines[-1][:200] if lines else ""


@admin.register(StageChange)
class StageChangeAdmin(StageChangeColumns, AuditAdmin):
    """The audit trail: read-only. Stages move through the contact admin's action."""

    list_display = [
        "at", "contact", "from_stage", "to_stage", "outcome", "cause", "moved_by", "reason_text",
    ]  # fmt: skip
    list_filter = ["to_stage", "from_stage", "cause", "outcome"]
    search_fields = ["contact__email", "reason", "actor_name"]
    list_select_related = ["contact", "actor"]
    date_hierarchy = "at"


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are shown once, when made; only their hash is kept."""

    list_display = [
        "name", "prefix", "can_read", "created_at", "last_used_at", "revoked_at",
        "rate_per_minute",
    ]  # fmt: skip
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "can_read"]
    search_fields = ["name", "prefix"]
    fields = [
        "name", "can_read", "rate_per_minute", "prefix", "created_at", "last_used_at",
        "revoked_at",
    ]  # fmt: skip
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def save_model(
        self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm, change: bool
    ) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key, plain = api_key_create(name=obj.name, can_read=obj.can_read)
        if obj.rate_per_minute:
            ApiKey.objects.filter(pk=key.pk).update(rate_per_minute=obj.rate_per_minute)
        obj.__dict__.update(ApiKey.objects.get(pk=key.pk).__dict__)
        self.message_user(
            request,
            _("The new key is %(key)s. Copy it now: it will not be shown again.") % {"key": plain},
            messages.WARNING,
        )

    @admin.action(description=_("Revoke the selected keys"))
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            api_key_revoke(key=key)
        self.message_user(request, _("Revoked."), messages.SUCCESS)


@admin.register(Form)
class FormAdmin(admin.ModelAdmin):
    list_display = ["name", "key", "source", "active", "created_at"]
    list_filter = ["active", "source"]
    search_fields = ["name", "key"]
    readonly_fields = ["key", "snippet"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description=_("embed snippet (copy into your page)"))
    def snippet(self, form: Form) -> str:
        if not form.pk:
            return str(_("Save the form to get its snippet."))
        base = self.request_base
        return format_html(
            "<textarea readonly rows=12 cols=100>{}</textarea>", embed_snippet(form, base)
        )

    def get_form(self, request: HttpRequest, obj: Form | None = None, **kwargs: object):  # type: ignore[no-untyped-def]
        self.request_base = f"{request.scheme}://{request.get_host()}"
        return super().get_form(request, obj, **kwargs)


@admin.register(Consent)
class ConsentAdmin(ReadOnlyAdmin):
    list_display = ["at", "contact", "form", "wording_version", "ip", "page"]
    list_filter = ["form"]
    search_fields = ["contact__email", "ip"]
    list_select_related = ["contact", "form"]


@admin.register(Visitor)
class VisitorAdmin(ReadOnlyAdmin):
    list_display = ["visitor_id", "contact", "first_seen_at"]
    search_fields = ["visitor_id", "contact__email"]
    list_select_related = ["contact"]


@admin.register(ContactMerge)
class ContactMergeAdmin(ReadOnlyAdmin):
    list_display = ["at", "into", "merged_contact_id", "visitor_id", "events_moved"]
    search_fields = ["into__email", "visitor_id"]
    list_select_related = ["into"]


@admin.register(ContactAudit)
class ContactAuditAdmin(AuditAdmin):
    """Who claimed, released, reassigned, exported or erased what: read-only."""

    list_display = ["at", "contact", "action", "actor", "owner", "note_text"]
    list_filter = ["action"]
    search_fields = ["note", "actor__username"]
    list_select_related = ["contact", "actor", "owner"]
    raw_id_fields = ["contact"]
    date_hierarchy = "at"

    @admin.display(description=_("note"))
    def note_text(self, audit: ContactAudit) -> str:
        return audit.note_text


@admin.register(Suppression)
class SuppressionAdmin(ReadOnlyAdmin):
    """Hashes of erased people's emails. Deleting one lets that address be added again."""

    list_display = ["email_hash", "at"]


class ContactOutcomeForm(forms.ModelForm):
    # Left out: the site's currency.
    currency = forms.ChoiceField(
        label=_("Currency"), choices=currency_choices, required=False, initial=default_currency
    )

    class Meta:
        model = ContactOutcome
        fields = ["contact", "result", "at", "amount", "currency", "product"]

    def clean_currency(self) -> str:
        return self.cleaned_data.get("currency") or default_currency()

    def validate_unique(self) -> None:
        """A contact with a known outcome may get a new one: the service keeps the latest."""


@admin.register(ContactOutcome)
class ContactOutcomeAdmin(admin.ModelAdmin):
    """Known outcomes (won or lost), mostly written by the sales queue; an admin may add one
    (source "admin") through the same service, which keeps the latest by date."""

    list_display = ["at", "contact", "result", "amount", "currency", "source", "recorded_at"]
    list_filter = ["result", "source", "currency"]
    search_fields = ["contact__email"]
    list_select_related = ["contact"]
    raw_id_fields = ["contact"]
    date_hierarchy = "at"
    form = ContactOutcomeForm

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # a new verdict is a new outcome, recorded by the service

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ContactOutcome, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        saved = outcome_record(
            contact=obj.contact, result=obj.result, at=obj.at, source=ContactOutcome.Source.ADMIN,
            amount=obj.amount, currency=obj.currency, product=obj.product,
        )  # fmt: skip
        obj.pk = saved.pk
        if saved.at != obj.at:
            messages.warning(
                request,
                _("A later outcome was already known for this contact: it was kept."),
            )


@admin.register(ImportPlaceholder)
class ImportPlaceholderAdmin(admin.ModelAdmin):
    """Cell values every import reads as blank ("Select", "N/A"), whatever their case."""

    list_display = ["value"]
    search_fields = ["value"]


@admin.register(SavedMapping)
class SavedMappingAdmin(admin.ModelAdmin):
    """Mappings are saved from the import's mapping step; here they are listed, renamed or
    deleted."""

    list_display = ["name", "mapped_columns", "created_by", "updated_at"]
    search_fields = ["name"]
    fields = ["name", "mapped_columns", "created_by", "created_at", "updated_at"]
    readonly_fields = ["mapped_columns", "created_by", "created_at", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description=_("columns"))
    def mapped_columns(self, obj: SavedMapping) -> str:
        return ", ".join(f"{pair.get('header')} → {pair.get('field')}" for pair in obj.columns)


import contacts.intake.webhook_admin  # noqa: E402, F401 (registers the inbound webhook admin)

# Sales teams, their reps and the assignment rules.
import contacts.team_admin  # noqa: E402, F401

# Outbound webhooks: their own module, registered with the rest of the app's admin.
import contacts.webhooks.admin  # noqa: E402, F401
