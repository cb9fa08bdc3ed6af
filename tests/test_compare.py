"""`neuronbench-board compare`: rank correlations of two boards' method orders, at the headline and per cell."""

from __future__ import annotations

import pytest

from leaderboard.compare import compare, render_compare
from test_board import make_records
from test_headline import family_rows

GOOD = {"a": 0.9, "b": 0.7, "c": 0.5, "d": 0.3}


def board(values: dict[str, float], model: str, layers) -> list[dict]:
    return [{**row, "model": model} for row in family_rows(values, layers=layers)]


def test_the_same_order_on_another_model_correlates_one_and_a_reversed_one_minus_one():
    deep = make_records(*board(GOOD, "deep", layers=(0, 2, 4)))
    shallow = make_records(*board({m: 1 - v for m, v in GOOD.items()}, "shallow", layers=(0, 1, 2)))
    same = compare(deep, make_records(*board(GOOD, "shallow", layers=(0, 1, 2))))
    assert same["headline"] == pytest.approx((1.0, 1.0, 4))
    assert len(same["cells"]) == 3  # layers matched by depth position: 0-0, 2-1, 4-2
    assert same["cells"]["spearman"].tolist() == pytest.approx([1.0] * 3)
    flipped = compare(deep, shallow)
    assert flipped["headline"][:2] == pytest.approx((-1.0, -1.0))
    assert "| probe | -1.000 | -1.000 | 3 |" in render_compare(flipped, "deep", "shallow")
