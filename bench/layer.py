"""One cell's examples at one layer and site: z-scored with train statistics, probes memoized.

Every scorer reads a ranking through this object, so no scorer can see which method made it, and
a probe fitted for one scorer (the top-k probe of `probe_acc`, say) serves the others.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

from bench.errors import NeuronbenchError
from bench.examples import Examples
from bench.probe import LogisticProbe, accuracy, fit_select
from methods.base import check_activations, live_neurons
from methods.gaussian import gaussian_log_posterior
from tasks.base import SPLITS


# Probe fits keyed by content (data fingerprint, columns, target): the jobs of one sweep share a
# process, and e.g. the all-neuron probe of a cell is the same for every method's job.
_PROBES: OrderedDict[tuple[bytes, str, bytes], tuple[LogisticProbe, np.ndarray]] = OrderedDict()
_PROBES_MAX = 512
# Gaussian-family test accuracies, keyed the same way; a fit is cheap but the scorers ask for each twice.
_GAUSSIAN: OrderedDict[tuple[bytes, str, bytes], float] = OrderedDict()
_GAUSSIAN_MAX = 4096


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

    def probe(self, columns: np.ndarray, target: str = "task") -> tuple[LogisticProbe, np.ndarray]:
        """The evaluation probe on `columns` (live ones only; dead ones are constant), C chosen on dev."""
        cols = self._live_columns(columns)
        key = (self.fingerprint, target, hashlib.sha1(cols.tobytes()).digest())
        if key in _PROBES:
            _PROBES.move_to_end(key)
        else:
            fitted, _ = fit_select(self.Z["train"][:, cols], self.labels("train", target),
                                   self.Z["dev"][:, cols], self.labels("dev", target),
                                   self.examples.n_classes)
            _PROBES[key] = (fitted, cols)
            if len(_PROBES) > _PROBES_MAX:
                _PROBES.popitem(last=False)
        return _PROBES[key]

    def _live_columns(self, columns: np.ndarray) -> np.ndarray:
        cols = np.sort(np.asarray(columns, dtype=np.int64))
        return cols[self.live[cols]]

    def retrained_accuracy(self, columns: np.ndarray, target: str = "task") -> float:
        """Test accuracy of a probe retrained on `columns` alone."""
        fitted, cols = self.probe(columns, target)
        return accuracy(fitted, self.Z["test"][:, cols], self.labels("test", target))

    def dev_accuracy(self, columns: np.ndarray, target: str = "task") -> float:
        """Dev accuracy of the same memoized probe (the accuracy its C was chosen by)."""
        fitted, cols = self.probe(columns, target)
        return accuracy(fitted, self.Z["dev"][:, cols], self.labels("dev", target))

    def gaussian_accuracy(self, columns: np.ndarray, target: str = "task") -> float:
        """Test accuracy of the `gaussian` evaluation probe on `columns` (reference.md#metric-probe-acc).

        §2.4's model with the t-dimensional prior a_c(t), train statistics, no hyperparameters, so dev is unused.
        Dead columns are dropped as for the linear probe (they are constant); with none left it predicts the
        most frequent train class. The jitter is taken over the live columns of the layer, as the ranker does.
        """
        cols = self._live_columns(columns)
        key = (self.fingerprint, target, hashlib.sha1(cols.tobytes()).digest())
        if key in _GAUSSIAN:
            _GAUSSIAN.move_to_end(key)
            return _GAUSSIAN[key]
        y_train, y_test = self.labels("train", target), self.labels("test", target)
        if len(cols) == 0:
            value = float(np.mean(y_test == np.bincount(y_train).argmax()))
        else:
            live = np.flatnonzero(self.live)
            subset = np.searchsorted(live, cols)
            log_posterior = gaussian_log_posterior(self.Z["train"][:, live], y_train, self.Z["test"][:, live],
                                                   subset, self.examples.n_classes)
            value = float(np.mean(np.argmax(log_posterior, axis=1) == y_test))
        _GAUSSIAN[key] = value
        if len(_GAUSSIAN) > _GAUSSIAN_MAX:
            _GAUSSIAN.popitem(last=False)
        return value

    def masked_accuracy(self, keep: np.ndarray) -> float:
        """Test accuracy of the all-neuron probe with the columns outside `keep` set to the train mean."""
        fitted, cols = self.probe(np.arange(self.n_neurons))
        mask = np.zeros(self.n_neurons, dtype=np.float32)
        mask[np.asarray(keep, dtype=np.int64)] = 1.0
        return accuracy(fitted, self.Z["test"][:, cols] * mask[cols], self.labels("test"))

    def majority(self) -> float:
        """Test accuracy of always predicting the most frequent train class."""
        top = np.bincount(self.labels("train")).argmax()
        return float(np.mean(self.labels("test") == top))
