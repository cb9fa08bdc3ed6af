"""The leaderboard: records in, a Markdown page and a ranked long CSV table out.

Raw scores are not comparable across tasks, models and layers, so methods are compared within each cell: the long
table ranks them per cell and metric, and the headline (leaderboard.headline) is the share of other methods beaten
per cell and scorer family, with intervals, shown beside seed spread, baselines and chance levels
(design.md#leaderboard).
`summarize` computes everything once; `render_markdown` here and `leaderboard.html` render the same summary.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property, reduce

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from bench.errors import NeuronbenchError
from bench.metrics import GRID_METRICS, RANKED
from leaderboard.headline import LEVEL, headline

RECORD_COLUMNS = (
    "task", "task_version", "concept", "model", "model_revision", "layer", "site", "pooling", "method",
    "method_params", "metric", "k", "seed", "value", "chance", "other", "source", "package_version", "git_commit",
    "n_neurons",
)
# Metrics that decide the ranking, as the scorers declare them (bench.metrics); every other metric is context: kept in
# the CSV, never ranked. All ranked ones are higher-is-better (reference.md#names).
RANKED_METRICS = RANKED
# Columns of the method tables, in display order (a page layout choice, so the board's); per-k metrics are shown at
# the headline k. `ablate_drop_bottom` is the bottom-k baseline of each method's own ranking.
HEADLINE_METRICS = ("probe_auc", "selectivity_auc", "probe_auc_gaussian", "probe_acc", "selectivity",
                    "ablate_drop_top", "ablate_drop_bottom", "min_subset_saving", "avg_overlap", "neuron_vote",
                    "stab_seed", "stab_boot", "planted_rprec", "causal_gain", "causal_tpp", "causal_lm_gain",
                    "translate_success", "faith_cpr", "beh_drop", "beh_sel", "iia_gain", "ravel_disent_gain")
DEPTH_METRIC = "probe_acc"
BASELINE_METHODS = frozenset({"random"})
BUILTIN_SOURCE = "builtin"
SUBMISSION_PREFIX = "submission:"
CONTEXT_SOURCE = "context"  # rows that are no method (the all-neuron probe), shown under their own name

AGGREGATE_KEYS = ["source", "task", "concept", "model", "layer", "site", "method", "metric", "k", "other"]
# `other` is null for every ranked metric; keeping it in the cell stops a future pairwise metric from ranking a
# method against itself.
CELL_KEYS = ["task", "concept", "model", "layer", "site", "metric", "k", "other"]
METHOD_KEYS = ["source", "method"]
RANK_DECIMALS = 12  # equal scores averaged in a different order must still tie
HEADLINE_SUFFIX = "@k*"
FAMILY_NAMES = {"probe": "probe accuracy area over ln k", "selectivity": "selectivity area",
                "ablation": "probe ablation, the mean of the drop-top and keep-top areas",
                "causal": "in-model causal drop area"}
FAMILY_COLUMNS = tuple(FAMILY_NAMES)
MISSING = "—"

CI_COLUMNS = ["ci_low", "ci_high"]  # a record's 95% test-sentence interval (bench.run.with_interval), when it has one

# Provenance that must not vary inside a compared group (reference.md: results from different task versions or
# poolings are never compared).
SINGLE_VALUED = ((["task"], "task_version"), (["model"], "model_revision"), (["task", "model"], "pooling"))


def aggregate(records: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (ddof 0) and count of `value` over seeds for each record key; null keys form their own groups."""
    return _aggregate(_checked(records))


def _aggregate(records: pd.DataFrame) -> pd.DataFrame:
    grouped = _with_half_widths(records).groupby(AGGREGATE_KEYS, dropna=False, sort=True)
    return over_seeds(grouped).assign(chance=grouped["chance"].first(),
                                      n_neurons=grouped["n_neurons"].first()).reset_index()


def _with_half_widths(records: pd.DataFrame) -> pd.DataFrame:
    """Records with `lower` and `upper`, the distances from the value to its interval's ends (NaN: none)."""
    if not set(CI_COLUMNS) <= set(records.columns):
        return records.assign(lower=np.nan, upper=np.nan)
    return records.assign(lower=records["value"] - pd.to_numeric(records["ci_low"]),
                          upper=pd.to_numeric(records["ci_high"]) - records["value"])


