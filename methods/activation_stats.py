"""Label-free floors `variance` and `mean_abs`: a labelled method that does not beat them is not using its labels
(reference.md#method-unsup).

They read raw activations only: after z-scoring every variance is 1 and the ranking would be index order, so
`normalize` must stay "raw" (the default here and in their configs).
"""

from __future__ import annotations

import numpy as np

from bench.core.method import Method
from bench.errors import NeuronbenchError


class RawActivationStatistic(Method):
    """A per-neuron statistic of raw activations, ranked descending; labels are ignored."""

    uses_labels = False

    def __init__(self, normalize: str = "raw"):
        self.normalize = normalize

    def scores(self, Z, y, rng, **inputs) -> np.ndarray:
        if self.normalize != "raw":
            raise NeuronbenchError(f"{type(self).__name__} reads raw activations (reference.md#method-unsup); "
                                   f"set normalize: raw, got {self.normalize!r}")
        return self.statistic(Z)

    def statistic(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Variance(RawActivationStatistic):
    """`variance`: Var_i(x_ij), the neurons that move most across words."""

    def statistic(self, X: np.ndarray) -> np.ndarray:
        return X.var(axis=0, dtype=np.float64)


class MeanAbs(RawActivationStatistic):
    """`mean_abs`: mean_i |x_ij|, the neurons with the largest typical magnitude (offset included)."""

    def statistic(self, X: np.ndarray) -> np.ndarray:
        return np.abs(X).mean(axis=0, dtype=np.float64)
