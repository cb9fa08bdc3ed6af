"""Shared scorers: (ranking, layer data, ks) -> scores, all oriented higher-is-better.

A scorer never knows which method produced the ranking (reference.md#metrics). Overlap needs several
rankings at once and lives in `bench.agreement`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from bench.errors import NeuronbenchError
from bench.layer import LayerData

DEFAULT_KS = (1, 2, 3, 5, 10, 20, 30, 50, 70, 100, 150, 200, 300, 500)
RANDOM_DRAWS = 5


@dataclass(frozen=True)
class Score:
    metric: str
    k: int | None
    value: float
    chance: float | None = None


def k_grid(n_neurons: int, ks=None) -> list[int]:
    """The k grid of reference.md#metric-probe-acc clipped to [1, D], plus D itself."""
    grid = DEFAULT_KS if ks is None else ks
    if any(int(k) < 1 for k in grid):
        raise NeuronbenchError(f"ks must be positive integers, got {list(grid)}")
    return sorted({int(k) for k in grid if int(k) <= n_neurons} | {n_neurons})


def log_area(ks: list[int], values: list[float]) -> float:
    """Trapezoid area over ln k, divided by ln D, so small k weighs as much as large k."""
    x = np.log(np.asarray(ks, dtype=np.float64))
    if len(ks) < 2 or x[-1] == x[0]:
        return float(values[-1])
    y = np.asarray(values, dtype=np.float64)
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def probe_acc(ranking, data: LayerData, ks, rng) -> list[Score]:
    """Test accuracy of the linear probe retrained on the top-k neurons, and its area over ln k."""
    majority = data.majority()
    values = [data.retrained_accuracy(ranking[:k]) for k in ks]
    return ([Score("probe_acc", k, v, majority) for k, v in zip(ks, values)]
            + [Score("probe_auc", None, log_area(ks, values), majority),
               Score("majority", None, majority), Score("acc_all", None, values[-1], majority)])


def selectivity(ranking, data: LayerData, ks, rng) -> list[Score]:
    """Hewitt & Liang: task accuracy minus control-task accuracy on the same top-k neurons."""
    task = [data.retrained_accuracy(ranking[:k], "task") for k in ks]
    control = [data.retrained_accuracy(ranking[:k], "control") for k in ks]
    gap = [t - c for t, c in zip(task, control)]
    return ([Score("control_acc", k, c) for k, c in zip(ks, control)]
            + [Score("selectivity", k, g, 0.0) for k, g in zip(ks, gap)]
            + [Score("selectivity_auc", None, log_area(ks, gap), 0.0)])


def ablation(ranking, data: LayerData, ks, rng) -> list[Score]:
    """Dalvi et al.: a probe trained on all neurons, with top/bottom/random k kept or removed.

    Zero in z-space is the train mean, so this is mean ablation. Random sets are drawn from the cell's
    generator, hence identical for every method of a cell.
    """
    d = data.n_neurons
    budgets = sorted(set(ks) | {max(1, round(p * d)) for p in (0.10, 0.15, 0.20)})
    everything = np.arange(d)
    acc_all = data.masked_accuracy(everything)
    scores = []
    for k in budgets:
        sets = {"top": ranking[:k], "bottom": ranking[::-1][:k]}
        randoms = [rng.choice(d, size=k, replace=False) for _ in range(RANDOM_DRAWS)]
        for name, chosen in sets.items():
            scores.append(Score(f"ablate_keep_{name}", k, data.masked_accuracy(chosen)))
            scores.append(Score(f"ablate_drop_{name}", k,
                                acc_all - data.masked_accuracy(np.setdiff1d(everything, chosen))))
        keep_random = np.mean([data.masked_accuracy(r) for r in randoms])
        drop_random = np.mean([acc_all - data.masked_accuracy(np.setdiff1d(everything, r))
                               for r in randoms])
        scores.append(Score("ablate_keep_random", k, float(keep_random)))
        scores.append(Score("ablate_drop_random", k, float(drop_random)))
    return scores


def planted(ranking, data: LayerData, ks, rng) -> list[Score]:
    """Recovery of planted neurons G (reference.md#metric-planted): R-precision, recall@k, AP, group recall."""
    if data.truth is None:
        raise NeuronbenchError("scorer 'planted' needs a planted task (task=planted_*, model=planted)")
    truth = frozenset().union(*data.truth)
    size, d = len(truth), data.n_neurons
    hits = np.isin(ranking, sorted(truth))
    precision_at = np.cumsum(hits) / np.arange(1, d + 1)
    scores = [Score("planted_rprec", None, float(hits[:size].mean()), size / d),
              Score("planted_ap", None, float(precision_at[hits].sum() / size), size / d)]
    for k in sorted({size, 2 * size, 10}):
        scores.append(Score("planted_recall", k, float(hits[:k].sum() / size), min(k, d) / d))
    top = set(ranking[:size].tolist())
    scores.append(Score("planted_group_recall", size,
                        float(np.mean([bool(top & group) for group in data.truth]))))
    return scores


SCORERS: dict[str, Callable] = {"probe_acc": probe_acc, "selectivity": selectivity,
                                "ablation": ablation,
                                "planted": planted}


def get_scorer(name: str) -> Callable:
    if name not in SCORERS:
        raise NeuronbenchError(f"unknown scorer {name!r}; valid: {', '.join(SCORERS)}")
    return SCORERS[name]