def over_seeds(grouped) -> pd.DataFrame:
    """Mean, std (ddof 0) and count over seeds of grouped per-seed rows (`value`, `lower`, `upper`), and the mean's
    95% interval (`ci_low`, `ci_high`; NaN unless every seed has one).

    The seeds score the same test sentences, so their test-sampling errors are not independent: each side keeps
    the seeds' mean half-width, not a smaller one. Seeds add their own variation, independent of the sentences
    drawn: with S >= 2 seeds of standard deviation s, each side's half-width h becomes sqrt(h² + (t·s/√S)²),
    t the Student quantile with S - 1 degrees of freedom (a bootstrap over 3 seeds means little)."""
    values = grouped["value"]
    mean, count = values.mean(), values.count()
    complete = (grouped["lower"].count() == count) & (grouped["upper"].count() == count) & (count > 0)
    with np.errstate(invalid="ignore"):
        t = scipy_stats.t.ppf((1 + LEVEL) / 2, (count - 1).where(count > 1))
    t = pd.Series(np.where(count > 1, t, 0.0), index=count.index)
    spread = t * np.sqrt(values.var(ddof=1).fillna(0.0) / count)
    lower = np.sqrt(grouped["lower"].mean() ** 2 + spread ** 2)
    upper = np.sqrt(grouped["upper"].mean() ** 2 + spread ** 2)
    return pd.DataFrame({"mean": mean, "std": values.std(ddof=0), "count": count,
                         "ci_low": (mean - lower).where(complete), "ci_high": (mean + upper).where(complete)})


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
    """Largest k <= headline_k in each (task, model)'s grid, since grids depend on the layer width: the grid of the
    metrics declared on the k grid K of reference.md#metric-probe-acc (GRID_METRICS); ablation adds %-of-D budgets
    and overlap has its own grid, so those only define the headline k where no probe was scored."""
    return _headline_ks(_checked(records), headline_k)


def _headline_ks(records: pd.DataFrame, headline_k: int) -> pd.Series:
    per_k = records[records["k"].notna() & (records["k"] <= headline_k)]
    from_grid = per_k[per_k["metric"].isin(GRID_METRICS)].groupby(["task", "model"])["k"].max()
    from_any = per_k.groupby(["task", "model"])["k"].max()
    groups = pd.MultiIndex.from_frame(records[["task", "model"]].drop_duplicates()).sort_values()
    return from_grid.combine_first(from_any).reindex(groups).astype("Int64").rename("headline_k")


@dataclass(frozen=True)
class Group:
    """One task x model section of the board."""
    task: str
    model: str
    k: object  # the group's headline k (pd.NA where the group has no per-k records)
    records: pd.DataFrame
    board: pd.DataFrame
    headline: pd.DataFrame

    @cached_property
    def ranking(self) -> pd.DataFrame:
        """`method_ranking` of the group's records, computed once for every renderer."""
        return method_ranking(self.records)


@dataclass(frozen=True)
class Summary:
    """Everything the renderers read, computed once from the records."""
    records: pd.DataFrame  # checked records, one row per seed
    board: pd.DataFrame  # aggregated over seeds, ranked within cells
    ks: pd.Series  # headline k per (task, model)
    headline: pd.DataFrame  # records of HEADLINE_METRICS at their headline k, with their column `label`
    labels: list  # headline column labels present, in HEADLINE_METRICS order
    headline_k: int

    @cached_property
    def ranking(self) -> pd.DataFrame:
        """`method_ranking` over every cell, computed once for every renderer."""
        return method_ranking(self.records)

    @cached_property
    def overall(self) -> pd.DataFrame:
        """The headline values of the Overall table: only cells every method has (`shared_cells`)."""
        return shared_cells(self.headline)

    @cached_property
    def groups(self) -> tuple[Group, ...]:
        """The task x model sections, split once."""
        boards = dict(tuple(self.board.groupby(["task", "model"])))
        headlines = dict(tuple(self.headline.groupby(["task", "model"])))
        return tuple(Group(task, model, self.ks[(task, model)], records, boards[(task, model)],
                           headlines.get((task, model), self.headline.iloc[:0]))
                     for (task, model), records in self.records.groupby(["task", "model"]))


