"""Neurons as detectors of a label: scikit-learn average precision of every neuron for every class at once, and
the thresholded "on" mask of Mu & Andreas (reference.md#method-ap, #method-iou; the addendum's section D).

The `ap` and `iou` methods rank with these, and concept search (`bench.score.formulas`, `neuronbench.concepts`)
scores one neuron against every label with the same arithmetic, so a neuron's AP for a label is the number
the `ap` method would give it.
"""

from __future__ import annotations

import numpy as np

from bench.errors import NeuronbenchError

TINY = np.finfo(np.float64).tiny  # IoU's guard against an empty union: IoU(∅, ∅) = 0


def mask_iou(intersection, size_a, size_b):
    """IoU of two masks from their counts: |A ∧ B| / (|A ∨ B| + tiny), |A ∨ B| = |A| + |B| − |A ∧ B|."""
    return intersection / (size_a + size_b - intersection + TINY)


def on_threshold(train_values: np.ndarray, alpha: float | None) -> float:
    """A neuron's "on" threshold T (mask x > T, strict): the train quantile 1 − α, as the `iou` method and
    compexp's vision setup take it, or 0 for α = None, compexp's NLI setting for post-ReLU units."""
    if alpha is None:
        return 0.0
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise NeuronbenchError(f"alpha={alpha!r}: expected a fraction in (0, 1) (0.005: the top 0.5% of train "
                               "words) or None (threshold at 0)")
    return float(np.quantile(train_values, 1.0 - alpha))


def run_ends(is_end: np.ndarray) -> np.ndarray:
    """Along each row, the index of the last element of the run each element belongs to, given where runs end."""
    n = is_end.shape[1]
    end_or_n = np.where(is_end, np.arange(n, dtype=np.int32), np.int32(n))
    return np.minimum.accumulate(end_or_n[:, ::-1], axis=1)[:, ::-1]


def average_precision_per_class(labels: np.ndarray, values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(D, C) scikit-learn average precision of each row of `values` as a detector of each class, given every
    row's labels and values in descending order of value; NaN for an empty class.

    scikit-learn's AP, Σ_thresholds ΔRecall · Precision with one threshold per distinct value, is the mean over
    positives of tp/depth at the end of the positive's tie group. A stable sort of each row's labels lists every
    class's positions in order, so the true positives of all classes come from one pass: the k-th position of
    class c has tp = k + 1, plus the class's later positions in the same tie group.
    """
    is_group_end = np.ones(values.shape, dtype=bool)
    is_group_end[:, :-1] = values[:, :-1] != values[:, 1:]
    group_end = run_ends(is_group_end)

    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int32)
    by_class = np.argsort(labels, axis=1, kind="stable")  # slot k holds class class_of_slot[k]
    class_of_slot = np.repeat(np.arange(len(counts)), counts)
    depth = np.take_along_axis(group_end, by_class, axis=1)  # tie-group end of each slot's position
    same_threshold_ends = np.ones(depth.shape, dtype=bool)
    same_threshold_ends[:, :-1] = depth[:, :-1] != depth[:, 1:]
    same_threshold_ends[:, starts[1:] - 1] = True  # a run never crosses into the next class
    true_positives = run_ends(same_threshold_ends)
    true_positives -= starts[class_of_slot] - 1
    precision = depth.astype(np.float64)
    precision += 1.0
    np.divide(true_positives, precision, out=precision)

    present = np.flatnonzero(counts)
    ap = np.full((labels.shape[0], len(counts)), np.nan)
    ap[:, present] = np.add.reduceat(precision, starts[present], axis=1) / counts[present]
    return ap
