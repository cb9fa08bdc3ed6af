"""The board's 95% intervals: known answers for the seed and cell aggregation rule, no invented intervals for
records without them, the ties of the headline's paired bootstrap, and Overall values on shared cells only."""

from __future__ import annotations

import math

import pytest

from leaderboard.board import aggregate, build_board, format_number, long_table, seed_summary, summarize
from test_board import make_records, section

T_1, T_2 = 12.706204736174707, 4.302652729911275  # Student t, 97.5% quantile, 1 and 2 degrees of freedom


def test_two_seeds_keep_the_mean_half_widths_and_add_the_seed_term_in_quadrature():
    records = make_records({"method": "a", "metric": "probe_acc", "k": 5, "seed": 0, "value": 0.80,
                            "ci_low": 0.75, "ci_high": 0.84},
                           {"method": "a", "metric": "probe_acc", "k": 5, "seed": 1, "value": 0.78,
                            "ci_low": 0.74, "ci_high": 0.81})
    row = aggregate(records).iloc[0]
    seeds = T_1 * 0.01  # s = 0.02 / sqrt(2) over 2 seeds, s / sqrt(2) = 0.01
    assert row["mean"] == pytest.approx(0.79)
    assert row["ci_low"] == pytest.approx(0.79 - math.hypot(0.045, seeds))  # lower half-widths 0.05, 0.04
    assert row["ci_high"] == pytest.approx(0.79 + math.hypot(0.035, seeds))  # upper 0.04, 0.03
    assert row["ci_low"] == pytest.approx(0.655205, abs=1e-6) and row["ci_high"] == pytest.approx(0.921794, abs=1e-6)


def test_one_seed_is_its_percentile_interval_and_a_mean_over_cells_averages_half_widths():
    records = make_records(*[{"method": "a", "metric": "probe_acc", "k": 5, "layer": layer, "seed": seed,
                              "value": value, "ci_low": low, "ci_high": high}
                             for layer, seed, value, low, high in ((0, 0, 0.9, 0.85, 0.93), (1, 0, 0.7, 0.6, 0.76),
                                                                   (0, 1, 0.92, 0.88, 0.95), (1, 1, 0.72, 0.63, 0.8),
                                                                   (0, 2, 0.91, 0.86, 0.94), (1, 2, 0.71, 0.6, 0.79))])
    one_seed = aggregate(records[records["seed"] == 0]).set_index("layer")
    assert one_seed.loc[0, ["ci_low", "ci_high"]].tolist() == pytest.approx([0.85, 0.93])  # asymmetric, as given
    per_layer_mean = seed_summary(records, ["method"]).iloc[0]  # per seed: layers averaged, then over 3 seeds
    lower = ((0.05 + 0.1) / 2 + (0.04 + 0.09) / 2 + (0.05 + 0.11) / 2) / 3
    upper = ((0.03 + 0.06) / 2 + (0.03 + 0.08) / 2 + (0.03 + 0.08) / 2) / 3
    seeds = T_2 * 0.01 / math.sqrt(3)  # seed means 0.80, 0.82, 0.81: s = 0.01
    assert per_layer_mean["mean"] == pytest.approx(0.81)
    assert per_layer_mean["ci_low"] == pytest.approx(0.81 - math.hypot(lower, seeds))
    assert per_layer_mean["ci_high"] == pytest.approx(0.81 + math.hypot(upper, seeds))


def test_a_mean_over_tasks_keeps_their_mean_half_widths():
    """Tasks of one corpus share its test sentences, so the Overall mean over tasks is no narrower than its cells:
    `pos` (two layers) and `ner` (one), lower half-widths 0.02, 0.04, 0.06 and upper 0.01, 0.03, 0.05."""
    records = make_records(*[{"method": "a", "task": task, "metric": "probe_acc", "k": 5, "layer": layer,
                              "value": value, "ci_low": value - below, "ci_high": value + above}
                             for task, layer, value, below, above in (("pos", 0, 0.8, 0.02, 0.01),
                                                                      ("pos", 1, 0.7, 0.04, 0.03),
                                                                      ("ner", 0, 0.6, 0.06, 0.05))])
    row = seed_summary(records, ["method"]).iloc[0]
    assert row["mean"] == pytest.approx(0.7)
    assert [row["ci_low"], row["ci_high"]] == pytest.approx([0.7 - 0.04, 0.7 + 0.03])


