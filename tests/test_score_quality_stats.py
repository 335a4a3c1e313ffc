"""The score-vs-outcome statistics, by hand-computed cases (no database)."""

from __future__ import annotations

import random
from datetime import date

import pytest

from contacts.reports.dashboard import Period
from scoring.quality import (
    Band,
    ScoredOutcome,
    auc_for_scores,
    band_width,
    quality_of,
    roc_auc,
    score_bands,
    stage_calls,
    top_decile_lift,
)


def known(*pairs: tuple[int, bool], reached: tuple[str, ...] = ()) -> list[ScoredOutcome]:
    return [
        ScoredOutcome(contact_id=n, score=score, won=won, reached=frozenset(reached))
        for n, (score, won) in enumerate(pairs, start=1)
    ]


@pytest.mark.parametrize(
    ("_case", "scores", "won", "auc"),
    [
        ("every win above every loss", [1, 2, 3, 4], [False, False, True, True], 1.0),
        ("every win below every loss", [4, 3, 2, 1], [False, False, True, True], 0.0),
        ("one tie between a win and a loss", [1, 1], [True, False], 0.5),
        # Pairs (won, lost): (5, 0) 1, (5, 5) ½, (10, 0) 1, (10, 5) 1: 3.5 of 4.
        ("a tie among others", [0, 5, 5, 10], [False, True, False, True], 0.875),
        # Everyone at 0: the score says nothing.
        ("all tied", [0, 0, 0, 0, 0], [True, False, True, False, False], 0.5),
        # Pairs: (3, 1) 1, (3, 3) ½, (3, 2) 1, (2, 1) 1, (2, 3) 0, (2, 2) ½: 4 of 6.
        ("ties on both sides", [3, 2, 1, 3, 2], [True, True, False, False, False], 4 / 6),
    ],
)
def test_auc_of_hand_computed_cases(_case, scores, won, auc):
    assert roc_auc(scores, won) == pytest.approx(auc, abs=1e-12)


def test_auc_equals_the_share_of_won_lost_pairs_ranked_right_on_random_scores():
    rng = random.Random(7)
    for _ in range(30):
        scores = [rng.randrange(-3, 6) for _ in range(40)]
        won = [rng.random() < 0.4 for _ in range(40)]
        pairs = [
            1.0 if w > lo else 0.5 if w == lo else 0.0
            for w, is_won in zip(scores, won, strict=True)
            if is_won
            for lo, is_lost in zip(scores, won, strict=True)
            if not is_lost
        ]
        assert roc_auc(scores, won) == pytest.approx(sum(pairs) / len(pairs), abs=1e-12)


def test_auc_needs_both_won_and_lost():
    assert roc_auc([1, 2], [True, True]) is None
    assert roc_auc([1, 2], [False, False]) is None
    assert roc_auc([], []) is None


@pytest.mark.parametrize(
    ("top", "width"),
    [(0, 1), (9, 1), (10, 2), (19, 2), (20, 5), (95, 10), (100, 20), (240, 25), (2400, 250)],
)
def test_band_width_reads_well_and_makes_at_most_ten_bands(top, width):
    assert band_width(top) == width
    assert top // width + 1 <= 10


def test_score_bands_count_contacts_and_wins_per_band():
    contacts = known((-5, False), (0, False), (5, True), (12, True), (15, False), (30, True))

    bands = score_bands(contacts)

    # The 95th percentile of the scores from 0 is 30: bands of 5, the last one open-ended.
    assert bands == [
        Band(None, -1, 1, 0),
        Band(0, 4, 1, 0),
        Band(5, 9, 1, 1),
        Band(10, 14, 1, 1),
        Band(15, 19, 1, 0),
        Band(20, 24, 0, 0),
        Band(25, 29, 0, 0),
        Band(30, None, 1, 1),
    ]
    assert bands[2].rate == 100.0 and bands[1].rate == 0.0 and bands[5].rate is None


def test_a_score_beyond_the_95th_percentile_lands_in_the_open_last_band():
    contacts = known(*[(score, score % 2 == 0) for score in range(20)], (1000, True))

    bands = score_bands(contacts)

    assert bands[-1].low == 18 and bands[-1].high is None
    assert bands[-1].contacts == 3 and bands[-1].won == 2  # 18, 19 and 1000
    assert sum(band.contacts for band in bands) == 21


