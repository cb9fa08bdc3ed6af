"""The templated task set: determinism, one shared corpus, and labels that match the grammar."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.core.types import SPLITS
from bench.errors import NeuronbenchError
from tasks.templated import (
    ANIMATE_NOUNS,
    COMPLEMENT_VERBS,
    FEATURES,
    INANIMATE_NOUNS,
    INTRANSITIVE_VERBS,
    PLURAL_DETERMINERS,
    SINGULAR_DETERMINERS,
    TIME_ADVERBS,
    TRANSITIVE_VERBS,
    templated_task,
)

ALL_VERBS = INTRANSITIVE_VERBS + TRANSITIVE_VERBS + COMPLEMENT_VERBS
THIRD_SINGULAR_FORMS = {verb.third_singular for verb in ALL_VERBS} | {"is"}
NON_THIRD_SINGULAR_FORMS = {verb.base for verb in ALL_VERBS} | {"am", "are"}
LABEL_INVENTORIES = {
    "word_class": {"DET", "NOUN", "VERB", "ADJ", "ADV", "ADP", "PRON", "CONJ", "PUNCT"},
    "number": {"Sing", "Plur"},
    "tense": {"Past", "Pres"},
    "position": {"begin", "middle", "end"},
}


@pytest.fixture(scope="module")
def default_tasks():
    return {feature: templated_task(feature, f"templated-{feature}", "1") for feature in FEATURES}


def annotated_sentences(tasks):
    """Each sentence as (word, word_class, number, tense) tuples, joined across feature tasks."""
    for split in SPLITS:
        yield from ([*zip(*columns)] for columns in zip(
            tasks["word_class"].sentences[split], tasks["word_class"].labels[split],
            tasks["number"].labels[split], tasks["tense"].labels[split]))


def test_same_seed_gives_identical_task():
    first = templated_task("tense", "t", "1", n_sentences=200, seed=7)
    assert first == templated_task("tense", "t", "1", n_sentences=200, seed=7)


def test_different_seeds_give_different_sentences():
    first = templated_task("tense", "t", "1", n_sentences=200, seed=7)
    second = templated_task("tense", "t", "1", n_sentences=200, seed=8)
    assert first.sentences != second.sentences
    assert first.corpus_id != second.corpus_id


def test_all_features_share_one_corpus(default_tasks):
    assert len({task.corpus_id for task in default_tasks.values()}) == 1
    assert all(task.sentences == default_tasks["word_class"].sentences
               for task in default_tasks.values())


def test_meta_and_split_sizes(default_tasks):
    task = default_tasks["number"]
    pairs = {"_target_": "tasks.templated.minimal_pairs", "seed": 0}
    assert task.meta == {"source": "templated", "n_sentences": 2000, "seed": 0,
                         "minimal_pairs": {"concept": {**pairs, "attribute": "number", "n_test": 320},
                                           "off_target": {**pairs, "attribute": "tense"},
                                           "crossed": {"_target_": "tasks.templated.crossed_pairs", "seed": 0}}}
    assert {split: len(task.sentences[split]) for split in SPLITS} == {
        "train": 1400, "dev": 300, "test": 300}


def test_sentences_have_5_to_15_words_and_a_large_vocabulary(default_tasks):
    sentences = [s for split in SPLITS for s in default_tasks["word_class"].sentences[split]]
    assert all(5 <= len(words) <= 15 for words in sentences)
    assert len({word for words in sentences for word in words}) >= 200


def test_labels_line_up_and_come_from_each_inventory(default_tasks):
    for feature, task in default_tasks.items():
        for split in SPLITS:
            for words, labels in zip(task.sentences[split], task.labels[split]):
                assert len(words) == len(labels)
                assert set(labels) - {None} <= LABEL_INVENTORIES[feature]
                if feature in ("word_class", "position"):
                    assert None not in labels


def test_number_labels_exactly_the_nouns(default_tasks):
    lexicon = ANIMATE_NOUNS + INANIMATE_NOUNS
    forms = {"Sing": {n.singular for n in lexicon}, "Plur": {n.plural for n in lexicon}}
    for sentence in annotated_sentences(default_tasks):
        for word, word_class, number, _ in sentence:
            assert (word_class == "NOUN") == (number is not None)
            if number is not None:
                assert word in forms[number]


def test_tense_sits_on_finite_verbs_only(default_tasks):
    """Every verb is tensed except the bare infinitive after a complement verb's object."""
    complement_forms = {form for verb in COMPLEMENT_VERBS for form in verb[:3]}
    bare_infinitives = 0
    for sentence in annotated_sentences(default_tasks):
        untensed = [i for i, (_, word_class, _, tense) in enumerate(sentence)
                    if word_class == "VERB" and tense is None]
        expected = []
        for i, (word, word_class, _, tense) in enumerate(sentence):
            if word_class == "VERB" and word in complement_forms:  # never a bare infinitive
                assert tense is not None
                object_length = 1 if sentence[i + 1][1] == "PRON" else (
                    3 if sentence[i + 2][1] == "ADJ" else 2)
                expected.append(i + 1 + object_length)
        assert untensed == expected
        assert all(word_class == "VERB" for _, word_class, _, tense in sentence if tense)
        bare_infinitives += len(expected)
    assert bare_infinitives > 100


