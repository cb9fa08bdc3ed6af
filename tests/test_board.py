"""The leaderboard ranks, aggregates and renders hand-built records the way design.md#leaderboard says."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.errors import NeuronbenchError
from leaderboard.board import aggregate, build_board, headline_ks, rank_cells

PROVENANCE = {
    "task": "pos", "task_version": "1", "concept": None, "model": "tiny", "model_revision": "r1", "layer": 0,
    "site": "hidden", "pooling": "mean", "method_params": "{}", "k": None, "seed": 0, "chance": None,
    "other": None, "source": "builtin", "package_version": "0.1.0", "git_commit": "abc", "n_neurons": 16,
}


def make_records(*rows: dict) -> pd.DataFrame:
    """Full record rows from the fields a test cares about."""
    return pd.DataFrame([{**PROVENANCE, **row} for row in rows])


def probe_grid(scores: dict[str, float], layers=(0, 1), ks=(1, 5, 10), seeds=(0,), **fields) -> list[dict]:
    """probe_acc rows for every method, layer, k and seed, each method scoring its fixed value."""
    return [{"method": method, "metric": "probe_acc", "layer": layer, "k": k, "seed": seed, "value": value, **fields}
            for method, value in scores.items() for layer in layers for k in ks for seed in seeds]


def section(markdown: str, heading: str) -> list[str]:
    """Table lines of one section, so assertions do not match text elsewhere on the page."""
    blocks = markdown.split(f"{heading}\n\n", 1)[1].split("\n\n")
    return next(block for block in blocks if block.startswith("|")).splitlines()


def table_methods(lines: list[str]) -> list[str]:
    return [line.split(" | ")[0].removeprefix("| ") for line in lines[2:]]


def test_method_better_in_every_cell_has_mean_rank_one():
    records = make_records(*probe_grid({"weak": 0.6, "best": 0.9, "middle": 0.7}))
    board = rank_cells(aggregate(records))
    mean_rank = board.groupby("method")["rank"].mean()
    assert mean_rank.to_dict() == {"best": 1.0, "middle": 2.0, "weak": 3.0}
    assert (board["n_methods"] == 3).all()


def test_ties_share_the_average_rank():
    records = make_records(*probe_grid({"a": 0.8, "b": 0.8, "c": 0.5, "d": 0.9}, layers=(0,), ks=(5,)))
    ranks = rank_cells(aggregate(records)).set_index("method")["rank"]
    assert ranks.to_dict() == {"a": 2.5, "b": 2.5, "c": 4.0, "d": 1.0}


def test_scores_equal_up_to_summation_order_still_tie():
    values = [0.0396, 0.5286, 0.4593, 0.0623, 0.6413]
    shuffled = [values[position] for position in (3, 1, 4, 0, 2)]  # its float sum differs in the last bit
    rows = [{"method": method, "metric": "probe_acc", "k": 1, "seed": seed, "value": value}
            for method, seed_values in (("forward", values), ("backward", shuffled))
            for seed, value in enumerate(seed_values)]
    ranks = rank_cells(aggregate(make_records(*rows)))["rank"]
    assert ranks.tolist() == [1.5, 1.5]


def test_mean_std_and_count_are_over_seeds_with_ddof_zero():
    records = make_records(*probe_grid({"a": 0.5}, layers=(0,), ks=(5,), seeds=(0,)),
                           *probe_grid({"a": 0.7}, layers=(0,), ks=(5,), seeds=(1,)),
                           *probe_grid({"a": 0.9}, layers=(0,), ks=(5,), seeds=(2,)))
    row = aggregate(records).iloc[0]
    assert row["mean"] == pytest.approx(0.7)
    assert row["std"] == pytest.approx((0.08 / 3) ** 0.5)  # ddof=1 would give 0.2
    assert row["count"] == 3


def test_null_k_concept_and_other_keep_their_groups():
    records = make_records(
        *({"method": "a", "metric": "probe_auc", "seed": seed, "value": 0.4 + 0.2 * seed} for seed in (0, 1)),
        {"method": "a", "metric": "probe_auc", "concept": "NOUN", "value": 0.9},
        {"method": "a", "metric": "jaccard", "k": 5, "other": "b", "value": 0.3, "chance": 0.2},
        {"method": "a", "metric": "avg_overlap", "k": 5, "value": 0.3, "chance": 0.2},
    )
    agg = aggregate(records).set_index(["metric", "concept"], drop=False)
    multi_class = agg.loc[agg["concept"].isna() & (agg["metric"] == "probe_auc")]
    assert len(agg) == 4
    assert multi_class["count"].tolist() == [2]
    assert multi_class["mean"].tolist() == pytest.approx([0.5])
    assert multi_class["k"].isna().all()
    assert agg.loc[agg["metric"] == "avg_overlap", "other"].isna().all()
    assert agg.loc[agg["metric"] == "avg_overlap", "chance"].tolist() == [0.2]


def test_context_and_unknown_metrics_are_kept_but_not_ranked():
    context = [{"method": method, "metric": metric, "k": k, "value": value}
               for method, value in (("a", 0.9), ("b", 0.1))
               for metric, k in (("acc_all", None), ("ablate_drop_random", 5), ("control_acc", 5),
                                 ("brand_new_metric", 5))]
    records = make_records(*context, *probe_grid({"a": 0.5, "b": 0.6}, layers=(0,), ks=(5,)))
    markdown, table = build_board(records)
    ranked = table[table["rank"].notna()]
    assert set(ranked["metric"]) == {"probe_acc"}
    assert "brand_new_metric" in set(table["metric"])
    overall = section(markdown, "## Overall")
    assert table_methods(overall) == ["b", "a"]
    assert [line.split(" | ")[4] for line in overall[2:]] == ["1", "1"]


def test_method_missing_from_a_cell_is_left_out_of_that_cell_only():
    records = make_records(*probe_grid({"a": 0.9, "b": 0.5, "partial": 0.7}, layers=(0,)),
                           *probe_grid({"a": 0.9, "b": 0.5}, layers=(1,)))
    board = rank_cells(aggregate(records))
    layer_one = board[board["layer"] == 1].set_index("method")
    assert layer_one["rank"].to_dict() == {"a": 1.0, "b": 2.0}
    assert (layer_one["n_methods"] == 2).all()
    markdown, _ = build_board(records)
    cells = {line.split(" | ")[0].removeprefix("| "): line.split(" | ")[4]
             for line in section(markdown, "## Overall")[2:]}
    assert cells == {"a": "2", "partial": "1", "b": "2"}


def test_overall_table_lists_methods_in_headline_order_with_baseline_marked():
    records = make_records(
        *probe_grid({"lca": 0.9, "random": 0.5, "probeless": 0.8}, seeds=(0, 1)),
        *({"method": method, "metric": "probe_auc", "seed": seed, "value": value + 0.1 * seed}
          for method, value in (("lca", 0.7), ("random", 0.2), ("probeless", 0.6)) for seed in (0, 1)),
    )
    markdown, _ = build_board(records)
    overall = section(markdown, "## Overall")
    assert overall[0] == "| method | score | 95% CI | tier | cells | probe | tied with | probe_auc | probe_acc@k* |"
    assert overall[1] == "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    assert table_methods(overall) == ["lca", "probeless", "random (baseline)"]
    assert overall[2] == "| lca | 1.000 | — | — | 2 | 1.000 | — | 0.750±0.050 | 0.900±0.000 |"
    assert markdown.index("## Overall") < markdown.index("## pos · tiny (k* = 10)")


def test_missing_headline_value_shows_a_dash():
    records = make_records(*probe_grid({"a": 0.9, "b": 0.5}),
                           {"method": "a", "metric": "probe_auc", "value": 0.7})
    overall = section(build_board(records)[0], "## Overall")
    assert overall[3] == "| b | 0.000 | — | — | 2 | 0.000 | — | — | 0.500 |"


def test_headline_k_is_the_largest_grid_k_not_above_the_target():
    records = make_records(
        *probe_grid({"a": 0.9}, ks=(1, 2, 3, 5, 8), model="narrow"),
        *probe_grid({"a": 0.9}, ks=(1, 5, 10, 20), model="wide"),
        {"method": "a", "metric": "ablate_drop_top", "k": 9, "model": "narrow", "value": 0.1},
    )
    ks = headline_ks(records)
    assert ks.to_dict() == {("pos", "narrow"): 8, ("pos", "wide"): 10}
    assert headline_ks(records, headline_k=4).to_dict() == {("pos", "narrow"): 3, ("pos", "wide"): 1}
    markdown, _ = build_board(records)
    assert "## pos · narrow (k* = 8)" in markdown
    assert section(markdown, "## pos · narrow (k* = 8)")[0] == "| method | score | 95% CI | tier | cells | tied with | probe_acc@8 |"


def test_per_layer_table_shows_depth_curve_with_all_neuron_row():
    records = make_records(
        *probe_grid({"a": 0.9, "b": 0.6}, layers=(0, 1, 2), ks=(10,)),
        *({"method": "a", "metric": "acc_all", "layer": layer, "value": 0.95} for layer in (0, 1, 2)),
    )
    depth = section(build_board(records)[0], "### `probe_acc@10` by layer, site `hidden`")
    assert depth[0] == "| method | L0 | L1 | L2 |"
    assert depth[2:] == ["| a | 0.900 | 0.900 | 0.900 |", "| b | 0.600 | 0.600 | 0.600 |",
                         "| all neurons (acc_all) | 0.950 | 0.950 | 0.950 |"]


def test_context_line_reports_chance_levels_at_headline_k():
    records = make_records(
        *probe_grid({"a": 0.9, "b": 0.6}, ks=(5, 10)),
        {"method": "a", "metric": "majority", "value": 0.4},
        {"method": "a", "metric": "acc_all", "value": 0.95},
        {"method": "a", "metric": "ablate_drop_random", "k": 10, "value": 0.02},
        {"method": "a", "metric": "ablate_drop_random", "k": 5, "value": 0.5},
        {"method": "a", "metric": "ablate_keep_random", "k": 10, "value": 0.61},
        {"method": "a", "metric": "avg_overlap", "k": 10, "value": 0.3, "chance": 0.007},
    )
    markdown, _ = build_board(records)
    assert ("Context: majority 0.400 · all neurons (`acc_all`, mean over layers) 0.950 · "
            "random-10 kept (`ablate_keep_random@10`) 0.610 · random-10 drop (`ablate_drop_random@10`) 0.020 · "
            "chance Jaccard@10 0.007") in markdown



def test_a_board_of_behavioural_rows_only_shows_them_and_says_nothing_is_scored():
    """suite=behavioural runs beh and interchange alone: no headline family, no probe_acc for the by-layer table,
    no baselines for the context line. The page says so and shows the behavioural columns instead of dashes."""
    records = make_records(*({"method": method, "metric": metric, "k": 10, "value": value}
                             for method, value in (("lca", 0.09), ("random", 0.02))
                             for metric in ("beh_drop", "iia_gain")))
    markdown, _ = build_board(records)
    assert "none of these families was run on this board, so no method has a score" in markdown
    overall = section(markdown, "## Overall")
    assert overall[0].endswith("| beh_drop@k* | iia_gain@k* |")
    assert overall[2].endswith("| 0.090 | 0.090 |")
    assert "Context:" not in markdown and "by layer" not in markdown

def test_pipes_in_names_do_not_break_tables():
    records = make_records(*probe_grid({"a|b": 0.9, "c": 0.5}, source="submission:x|y"))
    overall = section(build_board(records)[0], "## Overall")
    assert overall[2].startswith(r"| a\|b (submission x\|y) | 1.000 | — | — | 2 |")


def test_submissions_are_ranked_as_their_own_methods_and_marked():
    """A submission that reuses a built-in name (even `random`) is a separate row, never taken for the built-in."""
    records = make_records(*probe_grid({"lca": 0.7, "random": 0.5}),
                           *probe_grid({"lca": 0.9}, source="submission:lca"),
                           *probe_grid({"random": 0.8}, source="submission:team"))
    overall = section(build_board(records)[0], "## Overall")
    assert table_methods(overall) == ["lca (submission)", "random (submission team)", "lca", "random (baseline)"]
    assert [line.split(" | ")[1] for line in overall[2:]] == ["1.000", "0.667", "0.333", "0.000"]


def test_repeated_records_and_mixed_versions_are_refused():
    rows = probe_grid({"a": 0.9}, layers=(0,), ks=(5,))
    with pytest.raises(NeuronbenchError, match="repeat the same key and seed"):
        aggregate(make_records(*rows, *rows))
    with pytest.raises(NeuronbenchError, match="task_version"):
        aggregate(make_records(*rows, *probe_grid({"b": 0.9}, layers=(0,), ks=(5,), task_version="2")))
    with pytest.raises(NeuronbenchError, match="lack columns"):
        aggregate(make_records(*rows).drop(columns="seed"))


def test_cells_where_a_method_is_alone_do_not_count_towards_its_score():
    records = make_records(*probe_grid({"a": 0.9, "b": 0.5}, layers=(0,)),
                           *probe_grid({"b": 0.5}, layers=(1,)))
    overall = section(build_board(records)[0], "## Overall")
    assert overall[3] == "| b | 0.000 | — | — | 1 | 0.000 | — | 0.500 |"


def test_overall_values_compare_methods_on_the_cells_they_share():
    """A method scored on an easy extra layer is no better on the layer both have: Overall says so."""
    records = make_records(*probe_grid({"full": 0.6, "partial": 0.6}, layers=(0,), ks=(5,)),
                           *probe_grid({"partial": 0.95}, layers=(1,), ks=(5,)))
    markdown = build_board(records)[0]
    assert ("The Overall values are means over the 1 of 2 cells (task, model, layer, site) that every method has"
            in markdown)
    overall = section(markdown, "## Overall")
    assert [line.split(" | ")[-1] for line in overall[2:]] == ["0.600 |", "0.600 |"]
    layer_1 = section(markdown, "### `probe_acc@5` by layer, site `hidden`")
    assert "0.950" in "".join(layer_1)  # the task section still shows it


def test_whole_layer_k_is_not_ranked():
    """At k = D every ranking selects every neuron, so that cell says nothing about the methods."""
    records = make_records(*probe_grid({"a": 0.9, "b": 0.6}, layers=(0,), ks=(5, 16)))
    board = rank_cells(aggregate(records)).set_index(["method", "k"])["rank"]
    assert board[("a", 5)] == 1.0 and board[("b", 5)] == 2.0
    assert board[[("a", 16), ("b", 16)]].isna().all()


def test_new_ranked_metrics_and_seedless_stability_rows():
    """Gaussian-family, minimal-subset, agreement and stability rows are ranked higher-is-better; stab_seed rows
    summarize several seeds and carry a null seed."""
    rows = [{"method": method, "metric": metric, "k": k, "seed": seed, "value": value}
            for method, value in (("a", 0.9), ("b", 0.4))
            for metric, k in (("probe_auc_gaussian", None), ("selectivity_gaussian", 10), ("min_subset_saving", None),
                              ("neuron_vote", 10), ("avg_rank_corr", None))
            for seed in (0, 1)]
    rows += [{"method": method, "metric": "stab_seed", "k": 10, "seed": None, "value": value}
             for method, value in (("a", 1.0), ("b", 0.2))]
    rows += [{"method": method, "metric": "min_subset_k", "seed": 0, "value": value}
             for method, value in (("a", 3.0), ("b", 12.0))]
    markdown, table = build_board(make_records(*rows))
    ranked = table[table["rank"].notna()]
    assert set(ranked["metric"]) == {"probe_auc_gaussian", "selectivity_gaussian", "min_subset_saving",
                                     "neuron_vote", "avg_rank_corr", "stab_seed"}
    assert (ranked.loc[ranked["method"] == "a", "rank"] == 1.0).all()
    overall = section(markdown, "## Overall")
    assert overall[0] == ("| method | score | 95% CI | tier | cells | tied with | probe_auc_gaussian | min_subset_saving "
                          "| neuron_vote@k* | stab_seed@k* |")  # none of them is a headline family
    assert overall[2] == "| a | — | — | — | 0 | — | 0.900±0.000 | 0.900±0.000 | 0.900±0.000 | 1.000 |"


def test_bottom_k_baseline_is_shown_but_not_ranked_and_coverage_has_its_total():
    records = make_records(
        *probe_grid({"a": 0.9, "b": 0.6}, layers=(0,), ks=(10,)),
        *({"method": method, "metric": "ablate_drop_bottom", "k": 10, "value": value}
          for method, value in (("a", 0.001), ("b", 0.2))),
    )
    markdown, table = build_board(records)
    assert table.loc[table["metric"] == "ablate_drop_bottom", "rank"].isna().all()
    overall = section(markdown, "## Overall")
    assert overall[0] == "| method | score | 95% CI | tier | cells | probe | tied with | probe_acc@k* | ablate_drop_bottom@k* |"
    assert overall[2:] == ["| a | 1.000 | — | — | 1 | 1.000 | — | 0.900 | 0.001 |",
                           "| b | 0.000 | — | — | 1 | 0.000 | — | 0.600 | 0.200 |"]
    assert "left out (0 of 1 here)" in markdown
