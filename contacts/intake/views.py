"""Public intake: what websites post to, without a login (forms now; the tracking beacon next).

Nothing a visitor sends can cause a 500: input goes through a Django form first, and the
answer fits the sender (a redirect for a plain HTML form, JSON for a script).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from contacts import ratelimit
from contacts.intake.capture import FORM_FIELDS, form_submit
from contacts.intake.page_views import page_view_capture
from contacts.models import Form
from contacts.privacy import ContactSuppressed
from contacts.services import UTM_FIELDS

logger = logging.getLogger(__name__)
VISITOR_ID = r"^[A-Za-z0-9_-]{8,64}$"


class Submission(forms.Form):
    # Labels name the fields on the error page a visitor may see.
    email = forms.EmailField(label=_("Email"), max_length=254)
    first_name = forms.CharField(label=_("First name"), required=False, max_length=100)
    last_name = forms.CharField(label=_("Last name"), required=False, max_length=100)
    company = forms.CharField(label=_("Company"), required=False, max_length=200)
    phone = forms.CharField(label=_("Phone"), required=False, max_length=40)
    consent = forms.BooleanField(label=_("Consent"), required=False)
    visitor_id = forms.RegexField(label=_("Visitor id"), regex=VISITOR_ID, required=False)
    page = forms.URLField(
        label=_("Page address"), required=False, max_length=1000, assume_scheme="https"
    )
    utm_source = forms.CharField(label=_("UTM source"), required=False, max_length=200)
    utm_medium = forms.CharField(label=_("UTM medium"), required=False, max_length=200)
    utm_campaign = forms.CharField(label=_("UTM campaign"), required=False, max_length=200)
    utm_term = forms.CharField(label=_("UTM term"), required=False, max_length=200)
    utm_content = forms.CharField(label=_("UTM content"), required=False, max_length=200)
    # Invisible to people (see the embed snippet); bots fill every field they find.
    website = forms.CharField(label=_("Website"), required=False)


def _cors(response: HttpResponse, origin: str | None) -> HttpResponse:
    if origin:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = "Content-Type, Accept"
        response["Vary"] = "Origin"
    return response


def client_ip(request: HttpRequest) -> str | None:
    """The sender's address. Behind TRUSTED_PROXY_COUNT proxies it is the one the outermost
    proxy saw: that many entries from the right of X-Forwarded-For. Entries further left were
    written by the sender and prove nothing (anyone can send the header)."""
    count = settings.TRUSTED_PROXY_COUNT
    if count:
        forwarded = [
            part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")
        ]  # fmt: skip
        if len(forwarded) >= count:
            try:
                return str(ipaddress.ip_address(forwarded[-count]))
            except ValueError:
                logger.warning("Unreadable X-Forwarded-For: %r", forwarded[-count][:100])
    return request.META.get("REMOTE_ADDR") or None


def _too_many(form: Form, ip: str) -> bool:
    return bool(ratelimit.seconds_to_wait(f"form:{form.key}:{ip}", settings.FORM_RATE_PER_MINUTE))


@csrf_exempt  # posted from other sites by design; the honeypot and rate limit guard it
@require_http_methods(["POST", "OPTIONS"])
def form_post(request: HttpRequest, key: str) -> HttpResponse:
    form = get_object_or_404(Form, key=key, active=True)
    origin = request.headers.get("Origin")
    if origin and form.origins() and origin.rstrip("/") not in form.origins():
        return JsonResponse({"detail": "This site may not post to this form."}, status=403)
    if request.method == "OPTIONS":
        return _cors(HttpResponse(status=204), origin)
    wants_json = "application/json" in request.headers.get("Accept", "")
    ip = client_ip(request)
    if _too_many(form, ip or "?"):
        busy = {"__all__": [str(_("Too many submissions; try again in a minute."))]}
        return _answer(request, form, origin, wants_json, status=429, errors=busy)
    submission = Submission(request.POST)
    if not submission.is_valid():
        return _answer(request, form, origin, wants_json, status=400, errors=submission.errors)
    data = submission.cleaned_data
    if data["website"]:  # a bot: thank it and keep nothing
        return _answer(request, form, origin, wants_json, status=200)
    try:
        _submit(request, form, data, ip)
    except ContactSuppressed as refusal:
        errors = {"email": [str(refusal)]}
        return _answer(request, form, origin, wants_json, status=400, errors=errors)
    return _answer(request, form, origin, wants_json, status=200)


def _submit(request: HttpRequest, form: Form, data: dict, ip: str | None) -> None:
    form_submit(
        form=form,
        email=data["email"],
        fields={name: data[name] for name in FORM_FIELDS},
        consent=data["consent"],
        ip=ip,
        page=data["page"] or request.headers.get("Referer", ""),
        visitor_id=data["visitor_id"],
        utm={k: v for k, v in data.items() if k.startswith("utm_")},
    )


def _answer(
    request: HttpRequest,
    form: Form,
    origin: str | None,
    wants_json: bool,
    *,
    status: int,
    errors: dict | None = None,
) -> HttpResponse:
    if wants_json:
        body = {"ok": status == 200, **({"errors": errors} if errors else {})}
        return _cors(JsonResponse(body, status=status), origin)
    if status == 200 and form.thank_you_url:
        return redirect(form.thank_you_url, permanent=False)
    template = "contacts/form_thanks.html" if status == 200 else "contacts/form_errors.html"
    fields = Submission.base_fields
    context = {
        "form": form,
        # (label, messages); "" for errors about the whole submission.
        "errors": [
            (fields[name].label if name in fields else "", messages)
            for name, messages in (errors or {}).items()
        ],
        "back": back_url(form, request.headers.get("Referer", ""), request.POST.get("page", "")),
    }
    return _cors(render(request, template, context, status=status), origin)


def back_url(form: Form, *candidates: str) -> str:
    """The first address that may be a "Back" link: an http(s) URL on one of the form's
    allowed origins (any site when it has none). The Referer header and the posted "page" are
    the sender's words, so a ``javascript:`` URL or another site is never linked."""
    allowed = {origin.lower() for origin in form.origins()}
    for url in candidates:
        try:
            parts = urlsplit(url.strip())
        except ValueError:
            continue
        if parts.scheme not in ("http", "https") or not parts.hostname:
            continue
        if allowed and f"{parts.scheme}://{parts.netloc}".lower() not in allowed:
            continue
        return parts.geturl()
    return ""


