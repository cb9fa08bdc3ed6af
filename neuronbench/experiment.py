"""A task and a model by their config names, and one cell's activations, as the runner composes and reads them.

Nothing here is a second pipeline: the config is Hydra's composition of conf/ (`leaderboard.submission.compose_config`),
the task loader, the example selection, the extraction and the cache are `bench.run`'s own (`extracted_source`,
`planted_source`), so the arrays a notebook sees are the rows a `neuronbench` job ranks and scores.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from omegaconf import DictConfig, OmegaConf

from bench.cache import ActivationCache
from bench.cli import CONF_DIR
from bench.core.types import SPLITS, PlantedData, Task
from bench.errors import NeuronbenchError
from bench.examples import Examples
from bench.extract import _first_words, extract, word_validity
from bench.intervene import ModelContext, model_context, word_refs
from bench.layer import LayerData
from bench.models import site_layers
from bench.run import Cell, CellSource, _load_task, check_config, extracted_source, planted_source, test_resamples
from leaderboard.submission import compose_config


def config_names(group: str) -> list[str]:
    """The names a config group offers: the stems of conf/<group>/*.yaml."""
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


def _checked_name(group: str, name: str) -> str:
    if not isinstance(name, str) or name not in config_names(group):
        raise NeuronbenchError(f"{group} {name!r}: no conf/{group}/{name}.yaml; valid: {', '.join(config_names(group))}")
    return name


def sentence_words(sentence: str | list[str]) -> list[str]:
    """A free sentence's words: a string split on whitespace, or the word list as given."""
    return sentence.split() if isinstance(sentence, str) else [str(word) for word in sentence]


def load(task: str, model: str, overrides: list[str] = ()) -> Experiment:
    """A task and a model by their conf/ names (`nb.load("templated_number", "minilm_l6")`), with any other
    Hydra overrides of the `neuronbench` command line (`overrides=["seed=1", "task.concept=Plur"]`).

    The task is loaded here; the model only when activations are first asked for (planted tasks have none).
    """
    cfg = compose_config([f"task={_checked_name('task', task)}", f"model={_checked_name('model', model)}",
                          *overrides])
    loaded = _load_task(json.dumps(OmegaConf.to_container(cfg.task.loader, resolve=True)), cfg.task.name,
                        cfg.task.version)
    return Experiment(cfg, loaded)


@dataclass(eq=False)
class Experiment:
    """A composed config and its task; `activations(layer, site)` gives one cell's arrays."""

    cfg: DictConfig
    task: Task | PlantedData
    _cells: dict = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return f"{self.cfg.task.name}/{self.cfg.model.name}"

    def activations(self, layer: int, site: str = "hidden") -> Activations:
        """The cell's train/dev/test activations and labels, extracted once into the activation cache (the same
        cache entry `neuronbench` jobs fill) and read from it afterwards."""
        if (site, layer) not in self._cells:
            self._check_cell(layer, site)
            cfg = self.cfg.copy()
            OmegaConf.update(cfg, "sites", [site], merge=False)
            OmegaConf.update(cfg, "layers", [layer], merge=False)
            check_config(cfg)  # the rest of what a job checks first: scorers, seed, pooling, ks, device, caps
            source = planted_source(self.task, cfg) if isinstance(self.task, PlantedData) else extracted_source(
                self.task, cfg)
            if (site, layer) not in source.layers:
                raise NeuronbenchError(f"{self.name}: no layer {layer} at site {site!r}; this task has "
                                       f"{', '.join(f'{s} layer {l}' for s, l in source.layers)}")
            self._cells[(site, layer)] = Activations(self, cfg, source, site, layer, source.load(site, layer))
        return self._cells[(site, layer)]

    def _check_cell(self, layer, site) -> None:
        """The layer and site named as the caller gave them (the runner's own check speaks of `layers=[...]`)."""
        if self.cfg.model.get("n_layers") is None:  # a planted model: its one cell is checked against the source
            return
        valid = site_layers(site, int(self.cfg.model.n_layers))  # an unknown site fails here, listing the sites
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or layer not in valid:
            raise NeuronbenchError(f"layer {layer!r}: model {self.cfg.model.name!r} has layers {valid[0]}..{valid[-1]} "
                                   f"at site {site!r}")


@dataclass(frozen=True, eq=False)
class Activations:
    """One cell's word activations: `X[split]` (words x neurons, float32) and `y[split]` (class ids into
    `label_names`) for split in train/dev/test, the very rows a job's methods rank and its scorers score."""

    experiment: Experiment
    cfg: DictConfig  # the experiment's config with this cell's site and layer
    source: CellSource
    site: str
    layer: int
    X: dict[str, np.ndarray]

    @property
    def examples(self) -> Examples:
        return self.source.examples

    @property
    def y(self) -> dict[str, np.ndarray]:
        return self.examples.y

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.examples.label_names

    @property
    def n_neurons(self) -> int:
        return self.X["train"].shape[1]

    @property
    def name(self) -> str:
        return f"{self.experiment.name}/{self.site}/L{self.layer}"

    @property
    def key(self) -> tuple:
        """The runner's cell key: every generator of the cell (a method's, a scorer's) is drawn from it."""
        return (self.cfg.task.name, self.cfg.model.name, self.layer, self.site, self.cfg.task.get("concept"))

    @property
    def cell(self) -> Cell:
        return Cell(self.cfg.task.name, self.cfg.task.get("concept"), self.cfg.model.name, int(self.cfg.seed),
                    self.site, self.layer)

    @cached_property
    def words(self) -> dict[str, np.ndarray]:
        """The word of each example row per split (a planted task's word types)."""
        task = self.experiment.task
        if isinstance(task, PlantedData):
            return {split: np.asarray(task.types[split]) for split in SPLITS}
        return {split: np.array([w for sentence in task.sentences[split] for w in sentence], dtype=object)[
            self.examples.index[split]] for split in SPLITS}

    @cached_property
    def refs(self) -> dict[str, np.ndarray] | None:
        """(sentence, word in sentence) of each example row per split; None for a planted task (no sentences)."""
        task = self.experiment.task
        if isinstance(task, PlantedData):
            return None
        return {split: word_refs(task.sentences[split], self.examples.index[split]) for split in SPLITS}

    @cached_property
    def model_context(self) -> ModelContext | None:
        """What model-based methods and scorers read at this cell, as the runner builds it; None without a model."""
        if self.source.model is None:
            return None
        family = self.source.family() if self.source.family is not None else None
        return model_context(self.experiment.task, self.examples, self.source.model, pooling=self.source.pooling,
                             batch_size=self.cfg.batch_size, family=family).at(self.site, self.layer)

    @cached_property
    def layer_data(self) -> LayerData:
        """The scorers' view of the cell (z-scored with train statistics, probe fits memoized across calls)."""
        return LayerData(self.X, self.examples, where=self.name, truth=self.source.truth, context=self.model_context,
                         resamples=test_resamples(self.cfg, self.experiment.task, self.examples))

    def sentence_activations(self, split: str, sentence_ids) -> list[np.ndarray]:
        """Activations (words x neurons) of every word of the task's sentences `sentence_ids` of `split`, NaN
        for a word without one (no subword piece); read from the task's cache entry, extracted first if absent."""
        task = self._real_task()
        if split not in SPLITS:
            raise NeuronbenchError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
        ids = np.asarray(sentence_ids, dtype=np.int64).reshape(-1)
        n = len(task.sentences[split])
        if len(ids) and (ids.min() < 0 or ids.max() >= n):
            raise NeuronbenchError(f"{self.name}: sentence ids {ids.min()}..{ids.max()} outside the {n} sentences "
                                   f"of {split}")
        return self._read_sentences(task, split, ids)

    def text_activations(self, sentences: list[str | list[str]]) -> list[np.ndarray]:
        """Activations of every word of free sentences (a string is split on whitespace), NaN for a word without
        one: the sentences are a corpus of their own for the extractor, extracted once, then read from the cache."""
        self._real_task()
        words = [sentence_words(sentence) for sentence in sentences]
        if not words or not all(words):
            raise NeuronbenchError("text_activations: give a non-empty list of non-empty sentences")
        digest = hashlib.sha256("\n".join("\t".join(w) for w in words).encode()).hexdigest()[:12]
        # every split holds them (the tokenizer refuses an empty split); only train's are extracted
        corpus = Task(name=f"sentences-{digest}", version="1", sentences={split: words for split in SPLITS},
                      labels={split: [[None] * len(w) for w in words] for split in SPLITS})
        return self._read_sentences(corpus, "train", np.arange(len(words)))

    def _real_task(self) -> Task:
        if self.source.model is None:
            raise NeuronbenchError(f"{self.name}: a planted task has no sentences and no model to run them "
                                   "through; use a real task and model (e.g. templated_number on minilm_l6)")
        return self.experiment.task

    def _read_sentences(self, task: Task, split: str, ids: np.ndarray) -> list[np.ndarray]:
        cache, loaded, pooling = ActivationCache(self.cfg.cache_dir), self.source.model, self.source.pooling
        first = _first_words(task.sentences[split])
        rows = [np.arange(first[i], first[i + 1]) for i in ids]
        wanted = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        entry = extract(loaded, task, cache, cells=[(self.site, self.layer)], words={split: wanted},
                        pooling=pooling, batch_size=self.cfg.batch_size, quiet=True)
        valid = word_validity(loaded, task, cache, pooling)[split]
        out = []
        for row in rows:
            values = np.full((len(row), self.n_neurons), np.nan, dtype=np.float32)
            values[valid[row]] = cache.read_words(entry, split, self.site, self.layer, row[valid[row]])
            out.append(values)
        return out


def checked_neuron(acts: Activations, neuron) -> int:
    """`neuron` as an int index of the cell's neurons, or one error naming the valid range."""
    if not isinstance(acts, Activations):
        raise NeuronbenchError(f"expected the Activations of a cell (nb.load(...).activations(layer)), got "
                               f"{type(acts).__name__}")
    if isinstance(neuron, bool) or not isinstance(neuron, (int, np.integer)) or not 0 <= neuron < acts.n_neurons:
        raise NeuronbenchError(f"neuron {neuron!r}: {acts.name} has neurons 0..{acts.n_neurons - 1}")
    return int(neuron)
