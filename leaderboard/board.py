"""The leaderboard: records in, a Markdown page and a ranked long CSV table out.

Raw scores are not comparable across tasks, models and layers, so methods are ranked within each cell and the
headline is their mean rank, shown beside seed spread, baselines and chance levels (design.md#leaderboard).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import reduce

import pandas as pd

from bench.errors import NeuronbenchError

RECORD_COLUMNS = (
    "task", "task_version", "concept", "model", "model_revision", "layer", "site", "pooling", "method",
    "method_params", "metric", "k", "seed", "value", "chance", "other", "source", "package_version", "git_commit",
    "n_neurons",
)
# Metrics that decide the ranking; everything else (control_acc, acc_all, majority, jaccard, rank_corr, random/bottom
# ablations, min_subset_k and its test accuracy, metrics added by later scorers) is context: kept in the CSV, never
# ranked. All are higher-is-better (reference.md#names): the minimal subset is ranked as its saving 1 - k/D.
RANKED_METRICS = (
    "probe_acc", "probe_auc", "selectivity", "selectivity_auc", "probe_acc_gaussian", "probe_auc_gaussian",
    "selectivity_gaussian", "selectivity_auc_gaussian", "ablate_drop_top", "ablate_keep_top", "min_subset_saving",
    "avg_overlap", "avg_rank_corr", "neuron_vote", "stab_seed", "planted_rprec", "planted_ap", "planted_recall",
    "causal_drop", "causal_gain", "causal_drop_auc", "translate_success", "clamp_success", "faith_cpr", "faith_cmd",
)
# Columns of the method tables, in display order; per-k metrics are shown at the headline k.
HEADLINE_METRICS = ("probe_auc", "selectivity_auc", "probe_auc_gaussian", "probe_acc", "selectivity",
                    "ablate_drop_top", "min_subset_saving", "avg_overlap", "neuron_vote", "stab_seed",
                    "planted_rprec", "causal_gain", "translate_success", "faith_cpr")
# The k grid K of reference.md#metric-probe-acc; ablation adds %-of-D budgets and overlap has its own grid, so
# those only define the headline k where no probe was scored.
GRID_METRICS = ("probe_acc", "selectivity", "probe_acc_gaussian", "selectivity_gaussian")
DEPTH_METRIC = "probe_acc"
BASELINE_METHODS = frozenset({"random"})

AGGREGATE_KEYS = ["source", "task", "concept", "model", "layer", "site", "method", "metric", "k", "other"]
# `other` is null for every ranked metric; keeping it in the cell stops a future pairwise metric from ranking a
# method against itself.
CELL_KEYS = ["task", "concept", "model", "layer", "site", "metric", "k", "other"]
METHOD_KEYS = ["source", "method"]
RANK_DECIMALS = 12  # equal scores averaged in a different order must still tie
HEADLINE_SUFFIX = "@k*"

# Provenance that must not vary inside a compared group (reference.md: results from different task versions or
# poolings are never compared).
SINGLE_VALUED = ((["task"], "task_version"), (["model"], "model_revision"), (["task", "model"], "pooling"))


def aggregate(records: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (ddof 0) and count of `value` over seeds for each record key; null keys form their own groups."""
    return _aggregate(_checked(records))


def _aggregate(records: pd.DataFrame) -> pd.DataFrame:
    grouped = records.groupby(AGGREGATE_KEYS, dropna=False, sort=True)
    values = grouped["value"]
    return pd.DataFrame({
        "mean": values.mean(),
        "std": values.std(ddof=0),
        "count": values.count(),
        "chance": grouped["chance"].first(),
        "n_neurons": grouped["n_neurons"].first(),
    }).reset_index()


def rank_cells(agg: pd.DataFrame, metrics: Iterable[str] = RANKED_METRICS) -> pd.DataFrame:
    """Add `rank` (1 = best, ties averaged) and `n_methods` per cell for the ranked metrics; others stay null.

    A method missing from a cell (or with no finite mean there) is simply not in that cell's ranking.
    At k = D every ranking selects the whole layer, so those cells are ties by construction and are
    left unranked.
    """
    ranked = agg.copy()
    whole_layer = ranked["k"].notna() & (ranked["k"] == ranked["n_neurons"])
    in_scope = ranked["metric"].isin(list(metrics)) & ranked["mean"].notna() & ~whole_layer
    cells = ranked.loc[in_scope, "mean"].round(RANK_DECIMALS).groupby(
        [ranked.loc[in_scope, key] for key in CELL_KEYS], dropna=False)
    ranked["rank"] = cells.rank(ascending=False, method="average")
    ranked["n_methods"] = cells.transform("size").astype("Int64")
    return ranked


