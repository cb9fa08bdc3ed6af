"""The task types: Task (sentences as word lists with one concept label per word, in fixed splits)
and PlantedData (activations with a known answer, which a planted task gives instead of sentences).

They live in bench/core, below tasks/, so that extraction, example selection and the runner can read
any task without importing the loaders that build them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from bench.errors import NeuronbenchError

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Task:
    """Words and labels per split; a label of None marks a word that is context, not an example.

    Tasks never know about models. `corpus_id` fingerprints the sentences alone, so every task on
    the same sentences (UPOS, XPOS and Number on EWT, say) shares one activation cache.
    """

    name: str
    version: str
    sentences: dict[str, list[list[str]]]
    labels: dict[str, list[list[str | None]]]
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        for split in SPLITS:
            sents, labels = self.sentences.get(split), self.labels.get(split)
            if sents is None or labels is None:
                raise NeuronbenchError(f"task {self.name!r}: split {split!r} is missing")
            if [len(s) for s in sents] != [len(l) for l in labels]:
                raise NeuronbenchError(f"task {self.name!r}: split {split!r} has labels that do not "
                                       "line up with its words (one label or None per word)")

    @property
    def corpus_id(self) -> str:
        digest = hashlib.sha256()
        for split in SPLITS:
            digest.update(split.encode())
            for words in self.sentences[split]:
                digest.update(("\t".join(words) + "\n").encode())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class PlantedData:
    """Activations, labels and word types per split, and the ground truth G_c of every class."""

    name: str
    version: str
    case: str
    X: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    types: dict[str, np.ndarray]
    truth: tuple[frozenset[int], ...]

    @property
    def truth_all(self) -> frozenset[int]:
        return frozenset().union(*self.truth)
