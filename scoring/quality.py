"""How well the score predicts outcomes: of the contacts whose outcome (won or lost) is known,
conversion by score band, ROC AUC of the score, precision and recall of MQL and SQL, lift of the
top score decile; and the AUC a previewed rule change would give on the same contacts.

The statistics are plain functions over plain values (tested without a database); two
functions read the database: ``known_outcomes`` (one query) and ``auc_for_scores``. Measured
on PostgreSQL (6 December 2026, analysed tables): the whole report over 20,302 outcomes with
40,000 stage changes and 100,000 ledger lines took 0.6 s, 0.34 s of it the query."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from itertools import groupby

from django.db.models import Exists, F, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce

from contacts.models import Contact, ContactOutcome, StageChange
from contacts.reports.dashboard import Period
from scoring.models import ScoreEntry

# Below this many won or lost contacts, a figure says more about chance than about the score.
MIN_PER_CLASS = 20
DEFAULT_DAYS = 365
MAX_BANDS = 10
# Band widths that read well, tried in order; beyond them, powers of ten times these.
NICE_WIDTHS = (1, 2, 2.5, 5)

# A contact "reached" a stage if its history shows a move into it or past it before its outcome
# (client and ambassador are outcomes, not predictions).
STAGES_AT_OR_PAST = {
    Contact.Stage.MQL: (Contact.Stage.MQL, Contact.Stage.HMQL, Contact.Stage.SQL),
    Contact.Stage.SQL: (Contact.Stage.SQL,),
}


@dataclass(frozen=True)
class ScoredOutcome:
    """A contact with a known outcome, as the report reads it."""

    contact_id: int
    score: int
    won: bool
    reached: frozenset[str] = frozenset()  # the stages of STAGES_AT_OR_PAST it reached
    score_before: int | None = None  # its ledger's sum just before the outcome
    fit_grade: str = ""  # its fit grade now (A–D)


# --- Statistics (no database) ----------------------------------------------------------------


def roc_auc(scores: Sequence[float], won: Sequence[bool]) -> float | None:
    """The probability that a won contact scores above a lost one, ties counting half (the
    Mann–Whitney U over both class sizes), from rank sums with tied scores sharing their mean
    rank. Exact: ranks are doubled so every sum stays an integer. None without both classes."""
    positives = sum(1 for outcome in won if outcome)
    negatives = len(won) - positives
    if not positives or not negatives:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    doubled_rank_sum = 0  # twice the sum of the won contacts' ranks
    position = 0
    for _score, tied in groupby(order, key=lambda i: scores[i]):
        members = list(tied)
        first, last = position + 1, position + len(members)
        doubled_rank_sum += (first + last) * sum(1 for i in members if won[i])
        position = last
    doubled_u = doubled_rank_sum - positives * (positives + 1)
    return float(Fraction(doubled_u, 2 * positives * negatives))


@dataclass(frozen=True)
class Band:
    low: int | None  # None: every score below 0
    high: int | None  # None: open-ended ("low and more")
    contacts: int
    won: int

    @property
    def lost(self) -> int:
        return self.contacts - self.won

    @property
    def rate(self) -> float | None:
        return 100 * self.won / self.contacts if self.contacts else None


def band_width(top: float) -> int:
    """The smallest width that reads well (1, 2, 5, 10, 20, 25, 50, 100…) cutting 0..top into
    at most MAX_BANDS bands."""
    scale = 1
    while True:
        for nice in NICE_WIDTHS:
            width = nice * scale
            if width == int(width) and top // width + 1 <= MAX_BANDS:
                return int(width)
        scale *= 10


def score_bands(known: Sequence[ScoredOutcome]) -> list[Band]:
    """Contacts and won per band of the score: below 0 (if any), then bands of one width from 0
    up to the 95th percentile, the last one open-ended; bands between are kept when empty."""
    scores = sorted(contact.score for contact in known)
    positive = [score for score in scores if score >= 0]
    top = positive[math.ceil(0.95 * len(positive)) - 1] if positive else 0
    width = band_width(top)
    count = top // width + 1
    contacts = [0] * count
    won = [0] * count
    below = below_won = 0
    for contact in known:
        if contact.score < 0:
            below += 1
            below_won += contact.won
            continue
        index = min(contact.score // width, count - 1)
        contacts[index] += 1
        won[index] += contact.won
    bands = [Band(None, -1, below, below_won)] if below else []
    for index in range(count):
        low = index * width
        high = None if index == count - 1 else low + width - 1
        bands.append(Band(low, high, contacts[index], won[index]))
    return bands


@dataclass(frozen=True)
class GradeRow:
    """Conversion of the contacts of one fit grade."""

    grade: str
    contacts: int
    won: int

    @property
    def lost(self) -> int:
        return self.contacts - self.won

    @property
    def rate(self) -> float | None:
        return 100 * self.won / self.contacts if self.contacts else None


def grade_rows(known: Sequence[ScoredOutcome]) -> list[GradeRow]:
    """Conversion per fit grade, A to D (a grade nobody has is left out)."""
    counts: dict[str, list[int]] = {}
    for contact in known:
        tally = counts.setdefault(contact.fit_grade, [0, 0])
        tally[0] += 1
        tally[1] += contact.won
    return [GradeRow(grade, n, won) for grade, (n, won) in sorted(counts.items()) if grade]


@dataclass(frozen=True)
class StageCall:
    """Reaching a stage read as a prediction of a win."""

    stage: str
    reached: int
    reached_won: int
    won: int

    @property
    def label(self) -> str:
        return str(Contact.Stage(self.stage).label)

    @property
    def precision(self) -> float | None:
        return 100 * self.reached_won / self.reached if self.reached else None

    @property
    def recall(self) -> float | None:
        return 100 * self.reached_won / self.won if self.won else None


def stage_calls(known: Sequence[ScoredOutcome]) -> list[StageCall]:
    won = sum(1 for contact in known if contact.won)
    calls = []
    for stage in STAGES_AT_OR_PAST:
        reached = [contact for contact in known if stage in contact.reached]
        calls.append(
            StageCall(
                stage=stage,
                reached=len(reached),
                reached_won=sum(1 for contact in reached if contact.won),
                won=won,
            )
        )
    return calls


@dataclass(frozen=True)
class Lift:
    top_rate: float  # % won among the top tenth by score
    overall_rate: float  # % won among all

    @property
    def lift(self) -> float:
        return self.top_rate / self.overall_rate


def top_decile_lift(known: Sequence[ScoredOutcome]) -> Lift | None:
    """Conversion of the highest-scored tenth against everyone's. Contacts tied with the tenth's
    lowest score join it in proportion (their win rate times the places left), which is what
    breaking the tie at random would give on average. None without a win."""
    total = len(known)
    wins = sum(1 for contact in known if contact.won)
    if not total or not wins:
        return None
    places = Fraction(total, 10)
    top_wins = Fraction(0)
    ranked = sorted(known, key=lambda contact: -contact.score)
    for _score, tied in groupby(ranked, key=lambda contact: contact.score):
        group = list(tied)
        taken = min(places, len(group))
        top_wins += taken * Fraction(sum(1 for contact in group if contact.won), len(group))
        places -= taken
        if not places:
            break
    return Lift(
        top_rate=float(100 * top_wins / Fraction(total, 10)),
        overall_rate=100 * wins / total,
    )


# --- The report ------------------------------------------------------------------------------


def default_period(today: date) -> Period:
    return Period.last(DEFAULT_DAYS, today)


def known_outcomes(period: Period) -> list[ScoredOutcome]:
    """Contacts whose outcome is dated in ``period``, with their score now, their ledger's sum
    just before the outcome, and the stages they had reached before it (one query; the stage
    history and the ledger are read through their (contact, at) indexes)."""
    start, end = period.bounds()
    reached = {
        f"reached_{stage}": Exists(
            StageChange.objects.filter(
                contact=OuterRef("contact"), to_stage__in=stages, at__lt=OuterRef("at")
            )
        )
        for stage, stages in STAGES_AT_OR_PAST.items()
    }
    ledger_before = (
        ScoreEntry.objects.filter(contact=OuterRef("contact"), at__lt=OuterRef("at"))
        .order_by()
        .values("contact")
        .annotate(total=Sum("points"))
        .values("total")
    )
    rows = (
        ContactOutcome.objects.filter(at__gte=start, at__lt=end)
        .annotate(
            score=F("contact__score"),
            score_before=Coalesce(Subquery(ledger_before), 0),
            fit_grade=F("contact__fit_grade"),
            **reached,
        )
        .order_by()
        .values_list("contact_id", "score", "result", "score_before", "fit_grade", *reached)
    )
    return [
        ScoredOutcome(
            contact_id=contact_id,
            score=score,
            won=result == ContactOutcome.Result.WON,
            score_before=score_before,
            fit_grade=fit_grade,
            reached=frozenset(
                stage for stage, hit in zip(STAGES_AT_OR_PAST, flags, strict=True) if hit
            ),
        )
        for contact_id, score, result, score_before, fit_grade, *flags in rows
    ]


@dataclass(frozen=True)
class Quality:
    period: Period
    won: int
    lost: int
    auc: float | None = None
    # The same ranking with the score each contact had just before its outcome: points earned
    # afterwards (a client's later activity) cannot help it.
    auc_before_outcome: float | None = None
    bands: tuple[Band, ...] = ()
    stage_calls: tuple[StageCall, ...] = ()
    lift: Lift | None = None
    grades: tuple[GradeRow, ...] = ()

    @property
    def total(self) -> int:
        return self.won + self.lost

    @property
    def enough(self) -> bool:
        return enough(self.won, self.lost)


def enough(won: int, lost: int) -> bool:
    return won >= MIN_PER_CLASS and lost >= MIN_PER_CLASS


def quality_of(known: Sequence[ScoredOutcome], period: Period) -> Quality:
    """The report's figures for these contacts; only the counts when there are too few."""
    won = sum(1 for contact in known if contact.won)
    lost = len(known) - won
    if not enough(won, lost):
        return Quality(period=period, won=won, lost=lost)
    return Quality(
        period=period,
        won=won,
        lost=lost,
        auc=roc_auc([c.score for c in known], [c.won for c in known]),
        auc_before_outcome=roc_auc(
            [c.score if c.score_before is None else c.score_before for c in known],
            [c.won for c in known],
        ),
        bands=tuple(score_bands(known)),
        stage_calls=tuple(stage_calls(known)),
        lift=top_decile_lift(known),
        grades=tuple(grade_rows(known)),
    )


