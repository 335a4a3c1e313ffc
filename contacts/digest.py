"""The email digest: what a user was told and has not read yet, by email, hourly or daily
(``SalesRep.email_digest``; no SalesRep row: daily), in their language.

Scheduled in the database: ``SalesRep.digest_due_at`` is set when something waits for a digest
(``digests_schedule``) and cleared once it is sent; the beat sweep (``digests_send``) sends the
due ones. A digest that cannot be sent (SMTP down) stays due and goes on a later sweep; a
sent one marks its notifications ``emailed_at`` in the transaction that holds the rep's row
(locked, skipped by a concurrent sweep), so none is sent twice.
"""

from __future__ import annotations

import logging
import smtplib
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import ngettext

from contacts.models import Notification, SalesRep
from contacts.notification_text import render, with_related

logger = logging.getLogger(__name__)

DIGEST_HOUR = 8  # a daily digest arrives at 08:00, the rep's time
DIGEST_MAX_ITEMS = 50  # listed in one email; the rest waits in the app (and the next digest)


def next_digest_at(*, frequency: str, time_zone: str, after: datetime) -> datetime | None:
    """When a digest of this frequency is next due after ``after``: the next full hour, or the
    next 08:00 in ``time_zone`` (empty: the site's), or None when the user wants none."""
    if frequency == SalesRep.Digest.OFF:
        return None
    if frequency == SalesRep.Digest.HOURLY:
        return after.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    zone = ZoneInfo(time_zone or settings.TIME_ZONE)
    local = after.astimezone(zone)
    day = local.date() if local.time() < time(DIGEST_HOUR) else local.date() + timedelta(days=1)
    return datetime.combine(day, time(DIGEST_HOUR), tzinfo=zone)


def _waiting() -> object:
    return Notification.objects.filter(read_at__isnull=True, emailed_at__isnull=True)


@transaction.atomic
def digests_schedule(*, now: datetime | None = None) -> int:
    """Give a due time to each user with notifications waiting for a digest and none due yet
    (a user without a SalesRep row gets one, with the defaults). Returns how many."""
    now = now or timezone.now()
    user_ids = set(
        _waiting()
        .filter(user__is_active=True)
        .exclude(user__email="")
        .values_list("user_id", flat=True)
        .distinct()
        .order_by()
    )
    if not user_ids:
        return 0
    known = set(SalesRep.objects.filter(pk__in=user_ids).values_list("pk", flat=True))
    SalesRep.objects.bulk_create(
        [SalesRep(user_id=pk) for pk in sorted(user_ids - known)], ignore_conflicts=True
    )
    reps = list(
        SalesRep.objects.select_for_update(skip_locked=True)
        .filter(pk__in=user_ids, digest_due_at__isnull=True)
        .exclude(email_digest=SalesRep.Digest.OFF)
    )
    for rep in reps:
        rep.digest_due_at = next_digest_at(
            frequency=rep.email_digest, time_zone=rep.time_zone, after=now
        )
    SalesRep.objects.bulk_update(reps, ["digest_due_at"])
    return len(reps)


def digests_send(*, now: datetime | None = None) -> int:
    """Send the digests due; returns how many were sent. Each rep in its own transaction."""
    now = now or timezone.now()
    digests_schedule(now=now)
    sent, seen = 0, []
    while True:
        with transaction.atomic():
            rep = (
                SalesRep.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("user")
                .filter(digest_due_at__lte=now)
                .exclude(pk__in=seen)
                .order_by("digest_due_at", "pk")
                .first()
            )
            if rep is None:
                return sent
            seen.append(rep.pk)
            sent += _send(rep, now)


def _send(rep: SalesRep, now: datetime) -> int:
    user = rep.user
    notes = list(
        with_related(_waiting().filter(user=user, created_at__lte=now)).order_by(
            "created_at", "id"
        )[: DIGEST_MAX_ITEMS + 1]
    )
    if rep.email_digest == SalesRep.Digest.OFF or not notes or not user.email or not user.is_active:
        SalesRep.objects.filter(pk=rep.pk).update(digest_due_at=None)
        return 0
    try:
        _message(rep, notes[:DIGEST_MAX_ITEMS], more=len(notes) > DIGEST_MAX_ITEMS).send()
    except (OSError, smtplib.SMTPException):
        # Stays due: the next sweep tries again.
        logger.warning("Digest to user %s not sent; retried on the next sweep", user.pk)
        return 0
    Notification.objects.filter(pk__in=[n.pk for n in notes[:DIGEST_MAX_ITEMS]]).update(
        emailed_at=now
    )
    # What is left, or arrives later, is scheduled by the next sweep's digests_schedule.
    SalesRep.objects.filter(pk=rep.pk).update(digest_due_at=None)
    return 1


def user_language(user: object) -> str:
    """The language the user chose (leadfunnel's Profile), else the site's."""
    profile = getattr(user, "profile", None)
    return getattr(profile, "language", "") or settings.LANGUAGE_CODE


def _message(rep: SalesRep, notes: list[Notification], *, more: bool) -> EmailMessage:
    user = rep.user
    site = settings.SITE_URL.rstrip("/")
    with (
        translation.override(user_language(user)),
        timezone.override(ZoneInfo(rep.time_zone or settings.TIME_ZONE)),
    ):
        items = []
        for note in notes:
            rendered = render(note, reader=user)
            items.append(
                {
                    "text": rendered.text,
                    "url": site + rendered.url if rendered.url else "",
                    "at": timezone.localtime(rendered.at),
                }
            )
        subject = ngettext(
            "LeadFunnel: %(count)s new notification",
            "LeadFunnel: %(count)s new notifications",
            len(notes),
        ) % {"count": len(notes)}
        body = render_to_string(
            "contacts/email/digest.txt",
            {
                "user": user,
                "items": items,
                "more": more,
                "page_url": site + reverse("notifications"),
                "settings_url": site + reverse("notification-settings"),
            },
        )
    return EmailMessage(
        subject=subject,
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[user.email],
    )
