"""Minimal pairs: two prompts that differ only in one attribute, each with the next token it calls for
(reference addendum A.1). The type sits below tasks/ and bench/, so a task loader writes pairs and the
behavioural scorer reads them without either importing the other."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import NamedTuple

from bench.errors import NeuronbenchError

PAIR_SPLITS = ("train", "test")  # train: the ablation means (both members); test: the readout


class Pair(NamedTuple):
    """Base and counterfactual prompts (word lists), the index of the attribute word in each, and each
    member's own answer (a word, read with its leading space as the next token)."""

    base: tuple[str, ...]
    counter: tuple[str, ...]
    where: tuple[int, int]
    answers: tuple[str, str]


@dataclass(frozen=True)
class MinimalPairs:
    name: str
    attribute: str
    pairs: dict[str, tuple[Pair, ...]]

    def __post_init__(self):
        for split in PAIR_SPLITS:
            if not self.pairs.get(split):
                raise NeuronbenchError(f"minimal pairs {self.name!r}: split {split!r} has no pairs")
            for i, pair in enumerate(self.pairs[split]):
                members = (pair.base, pair.counter)
                if pair.answers[0] == pair.answers[1] or not all(0 <= w < len(m) for w, m in zip(pair.where, members)):
                    raise NeuronbenchError(f"minimal pairs {self.name!r}, {split} pair {i} "
                                           f"({' '.join(pair.base)!r} / {' '.join(pair.counter)!r}): the answers "
                                           f"must differ and the attribute word indices {pair.where} lie in the prompts")

    @property
    def pairs_id(self) -> str:
        """Fingerprint of every pair, so memos of two pair sets of one name (another seed) never meet."""
        return hashlib.sha256(json.dumps(self.pairs, sort_keys=True).encode()).hexdigest()[:16]