def summarize(records: pd.DataFrame, headline_k: int = 10) -> Summary:
    """Check, aggregate and rank the records, and pick each group's headline k and headline values."""
    records = _checked(records)
    ks = _headline_ks(records, headline_k)
    headline = _headline_records(records, ks)
    return Summary(records, rank_cells(_aggregate(records)), ks, headline, _headline_labels(headline), headline_k)


def shared_cells(headline: pd.DataFrame) -> pd.DataFrame:
    """`headline` records of the (task, concept, model, layer, site) cells that every method has values in, so an
    Overall mean compares methods on the same cells: a method scored on two easy tasks cannot outshine one scored
    on all. attrs: `cells` (shared) and `of` (all cells)."""
    cell = ["task", "concept", "model", "layer", "site"]
    keys = headline[cell].apply(lambda column: column.map(str)).agg("|".join, axis=1)  # NaN and None as text
    per_method = keys.groupby([headline[key] for key in METHOD_KEYS]).agg(frozenset)
    shared = frozenset.intersection(*per_method) if len(per_method) else frozenset()
    kept = headline[keys.isin(shared)].copy()
    kept.attrs.update(cells=len(shared), of=keys.nunique())
    return kept


def overall_sentence(overall: pd.DataFrame) -> str:
    shared, total = overall.attrs["cells"], overall.attrs["of"]
    if shared == total:
        return f"The Overall values are means over the {total} cells (task, model, layer, site), which every method has."
    return (f"The Overall values are means over the {shared} of {total} cells (task, model, layer, site) that every "
            "method has, so that they compare methods on the same cells; the task sections show the rest.")


def build_board(records: pd.DataFrame, headline_k: int = 10) -> tuple[str, pd.DataFrame]:
    """The leaderboard page (Markdown) and its long table (one row per aggregated record, with ranks) for the CSV."""
    summary = summarize(records, headline_k)
    return render_markdown(summary), long_table(summary)


def long_table(summary: Summary) -> pd.DataFrame:
    return summary.board.sort_values(["task", "model", "site", "layer", "concept", "metric", "k", "other", "rank",
                                      "method", "source"], na_position="last", ignore_index=True)


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


def method_label(source, method) -> str:
    """Display name of a (source, method) identity: submissions are marked, so they never pass for built-ins."""
    if source == BUILTIN_SOURCE:
        return f"{method} (baseline)" if method in BASELINE_METHODS else str(method)
    if source == CONTEXT_SOURCE:
        return str(method)
    if isinstance(source, str) and source.startswith(SUBMISSION_PREFIX):
        name = source[len(SUBMISSION_PREFIX):]
        return f"{method} (submission)" if name in ("", method) else f"{method} (submission {name})"
    return f"{method} ({source})"


def method_ranking(records: pd.DataFrame) -> pd.DataFrame:
    """The headline table of `records` (leaderboard.headline), best first, with display `name`s; a method identical
    to a better-listed one everywhere is folded into that row, whose name lists it (`a = b`) and whose `members`
    lists every (source, method) it stands for."""
    table = headline(records)
    names = [method_label(source, method) for source, method in zip(table["source"], table["method"])]
    table = table.assign(name=names)
    listed: set = set()
    keep = []
    for row in table.itertuples():
        clones = set(row.aliases.split(", ")) if row.aliases else set()
        keep.append(not (clones & listed))
        listed.add(row.method)
    shown = table[keep].reset_index(drop=True)
    folded = [name + "".join(f" = {alias}" for alias in aliases.split(", ")) if aliases else name
              for name, aliases in zip(shown["name"], shown["aliases"])]
    members = [[(source, method)] + [(source, alias) for alias in aliases.split(", ") if aliases]
               for source, method, aliases in zip(shown["source"], shown["method"], shown["aliases"])]
    shown = shown.assign(name=folded, members=members)
    shown["tied_with"] = tied_with(shown, table.attrs.get("significant", set()))
    shown.attrs.update(table.attrs)
    return shown


