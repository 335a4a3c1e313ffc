"""The site-wide hourly cap (``NURTURING_HOURLY_CAP``): at most N marketing emails in any
rolling hour, whatever the number of send workers.

A rolling hour rather than a clock hour: a clock hour lets 2 × N go in the two minutes around
its turn, a rolling one never more than N in any 60 minutes, and it smooths by itself: once the
cap is reached, a message goes each time one sent an hour before ages out. Messages over the
cap are not touched (still queued and due, in their order), so nothing is lost, failed or sent
twice; the next send task (beat kicks one while messages are due) takes them when there is room.
Notes to owners (``internal``) are not marketing email: they are neither capped nor counted.

The accounting is the outbox itself, no counter to keep right after a crash: the hour's use is
the marketing messages sent in the last hour (``sent_at``, indexed: ``message_sent_recently``),
those being sent (leased: they will be) and those in doubt since then. Two workers claiming at
once would both see the same room, so each claim counts and leases under one lock: a
transaction-scoped PostgreSQL advisory lock, taken only when a cap is set (the uncapped claim
is unchanged). SQLite needs none: its transactions here begin IMMEDIATE (one writer at a time).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from django.conf import settings
from django.db import connection
from django.utils import timezone

from nurturing.models import Message

WINDOW = timedelta(hours=1)
# The advisory lock's key: any fixed 32-bit number no other part of the application uses.
LOCK_KEY = zlib.crc32(b"leadfunnel.nurturing.hourly_cap")

Row = TypeVar("Row")


def used(as_of: datetime) -> int:
    """Marketing messages that count against the hour ending at ``as_of``. One statement (a
    UNION, each part read from an index; an OR of them would read the whole table): separate
    counts would each see their own moment, and miss a message marked sent between them."""
    since = as_of - WINDOW
    marketing = Message.objects.filter(internal=False).order_by().values("pk")
    return (
        marketing.filter(sent_at__gt=since)
        .union(
            marketing.filter(status=Message.Status.SENDING),
            marketing.filter(
                status=Message.Status.IN_DOUBT, sent_at__isnull=True, handed_over_at__gt=since
            ),
        )
        .count()
    )


def allowance(as_of: datetime | None = None) -> int | None:
    """How many more marketing messages may go now (None: no cap). Read without the lock: for
    display and for deciding whether a send task is worth starting."""
    cap = settings.NURTURING_HOURLY_CAP
    if cap <= 0:
        return None
    return max(0, cap - used(as_of or timezone.now()))


def room(as_of: datetime) -> int:
    """How many marketing messages this claim may take: call inside the claim's transaction,
    before it locks any message. The lock is held until the claim commits, so the next one
    counts what this one leased as being sent."""
    _lock()
    return max(0, settings.NURTURING_HOURLY_CAP - used(as_of))


def take(rows: list[Row], room: int, *, internal: Callable[[Row], bool]) -> list[Row]:
    """Of the rows a claim locked (in send order), the internal ones and the first ``room``
    marketing ones."""
    kept = []
    for row in rows:
        if internal(row):
            kept.append(row)
        elif room > 0:
            kept.append(row)
            room -= 1
    return kept


def _lock() -> None:
    """Serialise the capped claims until the transaction ends (PostgreSQL; the ORM has no
    advisory lock, and a counter row would be a table kept only to be locked)."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
