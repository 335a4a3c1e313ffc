"""Follow-up reminders: 10,000 follow-ups of 100 reps due at once, delivered by the sweep (the
in-app notification and one email each, to a local SMTP sink, aiosmtpd in its own process)
through Django's SMTP backend; against the plain way in the same run: a loop creating each
notification with the ORM and sending each email with ``send_mail``. REMINDERS_COUNT sets the
number (default 10,000 x BENCH_SCALE, at least 100)."""

from __future__ import annotations

import logging
import os
import smtplib
import time
from datetime import timedelta

from bench.bench_scheduler import _start_sink
from bench.common import result

NAME = "reminders"
TARGET_SECONDS = 30
REPS = 100


def _setup(count: int):  # type: ignore[no-untyped-def]
    from django.contrib.auth.models import Group, User
    from django.db import connection
    from django.utils import timezone

    from contacts.models import Contact, FollowUp, Notification

    sales = Group.objects.get_or_create(name="sales")[0]
    reps = []
    for i in range(REPS):
        rep, _ = User.objects.get_or_create(
            username=f"bench-reminder-rep-{i}", defaults={"email": f"rep{i}@bench.example.fr"}
        )
        rep.groups.add(sales)
        reps.append(rep)
    Notification.objects.filter(user__in=reps).delete()
    FollowUp.objects.filter(owner__in=reps).delete()
    leads = list(Contact.objects.values_list("pk", flat=True)[:count])
    due = timezone.now() - timedelta(minutes=1)
    FollowUp.objects.bulk_create(
        (
            FollowUp(
                owner=reps[i % REPS],
                created_by=reps[i % REPS],
                title=f"Call back #{i}",
                contact_id=leads[i] if i < len(leads) and i % 2 else None,
                due_at=due,
                remind_at=due,
            )  # fmt: skip
            for i in range(count)
        ),
        batch_size=2_000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE contacts_followup")
    return reps, due


def _reset(reps) -> None:  # type: ignore[no-untyped-def]
    from django.db.models import F

    from contacts.models import FollowUp, Notification

    Notification.objects.filter(user__in=reps).delete()
    FollowUp.objects.filter(owner__in=reps).update(
        remind_at=F("due_at"), reminded_at=None, reminder=None
    )


def _plain_way(now) -> int:  # type: ignore[no-untyped-def]
    """What one would write first: per follow-up, a notification and ``send_mail``."""
    from django.core.mail import send_mail

    from contacts.models import FollowUp, Notification
    from contacts.notifications import notify

    done = 0
    for follow_up in FollowUp.objects.filter(remind_at__lte=now).select_related("owner"):
        notify(
            user_ids=[follow_up.owner_id], kind=Notification.Kind.FOLLOW_UP_DUE,
            contact_id=follow_up.contact_id,
            params={"follow_up": follow_up.pk, "title": follow_up.title,
                    "due_at": follow_up.due_at.isoformat()},
        )  # fmt: skip
        send_mail(f"Reminder: {follow_up.title}", follow_up.title, None, [follow_up.owner.email])
        follow_up.remind_at, follow_up.reminded_at = None, now
        follow_up.save(update_fields=["remind_at", "reminded_at"])
        done += 1
    return done


def _sink_raw_rate(port: int, count: int) -> float:
    """Messages/s the sink takes from bare smtplib, over as many connections as the sweep
    uses, for messages of the reminders' size: what no code of ours can beat."""
    from concurrent.futures import ThreadPoolExecutor

    from contacts.sales.follow_ups import REMINDER_CONNECTIONS

    body = (b"Subject: Rappel\r\nFrom: a@bench.example.fr\r\nTo: b@bench.example.fr\r\n\r\n"
            + b"x" * 400 + b"\r\n")  # fmt: skip

    def send(n: int) -> None:
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            for _ in range(n):
                smtp.sendmail("a@bench.example.fr", ["b@bench.example.fr"], body)

    ways = REMINDER_CONNECTIONS
    started = time.perf_counter()
    with ThreadPoolExecutor(ways) as pool:
        list(pool.map(send, [count // ways] * ways))
    return (count // ways * ways) / (time.perf_counter() - started)


def run(scale: float) -> list[dict]:
    from django.conf import settings
    from django.utils import timezone

    from contacts.models import FollowUp, Notification
    from contacts.sales.follow_ups import reminders_send

    logging.getLogger("mail.log").setLevel(logging.WARNING)
    count = int(os.environ.get("REMINDERS_COUNT") or max(100, int(10_000 * scale)))
    reps, _due = _setup(count)
    sink, port = _start_sink()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""

        now = timezone.now()
        started = time.perf_counter()
        delivered = reminders_send(now=now)
        sweep_seconds = time.perf_counter() - started
        print(f"  sweep: {delivered:,} reminders in {sweep_seconds:.2f} s", flush=True)
        assert delivered == count, (delivered, count)
        emailed = Notification.objects.filter(user__in=reps, emailed_at__isnull=False).count()
        assert emailed == count, (emailed, count)
        assert not FollowUp.objects.filter(owner__in=reps, remind_at__isnull=False).exists()

        raw_per_second = _sink_raw_rate(port, min(count, 2_000))
        print(f"  sink raw rate: {raw_per_second:,.0f} messages/s", flush=True)

        _reset(reps)
        started = time.perf_counter()
        plain = _plain_way(timezone.now())
        plain_seconds = time.perf_counter() - started
        print(f"  plain loop: {plain:,} reminders in {plain_seconds:.2f} s", flush=True)
        assert plain == count, (plain, count)
    finally:
        assert sink.stdin is not None
        sink.stdin.close()
        sink.wait(timeout=30)
        _reset(reps)
        FollowUp.objects.filter(owner__in=reps).delete()
    return [
        result(
            name=NAME,
            metric=f"{count:,} reminders due at once delivered (notification + email) by the sweep",
            value=sweep_seconds,
            unit="s",
            baseline=plain_seconds,
            target=f"< {TARGET_SECONDS} s",
            passed=sweep_seconds < TARGET_SECONDS,
            scale=scale,
            reminders=count,
            reps=REPS,
            per_second=round(count / sweep_seconds),
            plain_per_second=round(count / plain_seconds),
            sink_raw_per_second=round(raw_per_second),
            load_average_1m=round(os.getloadavg()[0], 1),
        )  # fmt: skip
    ]