def tied_with(ranking: pd.DataFrame, significant: set) -> list:
    """Per row, the names of the other rows that the headline's paired bootstrap over cells does not separate from
    it (neither significantly better), in ranking order; None where the row has no tier (too few cells)."""
    keys = list(zip(ranking["source"], ranking["method"]))
    tiered = ranking["tier"].notna().tolist()
    return [", ".join(name for other, name, has_tier in zip(keys, ranking["name"], tiered)
                      if has_tier and other != key and (key, other) not in significant
                      and (other, key) not in significant) if mine else None
            for key, mine in zip(keys, tiered)]


def headline_stats(headline: pd.DataFrame) -> pd.DataFrame:
    """Mean/std/count over seeds of each (source, method, headline column)."""
    return seed_summary(headline, [*METHOD_KEYS, "label"])


def has_depth(records: pd.DataFrame) -> bool:
    """Whether a site's records have the by-layer table's metric (a board of in-model scorers may not)."""
    return bool((records["metric"] == DEPTH_METRIC).any())


def depth_stats(records: pd.DataFrame, k) -> pd.DataFrame:
    """`DEPTH_METRIC@k` per (source, method, layer) over seeds, plus the all-neuron probe as a context row."""
    at_k = records[(records["metric"] == DEPTH_METRIC) & (records["k"] == k).fillna(False)]
    per_method = seed_summary(at_k, [*METHOD_KEYS, "layer"])
    ceiling = seed_summary(records[records["metric"] == "acc_all"], ["layer"]).assign(
        source=CONTEXT_SOURCE, method="all neurons (acc_all)")
    return pd.concat([per_method, ceiling], ignore_index=True)


def context_items(records: pd.DataFrame, k) -> list[tuple[str, float]]:
    """Chance levels and baselines that a group's numbers should be read against: (description, value) pairs of
    those the records have (a board of in-model scorers may have none). Descriptions mark record names with
    backticks."""
    at_k = (records["k"] == k).fillna(False)
    curve_level = records[records["k"].isna()].groupby("metric")["value"].mean()
    per_k = records[at_k].groupby("metric")["value"].mean()
    chance = records.loc[at_k & records["metric"].isin(["avg_overlap", "jaccard"]), "chance"].mean()
    k_text = format_k(k)
    items = [
        ("majority", curve_level.get("majority", float("nan"))),
        ("all neurons (`acc_all`, mean over layers)", curve_level.get("acc_all", float("nan"))),
        (f"random-{k_text} kept (`ablate_keep_random@{k_text}`)", per_k.get("ablate_keep_random", float("nan"))),
        (f"random-{k_text} drop (`ablate_drop_random@{k_text}`)", per_k.get("ablate_drop_random", float("nan"))),
        (f"chance Jaccard@{k_text}", chance),
    ]
    return [(text, value) for text, value in items if pd.notna(value)]


def seed_summary(records: pd.DataFrame, by: list) -> pd.DataFrame:
    """Average over everything but `by` within each seed, then mean/std/count over seeds and the 95% interval
    (`over_seeds`).

    Averaging per seed first keeps the ± a spread over seeds of the number shown, not a mix of cell stds. A
    seed's mean over cells keeps the mean of their half-widths: the widest its interval can be whatever their
    correlation, and close to it here, since the cells of a task, and the tasks of one corpus (the templated
    sentences, a UD treebank), are scored on the same test sentences. A cell without an interval leaves the mean
    without one.
    """
    rows = _with_half_widths(records)
    grouped = rows.groupby([*by, "seed"], dropna=False)
    per_seed = grouped[["value", "lower", "upper"]].mean()
    counts = grouped[["value", "lower", "upper"]].count()
    complete = (counts["lower"] == counts["value"]) & (counts["upper"] == counts["value"])
    per_seed[["lower", "upper"]] = per_seed[["lower", "upper"]].where(complete, axis=0)
    return over_seeds(per_seed.reset_index().groupby(by, dropna=False)).reset_index()


