"""A rep's day: their follow-ups (overdue, today, the next 7 days, in their time zone) and the
leads left without a next step; setting, doing and moving follow-ups (htmx, or plain POSTs)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from contacts.models import Contact, FollowUp
from contacts.roles import SALES, role_required
from contacts.sales.follow_ups import (
    FollowUpRefused,
    follow_up_complete,
    follow_up_create,
    follow_up_reschedule,
    no_next_step,
)
from contacts.sales.time_zones import day_bounds, rep_time_zone
from contacts.views import partial_or_page, visible_contact_or_404

UPCOMING_DAYS = 7
# A rep with more open follow-ups in the window than this sees the first ones (oldest first).
MY_DAY_LIMIT = 300
NO_NEXT_STEP_LIMIT = 100
DUE_FORMAT = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends


class DueField(forms.DateTimeField):
    """A date and time typed in the rep's zone (the middleware activates it)."""

    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DUE_FORMAT)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("label", gettext_lazy("Due"))
        kwargs.setdefault("input_formats", [DUE_FORMAT, "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"])
        super().__init__(**kwargs)

    def clean(self, value: Any) -> Any:
        due = super().clean(value)
        if due is not None and due < timezone.now() - timedelta(minutes=1):
            raise forms.ValidationError(
                _("Choose a time to come: this one has passed."), code="past"
            )
        return due


class FollowUpForm(forms.Form):
    title = forms.CharField(
        label=gettext_lazy("Next step"),
        max_length=200,
        widget=forms.TextInput(attrs={"placeholder": gettext_lazy("Call back about the quote")}),
    )
    due_at = DueField()
    note = forms.CharField(
        label=gettext_lazy("Note"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    contact = forms.IntegerField(required=False, widget=forms.HiddenInput)


class RescheduleForm(forms.Form):
    due_at = DueField(label=gettext_lazy("New due time"))


def my_day_context(request: HttpRequest) -> dict[str, Any]:
    """What My day shows: a fixed number of queries whatever the number of items."""
    user, now = request.user, timezone.now()
    start, end = day_bounds(now, rep_time_zone(user))
    horizon = end + timedelta(days=UPCOMING_DAYS)
    items = list(
        FollowUp.objects.open()
        .for_owner(user)
        .filter(due_at__lt=horizon)
        .select_related("contact")
        .order_by("due_at", "id")[:MY_DAY_LIMIT]
    )
    flag_before = now - timedelta(hours=settings.FOLLOW_UP_FLAG_HOURS)
    leads = list(
        no_next_step(Contact.objects.for_owner(user)).select_related("source")[:NO_NEXT_STEP_LIMIT]
    )
    return {
        "overdue": [item for item in items if item.due_at < now],
        "today": [item for item in items if now <= item.due_at < end],
        "upcoming": [item for item in items if item.due_at >= end],
        "no_next_step": [
            {
                "contact": lead,
                "flagged": lead.claimed_at is not None and lead.claimed_at < flag_before,
            }
            for lead in leads
        ],
        "flag_hours": settings.FOLLOW_UP_FLAG_HOURS,
        "upcoming_days": UPCOMING_DAYS,
        "time_zone": rep_time_zone(user).key,
    }


@role_required(SALES)
def my_day(request: HttpRequest) -> HttpResponse:
    context = my_day_context(request)
    context["form"] = FollowUpForm(initial={"due_at": _next_hour(request)})
    response = render(
        request, partial_or_page(request, "contacts/my_day.html", "my-day-lists"), context
    )
    patch_vary_headers(response, ["HX-Request"])
    return response


@require_POST
@role_required(SALES)
def follow_up_add(request: HttpRequest) -> HttpResponse:
    """A follow-up alone (from My day) or on a lead (its page's Next step card)."""
    form = FollowUpForm(request.POST)
    contact = None
    if form.is_valid():
        if form.cleaned_data["contact"]:
            contact = visible_contact_or_404(request, form.cleaned_data["contact"])
        follow_up_create(
            owner=request.user,
            contact=contact,
            title=form.cleaned_data["title"],
            due_at=form.cleaned_data["due_at"],
            note=form.cleaned_data["note"],
        )
        messages.success(request, _("Follow-up set."))
        return redirect(_back(request, contact))
    context = {"form": form, "back": _back(request, None)}
    return render(request, "contacts/follow_up_form.html", context, status=400)


@require_POST
@role_required(SALES)
def follow_up_done(request: HttpRequest, pk: int) -> HttpResponse:
    follow_up = get_object_or_404(FollowUp, pk=pk, owner=request.user)
    try:
        follow_up_complete(follow_up=follow_up, actor=request.user)
    except FollowUpRefused as refusal:
        messages.info(request, str(refusal))
    return _after_change(request, follow_up)


@require_http_methods(["GET", "POST"])
@role_required(SALES)
def follow_up_move(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: the form (a page of its own: My day stays light); POST: move the follow-up."""
    follow_up = get_object_or_404(FollowUp, pk=pk, owner=request.user, done_at__isnull=True)
    if request.method == "GET":
        form = RescheduleForm(initial={"due_at": _next_hour(request, days=1)})
        context = {"form": form, "follow_up": follow_up, "back": _back(request, None)}
        return render(request, "contacts/follow_up_form.html", context)
    form = RescheduleForm(request.POST)
    if not form.is_valid():
        context = {"form": form, "follow_up": follow_up, "back": _back(request, None)}
        return render(request, "contacts/follow_up_form.html", context, status=400)
    try:
        follow_up_reschedule(
            follow_up=follow_up, due_at=form.cleaned_data["due_at"], actor=request.user
        )
    except FollowUpRefused as refusal:
        messages.info(request, str(refusal))
    return _after_change(request, follow_up)


def follow_up_card_context(request: HttpRequest, contact: Contact) -> dict[str, Any]:
    """The lead page's Next step card: this rep's open follow-ups on the lead, and the form."""
    initial = {"contact": contact.pk, "due_at": _next_hour(request)}
    return {
        "follow_ups": contact.follow_ups.open().filter(owner=request.user),
        "follow_up_form": FollowUpForm(initial=initial),
    }


def _after_change(request: HttpRequest, follow_up: FollowUp) -> HttpResponse:
    if getattr(request, "htmx", None):
        # The lists again (an item moves between them, or leaves; a lead may lose its step).
        return render(request, "contacts/my_day.html#my-day-lists", my_day_context(request))
    return redirect(_back(request, follow_up.contact))


def _back(request: HttpRequest, contact: Contact | None) -> str:
    url = request.POST.get("next", "") or request.GET.get("next", "")
    if url and url_has_allowed_host_and_scheme(url, {request.get_host()}, request.is_secure()):
        return url
    if contact is not None:
        return reverse("queue-lead", args=[contact.pk])
    return reverse("my-day")


def _next_hour(request: HttpRequest, days: int = 0) -> Any:
    """The next full hour in the rep's zone (``days`` later): a due time to start from."""
    local = timezone.now().astimezone(rep_time_zone(request.user))
    return (local + timedelta(days=days, hours=1)).replace(minute=0, second=0, microsecond=0)
