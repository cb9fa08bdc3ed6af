"""Planted-neuron recovery: every conf/method/*.yaml on every planted regime, against a stated expectation.

The methods issue asks for a planted-neuron suite in which "for each method the tests assert the recall it should reach
in each regime; where a method is known to fail a regime by design, the test asserts that and the docstring says why".
Reference: shared/docs/reference.md §3.7 (#metric-planted, "Expected behaviour, used as tests") and §1.5 (which
methods depend on per-neuron scale).

Setting (smaller than the reference default, to keep this file well under a minute on two cores):
`planted_data(case, n_neurons=256, sizes={"train": 2000, "dev": 10, "test": 10}, seed=0)`, i.e. D = 256 instead of
768; N = 2,000 train words, C = 5, delta = 3 and the other generator defaults as in the reference. Dev and test are
unused. Every method ranks train as a cell does: `method.rank(X_train, y_train, rng=np.random.default_rng(0))`. Each
data set is generated once per session. Two methods run with a cheaper setting, stated in their rows:
`gaussian` with k_max = 10 (default 150) and `mi` with max_samples = 1,000 (default 10,000, i.e. all 2,000 here).

Measures, with G the union of the classes' G_c and k = |G| (single 5, redundant 15, distributed 80, polysemantic 6,
variance_confounded 5):
- `recall`: recall@|G| = |top_k & G| / |G|; with k = |G| this is also the R-precision;
- `group`: group recall@|G|, the share of classes c with at least one member of G_c in the top k.

The table: EXPECTED[method][case] holds one or more bounds, `at_least` (the method recovers the regime) or `at_most`
(a designed failure, or a behaviour that keeps part of G by design), each with a one-line reason. Bounds sit at a
margin from the value measured at this setting (1.0 -> >= 0.8; a failure at 0.0 -> <= 0.2), close enough that a real
regression trips them. A config without a row (a method just added) meets the one bound the reference sets for every
method, recall@|G| >= 0.8 on single for a labelled method (§3.7); its other regimes are measured and shown in the
skip reason until a row states them, so adding a method needs no edit here. A method that runs the model (`needs`, e.g. ablate_single, ig_head) cannot run on planted activations, which have no model: its
row is `NotApplicable(reason)`, checked against the method's `needs`, and its tests skip with that reason. EXTRA
holds the regimes the five cases do not cover: scale-dependent methods under `normalize: raw`, a low delta for
`distributed`, `gaussian` with the published shrinkage or the default-sized greedy, and near-collinear copies.

Designed failures (asserted with `at_most`):
- `random`: chance, |G|/D (0.02 to 0.31 here).
- `variance`, `mean_abs` on variance_confounded: label-free, they rank the 20 signal-free x10 decoys first.
- `cluster_rep` on redundant: one representative per correlated cluster first, so it keeps one copy per class.
- `probeless`, `probeless_ovr`, `cluster_rep` with `normalize: raw` on variance_confounded: a raw mean gap of 0.3
  loses to the decoys (and to ordinary neurons' chance gaps); under the default zscore they recover.
- `nmf_load` on variance_confounded: G.2 factorizes raw activations, so the x10 decoys dominate NMF's loss and the
  x0.1 planted neurons load on no component; under `normalize: zscore` it recovers (tests/test_factorization.py).
- `lca` with Fan et al.'s lambda1 = lambda2 = 0.1 and `normalize: raw`: the penalty prices out the x10 weights that
  x0.1-scaled neurons need.
- low delta/sqrt(m) on distributed: univariate scores lose it, and so does the linear probe.
- `gaussian` with `compat: published_shrinkage` at N_c ~ 300, D = 768 (the §2.4 fix is checked by the compat=None row).
- `gaussian` with k_max >= |G| on distributed, and on near-collinear copies: greedy MI stops taking neurons whose
  information it already has, so recall falls while group recall stays at 1.

Where the measurement departs from §3.7 (asserted as measured; the reason says so):
- On `redundant`, the L1-heavy probes (lasso, lca, sparse_l1) and greedy `gaussian` keep all three copies, not one:
  the generator gives each copy independent noise, so every copy adds information. The "keeps one member" behaviour
  appears with near-collinear copies (EXTRA, redundant_collinear) for lasso and gaussian, not for lca (elastic net
  spreads weight over correlated inputs).
- `lca` (and the other weight-ranked probes) under `normalize: raw` recovers variance_confounded: small-scale signal
  neurons need large weights, which a weight ranking puts first, and the decoys carry no signal. Only a strong
  penalty makes it fail.
- Univariate scores recover `distributed` at the generator's default delta/sqrt(m) = 0.75; at 0.125 they lose it, but
  so does `lca`: the loss is a signal-to-noise limit, not a univariate one.
- Label-free `variance` and `mean_abs` recover single, redundant, polysemantic and most of distributed, because a
  planted class shift adds variance (and |x|); only variance_confounded separates them from labelled methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import CONF
from tasks.planted import CASES, planted_data

METHOD_FILES = sorted((CONF / "method").glob("*.yaml"))
STEMS = [p.stem for p in METHOD_FILES]
N_NEURONS = 256
SIZES = {"train": 2000, "dev": 10, "test": 10}
MEASURES = ("recall", "group")


@dataclass(frozen=True)
class Bound:
    measure: str  # "recall" (recall@|G| = R-precision) or "group" (group recall@|G|)
    value: float
    at_most: bool  # True: a designed failure, the measure must not exceed `value`
    reason: str


def at_least(value: float, reason: str, measure: str = "recall") -> Bound:
    return Bound(measure, value, False, reason)


def at_most(value: float, reason: str, measure: str = "recall") -> Bound:
    return Bound(measure, value, True, reason)


@dataclass(frozen=True)
class NotApplicable:
    """A method that cannot run on planted activations: it needs inputs (a model, other models) that a planted
    layer does not have. The test checks that the method does declare such `needs`, then skips."""

    reason: str


# Settings that make a method affordable at this size; every row using one says so in its reason.
METHOD_PARAMS = {"gaussian": {"k_max": 10}, "mi": {"max_samples": 1000}}

SINGLE = "§3.7: every labelled method reaches recall@|G| >= 0.8 on single (measured 1.0)"
REDUNDANT = "copies carry independent noise, so each is as strong as a single-case neuron (measured 1.0)"
DISTRIBUTED = "delta/sqrt(m) = 0.75 per neuron over 2,000 words is still a clear per-neuron effect (measured {})"
POLY = "the shared neuron (delta on two classes) and the delta/2 neurons all move a class mean (measured {})"
ZSCORE = "zscore undoes the x0.1 / x10 scales: same standardized effect as delta = 3 (measured 1.0)"
INVARIANT = "scale-invariant (§1.5), so the x0.1 / x10 scales change nothing (measured 1.0)"
L1_REDUNDANT = ("departs from §3.7 ('keeps one member'): the copies' noise is independent, so every copy adds "
                "information and the L1 probe keeps all three (measured 1.0); see redundant_collinear")
LABEL_FREE = ("label-free, yet finds G: a class shift of 3 adds ~1.4 to a planted neuron's variance and raises its "
              "mean |x| (measured {})")
DECOYS = ("designed failure: label-free, it ranks the 20 signal-free decoys (x10 scale, 100x variance) first "
          "(measured 0.0)")


def standard(distributed=1.0, poly=1.0, vc=ZSCORE) -> dict:
    """The row of a labelled method that recovers every regime; measured values where they fall below 1."""
    return {"single": at_least(0.8, SINGLE),
            "redundant": at_least(0.8, REDUNDANT),
            "distributed": at_least(0.8 if distributed >= 0.9 else 0.6, DISTRIBUTED.format(distributed)),
            "polysemantic": at_least(0.8 if poly >= 0.9 else 0.5, POLY.format(poly)),
            "variance_confounded": at_least(0.8, vc)}


def label_free(distributed: float, per_neuron: float) -> dict:
    """The row of a label-free statistic: G found through the variance its class shift adds, decoys fool it."""
    return {"single": at_least(0.8, LABEL_FREE.format(1.0)),
            "redundant": at_least(0.8, LABEL_FREE.format(1.0)),
            "distributed": at_least(0.6, LABEL_FREE.format(distributed) + f"; {per_neuron:.2f} per neuron here, "
                                         "near the estimate's noise"),
            "polysemantic": at_least(0.8, LABEL_FREE.format(1.0)),
            "variance_confounded": at_most(0.2, DECOYS)}


def l1_probe(distributed: float, poly: float, poly_reason: str | None = None) -> dict:
    row = standard(distributed, poly)
    row["redundant"] = (at_least(0.8, L1_REDUNDANT), at_least(0.8, "one copy per class at least", "group"))
    if poly_reason:
        row["polysemantic"] = at_least(0.5, poly_reason)
    return row


WEIGHT_MASS_POLY = ("weight mass ranks by the share of a class's |W| ahead of a neuron: the shared neuron holds ~21% "
                    "of classes 0/1's mass, so their delta/2 neurons queue behind other classes' runner-up noise "
                    "neurons, whose classes have a top share of only ~10% (measured 0.67)")

MODEL_ONLY = ("runs the model (needs a bench.intervene.ModelContext) and planted activations have no model; its "
              "model-based behaviour is tested in tests/test_intervene.py")

EXPECTED: dict[str, dict[str, Bound | tuple[Bound, ...]] | NotApplicable] = {
    "anova_f": standard(vc=INVARIANT),
    "ap": standard(vc=INVARIANT),
    "ap2": standard(vc=INVARIANT),
    "cluster_rep": {
        **standard(),
        "redundant": (
            at_most(0.6, "by design one representative per correlated cluster first: copies correlate ~0.53 through "
                         "their shared shift (1 - |rho| < 0.5), so the other copies trail (measured 0.40)"),
            at_least(0.8, "each class's cluster still sends its best copy to the top (measured 1.0)", "group")),
    },
    "gaussian": {
        **standard(vc=INVARIANT + "; k_max = 10 for speed"),
        "single": at_least(0.8, SINGLE + "; k_max = 10 for speed (default 150)"),
        "redundant": (at_least(0.8, "departs from §3.7 ('greedy keeps one member'): independent noise makes every "
                                    "copy add MI (measured 1.0; at k_max = 20 all 15 greedy picks are copies); "
                                    "see redundant_collinear"),
                      at_least(0.8, "one copy per class at least", "group")),
        "distributed": at_least(0.8, "k_max = 10 < |G| = 80: 10 greedy picks, then single-neuron MI order, which "
                                     "finds the rest (measured 1.0); the default-sized greedy is an EXTRA row"),
        "polysemantic": at_least(0.8, POLY.format(1.0) + "; k_max = 10"),
    },
    "ablate_single": NotApplicable(MODEL_ONLY),
    "ig_head": NotApplicable(MODEL_ONLY),
    **dict.fromkeys(("maxcorr", "mincorr", "linreg"), NotApplicable(
        "compares with other models' activations on the same words (needs other_activations), which a planted "
        "layer does not have; tested in tests/test_methods_misc.py and tests/test_cross_model_runner.py")),
    "ica_load": standard(distributed=0.76, poly=0.67) | {
        "distributed": at_least(0.6, "FastICA cannot separate Gaussian directions (it stops at max_iter here), so the "
                                     "sources mix the 80 weak neurons with noise; every class keeps members "
                                     "(measured 0.76, group 1.0)"),
        "polysemantic": at_least(0.5, "the delta/2 neurons' sources mix with the unseparable Gaussian noise: two of "
                                      "the five delta/2 neurons rank 7th and 41st (measured 0.67, group 0.6)"),
    },
    "ig_probe": standard(distributed=0.99),
    "iou": standard(distributed=0.75, poly=0.83) | {
        "distributed": at_least(0.6, "the top-0.5% mask (10 of 2,000 words) is a noisy detector of a 0.75-sigma "
                                     "shift (measured 0.75)"),
        "polysemantic": at_least(0.65, "the shared neuron's top 0.5% splits between its two classes, so its IoU "
                                       "with either is low and it ranks ~33rd; the other five are found "
                                       "(measured 0.83)"),
    },
    "iou_prev": standard(distributed=0.99, vc=INVARIANT),
    "lasso": l1_probe(0.95, 0.67, WEIGHT_MASS_POLY),
    "lca": l1_probe(0.95, 0.67, WEIGHT_MASS_POLY),
    "linear_meanw": standard(distributed=0.95),
    "mean_abs": label_free(0.84, 0.19),
    "meanselect": standard(vc=INVARIANT),
    "mi": standard(distributed=0.76, vc=INVARIANT + "; max_samples = 1,000") | {
        "single": at_least(0.8, SINGLE + "; max_samples = 1,000 for speed"),
        "distributed": at_least(0.6, "the kNN MI estimate on a 1,000-word sample (max_samples = 1,000 for speed) "
                                     "is noisy for a 0.75-sigma shift (measured 0.76; 0.81 on all 2,000 words)"),
    },
    "mi_hist": standard(vc=INVARIANT),
    "nmf_load": standard(distributed=0.96) | {
        "variance_confounded": at_most(0.2, "designed failure: G.2 factorizes raw activations (split at 0), so the "
                                            "x10 decoys dominate NMF's loss and the x0.1 planted neurons load on no "
                                            "component (truth ranks 251-255; measured 0.0; 1.0 under normalize: "
                                            "zscore, tests/test_factorization.py)"),
    },
    "noreg": standard(distributed=0.95),
    "pca_load": standard(),
    "probeless": standard(),
    "probeless_ovr": standard(),
    "random": {
        "single": at_most(0.2, "chance: |G|/D = 5/256 = 0.02 (measured 0.0)"),
        "redundant": at_most(0.2, "chance: |G|/D = 15/256 = 0.06 (measured 0.07)"),
        "distributed": at_most(0.5, "chance: |G|/D = 80/256 = 0.31 (measured 0.31)"),
        "polysemantic": at_most(0.2, "chance: |G|/D = 6/256 = 0.02 (measured 0.0)"),
        "variance_confounded": at_most(0.2, "chance: |G|/D = 5/256 = 0.02 (measured 0.0)"),
    },
    "ridge": standard(distributed=0.96),
    "sparse_l1": l1_probe(0.97, 1.0),
    "variance": label_free(0.80, 0.09),
}


@dataclass(frozen=True)
class Planted:
    X: np.ndarray  # train activations
    y: np.ndarray  # train labels
    truth: tuple[frozenset[int], ...]


def generated(case: str, n_neurons: int = N_NEURONS, train: int = SIZES["train"], **kwargs) -> Planted:
    data = planted_data(case, n_neurons=n_neurons, sizes={**SIZES, "train": train}, seed=0, **kwargs)
    return Planted(data.X["train"], data.y["train"], data.truth)


def collinear_copies(noise: float = 0.05) -> Planted:
    """`single` plus two near-copies (x_j + 0.05 * fresh noise) of every planted neuron: a redundant group whose
    members carry (almost) the same information, the situation §3.7's "keeps one member" describes."""
    base = generated("single")
    planted = [min(group) for group in base.truth]
    rng = np.random.default_rng(1)
    copies = base.X[:, planted * 2] + noise * rng.normal(size=(len(base.X), 2 * len(planted))).astype(np.float32)
    n, c = N_NEURONS, len(planted)
    truth = tuple(frozenset({j, n + i, n + c + i}) for i, j in enumerate(planted))
    return Planted(np.concatenate([base.X, copies], axis=1), base.y, truth)