def format_stats(stats: pd.DataFrame) -> pd.Series:
    """`mean±std` over seeds, the bare mean for a single seed, MISSING for no value."""
    text = _format_numbers(stats["mean"])
    with_spread = text + "±" + _format_numbers(stats["std"])
    return with_spread.where(stats["count"] > 1, text).where(stats["mean"].notna(), MISSING)


def format_intervals(stats: pd.DataFrame) -> pd.Series:
    """`[low, high]` of each row's 95% interval (seed_summary's ci_low, ci_high), "" where it has none; a comma,
    not a dash, since the ends of differences are often negative."""
    if "ci_low" not in stats:
        return pd.Series("", index=stats.index)
    text = "[" + _format_numbers(stats["ci_low"]) + ", " + _format_numbers(stats["ci_high"]) + "]"
    return text.where(stats["ci_low"].notna() & stats["mean"].notna(), "")


def format_interval(low, high) -> str:
    """A headline interval (inside [0, 1]) as `low–high`."""
    return MISSING if pd.isna(low) else f"{format_number(low)}–{format_number(high)}"


def _stats_text(stats: pd.DataFrame) -> pd.Series:
    """format_stats with the interval beside it where there is one: `mean±std [low, high]`."""
    intervals = format_intervals(stats)
    return format_stats(stats) + intervals.map(lambda text: f" {text}" if text else "")


def _format_numbers(values: pd.Series) -> pd.Series:
    return values.map(format_number).astype(str)


def format_number(value) -> str:
    """Three decimals; a value that rounds to zero is 0.000, never -0.000 (interval ends often are)."""
    return MISSING if pd.isna(value) else f"{round(float(value), 3) + 0.0:.3f}"


def format_k(k) -> str:
    return MISSING if pd.isna(k) else str(int(k))


def column_label(label: str, k) -> str:
    """A headline column label with the group's own headline k in place of `@k*`."""
    return label.replace(HEADLINE_SUFFIX, f"@{format_k(k)}")


def cost_summary(costs: pd.DataFrame, by: tuple = ("task", "model")) -> pd.DataFrame:
    """Median `rank()` wall seconds and peak MiB per (*by, source, method) over everything else (layers, sites,
    seeds; reference.md#metric-cost): shown, never ranked."""
    costs = costs[costs["metric"].isin(["cost_time_s", "cost_peak_mem_b"])]  # not the scorers' rows
    wide = (costs.pivot_table(index=[*by, *METHOD_KEYS], columns="metric", values="value", aggfunc="median")
            .reindex(columns=["cost_time_s", "cost_peak_mem_b"]).reset_index())
    names = [method_label(source, method) for source, method in zip(wide["source"], wide["method"])]
    return wide[[*by, *METHOD_KEYS]].assign(name=names, time_s=wide["cost_time_s"],
                                            peak_mib=wide["cost_peak_mem_b"] / 2**20)


# --- Markdown ------------------------------------------------------------------------------------------------------


def headline_sentence(ranking: pd.DataFrame) -> str:
    """What the headline is, in the words every board prints above it."""
    if not ranking.attrs.get("families"):
        return ("The headline `score` is the share of the other methods a method beats, per cell and scorer family "
                f"({', '.join(FAMILY_NAMES.values())}), averaged over cells and families; none of these families was "
                "run on this board, so no method has a score and every value below is shown, not ranked.")
    families = ", ".join(FAMILY_NAMES[f] for f in ranking.attrs["families"])
    return (f"The headline `score` is the share of the other methods a method beats, per cell (task × concept × model "
            f"× layer × site) and scorer family ({families}), averaged over its cells and then over the families: "
            "1 = best everywhere, 0 = worst. Identical rankings count once; a cell where no method beats `random` by "
            f"two seed standard errors is left out ({ranking.attrs.get('flagged', 0)} of "
            f"{ranking.attrs.get('scored', 0)} here). The 95% intervals of the score and family columns come from a "
            "bootstrap over cells; `tier` (1 + the number of methods significantly better) and `tied with` (the "
            "methods not significantly different, shown as tied) from its paired two-sided test of every pair, "
            "Holm-corrected over all pairs of the board at 0.05. Agreement and stability are shown, never scored.")


