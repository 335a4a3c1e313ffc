"""The scoring engine: rules, events and what a contact already earned in, ledger lines out.

Pure: frozen dataclasses and an explicit ``as_of``; no ORM, no clock. The services feed it from
the database and write what it returns.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from functools import cache
from typing import Any, NamedTuple

from contacts.reasons import coded
from scoring.fit_engine import grade_meets

STAGES = ("suspect", "lead", "mql", "hmql", "sql", "client", "ambassador")
RANK = {stage: rank for rank, stage in enumerate(STAGES)}
MARKETING_STAGES = ("lead", "mql", "hmql")  # scoring may move these up, and MQL/HMQL down
PERIODS = ("day", "week", "month")
# How a rule compares its property: "eq" as text (5 and "5" are equal), the others as numbers.
NUMBER_OPERATORS = ("gt", "gte", "lt", "lte", "between")
# What counts as a number in a string: a plain decimal, at most 15 digits in all ("42", "-3.5").
# Shared with the rescore's SQL (PostgreSQL and Python's re read it alike; \A \Z, not ^ $,
# which Python lets match before a final newline).
PLAIN_NUMBER = r"\A-?(?=[0-9.]{1,16}\Z)[0-9]+(\.[0-9]+)?\Z"


@dataclass(frozen=True)
class Rule:
    id: int
    name: str
    event_type: str
    points: int
    url_contains: str = ""
    url_pattern: str = ""
    content_tag: str = ""
    form: str = ""
    property_name: str = ""
    property_value: str = ""
    property_operator: str = "eq"  # or one of NUMBER_OPERATORS
    property_number: Decimal | None = None  # compared with; the lower bound of "between"
    property_number_max: Decimal | None = None  # the upper bound of "between" (inclusive)
    count_at_least: int | None = None  # the contact's count of matching events must reach this
    count_within_days: int | None = None  # within these days up to the event (inclusive)
    fade_full_days: int | None = None  # recency: full points while the event is this young,
    fade_zero_days: int | None = None  # then linearly less, none from this age (in days)
    max_times: int | None = None  # per contact, ever
    max_points: int | None = None  # per contact per cap_period
    cap_period: str = ""
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    active: bool = True
    priority: int = 100

    def matches(self, event: EventFact) -> bool:
        if not self.active or event.type != self.event_type:
            return False
        if self.starts_at and event.occurred_at < self.starts_at:
            return False
        if self.ends_at and event.occurred_at >= self.ends_at:
            return False
        props = event.properties
        url = _text(props.get("url"))
        if self.url_contains and self.url_contains.lower() not in url.lower():
            return False
        if self.url_pattern and not _compiled(self.url_pattern).search(url):
            return False
        if self.content_tag and _text(props.get("content_tag")) != self.content_tag:
            return False
        if self.form and _text(props.get("form")) != self.form:
            return False
        if self.property_name:
            if self.property_operator == "eq":
                return _text(props.get(self.property_name)) == self.property_value
            return self.number_holds(props.get(self.property_name))
        return True

    def number_holds(self, value: Any) -> bool:
        """The property's numeric condition: False for anything that is not a number."""
        number = as_number(value)
        if number is None or self.property_number is None:
            return False
        op, bound = self.property_operator, self.property_number
        if op == "gt":
            return number > bound
        if op == "gte":
            return number >= bound
        if op == "lt":
            return number < bound
        if op == "lte":
            return number <= bound
        if op == "between" and self.property_number_max is not None:
            return bound <= number <= self.property_number_max
        return False

    @property
    def counts(self) -> bool:
        return bool(self.count_at_least and self.count_within_days)

    @property
    def fades(self) -> bool:
        return self.fade_full_days is not None and self.fade_zero_days is not None

    @property
    def reason(self) -> str:
        """What its ledger lines say: its name, and for a fading rule how its points fade (the
        line's points say how far they have faded, its event's date since when)."""
        if not self.fades:
            return self.name
        return coded("rule_fading", rule=self.name, points=self.points,
                     full=self.fade_full_days, zero=self.fade_zero_days)  # fmt: skip


