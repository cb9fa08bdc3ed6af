"""Where neuron pages live, and which ranking page a board's method row links to.

The layout is defined here, below `neuronbench`, so that the board can find the pages that `neuronbench neurons
--board` writes into `pages/` beside it without importing the package above it. A built-in method's row of a
task x model table links to the ranking page of its best cell: the (concept, site, layer) where its seed-0 top-k*
neurons probe best (`DEPTH_METRIC@k*`, as the by-layer table shows it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from bench.run import task_form
from leaderboard.board import BUILTIN_SOURCE, DEPTH_METRIC, Group, Summary

PAGES = "pages"  # the folder of a board's pages, beside its leaderboard.html
SEED = 0  # the seed whose cells get pages


def neuron_page_path(root, task: str, model: str, seed: int, site: str, layer: int, neuron: int) -> Path:
    """<root>/<task form>/<model>/seed<s>/neurons/<site>_L<ll>_n<neuron>.html."""
    return Path(root) / task / model / f"seed{int(seed)}" / "neurons" / f"{site}_L{int(layer):02d}_n{int(neuron)}.html"


def ranking_page_path(root, task: str, model: str, seed: int, method: str, site: str, layer: int) -> Path:
    """<root>/<task form>/<model>/seed<s>/<method>/<site>_L<ll>.html (a board's method row for that cell links
    here)."""
    return Path(root) / task / model / f"seed{int(seed)}" / method / f"{site}_L{int(layer):02d}.html"


def best_cells(group: Group) -> dict[str, tuple[str | None, str, int]]:
    """Each built-in method of the group -> the (concept, site, layer) of its best seed-0 cell, the first of ties
    in (concept, site, layer) order; methods without seed-0 `DEPTH_METRIC@k*` records are left out."""
    records = group.records
    rows = records[(records["metric"] == DEPTH_METRIC) & (records["k"] == group.k).fillna(False)
                   & (records["seed"] == SEED) & (records["source"] == BUILTIN_SOURCE)]
    if rows.empty:
        return {}
    values = rows.assign(concept=rows["concept"].fillna("")).groupby(
        ["method", "concept", "site", "layer"])["value"].mean().sort_index()
    best = values.groupby(level="method").idxmax()
    return {method: (concept or None, site, int(layer)) for method, (_, concept, site, layer) in best.items()}


def page_links(summary: Summary, board_dir) -> dict[tuple[str, str, str], str]:
    """(task, model, method) -> the address of its best cell's ranking page relative to `board_dir`, for the pages
    that exist under `board_dir`/pages (none there: no links)."""
    root = Path(board_dir) / PAGES
    if not root.is_dir():
        return {}
    links = {}
    for group in summary.groups:
        for method, (concept, site, layer) in best_cells(group).items():
            path = ranking_page_path(root, task_form(group.task, concept), group.model, SEED, method, site, layer)
            if path.is_file():
                links[(group.task, group.model, method)] = Path(os.path.relpath(path, board_dir)).as_posix()
    return links


def cells_with_pages(summary: Summary) -> pd.DataFrame:
    """The cells a board's pages cover: one row per method's best cell (task, concept, model, method, site, layer),
    with the method's parameters as the records give them (JSON, or None)."""
    columns = ["task", "concept", "model", "method", "site", "layer", "method_params"]
    rows = []
    for group in summary.groups:
        params = _method_params(group.records)
        for method, (concept, site, layer) in best_cells(group).items():
            rows.append((group.task, concept, group.model, method, site, layer, params.get(method)))
    return pd.DataFrame(rows, columns=columns)


def _method_params(records: pd.DataFrame) -> dict[str, str]:
    if "method_params" not in records.columns:
        return {}
    rows = records[(records["source"] == BUILTIN_SOURCE) & records["method_params"].notna()]
    return rows.groupby("method")["method_params"].first().to_dict()
