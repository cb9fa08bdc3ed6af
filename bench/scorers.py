"""Shared scorers: (ranking, layer data, ks) -> scores, all oriented higher-is-better.

A scorer never knows which method produced the ranking (reference.md#metrics). Overlap needs several
rankings at once and lives in `bench.agreement`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np

from bench.core.metrics import GRID, OWN, Metric
from bench.errors import NeuronbenchError
from bench.layer import LayerData

DEFAULT_KS = (1, 2, 3, 5, 10, 20, 30, 50, 70, 100, 150, 200, 300, 500)
RANDOM_DRAWS = 5
MIN_SUBSET_DELTA = 0.01  # reference.md#metric-min-subset: absolute dev-accuracy tolerance


@dataclass(frozen=True)
class Score:
    metric: str
    k: int | None
    value: float
    chance: float | None = None
    interval: tuple[float, float] | None = None  # 95% percentile interval over test-sentence resamples (E.1)


def is_count(value, least: int = 0) -> bool:
    """An integer of at least `least`; a bool is not one, though Python counts YAML's `true` as 1."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= least


def checked_ks(ks) -> tuple[int, ...]:
    """The ks a config asks for: null is the reference grid DEFAULT_KS, anything else must be a non-empty list of
    positive integers (checked before a job loads anything, and again by k_grid)."""
    if ks is None:
        return DEFAULT_KS
    listed = isinstance(ks, Sequence) and not isinstance(ks, str)
    if not (listed and ks and all(is_count(k, 1) for k in ks)):
        raise NeuronbenchError(f"ks={list(ks) if listed else ks!r}: expected a non-empty list of positive integers, "
                               "e.g. ks=[1,10,100], or ks=null for the reference grid")
    return tuple(int(k) for k in ks)


def k_grid(n_neurons: int, ks=None) -> list[int]:
    """The k grid of reference.md#metric-probe-acc: the ks up to D, plus D itself. A k above D is dropped for this
    layer, but ks with no k up to D is an error: it would leave k = D alone, the all-neuron probe."""
    grid = checked_ks(ks)
    kept = {k for k in grid if k <= n_neurons}
    if not kept:
        raise NeuronbenchError(f"ks={list(grid)}: every k is above this layer's {n_neurons} neurons, which leaves "
                               f"only k = D; give at least one k <= {n_neurons}")
    return sorted(kept | {n_neurons})


def log_area(ks: list[int], values: list):
    """Trapezoid area over ln k, divided by ln D, so small k weighs as much as large k. Values that are
    bootstrap replicate arrays (LayerData.replicated) give the area of each replicate."""
    x = np.log(np.asarray(ks, dtype=np.float64))
    if len(ks) < 2 or x[-1] == x[0]:
        return values[-1]
    y = np.asarray(values, dtype=np.float64)
    if y.ndim > 1:
        return np.stack([log_area(ks, column) for column in y.T])
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


# Evaluation probe families (reference.md#metric-probe-acc): the metric suffix and the accuracy they give.
FAMILIES = {"linear": "", "gaussian": "_gaussian"}


def _curve(ranking, data: LayerData, ks, family: str, target: str) -> tuple[list[int], list[float]]:
    """(grid, accuracies) over k_grid of `ks`, which ends at D: its area is over the whole curve and its last point is
    the probe on all neurons, whatever ks a caller passes."""
    accuracy = data.retrained_accuracy if family == "linear" else data.gaussian_accuracy
    grid = k_grid(data.n_neurons, ks)
    return grid, [accuracy(ranking[:k], target) for k in grid]


def probe_acc(ranking, data: LayerData, ks, rng, family: str = "linear") -> list[Score]:
    """Test accuracy of a probe retrained on the top-k neurons, and its area over ln k.

    The `gaussian` family has no hyperparameters and its prior keeps every k up to D well-posed, so it
    uses the same grid uncapped.
    """
    suffix, majority = FAMILIES[family], data.majority()
    ks, values = _curve(ranking, data, ks, family, "task")
    scores = ([Score(f"probe_acc{suffix}", k, v, majority) for k, v in zip(ks, values)]
              + [Score(f"probe_auc{suffix}", None, log_area(ks, values), majority),
                 Score(f"acc_all{suffix}", None, values[-1], majority)])
    return scores + ([Score("majority", None, majority)] if family == "linear" else [])


