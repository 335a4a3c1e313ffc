"""What an enrolment does next: pure functions over frozen facts and an explicit ``as_of``.

No ORM and no clock: the scheduler loads the facts, asks ``decide`` for each step in turn,
and applies the actions. Tested without a database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

EMAIL = "email"
WAIT = "wait"
CONDITION = "condition"
SCORE = "score"
STAGE = "stage"
NOTIFY_OWNER = "notify_owner"
SPLIT = "split"
EXIT = "exit"

# Actions a decision asks the scheduler to carry out.
GOTO = "goto"  # nothing to do here, go on to next_step_id now
COMPLETE = "complete"  # ran off the end of the sequence


@dataclass(frozen=True)
class StepSpec:
    id: int
    kind: str
    next_id: int | None = None  # the step after this one in order; None: the end
    delay: timedelta | None = None
    weekdays: tuple[int, ...] = ()
    start_hour: int | None = None
    end_hour: int | None = None
    # The window's hours are the contact's local time when it has a time zone (else the site's).
    contact_time_zone: bool = False
    condition: str = ""
    event_type: str = ""
    tag: str = ""
    score: int | None = None
    stage: str = ""
    yes_id: int | None = None
    no_id: int | None = None
    split_percent: int | None = None
    points: int | None = None
    offer_percent: int | None = None
    offer_code: str = ""
    offer_valid_hours: int | None = None


@dataclass(frozen=True)
class EnrollmentState:
    id: int
    entered_at: datetime
    step_entered_at: datetime
    previous_step_at: datetime | None = None


@dataclass(frozen=True)
class EventFact:
    type: str
    occurred_at: datetime
    tags: frozenset[str] = frozenset()


@dataclass(frozen=True)
class EmailFact:
    step_id: int
    created_at: datetime
    opened: bool = False
    clicked: bool = False


@dataclass(frozen=True)
class ContactFacts:
    stage: str
    score: int
    events: tuple[EventFact, ...] = ()
    emails: tuple[EmailFact, ...] = ()
    time_zone: ZoneInfo | None = None  # None: the contact has none (the site's applies)


@dataclass(frozen=True)
class Decision:
    action: str  # a step kind to carry out (email, score…), WAIT, GOTO, EXIT or COMPLETE
    next_step_id: int | None = None  # where the enrolment goes after the action
    run_at: datetime | None = None  # WAIT: look again then, on the same step
    branch: str = ""  # condition: "yes"/"no"; split: "A"/"B"
    details: dict[str, Any] = field(default_factory=dict)


def decide(
    step: StepSpec | None,
    state: EnrollmentState,
    facts: ContactFacts,
    *,
    as_of: datetime,
    tz: ZoneInfo,
) -> Decision:
    if step is None:
        return Decision(COMPLETE)
    if step.kind == WAIT:
        until = wait_until(
            state.step_entered_at,
            delay=step.delay,
            weekdays=step.weekdays,
            start_hour=step.start_hour,
            end_hour=step.end_hour,
            tz=facts.time_zone if step.contact_time_zone and facts.time_zone else tz,
        )
        if as_of < until:
            return Decision(WAIT, next_step_id=step.id, run_at=until)
        return Decision(GOTO, next_step_id=step.next_id)
    if step.kind == CONDITION:
        met = condition_met(step, state, facts, as_of=as_of)
        target = step.yes_id if met else step.no_id
        return Decision(GOTO, next_step_id=target or step.next_id, branch="yes" if met else "no")
    if step.kind == SPLIT:
        in_a = bucket(state.id, step.id) < (step.split_percent or 0)
        target = step.yes_id if in_a else step.no_id
        return Decision(GOTO, next_step_id=target or step.next_id, branch="A" if in_a else "B")
    if step.kind == EXIT:
        return Decision(EXIT)
    if step.kind == EMAIL and step.offer_percent and step.offer_valid_hours:
        expires = as_of + timedelta(hours=step.offer_valid_hours)
        offer = {
            "code": offer_code(step.offer_code, state.id, step.id),
            "percent": step.offer_percent,
            "expires_at": expires.isoformat(),
        }
        return Decision(EMAIL, next_step_id=step.next_id, details={"offer": offer})
    if step.kind in (EMAIL, SCORE, STAGE, NOTIFY_OWNER):
        return Decision(step.kind, next_step_id=step.next_id)
    raise ValueError(f"unknown step kind {step.kind!r}")


def wait_until(
    start: datetime,
    *,
    delay: timedelta | None,
    weekdays: tuple[int, ...] = (),
    start_hour: int | None = None,
    end_hour: int | None = None,
    tz: ZoneInfo,
) -> datetime:
    """``start`` plus the delay, then on to the next moment inside the weekday/hour window,
    in ``tz`` (local wall-clock hours: the window holds across daylight-saving changes)."""
    moment = start + (delay or timedelta())
    if not weekdays and start_hour is None:
        return moment
    local = moment.astimezone(tz)
    days = set(weekdays) or set(range(7))
    opens, closes = start_hour or 0, 24 if end_hour is None else end_hour
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        if day.weekday() not in days:
            continue
        window_start = _at(day, opens, tz)
        window_end = _at(day, closes, tz)
        if local < window_end:
            return max(local, window_start).astimezone(moment.tzinfo)
    raise AssertionError("a window that never opens")  # clean() refuses empty windows


def _at(day: date, hour: int, tz: ZoneInfo) -> datetime:
    if hour >= 24:
        return datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    # A wall-clock hour skipped by a spring-forward change normalises to the hour after it.
    naive = datetime.combine(day, time(hour), tzinfo=tz)
    return naive.astimezone(ZoneInfo("UTC")).astimezone(tz)


def condition_met(
    step: StepSpec, state: EnrollmentState, facts: ContactFacts, *, as_of: datetime
) -> bool:
    if step.condition in ("opened", "clicked"):
        earlier = [email for email in facts.emails if email.created_at <= as_of]
        if not earlier:
            return False
        previous = max(earlier, key=lambda email: email.created_at)
        return previous.clicked if step.condition == "clicked" else previous.opened
    if step.condition in ("event_since_enrolment", "event_since_previous_step"):
        since = state.entered_at
        if step.condition == "event_since_previous_step" and state.previous_step_at:
            since = state.previous_step_at
        return any(
            event.type == step.event_type
            and since <= event.occurred_at <= as_of
            and (not step.tag or step.tag in event.tags)
            for event in facts.events
        )
    if step.condition == "score_at_least":
        return facts.score >= (step.score or 0)
    if step.condition == "stage_is":
        return facts.stage == step.stage
    raise ValueError(f"unknown condition {step.condition!r}")


def bucket(enrollment_id: int, step_id: int) -> int:
    """0–99, the same for an enrolment at a split every time it is asked (A/B branches)."""
    digest = hashlib.sha256(f"split:{enrollment_id}:{step_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def offer_code(prefix: str, enrollment_id: int, step_id: int) -> str:
    """A contact's own code: the prefix and six characters no one can guess from another's."""
    digest = hashlib.sha256(f"offer:{enrollment_id}:{step_id}".encode()).hexdigest()
    return f"{prefix}-{digest[:6].upper()}"


def event_tags(properties: Mapping[str, Any]) -> frozenset[str]:
    """The tags an event carries: its content tag, product tag or category, or a tag list."""
    tags = set()
    for name in ("content_tag", "product_tag", "category", "tag"):
        value = properties.get(name)
        if isinstance(value, str) and value:
            tags.add(value)
    listed = properties.get("tags")
    if isinstance(listed, list):
        tags |= {value for value in listed if isinstance(value, str)}
    return frozenset(tags)


def trigger_matches(
    event_type: str, properties: Mapping[str, Any], *, wanted_type: str, wanted_tag: str
) -> bool:
    return event_type == wanted_type and (not wanted_tag or wanted_tag in event_tags(properties))


def retry_delay(attempts: int) -> timedelta:
    """Backoff before sending again after a transient failure: 30 s doubling, at most 5 min
    (a longer wait lives in the database as ``next_attempt_at``, never as a task countdown)."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 300))


def cap_free_at(sent_times: list[datetime], *, cap: int, as_of: datetime) -> datetime | None:
    """With a cap of ``cap`` marketing emails per 24 h: None if one may go now, else when."""
    if cap <= 0:
        return None
    window = sorted(moment for moment in sent_times if moment > as_of - timedelta(hours=24))
    if len(window) < cap:
        return None
    return window[len(window) - cap] + timedelta(hours=24)