def interval_sentence(records: pd.DataFrame) -> str:
    """How the other values' intervals are made, or that these records have none (made before the runner gave
    records ci_low and ci_high): none is invented."""
    if not set(CI_COLUMNS) <= set(records.columns) or records["ci_low"].isna().all():
        return ("These records carry no test-sentence intervals (no `ci_low`, `ci_high`: they were made before the "
                "runner gave them), so the test-split values are shown without intervals.")
    return ("In square brackets after a test-split value: its 95% interval, from each record's cluster bootstrap "
            "over test sentences (a mean over cells keeps their mean half-width, an upper bound whatever their "
            "correlation: cells of a task, and tasks of one corpus, share test sentences), each side widened with "
            "S >= 2 seeds by the seeds' Student-t half-width t·s/√S in quadrature; values that do not depend on "
            "test sentences (agreement, stability) have none.")


def headline_columns(row) -> dict[str, str]:
    """The score, interval, tier, ties, coverage and family columns (each with its interval) of one method_ranking
    row, as text."""
    return {"score": format_number(row.score), "95% CI": format_interval(row.low, row.high),
            "tier": MISSING if pd.isna(row.tier) else str(int(row.tier)), "cells": str(row.cells),
            **{family: " ".join(filter(None, (format_number(getattr(row, family)), bracketed_interval(
                getattr(row, f"{family}_low", None), getattr(row, f"{family}_high", None)))))
               for family in FAMILY_COLUMNS if hasattr(row, family)},
            "tied with": MISSING if row.tied_with is None else row.tied_with or "none"}


def bracketed_interval(low, high) -> str:
    """`[low, high]`, or "" where there is no interval."""
    return "" if low is None or pd.isna(low) else f"[{format_number(low)}, {format_number(high)}]"


