"""The L1 logistic ranker of Gurnee et al. 2023's sparse probing (reference.md#method-sparse, `sparse_l1`).

An L1 penalty zeroes the weights of neurons the probe can do without, so |coef| ranks neurons that carry
the concept on their own ahead of those that only help alongside others.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from bench.errors import NeuronbenchError
from methods.base import Method

SOLVERS = ("liblinear", "saga")


class SparseL1(Method):
    """Rank by |coef| of a class-balanced L1 logistic regression (published: C = 0.1, saga).

    Two classes: one fit. More classes: one binary one-vs-rest fit per class present and
    s_j = max_c |coef_cj|, so a neuron ranks by its strongest use for any one class (the published
    ranker is binary only). `liblinear` (default) converges in a few passes; `saga` reproduces the
    published solver but stops at scikit-learn's 100 epochs before converging on large N. Both are
    seeded from the cell's generator. Neurons with a zero weight tie and follow in index order; the
    published rankings run least-important-first, this one most-important-first.
    """

    def __init__(self, C: float = 0.1, solver: str = "liblinear", normalize: str = "zscore"):
        self.C = C
        self.solver = solver
        self.normalize = normalize

    def scores(self, Z, y, rng, **inputs) -> np.ndarray:
        if self.solver not in SOLVERS:
            raise NeuronbenchError(f"sparse_l1: solver must be one of {SOLVERS}, got {self.solver!r}")
        classes = np.unique(y)
        if len(classes) < 2:
            raise NeuronbenchError(f"sparse_l1 needs at least 2 classes in the labels, "
                                   f"got {classes.tolist()}")
        # l1_ratio=1 is the L1 penalty from scikit-learn 1.8 on (`penalty` is deprecated there)
        probe = LogisticRegression(C=self.C, l1_ratio=1.0, solver=self.solver, class_weight="balanced",
                                   random_state=int(rng.integers(2**31 - 1)))
        Z = np.ascontiguousarray(Z, dtype=np.float64)  # the solvers' dtype: convert once, not per class
        positives = classes[1:] if len(classes) == 2 else classes
        return np.max([np.abs(probe.fit(Z, y == c).coef_[0]) for c in positives], axis=0)