@dataclass(frozen=True)
class EventFact:
    id: int
    contact_id: int
    type: str
    occurred_at: datetime
    properties: Mapping[str, Any] = field(default_factory=dict)
    key: str = ""  # the idempotency key when there is one; the same key scores once

    @property
    def identity(self) -> str:
        return self.key or f"event:{self.id}"


@dataclass(frozen=True)
class Earned:
    """What one contact already has in the ledger from rules, as far as caps need to know."""

    times: Mapping[int, int] = field(default_factory=dict)  # rule id -> entries
    period_points: Mapping[tuple[int, date], int] = field(default_factory=dict)
    scored: frozenset[tuple[int, str]] = frozenset()  # (rule id, event identity)


@dataclass(frozen=True)
class Line:
    contact_id: int
    rule_id: int
    event_id: int
    points: int
    at: datetime
    reason: str
    filtered: bool = False  # a machine signal: recorded, not counted


RulesByType = Mapping[str, Sequence[Rule]]


def rules_by_type(rules: Iterable[Rule]) -> dict[str, list[Rule]]:
    """Rules grouped by the event type they score, in the order they apply (priority, id)."""
    grouped: dict[str, list[Rule]] = {}
    for rule in sorted(rules, key=lambda r: (r.priority, r.id)):
        grouped.setdefault(rule.event_type, []).append(rule)
    return grouped


def score_events(
    rules: Sequence[Rule] | RulesByType,
    events: Iterable[EventFact],
    earned: Earned,
    *,
    tz: tzinfo,
    count_machine_signals: bool = False,
    prior: Sequence[EventFact] = (),
    as_of: datetime | None = None,
) -> tuple[list[Line], Earned]:
    """Score one contact's new events in time order; returns the lines and the updated caps.

    ``rules`` may come grouped by ``rules_by_type`` already (a batch of contacts groups them once).
    ``prior`` are the contact's stored events a count condition needs (``count_window``): a
    new event may bring a count to N for itself, or for a later stored event that arrived first,
    which then gets its line now, as a rescore would have given it. ``as_of`` is the moment a
    fading rule's points are worth (``faded_points``); without it they are not faded.
    """
    lines: list[Line] = []
    by_type = rules if isinstance(rules, Mapping) else rules_by_type(rules)
    timeline = sorted(events, key=_when)
    todo: Iterable[tuple[EventFact, Sequence[Rule]]] = (
        (event, by_type.get(event.type, ())) for event in timeline
    )
    counter = None  # only rules with a count condition need one
    if prior:
        counter = _Counter(timeline, prior, count_machine_signals)
        todo = sorted([*todo, *counter.recounted(by_type, earned)], key=lambda item: _when(item[0]))
    for event, event_rules in todo:
        machine = not count_machine_signals and event.properties.get("machine") is True
        for rule in event_rules:
            if not rule.matches(event) or (rule.id, event.identity) in earned.scored:
                continue
            if machine:
                earned = replace(earned, scored=earned.scored | {(rule.id, event.identity)})
                lines.append(
                    Line(event.contact_id, rule.id, event.id, 0, event.occurred_at,
                         f"{rule.name} (not scored: machine signal)", filtered=True)
                )  # fmt: skip
                continue
            if rule.count_at_least:
                counter = counter or _Counter(timeline, prior, count_machine_signals)
                if not counter.reached(rule, event):
                    continue
            points = _allowed_points(rule, event, earned, tz)
            earned = _remember(earned, rule, event, points, tz)
            if points:
                # A faded line stays, even at 0: it counts for "at most N times" and says why.
                if rule.fade_full_days is not None and as_of is not None:
                    points = faded_points(rule, points, event.occurred_at, as_of=as_of, tz=tz)
                lines.append(
                    Line(
                        contact_id=event.contact_id,
                        rule_id=rule.id,
                        event_id=event.id,
                        points=points,
                        at=event.occurred_at,
                        reason=rule.name if rule.fade_full_days is None else rule.reason,
                    )
                )
    return lines, earned


def _when(event: EventFact) -> tuple[datetime, int]:
    return event.occurred_at, event.id


def count_window(rule: Rule) -> timedelta:
    """How far a count condition looks back from an event (and, live, forward from a new one)."""
    return timedelta(days=rule.count_within_days or 0)


