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

from contacts.models import LOST_REASONS, Contact, ContactAudit, StageChange
from contacts.roles import SALES, role_required
from contacts.sales.activity_card import activities_context
from contacts.sales.claims import (
    ClaimRefused,
    contact_claim,
    contact_claim_next,
    notifications_take,
)
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
    """The leads taken from this rep since they last saw the sales pages, told once."""
    return [
        {"text": _taken_text(note.audit), "at": note.audit.at}
        for note in notifications_take(user=request.user)
    ]


def _taken_text(audit: ContactAudit) -> str:
    values = {
        "contact": audit.contact.display_name,
        "actor": _name(audit.actor) or _("an administrator"),
        "owner": _name(audit.owner),
        "hours": settings.CLAIM_RELEASE_HOURS,
    }
    if audit.action == ContactAudit.Action.EXPIRED:
        return (
            _("%(contact)s went back to the queue: no outcome within %(hours)s hours of the claim.")
            % values
        )
    if audit.action == ContactAudit.Action.REASSIGNED:
        return _("%(contact)s was given to %(owner)s by %(actor)s.") % values
    return _("%(contact)s was released to the queue by %(actor)s.") % values


def _name(user: object) -> str:
    if user is None:
        return ""
    return user.get_full_name() or user.get_username()  # type: ignore[attr-defined]


class OutcomeForm(forms.Form):
    outcome = forms.ChoiceField(
        label=gettext_lazy("Outcome"),
        widget=forms.RadioSelect,
        choices=[
            (StageChange.Outcome.WON, gettext_lazy("Won: becomes a client")),
            (StageChange.Outcome.LOST, gettext_lazy("Lost")),
            (StageChange.Outcome.RECYCLED, gettext_lazy("Back to marketing (recycle)")),
        ],
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
    contact = visible_contact_or_404(request, pk, Contact.objects.select_related("source", "owner"))
    form = OutcomeForm(request.POST if request.method == "POST" else None)
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
    context = {
        **activities_context(request, contact),
        "contact": contact,
        "form": form,
        "yours": contact.owner_id == request.user.pk and contact.stage == Contact.Stage.SQL,
        "events": contact.events.select_related("activity__user")[:RECENT_EVENTS],
    }
    return render(request, "contacts/queue_lead.html", context, status=status)
