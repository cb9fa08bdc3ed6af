"""Holm's correction of the board's pairwise tests (leaderboard.headline: paired_p_values, holm, pairwise_tests):
hand-computed answers, and a board where the uncorrected paired bootstrap separates two methods that Holm ties."""

from __future__ import annotations

import numpy as np

from leaderboard.board import tied_with
from leaderboard.headline import headline, holm, paired_p_values, pairwise_tests
from test_board import make_records
from test_headline import family_rows


def test_holm_matches_a_hand_computed_step_down():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> raised to 0.06 (monotone)
    assert np.allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    assert np.allclose(holm([0.5, 0.9]), [1.0, 1.0])  # 0.5 x 2 capped at 1; 0.9 x 1 raised to it
    out = holm([0.02, np.nan, 0.01])  # NaN is no test: m = 2
    assert np.isnan(out[1]) and np.allclose(out[[0, 2]], [0.02, 0.02])


def test_paired_p_value_is_the_share_of_shifted_draws_as_extreme():
    point = np.array([0.5, 0.3])
    draws = np.array([[0.5, 0.3], [0.6, 0.3], [0.4, 0.3], [0.5, 0.5]])  # deltas 0.2, 0.3, 0.1, 0.0
    p = paired_p_values(point, draws)
    # |delta* - 0.2| = 0, 0.1, 0.1, 0.2: one of 4 reaches |0.2| -> (1 + 1) / (4 + 1)
    assert np.isclose(p[0, 1], 0.4) and np.isclose(p[1, 0], 0.4) and np.isnan(p[0, 0])
    same = paired_p_values(np.array([0.5, 0.5]), np.full((4, 2), 0.5))
    assert same[0, 1] == 1.0  # no difference at all is no evidence


def test_three_marginal_pairs_are_significant_alone_and_tied_after_holm():
    """Six methods in three close pairs far apart: within a pair the better one falls 0.2 below its partner in 29
    of 1,000 draws (p = 30/1001 alone), no draw brings two pairs near each other (p = 1/1001)."""
    point = np.array([3.0, 2.8, 2.0, 1.8, 1.0, 0.8])
    draws = np.tile(point, (1000, 1))
    for pair in range(3):
        draws[pair * 29:(pair + 1) * 29, 2 * pair] -= 0.4
    better, p, adjusted = pairwise_tests(point, draws)
    assert np.isclose(p[0, 1], 30 / 1001) and p[0, 1] < 0.05  # |-0.2 - 0.2| >= 0.2 in 29 draws, + 1
    assert np.isclose(p[0, 2], 1 / 1001)
    # Holm over 15 pairs: the 12 far pairs are the smallest (1/1001 x 15..4), the three close ones 30/1001 x 3
    assert np.isclose(adjusted[0, 2], 15 / 1001) and np.isclose(adjusted[0, 1], 90 / 1001)
    close = [(0, 1), (2, 3), (4, 5)]
    assert all(not better[i, j] and not better[j, i] for i, j in close)  # tied after Holm
    assert all(better[i, j] for i in range(6) for j in range(6) if j > i and (i, j) not in close)


def test_a_board_where_the_uncorrected_test_separates_a_pair_that_holm_ties():
    rng = np.random.default_rng(5)
    rows = []
    for layer in range(10):
        values = np.array([0.4, 0.3, 0.2, 0.1]) + rng.normal(0, 0.12, 4)
        rows += family_rows(dict(zip("abcd", values.round(3))), layers=(layer,))
    table = headline(make_records(*rows))
    p = {(a[1], b[1]): value for (a, b), value in table.attrs["p_values"].items()}
    assert p[("b", "c")][0] < 0.05 <= p[("b", "c")][1]  # uncorrected: different; Holm: tied
    assert (("builtin", "b"), ("builtin", "c")) not in table.attrs["significant"]
    assert (("builtin", "a"), ("builtin", "c")) in table.attrs["significant"]
    assert dict(zip(table["method"], table["tier"])) == {"a": 1, "b": 1, "c": 2, "d": 3}
    ranking = table.assign(name=table["method"])
    tied = dict(zip(table["method"], tied_with(ranking, table.attrs["significant"])))
    assert tied["c"] == "b, d" and tied["a"] == "b"
