"""The Method contract: validate, standardize, drop dead neurons, rank the live ones, append the dead.

It lives in bench/core, below methods/, so that the runner and the leaderboard (a submission's method)
can call and check methods without importing any of them.

Reference: shared/docs/reference.md#ranking-contract and #data-znorm.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from bench.errors import NeuronbenchError

DEAD_TOLERANCE = 1e-6  # a neuron is dead if its std <= DEAD_TOLERANCE * median std


def live_neurons(std: np.ndarray) -> np.ndarray:
    """Boolean mask of neurons whose spread is not negligible against the layer's median."""
    return std > DEAD_TOLERANCE * np.median(std)


def order_by_scores(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score; ties go to the lower index, NaN counts as -inf."""
    keyed = np.where(np.isnan(scores), -np.inf, scores)
    return np.argsort(-keyed, kind="stable")


def check_activations(X, where: str = "activations") -> np.ndarray:
    """Return X as a float32 2-D array, or raise on a wrong shape or NaN/inf values."""
    X = np.asarray(X)
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise NeuronbenchError(f"{where}: expected a numeric array, got dtype {X.dtype}")
    if X.ndim != 2:
        raise NeuronbenchError(f"{where}: expected a 2-D array (words x neurons), got shape {X.shape}")
    X = X.astype(np.float32, copy=False)
    bad = ~np.isfinite(X)
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise NeuronbenchError(f"{where}: {bad.sum()} NaN/inf values (first at word {rows[0]}, "
                               f"neuron {cols[0]}); fix the extraction or drop those words")
    return X


def check_labels(y, n: int, where: str = "labels") -> np.ndarray:
    """Return y as int64 class ids 0..C-1 of length n, or raise."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise NeuronbenchError(f"{where}: expected {n} labels in a 1-D array, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise NeuronbenchError(f"{where}: labels must be non-negative integer class ids, got {y.dtype}")
    return y.astype(np.int64, copy=False)


class Method:
    """Base class of every ranking method (scikit-learn rule: `__init__` only stores parameters).

    Subclasses implement `scores(Z, y, rng)` (higher = more important) or, for methods with a
    native ordering, `order(Z, y, rng)`; both see only live neurons, standardized if
    `normalize == "zscore"`. `needs` names extra inputs the runner must pass to `rank` (e.g.
    "model"); activation-only methods never see the model. A `dev` input, (X_dev, y_dev) for choosing
    hyperparameters (reference.md#data-splits), reaches `order` prepared like Z. After `rank`, `scores_` holds the
    per-neuron scores of the last call (NaN for dead neurons) when the method ranks by `scores`, else
    None: stored for diagnostics (reference.md#ranking-contract, item 5), never read by a scorer.
    """

    needs: ClassVar[frozenset[str]] = frozenset()
    uses_labels: ClassVar[bool] = True
    normalize: str = "zscore"

    def rank(self, X, y=None, *, rng: np.random.Generator | int | None = None, **inputs) -> np.ndarray:
        """Permutation of range(D), most important neuron first; never mutates X or y."""
        X = check_activations(X)
        name = type(self).__name__
        if len(X) < 2:
            raise NeuronbenchError(f"{name}: rank() needs at least 2 words (rows of X), got {len(X)}")
        if self.uses_labels:
            if y is None:
                raise NeuronbenchError(f"{name} needs labels")
            y = check_labels(y, len(X))
            if len(np.unique(y)) < 2:
                raise NeuronbenchError(f"{name}: the labels hold one class ({int(y[0])}); a labelled method "
                                       "needs at least two")
        missing = self.needs - inputs.keys()
        if missing:
            raise NeuronbenchError(f"{name} needs {sorted(missing)} passed to rank()")
        if self.normalize not in ("zscore", "raw"):
            raise NeuronbenchError(f"{name}: normalize must be 'zscore' or 'raw', "
                                   f"got {self.normalize!r}")
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        mean, std = X.mean(axis=0, dtype=np.float64), X.std(axis=0, dtype=np.float64)
        live = np.flatnonzero(live_neurons(std))
        if len(live) == 0:  # every neuron constant: nothing to rank, the dead keep their index order
            self.scores_ = None
            return np.arange(X.shape[1])

        def prepare(A: np.ndarray) -> np.ndarray:
            """Live neurons, standardized by the train statistics: a copy, methods may work in place."""
            A = A[:, live]
            return ((A - mean[live]) / std[live]).astype(np.float32) if self.normalize == "zscore" else A

        Z = prepare(X)
        if "dev" in inputs:  # (X_dev, y_dev) for choosing hyperparameters: prepared as Z is
            X_dev, y_dev = inputs["dev"]
            X_dev = check_activations(X_dev, "dev activations")
            if X_dev.shape[1] != X.shape[1]:
                raise NeuronbenchError(f"dev activations have {X_dev.shape[1]} neurons, train {X.shape[1]}")
            inputs = {**inputs, "dev": (prepare(X_dev), check_labels(y_dev, len(X_dev), "dev labels"))}
        self.scores_ = None
        sub = np.asarray(self.order(Z, y, rng, **inputs), dtype=np.int64)
        if not np.array_equal(np.sort(sub), np.arange(len(live))):
            raise RuntimeError(f"{name} returned an ordering that is not a permutation")
        if self.scores_ is not None:  # order() by scores() left the live neurons' scores
            full = np.full(X.shape[1], np.nan)
            full[live] = self.scores_
            self.scores_ = full
        dead = np.setdiff1d(np.arange(X.shape[1]), live)
        return np.concatenate([live[sub], dead])

    def order(self, Z: np.ndarray, y: np.ndarray | None, rng: np.random.Generator, **inputs) -> np.ndarray:
        self.scores_ = np.asarray(self.scores(Z, y, rng, **inputs), dtype=np.float64)
        return order_by_scores(self.scores_)

    def scores(self, Z: np.ndarray, y: np.ndarray | None, rng: np.random.Generator, **inputs) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement scores() or order()")