class _Counter:
    """Count conditions over one contact's new and prior events: "at least N matching events
    within D days", the D days up to the event, both ends and same-moment events included.
    Machine signals are not counted unless they score. Built lazily: rules without a count
    condition never touch it."""

    def __init__(
        self, new: Sequence[EventFact], prior: Sequence[EventFact], count_machine: bool
    ) -> None:
        self.new = new
        seen = {event.id for event in new}
        self.events = [*new, *(event for event in prior if event.id not in seen)]
        self.prior = self.events[len(new) :]
        self.count_machine = count_machine
        self.times: dict[int, list[datetime]] = {}

    def _counted(self, event: EventFact) -> bool:
        return self.count_machine or event.properties.get("machine") is not True

    def _times(self, rule: Rule) -> list[datetime]:
        if rule.id not in self.times:
            self.times[rule.id] = sorted(
                e.occurred_at for e in self.events if self._counted(e) and rule.matches(e)
            )
        return self.times[rule.id]

    def reached(self, rule: Rule, event: EventFact) -> bool:
        times = self._times(rule)
        at = event.occurred_at
        inside = bisect_right(times, at) - bisect_left(times, at - count_window(rule))
        return inside >= (rule.count_at_least or 0)

    def recounted(
        self, by_type: RulesByType, earned: Earned
    ) -> list[tuple[EventFact, Sequence[Rule]]]:
        """Prior events not yet scored by a count rule whose window now holds a new matching
        event, with those rules: only their count can have changed."""
        arrivals: dict[int, list[datetime]] = {}  # rule id -> new matching events' times
        again = []
        for event in self.prior:
            if not self._counted(event):
                continue
            rules = []
            for rule in by_type.get(event.type, ()):
                if not rule.count_at_least or (rule.id, event.identity) in earned.scored:
                    continue
                if rule.id not in arrivals:
                    arrivals[rule.id] = sorted(
                        new.occurred_at
                        for new in self.new
                        if self._counted(new) and rule.matches(new)
                    )
                times, at = arrivals[rule.id], event.occurred_at
                if bisect_right(times, at) > bisect_left(
                    times, at - count_window(rule)
                ) and rule.matches(event):
                    rules.append(rule)
            if rules:
                again.append((event, rules))
        return again


def _allowed_points(rule: Rule, event: EventFact, earned: Earned, tz: tzinfo) -> int:
    if rule.max_times is not None and earned.times.get(rule.id, 0) >= rule.max_times:
        return 0
    if rule.max_points is None or not rule.cap_period:
        return rule.points
    used = abs(
        earned.period_points.get((rule.id, period_start(event.occurred_at, rule.cap_period, tz)), 0)
    )
    room = max(0, rule.max_points - used)
    magnitude = min(abs(rule.points), room)
    return magnitude if rule.points >= 0 else -magnitude


def _remember(earned: Earned, rule: Rule, event: EventFact, points: int, tz: tzinfo) -> Earned:
    times = dict(earned.times)
    if points:
        times[rule.id] = times.get(rule.id, 0) + 1
    period_points = dict(earned.period_points)
    if rule.cap_period and points:
        key = (rule.id, period_start(event.occurred_at, rule.cap_period, tz))
        period_points[key] = period_points.get(key, 0) + points
    return replace(
        earned,
        times=times,
        period_points=period_points,
        scored=earned.scored | {(rule.id, event.identity)},
    )


def day_number(moment: datetime, tz: tzinfo) -> int:
    """The site-time-zone day of ``moment``, counted from 1 January 1970."""
    return (moment.astimezone(tz).date() - EPOCH_DAY).days


EPOCH_DAY = date(1970, 1, 1)


def faded_points(
    rule: Rule, points: int, occurred_at: datetime, *, as_of: datetime, tz: tzinfo
) -> int:
    """Recency: what ``points`` earned by an event are worth at ``as_of``. Full while the event
    is at most ``fade_full_days`` days old, none from ``fade_zero_days``, linearly in between;
    ages in whole days of the site's calendar (they change at midnight, when beat applies them:
    ``scoring.fading``), truncated toward zero (the rescore's integer division)."""
    full, zero = rule.fade_full_days, rule.fade_zero_days
    if full is None or zero is None:
        return points
    age = day_number(as_of, tz) - day_number(occurred_at, tz)
    if age <= full:
        return points
    if age >= zero:
        return 0
    size = abs(points) * (zero - age) // (zero - full)
    return size if points > 0 else -size


