from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import translation

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
