"""What one neuron does on a task's corpus, as data: its top- and bottom-activating words with their sentence
context, its activation distribution per label, and its activation over chosen sentences (NeuroX's views).

Activations are the raw values the cache holds (not z-scored), read over the examples of the splits asked for;
`neuronbench.pages` draws these views as HTML, and `to_dict` is the same data as JSON.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.core.types import SPLITS
from bench.errors import NeuronbenchError
from bench.run import task_form
from neuronbench.concepts import ConceptSearch, CorpusConcepts, concept_search
from neuronbench.experiment import Activations, checked_neuron, sentence_words

CONTEXT_WORDS = 6  # words of sentence shown on each side of a top word
MAP_SENTENCES = 6  # sentences an activation map shows by default: those of the top words


@dataclass(frozen=True)
class WordHit:
    """A word type among the neuron's extremes: its most extreme occurrence, with the sentence around it."""

    word: str
    activation: float  # of that occurrence
    label: str  # of that occurrence
    split: str
    sentence: int | None  # index in the split's sentences; None for a planted task
    position: int | None
    left: str  # up to CONTEXT_WORDS words before it, space-joined ("" for a planted task)
    right: str
    count: int  # occurrences of the word among the examples read
    mean: float  # mean activation over them


@dataclass(frozen=True)
class LabelDistribution:
    """The neuron's activations on the words of one label: a histogram over the view's shared bins, and moments."""

    label: str
    count: int
    mean: float | None  # None: no word of the label in the splits read (a cap can leave a split without one)
    std: float | None
    quantiles: tuple[float, float, float] | None  # 10th, 50th, 90th percentile
    histogram: tuple[int, ...]


@dataclass(frozen=True)
class SentenceMap:
    """A sentence with the neuron's activation on each word (None: the word has no subword piece)."""

    split: str | None  # None: a sentence given as text
    sentence: int | None
    words: tuple[str, ...]
    activations: tuple[float | None, ...]


@dataclass(frozen=True)
class NeuronView:
    """Everything the neuron page shows, for one (task, model, site, layer, neuron)."""

    task: str  # the task form: `task@concept` for a concept job
    model: str
    seed: int  # the examples are the seed's sample, as in the job of that seed
    site: str
    layer: int
    neuron: int
    n_neurons: int
    splits: tuple[str, ...]
    n_words: int
    top: tuple[WordHit, ...]
    bottom: tuple[WordHit, ...]
    edges: tuple[float, ...]  # shared histogram bin edges
    distribution: tuple[LabelDistribution, ...]
    maps: tuple[SentenceMap, ...]
    concepts: ConceptSearch | None = None  # concept search, when the view was asked for it

    @property
    def scale(self) -> float:
        """The largest |activation| the view holds: the map shades every word against it."""
        values = [abs(h.activation) for h in self.top + self.bottom]
        values += [abs(a) for m in self.maps for a in m.activations if a is not None]
        return max(values, default=0.0) or 1.0

    def to_dict(self) -> dict:
        concepts = None if self.concepts is None else self.concepts.to_dict()
        return {"kind": "neuron", **dataclasses.asdict(self), "scale": self.scale, "concepts": concepts}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


