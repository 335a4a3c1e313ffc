"""Login throttling: django-axes' backend, for logins made from a web request."""

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.http import HttpRequest


class LoginThrottleBackend(AxesStandaloneBackend):
    """Refuses a locked-out username or address before the password is checked.

    ``authenticate()`` without a request (the test client's ``login()``, a shell) has no address
    to throttle: axes would raise, this backend lets the next one decide. Every login form of
    the site (ours, the admin's) passes its request."""

    def authenticate(self, request: HttpRequest | None, *args: Any, **kwargs: Any) -> None:
        if request is None:
            return None
        return super().authenticate(request, *args, **kwargs)