def test_determiners_agree_with_their_noun(default_tasks):
    singular = set(SINGULAR_DETERMINERS) | {"an"}
    checked = 0
    for sentence in annotated_sentences(default_tasks):
        for i, (word, word_class, _, _) in enumerate(sentence):
            if word_class != "DET" or word not in singular | set(PLURAL_DETERMINERS):
                continue
            following = sentence[i + 1]
            noun = sentence[i + 2] if following[1] == "ADJ" else following
            assert noun[1] == "NOUN"
            assert noun[2] == ("Sing" if word in singular else "Plur")
            if word in ("a", "an"):
                assert (word == "an") == (following[0][0] in "aeiou")
            checked += 1
    assert checked > 1000


def test_present_verbs_agree_with_pronoun_subjects(default_tasks):
    """A sentence-initial pronoun subject decides its verb's form: -s after he/she/it only."""
    time_adverbs = {adverb for adverbs in TIME_ADVERBS.values() for adverb in adverbs}
    checked = 0
    for sentence in annotated_sentences(default_tasks):
        start = 1 if sentence[0][0] in time_adverbs else 0
        subject = sentence[start][0]
        rest = [w for w in sentence[start + 1:] if w[1] != "ADV"]
        if subject not in ("I", "you", "we", "they", "he", "she", "it") or rest[0][3] != "Pres":
            continue
        verb = rest[0][0]
        if subject in ("he", "she", "it"):
            assert verb in THIRD_SINGULAR_FORMS and verb.endswith("s")
        else:
            assert verb in NON_THIRD_SINGULAR_FORMS
        checked += 1
    assert checked > 100


def test_relative_clause_verbs_agree_with_their_head_noun(default_tasks):
    checked = 0
    for sentence in annotated_sentences(default_tasks):
        for head, relative, verb in zip(sentence, sentence[1:], sentence[2:]):
            if head[1] == "NOUN" and relative[:2] in (("that", "PRON"), ("who", "PRON")):
                assert verb[1] == "VERB"
                if verb[3] == "Pres":
                    forms = THIRD_SINGULAR_FORMS if head[2] == "Sing" else NON_THIRD_SINGULAR_FORMS
                    assert verb[0] in forms
                    checked += 1
    assert checked > 50


def test_every_third_singular_form_ends_in_s():
    assert all(verb.third_singular.endswith("s") for verb in ALL_VERBS)


def test_ambiguous_forms_appear_with_both_labels(default_tasks):
    seen = {"number": {}, "tense": {}, "word_class": {}}
    for sentence in annotated_sentences(default_tasks):
        for word, word_class, number, tense in sentence:
            for feature, label in (("word_class", word_class), ("number", number),
                                   ("tense", tense)):
                if label is not None:
                    seen[feature].setdefault(word, set()).add(label)
    for noun in ("sheep", "fish", "deer"):
        assert seen["number"][noun] == {"Sing", "Plur"}
    for verb in ("put", "cut", "read", "hit", "let"):
        assert seen["tense"][verb] == {"Past", "Pres"}
    assert seen["word_class"]["that"] == {"DET", "PRON"}
    assert seen["word_class"]["her"] == {"DET", "PRON"}
    assert seen["word_class"]["saw"] == {"NOUN", "VERB"}


def test_position_bins_split_each_sentence_in_thirds(default_tasks):
    """Word i of n is begin while i < n/3, end from i >= 2n/3, compared in integers."""
    task = default_tasks["position"]
    for split in SPLITS:
        for labels in task.labels[split]:
            n = len(labels)
            assert labels == ["begin" if 3 * i < n else "middle" if 3 * i < 2 * n else "end"
                              for i in range(n)]
    five_words = next(labels for labels in task.labels["train"] if len(labels) == 5)
    assert five_words == ["begin", "begin", "middle", "middle", "end"]


def test_every_class_has_100_examples_per_split_at_defaults(default_tasks):
    for feature, task in default_tasks.items():
        for split in SPLITS:
            counts = Counter(label for labels in task.labels[split] for label in labels
                             if label is not None)
            assert set(counts) == LABEL_INVENTORIES[feature], (feature, split)
            assert min(counts.values()) >= 100, (feature, split, counts)


def test_unknown_feature_names_the_valid_ones():
    with pytest.raises(NeuronbenchError) as error:
        templated_task("gender", "t", "1")
    assert "gender" in str(error.value)
    assert all(feature in str(error.value) for feature in FEATURES)


def test_too_few_sentences_for_three_splits_is_refused():
    with pytest.raises(NeuronbenchError, match="dev split"):
        templated_task("tense", "t", "1", n_sentences=6)