def headline_ks(records: pd.DataFrame, headline_k: int = 10) -> pd.Series:
    """Largest k <= headline_k in each (task, model)'s grid, since grids depend on the layer width."""
    return _headline_ks(_checked(records), headline_k)


def _headline_ks(records: pd.DataFrame, headline_k: int) -> pd.Series:
    per_k = records[records["k"].notna() & (records["k"] <= headline_k)]
    from_grid = per_k[per_k["metric"].isin(GRID_METRICS)].groupby(["task", "model"])["k"].max()
    from_any = per_k.groupby(["task", "model"])["k"].max()
    groups = pd.MultiIndex.from_frame(records[["task", "model"]].drop_duplicates()).sort_values()
    return from_grid.combine_first(from_any).reindex(groups).astype("Int64").rename("headline_k")


def build_board(records: pd.DataFrame, headline_k: int = 10) -> tuple[str, pd.DataFrame]:
    """The leaderboard page (Markdown) and its long table (one row per aggregated record, with ranks) for the CSV."""
    records = _checked(records)
    board = rank_cells(_aggregate(records))
    ks = _headline_ks(records, headline_k)
    markdown = _render(records, board, ks, headline_k)
    table = board.sort_values(["task", "model", "site", "layer", "concept", "metric", "k", "other", "rank", "method",
                               "source"], na_position="last", ignore_index=True)
    return markdown, table


def _checked(records: pd.DataFrame) -> pd.DataFrame:
    """Records with k as nullable int, after refusing input that would silently average the wrong things."""
    missing = [column for column in RECORD_COLUMNS if column not in records.columns]
    if missing:
        raise NeuronbenchError(f"records lack columns {missing}; they must come from the neuronbench runner")
    if records.empty:
        raise NeuronbenchError("no records to build a leaderboard from; run `neuronbench` first")
    repeated = records.duplicated([*AGGREGATE_KEYS, "seed"], keep=False)
    if repeated.any():
        example = records.loc[repeated, [*AGGREGATE_KEYS, "seed"]].iloc[0].to_dict()
        raise NeuronbenchError(f"{int(repeated.sum())} records repeat the same key and seed (e.g. {example}); "
                               "a run was probably read twice: remove the stale records file")
    for keys, column in SINGLE_VALUED:
        variants = records.groupby(keys, dropna=False)[column].nunique(dropna=False)
        mixed = variants[variants > 1]
        if len(mixed):
            raise NeuronbenchError(f"records mix several {column} values for {keys} = {list(mixed.index)}; "
                                   f"results from different {column}s are never compared: rerun or drop the old ones")
    return records.assign(k=pd.to_numeric(records["k"]).astype("Int64"),
                          value=pd.to_numeric(records["value"]).astype(float),
                          chance=pd.to_numeric(records["chance"]).astype(float))


def _render(records: pd.DataFrame, board: pd.DataFrame, ks: pd.Series, headline_k: int) -> str:
    headline = _headline_records(records, ks)
    labels = _headline_labels(headline)
    sections = [
        "# neuronbench leaderboard",
        "Test-split scores, mean over seeds (±std over seeds where there is more than one). Methods are ranked "
        "within each cell (task × concept × model × layer × site × metric × k; 1 = best, ties share the average "
        f"rank) on {', '.join(f'`{metric}`' for metric in RANKED_METRICS)}, and the headline is the mean rank over "
        "the cells a method shares with at least one other method (`cells` shows coverage). "
        f"`@k*` is the headline k: the largest k <= {headline_k} in each task/model grid.",
        "## Overall",
        _method_markdown(_method_table(board, headline, labels)),
    ]
    boards = dict(tuple(board.groupby(["task", "model"])))
    headlines = dict(tuple(headline.groupby(["task", "model"])))
    for (task, model), group_records in records.groupby(["task", "model"]):
        k = ks[(task, model)]
        group_labels = {label: label.replace(HEADLINE_SUFFIX, f"@{_format_k(k)}") for label in labels}
        group_table = _method_table(boards[(task, model)], headlines.get((task, model), headline.iloc[:0]), labels)
        sections += [
            f"## {task} · {model} (k* = {_format_k(k)})",
            _method_markdown(group_table.rename(columns=group_labels)),
            _context_line(group_records, k),
        ]
        for site, site_records in group_records.groupby("site"):
            sections += [
                f"### `{DEPTH_METRIC}@{_format_k(k)}` by layer, site `{site}`",
                _depth_markdown(site_records, group_table, k),
            ]
    return "\n\n".join(sections) + "\n"