DATASETS = {
    **{case: (lambda case=case: generated(case)) for case in CASES},
    "distributed_low_delta": lambda: generated("distributed", delta=0.5),  # delta/sqrt(m) = 0.125
    "single_d768_n1500": lambda: generated("single", n_neurons=768, train=1500),  # N_c ~ 300, D = 768 (§3.7)
    "redundant_collinear": collinear_copies,
}


@lru_cache(maxsize=None)
def dataset(name: str) -> Planted:
    return DATASETS[name]()


@dataclass(frozen=True)
class Extra:
    id: str
    method: str  # a conf/method stem
    data: str  # a DATASETS key
    bounds: tuple[Bound, ...]
    params: dict = field(default_factory=dict)  # overrides of the config's parameters


RAW = {"normalize": "raw"}
RAW_INVARIANT = "§1.5 lists it as scale-invariant: raw activations change nothing (measured 1.0)"
LOW_DELTA = ("§3.7: univariate scores lose distributed at low delta/sqrt(m); at 0.125 per neuron the shift is "
             "within the noise of 400 words per class (measured {})")

EXTRA = [
    # variance_confounded under normalize: raw (§1.5, §3.7). The zscore rows are in EXPECTED.
    Extra("probeless-raw", "probeless", "variance_confounded", (at_most(
        0.2, "designed failure: on raw scale the planted mean gap is 0.3 and loses to the decoys and to ordinary "
             "neurons' chance gaps (truth ranks 45-66; measured 0.0)"),), RAW),
    Extra("probeless_ovr-raw", "probeless_ovr", "variance_confounded", (at_most(
        0.2, "designed failure: raw mean gaps put the 20 decoys first (truth ranks 20-24; measured 0.0)"),), RAW),
    Extra("cluster_rep-raw", "cluster_rep", "variance_confounded", (at_most(
        0.2, "designed failure: its base score is raw probeless; only the clustering is scale-invariant "
             "(measured 0.0)"),), RAW),
    Extra("lca-raw", "lca", "variance_confounded", (at_least(
        0.8, "departs from §3.7: x0.1-scaled signal neurons need x10 weights, which a weight ranking puts first, "
             "and the signal-free decoys get ~0 weight, so raw scale helps here (measured 1.0)"),), RAW),
    Extra("lca_fan-raw", "lca", "variance_confounded", (at_most(
        0.2, "designed failure: with Fan et al.'s lambda1 = lambda2 = 0.1 the penalty prices out the x10 weights "
             "that x0.1-scaled neurons need (truth ranks 112-208; measured 0.0)"),), {**RAW, "l1": 0.1, "l2": 0.1}),
    Extra("lca_fan-zscore", "lca", "variance_confounded", (at_least(
        0.8, "the same strong penalty recovers G once z-scoring equalizes the scales (measured 1.0)"),),
        {"l1": 0.1, "l2": 0.1}),
    *[Extra(f"{stem}-raw", stem, "variance_confounded", (at_least(0.8, RAW_INVARIANT),), RAW)
      for stem in ("anova_f", "ap", "ap2", "iou_prev", "meanselect", "mi_hist")],
    # distributed at low delta/sqrt(m) (§3.7); the generator default (0.75) is in EXPECTED.
    Extra("anova_f-low-delta", "anova_f", "distributed_low_delta", (at_most(0.7, LOW_DELTA.format(0.475)),)),
    Extra("probeless-low-delta", "probeless", "distributed_low_delta", (at_most(0.7, LOW_DELTA.format(0.475)),)),
    Extra("mi_hist-low-delta", "mi_hist", "distributed_low_delta", (at_most(0.7, LOW_DELTA.format(0.35)),)),
    Extra("lca-low-delta", "lca", "distributed_low_delta", (at_most(
        0.7, "the multivariate probe loses it too (measured 0.525): a signal-to-noise limit, not a univariate "
             "one"),)),
    # gaussian (§2.4, §3.7).
    Extra("gaussian-published-shrinkage", "gaussian", "single_d768_n1500", (at_most(
        0.2, "designed failure (§3.7): a_c = N_c + 2D + 4 with N_c ~ 300, D = 768 over-shrinks; the first picks "
             "are noise (k_max = 10 for speed; measured 0.0)"),),
        {"k_max": 10, "compat": "published_shrinkage"}),
    Extra("gaussian-fixed-shrinkage", "gaussian", "single_d768_n1500", (at_least(
        0.8, "the §2.4 fix a_c(t) = N_c + 2t + 4 recovers the same data (k_max = 10; measured 1.0)"),),
        {"k_max": 10}),
    Extra("gaussian-greedy-distributed", "gaussian", "distributed", (
        at_most(0.85, "greedy MI keeps a subset: with k_max = 80 >= |G| (default 150) it takes noise once the "
                      "weak neurons add little (measured 0.65; 0.85 at k_max = 60, 1.0 at k_max <= 40)"),
        at_least(0.8, "every class keeps members (measured 1.0)", "group")), {"k_max": 80}),
    # near-collinear copies: the regime where §3.7's "L1 / greedy keep one member of a redundant group" holds.
    Extra("gaussian-collinear", "gaussian", "redundant_collinear", (
        at_most(0.5, "greedy MI keeps one member: a near-copy adds no information (k_max = 20 >= |G| = 15; "
                     "measured 0.33)"),
        at_least(0.8, "one member per class (measured 1.0)", "group")), {"k_max": 20}),
    Extra("lasso-collinear", "lasso", "redundant_collinear", (
        at_most(0.8, "L1 concentrates weight on fewer near-copies (measured 0.60)"),
        at_least(0.8, "one member per class (measured 1.0)", "group"))),
    Extra("lca-collinear", "lca", "redundant_collinear", (at_least(
        0.8, "the elastic net's L2 term spreads weight over correlated copies, so lca keeps them (measured 0.93)"),)),
]


