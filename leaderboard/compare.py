"""Does a board's verdict transfer? Two boards (two models, corpora, seed sets, poolings) compared by the rank
correlation of their method orders: at the headline, and per cell and scorer family.

Cells of two models are matched by task, concept, site and depth position (the i-th layer a site holds on its
board), so minilm_l3's layer 1 meets minilm_l6's layer 2 when both boards read the same relative depths.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import kendalltau, spearmanr

from leaderboard.board import MISSING, format_number
from leaderboard.headline import METHOD_KEYS, cell_scores, family_values, headline

MATCH_KEYS = ["task", "concept", "site", "depth", "family"]


def matched_cells(records: pd.DataFrame) -> pd.DataFrame:
    """Per-cell family means with `depth`: the layer's position among the layers its (model, site) has."""
    scores = cell_scores(family_values(records))
    positions = (scores[["model", "site", "layer"]].drop_duplicates().sort_values(["model", "site", "layer"])
                 .assign(depth=lambda frame: frame.groupby(["model", "site"]).cumcount()))
    return scores.merge(positions, on=["model", "site", "layer"])


def compare(records_a: pd.DataFrame, records_b: pd.DataFrame) -> dict:
    """{"headline": (spearman, kendall, methods), "cells": per matched cell and family rank correlations,
    "summary": mean Spearman per family}."""
    head_a, head_b = (headline(r, n_boot=0).set_index(METHOD_KEYS)["score"] for r in (records_a, records_b))
    common = head_a.index.intersection(head_b.index)
    pair = pd.concat([head_a[common], head_b[common]], axis=1).dropna()
    overall = ((spearmanr(pair.iloc[:, 0], pair.iloc[:, 1]).statistic,
                kendalltau(pair.iloc[:, 0], pair.iloc[:, 1]).statistic, len(pair)) if len(pair) >= 3
               else (np.nan, np.nan, len(pair)))
    cells_a, cells_b = matched_cells(records_a), matched_cells(records_b)
    joined = cells_a.merge(cells_b, on=[*MATCH_KEYS, *METHOD_KEYS], suffixes=("_a", "_b"))
    rows = []
    for key, cell in joined.groupby(MATCH_KEYS, dropna=False):
        if len(cell) >= 3 and cell["mean_a"].nunique() > 1 and cell["mean_b"].nunique() > 1:
            rows.append({**dict(zip(MATCH_KEYS, key)), "methods": len(cell),
                         "spearman": spearmanr(cell["mean_a"], cell["mean_b"]).statistic})
    per_cell = pd.DataFrame(rows, columns=[*MATCH_KEYS, "methods", "spearman"])
    summary = per_cell.groupby("family")["spearman"].agg(["mean", "min", "size"]).reset_index()
    return {"headline": overall, "cells": per_cell, "summary": summary}


def render_compare(result: dict, name_a: str, name_b: str) -> str:
    spearman, kendall, methods = result["headline"]
    lines = [f"# {name_a} vs {name_b}", "",
             f"Headline order over the {methods} methods both boards hold: Spearman {format_number(spearman)}, "
             f"Kendall tau {format_number(kendall)}.", "",
             "Per matched cell (task, concept, site, depth position) and family, Spearman of the methods' values:", "",
             "| family | mean | min | cells |", "|---|---:|---:|---:|"]
    lines += [f"| {row.family} | {format_number(row.mean)} | {format_number(row.min)} | {row.size} |"
              for row in result["summary"].itertuples()] or [f"| {MISSING} | | | 0 |"]
    return "\n".join(lines) + "\n"
