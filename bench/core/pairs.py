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


class Crossed(NamedTuple):
    """A base and a source prompt of the same length that differ in every attribute of their set (RAVEL's
    cause and isolation, reference addendum B.2): `where` is each attribute's word index (the same in both),
    `values` the base's and the source's value of each attribute (attribute order)."""

    base: tuple[str, ...]
    source: tuple[str, ...]
    where: tuple[int, ...]
    values: tuple[tuple[str, ...], tuple[str, ...]]


@dataclass(frozen=True)
class CrossedPairs:
    """Test pairs over several attributes whose one next-token answer encodes all of them: `answers` maps
    every combination of values (attribute order) to its answer word, e.g. (Sing, Past) -> was."""

    name: str
    attributes: tuple[str, ...]
    answers: tuple[tuple[tuple[str, ...], str], ...]
    pairs: tuple[Crossed, ...]

    def __post_init__(self):
        combinations = dict(self.answers)
        words = list(combinations.values())
        if not self.pairs or len(set(words)) != len(words):
            raise NeuronbenchError(f"crossed pairs {self.name!r}: need pairs and one distinct answer per combination")
        for i, pair in enumerate(self.pairs):
            differ = sorted(j for j, (b, s) in enumerate(zip(pair.base, pair.source)) if b != s)
            if (len(pair.base) != len(pair.source) or differ != sorted(pair.where)
                    or len(pair.where) != len(self.attributes)
                    or any(b == s for b, s in zip(*pair.values)) or not all(v in combinations for v in pair.values)):
                raise NeuronbenchError(f"crossed pairs {self.name!r}, pair {i} ({' '.join(pair.base)!r} / "
                                       f"{' '.join(pair.source)!r}): the prompts must differ exactly at the words "
                                       f"{pair.where} of {self.attributes}, in every attribute's value, each "
                                       "combination with an answer")

    def answer(self, values: tuple[str, ...]) -> str:
        return dict(self.answers)[tuple(values)]

    @property
    def pairs_id(self) -> str:
        return hashlib.sha256(json.dumps([self.answers, self.pairs], sort_keys=True).encode()).hexdigest()[:16]
