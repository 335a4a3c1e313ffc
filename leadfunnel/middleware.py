import re
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils import formats, timezone, translation
from django.utils.translation import gettext

from contacts.intake import views as intake
from contacts.intake import webhook_views
from contacts.roles import is_sales
from contacts.sales.time_zones import rep_time_zone

SESSION_LANGUAGE_KEY = "language"


class UserLanguageMiddleware:
    """Use the language the signed-in user chose (kept in the session at login and on change).

    LocaleMiddleware has already picked one from the cookie, Accept-Language or LANGUAGE_CODE;
    a user's own choice wins over those.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        language = request.session.get(SESSION_LANGUAGE_KEY)
        if language and request.user.is_authenticated:
            translation.activate(language)
            request.LANGUAGE_CODE = language
        return self.get_response(request)


class UserTimeZoneMiddleware:
    """Work in the signed-in sales user's time zone (``SalesRep.time_zone``, else TIME_ZONE):
    forms read the due times they type in it, and pages show times in it.

    One query for a sales user (``user.sales_rep``, then cached on the user object for the
    view); none for others (their roles are read once per request anyway), nor for a view that
    shows no time and says so (``shows_no_time``: the bell's polling)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()

    def process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any
    ) -> None:
        if not getattr(view, "shows_no_time", False) and is_sales(request.user):
            timezone.activate(rep_time_zone(request.user))


class ShortcutMiddleware:
    """Hand the machines' POSTs straight to their views, before the rest of the stack: the
    tracking beacon (``POST /t/``) and the inbound webhooks form tools post to
    (``POST /hooks/in/<key>/``).

    They need none of what follows: no session, user, language, CSRF (both views are exempt),
    messages, axes or htmx. Skipping them roughly halves the beacon's cost, and took a fifth of
    a webhook receipt's (bench ``webhooks``, figures in ``contacts/intake/webhook_views.py``).
    It goes first in MIDDLEWARE, after the body limit; the host is still checked against
    ALLOWED_HOSTS. Anything else (another method, a path without its slash) takes the usual way.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.beacon = reverse("beacon")
        # The URL pattern's <slug:key>, between the prefix and the slash reverse() gives.
        marker = "0KEY0"
        prefix, suffix = reverse("inbound-webhook", args=[marker]).split(marker)
        self.hook = re.compile(rf"{re.escape(prefix)}(?P<key>[-a-zA-Z0-9_]+){re.escape(suffix)}")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST":
            if request.path_info == self.beacon:
                request.get_host()
                return intake.beacon(request)
            hook = self.hook.fullmatch(request.path_info)
            if hook is not None:
                request.get_host()
                return webhook_views.inbound_webhook(request, key=hook["key"])
        return self.get_response(request)


class BodyTooLargeMiddleware:
    """A body larger than Django reads (DATA_UPLOAD_MAX_MEMORY_SIZE; files in a multipart body do
    not count) is answered 413 with the limit: JSON for the API, the beacon and scripts, a line
    of text for a plain form. Django itself would answer its HTML 400 page.

    The body is read and dropped first (up to DRAIN_BYTES, for DRAIN_SECONDS): a server that
    answers while the client is still sending, then closes, makes the client's send fail with a
    broken pipe before it can read the answer. Goes first in MIDDLEWARE.
    """

    DRAIN_BYTES = 64 * 1024 * 1024
    DRAIN_SECONDS = 10.0

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.json_paths = ("/api/", reverse("beacon"))

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and request.content_type != "multipart/form-data":
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > limit:
                request.get_host()  # a host not in ALLOWED_HOSTS is still a 400
                self._drain(request, length)
                return self.too_large(request, limit)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if isinstance(exception, RequestDataTooBig) and limit is not None:
            return self.too_large(request, limit)
        return None

    def _drain(self, request: HttpRequest, length: int) -> None:
        if length > self.DRAIN_BYTES:
            return
        deadline = time.monotonic() + self.DRAIN_SECONDS
        try:
            while request.read(65536) and time.monotonic() < deadline:
                pass
        except OSError:  # the client went away
            pass

    def too_large(self, request: HttpRequest, limit: int) -> HttpResponse:
        wants_json = request.path_info.startswith(self.json_paths) or (
            "application/json" in request.headers.get("Accept", "")
        )
        if wants_json:
            detail = f"The request body is larger than the {limit:,} bytes this server reads."
            return JsonResponse({"detail": detail, "max_bytes": limit}, status=413)
        language = translation.get_language_from_request(request)
        with translation.override(language):
            text = gettext(
                "This form sent more data than the server accepts (%(limit)s bytes at most)."
            ) % {"limit": formats.number_format(limit, force_grouping=True)}
        return HttpResponse(text, status=413, content_type="text/plain; charset=utf-8")