def _headline_records(records: pd.DataFrame, ks: pd.Series) -> pd.DataFrame:
    """Records of the headline metrics: curve-level ones as they are, per-k ones at their group's headline k."""
    rows = records[records["metric"].isin(HEADLINE_METRICS)].merge(ks.reset_index(), on=["task", "model"])
    at_headline = rows["k"].isna() | (rows["k"] == rows["headline_k"]).fillna(False)
    rows = rows[at_headline]
    return rows.assign(label=rows["metric"] + rows["k"].isna().map({True: "", False: HEADLINE_SUFFIX}))


def _headline_labels(headline: pd.DataFrame) -> list[str]:
    """Column labels present in the data, in HEADLINE_METRICS order, so every table has the same columns."""
    present = headline.drop_duplicates("label")
    present = present.assign(position=present["metric"].map(HEADLINE_METRICS.index).astype(int),
                             per_k=present["k"].notna())
    return present.sort_values(["position", "per_k"])["label"].tolist()


def _method_table(board: pd.DataFrame, headline: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """One row per (source, method) ordered by mean rank, with formatted headline values."""
    shared = board[board["rank"].notna() & (board["n_methods"].fillna(0) >= 2)]
    ranks = shared.groupby(METHOD_KEYS)["rank"].agg(mean_rank="mean", cells="size")
    stats = _seed_summary(headline, [*METHOD_KEYS, "label"])
    values = stats.assign(text=_format_stats(stats)).pivot(index=METHOD_KEYS, columns="label", values="text")
    methods = pd.MultiIndex.from_frame(board[METHOD_KEYS].drop_duplicates())
    table = ranks.reindex(methods).join(values.reindex(columns=labels)).reset_index()
    table = table.sort_values(["mean_rank", "method", "source"], na_position="last", ignore_index=True)
    return table.assign(cells=table["cells"].fillna(0).astype(int))


def _method_markdown(table: pd.DataFrame) -> str:
    shown = pd.DataFrame({
        "method": _method_names(table["method"]),
        "source": table["source"],
        "mean rank": _format_numbers(table["mean_rank"]),
        "cells": table["cells"].astype(str),
    }).join(table.drop(columns=[*METHOD_KEYS, "mean_rank", "cells"]).fillna("n/a"))
    return _markdown_table(shown, left_columns=2)


def _depth_markdown(records: pd.DataFrame, method_order: pd.DataFrame, k) -> str:
    """Rows = methods (in the group's rank order) plus the all-neuron probe; columns = layers."""
    at_k = records[(records["metric"] == DEPTH_METRIC) & (records["k"] == k).fillna(False)]
    per_method = _seed_summary(at_k, [*METHOD_KEYS, "layer"])
    ceiling = _seed_summary(records[records["metric"] == "acc_all"], ["layer"]).assign(
        source="context", method="all neurons (acc_all)")
    stats = pd.concat([per_method, ceiling], ignore_index=True)
    layers = sorted(records["layer"].unique())
    grid = stats.assign(text=_format_stats(stats)).pivot(index=METHOD_KEYS, columns="layer", values="text")
    rows = method_order[METHOD_KEYS].drop_duplicates()
    if len(ceiling):
        rows = pd.concat([rows, ceiling[METHOD_KEYS].drop_duplicates()], ignore_index=True)
    grid = grid.reindex(index=pd.MultiIndex.from_frame(rows), columns=layers).fillna("n/a")
    grid.columns = [f"L{layer}" for layer in layers]
    grid = grid.reset_index()
    grid = grid.assign(method=_method_names(grid["method"]))[["method", "source", *grid.columns[2:]]]
    return _markdown_table(grid, left_columns=2)


def _context_line(records: pd.DataFrame, k) -> str:
    """Chance levels and baselines that the group's numbers should be read against."""
    at_k = (records["k"] == k).fillna(False)
    curve_level = records[records["k"].isna()].groupby("metric")["value"].mean()
    per_k = records[at_k].groupby("metric")["value"].mean()
    chance = records.loc[at_k & records["metric"].isin(["avg_overlap", "jaccard"]), "chance"].mean()
    k_text = _format_k(k)
    parts = [
        f"majority {_format_number(curve_level.get('majority'))}",
        f"all neurons (`acc_all`, mean over layers) {_format_number(curve_level.get('acc_all'))}",
        f"random-{k_text} drop (`ablate_drop_random@{k_text}`) {_format_number(per_k.get('ablate_drop_random'))}",
        f"chance Jaccard@{k_text} {_format_number(chance)}",
    ]
    return "Context: " + " · ".join(parts)


def _seed_summary(records: pd.DataFrame, by: list) -> pd.DataFrame:
    """Average over everything but `by` within each seed, then mean/std/count over seeds.

    Averaging per seed first keeps the ± a spread over seeds of the number shown, not a mix of cell stds.
    """
    per_seed = records.groupby([*by, "seed"], dropna=False)["value"].mean().reset_index()
    over_seeds = per_seed.groupby(by, dropna=False)["value"]
    return pd.DataFrame({"mean": over_seeds.mean(), "std": over_seeds.std(ddof=0),
                         "count": over_seeds.count()}).reset_index()


def _format_stats(stats: pd.DataFrame) -> pd.Series:
    text = _format_numbers(stats["mean"])
    with_spread = text + "±" + _format_numbers(stats["std"])
    return with_spread.where(stats["count"] > 1, text).where(stats["mean"].notna(), "n/a")


def _format_numbers(values: pd.Series) -> pd.Series:
    return values.map(_format_number).astype(str)


def _format_number(value) -> str:
    return "n/a" if pd.isna(value) else f"{value:.3f}"


def _format_k(k) -> str:
    return "n/a" if pd.isna(k) else str(int(k))


def _method_names(methods: pd.Series) -> pd.Series:
    return methods.where(~methods.isin(BASELINE_METHODS), methods + " (baseline)")


def _markdown_table(table: pd.DataFrame, left_columns: int) -> str:
    """GitHub pipe table; text columns left-aligned, numbers right-aligned, pipes in cells escaped."""
    cells = [table[column].astype(str).str.replace("|", r"\|", regex=False) for column in table.columns]
    lines = reduce(lambda left, right: left + " | " + right, cells)
    header = "| " + " | ".join(str(column) for column in table.columns) + " |"
    rule = "|" + "|".join(["---"] * left_columns + ["---:"] * (len(table.columns) - left_columns)) + "|"
    return "\n".join([header, rule, *("| " + lines + " |")])


def cost_markdown(costs: pd.DataFrame) -> str:
    """Median wall time and peak memory of `rank()` per method and task/model: shown, never ranked
    (reference.md#metric-cost); medians over layers, sites and seeds."""
    wide = (costs.pivot_table(index=["task", "model", "method"], columns="metric", values="value",
                              aggfunc="median")
            .reindex(columns=["cost_time_s", "cost_peak_mem_b"]).reset_index())
    wide["cost_time_s"] = wide["cost_time_s"].map(lambda v: f"{v:.3f}")
    wide["cost_peak_mem_b"] = (wide["cost_peak_mem_b"] / 2**20).map(lambda v: f"{v:.1f}")
    wide = wide.rename(columns={"cost_time_s": "rank() s (median)",
                                "cost_peak_mem_b": "peak MiB (median)"})
    return ("## Cost of `rank()`\n\nMeasurements on this machine, single-threaded BLAS; "
            "not ranked.\n\n" + _markdown_table(wide, left_columns=3))
