"""The scorers' own meta-evaluation (reference-causal-and-uncertainty.md#validity-report): on cells with a planted
ground truth, how well each scorer orders the methods as the truth does, how often it separates them beyond
noise, and whether it puts `random` below every method the truth puts above it.

Scorers are read as the headline reads them (leaderboard.headline: one value per family and cell, an area over
ln k) and, for the per-k view, at one k. The truth is `planted_rprec`, the share of the planted set G found in
the top |G|. Nothing here needs the rankings: it runs on records (a results folder or a packed file).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from bench.seeds import cell_rng
from leaderboard.board import MISSING, format_number, scorer_cost_markdown
from leaderboard.headline import BASELINE, FAMILIES, LEVEL, METHOD_KEYS, MIN_UNITS, NOISE_SE, UNIT_KEYS, family_values

TRUTH = "planted_rprec"
# Shown metrics that the report checks before any headline may use them: the model's own readout (`beh`, readout
# lm_logit_diff, decoders only), as its area over ln k and per k.
CANDIDATES = {"beh_drop_auc": "beh_drop"}
# The per-k view: the headline families' metrics and the candidates' (those that need a model have rows on
# implanted models only).
PER_K = (*(name for names in FAMILIES.values() for name in names), *CANDIDATES.values())
BOOTSTRAP = 1000
TRUTH_KINDS = {"synthetic": "planted in synthetic activations (no model: in-model scorers have no rows)",
               "implanted": "implanted in a real model's FFN (bench/implant.py)"}


def truth_kind(model_revision) -> str:
    """Where a cell's ground truth comes from: neurons `implanted` in a real model (its revision says
    `implant:<key>+<base revision>`, bench.models), else `synthetic` planted activations."""
    return "implanted" if str(model_revision).startswith("implant:") else "synthetic"


def scorer_readouts(records: pd.DataFrame, k: int) -> dict[str, str]:
    """Per scorer row name, the readout(s) its in-model values came from (records' `readout`), '' for none."""
    if "readout" not in records.columns:
        return {}
    metrics = {**FAMILIES, **{area: (area,) for area in CANDIDATES}, **{f"{name}@{k}": (name,) for name in PER_K}}
    out = {}
    for scorer, names in metrics.items():
        found = records.loc[records["metric"].isin(names), "readout"].dropna().unique()
        out[scorer] = ", ".join(sorted(map(str, found)))
    return out


def scorer_values(records: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per (cell, scorer, method, seed) value: the headline families, the candidates' areas and the per-k metrics
    at k."""
    families = family_values(records).rename(columns={"family": "scorer"})
    columns = [*UNIT_KEYS, *METHOD_KEYS, "seed", "scorer", "value"]
    areas = records[records["metric"].isin(CANDIDATES) & records["k"].isna()]
    at_k = records[records["metric"].isin(PER_K) & (records["k"] == k).fillna(False)]
    return pd.concat([families, areas.assign(scorer=areas["metric"])[columns],
                      at_k.assign(scorer=at_k["metric"] + f"@{k}")[columns]], ignore_index=True)


def validity(records: pd.DataFrame, k: int = 10, n_boot: int = BOOTSTRAP, seed: int = 0) -> pd.DataFrame:
    """One row per scorer: `gt_tau` (mean Kendall tau_b with the truth over planted cells and seeds, each seed a
    new planted layer) and its bootstrap interval over them, `disc_power` (share of (cell, method pair) the scorer separates by NOISE_SE seed standard errors of
    the paired difference), `random_last` (share of cells where `random` is below, or within that noise of, every
    method whose truth is above random's: a method that finds less of G than random, such as a variance ranking on
    variance-confounded decoys, may rightly score below it), the cells used, and `validated` (the tau interval above
    0 and random last in at least 90% of cells)."""
    columns = ["truth", "scorer", "readout", "gt_tau", "low", "high", "disc_power", "random_last", "cells",
               "validated"]
    truth_rows = records[records["metric"] == TRUTH]
    truth = truth_rows[[*UNIT_KEYS, *METHOD_KEYS, "seed", "value"]].rename(columns={"value": "truth"})
    if truth.empty:
        return pd.DataFrame(columns=columns)
    # only the cells that have a truth: an implanted model's other layers and sites have none
    cells = truth_rows[UNIT_KEYS].assign(kind=truth_rows["model_revision"].map(truth_kind)).drop_duplicates(UNIT_KEYS)
    values = scorer_values(records, k).merge(cells, on=UNIT_KEYS)
    readouts = scorer_readouts(records, k)
    rows = []
    for (kind, scorer), part in values.groupby(["kind", "scorer"], sort=False):
        joined = part.rename(columns={"value": "score"}).merge(truth, on=[*UNIT_KEYS, *METHOD_KEYS, "seed"])
        taus = np.asarray([kendalltau(cell["score"], cell["truth"]).statistic  # a seed draws a new planted layer
                           for _, cell in joined.groupby([*UNIT_KEYS, "seed"], dropna=False)
                           if len(cell) >= 3 and cell["score"].nunique() > 1 and cell["truth"].nunique() > 1])
        separated = pairs = 0
        last = []
        truths = {unit_key(unit): cell for unit, cell in joined.groupby(UNIT_KEYS, dropna=False)}
        for unit, cell in part.groupby(UNIT_KEYS, dropna=False):
            per_seed = cell.pivot_table(index="seed", columns=METHOD_KEYS, values="value", aggfunc="mean")
            hits, total = separations(per_seed)
            separated, pairs = separated + hits, pairs + total
            above = above_random(truths.get(unit_key(unit), joined.iloc[:0]))
            if ("builtin", BASELINE) in per_seed.columns and above:
                last.append(random_is_last(per_seed[[("builtin", BASELINE), *above]]))
        low = high = np.nan
        if len(taus) >= MIN_UNITS:
            rng = cell_rng(seed, "validity", kind, scorer)  # an interval does not depend on the other rows
            draws = rng.choice(taus, size=(n_boot, len(taus))).mean(axis=1)
            low, high = np.quantile(draws, [(1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2])
        random_last = float(np.mean(last)) if last else np.nan
        rows.append({"truth": kind, "scorer": scorer, "readout": readouts.get(scorer, ""), "gt_tau": taus.mean() if len(taus) else np.nan, "low": low, "high": high,
                     "disc_power": separated / pairs if pairs else np.nan, "random_last": random_last,
                     "cells": len(taus), "validated": bool(low > 0 and random_last >= 0.9)})
    table = pd.DataFrame(rows, columns=columns)
    order = {kind: i for i, kind in enumerate(TRUTH_KINDS)}
    return table.sort_values("truth", key=lambda c: c.map(order), kind="stable", ignore_index=True)


def separations(per_seed: pd.DataFrame) -> tuple[int, int]:
    """(pairs separated, pairs) over the methods of one cell: a pair is separated when its mean paired difference
    over seeds exceeds NOISE_SE standard errors (needs two seeds or more; with one, none is counted)."""
    values = per_seed.dropna(axis=1).to_numpy()
    n_seeds, n_methods = values.shape
    if n_seeds < 2 or n_methods < 2:
        return 0, 0
    diff = values[:, :, None] - values[:, None, :]
    mean, se = diff.mean(axis=0), diff.std(axis=0, ddof=1) / np.sqrt(n_seeds)
    upper = np.triu_indices(n_methods, 1)
    return int((np.abs(mean[upper]) > NOISE_SE * se[upper]).sum()), len(upper[0])


def unit_key(unit: tuple) -> tuple:
    """A groupby key with its nulls (a task without concept) as None, so that two groupings' keys compare equal."""
    return tuple(None if pd.isna(part) else part for part in unit)


def above_random(cell: pd.DataFrame) -> list[tuple]:
    """The methods (METHOD_KEYS tuples) of one cell whose mean truth over seeds is above `random`'s; [] when the
    cell has no `random`."""
    truth = cell.groupby(METHOD_KEYS)["truth"].mean()
    if ("builtin", BASELINE) not in truth.index:
        return []
    return [method for method, value in truth.items() if value > truth[("builtin", BASELINE)]]


def random_is_last(per_seed: pd.DataFrame) -> bool:
    """`random`'s mean is the lowest of the cell, or within NOISE_SE seed standard errors of the lowest other."""
    baseline = per_seed[("builtin", BASELINE)]
    others = per_seed.drop(columns=[("builtin", BASELINE)]).dropna(axis=1)
    if others.empty:
        return True
    lowest = others.mean().idxmin()
    diff = others[lowest] - baseline
    se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
    return bool(diff.mean() >= -NOISE_SE * se)


def render_validity(table: pd.DataFrame, k: int, costs: pd.DataFrame | None = None) -> str:
    """The report as Markdown; with `costs` (a board's), the scorers' cost per layer after it."""
    lines = ["# Scorer validity", "",
             "Each row says where its ground truth comes from (`truth`): "
             + "; ".join(f"`{kind}`: {text}" for kind, text in TRUTH_KINDS.items())
             + ". In-model scorers (`causal`, `beh`) can only be checked on implanted models; `readout` names what "
             "their values read (`frozen_head`: a logistic head fitted on the final layer's states, for encoders "
             "without an LM head; `lm_logit_diff`: the model's own logit difference on minimal pairs). `beh` is "
             "shown, not ranked, on the boards until it is validated here. On an implanted model the seeds share one implant (its `implant.seed`) and the task's "
             "sentences: they redraw the methods' and scorers' randomness, not the truth, so its intervals over "
             "cells × seeds are narrower than over independent implants.", "",
             f"On cells with a truth (the truth is `{TRUTH}`, the share of the planted or implanted set in the top "
             "|G|): `gt_tau` is the mean Kendall tau_b between a scorer's order "
             "of the methods and the truth's, over cells and seeds (on planted tasks each seed a new planted layer), with a 95% bootstrap interval; `disc_power` the "
             f"share of method pairs it separates by {NOISE_SE:g} seed standard errors of the paired difference; "
             "`random_last` the share of cells where `random` is below, or within that noise of, every method whose "
             "truth is above random's (a method that finds less of the planted set than random may score below it). "
             "A scorer is "
             "`validated` when its tau interval is above 0 and `random_last` >= 0.9. Families are the headline's "
             f"(areas over ln k); `@{k}` rows are one k.", "",
             "| truth | scorer | readout | gt_tau | 95% CI | disc_power | random_last | cells × seeds | validated |",
             "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for row in table.itertuples():
        interval = format_number(row.low) + "–" + format_number(row.high) if pd.notna(row.low) else MISSING
        lines.append(f"| {row.truth} | {row.scorer} | {row.readout or MISSING} | {format_number(row.gt_tau)} | "
                     f"{interval} | {format_number(row.disc_power)} | {format_number(row.random_last)} | {row.cells} | "
                     f"{'yes' if row.validated else 'no'} |")
    text = "\n".join(lines) + "\n"
    scorer_costs = scorer_cost_markdown(costs) if costs is not None else ""
    return text + ("\n" + scorer_costs + "\n" if scorer_costs else "")
