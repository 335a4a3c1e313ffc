"""Score rules suggested from the team's own won and lost history.

From contacts whose outcome is known, every condition an ordinary rule can express becomes a
yes/no feature of each contact ("viewed a page whose URL contains /pricing at least twice
within 30 days", "downloaded something", "a page view of at least 120 seconds"), and recent
activity becomes a count ("pricing page views at most 30 days old"). A sparse,
regularised logistic regression (scikit-learn, L1 penalty) keeps the few features that rank
outcomes best; their weights, scaled and rounded, become integer points. Each suggested rule
gives its points once per contact (``max_times = 1``), or, for recent activity, for each such
event while it is at most D days old (a fading rule with full points for D days, none from
D + 1), so a contact's score under the suggested set is exactly the sum the model ranks by at
the moment its outcome was decided: nothing is lost between the model and the rules people
read and edit. Ages count days of the site's calendar, as the scoring engine's do.

The features are computed over arrays of all events at once (numpy), one pass per candidate
feature, so 100,000 contacts × 1,000,000 events take seconds rather than a Python loop's
minutes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from django.utils import timezone
from django.utils.translation import gettext as _

from contacts.models import Event
from scoring.engine import day_number

# Not learnt from: the funnel's own records, what only a customer does (the outcome itself,
# under another name), and what reps do once a lead is theirs (a call predicts a sale because
# sales leads get calls: a score rule on it would only echo the queue).
SYSTEM_TYPES = frozenset({"stage_changed", "purchase", "referral", "review"}) | Event.SALES_TYPES
COUNTS = (1, 2, 3, 5)  # "at least N"
WINDOWS = (7, 30, 365)  # "within D days" (a score rule's count always has its days)
RECENT = (7, 30, 90)  # "each one at most D days old"
QUANTILES = (0.5, 0.75, 0.9)  # thresholds tried on numeric properties
MAX_VALUES = 20  # a text property with more distinct values is not a condition
MIN_SUPPORT = 0.01  # a feature fewer than 1 % of the contacts have is not proposed
MIN_EACH = 50  # won and lost contacts needed, each
MAX_POINTS = 30  # the strongest suggested rule gives this many points
# Free text, never a condition of its own (URLs are cut to their first section instead).
FREE_TEXT = frozenset({"url", "title", "user_agent", "referrer", "email", "name", "message"})


@dataclass(frozen=True)
class Condition:
    """What one suggested rule asks of a contact's events, in the words of a score rule."""

    event_type: str
    url_contains: str = ""
    property_name: str = ""
    property_value: str = ""  # equals, as text
    at_least: float | None = None  # numeric: property_name >= at_least
    count: int = 1  # at least this many matching events...
    within_days: int | None = None  # ... within this many days (None: once is enough)
    recent_days: int | None = None  # each matching event at most this many days old counts

    def describe(self) -> dict[str, Any]:
        """The parts of a plain name, for ``contacts.reasons``-style translation."""
        return {k: v for k, v in self.__dict__.items() if v not in ("", None)}


