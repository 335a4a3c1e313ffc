from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import translation

from contacts import intake

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


class BeaconShortcutMiddleware:
    """Hand ``POST /t/`` straight to the beacon view, before the rest of the stack.

    The beacon is the busiest endpoint by far and needs none of what follows: no session, user,
    language, CSRF (it is exempt), messages or htmx. Skipping them roughly halves its cost. It
    goes first in MIDDLEWARE; the host is still checked against ALLOWED_HOSTS.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.path = reverse("beacon")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == self.path and request.method == "POST":
            request.get_host()
            return intake.beacon(request)
        return self.get_response(request)
