"""Integrated gradients through the method's own logistic probe (reference.md#method-ig, `ig_probe`).

The target is the probe's probability of the word's class, not its logit: with a logit, IG collapses to
weight × (input − baseline) for any number of steps, and the saturation of the softmax is what makes IG
say something a weight does not.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.special import softmax

from bench.core.method import Method
from bench.errors import NeuronbenchError
from bench.probe import LogisticProbe, fit_logistic
from methods.probeless import class_means

log = logging.getLogger(__name__)

BASELINES = ("mean", "zero")
RULES = ("midpoint", "left")


def path_points(steps: int, rule: str) -> np.ndarray:
    """The α in [0, 1) at which the path integral is sampled.

    `midpoint` ((s + ½)/m) has error O(1/m²); `left` (s/m, Dai et al.'s rule) only O(1/m).
    """
    offset = 0.5 if rule == "midpoint" else 0.0
    return (np.arange(steps) + offset) / steps


def softmax_form(probe: LogisticProbe) -> tuple[np.ndarray, np.ndarray]:
    """(C, D) weights and (C,) biases of the probe as one softmax; one logit l is the softmax over [0, l]."""
    W, b = probe.W.astype(np.float64), probe.b.astype(np.float64)
    if len(W) == 1:
        return np.vstack([np.zeros_like(W), W]), np.concatenate([[0.0], b])
    return W, b


def probabilities(probe: LogisticProbe, Z: np.ndarray) -> np.ndarray:
    """p(c | z) for every class, in float64; Z may be one point (D,) or rows (N, D)."""
    W, b = softmax_form(probe)
    return softmax(np.asarray(Z, dtype=np.float64) @ W.T + b, axis=-1)


def integrated_gradients(probe: LogisticProbe, Z: np.ndarray, targets: np.ndarray, baseline: np.ndarray,
                         alphas: np.ndarray) -> np.ndarray:
    """(N, D) attributions `A_ij = (z_ij − b_j) · mean_s ∂p(t_i | b + α_s (z_i − b)) / ∂z_j`.

    Closed form, all words, steps and neurons at once: the logits are affine in z, so on the path they
    are l(b) + α (l(z_i) − l(b)) and a step costs O(C) per word. With p = softmax, ∇p_t = p_t (W_t − pᵀW),
    so the step-averaged gradient is u_iᵀW with u_i = mean_s p_t(α_s) (e_t − p(α_s)): one (N, C) @ (C, D)
    product. Memory is O(N·(m·C + D)): two (N, D) float64 buffers.
    """
    W, b = softmax_form(probe)
    rows = np.arange(len(targets))
    offset = np.asarray(Z, dtype=np.float64) - baseline
    logits = (baseline @ W.T + b) + alphas[None, :, None] * (offset @ W.T)[:, None, :]  # (N, m, C)
    p = softmax(logits, axis=-1)
    p_target = p[rows, :, targets]  # (N, m)
    step_weights = -p
    step_weights[rows, :, targets] += 1.0
    step_weights *= p_target[:, :, None]  # p_t (e_t − p)
    attributions = step_weights.mean(axis=1) @ W
    attributions *= offset
    return attributions


class IGProbe(Method):
    """`ig_probe`: class-averaged |IG| of p(class | z) under an L2 logistic probe on all live neurons.

    Per class c, `a_cj = mean_{i: y_i = c} A_ij` with target c; two classes (the concept form) score
    `|a_1j|`, more classes `mean_c |a_cj|` over the classes present. The reference picks the probe's C on
    dev, but a method sees only train (reference.md#data-splits), so C is a fixed parameter. Baselines live
    in the space the method sees: `mean` is the train mean (0 after z-scoring), `zero` differs from it only
    with `normalize: raw`. The completeness gap max_i |Σ_j A_ij − (F(z_i) − F(b))| is logged.
    """

    def __init__(self, C: float = 1.0, steps: int = 20, baseline: str = "mean", rule: str = "midpoint",
                 normalize: str = "zscore"):
        self.C = C
        self.steps = steps
        self.baseline = baseline
        self.rule = rule
        self.normalize = normalize

    def scores(self, Z, y, rng, **inputs) -> np.ndarray:
        if self.baseline not in BASELINES or self.rule not in RULES or self.steps < 1:
            raise NeuronbenchError(f"ig_probe: baseline must be one of {BASELINES}, rule one of {RULES} "
                                   f"and steps >= 1; got {self.baseline!r}, {self.rule!r}, {self.steps!r}")
        n_classes = int(y.max()) + 1
        probe = fit_logistic(Z, y, n_classes, C=self.C)
        baseline = (Z.mean(axis=0, dtype=np.float64) if self.baseline == "mean"
                    else np.zeros(Z.shape[1]))
        attributions = integrated_gradients(probe, Z, y, baseline, path_points(self.steps, self.rule))
        change = probabilities(probe, Z)[np.arange(len(y)), y] - probabilities(probe, baseline)[y]
        log.info("ig_probe completeness gap %.3g (%d steps, %s rule)",
                 np.max(np.abs(attributions.sum(axis=1) - change)), self.steps, self.rule)
        per_class = np.abs(class_means(attributions, y, n_classes))
        if n_classes == 2:
            return per_class[1]
        return per_class[np.bincount(y, minlength=n_classes) > 0].mean(axis=0)