@dataclass
class Events:
    """Every event of the contacts considered, as parallel arrays (one row per event): the
    event's contact (an index into ``contact_ids``), type, day, the first part of its URL's
    path, and each property as a column (text: ``None`` where absent; numbers: NaN). Ages are
    counted from each contact's reference day: the day its outcome was decided, else today."""

    contact: np.ndarray
    kind: np.ndarray
    day: np.ndarray  # days since the epoch
    calendar_day: np.ndarray  # the site calendar's day number (``engine.day_number``)
    reference_day: np.ndarray  # per contact, the calendar day ages are counted to
    section: np.ndarray
    texts: dict[str, np.ndarray]
    numbers: dict[str, np.ndarray]
    contact_ids: np.ndarray

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[tuple[int, str, datetime, Any]],
        contact_ids: Sequence[int],
        *,
        until: Mapping[int, datetime] | None = None,
        now: datetime | None = None,
    ) -> Events:
        """``rows`` of (contact id, type, occurred_at, properties), read once (a database
        iterator will do). Left out: machine signals (opens and clicks a mail filter made),
        as the scoring engine leaves them out; the funnel's own events; and a contact's
        events from ``until[contact]`` on."""
        until = until or {}
        tz = timezone.get_default_timezone()
        today = day_number(now or timezone.now(), tz)
        position = {pk: i for i, pk in enumerate(contact_ids)}
        contact: list[int] = []
        kind: list[str] = []
        day: list[float] = []
        calendar_day: list[int] = []
        section: list[str] = []
        texts: dict[str, dict[int, str]] = {}
        numbers: dict[str, dict[int, float]] = {}
        for pk, type_, at, properties in rows:
            if pk not in position or type_ in SYSTEM_TYPES:
                continue
            if pk in until and at >= until[pk]:
                continue
            properties = properties if isinstance(properties, dict) else {}
            if properties.get("machine") is True:
                continue
            row = len(kind)
            contact.append(position[pk])
            kind.append(type_)
            day.append(at.timestamp() / 86_400)
            calendar_day.append(day_number(at, tz))
            section.append(_section(_text(properties.get("url"))))
            for key, value in properties.items():
                if isinstance(value, bool) or key in FREE_TEXT:
                    continue
                if isinstance(value, int | float):
                    numbers.setdefault(key, {})[row] = float(value)
                elif isinstance(value, str):
                    texts.setdefault(key, {})[row] = value
        size = len(kind)
        return cls(
            contact=np.array(contact, dtype=np.int64),
            kind=np.array(kind, dtype=object),
            day=np.array(day, dtype=np.float64),
            calendar_day=np.array(calendar_day, dtype=np.int64),
            reference_day=np.array(
                [day_number(until[pk], tz) if pk in until else today for pk in contact_ids],
                dtype=np.int64,
            ),
            section=np.array(section, dtype=object),
            texts={key: _column(values, size, None, object) for key, values in texts.items()},
            numbers={
                key: _column(values, size, np.nan, np.float64) for key, values in numbers.items()
            },
            contact_ids=np.asarray(contact_ids, dtype=np.int64),
        )


def _column(values: dict[int, Any], size: int, empty: Any, dtype: Any) -> np.ndarray:
    column = np.full(size, empty, dtype=dtype)
    column[np.fromiter(values.keys(), dtype=np.int64, count=len(values))] = list(values.values())
    return column


@dataclass
class Features:
    conditions: list[Condition]
    matrix: np.ndarray  # contacts × conditions: 0/1, or a count for recent activity (uint16)


@dataclass(frozen=True)
class Suggestion:
    condition: Condition
    points: int
    support: float  # share of the contacts with an outcome that meet it
    lift: float  # their conversion rate over everyone's


@dataclass
class Suggested:
    rules: list[Suggestion]
    auc_suggested: float  # on held-out contacts
    auc_model: float  # the unrounded model, same contacts (the rounding's cost)
    held_out: np.ndarray  # positions (in the features' rows) of the contacts measured on
    trained_on: int


class TooFewOutcomes(Exception):
    """Not enough won and lost contacts to learn from; the message says how many are needed."""

    @classmethod
    def check(cls, *, won: int, lost: int) -> None:
        if min(won, lost) < MIN_EACH:
            raise cls(
                _(
                    "Suggestions need at least %(needed)s won and %(needed)s lost contacts; "
                    "there are %(won)s won and %(lost)s lost."
                )
                % {"needed": MIN_EACH, "won": won, "lost": lost}
            )


@dataclass(frozen=True)
class Known:
    """A contact's known outcome: won or not, and when it was decided (events from then on
    are not learnt from: they would describe a customer, not a lead)."""

    won: bool
    at: datetime | None = None


def rules_suggest(outcomes: Mapping[int, Known], *, seed: int = 0) -> Suggested:
    """Suggested rules from these contacts' outcomes (contact id -> Known), read with their
    events from the database."""
    won = sum(1 for known in outcomes.values() if known.won)
    TooFewOutcomes.check(won=won, lost=len(outcomes) - won)
    events, converted = outcome_events(outcomes)
    return suggest(features(events), converted, seed=seed)


