"""Sending webhook deliveries: signed per the Standard Webhooks spec, retried with backoff,
recorded one by one, and a subscription that keeps failing disabled with a notice to admins.

``deliveries_send`` claims due deliveries a batch at a time (``SKIP LOCKED``, a lease: two
workers never hold the same delivery), POSTs each one and records its answer at once, in its own
short transaction (a ``WebhookAttempt`` row, the delivery's state). A 2xx is a success and the
delivery is never sent again. Anything else (another status, a timeout, a refused connection)
is tried again after ``retry_delay``, up to ``WEBHOOK_MAX_ATTEMPTS`` tries.

**At least once, the same webhook-id.** A worker killed after a POST and before recording its
answer (a window of one delivery: the answer is recorded before the next POST) leaves the
delivery leased; when the lease runs out, ``deliveries_reap`` logs the try as interrupted and
the delivery goes again with the same ``webhook-id``, timestamp aside the same bytes. This is
what the spec's ``webhook-id`` is for: a receiver that keeps the ids it has handled drops the
repeat. We chose this over the outbox's "in doubt, a person decides" (``nurturing.sending``):
an email sent twice reaches a person, a webhook sent twice reaches a program that can dedupe,
while a webhook dropped silently leaves a CRM out of step. Nothing else sends twice: a delivery
recorded as delivered is never claimed again, and a worker stops taking deliveries from its
batch well before its lease could run out (``send_margin_seconds``).

The "delivered" marks commit without waiting for the disk
(``contacts.durability``: a mark forgotten by a crashed PostgreSQL costs at worst a repeat with
the same webhook-id).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import urllib3
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q
from django.dispatch import Signal
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import override
from standardwebhooks.webhooks import Webhook

from contacts.durability import commits_without_waiting
from contacts.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from contacts.webhooks import outbox

logger = logging.getLogger(__name__)

SEND_BATCH_SIZE = 50
SEND_BUDGET_SECONDS = 40.0
# What is kept of a receiver's answer.
RESPONSE_EXCERPT_BYTES = 1000
# Stored as an attempt's error when a worker died before recording the answer (shown
# translated by the admin).
INTERRUPTED = "interrupted"
USER_AGENT = "LeadFunnel-Webhooks/1.0"

Status = WebhookDelivery.Status

# Sent at the points where the crash tests make a sending process die ("claimed": a batch is
# leased, nothing posted; "answered": a receiver answered, nothing recorded yet).
checkpoint = Signal()


def webhooks_tick() -> dict[str, int]:
    """What beat runs every few seconds: free what dead workers held, and make sure a send task
    runs while deliveries are due (the broker may have been down when they were written)."""
    reaped = deliveries_reap()
    due = WebhookDelivery.objects.due(timezone.now()).exists()
    if due:
        outbox.kick_send()
    return {"reaped": reaped, "due": int(due)}


def deliveries_send(
    *, batch_size: int = SEND_BATCH_SIZE, budget: float = SEND_BUDGET_SECONDS
) -> int:
    """Send due deliveries a batch at a time until none is due or ``budget`` seconds have
    passed. Returns how many were delivered. Several can run at once."""
    started = time.monotonic()
    lease = settings.WEBHOOK_LEASE_SECONDS
    margin = send_margin_seconds()
    delivered = 0
    with commits_without_waiting("marks whose loss costs at worst a duplicate"):
        while time.monotonic() - started < budget:
            claimed_at = time.monotonic()
            batch = _claim(batch_size, lease)
            if not batch:
                break
            checkpoint.send(sender=None, point="claimed")
            failing: dict[int, datetime] = {}
            for index, delivery in enumerate(batch):
                if time.monotonic() - claimed_at > lease - margin:
                    _release([d.pk for d in batch[index:]], at=timezone.now())
                    break
                if delivery.subscription_id in failing:
                    # Its endpoint just failed: do not spend a timeout per delivery on it.
                    _release([delivery.pk], at=failing[delivery.subscription_id])
                    continue
                answer = post(delivery)
                checkpoint.send(sender=None, point="answered")
                if answer.ok:
                    _record_success(delivery, answer)
                    delivered += 1
                else:
                    failing[delivery.subscription_id] = _record_failure(delivery, answer)
    return delivered


def send_margin_seconds() -> int:
    """A send stops taking deliveries from its batch this long before the lease runs out: one
    POST (at most the timeout) can never be going on when the reaper frees the delivery."""
    return int(settings.WEBHOOK_TIMEOUT_SECONDS) + 5


def retry_delay(attempts: int) -> timedelta:
    """How long after its ``attempts``-th failed try a delivery goes again: doubling."""
    seconds = settings.WEBHOOK_RETRY_SECONDS * 2 ** max(0, attempts - 1)
    return timedelta(seconds=min(seconds, settings.WEBHOOK_RETRY_MAX_SECONDS))


# --- Claiming ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Outgoing:
    pk: int
    webhook_id: str
    subscription_id: int
    url: str
    secret: str
    body: str
    failures: int  # the subscription's failures in a row when the delivery was claimed
    attempts: int


OUTGOING_VALUES = (
    "pk", "webhook_id", "subscription_id", "subscription__url", "subscription__secret", "body",
    "subscription__consecutive_failures",
)  # fmt: skip


@transaction.atomic
def _claim(batch_size: int, lease: int) -> list[Outgoing]:
    now = timezone.now()
    rows = list(
        WebhookDelivery.objects.due(now)
        .select_for_update(skip_locked=True, of=("self",))
        .order_by("next_attempt_at", "pk")
        .values_list(*OUTGOING_VALUES, "attempts")[:batch_size]
    )
    if not rows:
        return []
    WebhookDelivery.objects.filter(pk__in=[row[0] for row in rows]).update(
        status=Status.SENDING,
        lease_until=now + timedelta(seconds=lease),
        attempts=F("attempts") + 1,
    )
    return [Outgoing(*row[:-1], attempts=row[-1] + 1) for row in rows]


def _release(ids: list[int], *, at: datetime) -> None:
    """Give claimed deliveries back untried (their try is not counted)."""
    WebhookDelivery.objects.filter(pk__in=ids, status=Status.SENDING).update(
        status=Status.PENDING, lease_until=None, next_attempt_at=at, attempts=F("attempts") - 1
    )


# --- Posting ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None
    body: str
    duration_ms: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def signed_headers(delivery: Outgoing, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers for ``delivery`` sent at ``at``."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": delivery.webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": _signer(delivery.secret).sign(delivery.webhook_id, at, delivery.body),
    }


def post(delivery: Outgoing) -> Answer:
    """POST the delivery once (no redirect followed, no retry here); never raises."""
    at = timezone.now()
    headers = signed_headers(delivery, at)
    started = time.perf_counter()
    try:
        response = _http().request(
            "POST",
            delivery.url,
            body=delivery.body.encode(),
            headers=headers,
            redirect=False,
            preload_content=False,
        )
        try:
            excerpt = response.read(RESPONSE_EXCERPT_BYTES)
            response.drain_conn()
        finally:
            response.release_conn()
    except (urllib3.exceptions.HTTPError, OSError, ValueError) as error:
        return Answer(None, "", _since(started), f"{type(error).__name__}: {error}"[:2000])
    text = excerpt.decode("utf-8", errors="replace")
    return Answer(response.status, text, _since(started))


def _since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


_signers: dict[str, Webhook] = {}
_pool: tuple[int, urllib3.PoolManager] | None = None


def _signer(secret: str) -> Webhook:
    if secret not in _signers:
        _signers[secret] = Webhook(secret)
    return _signers[secret]


def _http() -> urllib3.PoolManager:
    """One connection pool per process (kept alive between deliveries; a forked worker makes
    its own)."""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        timeout = settings.WEBHOOK_TIMEOUT_SECONDS
        _pool = (
            os.getpid(),
            urllib3.PoolManager(
                num_pools=50,
                maxsize=1,
                retries=False,
                timeout=urllib3.Timeout(connect=min(timeout, 5.0), read=timeout),
            ),
        )
    return _pool[1]


# --- Recording --------------------------------------------------------------------------------


def _attempt(delivery: Outgoing, answer: Answer, at: datetime) -> WebhookAttempt:
    return WebhookAttempt(
        delivery_id=delivery.pk,
        at=at,
        response_status=answer.status,
        response_body=answer.body,
        duration_ms=answer.duration_ms,
        error=answer.error,
    )


def _record_success(delivery: Outgoing, answer: Answer) -> None:
    """One UPDATE, in autocommit: the answer is kept on the delivery (attempt rows are for the
    tries that failed). By measurement (``make bench BENCH=webhooks``, scale 0.1, the shared
    2-core machine at load 9-10, 6 December): a transaction that also inserted an attempt row and
    reset the subscription's count sent 84 deliveries/s with one worker and 78/s with two; this
    sends 155/s and 289/s (the target is 200/s with two)."""
    WebhookDelivery.objects.filter(pk=delivery.pk, status=Status.SENDING).update(
        status=Status.DELIVERED, delivered_at=timezone.now(), lease_until=None,
        next_attempt_at=None, response_status=answer.status, response_body=answer.body,
        duration_ms=answer.duration_ms, error="",
    )  # fmt: skip
    if delivery.failures:
        WebhookSubscription.objects.filter(pk=delivery.subscription_id).update(
            consecutive_failures=0
        )


@transaction.atomic
def _record_failure(delivery: Outgoing, answer: Answer) -> datetime:
    """Record a failed try; returns when the delivery goes again."""
    now = timezone.now()
    final = delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS
    next_at = now + retry_delay(delivery.attempts)
    error = answer.error or f"HTTP {answer.status}"
    WebhookDelivery.objects.filter(pk=delivery.pk, status=Status.SENDING).update(
        status=Status.FAILED if final else Status.PENDING,
        lease_until=None,
        next_attempt_at=None if final else next_at,
        response_status=answer.status,
        response_body=answer.body,
        duration_ms=answer.duration_ms,
        error=error[:2000],
    )
    _attempt(delivery, answer, now).save(force_insert=True)
    WebhookSubscription.objects.filter(pk=delivery.subscription_id).update(
        consecutive_failures=F("consecutive_failures") + 1
    )
    disabled = WebhookSubscription.objects.filter(
        pk=delivery.subscription_id,
        active=True,
        consecutive_failures__gte=settings.WEBHOOK_DISABLE_AFTER_FAILURES,
    ).update(active=False, disabled_at=now)
    if disabled:
        subscription_id = delivery.subscription_id
        transaction.on_commit(lambda: admins_tell_disabled(subscription_id), robust=True)
    return next_at


# --- After a crash, and the admins' side ------------------------------------------------------


@transaction.atomic
def deliveries_reap(*, as_of: datetime | None = None) -> int:
    """Deliveries a dead worker held when its lease ran out go back to the queue at once (the
    one it was posting may have arrived: it goes again with the same webhook-id, and its try is
    logged as interrupted). Returns how many."""
    as_of = as_of or timezone.now()
    expired = list(
        WebhookDelivery.objects.filter(status=Status.SENDING, lease_until__lt=as_of)
        .select_for_update(skip_locked=True)
        .values_list("pk", flat=True)
    )
    if not expired:
        return 0
    WebhookAttempt.objects.bulk_create(
        WebhookAttempt(delivery_id=pk, at=as_of, error=INTERRUPTED) for pk in expired
    )
    return WebhookDelivery.objects.filter(pk__in=expired, status=Status.SENDING).update(
        status=Status.PENDING, lease_until=None, next_attempt_at=as_of
    )


@transaction.atomic
def subscription_enable(*, subscription: WebhookSubscription) -> None:
    """An admin turns a subscription back on: its count of failures starts again, and the
    deliveries that waited meanwhile go now."""
    WebhookSubscription.objects.filter(pk=subscription.pk).update(
        active=True, consecutive_failures=0, disabled_at=None
    )
    subscription.active, subscription.consecutive_failures = True, 0
    subscription.disabled_at = None
    WebhookDelivery.objects.filter(subscription=subscription, status=Status.PENDING).update(
        next_attempt_at=timezone.now()
    )
    transaction.on_commit(outbox.kick_send, robust=True)


@transaction.atomic
def deliveries_retry(*, deliveries: Any) -> int:
    """An admin sends failed deliveries again (same webhook-id and body)."""
    count = deliveries.filter(status=Status.FAILED).update(
        status=Status.PENDING, next_attempt_at=timezone.now(), attempts=0
    )
    if count:
        transaction.on_commit(outbox.kick_send, robust=True)
    return count


def admins_tell_disabled(subscription_id: int) -> int:
    """Email the admins who may change webhooks that this one was disabled. Returns how many
    were told."""
    subscription = WebhookSubscription.objects.filter(pk=subscription_id).first()
    if subscription is None:
        return 0
    last = (
        WebhookDelivery.objects.filter(subscription=subscription)
        .exclude(error="")
        .order_by("-pk")
        .values_list("error", flat=True)
        .first()
    )
    link = settings.SITE_URL.rstrip("/") + reverse(
        "admin:contacts_webhooksubscription_change", args=[subscription.pk]
    )
    told = 0
    for user in _admins():
        with override(_language(user)):
            subject = _("Webhook “%(name)s” disabled") % {"name": subscription.name}
            body = _(
                "LeadFunnel stopped sending to %(url)s after %(count)s failed attempts in a "
                "row.\nLast error: %(error)s\n\nNew events are no longer queued for it. Once "
                "the receiver works, tick “active” again: the deliveries that were waiting "
                "will go.\n\n%(link)s\n"
            ) % {
                "url": subscription.url,
                "count": subscription.consecutive_failures,
                "error": last or "—",
                "link": link,
            }
        told += send_mail(subject, body, None, [user.email], fail_silently=True)
    logger.warning("Webhook subscription %s disabled after repeated failures.", subscription.pk)
    return told


def _admins() -> list[Any]:
    users = get_user_model().objects.filter(is_active=True, is_staff=True).exclude(email="")
    allowed = (
        Q(is_superuser=True)
        | Q(user_permissions__codename="change_webhooksubscription")
        | Q(groups__permissions__codename="change_webhooksubscription")
    )
    return list(users.filter(allowed).distinct().order_by("pk"))


def _language(user: Any) -> str:
    profile = getattr(user, "profile", None)
    return getattr(profile, "language", "") or settings.LANGUAGE_CODE
