"""Concept search, neuron -> concept: which labels of all tasks on a cell's corpus a neuron detects (AP and IoU, with
the control task's value beside each), and its compositional explanation (reference addendum section D.2).

The probing words are every word of the sentences that hold the cell's examples (train and test): the activation
cache already stores them all (extraction stores whole sentences), and every task on the corpus labels the same
words, so each task's labels, the control task of each, and lexical atoms (frequent word forms, suffixes) become
boolean masks over one word list. The arithmetic is the project's own: AP as the `ap` method computes it, the
"on" mask and IoU as the `iou` method defines them (`bench.score.detection`), the beam search in
`bench.score.formulas`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue
from scipy import sparse

from bench.core.types import SPLITS, PlantedData, Task
from bench.errors import NeuronbenchError
from bench.examples import control_labels
from bench.run import _load_task
from bench.score.detection import average_precision_per_class, mask_iou, on_threshold
from bench.score.formulas import BEAM, MAX_LENGTH, atom_ious, beam_search, iou
from bench.seeds import cell_rng
from leaderboard.submission import compose_config
from neuronbench.experiment import Activations, checked_neuron, config_names
from tasks.lexical import SUFFIXES, suffix_of


PROBE_SPLITS = ("train", "test")  # the search is fitted on train words and scored on test words
WORD_ATOMS = 500  # most frequent lowercased train forms as atoms (addendum D.2)
ALPHA = 0.005  # the `iou` method's quantile: on = x > quantile_{1-α}(train)


@dataclass(frozen=True)
class TaskLabels:
    """One task's labels on the probing words: per split a label id per word, len(labels) where the task leaves
    the word unlabelled (context), and its control task's label ids in the same convention."""

    task: str
    labels: tuple[str, ...]
    codes: dict[str, np.ndarray]
    control: dict[str, np.ndarray]

    def atom_names(self, control: bool = False) -> list[str]:
        return [f"{'control ' if control else ''}{self.task}:{label}" for label in self.labels]

    def masks(self, split: str, control: bool = False) -> sparse.csc_array:
        """Words x labels, one-hot (a context word has no column set)."""
        codes = (self.control if control else self.codes)[split]
        rows = np.flatnonzero(codes < len(self.labels))
        return sparse.csc_array((np.ones(len(rows)), (rows, codes[rows])), shape=(len(codes), len(self.labels)))


@dataclass(frozen=True, eq=False)
class CorpusConcepts:
    """The probing words of a cell and every atom over them: the tasks' labels, their control labels and the
    lexical atoms; built once per cell (`corpus_concepts`) and shared by the searches of all its neurons."""

    where: str
    words: dict[str, np.ndarray]  # per probing split
    X: dict[str, np.ndarray]  # probing words x neurons, raw activations
    tasks: tuple[TaskLabels, ...]
    lexical: tuple[str, ...]  # atom names: word:<form>, suffix:-<suffix>
    lexical_masks: dict[str, sparse.csc_array]

    def atoms(self, split: str) -> tuple[sparse.csc_array, list[str]]:
        """The search's atoms: every task label, then the lexical atoms."""
        blocks = [t.masks(split) for t in self.tasks] + [self.lexical_masks[split]]
        return sparse.hstack(blocks, format="csc"), [n for t in self.tasks for n in t.atom_names()] + list(
            self.lexical)

    def control_atoms(self, split: str) -> tuple[sparse.csc_array, list[str]]:
        return (sparse.hstack([t.masks(split, control=True) for t in self.tasks], format="csc"),
                [n for t in self.tasks for n in t.atom_names(control=True)])


@dataclass(frozen=True)
class ConceptScore:
    """How well the neuron detects one label on the test words, and the same label of the task's control task."""

    task: str
    label: str
    n_test: int  # test words with the label
    prevalence: float  # their share of the test words: the AP of a random score
    ap: float | None  # None: no test word has the label
    ap_control: float | None
    iou: float
    iou_control: float

    @property
    def ap_gain(self) -> float | None:
        """(AP − p)/(1 − p): the `ap` method's multi-class score, 0 for a random neuron, 1 for a perfect one."""
        return None if self.ap is None else (self.ap - self.prevalence) / (1.0 - self.prevalence)


