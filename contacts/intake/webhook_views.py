"""The public endpoint form tools post to: ``POST /hooks/in/<key>/``.

Answers with JSON a sender's delivery log can show: 200 once stored (or already stored, or
ignored), 401/403 for a missing or wrong signature, 400 for a body that is not JSON, 422 for
a submission without email nor external id, 404 for an unknown or switched-off endpoint, and
503 (send again) if something failed on our side: never a 500 for anything a sender sends.

A receipt is cheap (6 December, Tally's sample, Django's CPU per post in one process against
``GET /healthz`` in the same run): 2.6-3.2 ms before, 3.8x /healthz; 1.2-1.4 ms after, 1.75x.
Gone: the user-facing middleware (a fifth of it: ``leadfunnel.middleware.ShortcutMiddleware``),
the endpoint's query (a quarter: ``InboundSource.for_key``) and the transaction around the one
INSERT (a tenth). Under gunicorn (bench ``webhooks``, a shared machine): 2.1-2.5 ms of server
CPU a receipt, against 3.8-4.3 ms before.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from contacts.intake.webhook_capture import delivery_receive, signature_header
from contacts.models import InboundSource

logger = logging.getLogger(__name__)


@csrf_exempt  # posted by other servers, authenticated by their signature
@require_POST
def inbound_webhook(request: HttpRequest, key: str) -> HttpResponse:
    source = InboundSource.for_key(key)
    if source is None:
        return JsonResponse({"ok": False, "detail": _("Unknown webhook.")}, status=404)
    try:
        received = delivery_receive(
            source=source,
            body=request.body,
            signature=request.headers.get(signature_header(source)),
        )
    except Exception:
        # A fault of ours (a bug, the database gone): the sender keeps the submission and
        # sends it again on a 503 (Typeform, Tally and Mautic all retry).
        logger.exception("Inbound webhook %s: delivery not recorded", source.pk)
        InboundSource.forget(key)  # deleted meanwhile, perhaps: the next post reads it again
        response = JsonResponse(
            {"ok": False, "detail": _("Not stored; please send it again later.")}, status=503
        )
        response["Retry-After"] = "60"
        return response
    body = {"ok": received.http_status == 200, "status": received.status}
    if received.reason:
        body["detail"] = received.reason
    return JsonResponse(body, status=received.http_status)
