"""Concept search (bench/score/formulas.py, bench/score/detection.py, neuronbench/concepts.py): known-answer formula
IoU and beam search, the threshold rule, held-out scoring, planted neurons explained by their planted class, the
templated corpus on minilm_l6, the page section in Chromium, and one clear error per bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

import neuronbench as nb
from bench.errors import NeuronbenchError
from bench.score.detection import on_threshold
from bench.score.formulas import Formula, atom_ious, beam_search, iou
from neuronbench.cli import main as neurons_cli
from test_html_board import browser  # noqa: F401  (the board's headless Chromium fixture)

#          0  1  2  3  4  5  6  7
A = [1, 1, 1, 1, 0, 0, 0, 0]
B = [0, 0, 1, 1, 0, 0, 1, 1]
C = [1, 0, 1, 0, 1, 0, 1, 0]
HAND = np.array([A, B, C], dtype=bool).T
NAMES = ["A", "B", "C"]


def test_formula_iou_by_hand():
    on = np.array([1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)  # A AND NOT B
    assert atom_ious(HAND, on).tolist() == [2 / 4, 0.0, 1 / 5]
    assert Formula((0, 1), ("AND NOT",)).mask(HAND).tolist() == on.tolist()
    assert iou(Formula((0, 2), ("OR",)).mask(HAND), on) == 2 / 6  # A OR C = words 0 1 2 3 4 6
    assert iou(Formula((0, 2), ("AND",)).mask(HAND), on) == 1 / 3  # A AND C = words 0 2
    three = Formula((0, 1, 2), ("AND NOT", "OR"))
    assert three.name(NAMES) == "(A AND NOT B) OR C" and len(three) == 3
    assert three.mask(HAND).tolist() == [1, 1, 1, 0, 1, 0, 1, 0]


def test_beam_finds_a_and_not_b_with_b_disjoint_from_the_neuron():
    """B never overlaps the on mask (IoU 0): compexp's sentence search would drop it, the word search keeps it."""
    on = np.array([1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    beam = beam_search(HAND, on, NAMES)
    assert beam[0].formula.name(NAMES) == "A AND NOT B" and beam[0].iou == 1.0
    assert beam_search(HAND, on, NAMES, max_length=1)[0].formula.name(NAMES) == "A"


def test_beam_finds_the_best_length_three_formula():
    rng = np.random.default_rng(0)
    atoms = rng.random((3000, 8)) < [0.3, 0.4, 0.2, 0.5, 0.1, 0.25, 0.35, 0.15]
    names = list("ABCDEFGH")
    on = (atoms[:, 0] & ~atoms[:, 1]) | atoms[:, 4]
    best = [beam_search(atoms, on, names, max_length=n)[0] for n in (1, 2, 3)]
    assert best[2].formula.name(names) == "(A AND NOT B) OR E" and best[2].iou == 1.0
    assert best[0].iou < best[1].iou < 1.0  # the best IoU never falls as the length grows
    assert best[1].iou == iou(best[1].formula.mask(atoms), on)  # the counts are those of the formula's mask


def test_ties_go_to_the_shorter_formula_then_the_name():
    atoms = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 1]], dtype=bool)  # Y is a copy of X, Z is off the mask
    on = np.array([1, 1, 0, 0], dtype=bool)
    beam = beam_search(atoms, on, ["Y", "X", "Z"], beam=4)
    assert [(s.formula.name(["Y", "X", "Z"]), s.iou) for s in beam[:3]] == [("X", 1.0), ("Y", 1.0),
                                                                           ("X AND NOT Z", 1.0)]
    names = [s.formula.name(["Y", "X", "Z"]) for s in beam_search(atoms, on, ["Y", "X", "Z"], beam=20)]
    assert "X OR Y" in names and "Y OR X" not in names  # a commutative pair is one formula
    assert not any(name.count("X") > 1 for name in names)  # no atom twice


def test_threshold_rule():
    x = np.arange(1000, dtype=np.float64)
    threshold = on_threshold(x, 0.005)
    assert threshold == np.quantile(x, 0.995)
    assert np.count_nonzero(x > threshold) == 5  # strict: the top 0.5%
    assert on_threshold(x, None) == 0.0
    relu = np.r_[np.zeros(998), 1.0, 2.0]  # ties at the quantile: the realized on fraction is far below alpha
    assert np.count_nonzero(relu > on_threshold(relu, 0.005)) == 2


@pytest.fixture(scope="module")
def planted():
    exp = nb.load("planted_single", "planted")
    acts = exp.activations(0)
    return acts, nb.corpus_concepts(acts)


