"""Stand-in for bounce-core's module (its interface, /work/notes/BOUNCES_API.md), replaced at
merge by the real one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import models


class Kind(models.TextChoices):
    HARD = "hard"
    SOFT = "soft"
    DEFERRED = "deferred"
    COMPLAINT = "complaint"
    UNSUBSCRIBED = "unsubscribed"


@dataclass(frozen=True, slots=True)
class Report:
    kind: str
    email: str = ""
    message_id: int | None = None
    status: str = ""
    diagnostic: str = ""
    source: str = ""
    reference: str = ""
    occurred_at: datetime | None = None


@dataclass
class Recorded:
    recorded: int
    duplicates: int
    unmatched: list[Report]


def record_reports(reports: Iterable[Report]) -> Recorded:
    raise NotImplementedError("bounce-core's record_reports")