def make_method(stem: str, params: dict):
    return instantiate(OmegaConf.load(CONF / "method" / f"{stem}.yaml"), **params)


def recovery(ranking: np.ndarray, truth) -> dict[str, float]:
    """recall@|G| (= R-precision) and group recall@|G|, as bench.scorers.planted computes them."""
    everything = frozenset().union(*truth)
    top = set(ranking[:len(everything)].tolist())
    return {"recall": len(top & everything) / len(everything),
            "group": float(np.mean([bool(top & group) for group in truth]))}


def check(label: str, method, data: Planted, bounds) -> None:
    ranking = method.rank(data.X, data.y, rng=np.random.default_rng(0))
    measured = recovery(ranking, data.truth)
    failures = [f"{b.measure} = {measured[b.measure]:.3f}, expected {'<=' if b.at_most else '>='} {b.value} "
                f"({b.reason})"
                for b in bounds
                if (measured[b.measure] > b.value if b.at_most else measured[b.measure] < b.value)]
    assert not failures, f"{label}: " + "; ".join(failures)


def as_tuple(bounds) -> tuple[Bound, ...]:
    return bounds if isinstance(bounds, tuple) else (bounds,)


def test_expectation_rows_are_well_formed():
    """Each EXPECTED row names a method of conf/method/, covers the five cases, and gives every bound a reason."""
    stale = sorted(EXPECTED.keys() - set(STEMS))
    assert not stale, f"EXPECTED rows for methods no longer in conf/method/: {stale}"
    for stem, row in EXPECTED.items():
        if isinstance(row, NotApplicable):
            assert row.reason
            continue
        assert set(row) == set(CASES), f"EXPECTED[{stem!r}] must cover exactly {CASES}, has {sorted(row)}"
        for bounds in row.values():
            for b in as_tuple(bounds):
                assert b.measure in MEASURES and 0.0 <= b.value <= 1.0 and b.reason