@pytest.mark.parametrize("case", ["single", "redundant"])
def test_planted_neurons_are_explained_by_their_class(case):
    acts = nb.load(f"planted_{case}", "planted").activations(0)
    concepts = nb.corpus_concepts(acts)
    for c, truth in enumerate(acts.source.truth):
        label = f"planted_{case}:class{c}"
        for neuron in sorted(truth):
            found = nb.concept_search(acts, neuron, concepts=concepts)  # the default threshold, alpha = 0.005
            best = found.concepts[0]
            assert (best.task, best.label) == (f"planted_{case}", f"class{c}")
            assert best.ap > 0.8 and best.ap_control < 0.4
            # at alpha = p_c (the iou_prev rule: the class is 20% of the words) the class is the best atom and the
            # formula's first leaf, and it holds on test words far above the control task's best atom
            e = nb.concept_search(acts, neuron, concepts=concepts, alpha=0.2).explanation
            assert e.atom == label and e.formula.lstrip("(").startswith(label)
            assert e.test_iou > 0.45 and e.atom_test_iou > 3 * e.control_test_iou


def test_a_polysemantic_neuron_is_explained_by_an_or():
    acts = nb.load("planted_polysemantic", "planted").activations(0)
    (shared,) = acts.source.truth[0] & acts.source.truth[1]
    e = nb.concept_search(acts, shared, alpha=0.2).explanation
    assert "planted_polysemantic:class0 OR planted_polysemantic:class1" in e.formula
    assert e.test_iou > e.atom_test_iou + 0.1


def test_label_scores_are_the_ap_and_iou_of_the_test_words(planted):
    acts, concepts = planted
    neuron = next(iter(acts.source.truth[2]))
    found = nb.concept_search(acts, neuron, concepts=concepts)
    x_train, x_test, y_test = acts.X["train"][:, neuron], acts.X["test"][:, neuron], acts.y["test"]
    threshold = np.quantile(x_train.astype(np.float64), 0.995)
    for score in found.concepts:
        positive = y_test == int(score.label[-1])
        assert score.ap == pytest.approx(average_precision_score(positive, x_test), abs=1e-12)
        assert score.iou == iou(x_test > threshold, positive)
        assert score.prevalence == positive.mean() and score.n_test == positive.sum()
    table = found.table()
    assert list(table["label"][:1]) == ["class2"] and table["ap_gain"].is_monotonic_decreasing


def test_held_out_scoring(planted):
    """The threshold is the train quantile (never refitted on test), and each test IoU is that of the train-chosen
    formula's mask on test words."""
    acts, concepts = planted
    neuron = next(iter(acts.source.truth[0]))
    e = nb.concept_search(acts, neuron, concepts=concepts, alpha=0.05).explanation
    x = {s: acts.X[s][:, neuron].astype(np.float64) for s in ("train", "test")}
    assert e.threshold == np.quantile(x["train"], 0.95)
    on = {s: x[s] > e.threshold for s in x}
    assert e.on_train == on["train"].mean() and e.on_test == on["test"].mean() != 0.05
    atoms, names = concepts.atoms("test")
    by_name = {f.formula: f for f in e.beam}
    assert by_name[e.formula].test_iou == e.test_iou
    column = names.index(e.atom)
    assert e.atom_test_iou == iou(atoms[:, [column]].toarray().ravel() > 0, on["test"])
    assert e.train_iou >= e.atom_train_iou  # the beam starts from the best atoms


def test_planted_json_and_explain_table(planted):
    acts, concepts = planted
    neurons = [next(iter(t)) for t in acts.source.truth]
    table = nb.explain(acts, neurons, concepts=concepts)
    assert table["neuron"].tolist() == neurons and table["rank"].tolist() == [1, 2, 3, 4, 5]
    assert table["concept"].tolist() == [f"planted_single:class{c}" for c in range(5)]
    data = nb.neuron_view(acts, neurons[0], concepts=concepts).to_dict()["concepts"]
    assert data["kind"] == "concept_search" and data["concepts"][0]["ap_gain"] > 0.8
    assert data["explanation"]["formula"] == table["formula"][0]


@pytest.mark.parametrize("call, message", [
    (lambda a, c: nb.concept_search(a, 768, concepts=c), "neuron 768: planted_single/planted/hidden/L0 has neurons"),
    (lambda a, c: nb.concept_search(a, True, concepts=c), "neuron True"),
    (lambda a, c: nb.concept_search(a, 0, concepts=c, alpha=1.5), "alpha=1.5: expected a fraction"),
    (lambda a, c: nb.concept_search(a, 0, concepts=dataclasses.replace(c, X={s: 0 * x for s, x in c.X.items()})),
     "neuron 0 of planted_single/planted/hidden/L0 exceeds 0 on no train word"),  # a dead neuron
    (lambda a, c: nb.concept_search(a, 0, concepts=c, by="f1"), "by='f1'"),
    (lambda a, c: nb.concept_search(a, 0, concepts="x"), "concepts: expected nb.corpus_concepts(acts)"),
    (lambda a, c: nb.concept_search(a, 0, concepts=c, beam=0), "beam=0 must be a positive integer"),
    (lambda a, c: nb.explain(a, [], concepts=c), "explain: give a neuron or a non-empty list"),
    (lambda a, c: nb.explain(a, [1, -1], concepts=c), "neuron -1"),
    (lambda a, c: nb.corpus_concepts(a, tasks=["nope"]), "tasks=['nope']: no conf/task of that name"),
    (lambda a, c: nb.corpus_concepts(a, tasks=["upos"]), "tasks=['upos']: not on the sentences of"),
    (lambda a, c: nb.corpus_concepts(a, words=-1), "words=-1"),
    (lambda a, c: nb.corpus_concepts("acts"), "expected the Activations of a cell"),
])
def test_bad_input_is_one_clear_error(planted, call, message):
    acts, concepts = planted
    with pytest.raises(NeuronbenchError) as err:
        call(acts, concepts)
    assert message in str(err.value)


