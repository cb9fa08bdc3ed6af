"""One cell's examples at one layer and site: z-scored with train statistics, probes memoized.

Every scorer reads a ranking through this object, so no scorer can see which method made it, and
a probe fitted for one scorer (the top-k probe of `probe_acc`, say) serves the others.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from bench.cache import BoundedMemo
from bench.errors import NeuronbenchError
from bench.examples import Examples
from bench.probe import LogisticProbe, accuracy, fit_select
from methods.base import check_activations, live_neurons
from methods.gaussian import gaussian_log_posterior
from tasks.base import SPLITS


# Linear probe fits (FittedProbe). A job adds ~14 a cell (7 k x task/control); the next job of the same task
# and seed reuses the cell's all-neuron probes, the costliest fits, if they are still held: one job of
# smollm2_135m (61 cells) adds ~850, hence the bound. Entries are small (W is n_outputs x k).
_PROBES = BoundedMemo(4096)
_GAUSSIAN = BoundedMemo(4096)  # Gaussian-family test accuracies; cheap, but the scorers ask for each twice


@dataclass(frozen=True, eq=False)
class FittedProbe:
    """A memoized evaluation probe with its accuracies: every scorer asks for them, several times a cell."""

    probe: LogisticProbe
    columns: np.ndarray  # the live columns it reads
    dev_accuracy: float
    test_accuracy: float


class LayerData:
    def __init__(self, X: dict[str, np.ndarray], examples: Examples, where: str = "layer",
                 truth: tuple[frozenset[int], ...] | None = None, context=None):
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
        digest = hashlib.sha1()
        for split in SPLITS:
            for part in (self.Z[split], examples.y[split], examples.control[split]):
                digest.update(np.ascontiguousarray(part).tobytes())
        self.fingerprint = digest.digest()

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
            fitted, _ = fit_select(self.Z["train"][:, cols], self.labels("train", target),
                                   self.Z["dev"][:, cols], self.labels("dev", target),
                                   self.examples.n_classes)
            dev, test = (accuracy(fitted, self.Z[s][:, cols], self.labels(s, target)) for s in ("dev", "test"))
            return FittedProbe(fitted, cols, dev, test)

        return _PROBES.get(self._key(cols, target), fit)

    def _live_columns(self, columns: np.ndarray) -> np.ndarray:
        cols = np.sort(np.asarray(columns, dtype=np.int64))
        return cols[self.live[cols]]

    def _key(self, cols: np.ndarray, target: str) -> tuple[bytes, str, bytes]:
        return self.fingerprint, target, hashlib.sha1(cols.tobytes()).digest()

    def retrained_accuracy(self, columns: np.ndarray, target: str = "task") -> float:
        """Test accuracy of a probe retrained on `columns` alone."""
        return self.probe(columns, target).test_accuracy

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

        def fit() -> float:
            if len(cols) == 0:
                return self.majority(target)
            live = np.flatnonzero(self.live)
            log_posterior = gaussian_log_posterior(
                self.Z["train"][:, live], self.labels("train", target), self.Z["test"][:, live],
                np.searchsorted(live, cols), self.examples.n_classes)
            return float(np.mean(np.argmax(log_posterior, axis=1) == self.labels("test", target)))

        return _GAUSSIAN.get(self._key(cols, target), fit)

    def masked_accuracy(self, keep: np.ndarray) -> float:
        """Test accuracy of the all-neuron probe with the columns outside `keep` set to the train mean.

        A column at the mean is 0 in z-space, so zeroing its probe weights gives the same logits as
        zeroing the column, without copying the test matrix for each of the ablation scorer's ~140 sets
        (an mlp layer of minilm: 6 s a cell before, well under 1 s after).
        """
        fitted = self.probe(np.arange(self.n_neurons))
        mask = np.zeros(self.n_neurons, dtype=np.float32)
        mask[np.asarray(keep, dtype=np.int64)] = 1.0
        masked = LogisticProbe(W=fitted.probe.W * mask[fitted.columns], b=fitted.probe.b,
                               n_classes=fitted.probe.n_classes)
        return accuracy(masked, self._live_test, self.labels("test"))

    @cached_property
    def _live_test(self) -> np.ndarray:
        """The test matrix on the live columns, the columns of every probe on all neurons."""
        return np.ascontiguousarray(self.Z["test"][:, self.live])

    def majority(self, target: str = "task") -> float:
        """Test accuracy of always predicting the most frequent train class."""
        top = np.bincount(self.labels("train", target)).argmax()
        return float(np.mean(self.labels("test", target) == top))
