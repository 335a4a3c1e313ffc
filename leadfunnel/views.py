from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.staticfiles import finders
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_POST

from contacts.models import Contact
from contacts.reports import dashboard
from contacts.roles import MARKETING, is_marketer, is_sales, role_required
from leadfunnel import mailbox
from leadfunnel.middleware import SESSION_LANGUAGE_KEY
from leadfunnel.models import Profile


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The marketer dashboard; a sales rep lands on the queue instead."""
    if not is_marketer(request.user):
        if is_sales(request.user):
            return redirect("queue")
        return render(request, "no_role.html", status=403)
    period, notices = dashboard.period_from(request.GET, timezone.localdate())
    query = period.query()
    panels = [
        ("funnel", _("Contacts per stage"), "funnel-panel"),
        ("conversion", _("Conversion between stages"), "dashboard-conversion"),
        ("velocity", _("Time in each stage"), "dashboard-velocity"),
        ("sources", _("Sources and cost"), "dashboard-sources"),
        ("sla", _("Sales follow-up"), "dashboard-sla"),
        ("touchpoints", _("Touchpoints"), "dashboard-touchpoints"),
        ("scores", _("Score distribution"), "score-distribution-panel"),
    ]
    presets = dashboard.period_presets(period, timezone.localdate())
    context = {
        "period": period,
        "notices": notices,
        "presets": presets,
        "panels": [
            {"name": name, "title": title, "url": f"{reverse(url)}?{query}"}
            for name, title, url in panels
        ],
    }
    return render(request, "dashboard.html", context)


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form):  # type: ignore[no-untyped-def]
        response = super().form_valid(form)
        language = Profile.objects.filter(user=form.get_user()).values_list("language", flat=True)
        if language.first():
            self.request.session[SESSION_LANGUAGE_KEY] = language.first()
        return response


class LogoutView(auth_views.LogoutView):
    """POST logs out (Django's view). GET, e.g. /logout/ typed in the address bar, shows a
    button that posts: a link or an image on another site cannot log anyone out."""

    http_method_names = ["get", "post", "options"]

    def get(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect(resolve_url(settings.LOGIN_URL))
        return render(request, "registration/logout_confirm.html")


@cache_control(max_age=86400, public=True)
def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico, which browsers ask for on their own (pages link static/favicon.svg)."""
    path = finders.find("favicon.ico")
    if not path:
        raise Http404
    return FileResponse(open(path, "rb"), content_type="image/x-icon")


@require_POST
def language_set(request: HttpRequest) -> HttpResponse:
    """Remember the chosen language for this user (profile), this session and this browser."""
    language = request.POST.get("language", "")
    next_url = request.POST.get("next") or "/"
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, request.is_secure()):
        next_url = "/"
    response = HttpResponseRedirect(next_url)
    if language not in dict(settings.LANGUAGES):
        return response
    if request.user.is_authenticated:
        Profile.objects.update_or_create(user=request.user, defaults={"language": language})
        request.session[SESSION_LANGUAGE_KEY] = language
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        language,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        samesite="Lax",
        secure=settings.SESSION_COOKIE_SECURE,
    )
    return response


def healthz(request: HttpRequest) -> HttpResponse:
    Contact.objects.exists()
    return HttpResponse("ok", content_type="text/plain")


@role_required(MARKETING)
def mail_list(request: HttpRequest) -> HttpResponse:
    """The emails written to the local mail folder (no EMAIL_URL, as in `make run`)."""
    if not mailbox.in_use():
        raise Http404
    emails, total = mailbox.latest()
    context = {"emails": emails, "total": total, "folder": mailbox.folder()}
    return render(request, "mail_list.html", context)


@role_required(MARKETING)
def mail_email(request: HttpRequest, name: str) -> HttpResponse:
    found = mailbox.read(name) if mailbox.in_use() else None
    if found is None:
        raise Http404
    return render(request, "mail_email.html", {"email": found, "folder": mailbox.folder()})


def login_locked_out(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """What django-axes answers a locked-out login (ours or the admin's): the login page with
    the reason and how long to wait, as a 429."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    message = ngettext(
        "Too many failed logins for this account or from your address. Try again in "
        "%(minutes)s minute, or ask an administrator to unlock it.",
        "Too many failed logins for this account or from your address. Try again in "
        "%(minutes)s minutes, or ask an administrator to unlock it.",
        minutes,
    ) % {"minutes": minutes}
    context = {"form": AuthenticationForm(request), "locked_out": message, "next": ""}
    return render(request, "registration/login.html", context, status=429)
