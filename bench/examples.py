"""From a task's labelled words to the examples of one task form: filter, binarize, balance, cap.

Order (reference.md#data-labels): drop (or merge into OTHER) rare classes -> binarize (concept
form) -> balance -> cap -> control labels (reference.md#metric-selectivity).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from bench.core.types import SPLITS, Task
from bench.errors import NeuronbenchError
from bench.seeds import cell_rng

log = logging.getLogger(__name__)
OTHER = "OTHER"
RARE_RULES = ("drop", "merge")


@dataclass(frozen=True)
class Examples:
    """Rows of each split's activation files, their class ids, and the control task's class ids."""

    label_names: tuple[str, ...]
    index: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    control: dict[str, np.ndarray]
    dropped: tuple[str, ...] = ()
    merged: tuple[str, ...] = ()

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


def valid_concepts(task: Task, n_min: int) -> list[str]:
    """The classes with at least n_min words in every split, before any word is filtered out."""
    counts = _min_counts({s: (l for sent in task.labels[s] for l in sent) for s in SPLITS})
    return [name for name, count in counts.items() if count >= n_min]


def check_concept(task: Task, concept: str | None, n_min: int, *, required: bool = False) -> None:
    """Fail before any forward pass if `concept` cannot be this task's concept, listing the valid ones.

    `required` (the config says `concept: ???`) makes an unset concept an error. The counts ignore
    the extractor's length filter, so select_examples checks the concept again on the kept words.
    """
    if concept is None and not required:
        return
    valid = valid_concepts(task, n_min)
    if concept is None:
        raise NeuronbenchError(f"task {task.name!r} is one-vs-rest: choose its class with "
                               f"task.concept=<class>; valid concepts ({n_min} words in every "
                               f"split): {', '.join(map(repr, valid)) or 'none'}")
    if concept not in valid:
        raise _not_a_concept(task.name, concept, n_min, valid)


def _not_a_concept(task_name: str, concept: str, n_min: int, valid: list[str]) -> NeuronbenchError:
    return NeuronbenchError(f"task {task_name!r}: concept {concept!r} is not a kept class (needs "
                            f"{n_min} words per split); valid concepts: {', '.join(map(repr, valid)) or 'none'}")


def _min_counts(labels: dict[str, Iterable[str | None]]) -> dict[str, int]:
    """Words of each class (sorted by name) in its smallest split: the number the n_min rule reads."""
    per_split = [Counter(l for l in labels[s] if l is not None) for s in SPLITS]
    return {name: min(c[name] for c in per_split) for name in sorted(set().union(*per_split))}


def select_examples(task: Task, valid: dict[str, np.ndarray], *, seed: int, concept: str | None = None,
                    n_min: int = 100, max_words: dict[str, int] | None = None,
                    rare: str = "drop") -> Examples:
    """Examples of the multi-class form (concept=None) or of one concept against OTHER.

    A class with fewer than n_min words in some split is rare: `rare="drop"` removes its words
    (reference.md#data-labels), `rare="merge"` relabels them OTHER (a class of its own, or part of
    the rest in the concept form), which is itself dropped if still rare. Both are logged and
    listed in the Examples (job.json: dropped_classes, merged_classes).
    """
    if rare not in RARE_RULES:
        raise NeuronbenchError(f"task {task.name!r}: rare={rare!r} is not a rule; set task.rare to "
                               "drop (remove rare classes' words) or merge (relabel them OTHER)")
    words, labels = {}, {}
    for split in SPLITS:
        flat_words = np.array([w for sent in task.sentences[split] for w in sent], dtype=str)
        flat_labels = np.array([l for sent in task.labels[split] for l in sent], dtype=object)
        keep = np.array([l is not None for l in flat_labels], dtype=bool) & valid[split]
        words[split], labels[split] = flat_words, np.where(keep, flat_labels, None)
    counts = _min_counts(labels)
    merged = tuple(name for name, count in counts.items() if count < n_min) if rare == "merge" else ()
    if merged:
        log.info("task %s: merged classes with fewer than %d words in some split into %s: %s",
                 task.name, n_min, OTHER, ", ".join(f"{m} ({counts[m]})" for m in merged))
        for split in SPLITS:
            labels[split] = np.where(np.isin(labels[split], merged), OTHER, labels[split])
        counts = _min_counts(labels)
    kept = [name for name, count in counts.items() if count >= n_min]
    dropped = tuple(name for name, count in counts.items() if count < n_min)
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
            raise _not_a_concept(task.name, concept, n_min, kept)
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
    return Examples(label_names=names, index=index, y=y, control=control, dropped=dropped,
                    merged=merged)