@dataclass(frozen=True)
class ScoredFormula:
    formula: str
    length: int
    train_iou: float
    test_iou: float


@dataclass(frozen=True)
class Explanation:
    """The best formula on train words by IoU with the neuron's on mask, scored on test words too, beside the best
    single atom and the best control atom (each chosen on train, as the formula is)."""

    formula: str
    length: int
    train_iou: float
    test_iou: float
    atom: str
    atom_train_iou: float
    atom_test_iou: float
    control: str
    control_train_iou: float
    control_test_iou: float
    alpha: float | None  # None: on means x > 0
    threshold: float
    on_train: float  # realized on fraction of the train words
    on_test: float
    beam: tuple[ScoredFormula, ...]


@dataclass(frozen=True)
class ConceptSearch:
    """Concept search for one neuron: every label ranked (`concepts`, best first) and its explanation."""

    where: str
    neuron: int
    n_words: dict[str, int]
    by: str
    concepts: tuple[ConceptScore, ...]
    explanation: Explanation

    def table(self) -> pd.DataFrame:
        """The ranked labels as a DataFrame (one row per task label)."""
        return pd.DataFrame([{**dataclasses.asdict(c), "ap_gain": c.ap_gain} for c in self.concepts])

    def to_dict(self) -> dict:
        return {"kind": "concept_search", **dataclasses.asdict(self),
                "concepts": [{**dataclasses.asdict(c), "ap_gain": c.ap_gain} for c in self.concepts]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


def corpus_tasks(acts: Activations, tasks: list[str] | None = None) -> list[Task | PlantedData]:
    """The tasks whose labels are atoms: the cell's own task and every conf/task that loads on the same sentences
    (`tasks` narrows them to those names). A planted task has no sentences, so it is its own corpus; a conf/task
    whose loader needs a value of yours (task.files of `conllu`) is left out, and one whose loader is another's
    (`xpos_binary`, `xpos`) counts once."""
    own = acts.experiment.task
    names = config_names("task")
    unknown = sorted(set(tasks or ()) - set(names))
    if unknown:
        raise NeuronbenchError(f"tasks={unknown}: no conf/task of that name; valid: {', '.join(names)}")
    if isinstance(own, PlantedData):
        found = [own]
    else:
        found, seen = [own], {_loader(acts.cfg)}
        for name in sorted(set(names if tasks is None else tasks) - {acts.cfg.task.name}):
            cfg = compose_config([f"task={name}", f"cache_dir={acts.cfg.cache_dir}"])
            try:
                loader = _loader(cfg)
            except (MissingMandatoryValue, InterpolationToMissingValueError):
                continue  # a loader that needs the user's files or path
            if loader in seen:
                continue  # the same labels under another name (xpos_binary reads xpos)
            seen.add(loader)
            loaded = _load_task(loader, cfg.task.name, cfg.task.version)
            if isinstance(loaded, Task) and loaded.corpus_id == own.corpus_id:
                found.append(loaded)
    missing = sorted(set(tasks or ()) - {t.name for t in found})
    if missing:
        raise NeuronbenchError(f"tasks={missing}: not on the sentences of {acts.name} (or another name for a task "
                               f"already there); the tasks found there: {', '.join(t.name for t in found)}")
    return found


def _loader(cfg) -> str:
    return json.dumps(OmegaConf.to_container(cfg.task.loader, resolve=True, throw_on_missing=True), sort_keys=True)


def corpus_concepts(acts: Activations, tasks: list[str] | None = None, words: int = WORD_ATOMS) -> CorpusConcepts:
    """The atoms of concept search over the cell's probing words; pass the result as `concepts=` to search many
    neurons of the cell without rebuilding it (`explain` does)."""
    if not isinstance(acts, Activations):
        raise NeuronbenchError(f"expected the Activations of a cell (nb.load(...).activations(layer)), got "
                               f"{type(acts).__name__}")
    if isinstance(words, bool) or not isinstance(words, int) or words < 0:
        raise NeuronbenchError(f"words={words!r}: the number of word-form atoms must be an integer >= 0")
    found = corpus_tasks(acts, tasks)
    if isinstance(acts.experiment.task, PlantedData):
        X = {s: acts.X[s] for s in PROBE_SPLITS}
        forms = {s: acts.words[s].astype(str) for s in PROBE_SPLITS}
        raw = {found[0].name: ({s: acts.y[s] for s in PROBE_SPLITS}, acts.label_names)}
    else:
        X, forms, raw = _probing_words(acts, found)
    labels = tuple(labelled for name, (codes, names) in raw.items()
                   if (labelled := _task_labels(name, codes, names, forms, int(acts.cfg.seed))) is not None)
    if not labels:
        raise NeuronbenchError(f"{acts.name}: no task labels any probing word ({', '.join(raw)}); concept search "
                               "needs at least one label")
    lexical, masks = _lexical_atoms(forms, words)
    return CorpusConcepts(acts.name, forms, X, labels, lexical, masks)


def _probing_words(acts: Activations, found: list[Task]):
    """Every word with an activation in the sentences that hold the cell's examples, per probing split, with the
    label each task gives it (None: context)."""
    X, forms, per_task = {}, {}, {t.name: {} for t in found}
    for split in PROBE_SPLITS:
        ids = np.unique(acts.refs[split][:, 0])
        values = np.concatenate(acts.sentence_activations(split, ids))
        valid = ~np.isnan(values).any(axis=1)
        X[split] = values[valid]
        sentences = acts.experiment.task.sentences[split]
        forms[split] = np.array([w for i in ids for w in sentences[i]], dtype=str)[valid]
        for task in found:
            per_task[task.name][split] = np.array([l for i in ids for l in task.labels[split][i]],
                                                  dtype=object)[valid]
    return X, forms, {name: _coded(labels) for name, labels in per_task.items()}


def _coded(labels: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    """Label ids per split in sorted name order, len(names) for a context word (None)."""
    given = {s: labels[s] != None for s in PROBE_SPLITS}  # noqa: E711 (elementwise on an object array)
    names = np.unique(np.concatenate([labels[s][given[s]].astype(str) for s in PROBE_SPLITS]))
    codes = {}
    for s in PROBE_SPLITS:
        codes[s] = np.full(len(labels[s]), len(names), dtype=np.int64)
        codes[s][given[s]] = np.searchsorted(names, labels[s][given[s]].astype(str))
    return codes, tuple(names.tolist())


def _task_labels(name: str, codes: dict, names: tuple, forms: dict, seed: int) -> TaskLabels | None:
    """The task's labels present in train, with its control task: Hewitt & Liang's one label per word type drawn
    from the task's train label distribution (`bench.examples.control_labels`, stream "control")."""
    present = np.flatnonzero(np.bincount(codes["train"], minlength=len(names) + 1)[:len(names)])
    if not len(present):
        return None
    remap = np.full(len(names) + 1, len(present))
    remap[present] = np.arange(len(present))
    codes = {s: remap[codes[s]] for s in PROBE_SPLITS}
    labelled = {s: codes[s] < len(present) for s in PROBE_SPLITS}
    types = {s: forms[s][labelled[s]] if s in forms else np.zeros(0, dtype=str) for s in SPLITS}
    drawn = control_labels(types, codes["train"][labelled["train"]], len(present),
                           cell_rng(seed, name, None, "control"))
    control = {}
    for s in PROBE_SPLITS:
        control[s] = np.full(len(codes[s]), len(present))
        control[s][labelled[s]] = drawn[s]
    return TaskLabels(name, tuple(names[i] for i in present), codes, control)


def _lexical_atoms(forms: dict, n_words: int) -> tuple[tuple[str, ...], dict]:
    """The `n_words` most frequent lowercased train forms (ties by form) and the suffixes of `tasks.lexical`
    present in train, as masks per probing split (computed per word type, then spread to its words)."""
    typed = {s: np.unique(forms[s], return_inverse=True) for s in PROBE_SPLITS}
    lower = {s: np.char.lower(types)[inverse] for s, (types, inverse) in typed.items()}
    suffix = {s: np.array([suffix_of(t) or "" for t in types], dtype=object)[inverse].astype(str)
              for s, (types, inverse) in typed.items()}
    forms_in_train, counts = np.unique(lower["train"], return_counts=True)
    top = forms_in_train[np.lexsort((forms_in_train, -counts))][:n_words]
    present = np.array([x for x in SUFFIXES if (suffix["train"] == x).any()], dtype=str)
    names = tuple([f"word:{form}" for form in top] + [f"suffix:-{x}" for x in present])
    masks = {}
    for s in PROBE_SPLITS:
        rows, columns = [], []
        for column, offset in ((_column_of(lower[s], top), 0), (_column_of(suffix[s], present), len(top))):
            hit = np.flatnonzero(column >= 0)
            rows.append(hit)
            columns.append(column[hit] + offset)
        rows, columns = np.concatenate(rows), np.concatenate(columns)
        masks[s] = sparse.csc_array((np.ones(len(rows)), (rows, columns)), shape=(len(forms[s]), len(names)))
    return names, masks


def _column_of(values: np.ndarray, names: np.ndarray) -> np.ndarray:
    """Index of each value in `names`, −1 where it is not one of them."""
    if not len(names):
        return np.full(len(values), -1)
    order = np.argsort(names)
    at = np.clip(np.searchsorted(names[order], values), 0, len(names) - 1)
    return np.where(names[order][at] == values, order[at], -1)


def concept_search(acts: Activations, neuron: int, *, concepts: CorpusConcepts | None = None,
                   alpha: float | None = ALPHA, beam: int = BEAM, max_length: int = MAX_LENGTH,
                   by: str = "ap") -> ConceptSearch:
    """What `neuron` detects: every label of every task on the corpus, ranked `by` "ap" (the `ap` method's
    (AP − p)/(1 − p) on test words) or "iou" (test IoU of the on mask), each with its control label's value; and
    the best formula of at most `max_length` atoms (beam search, fitted on train words, scored on test words).

    `alpha`: on = x > quantile_{1−α} of the neuron's train values (0.005, the `iou` method's), or None for x > 0.
    Pass `concepts=nb.corpus_concepts(acts)` to reuse one cell's atoms across neurons."""
    neuron = checked_neuron(acts, neuron)
    if by not in ("ap", "iou"):
        raise NeuronbenchError(f"by={by!r}: rank the labels by 'ap' or 'iou'")
    concepts = corpus_concepts(acts) if concepts is None else concepts
    if not isinstance(concepts, CorpusConcepts) or concepts.where != acts.name:
        raise NeuronbenchError(f"concepts: expected nb.corpus_concepts(acts) of {acts.name}")
    values = {s: concepts.X[s][:, neuron].astype(np.float64) for s in PROBE_SPLITS}
    threshold = on_threshold(values["train"], alpha)
    on = {s: values[s] > threshold for s in PROBE_SPLITS}
    if not on["train"].any():
        raise NeuronbenchError(f"neuron {neuron} of {acts.name} exceeds {threshold:.4g} on no train word, so no "
                               "concept can match it; try alpha=None (x > 0) or a larger alpha")
    scores = [score for task in concepts.tasks for score in _label_scores(task, values["test"], on["test"])]
    key = (lambda c: c.ap_gain) if by == "ap" else (lambda c: c.iou)
    ranked = sorted(scores, key=lambda c: (-(key(c) if key(c) is not None else -np.inf), c.task, c.label))
    explanation = _explanation(concepts, on, alpha, threshold, beam, max_length)
    return ConceptSearch(acts.name, neuron, {s: len(values[s]) for s in PROBE_SPLITS}, by, tuple(ranked),
                         explanation)


def _label_scores(task: TaskLabels, values: np.ndarray, on: np.ndarray) -> list[ConceptScore]:
    """AP and IoU of the neuron for each of the task's labels and its control labels, on the test words."""
    n = len(task.labels)
    order = np.argsort(values)[::-1]
    measured = {}
    for kind, codes in (("task", task.codes["test"]), ("control", task.control["test"])):
        counts = np.bincount(codes, minlength=n + 1)
        ap = average_precision_per_class(codes[order][None, :], values[order][None, :], counts)[0, :n]
        overlap = np.bincount(codes[on], minlength=n + 1)[:n]
        measured[kind] = (ap, mask_iou(overlap, counts[:n], np.count_nonzero(on)), counts[:n])
    (ap, ious, counts), (ap_c, ious_c, _) = measured["task"], measured["control"]
    return [ConceptScore(task.task, label, int(counts[i]), float(counts[i] / len(values)),
                         None if np.isnan(ap[i]) else float(ap[i]), None if np.isnan(ap_c[i]) else float(ap_c[i]),
                         float(ious[i]), float(ious_c[i])) for i, label in enumerate(task.labels)]


def _explanation(concepts: CorpusConcepts, on: dict, alpha, threshold: float, beam: int,
                 max_length: int) -> Explanation:
    atoms = {s: concepts.atoms(s) for s in PROBE_SPLITS}
    names = atoms["train"][1]
    found = beam_search(atoms["train"][0], on["train"], names, beam=beam, max_length=max_length)
    scored = tuple(ScoredFormula(f.name(names), len(f), value, iou(f.mask(atoms["test"][0]), on["test"]))
                   for f, value in found)
    atom, atom_train, atom_test = _best_atom(atoms, on)
    control, control_train, control_test = _best_atom({s: concepts.control_atoms(s) for s in PROBE_SPLITS}, on)
    best = scored[0]
    return Explanation(best.formula, best.length, best.train_iou, best.test_iou, atom, atom_train, atom_test,
                       control, control_train, control_test, alpha, threshold,
                       float(on["train"].mean()), float(on["test"].mean()), scored)


def _best_atom(atoms: dict, on: dict) -> tuple[str, float, float]:
    """The atom of highest train IoU (ties to the earlier name), with its train and test IoU."""
    (train, names), (test, _) = atoms["train"], atoms["test"]
    ious = atom_ious(train, on["train"])
    j = int(np.lexsort((np.array(names), -ious))[0])
    return names[j], float(ious[j]), float(atom_ious(test[:, [j]], on["test"])[0])


def explain(acts: Activations, neurons, *, concepts: CorpusConcepts | None = None, alpha: float | None = ALPHA,
            beam: int = BEAM, max_length: int = MAX_LENGTH) -> pd.DataFrame:
    """One row per neuron (e.g. `ranking[:10]`, a ranking's top 10): the label it detects best (by AP gain) with
    its control value, and its compositional explanation with train and test IoU, beside the best single atom's
    and the best control atom's test IoU. The corpus's atoms are built once for all the neurons."""
    chosen = np.asarray(neurons).reshape(-1).tolist()  # Python ints: an error shows the neuron as given
    if not chosen:
        raise NeuronbenchError("explain: give a neuron or a non-empty list of neurons, e.g. ranking[:10]")
    for neuron in chosen:
        checked_neuron(acts, neuron)
    concepts = corpus_concepts(acts) if concepts is None else concepts
    rows = []
    for position, neuron in enumerate(chosen, 1):
        found = concept_search(acts, int(neuron), concepts=concepts, alpha=alpha, beam=beam, max_length=max_length)
        top, e = found.concepts[0], found.explanation
        rows.append({"rank": position, "neuron": int(neuron), "concept": f"{top.task}:{top.label}", "ap": top.ap,
                     "ap_control": top.ap_control, "ap_gain": top.ap_gain, "formula": e.formula,
                     "train_iou": e.train_iou, "test_iou": e.test_iou, "atom": e.atom,
                     "atom_test_iou": e.atom_test_iou, "control": e.control, "control_test_iou": e.control_test_iou,
                     "on_train": e.on_train})
    return pd.DataFrame(rows)
