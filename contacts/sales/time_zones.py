"""A rep's time zone: their SalesRep's, else the site's. Due times are typed and shown in it, and
"today" on My day is their day, not the server's."""

from __future__ import annotations

import zoneinfo
from datetime import datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist


def rep_time_zone(user: Any) -> zoneinfo.ZoneInfo:
    """The zone ``user`` works in. Reads ``user.sales_rep`` (cached on the user object)."""
    try:
        name = user.sales_rep.time_zone if user.is_authenticated else ""
    except ObjectDoesNotExist:
        name = ""
    return zone(name)


def zone(name: str | None) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name or settings.TIME_ZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def day_bounds(now: datetime, tz: zoneinfo.ZoneInfo) -> tuple[datetime, datetime]:
    """Start of today and of tomorrow in ``tz`` (aware): a DST day is 23 or 25 hours long."""
    today = now.astimezone(tz).date()
    start = datetime.combine(today, time.min, tzinfo=tz)
    end = datetime.combine(today + timedelta(days=1), time.min, tzinfo=tz)
    return start, end
