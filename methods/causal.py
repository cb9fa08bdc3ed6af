"""Model-based rankings: single-neuron ablation and integrated gradients through the model.

reference.md#method-ablate-single and #method-ig (`ig_head`). Both read the model's own computation:
the runner passes a `bench.intervene.ModelContext` for the cell, `rank(X, y, rng=..., model=context)`,
with X the cell's train activations and y its labels in the context's train row order. X only
supplies the live neurons and the per-neuron train means (the `mean` value/baseline); the effects
are measured in the model's raw activation space, so `normalize` (kept for the Method contract) does
not change the ranking.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from bench.core.method import Method, check_activations, live_neurons
from bench.errors import NeuronbenchError
from bench.intervene import (ModelContext, ablation_sweep, final_head, integrated_gradients,
                             mean_gold_log_prob)
from bench.seeds import sample_rows
from methods.attribution import BASELINES, RULES, path_points
from methods.probeless import class_means

log = logging.getLogger(__name__)
VALUES = ("mean", "zero")


class ModelMethod(Method):
    """A method that runs the model: `needs = {"model"}`, a `ModelContext` naming the cell.

    `rank` also hands `scores` the raw per-neuron train means of X (`raw_mean`, all D neurons) and the
    indices of the live neurons (`live`), which `scores` sees in the same order as Z's columns.
    """

    needs = frozenset({"model"})

    def rank(self, X, y=None, *, rng=None, **inputs) -> np.ndarray:
        X = check_activations(X)
        std = X.std(axis=0, dtype=np.float64)
        return super().rank(X, y, rng=rng, raw_mean=X.mean(axis=0, dtype=np.float64),
                            live=np.flatnonzero(live_neurons(std)), **inputs)

    @staticmethod
    def _context(Z, y, model, raw_mean) -> tuple[ModelContext, str, int]:
        if not isinstance(model, ModelContext):
            raise NeuronbenchError(f"model: expected a bench.intervene.ModelContext, got {type(model).__name__}")
        site, layer = model.cell()
        if len(Z) != len(model.words["train"]):
            raise NeuronbenchError(f"X has {len(Z)} rows but the model context {len(model.words['train'])} "
                                   "train examples: pass the X and y of the context's task form")
        if not np.array_equal(y, model.y["train"]):
            raise NeuronbenchError("y differs from the model context's train labels")
        width = model.loaded.width(site)
        if len(raw_mean) != width:
            raise NeuronbenchError(f"X has {len(raw_mean)} neurons but site {site!r} of "
                                   f"{model.loaded.name} has {width}")
        return model, site, layer


class AblateSingle(ModelMethod):
    """`ablate_single`: Δ_j = m_clean − m_ablated for each live neuron j alone, ranked descending.

    j is set to its train mean (`value: mean`) or 0 (`value: zero`) at every subword piece of a seeded
    sample of `n_words` train words (all sampled words of a sentence in the same pass); m is the mean
    gold log-probability under the frozen final-layer head. `block` neurons share one forward.
    """

    def __init__(self, n_words: int = 2000, value: str = "mean", block: int = 64, normalize: str = "zscore"):
        self.n_words = n_words
        self.value = value
        self.block = block
        self.normalize = normalize

    def scores(self, Z, y, rng, *, model=None, raw_mean=None, live=None, **inputs) -> np.ndarray:
        if self.value not in VALUES or self.n_words < 1 or self.block < 1:
            raise NeuronbenchError(f"ablate_single: value must be one of {VALUES}, n_words >= 1 and "
                                   f"block >= 1; got {self.value!r}, {self.n_words!r}, {self.block!r}")
        ctx, site, layer = self._context(Z, y, model, raw_mean)
        started = time.perf_counter()
        head = final_head(ctx)
        t_head = time.perf_counter() - started
        rows = sample_rows(len(y), self.n_words, rng)
        gold = y[rows]
        inputs_ = ctx.inputs("train", rows, batch_size=1)  # one sentence per forward: see ablation_sweep
        values = raw_mean[live] if self.value == "mean" else np.zeros(len(live))
        clean = mean_gold_log_prob(ctx.loaded, inputs_, head, gold)
        ablated = ablation_sweep(ctx.loaded, inputs_, site, layer, live, values, head, gold, block=self.block)
        delta = clean - ablated
        log.info("ablate_single %s L%d: %d words, %d neurons, m_clean %.4f, max Δ %.4g, head %.1fs, "
                 "sweep %.1fs", site, layer, len(rows), len(live), clean, delta.max(initial=0.0), t_head,
                 time.perf_counter() - started - t_head)
        return delta


class IGHead(ModelMethod):
    """`ig_head`: class-averaged |IG| of p(class | h_L) under the frozen final-layer head.

    For each sampled train word, the (site, layer) activations of all neurons at all of the word's
    pieces move along `b + α (x − b)` (b: train mean at the site, or 0), `steps` points by the
    `midpoint` or `left` rule; a neuron's attribution sums its per-piece terms. Per class c,
    `a_cj = mean_{i: y_i = c} A_ij` with target c; two classes (the concept form) score `|a_1j|`, and
    only the sampled concept words are run (OTHER words do not enter that score); more classes score
    `mean_c |a_cj|` over the classes in the sample. The completeness gap is logged.
    """

    def __init__(self, n_words: int = 2000, steps: int = 20, baseline: str = "mean", rule: str = "midpoint",
                 normalize: str = "zscore"):
        self.n_words = n_words
        self.steps = steps
        self.baseline = baseline
        self.rule = rule
        self.normalize = normalize

    def scores(self, Z, y, rng, *, model=None, raw_mean=None, live=None, **inputs) -> np.ndarray:
        if (self.baseline not in BASELINES or self.rule not in RULES or self.steps < 1
                or self.n_words < 1):
            raise NeuronbenchError(f"ig_head: baseline must be one of {BASELINES}, rule one of {RULES}, "
                                   f"steps >= 1 and n_words >= 1; got {self.baseline!r}, {self.rule!r}, "
                                   f"{self.steps!r}, {self.n_words!r}")
        ctx, site, layer = self._context(Z, y, model, raw_mean)
        started = time.perf_counter()
        head = final_head(ctx)
        t_head = time.perf_counter() - started
        rows = sample_rows(len(y), self.n_words, rng)
        if ctx.n_classes == 2:
            rows = rows[y[rows] == 1]
        if len(rows) == 0:
            log.warning("ig_head %s L%d: no sampled word of a scored class; all scores are 0", site, layer)
            return np.zeros(len(live))
        baseline = raw_mean if self.baseline == "mean" else np.zeros(len(raw_mean))
        result = integrated_gradients(ctx.loaded, ctx.inputs("train", rows, per_word=True, batch_size=1),
                                      site, layer, head, y[rows], baseline,
                                      path_points(self.steps, self.rule))
        gap = result.completeness_gap
        log.info("ig_head %s L%d: %d words, completeness gap max %.3g mean %.3g (%d steps, %s rule), "
                 "head %.1fs, IG %.1fs", site, layer, len(rows), gap.max(), gap.mean(), self.steps,
                 self.rule, t_head, time.perf_counter() - started - t_head)
        A = result.attributions[:, live]
        n_classes = ctx.n_classes
        per_class = np.abs(class_means(A, y[rows], n_classes))
        if n_classes == 2:
            return per_class[1]
        return per_class[np.bincount(y[rows], minlength=n_classes) > 0].mean(axis=0)
