"""Example selection (rare classes, concept form, balancing, caps) and the control task."""

from __future__ import annotations

import numpy as np
import pytest

from bench.core.types import SPLITS, Task
from bench.errors import NeuronbenchError
from bench.examples import OTHER, control_labels, select_examples
from bench.seeds import cell_rng


def _task(labels_per_split):
    sentences = {s: [[f"w{i % 7}" for i in range(len(l))] for l in labels_per_split[s]] for s in SPLITS}
    return Task("toy", "1", sentences, labels_per_split)


def _labels(counts):
    """One sentence per split with `counts` = {label: n} words, plus unlabelled context words."""
    return [[l for l, n in counts.items() for _ in range(n)] + [None, None]]


def _valid(task):
    return {s: np.ones(sum(len(x) for x in task.sentences[s]), dtype=bool) for s in SPLITS}


def test_rare_class_dropped_not_relabelled():
    task = _task({s: _labels({"A": 30, "B": 25, "C": 5 if s == "test" else 40}) for s in SPLITS})
    ex = select_examples(task, _valid(task), seed=0, n_min=20)
    assert ex.label_names == ("A", "B") and ex.dropped == ("C",)
    assert ex.sizes() == {"train": 55, "dev": 55, "test": 55}
    assert set(np.unique(ex.y["train"])) == {0, 1}


def test_concept_form_balances_other_and_caps():
    task = _task({s: _labels({"A": 60, "B": 30, "C": 50}) for s in SPLITS})
    ex = select_examples(task, _valid(task), seed=0, concept="B", n_min=20, max_words={"train": 40})
    assert ex.label_names == (OTHER, "B")
    assert ex.sizes()["dev"] == 60 and (ex.y["dev"] == 1).sum() == 30
    assert ex.sizes()["train"] == 40
    again = select_examples(task, _valid(task), seed=0, concept="B", n_min=20, max_words={"train": 40})
    assert all(np.array_equal(ex.index[s], again.index[s]) for s in SPLITS)
    other = select_examples(task, _valid(task), seed=1, concept="B", n_min=20, max_words={"train": 40})
    assert not np.array_equal(ex.index["train"], other.index["train"])


def test_invalid_words_are_not_examples():
    task = _task({s: _labels({"A": 30, "B": 30}) for s in SPLITS})
    valid = _valid(task)
    valid["train"][:10] = False
    ex = select_examples(task, valid, seed=0, n_min=20)
    assert ex.sizes()["train"] == 50 and ex.index["train"].min() == 10


def test_errors_name_the_problem():
    task = _task({s: _labels({"A": 30, "B": 5}) for s in SPLITS})
    with pytest.raises(NeuronbenchError, match="fewer than 2 classes"):
        select_examples(task, _valid(task), seed=0, n_min=20)
    with pytest.raises(NeuronbenchError, match="concept 'Z' is not a kept class"):
        select_examples(task, _valid(task), seed=0, n_min=1, concept="Z")


def test_control_task_one_label_per_type_from_train_distribution():
    rng = np.random.default_rng(0)
    types = {s: rng.choice([f"t{i}" for i in range(400)], size=3000) for s in SPLITS}
    y_train = np.repeat([0, 1, 2], [2400, 450, 150])
    control = control_labels(types, y_train, 3, cell_rng(0, "toy", None, "control"))
    mapping = {}
    for s in SPLITS:
        for t, c in zip(types[s], control[s]):
            assert mapping.setdefault(t, c) == c  # every occurrence of a type gets one label
    shares = np.bincount(list(mapping.values()), minlength=3) / len(mapping)
    np.testing.assert_allclose(shares, [0.8, 0.15, 0.05], atol=0.06)
    again = control_labels(types, y_train, 3, cell_rng(0, "toy", None, "control"))
    assert all(np.array_equal(control[s], again[s]) for s in SPLITS)
