"""One cell's examples at one layer and site: z-scored with train statistics, probes memoized.

Every scorer reads a ranking through this object, so no scorer can see which method made it, and
a probe fitted for one scorer (the top-k probe of `probe_acc`, say) serves the others.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from bench.core.gaussian import gaussian_log_posterior
from bench.core.method import check_activations, live_neurons
from bench.core.types import SPLITS
from bench.errors import NeuronbenchError
from bench.examples import Examples
from bench.probe import SUBSET_GTOL, LogisticProbe, accuracy, fit_select, predict_from_logits



@dataclass(frozen=True, eq=False)
class FittedProbe:
    """A memoized evaluation probe with its accuracies: every scorer asks for them, several times a cell."""

    probe: LogisticProbe
    columns: np.ndarray  # the live columns it reads
    dev_accuracy: float
    test_correct: np.ndarray  # per test word: did the probe predict its class (what the test bootstrap resamples)


class LayerData:
    """A cell's shared state: every method of a job is scored on one LayerData, so its memos (probe fits,
    Gaussian accuracies, ablated accuracies) serve every ranking of the cell and die with it."""

    def __init__(self, X: dict[str, np.ndarray], examples: Examples, where: str = "layer",
                 truth: tuple[frozenset[int], ...] | None = None, context=None, resamples: np.ndarray | None = None):
        train = check_activations(X["train"], f"{where} train")
        mean, std = train.mean(axis=0, dtype=np.float64), train.std(axis=0, dtype=np.float64)
        self.live = live_neurons(std)
        scale = np.where(self.live, std, 1.0)
        self.Z = {}
        for split in SPLITS:
            acts = check_activations(X[split], f"{where} {split}")
            self.Z[split] = np.where(self.live, (acts - mean) / scale, 0.0).astype(np.float32)
        self.examples = examples
        self.truth = truth  # planted ground truth G_c per class, when the cell has one
        self.context = context  # bench.intervene.ModelContext at this cell, for model-level scorers
        self.raw_train = train  # raw train activations: model-level scorers read site statistics
        self.n_neurons = train.shape[1]
        # (B, n_test) weight of each test word in each bootstrap resample of the test sentences (test_resamples)
        self.resamples = resamples
        self.replicating = False  # inside `replicated()`: test accuracies are (1 + B,) arrays, point first
        self._probes: dict = {}  # (target, columns) -> FittedProbe
        self._gaussian: dict = {}  # (target, columns) -> per-word test correctness
        self._ablated: dict = {}  # (kept?, columns) -> per-word test correctness of the masked all-neuron probe

    @staticmethod
    def _memo(memo: dict, key, compute):
        if key not in memo:
            memo[key] = compute()
        return memo[key]

    def labels(self, split: str, target: str = "task") -> np.ndarray:
        if target == "task":
            return self.examples.y[split]
        if target == "control":
            return self.examples.control[split]
        raise NeuronbenchError(f"unknown probe target {target!r}; use 'task' or 'control'")

    def probe(self, columns: np.ndarray, target: str = "task") -> FittedProbe:
        """The evaluation probe on `columns` (live ones only; dead ones are constant), C chosen on dev."""
        cols = self._live_columns(columns)

        def fit() -> FittedProbe:
            subset = len(cols) < self.live.sum()  # the all-neuron probe, whose weights ablation reads, fits tight
            fitted, _ = fit_select(self.Z["train"][:, cols], self.labels("train", target),
                                   self.Z["dev"][:, cols], self.labels("dev", target),
                                   self.examples.n_classes, **({"tol": SUBSET_GTOL} if subset else {}))
            dev = accuracy(fitted, self.Z["dev"][:, cols], self.labels("dev", target))
            return FittedProbe(fitted, cols, dev, fitted.predict(self.Z["test"][:, cols]) == self.labels("test", target))

        return self._memo(self._probes, self._key(cols, target), fit)

    def _live_columns(self, columns: np.ndarray) -> np.ndarray:
        cols = np.sort(np.asarray(columns, dtype=np.int64))
        return cols[self.live[cols]]

    @staticmethod
    def _key(cols: np.ndarray, target) -> tuple:
        return target, hashlib.sha1(cols.tobytes()).digest()

    @contextmanager
    def replicated(self):
        """Within it, every test accuracy is an array: the accuracy, then its value on each of the B resamples
        of the test sentences (the probes are not refitted: the interval covers test sampling, E.1). Scorers
        that only add, subtract and average accuracies then give their bootstrap replicates unchanged."""
        if self.resamples is None:
            raise NeuronbenchError("this cell has no test resamples (test_bootstrap = 0)")
        self.replicating = True
        try:
            yield self
        finally:
            self.replicating = False

    def _test_estimate(self, correct: np.ndarray):
        """The test accuracy of per-word correctness `correct`: a float, or (1 + B,) replicates in `replicated()`."""
        point = float(np.mean(correct))
        if not self.replicating:
            return point
        return np.concatenate([[point], self.resamples @ correct.astype(np.float32) / self._resample_words])

    @cached_property
    def _resample_words(self) -> np.ndarray:
        return self.resamples.sum(axis=1)

    def retrained_accuracy(self, columns: np.ndarray, target: str = "task") -> float:
        """Test accuracy of a probe retrained on `columns` alone."""
        return self._test_estimate(self.probe(columns, target).test_correct)

    def dev_accuracy(self, columns: np.ndarray, target: str = "task") -> float:
        """Dev accuracy of the same memoized probe (the accuracy its C was chosen by)."""
        return self.probe(columns, target).dev_accuracy

    def gaussian_accuracy(self, columns: np.ndarray, target: str = "task") -> float:
        """Test accuracy of the `gaussian` evaluation probe on `columns` (reference.md#metric-probe-acc).

        §2.4's model with the t-dimensional prior a_c(t), train statistics, no hyperparameters, so dev is unused.
        Dead columns are dropped as for the linear probe (they are constant); with none left it predicts the
        most frequent train class. The jitter is taken over the live columns of the layer, as the ranker does.
        """
        cols = self._live_columns(columns)

        def fit() -> np.ndarray:
            if len(cols) == 0:
                return self.labels("test", target) == np.bincount(self.labels("train", target)).argmax()
            live = np.flatnonzero(self.live)
            log_posterior = gaussian_log_posterior(
                self.Z["train"][:, live], self.labels("train", target), self.Z["test"][:, live],
                np.searchsorted(live, cols), self.examples.n_classes)
            return np.argmax(log_posterior, axis=1) == self.labels("test", target)

        return self._test_estimate(self._memo(self._gaussian, self._key(cols, target), fit))

    def ablated_accuracy(self, columns: np.ndarray, kept: bool) -> float:
        """Test accuracy of the all-neuron probe with only `columns` kept (`kept`), or only they removed, the
        other columns at the train mean (reference.md#metric-ablation).

        A column at the mean is 0 in z-space, so its probe term vanishes: the logits are the columns' own
        contribution Z[:, S] @ W[:, S].T (kept) or the full logits minus it (removed). Each set costs a
        k-column product instead of a D-column one, and a set every method asks for (the cell's random
        sets) is computed once.
        """
        cols = self._live_columns(columns)

        def compute() -> np.ndarray:
            fitted = self.probe(np.arange(self.n_neurons))
            where = np.searchsorted(fitted.columns, cols)
            part = self._live_test[:, where] @ fitted.probe.W[:, where].T
            logits = part + fitted.probe.b if kept else self._full_logits - part
            return predict_from_logits(logits, fitted.probe.n_classes) == self.labels("test")

        return self._test_estimate(self._memo(self._ablated, self._key(cols, kept), compute))

    @cached_property
    def _full_logits(self) -> np.ndarray:
        return self.probe(np.arange(self.n_neurons)).probe.logits(self._live_test)

    @cached_property
    def _live_test(self) -> np.ndarray:
        """The test matrix on the live columns, the columns of every probe on all neurons."""
        return np.ascontiguousarray(self.Z["test"][:, self.live])

    def majority(self, target: str = "task") -> float:
        """Test accuracy of always predicting the most frequent train class."""
        top = np.bincount(self.labels("train", target)).argmax()
        return float(np.mean(self.labels("test", target) == top))
