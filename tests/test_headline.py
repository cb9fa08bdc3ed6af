"""The headline (leaderboard.headline): shares of methods beaten per cell and family, clones counted once, noise
cells left out, a paired bootstrap over cells; known answers on hand-built records and invariances on a
published board."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leaderboard.headline import MIN_UNITS, headline
from leaderboard.records import unpack
from test_board import make_records

PUBLISHED = Path(__file__).resolve().parents[1] / "leaderboard/published/standard_minilm_l3/records.parquet"


def family_rows(values: dict[str, float], layers=(0,), seeds=(0,), ks=(1, 10), metric="probe_acc",
                noise=0.0) -> list[dict]:
    """Per-k rows of one family metric, each method at its value (plus `noise` x seed)."""
    return [{"method": method, "metric": metric, "layer": layer, "k": k, "seed": seed, "value": value + noise * seed}
            for method, value in values.items() for layer in layers for k in ks for seed in seeds]


def scores(table: pd.DataFrame) -> dict[str, float]:
    return dict(zip(table["method"], table["score"].round(6)))


def test_score_is_the_share_of_other_methods_beaten_averaged_over_families():
    records = make_records(*family_rows({"a": 0.9, "b": 0.5, "c": 0.7}),
                           *family_rows({"a": 0.1, "b": 0.3, "c": 0.2}, metric="selectivity"))
    table = headline(records)
    # probe: a beats 2 of 2, c 1, b 0; selectivity: b 2, c 1, a 0
    assert scores(table) == {"a": 0.5, "c": 0.5, "b": 0.5}
    assert table.set_index("method").loc["a", ["probe", "selectivity"]].tolist() == [1.0, 0.0]
    assert table.attrs["families"] == ["probe", "selectivity"]


def test_ties_count_half_and_coverage_does_not_matter():
    records = make_records(*family_rows({"a": 0.9, "b": 0.9, "c": 0.1}, layers=(0,)),
                           *family_rows({"a": 0.2, "b": 0.1, "c": 0.0}, layers=(0,), metric="selectivity"),
                           *family_rows({"c": 0.8, "d": 0.2}, layers=(1,)))
    table = headline(records).set_index("method")
    # probe: a and b tie (0.75 each), c 0 in layer 0 and 1 in layer 1, d 0; selectivity: a 1, b 0.5, c 0
    assert table["probe"].to_dict() == {"a": 0.75, "b": 0.75, "c": 0.5, "d": 0.0}
    assert table["score"].to_dict() == {"a": 0.875, "b": 0.625, "c": 0.25, "d": 0.0}
    assert table["cells"].to_dict() == {"a": 1, "b": 1, "c": 2, "d": 1}


def test_a_clone_under_a_new_name_changes_no_other_score_and_is_listed():
    rows = [*family_rows({"a": 0.9, "b": 0.6, "c": 0.3}, layers=(0, 1)),
            *family_rows({"a": 0.2, "b": 0.6, "c": 0.4}, layers=(0, 1), metric="ablate_drop_top")]
    before = headline(make_records(*rows))
    clone = [{**row, "method": "b_copy"} for row in rows if row["method"] == "b"]
    after = headline(make_records(*rows, *clone))
    assert {m: s for m, s in scores(after).items() if m != "b_copy"} == scores(before)
    assert scores(after)["b_copy"] == scores(after)["b"]
    assert after.set_index("method").loc["b", "aliases"] == "b_copy"


def test_a_cell_where_nobody_beats_random_beyond_seed_noise_is_left_out():
    seeds = (0, 1, 2)
    noisy = family_rows({"a": 0.50, "b": 0.51, "random": 0.50}, layers=(0,), seeds=seeds, noise=0.05)
    noisy[0]["value"] += 0.03  # seed spread for a, so the difference has a standard error
    clear = family_rows({"a": 0.9, "b": 0.5, "random": 0.1}, layers=(1,), seeds=seeds, noise=0.01)
    table = headline(make_records(*noisy, *clear))
    assert table.attrs["flagged"] == 1 and table.attrs["scored"] == 2
    assert scores(table) == {"a": 1.0, "b": 0.5, "random": 0.0}  # layer 1 alone


def test_intervals_and_tiers_come_from_a_paired_bootstrap_over_cells():
    rng = np.random.default_rng(0)
    layers = range(12)
    rows = []
    for layer in layers:  # a beats b everywhere; c and d trade places at random
        c, d = rng.permutation([0.3, 0.4])
        rows += family_rows({"a": 0.9, "b": 0.8, "c": c, "d": d}, layers=(layer,))
    table = headline(make_records(*rows)).set_index("method")
    assert (table["low"] <= table["score"]).all() and (table["score"] <= table["high"]).all()
    assert table.loc["a", ["low", "high"]].tolist() == [1.0, 1.0]
    assert table["tier"].to_dict() == {"a": 1, "b": 2, "c": 3, "d": 3}  # c and d are tied
    few = headline(make_records(*[row for row in rows if row["layer"] < MIN_UNITS - 1]))
    assert few["low"].isna().all() and few["tier"].isna().all()


@pytest.mark.skipif(not PUBLISHED.exists(), reason="the published minilm_l3 board's records")
def test_published_board_deleting_a_layer_of_one_method_swaps_only_tied_methods():
    records, _ = unpack(PUBLISHED)
    full = headline(records, n_boot=200)
    order = [m for m in full["method"]]
    for method, layer in (("gaussian", 2), ("lca", 2), ("iou", 3)):
        cut = headline(records[~((records["method"] == method) & (records["layer"] == layer))], n_boot=0)
        kept = [m for m in order if m != method]
        position = {m: i for i, m in enumerate(m for m in cut["method"] if m != method)}
        for i, upper in enumerate(kept):
            for lower in kept[i + 1:]:
                if position[lower] < position[upper]:  # a swap: the full board must call the pair a tie
                    assert (("builtin", upper), ("builtin", lower)) not in full.attrs["significant"]
