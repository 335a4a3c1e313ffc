"""Pre-flight: before a sequence is activated or contacts are enrolled in it, who would enter,
who would not and why, and how many emails a day it would send over the coming week, against
the per-contact daily cap and the site-wide hourly cap. Nothing here writes, but
``sequence_activate``, which the pre-flight page's confirmation calls.

The forecast walks each entering contact through the sequence with the scheduler's own engine
(``engine.decide``, ``engine.wait_until`` for windows in the contact's or the site's time zone,
``engine.cap_free_at`` with the contact's emails of the last 24 hours), so that its days are
the days the scheduler writes the emails. It assumes that nothing happens meanwhile: no open,
click, event or goal, so a condition on them takes its "no" branch; a score or stage condition
reads the contact's score and stage now (after the sequence's own score and stage steps); a
random split sends its share of each contact down each branch (so a day's figure may be a
fraction, shown rounded). Contacts with the same facts walk once, counted by their number.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from contacts.models import Contact
from nurturing import engine
from nurturing.enrolment import _may_enter
from nurturing.models import Enrollment, Message, Sequence, Step, reason_label
from nurturing.outbox import emailable
from nurturing.scheduler import CONTACT_VALUES, _specs, _zone, site_timezone

DAYS = 7
SAMPLE_SIZE = 10
MAX_STEPS = 500  # a walk through a loop of steps without a wait ends here
ALREADY_ENROLLED = "already enrolled"
REENTRY = "re-entry policy"
SKIP_LABELS = {
    ALREADY_ENROLLED: _("Already in this sequence"),
    REENTRY: _("Kept out by the re-entry policy"),
}


def skip_label(code: str) -> str:
    label = SKIP_LABELS.get(code)
    return str(label) if label is not None else reason_label(code)


@dataclass(frozen=True)
class Day:
    day: date
    new: float  # emails the enrolment would write that day
    queued: int  # marketing emails already in the outbox for that day
    hourly_cap: int

    @property
    def total(self) -> int:
        return round(self.new) + self.queued

    @property
    def hours(self) -> int | None:
        """Hours of sending the day needs at the hourly cap (None: no cap)."""
        return math.ceil(self.total / self.hourly_cap) if self.hourly_cap else None

    @property
    def over_hourly_cap(self) -> bool:
        return bool(self.hourly_cap) and self.total > 24 * self.hourly_cap


@dataclass
class Forecast:
    start: datetime
    entering: int = 0
    sample: list[Contact] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # reason code → contacts
    days: list[Day] = field(default_factory=list)
    later: float = 0  # emails after the week shown
    capped_contacts: int = 0  # contacts some of whose emails wait for the daily cap
    daily_cap: int = 0
    hourly_cap: int = 0

    @property
    def emails(self) -> int:
        return round(sum(day.new for day in self.days))

    @property
    def day_at_hourly_cap(self) -> int:
        return 24 * self.hourly_cap

    @property
    def busy_days(self) -> list[Day]:
        return [day for day in self.days if day.over_hourly_cap]

    @property
    def skipped_rows(self) -> list[tuple[str, int]]:
        return [(skip_label(code), number) for code, number in self.skipped.items()]

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def forecast(sequence: Sequence, contacts: Any, start: datetime | None = None) -> Forecast:
    """What enrolling ``contacts`` (a Contact queryset) in ``sequence`` at ``start`` would do."""
    start = start or timezone.now()
    tz = site_timezone()
    first_day = start.astimezone(tz).date()
    result = Forecast(
        start=start,
        daily_cap=settings.NURTURING_DAILY_EMAIL_CAP,
        hourly_cap=max(settings.NURTURING_HOURLY_CAP, 0),
    )
    steps = {step.pk: step for step in Step.objects.filter(sequence=sequence)}
    specs = _specs(steps)
    ordered = sorted(steps.values(), key=lambda s: (s.position, s.pk))
    first_id = ordered[0].pk if ordered else None
    entering = _entering(sequence, contacts, start, result)
    recent = _recent_sends([row["pk"] for row in entering], start) if result.daily_cap else {}

    uses_score = any(s.condition == Step.Condition.SCORE_AT_LEAST for s in steps.values())
    uses_stage = any(s.condition == Step.Condition.STAGE_IS for s in steps.values())
    groups: Counter[tuple[Any, ...]] = Counter()
    for row in entering:
        groups[
            (
                row["time_zone"] or "",
                row["score"] if uses_score else 0,
                row["stage"] if uses_stage else "",
                tuple(recent.get(row["pk"], ())),
            )
        ] += 1
    per_day: dict[date, float] = defaultdict(float)
    horizon = first_day + timedelta(days=DAYS)
    for (zone, score, stage, sent), number in groups.items():
        facts = engine.ContactFacts(stage=stage, score=score, time_zone=_zone(zone))
        sends, capped = _walk(specs, first_id, facts, start, tz, list(sent), result.daily_cap)
        if capped:
            result.capped_contacts += number
        for moment, weight in sends:
            day = moment.astimezone(tz).date()
            if day < horizon:
                per_day[day] += weight * number
            else:
                result.later += weight * number
    queued = _queued(first_day, horizon, tz)
    result.days = [
        Day(day, per_day.get(day, 0.0), queued.get(day, 0), result.hourly_cap)
        for day in (first_day + timedelta(days=n) for n in range(DAYS))
    ]
    return result


def _entering(
    sequence: Sequence, contacts: Any, start: datetime, result: Forecast
) -> list[dict[str, Any]]:
    """The contacts that would be enrolled and emailed, with the reasons for the others (as
    ``enrolment.enrollments_start`` and the send-time checks decide)."""
    rows = list(contacts.order_by("pk").values(*CONTACT_VALUES))
    previous: dict[int, list[tuple[str, datetime, datetime | None]]] = defaultdict(list)
    for contact_id, status, entered, ended in Enrollment.objects.filter(
        sequence=sequence, contact_id__in=[row["pk"] for row in rows]
    ).values_list("contact_id", "status", "entered_at", "ended_at"):
        previous[contact_id].append((status, entered, ended))
    skipped: Counter[str] = Counter()
    entering = []
    for row in rows:
        earlier = previous.get(row["pk"], [])
        reason = emailable(row, sequence.allowed_bases)
        if reason:
            skipped[reason] += 1
        elif any(status == Enrollment.Status.ACTIVE for status, _, _ in earlier):
            skipped[ALREADY_ENROLLED] += 1
        elif not _may_enter(sequence, earlier, start):
            skipped[REENTRY] += 1
        else:
            entering.append(row)
    result.skipped = dict(skipped.most_common())
    result.entering = len(entering)
    sample_ids = [row["pk"] for row in entering[:SAMPLE_SIZE]]
    result.sample = list(Contact.objects.filter(pk__in=sample_ids).order_by("pk"))
    return entering


def _walk(
    specs: dict[int, engine.StepSpec],
    first_id: int | None,
    facts: engine.ContactFacts,
    start: datetime,
    tz: ZoneInfo,
    sent: list[datetime],
    cap: int,
) -> tuple[list[tuple[datetime, float]], bool]:
    """The emails one contact would be written (when, and its share for a split), and whether
    the daily cap made one wait. Walks each branch as ``scheduler._run`` would run it."""
    sends: list[tuple[datetime, float]] = []
    capped = False
    # (step, as of, step entered, previous step at, facts, sent, share)
    walks = [(first_id, start, start, None, facts, sent, 1.0)]
    horizon = start + timedelta(days=DAYS + 1)
    while walks:
        step_id, as_of, entered, previous, facts, sent, share = walks.pop()
        for _number in range(MAX_STEPS):
            if step_id is None or as_of > horizon:
                break
            spec = specs[step_id]
            if spec.kind == engine.SPLIT:
                percent = (spec.split_percent or 0) / 100
                for target, part in ((spec.yes_id, percent), (spec.no_id, 1 - percent)):
                    if part > 0:
                        walks.append((target or spec.next_id, as_of, as_of, entered, facts,
                                      list(sent), share * part))  # fmt: skip
                break
            state = engine.EnrollmentState(0, start, entered, previous)
            decision = engine.decide(spec, state, facts, as_of=as_of, tz=tz)
            if decision.action in (engine.EXIT, engine.COMPLETE):
                break
            if decision.action == engine.WAIT:
                as_of = decision.run_at or as_of
                continue
            if decision.action == engine.EMAIL:
                free_at = engine.cap_free_at(sent, cap=cap, as_of=as_of)
                if free_at is not None:
                    capped, as_of = True, free_at
                    continue
                sends.append((as_of, share))
                sent = [*sent, as_of]
                facts = replace(facts, emails=(*facts.emails, engine.EmailFact(step_id, as_of)))
            elif decision.action == engine.SCORE:
                facts = replace(facts, score=facts.score + (spec.points or 0))
            elif decision.action == engine.STAGE:
                facts = replace(facts, stage=spec.stage)
            previous, entered = entered, as_of
            step_id = decision.next_step_id
    return sends, capped


def _recent_sends(contact_ids: list[int], as_of: datetime) -> dict[int, list[datetime]]:
    """Each contact's marketing emails of the last 24 hours (the scheduler's cap reads the
    same), sorted."""
    recent: dict[int, list[datetime]] = defaultdict(list)
    for start in range(0, len(contact_ids), 5000):
        chunk = contact_ids[start : start + 5000]
        for contact_id, created_at in (
            Message.objects.counting_for_cap(chunk, as_of - timedelta(hours=24))
            .order_by("created_at")
            .values_list("contact_id", "created_at")
        ):
            recent[contact_id].append(created_at)
    return recent


def _queued(first_day: date, horizon: date, tz: ZoneInfo) -> dict[date, int]:
    """Marketing emails already queued, per day they are due (overdue ones: the first day)."""
    queued: dict[date, int] = defaultdict(int)
    for row in (
        Message.objects.filter(status=Message.Status.QUEUED, internal=False)
        .annotate(day=TruncDate("next_attempt_at", tzinfo=tz))
        .order_by()
        .values("day")
        .annotate(n=Count("id"))
    ):
        day = max(row["day"], first_day)
        if day < horizon:
            queued[day] += row["n"]
    return queued


def starting_contacts(sequence: Sequence) -> Any:
    """Who enters when the sequence is activated: its segment's contacts (taken in at the next
    tick); for any other trigger nobody at once (contacts enter as they meet it)."""
    from nurturing.enrolment import segment_contacts, segment_selects_everyone

    if sequence.trigger == Sequence.Trigger.SEGMENT and not segment_selects_everyone(
        sequence.segment_query
    ):
        return segment_contacts(sequence.segment_query)
    return Contact.objects.none()


@transaction.atomic
def sequence_activate(*, sequence: Sequence) -> bool:
    """Activate a sequence (the pre-flight page's confirmation). False when it already was."""
    return bool(Sequence.objects.filter(pk=sequence.pk, active=False).update(active=True))