def render_markdown(summary: Summary) -> str:
    sections = [
        "# neuronbench leaderboard",
        headline_sentence(summary.ranking),
        "Other columns: test-split scores, mean over seeds (±std over seeds where there is more than one); `@k*` "
        f"is the headline k, the largest k <= {summary.headline_k} in each task/model grid. Submitted methods are "
        "marked `(submission)`; `ablate_drop_bottom` (each method's bottom-k removed) is a baseline.",
        interval_sentence(summary.records),
        "## Overall",
        overall_sentence(summary.overall),
        _method_markdown(summary.ranking, summary.overall, summary.labels),
    ]
    for group in summary.groups:
        k = group.k
        table = group.ranking
        sections += [
            f"## {group.task} · {group.model} (k* = {format_k(k)})",
            _method_markdown(table, group.headline, summary.labels, k),
        ]
        context = context_items(group.records, k)
        if context:
            sections.append("Context: " + " · ".join(f"{text} {format_number(value)}" for text, value in context))
        for site, site_records in group.records.groupby("site"):
            if not has_depth(site_records):
                continue
            sections += [
                f"### `{DEPTH_METRIC}@{format_k(k)}` by layer, site `{site}`",
                _depth_markdown(site_records, table, k),
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


def _method_markdown(ranking: pd.DataFrame, headline: pd.DataFrame, labels: list[str], k=None) -> str:
    stats = headline_stats(headline)
    values = stats.assign(text=_stats_text(stats)).pivot(index=METHOD_KEYS, columns="label", values="text")
    values = values.reindex(index=pd.MultiIndex.from_frame(ranking[METHOD_KEYS]), columns=labels)
    columns = pd.DataFrame([headline_columns(row) for row in ranking.itertuples()], index=ranking.index)
    shown = pd.concat([pd.DataFrame({"method": ranking["name"]}), columns], axis=1)
    for label in labels:
        shown[label if k is None else column_label(label, k)] = values[label].fillna(MISSING).to_numpy()
    return _markdown_table(shown, left_columns=1)


def _depth_markdown(records: pd.DataFrame, ranking: pd.DataFrame, k) -> str:
    """Rows = methods (in the group's rank order) plus the all-neuron probe; columns = layers."""
    stats = depth_stats(records, k)
    layers = sorted(records["layer"].unique())
    grid = stats.assign(text=_stats_text(stats)).pivot(index=METHOD_KEYS, columns="layer", values="text")
    rows = ranking[METHOD_KEYS]
    ceiling = stats.loc[stats["source"] == CONTEXT_SOURCE, METHOD_KEYS].drop_duplicates()
    rows = pd.concat([rows, ceiling], ignore_index=True)
    grid = grid.reindex(index=pd.MultiIndex.from_frame(rows), columns=layers).fillna(MISSING)
    shown = pd.DataFrame({"method": [method_label(source, method) for source, method in grid.index]})
    for layer in layers:
        shown[f"L{layer}"] = grid[layer].to_numpy()
    return _markdown_table(shown, left_columns=1)


def _markdown_table(table: pd.DataFrame, left_columns: int) -> str:
    """GitHub pipe table; text columns left-aligned, numbers right-aligned, pipes in cells escaped."""
    cells = [table[column].astype(str).str.replace("|", r"\|", regex=False) for column in table.columns]
    lines = reduce(lambda left, right: left + " | " + right, cells)
    header = "| " + " | ".join(str(column) for column in table.columns) + " |"
    rule = "|" + "|".join(["---"] * left_columns + ["---:"] * (len(table.columns) - left_columns)) + "|"
    return "\n".join([header, rule, *("| " + lines + " |")])


def cost_markdown(costs: pd.DataFrame) -> str:
    """The cost section: median wall time and peak memory of `rank()` per method and task/model (never ranked)."""
    summary = cost_summary(costs)
    shown = pd.DataFrame({"task": summary["task"], "model": summary["model"], "method": summary["name"],
                          "rank() s (median)": summary["time_s"].map(lambda v: f"{v:.3f}"),
                          "peak MiB (median)": summary["peak_mib"].map(lambda v: f"{v:.1f}")})
    text = ("## Cost of `rank()`\n\nMeasurements on this machine, single-threaded BLAS; "
            "not ranked.\n\n" + _markdown_table(shown, left_columns=3))
    scorers = scorer_cost_markdown(costs)
    return text + ("\n\n" + scorers if scorers else "")


def scorer_cost_summary(costs: pd.DataFrame) -> pd.DataFrame:
    """Per (model, site, scorer): the median, min and max wall seconds of one scorer on one ranking of one layer
    (the costs' SCORER_COST rows, from job.json), and how many (job, layer) measurements there are."""
    from leaderboard.records import SCORER_COST

    rows = costs[costs["metric"] == SCORER_COST] if "scorer" in costs.columns else costs.iloc[:0]
    if rows.empty:
        return pd.DataFrame(columns=["model", "site", "scorer", "median_s", "min_s", "max_s", "n"])
    return (rows.groupby(["model", "site", "scorer"])["value"]
            .agg(median_s="median", min_s="min", max_s="max", n="count").reset_index())


def scorer_cost_markdown(costs: pd.DataFrame) -> str:
    """The scorers' cost per layer, or "" when the costs have no scorer rows (boards packed before they did)."""
    summary = scorer_cost_summary(costs)
    if summary.empty:
        return ""
    shown = pd.DataFrame({"model": summary["model"], "site": summary["site"], "scorer": summary["scorer"],
                          "s per layer (median)": summary["median_s"].map(lambda v: f"{v:.1f}"),
                          "min-max": [f"{a:.1f}-{b:.1f}" for a, b in zip(summary["min_s"], summary["max_s"])],
                          "rankings x layers": summary["n"].astype(str)})
    return ("## Cost of the scorers per layer\n\nWall seconds of one scorer on one ranking of one layer (job.json "
            "`scorers_s`; CPU, numpy single-threaded, torch with its threads, on the machine the run shared); a "
            "ranking equal to another's is scored once. The first ranking of a cell also pays the cell's one-off "
            "work (e.g. `causal` fitting its frozen head).\n\n" + _markdown_table(shown, left_columns=3))