def outcome_events(outcomes: Mapping[int, Known]) -> tuple[Events, np.ndarray]:
    """The events of these contacts from before their outcomes, and whether each was won
    (in the order of ``events.contact_ids``)."""
    ids = sorted(outcomes)
    rows = (
        Event.objects.filter(contact_id__any=set(ids))
        .order_by()
        .values_list("contact_id", "type", "occurred_at", "properties")
        .iterator(chunk_size=20_000)
    )
    until = {pk: known.at for pk, known in outcomes.items() if known.at}
    events = Events.from_rows(rows, ids, until=until)
    return events, np.array([outcomes[pk].won for pk in ids], dtype=bool)


# --- Features -----------------------------------------------------------------------------


def features(events: Events) -> Features:
    """Every candidate condition with enough support, and which contacts meet it."""
    n = len(events.contact_ids)
    conditions: list[Condition] = []
    columns: list[np.ndarray] = []
    for atom, mask in _atoms(events):
        for condition, met in _variants(atom, mask, events, n):
            share = np.count_nonzero(met) / n if n else 0.0
            if MIN_SUPPORT <= share < 1.0 or (condition.recent_days and share >= MIN_SUPPORT):
                conditions.append(condition)
                columns.append(np.minimum(met, np.iinfo(np.uint16).max))
    matrix = np.column_stack(columns).astype(np.uint16) if columns else np.zeros((n, 0), np.uint16)
    # The same column twice (e.g. "at least 2 within 365 days" when nobody has a year of
    # history) is kept once: the simplest wording, which comes first.
    _, first = np.unique(matrix.T, axis=0, return_index=True) if columns else ([], [])
    keep = sorted(first)
    return Features([conditions[i] for i in keep], matrix[:, keep])


def _atoms(events: Events):
    """(condition without counts or thresholds, mask of its events): each event type, each
    URL section of a type that has URLs, each value of a text property with few values."""
    for kind in sorted(set(events.kind.tolist())):
        of_kind = events.kind == kind
        yield Condition(event_type=kind), of_kind
        for section in _values(events.section[of_kind]):
            if section:
                yield (
                    Condition(event_type=kind, url_contains=section),
                    of_kind & (events.section == section),
                )
        for key, column in sorted(events.texts.items()):
            values = _values(column[of_kind])
            if len(values) > MAX_VALUES:
                continue
            for value in values:
                condition = Condition(event_type=kind, property_name=key, property_value=value)
                yield condition, of_kind & (column == value)


def _values(column: np.ndarray) -> list[str]:
    return sorted(v for v in set(column.tolist()) if v is not None)


def _variants(atom: Condition, mask: np.ndarray, events: Events, n: int):
    """The atom with counts ("at least N within D days"), as recent activity (how many of
    its events are at most D days old) and, where its events carry a number, with a threshold
    on it ("at least one with seconds ≥ 120")."""
    contacts, days = events.contact[mask], events.day[mask]
    if contacts.size == 0:
        return
    ever = np.bincount(contacts, minlength=n)
    yield atom, ever >= 1
    for count in COUNTS[1:]:
        for window in WINDOWS:
            yield (
                _with(atom, count=count, within_days=window),
                _most_within(contacts, days, window, n) >= count,
            )
    age = events.reference_day[contacts] - events.calendar_day[mask]
    for window in RECENT:
        yield _with(atom, recent_days=window), np.bincount(contacts[age <= window], minlength=n)
    for key, values in _numbers(mask, events).items():
        present = ~np.isnan(values)
        for q in QUANTILES:
            threshold = float(np.round(np.quantile(values[present], q)))
            met = np.zeros(n, dtype=bool)
            met[contacts[present & (values >= threshold)]] = True
            yield _with(atom, property_name=key, at_least=threshold), met


def _most_within(contacts: np.ndarray, days: np.ndarray, window: int, n: int) -> np.ndarray:
    """Per contact, the most of these events within any ``window`` days ending at one of them
    (the count a rule's "at least N within D days" compares at that event)."""
    order = np.lexsort((days, contacts))
    c, d = contacts[order], days[order]
    # Position of the first event of the same contact no older than ``window`` days: events
    # of one contact are contiguous, so a search on (contact, day) pairs finds it.
    key = c * 1e6 + d
    start = np.searchsorted(key, c * 1e6 + d - window, side="left")
    within = np.arange(len(c)) - start + 1
    most = np.zeros(n, dtype=np.int64)
    np.maximum.at(most, c, within)
    return most