def embed_snippet(form: Form, base_url: str) -> str:
    """The HTML a marketer pastes into a page: a plain form (works without JavaScript). The
    consent wording and labels are text, escaped like everything else put into it."""
    fields = []
    if form.ask_name:
        fields += [("first_name", _("First name")), ("last_name", _("Last name"))]
    if form.ask_company:
        fields.append(("company", _("Company")))
    if form.ask_phone:
        fields.append(("phone", _("Phone")))
    action = f"{base_url}/f/{form.key}/"
    lines = [
        format_html('<form method="post" action="{}" class="leadfunnel-form">', action),
        format_html('  <label>{} <input type="email" name="email" required></label>', _("Email")),
        *(format_html('  <label>{} <input name="{}"></label>', label, name)
          for name, label in fields),
        format_html(
            '  <label><input type="checkbox" name="consent" value="on"> {}</label>',
            form.consent_text,
        ),
        '  <input type="hidden" name="visitor_id" value="">',
        '  <div style="position:absolute;left:-5000px" aria-hidden="true">'
        '<input name="website" tabindex="-1" autocomplete="off"></div>',
        format_html('  <button type="submit">{}</button>', _("Send")),
        "</form>",
        format_html('<script src="{}/t.js" async></script>', base_url),
    ]  # fmt: skip
    return "\n".join(str(line) for line in lines)


class Beacon(forms.Form):
    visitor_id = forms.RegexField(regex=VISITOR_ID)
    url = forms.URLField(max_length=1000, assume_scheme="https")
    title = forms.CharField(required=False, max_length=300)
    referrer = forms.CharField(required=False, max_length=1000)


MAX_BEACON_BYTES = 8192


@csrf_exempt  # posted by the snippet from the company's site
@require_http_methods(["POST", "OPTIONS"])
def beacon(request: HttpRequest) -> HttpResponse:
    """A page view from the tracking snippet. Answers 204, or 400/403/413/429 with a reason."""
    origin = request.headers.get("Origin")
    allowed = {o.rstrip("/") for o in settings.TRACKING_ORIGINS}
    if origin and allowed and origin.rstrip("/") not in allowed:
        return JsonResponse({"detail": "This site may not send page views here."}, status=403)
    if request.method == "OPTIONS":
        return _cors(HttpResponse(status=204), origin)
    # Per address, before any work: a script inventing visitor ids is cut off here. Nobody
    # sees a beacon's answer; the snippet ignores it.
    wait = ratelimit.seconds_to_wait(
        f"beacon:{client_ip(request)}", settings.BEACON_RATE_PER_MINUTE
    )
    if wait:
        response = _cors(JsonResponse({"detail": "Too many page views."}, status=429), origin)
        response["Retry-After"] = str(wait)
        return response
    if len(request.body) > MAX_BEACON_BYTES:
        return _cors(JsonResponse({"detail": "Too large."}, status=413), origin)
    try:
        data = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        return _cors(JsonResponse({"detail": "Send a JSON object."}, status=400), origin)
    cleaned, errors = _clean(Beacon, data)
    if errors:
        return _cors(JsonResponse({"errors": errors}, status=400), origin)
    raw_utm = data.get("utm") if isinstance(data.get("utm"), dict) else {}
    utm = {k: str(raw_utm[k])[:200] for k in UTM_FIELDS if isinstance(raw_utm.get(k), str)}
    page_view_capture(
        visitor_id=cleaned["visitor_id"],
        url=cleaned["url"],
        title=cleaned["title"],
        referrer=cleaned["referrer"],
        utm=utm,
    )
    return _cors(HttpResponse(status=204), origin)


def _clean(form: type[forms.Form], data: dict) -> tuple[dict, dict[str, list[str]]]:
    """``form``'s validation (same fields, same messages) without building a form: a form deep-
    copies its fields on every request, a third of what a beacon costs."""
    cleaned, errors = {}, {}
    for name, field in form.base_fields.items():
        try:
            cleaned[name] = field.clean(data.get(name))
        except ValidationError as error:
            errors[name] = error.messages
    return cleaned, errors


def tracker_js(request: HttpRequest) -> HttpResponse:
    endpoint = request.build_absolute_uri(reverse("beacon"))
    response = render(
        request, "contacts/tracker.js", {"endpoint": endpoint},
        content_type="application/javascript; charset=utf-8",
    )  # fmt: skip
    response["Cache-Control"] = "public, max-age=3600"
    response["Access-Control-Allow-Origin"] = "*"
    return response