def period_start(moment: datetime, period: str, tz: tzinfo) -> date:
    """The first day of the day/week/month that holds ``moment``, in the site's time zone."""
    day = moment.astimezone(tz).date()
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown period {period!r}")


# --- Decay ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecayRule:
    id: int
    name: str
    inactive_days: int
    points: int = 0  # negative: points taken
    percent: int = 0  # or a share of a positive score, taken
    active: bool = True


def decay_points(
    rule: DecayRule, *, score: int, last_activity: datetime | None, as_of: datetime
) -> int:
    """Points a decay rule takes from a contact inactive since ``last_activity`` (0 if none).

    Decay never takes a score below zero: inactivity forgets interest, it does not create
    disinterest.
    """
    if not rule.active or last_activity is None or score <= 0:
        return 0
    if as_of - last_activity < timedelta(days=rule.inactive_days):
        return 0
    taken = abs(rule.points) if rule.points else round(score * rule.percent / 100)
    return -min(taken, score)


# --- Thresholds -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    id: int
    stage: str  # mql, hmql, sql or ambassador
    min_score: int | None = None
    event_types: tuple[str, ...] = ()  # qualifying events, e.g. demo_request
    content_tag: str = ""  # or qualifying content, e.g. high-intent
    exit_below: int | None = None  # hysteresis: leave only below this score
    demote: bool = False  # may fall back to lead
    active: bool = True
    min_fit_grade: str = ""  # and a fit grade this good or better (A best), e.g. SQL needs B

    @property
    def actor_name(self) -> str:
        """Who moved a contact, as a reason code: "Threshold: SQL at 60 points or …"."""
        fit = {"fit": self.min_fit_grade} if self.min_fit_grade else {}
        return coded(
            "threshold",
            stage=self.stage,
            score=self.min_score,
            events=list(self.event_types),
            tag=self.content_tag,
            **fit,
        )

    def reached_by(self, score: int, events: Iterable[EventFact], grade: str = "") -> bool:
        """The score or a qualifying event, and the contact's fit ``grade`` when the
        threshold asks for one (a contact without a grade then never reaches it)."""
        if not self.active or not grade_meets(grade, self.min_fit_grade):
            return False
        if self.min_score is not None and score >= self.min_score:
            return True
        return any(self.qualifies(event) for event in events)

    def qualifies(self, event: EventFact) -> bool:
        if event.type in self.event_types:
            return True
        return bool(self.content_tag) and event.properties.get("content_tag") == self.content_tag


@dataclass(frozen=True)
class Move:
    to: str
    threshold: Threshold
    reason: str


def stage_moves(
    stage: str,
    score: int,
    events: Sequence[EventFact],
    thresholds: Sequence[Threshold],
    grade: str = "",
) -> list[Move]:
    """The stage move a new score (and the new events) call for: none, or one.

    Up: lead, MQL and HMQL go straight to the highest stage whose threshold is reached, in one
    move (a contact that jumps from MQL to SQL was never an HMQL: no stay of zero minutes in
    the history); a client with a qualifying event becomes an ambassador. Down: an MQL or HMQL
    whose threshold allows it falls back to lead once its score is below the exit score. SQL,
    client and ambassador are never moved down by a score (a rescore may find that the rules
    never brought them there: ``stages_walk``).
    """
    by_stage = {t.stage: t for t in thresholds if t.active}
    target = _stage_target(stage, score, events, by_stage, grade)
    return [_move(stage, *target, score, events, grade)] if target else []


def _stage_target(
    stage: str,
    score: int,
    events: Sequence[EventFact],
    by_stage: Mapping[str, Threshold],
    grade: str,
) -> tuple[str, Threshold] | None:
    """Where ``stage_moves`` goes and by which threshold; the reason is worded by ``_move``
    (a walk words only its last move)."""
    if stage == "client":
        ambassador = by_stage.get("ambassador")
        if ambassador and ambassador.reached_by(score, events, grade):
            return "ambassador", ambassador
        return None
    if stage not in MARKETING_STAGES:
        return None
    here = RANK[stage]
    for goal in ("sql", "hmql", "mql"):  # the highest stage reached, above this one
        if RANK[goal] <= here:
            break
        final = by_stage.get(goal)
        if final is not None and final.reached_by(score, events, grade):
            return goal, final
    current = by_stage.get(stage)
    if current and current.demote and current.exit_below is not None and score < current.exit_below:
        return "lead", current
    return None