def selectivity(ranking, data: LayerData, ks, rng, family: str = "linear") -> list[Score]:
    """Hewitt & Liang: task accuracy minus control-task accuracy on the same top-k neurons."""
    suffix = FAMILIES[family]
    ks, task = _curve(ranking, data, ks, family, "task")
    _, control = _curve(ranking, data, ks, family, "control")
    gap = [t - c for t, c in zip(task, control)]
    return ([Score(f"control_acc{suffix}", k, c) for k, c in zip(ks, control)]
            + [Score(f"selectivity{suffix}", k, g, 0.0) for k, g in zip(ks, gap)]
            + [Score(f"selectivity_auc{suffix}", None, log_area(ks, gap), 0.0)])


def min_subset(ranking, data: LayerData, ks, rng, delta: float = MIN_SUBSET_DELTA) -> list[Score]:
    """Smallest prefix whose linear probe gets within delta of the all-neuron dev accuracy (§3.9, metric-min-subset).

    Search: scan K (the scorers' grid plus D, whose probes `probe_acc` has usually fitted already) upwards for
    the first k that qualifies, then bisect between it and the K point before it, which fails. The reference
    also scans the %-of-D points {ceil(q*D/100)} inside that bracket before bisecting; bisecting over every
    integer of the bracket reaches the same k when accuracy is monotone there and costs log2(gap) fits instead
    of up to ~25 fits at large k (a random ranking of a 384-wide layer: 26 s against ~7 s). Accuracy need
    not be monotone in k, so this is a refinement, not a proof. k = D if nothing smaller qualifies.

    Orientation: every scorer is higher-is-better (reference.md#names), so the ranked row is
    `min_subset_saving = 1 - k/D` (the reference's `min_subset_frac` is k/D = 1 - saving). `min_subset_k`,
    the test accuracy at k (`min_subset_test_acc`) and `min_subset_within_test` (1 if that test accuracy is within
    delta of the all-neuron test accuracy, else 0) are context rows.
    """
    d = data.n_neurons
    threshold = data.dev_accuracy(np.arange(d)) - delta

    def qualifies(k: int) -> bool:
        return data.dev_accuracy(ranking[:k]) >= threshold

    lower, found = 0, d  # the largest k known to fail (0: the empty prefix, never fitted), the smallest that passes
    for k in sorted(set(ks) | {d}):
        if qualifies(k):
            found = k
            break
        lower = k
    while found - lower > 1:  # bisection: `found` qualifies, `lower` fails (or is 0)
        middle = (lower + found) // 2
        if qualifies(middle):
            found = middle
        else:
            lower = middle
    test_acc = data.retrained_accuracy(ranking[:found])
    within = float(test_acc >= data.retrained_accuracy(np.arange(d)) - delta)
    return [Score("min_subset_saving", None, 1.0 - found / d),
            Score("min_subset_k", None, float(found)),
            Score("min_subset_test_acc", None, test_acc, data.majority()),
            Score("min_subset_within_test", None, within)]


def ablation(ranking, data: LayerData, ks, rng) -> list[Score]:
    """Dalvi et al.: a probe trained on all neurons, with top/bottom/random k kept or removed.

    Zero in z-space is the train mean, so this is mean ablation. Random sets are drawn from the cell's
    generator, hence identical for every method of a cell.
    """
    d = data.n_neurons
    budgets = sorted(set(ks) | {max(1, round(p * d)) for p in (0.10, 0.15, 0.20)})
    acc_all = data.ablated_accuracy(np.arange(d), kept=True)
    scores = []
    for k in budgets:
        sets = {"top": ranking[:k], "bottom": ranking[::-1][:k]}
        randoms = [rng.choice(d, size=k, replace=False) for _ in range(RANDOM_DRAWS)]
        for name, chosen in sets.items():
            scores.append(Score(f"ablate_keep_{name}", k, data.ablated_accuracy(chosen, kept=True)))
            scores.append(Score(f"ablate_drop_{name}", k, acc_all - data.ablated_accuracy(chosen, kept=False)))
        keep_random = np.mean([data.ablated_accuracy(r, kept=True) for r in randoms], axis=0)
        drop_random = np.mean([acc_all - data.ablated_accuracy(r, kept=False) for r in randoms], axis=0)
        scores.append(Score("ablate_keep_random", k, keep_random))  # np.float64 (a float) or replicates
        scores.append(Score("ablate_drop_random", k, drop_random))
    return scores