def test_single_rows_keep_the_reference_bound():
    """§3.7: every labelled method reaches recall@|G| >= 0.8 on single; no row may weaken that."""
    for stem in STEMS:
        if isinstance(EXPECTED.get(stem), dict) and make_method(stem, {}).uses_labels:
            bounds = as_tuple(EXPECTED[stem]["single"])
            assert any(b.measure == "recall" and not b.at_most and b.value >= 0.8 for b in bounds), stem


@pytest.mark.parametrize("stem, case", [(s, c) for s in STEMS for c in CASES],
                         ids=[f"{s}-{c}" for s in STEMS for c in CASES])
def test_planted_recovery(stem, case):
    """The method's recovery of the case meets its EXPECTED bounds; `at_most` bounds are designed failures, whose
    reasons (in the table and in the module docstring) say why the method cannot recover that regime."""
    method = make_method(stem, METHOD_PARAMS.get(stem, {}))
    if stem not in EXPECTED:  # a new method: the reference's bound on single, the other regimes measured and shown
        if method.needs:
            pytest.skip(f"{stem} needs {sorted(method.needs)}, which planted activations do not have")
        if case == "single" and method.uses_labels:
            return check(f"{stem} on single (no EXPECTED row: the reference's bound)", method, dataset(case),
                         (at_least(0.8, SINGLE),))
        data = dataset(case)
        measured = recovery(method.rank(data.X, data.y, rng=np.random.default_rng(0)), data.truth)
        pytest.skip(f"{stem} has no EXPECTED row: measured {measured} on {case}; add bounds with reasons to "
                    "EXPECTED to hold it to them")
    row = EXPECTED[stem]
    if isinstance(row, NotApplicable):
        needs = make_method(stem, {}).needs
        assert needs, f"{stem} is marked NotApplicable but needs no extra inputs: it can run on planted data"
        pytest.skip(f"{stem} needs {sorted(needs)}: {row.reason}")
    check(f"{stem} on {case}", method, dataset(case), as_tuple(row[case]))


@pytest.mark.parametrize("extra", EXTRA, ids=[e.id for e in EXTRA])
def test_extra_regime(extra):
    """Regimes outside the five default cases: raw scale, low delta, the gaussian's shrinkage and greedy depth, and
    near-collinear copies. `at_most` bounds are designed failures; their reasons say why."""
    assert extra.method in STEMS, f"EXTRA row {extra.id} names a method with no config: {extra.method}"
    check(f"{extra.id} ({extra.method} {extra.params} on {extra.data})", make_method(extra.method, extra.params),
          dataset(extra.data), extra.bounds)
