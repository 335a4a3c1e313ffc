"""The sales queue: waiting SQLs, claiming, a rep's leads and their outcomes."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from contacts import access
from contacts.access import Act
from contacts.models import LOST_REASONS, Contact, DealEstimate, StageChange
from contacts.notification_text import render as render_notification
from contacts.roles import SALES, is_sales_manager, role_required
from contacts.sales.activity_card import activities_context
from contacts.sales.claims import (
    ClaimRefused,
    contact_claim,
    contact_claim_next,
    notifications_take,
)
from contacts.sales.deals import (
    AmountField,
    DealEstimateForm,
    EstimateRefused,
    currency_field,
    deal_estimate_set,
)
from contacts.sales.follow_up_views import follow_up_card_context
from contacts.sales.outcomes import OutcomeRefused, contact_outcome_record
from contacts.views import partial_or_page, visible_contact_or_404

QUEUE_PAGE_SIZE = 50
RECENT_EVENTS = 10


@role_required(SALES)
def queue(request: HttpRequest) -> HttpResponse:
    """SQLs waiting for a rep; the list polls itself so claimed rows vanish for everyone."""
    now = timezone.now()
    waiting = Contact.objects.sql_queue().select_related("source")
    page = Paginator(waiting, QUEUE_PAGE_SIZE).get_page(request.GET.get("page"))
    overdue_before = now - timedelta(hours=settings.SLA_HOURS)
    rows = [
        {"contact": contact, "overdue": contact.stage_entered_at < overdue_before}
        for contact in page
    ]
    template = partial_or_page(request, "contacts/queue.html", "queue-list")
    response = render(
        request,
        template,
        {
            "page": page,
            "rows": rows,
            "sla_hours": settings.SLA_HOURS,
            "mine": Contact.objects.for_owner(request.user).count(),
            # Only the whole page tells (the list's polling renders the list alone).
            "taken": taken_leads(request) if "#" not in template else [],
        },
    )
    patch_vary_headers(response, ["HX-Request"])
    return response


@require_POST
@role_required(SALES)
def queue_claim(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        contact_claim(contact_id=pk, user=request.user)
    except ClaimRefused as refusal:
        messages.error(request, str(refusal))
        return redirect("queue")
    messages.success(request, _("This lead is yours now."))
    return redirect("queue-lead", pk=pk)


@require_POST
@role_required(SALES)
def queue_claim_next(request: HttpRequest) -> HttpResponse:
    claimed = contact_claim_next(user=request.user)
    if claimed is None:
        messages.info(request, _("No SQL is waiting."))
        return redirect("queue")
    messages.success(request, _("This lead is yours now."))
    return redirect("queue-lead", pk=claimed)


@role_required(SALES)
def my_leads(request: HttpRequest) -> HttpResponse:
    leads = Contact.objects.for_owner(request.user).select_related("source")
    context = {"leads": leads, "taken": taken_leads(request)}
    return render(request, "contacts/queue_mine.html", context)


def taken_leads(request: HttpRequest) -> list[dict]:
    """The leads taken from this rep since they last saw the sales pages, told once (and so
    marked read: the bell counts them no more)."""
    return [
        {"text": rendered.text, "at": rendered.at}
        for rendered in (
            render_notification(note, reader=request.user)
            for note in notifications_take(user=request.user)
        )
    ]


class OutcomeForm(forms.Form):
    """Each outcome with the fields that apply to it: won → amount (required), currency and
    product; lost → why, and words only for "Other"; recycled → words. What is sent for
    another outcome than the one chosen is ignored (a page without CSS shows every field)."""

    outcome = forms.ChoiceField(
        label=gettext_lazy("Outcome"),
        widget=forms.RadioSelect,
        choices=[
            (StageChange.Outcome.WON, gettext_lazy("Won: becomes a client")),
            (StageChange.Outcome.LOST, gettext_lazy("Lost")),
            (StageChange.Outcome.RECYCLED, gettext_lazy("Back to marketing (recycle)")),
        ],
    )
    amount = AmountField(
        label=gettext_lazy("Amount won"),
        required=False,
        help_text=gettext_lazy("What the deal brings, tax excluded: 0 if nothing."),
    )
    currency = currency_field(required=False)
    product = forms.CharField(
        label=gettext_lazy("Product or plan (optional)"), required=False, max_length=200
    )
    lost_reason = forms.ChoiceField(
        label=gettext_lazy("Why lost"),
        required=False,
        choices=[("", "---------"), *LOST_REASONS],
    )
    reason = forms.CharField(
        label=gettext_lazy("Reason or note"),
        required=False,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def clean(self) -> dict:
        data = super().clean() or {}
        outcome, reason = data.get("outcome"), (data.get("reason") or "").strip()
        if outcome == StageChange.Outcome.WON:
            if data.get("amount") is None and "amount" not in self.errors:
                self.add_error("amount", _("Enter the amount won (0 if nothing)."))
        else:
            data["amount"], data["product"] = None, ""
            for name in ("amount", "currency"):  # a stray amount with lost says nothing
                self.errors.pop(name, None)
        if outcome == StageChange.Outcome.LOST:
            if not data.get("lost_reason"):
                self.add_error("lost_reason", _("Say why the lead was lost."))
            elif data["lost_reason"] == "other" and not reason:
                self.add_error("reason", _("Describe the reason when you choose “Other”."))
        if outcome == StageChange.Outcome.RECYCLED and not reason:
            self.add_error("reason", _("Say why the lead goes back to marketing."))
        return data


@role_required(SALES)
def queue_lead(request: HttpRequest, pk: int) -> HttpResponse:
    """One claimed lead with what a rep needs at hand (score explanation, recent timeline),
    and the outcome form."""
    contact = visible_contact_or_404(
        request,
        pk,
        Contact.objects.select_related("source", "owner"),
        # Seeing a lead (a manager, their team's) is not working it: outcomes are the owner's.
        act=Act.RECORD_OUTCOME if request.method == "POST" else Act.VIEW,
    )
    form = OutcomeForm(
        request.POST if request.method == "POST" else None,
        initial={"currency": settings.DEFAULT_CURRENCY},
    )
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                contact_outcome_record(contact=contact, user=request.user, **form.cleaned_data)
            except OutcomeRefused as refusal:
                messages.error(request, str(refusal))
                return redirect("queue-mine")
            messages.success(
                request,
                _("Outcome recorded for %(contact)s.") % {"contact": contact.display_name},
            )
            return redirect("queue-mine")
        status = 400
    return _lead_page(request, contact, form=form, status=status)


def _lead_page(
    request: HttpRequest,
    contact: Contact,
    *,
    form: OutcomeForm | None = None,
    estimate_form: DealEstimateForm | None = None,
    status: int = 200,
) -> HttpResponse:
    estimate = DealEstimate.objects.filter(contact=contact).first()
    if estimate_form is None:
        initial = {"expected_currency": settings.DEFAULT_CURRENCY}
        if estimate is not None:
            initial = {"expected_amount": estimate.amount, "expected_currency": estimate.currency}
        estimate_form = DealEstimateForm(initial=initial)
    context = {
        **activities_context(request, contact),
        "contact": contact,
        "form": form or OutcomeForm(initial={"currency": settings.DEFAULT_CURRENCY}),
        "estimate": estimate,
        "estimate_form": estimate_form,
        "yours": contact.owner_id == request.user.pk and contact.stage == Contact.Stage.SQL,
        # A manager opening a rep's lead of their team: the team page reassigns or releases it.
        "team_lead": contact.stage == Contact.Stage.SQL
        and contact.owner_id not in (None, request.user.pk)
        and is_sales_manager(request.user)
        and access.may(request.user, Act.REASSIGN, contact),
        "events": contact.events.select_related("activity__user")[:RECENT_EVENTS],
        **follow_up_card_context(request, contact),
    }
    return render(request, "contacts/queue_lead.html", context, status=status)


@require_POST
@role_required(SALES)
def queue_lead_estimate(request: HttpRequest, pk: int) -> HttpResponse:
    """The rep's expected amount for their open deal (empty: no estimate), for the pipeline."""
    contact = visible_contact_or_404(
        request, pk, Contact.objects.select_related("source", "owner"), act=Act.RECORD_OUTCOME
    )
    form = DealEstimateForm(request.POST)
    if not form.is_valid():
        return _lead_page(request, contact, estimate_form=form, status=400)
    try:
        deal_estimate_set(
            contact=contact, user=request.user, amount=form.cleaned_data["expected_amount"],
            currency=form.cleaned_data["expected_currency"],
        )  # fmt: skip
    except EstimateRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, _("Expected amount saved."))
    return redirect("queue-lead", pk=pk)