def score_quality(period: Period) -> Quality:
    return quality_of(known_outcomes(period), period)


# --- A previewed rule change ------------------------------------------------------------------


@dataclass(frozen=True)
class RankingChange:
    """How the scores now and the scores of a previewed rule change rank the same outcomes."""

    period: Period
    won: int
    lost: int
    current: float | None
    new: float | None

    @property
    def enough(self) -> bool:
        return enough(self.won, self.lost)


def auc_for_scores(
    new_scores_by_contact: Mapping[int, int],
    *,
    today: date,
    known: Iterable[ScoredOutcome] | None = None,
) -> RankingChange:
    """The AUC of the scores now and of the scores a rule change would give, on the outcomes
    of the report's default period; a contact missing from ``new_scores_by_contact`` keeps
    its score (the rescore's ``new_scores`` lists only the scores that change)."""
    period = default_period(today)
    contacts = list(known_outcomes(period) if known is None else known)
    won = [contact.won for contact in contacts]
    wins = sum(won)
    if not enough(wins, len(contacts) - wins):
        return RankingChange(period, wins, len(contacts) - wins, None, None)
    current = [contact.score for contact in contacts]
    new = [new_scores_by_contact.get(contact.contact_id, contact.score) for contact in contacts]
    return RankingChange(
        period, wins, len(contacts) - wins, roc_auc(current, won), roc_auc(new, won)
    )