@dataclass(frozen=True)
class RankingView:
    """A ranking's top neurons side by side: one NeuronView each, in ranking order."""

    method: str
    ranking: tuple[int, ...]  # the whole permutation
    neurons: tuple[NeuronView, ...]

    def to_dict(self) -> dict:
        return {"kind": "ranking", "method": self.method, "ranking": list(self.ranking),
                "neurons": [view.to_dict() for view in self.neurons]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


def neuron_view(acts: Activations, neuron: int, *, top: int = 15, splits: Sequence[str] = SPLITS, bins: int = 30,
                sentences=None, concepts: CorpusConcepts | None = None) -> NeuronView:
    """The views of `neuron` over the examples of `splits`: the `top` highest and lowest word types, the per-label
    distribution, and an activation map over `sentences`: a list of (split, sentence index) pairs of the task,
    or of free sentences (strings or word lists); by default the sentences of the top words. A planted task has
    words but no sentences: its view has no contexts and no map. `concepts=nb.corpus_concepts(acts)` adds the
    neuron's concept search (`nb.concept_search`), which its page shows as a section."""
    neuron = checked_neuron(acts, neuron)
    splits = _checked_splits(splits)
    if not (isinstance(top, int) and top >= 1) or not (isinstance(bins, int) and bins >= 1):
        raise NeuronbenchError(f"neuron_view: top={top!r} and bins={bins!r} must be positive integers")
    values = np.concatenate([acts.X[s][:, neuron] for s in splits]).astype(np.float64)
    labels = np.concatenate([acts.y[s] for s in splits])
    origin = [(s, row) for s in splits for row in range(len(acts.y[s]))]
    words = np.concatenate([acts.words[s] for s in splits]).astype(str)
    highest, lowest = _extremes(values, words, top)
    hits = {"top": tuple(_hit(acts, origin, values, words, labels, int(i)) for i in highest),
            "bottom": tuple(_hit(acts, origin, values, words, labels, int(i)) for i in lowest)}
    edges = np.histogram_bin_edges(values, bins=bins)
    distribution = tuple(_distribution(acts.label_names[c], values[labels == c], edges)
                         for c in range(len(acts.label_names)))
    if sentences is None and acts.refs is not None:  # the sentences of the top words, each once
        sentences = list(dict.fromkeys((h.split, h.sentence) for h in hits["top"]))[:MAP_SENTENCES]
    maps = activation_map(acts, neuron, sentences) if sentences else ()
    return NeuronView(task=task_form(acts.cfg.task.name, acts.cfg.task.get("concept")), model=acts.cfg.model.name,
                      seed=int(acts.cfg.seed), site=acts.site, layer=acts.layer,
                      neuron=neuron, n_neurons=acts.n_neurons, splits=tuple(splits), n_words=len(values),
                      top=hits["top"], bottom=hits["bottom"], edges=tuple(float(e) for e in edges),
                      distribution=distribution, maps=maps,
                      concepts=None if concepts is None else concept_search(acts, neuron, concepts=concepts))


def ranking_view(acts: Activations, ranking, *, method: str = "ranking", top: int = 6, words: int = 10,
                 splits: Sequence[str] = SPLITS, concepts: CorpusConcepts | None = None) -> RankingView:
    """The `top` first neurons of `ranking` (a permutation of the layer's neurons), each viewed with its
    `words` highest and lowest word types and its per-label distribution, and the sentences of its top words
    (and its concept search, given `concepts=nb.corpus_concepts(acts)`)."""
    order = np.asarray(ranking)
    if order.ndim != 1 or not np.issubdtype(order.dtype, np.integer) or not np.array_equal(
            np.sort(order), np.arange(acts.n_neurons)):
        raise NeuronbenchError(f"ranking_view: expected a permutation of the {acts.n_neurons} neurons of "
                               f"{acts.name}, got shape {order.shape}, dtype {order.dtype}")
    if not (isinstance(top, int) and 1 <= top <= acts.n_neurons):
        raise NeuronbenchError(f"ranking_view: top={top!r} must be an integer in 1..{acts.n_neurons}")
    views = tuple(neuron_view(acts, int(n), top=words, splits=splits, concepts=concepts) for n in order[:top])
    return RankingView(method=str(method), ranking=tuple(int(n) for n in order), neurons=views)


def activation_map(acts: Activations, neuron: int, sentences) -> tuple[SentenceMap, ...]:
    """The neuron's activation on every word of each sentence: (split, sentence index) pairs of the task, or
    free sentences (strings split on whitespace, or word lists), extracted through the model once."""
    neuron = checked_neuron(acts, neuron)
    if isinstance(sentences, str) or not isinstance(sentences, Sequence) or not sentences:
        raise NeuronbenchError("activation_map: give a non-empty list of (split, sentence index) pairs or of "
                               "sentences, e.g. [('test', 0), 'the dogs are hungry .']")
    maps: list[SentenceMap | None] = [None] * len(sentences)
    corpus = [(i, s) for i, s in enumerate(sentences) if _is_ref(s)]
    text = [(i, s) for i, s in enumerate(sentences) if not _is_ref(s)]
    for split in dict.fromkeys(ref[0] for _, ref in corpus):
        mine = [(i, int(ref[1])) for i, ref in corpus if ref[0] == split]
        for (i, index), values in zip(mine, acts.sentence_activations(split, [index for _, index in mine])):
            words = acts.experiment.task.sentences[split][index]
            maps[i] = _sentence_map(split, index, words, values[:, neuron])
    if text:
        for (i, sentence), values in zip(text, acts.text_activations([s for _, s in text])):
            maps[i] = _sentence_map(None, None, sentence_words(sentence), values[:, neuron])
    return tuple(maps)


def _is_ref(sentence) -> bool:
    return (isinstance(sentence, tuple) and len(sentence) == 2 and isinstance(sentence[0], str)
            and isinstance(sentence[1], (int, np.integer)))


def _sentence_map(split, index, words, values) -> SentenceMap:
    return SentenceMap(split, index, tuple(words), tuple(None if np.isnan(v) else float(v) for v in values))


def _checked_splits(splits) -> list[str]:
    chosen = [splits] if isinstance(splits, str) else list(splits)
    bad = [s for s in chosen if s not in SPLITS]
    if bad or not chosen:
        raise NeuronbenchError(f"splits={chosen!r}: expected some of {', '.join(SPLITS)}")
    return list(dict.fromkeys(chosen))


def _extremes(values: np.ndarray, words: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the `top` word types with the highest maximum, and of those with the lowest minimum: each type
    by its most extreme occurrence; ties go to the earlier row."""

    def first_per_word(order: np.ndarray) -> np.ndarray:
        _, first = np.unique(words[order], return_index=True)
        return order[np.sort(first)][:top]

    return (first_per_word(np.argsort(-values, kind="stable")),
            first_per_word(np.argsort(values, kind="stable")))


def _hit(acts: Activations, origin, values, words, labels, i: int) -> WordHit:
    split, row = origin[i]
    same = words == words[i]
    sentence = position = None
    left = right = ""
    if acts.refs is not None:
        sentence, position = (int(v) for v in acts.refs[split][row])
        tokens = acts.experiment.task.sentences[split][sentence]
        left = " ".join(tokens[max(0, position - CONTEXT_WORDS):position])
        right = " ".join(tokens[position + 1:position + 1 + CONTEXT_WORDS])
    return WordHit(word=str(words[i]), activation=float(values[i]), label=acts.label_names[labels[i]], split=split,
                   sentence=sentence, position=position, left=left, right=right, count=int(same.sum()),
                   mean=float(values[same].mean()))


def _distribution(label: str, values: np.ndarray, edges: np.ndarray) -> LabelDistribution:
    if not len(values):
        return LabelDistribution(label, 0, None, None, None, (0,) * (len(edges) - 1))
    counts, _ = np.histogram(values, bins=edges)
    q10, q50, q90 = (float(q) for q in np.percentile(values, [10, 50, 90]))
    return LabelDistribution(label, len(values), float(values.mean()), float(values.std()), (q10, q50, q90),
                             tuple(int(c) for c in counts))
