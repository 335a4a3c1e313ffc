"""ESP tracking webhooks: ``POST /esp/<esp>/tracking/`` (anymail's paths: brevo, amazon_ses,
mailgun, postmark, sendgrid..., and ``/esp/mandrill/``), the URL pasted in the ESP's console.

Each is anymail's own view, with its signature checks: HTTP basic auth with
``ANYMAIL_WEBHOOK_SECRET`` for every ESP, plus the ESP's own where it has one (Mailgun's HMAC
with ``ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY``...). What it parses is kept in one commit and
recorded by a worker with every other report waiting (``nurturing.esp.events_receive``):
anymail would send its ``tracking`` signal once per event, and recording costs about the same
for one report as for a thousand.

Answers: 200 once kept (or nothing to keep: a delivery, an open); 403 for a missing or forged
signature; 400 for a body that is not the ESP's; 404 while ``ANYMAIL_WEBHOOK_SECRET`` is not
set (an open webhook would let anyone suppress any address) or the ESP's own secret is missing;
503 when keeping failed on our side (ESPs send again). Never a 500 for what a sender sends.
"""

from __future__ import annotations

import logging
from typing import Any

from anymail import urls as anymail_urls
from anymail.exceptions import AnymailWebhookValidationFailure
from anymail.utils import get_anymail_setting
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt

from nurturing import esp

logger = logging.getLogger(__name__)


class _Malformed(Exception):
    """The body is not what the ESP sends."""


class _NotRecorded(Exception):
    """The events were read but could not be kept (a fault of ours)."""


def _tracking_view(view_class: type) -> Any:
    class Recording(view_class):  # type: ignore[misc, valid-type]
        def parse_events(self, request: HttpRequest) -> list[Any]:
            """Called by anymail's ``post`` once the request is validated: keeps the events'
            reports and leaves none for the per-event signal."""
            try:
                events = super().parse_events(request)
            except Exception as error:
                raise _Malformed(f"{type(error).__name__}: {error}") from error
            try:
                request.esp_received = esp.events_receive(  # type: ignore[attr-defined]
                    events, esp_name=self.esp_name
                )
            except Exception as error:
                raise _NotRecorded from error
            return []

    Recording.__name__ = Recording.__qualname__ = view_class.__name__
    view = Recording.as_view()

    @csrf_exempt  # posted by the ESP, authenticated by its signature
    def tracking_webhook(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not get_anymail_setting("webhook_secret", default=None):
            return _answer(404, _("ESP webhooks are off: set ANYMAIL_WEBHOOK_SECRET."))
        try:
            response = view(request, *args, **kwargs)
        except AnymailWebhookValidationFailure as error:
            logger.warning("ESP webhook %s refused: %s", request.path, error)
            return _answer(403, _("Missing or invalid signature."))
        except _NotRecorded:
            logger.exception("ESP webhook %s: events not recorded", request.path)
            answer = _answer(503, _("Not recorded; please send it again later."))
            answer["Retry-After"] = "60"
            return answer
        except ImproperlyConfigured as error:  # the view's own settings (a signing key)
            logger.warning("ESP webhook %s is not set up: %s", request.path, error)
            return _answer(404, _("This ESP's webhook is not set up."))
        except Exception as error:  # the body (_Malformed), or its envelope (SNS headers)
            logger.warning("ESP webhook %s: unreadable post: %s", request.path, error)
            return _answer(400, _("Not a tracking post this ESP sends."))
        received = getattr(request, "esp_received", None)
        if response.status_code != 200 or received is None:
            return response  # SNS's 401 challenge, a HEAD, a subscription confirmed
        return JsonResponse({"ok": True, "received": received})

    return tracking_webhook


def _answer(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"ok": False, "detail": detail}, status=status)


# Anymail's tracking paths (and Mandrill's combined one); its inbound ones are not ours.
urlpatterns = [
    URLPattern(
        pattern.pattern,
        _tracking_view(pattern.callback.view_class),
        name=f"esp-{name.removesuffix('_webhook').removesuffix('_tracking')}-tracking",
    )
    for pattern in anymail_urls.urlpatterns
    if (name := pattern.name or "").endswith("_tracking_webhook") or name == "mandrill_webhook"
]