def planted(ranking, data: LayerData, ks, rng) -> list[Score]:
    """Recovery of planted neurons G (reference.md#metric-planted): R-precision, recall@k, AP, group recall."""
    if data.truth is None:
        raise NeuronbenchError("scorer 'planted' needs a planted task (task=planted_*, model=planted) or an "
                               "implanted model and its concept's task (e.g. model=minilm_l6_implanted "
                               "task=templated_number)")
    if not data.truth:  # a cell of an implanted model away from the implant: nothing to recover there
        return []
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


def _probe_metrics(suffix: str) -> tuple[Metric, ...]:
    """`probe_acc` and `selectivity` with one evaluation probe family; the linear probe's curves are the headline's."""
    headline = suffix == FAMILIES["linear"]
    return (Metric(f"probe_acc{suffix}", ranked=True, ks=GRID, family="probe" if headline else None),
            Metric(f"probe_auc{suffix}", ranked=True),
            Metric(f"acc_all{suffix}", higher_is_better=None, doc="the all-neuron probe, the same for every method"),
            Metric(f"control_acc{suffix}", ks=GRID, higher_is_better=None, doc="selectivity's control-task part"),
            Metric(f"selectivity{suffix}", ranked=True, ks=GRID, family="selectivity" if headline else None),
            Metric(f"selectivity_auc{suffix}", ranked=True))


# The metrics these scorers emit (bench.metrics gathers every module's).
METRICS = (
    *_probe_metrics(FAMILIES["linear"]), *_probe_metrics(FAMILIES["gaussian"]),
    Metric("majority", higher_is_better=None, doc="the majority class's share: the probes' chance"),
    Metric("min_subset_saving", ranked=True), Metric("min_subset_k", higher_is_better=False),
    Metric("min_subset_test_acc"), Metric("min_subset_within_test"),
    *(Metric(f"ablate_{kind}_top", ranked=True, ks=OWN, family="ablation") for kind in ("drop", "keep")),
    *(Metric(f"ablate_{kind}_{baseline}", ks=OWN, higher_is_better=None,
             doc="a baseline: random-k, or each method's own bottom-k (a good ranking's bottom-k matter little)")
      for kind in ("keep", "drop") for baseline in ("bottom", "random")),
    *(Metric(name, ranked=ranked, ks=ks, needs=frozenset({"truth"}))
      for name, ranked, ks in (("planted_rprec", True, None), ("planted_ap", True, None),
                               ("planted_recall", True, OWN), ("planted_group_recall", False, OWN))),
)

SCORERS: dict[str, Callable] = {"probe_acc": probe_acc, "selectivity": selectivity,
                                "probe_acc_gaussian": partial(probe_acc, family="gaussian"),
                                "selectivity_gaussian": partial(selectivity, family="gaussian"),
                                "min_subset": min_subset,
                                "ablation": ablation,
                                "planted": planted}


# Scorers whose values are sums, differences and means of test accuracies, so that run under
# LayerData.replicated() they give each value's bootstrap replicates over test sentences (the runner's intervals).
TEST_BOOTSTRAP = frozenset({"probe_acc", "selectivity", "probe_acc_gaussian", "selectivity_gaussian", "ablation"})


def scorer_registry() -> dict[str, Callable]:
    """Every scorer by config name; the model-level ones live in bench.causal_scores (which imports this
    module, hence the late import)."""
    from bench.causal_scores import SCORERS as MODEL_SCORERS

    return {**SCORERS, **MODEL_SCORERS}


def get_scorer(name: str) -> Callable:
    registry = scorer_registry()
    if name not in registry:
        raise NeuronbenchError(f"unknown scorer {name!r}; valid: {', '.join(registry)}")
    return registry[name]


def needs_model(name: str) -> bool:
    from bench.causal_scores import SCORERS as MODEL_SCORERS

    return name in MODEL_SCORERS
