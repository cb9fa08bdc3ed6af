"""Matrix-factorization units: `nmf_load`, `pca_load`, `ica_load` rank neurons by their loading on the NMF, PCA or ICA
components of the layer that best predict the concept (reference-causal-and-uncertainty.md#method-mf, G.2).

One ranking path for all three: factorize the train activations into r components, fit an L1 logistic probe of the
concept on the z-scored component activations, and score neuron j by `s_j = Σ_c |v_c| · |L_cj|`. The three differ
only in `factorize`.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from sklearn.decomposition import NMF, PCA, FastICA

from bench.core.method import Method
from bench.errors import NeuronbenchError
from methods.sparse import fit_l1_logistic_ovr

log = logging.getLogger(__name__)

# GELU's minimum is -0.16997 (at x = -0.7518); the tanh approximation (gelu_new) reaches -0.17004, which float16
# keeps as -0.1700439. Activations that never go below this floor are GELU (or ReLU) outputs.
GELU_FLOOR = -0.1701
NONNEGATIVE = ("auto", "clip", "split")
# select_on_dev: the probe's C = 1/(λ·N) is chosen from this grid by dev balanced accuracy (G.2 step 3)
C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
PROBE_TOL = 1e-6  # relative objective decrease at which the probe's FISTA stops (as sparse_l1's default)
FLAT_COMPONENT = 1e-6  # a component whose activations' std is below this share of the largest one carries nothing


@dataclass(frozen=True)
class Factors:
    """A fitted factorization of the live neurons: train component activations T (N x r), the neurons' loadings
    L (r x D, non-negative, each component's row of unit norm), and the map from prepared activations to T."""

    activations: np.ndarray
    loadings: np.ndarray
    transform: Callable[[np.ndarray], np.ndarray]


def unit_rows(A: np.ndarray) -> np.ndarray:
    """|A| with every nonzero row scaled to unit Euclidean norm (a zero row stays zero)."""
    norms = np.linalg.norm(A, axis=1, keepdims=True)
    return np.abs(A) / np.where(norms > 0, norms, 1.0)


def component_standardizer(T: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """z-scoring of component activations by the train statistics of T. A flat component (std at most
    FLAT_COMPONENT of the largest: PCA's components past the rank of X, an NMF part that never fires) maps to 0, so
    its rounding noise is not blown up to unit variance for the probe to pick by chance."""
    T = np.asarray(T, dtype=np.float64)
    mean, std = T.mean(axis=0), T.std(axis=0)
    scale = np.where(std > FLAT_COMPONENT * std.max(initial=0.0), std, np.inf)
    return lambda A: ((np.asarray(A, dtype=np.float64) - mean) / scale).astype(np.float32)


def probed_classes(y: np.ndarray) -> np.ndarray:
    """The classes probed one-vs-rest, as sparse_l1 probes them: the concept (the larger of two labels) alone, or
    every class of a multi-class form."""
    classes = np.unique(y)
    return classes[1:] if len(classes) == 2 else classes


def balanced_accuracy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean over the problems (rows) that have both sides of (true positive rate + true negative rate) / 2."""
    scores = []
    for row, target in zip(logits > 0, targets):
        if target.any() and not target.all():
            scores.append((row[target].mean() + (~row[~target]).mean()) / 2)
    return float(np.mean(scores)) if scores else 0.0


def fit_quietly(name: str, fit: Callable[[], Factors]) -> Factors:
    """Run `fit` with scikit-learn's warnings caught and each distinct one logged once: a factorization that stops at
    `max_iter` still gives usable components, so non-convergence is reported, not raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        factors = fit()
    for message in dict.fromkeys(str(w.message).strip() for w in caught):
        log.warning("%s: %s; ranking from the components it reached", name, message)
    return factors


class FactorizationLoading(Method):
    """The shared ranking path of G.2 (steps 3-5); subclasses implement `factorize` (steps 1-2 and 4's loadings).

    Component activations T are z-scored with their train statistics (a flat component gets 0) and the concept is
    probed on them by a class-balanced L1 logistic regression (`fit_l1_logistic_ovr`, sparse_l1's objective and
    solver, λ = 1/(C·N)); a multi-class form gets one one-vs-rest probe per class and each neuron its largest score
    over the classes, as in sparse_l1. `C` is fixed unless `select_on_dev`, which picks it from C_GRID by the dev
    balanced accuracy of the probe on T_dev = transform(X_dev) (ties to the stronger penalty; the method then needs
    `dev`). G.2 chooses λ on dev; the configs default to the fixed C = 0.1 (sparse_l1's) because a method that needs
    `dev` gets no bootstrap rows and is passed over by the conformance and planted tests, which rank without dev.
    `n_components` is capped at min(N, D) of the cell (PCA and ICA allow no more). The decompositions take
    `random_state` from the cell's generator.
    """

    def __init__(self, n_components: int = 32, C: float = 0.1, select_on_dev: bool = False, normalize: str = "zscore"):
        self.n_components = n_components
        self.C = C
        self.select_on_dev = select_on_dev
        self.normalize = normalize

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({"dev"}) if self.select_on_dev else frozenset()

    def factorize(self, Z: np.ndarray, n_components: int, seed: int) -> Factors:
        raise NotImplementedError(f"{type(self).__name__} must implement factorize()")

    def chosen_on_dev(self, T, targets, T_dev, targets_dev) -> float:
        """The C of C_GRID whose probe has the best dev balanced accuracy; the grid runs from the strongest penalty,
        so a weaker one must be strictly better."""
        best = (-1.0, self.C)
        for C in C_GRID:
            W, b, _ = fit_l1_logistic_ovr(T, targets, l1=1.0 / (C * len(T)), tol=PROBE_TOL)
            dev_accuracy = balanced_accuracy(W @ T_dev.T + b[:, None], targets_dev)
            if dev_accuracy > best[0]:
                best = (dev_accuracy, C)
        log.info("%s select_on_dev: C = %g (dev balanced accuracy %.4f)", type(self).__name__, best[1], best[0])
        return best[1]

    def scores(self, Z, y, rng, **inputs) -> np.ndarray:
        name = type(self).__name__
        if not (isinstance(self.n_components, int) and self.n_components >= 1):
            raise NeuronbenchError(f"{name}: n_components must be a positive integer, got {self.n_components!r}")
        seed = int(rng.integers(2**31 - 1))
        factors = fit_quietly(name, lambda: self.factorize(Z, min(self.n_components, *Z.shape), seed))
        standardized = component_standardizer(factors.activations)
        T, positives = standardized(factors.activations), probed_classes(y)
        targets = y[None, :] == positives[:, None]
        C = self.C
        if self.select_on_dev:
            Z_dev, y_dev = inputs["dev"]
            C = self.chosen_on_dev(T, targets, standardized(factors.transform(Z_dev)),
                                   y_dev[None, :] == positives[:, None])
        W, _, _ = fit_l1_logistic_ovr(T, targets, l1=1.0 / (C * len(y)), tol=PROBE_TOL)
        return (np.abs(W) @ factors.loadings).max(axis=0)


class NMFLoad(FactorizationLoading):
    """`nmf_load`: NMF units (Ecco's recipe for the factorization, G.1), ranked by G.2.

    NMF needs X ≥ 0, and G.2 fixes how the activations get there (`nonnegative`):
    - `clip` = max(x, 0), Ecco's choice for GELU FFN outputs: GELU never goes below -0.17, so clipping loses almost
      nothing there;
    - `split` = [max(x, 0), max(-x, 0)] side by side, for signed activations (the residual stream, SwiGLU products),
      where clipping would throw away half of every neuron: each neuron becomes two non-negative columns, and its
      loading on a component is the sum of its two columns' loadings (G.2 step 4). Shifting by the train minimum is
      not used: the offset becomes a component shared by every neuron (G.1);
    - `auto` (default) = `clip` if no train activation is below GELU_FLOOR (a GELU/ReLU output), else `split`. This
      is G.2's rule by site (GELU `mlp` sites clip, gated `mlp` and `hidden` sites split) read from the data, so the
      method needs no model description.
    The input is raw (`normalize: raw`, the default), as G.2 and Ecco factorize it: under `zscore` every neuron is
    centred, so `auto` always splits (at the train mean). scikit-learn's NMF with `init='nndsvda'`, coordinate
    descent, Frobenius loss, `max_iter=500` (G.2 step 2); loadings are `components_` with rows scaled to unit norm
    (NMF's scale is shared between its two factors), T is the fit's own W (`fit_transform`).
    """

    def __init__(self, n_components: int = 32, nonnegative: str = "auto", C: float = 0.1,
                 select_on_dev: bool = False, max_iter: int = 500, tol: float = 1e-4, normalize: str = "raw"):
        super().__init__(n_components, C, select_on_dev, normalize)
        self.nonnegative = nonnegative
        self.max_iter = max_iter
        self.tol = tol

    def factorize(self, Z, n_components, seed) -> Factors:
        if self.nonnegative not in NONNEGATIVE:
            raise NeuronbenchError(f"NMFLoad: nonnegative must be one of {NONNEGATIVE}, got {self.nonnegative!r}")
        split = self.nonnegative == "split" or (self.nonnegative == "auto" and Z.min() < GELU_FLOOR)

        def nonnegative(A: np.ndarray) -> np.ndarray:
            return np.concatenate([np.maximum(A, 0), np.maximum(-A, 0)], axis=1) if split else np.maximum(A, 0)

        model = NMF(n_components=n_components, init="nndsvda", solver="cd", beta_loss="frobenius", tol=self.tol,
                    max_iter=self.max_iter, random_state=seed)
        T = model.fit_transform(nonnegative(Z))
        loadings = unit_rows(model.components_)
        if split:
            loadings = loadings[:, :Z.shape[1]] + loadings[:, Z.shape[1]:]
        return Factors(T, loadings, lambda A: model.transform(nonnegative(A)))


class PCALoad(FactorizationLoading):
    """`pca_load`: principal components of the z-scored activations (G.2): loadings `components_[c, j]` (unit rows
    already), T = the component scores. scikit-learn's PCA, `svd_solver='auto'` (randomized for r well below D,
    seeded), no whitening."""

    def factorize(self, Z, n_components, seed) -> Factors:
        model = PCA(n_components=n_components, svd_solver="auto", random_state=seed)
        T = model.fit_transform(Z)
        return Factors(T, unit_rows(model.components_), model.transform)


class ICALoad(FactorizationLoading):
    """`ica_load`: independent components of the z-scored activations (G.2): loading of neuron j on component c is
    `mixing_[j, c]` (how strongly c shows in j), each column scaled to unit norm; T = the sources. scikit-learn's
    FastICA, parallel, logcosh, unit-variance whitening (G.1's defaults), `max_iter=200`."""

    def __init__(self, n_components: int = 32, C: float = 0.1, select_on_dev: bool = False, max_iter: int = 200,
                 tol: float = 1e-4, normalize: str = "zscore"):
        super().__init__(n_components, C, select_on_dev, normalize)
        self.max_iter = max_iter
        self.tol = tol

    def factorize(self, Z, n_components, seed) -> Factors:
        model = FastICA(n_components=n_components, algorithm="parallel", whiten="unit-variance", fun="logcosh",
                        max_iter=self.max_iter, tol=self.tol, random_state=seed)
        T = model.fit_transform(Z)
        return Factors(T, unit_rows(model.mixing_.T), model.transform)