def test_a_record_without_an_interval_leaves_its_mean_without_one():
    records = make_records({"method": "a", "metric": "probe_acc", "k": 5, "seed": 0, "value": 0.8,
                            "ci_low": 0.7, "ci_high": 0.9},
                           {"method": "a", "metric": "probe_acc", "k": 5, "seed": 1, "value": 0.8},
                           {"method": "a", "metric": "avg_overlap", "k": 5, "seed": 0, "value": 0.3})
    agg = aggregate(records).set_index("metric")
    assert agg[["ci_low", "ci_high"]].isna().all().all()
    assert seed_summary(records[records["metric"] == "probe_acc"], ["method"])["ci_low"].isna().all()


def test_records_without_interval_columns_show_values_without_intervals_and_say_so_once():
    records = make_records(*[{"method": method, "metric": "probe_acc", "k": 5, "layer": layer, "seed": seed,
                              "value": value + 0.01 * seed}
                             for method, value in (("a", 0.9), ("b", 0.6)) for layer in range(6)
                             for seed in (0, 1)])
    assert "ci_low" not in records
    markdown, table = build_board(records)
    assert table[["ci_low", "ci_high"]].isna().all().all()  # the CSV keeps its columns, empty
    assert markdown.count("carry no test-sentence intervals") == 1 and "In square brackets" not in markdown
    overall = section(markdown, "## Overall")
    assert [line.split(" | ")[-1] for line in overall[2:]] == ["0.905±0.005 |", "0.605±0.005 |"]  # no interval


def test_intervals_are_shown_in_the_markdown_and_the_csv():
    rows = [{"method": method, "metric": "probe_acc", "k": 5, "layer": layer, "seed": 0, "value": value,
             "ci_low": value - 0.05, "ci_high": value + 0.02}
            for method, value in (("a", 0.9), ("b", -0.1)) for layer in range(2)]
    markdown, table = build_board(make_records(*rows))
    assert markdown.count("In square brackets after a test-split value") == 1
    overall = section(markdown, "## Overall")
    assert overall[2].endswith(" | 0.900 [0.850, 0.920] |")
    assert overall[3].endswith(" | -0.100 [-0.150, -0.080] |")
    depth = section(markdown, "### `probe_acc@5` by layer, site `hidden`")
    assert "| 0.900 [0.850, 0.920] | 0.900 [0.850, 0.920] |" in depth[2]
    csv = long_table(summarize(make_records(*rows)))
    assert csv[["ci_low", "ci_high"]].to_numpy().ravel().tolist() == pytest.approx(
        [0.85, 0.92, -0.15, -0.08] * 2)


def test_methods_the_paired_bootstrap_does_not_separate_are_shown_tied():
    """a and b trade places in six cells; c is last in every one: a and b are tied, and both beat c."""
    rows = []
    for layer in range(6):
        a, b = (0.9, 0.8) if layer % 2 else (0.8, 0.9)
        rows += [
            {"method": method, "metric": "probe_acc", "k": 5, "layer": layer, "seed": 0, "value": value}
            for method, value in (("a", a), ("b", b), ("c", 0.5))]
    ranking = summarize(make_records(*rows)).ranking.set_index("method")
    assert ranking["tied_with"].to_dict() == {"a": "b", "b": "a", "c": ""}
    assert ranking.loc["c", "tier"] == 3
    overall = section(build_board(make_records(*rows))[0], "## Overall")
    assert [line.split(" | ")[6] for line in overall[2:]] == ["b", "a", "none"]
    assert ranking.loc["a", "probe_low"] <= ranking.loc["a", "probe"] <= ranking.loc["a", "probe_high"]


def test_a_method_missing_a_hard_task_gains_nothing_in_the_overall_values():
    """`partial` skips the hard task `ner`: Overall compares both on `pos` alone, values and intervals."""
    rows = [{"method": method, "task": task, "metric": "probe_acc", "k": 5, "seed": 0, "value": value,
             "ci_low": value - 0.1, "ci_high": value + 0.1}
            for method, task, value in (("full", "pos", 0.8), ("full", "ner", 0.3), ("partial", "pos", 0.8))]
    markdown = build_board(make_records(*rows))[0]
    overall = section(markdown, "## Overall")
    assert [line.split(" | ")[-1] for line in overall[2:]] == ["0.800 [0.700, 0.900] |"] * 2
    assert "0.300 [0.200, 0.400]" in "".join(section(markdown, "## ner · tiny (k* = 5)"))


def test_interval_ends_that_round_to_zero_print_without_a_sign():
    assert [format_number(v) for v in (-0.0004, 0.0004, -0.0006)] == ["0.000", "0.000", "-0.001"]
