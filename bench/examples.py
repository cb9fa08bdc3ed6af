"""From a task's labelled words to the examples of one task form: filter, binarize, balance, cap.

Order (reference.md#data-labels): drop rare classes -> binarize (concept form) -> balance ->
cap -> control labels (reference.md#metric-selectivity).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from bench.errors import NeuronbenchError
from bench.seeds import cell_rng
from tasks.base import SPLITS, Task

log = logging.getLogger(__name__)
OTHER = "OTHER"


@dataclass(frozen=True)
class Examples:
    """Rows of each split's activation files, their class ids, and the control task's class ids."""

    label_names: tuple[str, ...]
    index: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    control: dict[str, np.ndarray]
    dropped: tuple[str, ...] = ()

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

    def sizes(self) -> dict[str, int]:
        return {split: len(self.y[split]) for split in SPLITS}


def control_labels(types: dict[str, np.ndarray], y_train: np.ndarray, n_classes: int,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Hewitt & Liang control task: one label per word type, drawn from the train label distribution.

    Types (case-sensitive strings) are visited in sorted order so the draw depends on the seed only.
    """
    vocab, inverse = np.unique(np.concatenate([types[s] for s in SPLITS]), return_inverse=True)
    p = np.bincount(y_train, minlength=n_classes) / len(y_train)
    per_type = rng.choice(n_classes, size=len(vocab), p=p)
    labels = per_type[inverse]
    bounds = np.cumsum([0] + [len(types[s]) for s in SPLITS])
    return {s: labels[bounds[i]:bounds[i + 1]] for i, s in enumerate(SPLITS)}


def _subsample(index: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(index, size=size, replace=False)) if len(index) > size else index


def select_examples(task: Task, valid: dict[str, np.ndarray], *, seed: int, concept: str | None = None,
                    n_min: int = 100, max_words: dict[str, int] | None = None) -> Examples:
    """Examples of the multi-class form (concept=None) or of one concept against OTHER."""
    words, labels = {}, {}
    for split in SPLITS:
        flat_words = np.array([w for sent in task.sentences[split] for w in sent], dtype=str)
        flat_labels = np.array([l for sent in task.labels[split] for l in sent], dtype=object)
        keep = np.array([l is not None for l in flat_labels], dtype=bool) & valid[split]
        words[split], labels[split] = flat_words, np.where(keep, flat_labels, None)
    present = sorted({l for s in SPLITS for l in labels[s] if l is not None})
    counts = {name: min(int((labels[s] == name).sum()) for s in SPLITS) for name in present}
    kept = [name for name in present if counts[name] >= n_min]
    dropped = tuple(name for name in present if counts[name] < n_min)
    if dropped:
        log.info("task %s: dropped classes with fewer than %d words in some split: %s", task.name,
                 n_min, ", ".join(f"{d} ({counts[d]})" for d in dropped))
    if concept is None:
        names = tuple(kept)
        if len(names) < 2:
            raise NeuronbenchError(f"task {task.name!r}: fewer than 2 classes have {n_min} words in "
                                   f"every split (counts: {counts}); lower n_min or use more data")
    else:
        if concept not in kept:
            raise NeuronbenchError(f"task {task.name!r}: concept {concept!r} is not a kept class "
                                   f"(needs {n_min} words per split); kept: {', '.join(kept)}")
        names = (OTHER, concept)
    rng = cell_rng(seed, task.name, concept, "examples")
    caps = max_words or {}
    index, y, types = {}, {}, {}
    for split in SPLITS:
        rows = np.flatnonzero(np.isin(labels[split], kept))
        if concept is None:
            ids = np.searchsorted(np.array(names), labels[split][rows].astype(str))
        else:
            positive = rows[labels[split][rows] == concept]
            rows = np.union1d(positive, _subsample(np.setdiff1d(rows, positive), len(positive), rng))
            ids = (labels[split][rows] == concept).astype(np.int64)
        if split in caps:
            picked = np.isin(rows, _subsample(rows, int(caps[split]), rng))
            rows, ids = rows[picked], ids[picked]
        index[split], y[split], types[split] = rows, ids.astype(np.int64), words[split][rows]
    control = control_labels(types, y["train"], len(names), cell_rng(seed, task.name, concept, "control"))
    return Examples(label_names=names, index=index, y=y, control=control, dropped=dropped)