def _numbers(mask: np.ndarray, events: Events) -> dict[str, np.ndarray]:
    """Numeric properties most of these events carry (NaN where one is absent)."""
    numbers = {}
    for key, column in sorted(events.numbers.items()):
        values = column[mask]
        if np.count_nonzero(~np.isnan(values)) >= max(1, values.size / 2):
            numbers[key] = values
    return numbers


def _with(atom: Condition, **changes: Any) -> Condition:
    return Condition(**{**atom.__dict__, **changes})


def _section(url: str) -> str:
    """The first part of a URL's path: "/blog" for "https://site/blog/post?x=1"."""
    path = url.split("://", 1)[-1]
    path = path[path.find("/") :] if "/" in path else "/"
    first = path.split("?", 1)[0].split("#", 1)[0].strip("/").split("/", 1)[0]
    return f"/{first}" if first else ""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


# --- The model ----------------------------------------------------------------------------


def suggest(
    found: Features, converted: np.ndarray, *, seed: int = 0, held_out: float = 0.3
) -> Suggested:
    """Fit the sparse model on part of the contacts, turn it into integer rules, and measure
    the rules on the others (area under the ROC curve of their scores)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    X = found.matrix.astype(np.float32)
    y = converted.astype(bool)
    train, test = train_test_split(
        np.arange(len(y)), test_size=held_out, random_state=seed, stratify=y
    )
    best = None
    for c in (0.01, 0.03, 0.1, 0.3):
        model = LogisticRegression(
            l1_ratio=1.0, C=c, solver="liblinear", max_iter=500, random_state=seed
        )
        fit_on, check_on = train_test_split(
            train, test_size=0.25, random_state=seed, stratify=y[train]
        )
        model.fit(X[fit_on], y[fit_on])
        auc = roc_auc_score(y[check_on], model.decision_function(X[check_on]))
        kept = int(np.count_nonzero(model.coef_))
        # Fewer rules when they rank nearly as well: people read these.
        if best is None or auc > best[0] + 0.003 or (auc > best[0] - 0.003 and kept < best[1]):
            best = (auc, kept, c)
    model = LogisticRegression(
        l1_ratio=1.0, C=best[2], solver="liblinear", max_iter=500, random_state=seed
    ).fit(X[train], y[train])
    weights = model.coef_[0]
    points = _points(weights, _typical(found.matrix))
    rate = y.mean() if len(y) else 0.0
    rules = []
    for i in np.flatnonzero(points):
        has = found.matrix[:, i] > 0
        rules.append(
            Suggestion(
                condition=found.conditions[i],
                points=int(points[i]),
                support=float(has.mean()),
                lift=float(y[has].mean() / rate) if rate and has.any() else 0.0,
            )
        )
    rules.sort(key=lambda s: -abs(s.points))
    scores = found.matrix[test].astype(np.int64) @ points
    return Suggested(
        rules=rules,
        auc_suggested=float(roc_auc_score(y[test], scores)),
        auc_model=float(roc_auc_score(y[test], model.decision_function(X[test]))),
        held_out=test,
        trained_on=len(train),
    )


def _typical(matrix: np.ndarray) -> np.ndarray:
    """Per feature, what a contact that has it typically has: 1 for a yes/no condition, the
    90th percentile of the non-zero counts for recent activity."""
    typical = np.ones(matrix.shape[1])
    for i in np.flatnonzero(matrix.max(axis=0) > 1):
        column = matrix[:, i]
        typical[i] = np.quantile(column[column > 0], 0.9)
    return typical


def _points(weights: np.ndarray, typical: np.ndarray) -> np.ndarray:
    """Weights as integer points on one scale (so the sum still ranks as the model does):
    the strongest feature, for a contact that typically has it, is worth ``MAX_POINTS``."""
    strongest = np.abs(weights * typical).max() if weights.size else 0.0
    if not strongest:
        return np.zeros(len(weights), dtype=np.int64)
    return np.rint(weights * (MAX_POINTS / strongest)).astype(np.int64)