def _move(
    stage: str,
    to: str,
    threshold: Threshold,
    score: int,
    events: Iterable[EventFact],
    grade: str = "",
) -> Move:
    if RANK[to] < RANK[stage]:
        return Move(to, threshold, coded("score_below", score=score, exit=threshold.exit_below))
    why = _why(threshold, score, events)
    if threshold.min_fit_grade:
        why = coded("fit_reached", reached=why, grade=grade, min=threshold.min_fit_grade)
    return Move(to, threshold, why)


# --- Stages as a function of the history ------------------------------------------------------


class Step(NamedTuple):  # a tuple: live scoring makes one per event
    """One moment of a contact's history that thresholds look at, in time order.

    A scored event (``points``, the sum of its ledger lines, and the event itself when a
    threshold may qualify it), a ledger line without event (decay, a sequence's points), or a
    stage a person (or anything but a threshold) gave the contact: ``stage``, which thresholds
    then take from (a claim is one: the claimed SQL stays one).
    """

    at: datetime
    points: int = 0
    facts: tuple[EventFact, ...] = ()
    stage: str = ""


@dataclass(frozen=True)
class Walk:
    """Where a contact's history leads: its stage and score, and why it has that stage.

    ``threshold`` and ``reason`` name the threshold that moved it there last and the figures
    then (``None`` and "" when a person gave it the stage, or nothing moved it); ``at`` is when.
    """

    stage: str
    score: int
    threshold: Threshold | None = None
    reason: str = ""
    at: datetime | None = None


def stages_walk(
    stage: str,
    score: int,
    steps: Iterable[Step],
    thresholds: Sequence[Threshold],
    grade: str = "",
) -> Walk:
    """The stage a contact reaches from ``stage`` and ``score`` through ``steps`` (in time
    order) under ``thresholds``: ``stage_moves`` after every step, a person's stage as given.
    ``grade`` is the contact's fit grade now: a fact about the person, not an event of the
    history, so it holds at every step (a threshold that asks for a grade is reached only
    with it, and a grade that changes sends the contact through its walk again).

    The one definition of a contact's stage that live scoring (a batch's events, continuing
    from the contact as it is) and a rescore (the whole history, from the contact's first
    stage) both apply, so the two agree whatever order rules and thresholds were edited in.
    """
    by_stage = {t.stage: t for t in thresholds if t.active}
    last: tuple[str, str, Threshold, int, tuple[EventFact, ...], str] | None = None
    at = None
    for step in steps:
        score += step.points
        if step.stage:
            stage, last, at = step.stage, None, step.at
            continue
        target = _stage_target(stage, score, step.facts, by_stage, grade)
        if target:
            last, at = (stage, *target, score, step.facts, grade), step.at
            stage = target[0]
    if last is None:
        return Walk(stage, score, at=at)
    move = _move(*last)
    return Walk(stage, score, move.threshold, move.reason, at)


def _why(threshold: Threshold, score: int, events: Iterable[EventFact]) -> str:
    """Why the threshold is reached, as a reason code (``contacts.reasons``)."""
    for event in events:
        if threshold.qualifies(event):
            if event.type in threshold.event_types:
                return coded("qualifying_event", type=event.type)
            return coded("qualifying_content", tag=threshold.content_tag)
    return coded("score_reached", score=score, min=threshold.min_score)


# --- Helpers --------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A property as text, the way the database reads a JSON value (true, not True)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else ("" if value is None else str(value))


def as_number(value: Any) -> Decimal | None:
    """A property as a number, or None: a JSON number (not a boolean), or a string holding a
    plain decimal (``PLAIN_NUMBER``). Compared exactly: a float by its shortest text (0.1 is
    0.1), as PostgreSQL reads the JSON; SQLite compares doubles, the same order for bounds of
    at most 15 digits (the admin's limit)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, str) and _plain_number.search(value):
        return Decimal(value)
    return None


_plain_number = re.compile(PLAIN_NUMBER)


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)
