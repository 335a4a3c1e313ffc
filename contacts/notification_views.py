"""The bell (unread count, polled with htmx), the notifications page, reading them, and the
digest setting."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from contacts.models import Notification, SalesRep
from contacts.notification_text import render as render_notification
from contacts.notification_text import with_related

PAGE_SIZE = 30


def unread_count(user: Any) -> int:
    """One COUNT on the partial index ``notification_unread``."""
    return Notification.objects.filter(user=user, read_at__isnull=True).count()


def bell_context(request: HttpRequest) -> dict[str, object]:
    """For base.html (a context processor calls it): the count is read only if the page
    draws the bell, once."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    cached: list[int] = []

    def count() -> int:
        if not cached:
            cached.append(unread_count(user))
        return cached[0]

    return {"unread_notifications": count, "bell_seconds": settings.NOTIFICATION_BELL_SECONDS}


@require_GET
def notifications_bell(request: HttpRequest) -> HttpResponse:
    """The bell alone, for its polling: no session write, no cookie (no CSRF token, no
    messages); 204 (htmx keeps what it shows) once the user is signed out."""
    if not request.user.is_authenticated:
        return HttpResponse(status=204)
    # Without the request: no context processors (their queries, the CSRF token's cookie).
    html = render_to_string(
        "contacts/notifications_bell.html",
        {
            "unread_notifications": unread_count(request.user),
            "bell_seconds": settings.NOTIFICATION_BELL_SECONDS,
        },
    )
    response = HttpResponse(html)
    add_never_cache_headers(response)
    return response


notifications_bell.shows_no_time = True  # type: ignore[attr-defined]  # no time zone to read


@login_required
def notifications_page(request: HttpRequest) -> HttpResponse:
    """The user's notifications, newest first, unread ones marked."""
    notes = with_related(Notification.objects.filter(user=request.user)).order_by(
        "-created_at", "-id"
    )
    page = Paginator(notes, PAGE_SIZE).get_page(request.GET.get("page"))
    items = [
        {"note": note, "rendered": render_notification(note, reader=request.user)} for note in page
    ]
    context = {"page": page, "items": items, "unread": unread_count(request.user)}
    return render(request, "contacts/notifications.html", context)


@require_POST
@login_required
def notification_open(request: HttpRequest, pk: int) -> HttpResponse:
    """Mark it read and go where it leads (the notifications page if nowhere)."""
    note = get_object_or_404(with_related(Notification.objects.filter(user=request.user)), pk=pk)
    if note.read_at is None:
        Notification.objects.filter(pk=note.pk, read_at=None).update(read_at=timezone.now())
    url = render_notification(note, reader=request.user).url
    return redirect(url or "notifications")


@require_POST
@login_required
def notifications_read_all(request: HttpRequest) -> HttpResponse:
    read = Notification.objects.filter(user=request.user, read_at__isnull=True).update(
        read_at=timezone.now()
    )
    if read:
        messages.success(request, _("All notifications are marked read."))
    back = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        return redirect(back)
    return redirect("notifications")


class DigestForm(forms.ModelForm):
    class Meta:
        model = SalesRep
        fields = ["email_digest"]
        widgets = {"email_digest": forms.RadioSelect}
        labels = {"email_digest": gettext_lazy("Email me my unread notifications")}


@login_required
def notification_settings(request: HttpRequest) -> HttpResponse:
    """How the user hears of things by email: no email, hourly or daily digest."""
    rep = SalesRep.objects.filter(pk=request.user.pk).first() or SalesRep(user=request.user)
    form = DigestForm(request.POST or None, instance=rep)
    if request.method == "POST" and form.is_valid():
        rep = form.save(commit=False)
        rep.digest_due_at = None  # the next sweep schedules it anew at the chosen pace
        rep.save()
        messages.success(request, _("Your notification settings are saved."))
        return redirect("notification-settings")
    return render(
        request,
        "contacts/notification_settings.html",
        {"form": form, "has_email": bool(request.user.email)},
        status=400 if form.errors else 200,
    )
