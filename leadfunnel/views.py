from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from contacts.models import Contact
from contacts.views import funnel_context
from leadfunnel.middleware import SESSION_LANGUAGE_KEY
from leadfunnel.models import Profile
from leadfunnel.roles import is_marketer, is_sales


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The marketer dashboard; a sales rep lands on the queue instead."""
    if not is_marketer(request.user):
        if is_sales(request.user):
            return redirect("queue")
        return render(request, "no_role.html", status=403)
    return render(request, "dashboard.html", funnel_context())


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form):  # type: ignore[no-untyped-def]
        response = super().form_valid(form)
        language = Profile.objects.filter(user=form.get_user()).values_list("language", flat=True)
        if language.first():
            self.request.session[SESSION_LANGUAGE_KEY] = language.first()
        return response


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