@pytest.mark.parametrize("call, message", [
    (lambda: beam_search(np.zeros((4, 0), dtype=bool), np.ones(4, dtype=bool), []), "at least one atom"),
    (lambda: beam_search(HAND, np.zeros(8, dtype=bool), NAMES), "on for no word"),
    (lambda: beam_search(HAND, np.ones(7, dtype=bool), NAMES), "atoms have 8 words, the on mask 7"),
    (lambda: beam_search(HAND, np.ones(8), NAMES), "1-D boolean mask"),
    (lambda: beam_search(HAND, np.ones(8, dtype=bool), ["A"]), "1 names for 3 atoms"),
])
def test_bad_search_input_is_one_clear_error(call, message):
    with pytest.raises(NeuronbenchError) as err:
        call()
    assert message in str(err.value)


@pytest.fixture(scope="module")
def templated():
    """templated_number on minilm_l6, layer 3 (the README's cell): every conf/task is loaded once to find the
    tasks on its sentences."""
    acts = nb.load("templated_number", "minilm_l6").activations(3)
    return acts, nb.corpus_concepts(acts)


def test_templated_corpus_has_every_templated_task(templated):
    acts, concepts = templated
    assert [t.task for t in concepts.tasks] == ["templated_number", "templated_position", "templated_tense",
                                                "templated_word_class"]
    n_sentences = {s: len(np.unique(acts.refs[s][:, 0])) for s in ("train", "test")}
    words = {s: sum(len(acts.experiment.task.sentences[s][i]) for i in np.unique(acts.refs[s][:, 0]))
             for s in ("train", "test")}
    assert {s: len(concepts.words[s]) for s in words} == words and n_sentences["train"] > 500
    names = concepts.atoms("train")[1]
    assert "templated_word_class:NOUN" in names and "word:the" in names and "suffix:-ly" in names
    forms = np.unique(np.char.lower(concepts.words["train"]))
    assert len(forms) < 500 and [n for n in names if n.startswith("word:")] == sorted(  # every form, by frequency
        [f"word:{f}" for f in forms], key=lambda n: (-np.sum(np.char.lower(concepts.words["train"]) == n[5:]), n))


def test_a_top_probeless_neuron_on_templated_number(templated):
    acts, concepts = templated
    neuron = int(nb.rank("probeless", acts)[0])
    found = nb.concept_search(acts, neuron, concepts=concepts)
    labels = {(c.task, c.label) for c in found.concepts}
    assert len(labels) == sum(len(t.labels) for t in concepts.tasks)
    assert found.concepts[0].task == "templated_number" and found.concepts[0].ap > found.concepts[0].ap_control
    e = found.explanation
    assert e.on_train == pytest.approx(0.005, abs=0.001) and e.test_iou > 2 * e.control_test_iou


def test_concepts_section_in_chromium(browser, planted, tmp_path):  # noqa: F811  (browser: the board test's fixture)
    acts, concepts = planted
    ranking = nb.rank("probeless", acts)
    paths = nb.write_pages(nb.ranking_view(acts, ranking, method="probeless", top=2, concepts=concepts), tmp_path)
    browser.get(paths[1].as_uri())
    assert browser.find_elements("css selector", "#concepts")
    tables = browser.find_elements("css selector", "table.sortable")
    assert len(tables) == 6  # top, bottom, labels; explanation, beam, concepts
    first = tables[-1].find_elements("css selector", "tbody tr")[0].find_elements("css selector", "td")
    (planted_class,) = [c for c, truth in enumerate(acts.source.truth) if int(ranking[0]) in truth]
    assert [first[0].text, first[1].text] == ["planted_single", f"class{planted_class}"]
    assert [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []
    browser.get(paths[0].as_uri())
    assert len(browser.find_elements("css selector", ".card .formula")) == 2


def test_cli_concepts_flag(tmp_path, capsys):
    out = tmp_path / "pages"
    assert neurons_cli(["task=planted_single", "model=planted", "--layer", "0", "--neuron", "5", "--concepts",
                        "--out", str(out)]) == 0
    page = capsys.readouterr().out.split()[0]
    assert 'id="concepts"' in open(page, encoding="utf-8").read()