def test_lift_of_the_top_decile_when_it_holds_the_wins():
    # 20 contacts: the two best are won, and two of the rest: 100 % against 20 %.
    contacts = known(*[(score, score in (19, 18, 3, 1)) for score in range(20)])

    lift = top_decile_lift(contacts)

    assert lift is not None
    assert lift.top_rate == 100.0 and lift.overall_rate == 20.0 and lift.lift == 5.0


def test_lift_shares_the_last_places_among_tied_contacts():
    # 20 contacts, 2 places: the 10 (won), then a quarter of a place's worth of wins from the
    # four tied at 5 (one of them won): 1.25 wins in 2 places.
    contacts = known(
        (10, True), (5, True), (5, False), (5, False), (5, False), *[(0, False)] * 13, (0, True),
        (0, True),
    )  # fmt: skip

    lift = top_decile_lift(contacts)

    assert lift is not None
    assert lift.top_rate == 62.5 and lift.overall_rate == 20.0
    assert lift.lift == pytest.approx(3.125)


def test_when_everyone_ties_the_top_decile_is_no_better_than_the_rest():
    lift = top_decile_lift(known(*[(0, n % 2 == 0) for n in range(10)]))

    assert lift is not None and lift.lift == 1.0


def test_lift_needs_a_win():
    assert top_decile_lift(known((5, False), (1, False))) is None
    assert top_decile_lift([]) is None


def test_precision_and_recall_of_reaching_mql_and_sql():
    contacts = [
        *known((10, True), (10, True), (10, False), reached=("mql", "sql")),
        *known((5, True), (5, False), reached=("mql",)),
        *known((0, True), (0, False), (0, False)),
    ]

    mql, sql = stage_calls(contacts)

    # MQL: 5 reached it, 3 of them won; 4 won in all.
    assert (mql.stage, mql.reached, mql.reached_won, mql.won) == ("mql", 5, 3, 4)
    assert mql.precision == 60.0 and mql.recall == 75.0
    assert (sql.reached, sql.reached_won) == (3, 2)
    assert sql.precision == pytest.approx(200 / 3) and sql.recall == 50.0


PERIOD = Period(date(2026, 1, 1), date(2026, 12, 31))


def test_too_few_outcomes_give_counts_and_no_figures():
    contacts = known(*[(n, True) for n in range(30)], *[(n, False) for n in range(19)])

    report = quality_of(contacts, PERIOD)

    assert (report.won, report.lost, report.enough) == (30, 19, False)
    assert report.auc is None and report.bands == () and report.lift is None


def test_enough_outcomes_give_every_figure():
    contacts = known(*[(n, True) for n in range(10, 30)], *[(n, False) for n in range(20)])

    report = quality_of(contacts, PERIOD)

    assert report.enough and report.total == 40
    # Wins 10..29 against losses 0..19: 10 ties (½ each) and 190 pairs won outright of 400.
    assert report.auc == pytest.approx((400 - 45 - 5) / 400)
    assert sum(band.contacts for band in report.bands) == 40
    assert report.lift is not None and report.lift.top_rate == 100.0


def test_auc_for_scores_compares_the_rules_now_with_a_change():
    contacts = known(*[(0, True)] * 20, *[(0, False)] * 20)
    # The change lifts every won contact by 10 points and one lost contact by 20.
    new_scores = {contact.contact_id: 10 for contact in contacts if contact.won}
    new_scores[contacts[-1].contact_id] = 20

    ranking = auc_for_scores(new_scores, today=date(2026, 12, 6), known=contacts)

    assert ranking.enough and ranking.current == 0.5
    assert ranking.new == pytest.approx(19 / 20)  # only the one lost at 20 outranks the wins


def test_auc_for_scores_gives_none_with_too_few_outcomes():
    ranking = auc_for_scores({}, today=date(2026, 12, 6), known=known((1, True), (0, False)))

    assert not ranking.enough and ranking.current is None and ranking.new is None


def test_grade_rows_count_each_grade_and_leave_out_those_nobody_has():
    from scoring.quality import ScoredOutcome, grade_rows

    known = [
        ScoredOutcome(contact_id=1, score=0, won=True, fit_grade="A"),
        ScoredOutcome(contact_id=2, score=0, won=False, fit_grade="A"),
        ScoredOutcome(contact_id=3, score=0, won=True, fit_grade="A"),
        ScoredOutcome(contact_id=4, score=0, won=False, fit_grade="D"),
    ]

    rows = grade_rows(known)

    assert [(r.grade, r.contacts, r.won, r.lost) for r in rows] == [("A", 3, 2, 1), ("D", 1, 0, 1)]
    assert round(rows[0].rate, 1) == 66.7 and rows[1].rate == 0
