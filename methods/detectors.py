"""Neurons as detectors of a concept: average precision (`ap`, `ap2`) and quantile-thresholded IoU (`iou`,
`iou_prev`) (reference.md#method-ap, reference.md#method-iou).

Both look for neurons that *rise* with the concept, so neither is invariant to a sign flip; both are invariant
to any increasing map of a neuron.
"""

from __future__ import annotations

import numpy as np

from bench.core.method import Method
from bench.score.detection import average_precision_per_class, mask_iou
from methods.univariate import concept_classes, max_over_classes


class AveragePrecision(Method):
    """`ap` / `ap2`: per-neuron average precision as a detector of the concept (Suau et al. expertise).

    Multi-class: s_j = max_c (AP_cj − p_c)/(1 − p_c), since p_c is the AP of a random score; in the concept form
    this is monotone in AP. `two_sided` (`ap2`) takes max(AP(x_j), AP(−x_j)). `deadzone` > 0 zeroes entries with
    |x| < deadzone on a copy first: `deadzone: 0.05` with `normalize: raw` reproduces NeuroX's and Fan et al.'s
    "IoU" ranker, which does this in the caller's array (reference.md#method-ap).
    """

    def __init__(self, two_sided: bool = False, deadzone: float = 0.0, normalize: str = "zscore"):
        self.two_sided = two_sided
        self.deadzone = deadzone
        self.normalize = normalize

    def scores(self, Z, y, rng, **inputs) -> np.ndarray:
        rows = Z.T.copy()  # one row per neuron: sorts and scans run along contiguous memory
        if self.deadzone > 0:
            rows[np.abs(rows) < self.deadzone] = 0.0
        descending = np.argsort(rows, axis=1)[:, ::-1]
        values = np.take_along_axis(rows, descending, axis=1)
        labels = y.astype(np.min_scalar_type(y.max()))[descending]
        counts = np.bincount(y)
        ap = average_precision_per_class(labels, values, counts)
        if self.two_sided:  # descending order of -x is ascending order of x
            ap = np.maximum(ap, average_precision_per_class(labels[:, ::-1], values[:, ::-1], counts))
        prevalence = counts / len(y)
        normalized = (ap - prevalence) / (1.0 - prevalence)
        return max_over_classes(lambda c: normalized[:, c], y, Z.shape[1])


class QuantileIoU(Method):
    """`iou` / `iou_prev`: IoU of the mask x_j > quantile_{1−α}(x_j) with the class mask, max over classes
    (Mu & Andreas; reference.md#method-iou).

    `alpha` is a fraction or "prevalence" (α = p_c per class, so a perfect detector reaches IoU 1). The
    threshold is strict: with many tied values at the quantile the realized "on" fraction can be far below α.
    `lower_tail` scores −x, for neurons that switch off on the concept.
    """

    def __init__(self, alpha: float | str = 0.005, lower_tail: bool = False, normalize: str = "zscore"):
        self.alpha = alpha
        self.lower_tail = lower_tail
        self.normalize = normalize

    def scores(self, Z, y, rng, **inputs) -> np.ndarray:
        if self.lower_tail:
            Z = -Z
        prevalence = np.bincount(y) / len(y)
        classes = concept_classes(y)
        alphas = prevalence[classes] if self.alpha == "prevalence" else np.full(len(classes), float(self.alpha))
        levels, level_of_class = np.unique(1.0 - alphas, return_inverse=True)
        thresholds = np.quantile(Z, levels, axis=0)
        threshold_of = dict(zip(classes.tolist(), thresholds[level_of_class]))

        def iou(c: int) -> np.ndarray:
            on = Z > threshold_of[c]
            in_class = y == c
            intersection = np.count_nonzero(on[in_class], axis=0)
            return mask_iou(intersection, np.count_nonzero(on, axis=0), np.count_nonzero(in_class))

        return max_over_classes(iou, y, Z.shape[1])
