"""The embedded templated task set: sentences from a small grammar, labels exact by construction.

It exists so the benchmark runs on a fresh machine with no data at all. A seeded grammar writes
the corpus, and every word is emitted together with its part of speech, number and tense, so no
tagger (and no tagger error) stands between the sentences and the labels. The grammar is made to
need context: nouns whose plural equals their singular (sheep, fish, deer), verbs whose past
equals their present (put, cut, read, hit, let), words with two parts of speech (that, her, saw,
watch), subject-verb agreement across prepositional phrases and relative clauses, and bare
infinitives that are verbs without tense. The same grammar writes the minimal pairs of the
behavioural scorer (`minimal_pairs`): prompts whose next token is an agreement or tense contrast.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence, TypeVar

import numpy as np

from bench.core.pairs import Crossed, CrossedPairs, MinimalPairs, Pair
from bench.core.types import SPLITS, Task
from bench.errors import NeuronbenchError
from bench.seeds import cell_rng

FEATURES = ("word_class", "number", "tense", "position")
SENTENCE_LENGTHS = range(5, 16)  # words per sentence, punctuation included
SPLIT_PERCENT = {"train": 70, "dev": 15}  # test takes the rest, so no sentence is lost to rounding
POSITION_BINS = ("begin", "middle", "end")


def position_labels(words: Sequence) -> list[str]:
    """Word i (from 0) of an n-word sentence, punctuation included, is in bin (3 * i) // n of
    begin/middle/end: thirds of the sentence, decided in integer arithmetic (templated_position and
    lex_position share it)."""
    n = len(words)
    return [POSITION_BINS[3 * i // n] for i in range(n)]


class Noun(NamedTuple):
    singular: str
    plural: str


class Verb(NamedTuple):
    base: str
    third_singular: str
    past: str
    needs_place: bool = False  # "put" wants a destination: "put the key on the table"


class Word(NamedTuple):
    """One generated word with every label the grammar knows for it."""

    form: str
    word_class: str
    number: str | None = None  # Sing/Plur, nouns only
    tense: str | None = None  # Past/Pres, finite verbs only


def _nouns(spec: str) -> tuple[Noun, ...]:
    """Regular nouns as 'dog' (plural +s), irregular ones as 'mouse/mice'."""
    pairs = (item.split("/") if "/" in item else (item, item + "s") for item in spec.split())
    return tuple(Noun(singular, plural) for singular, plural in pairs)


def _verbs(spec: str) -> tuple[Verb, ...]:
    """Verbs as 'base/third_singular/past'."""
    return tuple(Verb(*item.split("/")) for item in spec.split())


# Animate nouns can be subjects of anything; inanimate ones only objects and copular subjects,
# so the corpus avoids "the table laughs" without needing a semantic model.
ANIMATE_NOUNS = _nouns(
    "dog cat bird horse cow fox/foxes wolf/wolves mouse/mice goose/geese child/children man/men "
    "woman/women boy girl teacher farmer doctor baker student king queen friend neighbor sailor "
    "painter rabbit duck owl artist uncle actor elephant sheep/sheep fish/fish deer/deer"
)
INANIMATE_NOUNS = _nouns(
    "book letter song house river garden table door window box/boxes glass/glasses knife/knives "
    "leaf/leaves apple egg rope stone tree car boat road city/cities story/stories picture cake "
    "key bottle wall field hill bridge watch/watches saw hat shoe chair bag coin map ship lamp "
    "clock umbrella island"
)
INTRANSITIVE_VERBS = _verbs(
    "sleep/sleeps/slept run/runs/ran laugh/laughs/laughed smile/smiles/smiled sing/sings/sang "
    "dance/dances/danced swim/swims/swam wait/waits/waited arrive/arrives/arrived fall/falls/fell "
    "sit/sits/sat cry/cries/cried work/works/worked travel/travels/traveled rest/rests/rested "
    "jump/jumps/jumped shout/shouts/shouted hide/hides/hid fly/flies/flew play/plays/played"
)
TRANSITIVE_VERBS = _verbs(
    "eat/eats/ate find/finds/found take/takes/took hold/holds/held carry/carries/carried "
    "push/pushes/pushed pull/pulls/pulled open/opens/opened wash/washes/washed build/builds/built "
    "buy/buys/bought sell/sells/sold bring/brings/brought throw/throws/threw catch/catches/caught "
    "write/writes/wrote draw/draws/drew like/likes/liked follow/follows/followed "
    "visit/visits/visited chase/chases/chased break/breaks/broke keep/keeps/kept lose/loses/lost "
    "have/has/had cut/cuts/cut read/reads/read hit/hits/hit shut/shuts/shut hurt/hurts/hurt"
) + (Verb("put", "puts", "put", needs_place=True),
     Verb("place", "places", "placed", needs_place=True))
OBJECT_ONLY_VERBS = tuple(verb for verb in TRANSITIVE_VERBS if not verb.needs_place)
# Verbs taking an object and a bare infinitive: "she let the dogs eat", where "eat" has no tense.
COMPLEMENT_VERBS = _verbs(
    "let/lets/let make/makes/made help/helps/helped watch/watches/watched see/sees/saw "
    "hear/hears/heard"
)
ADJECTIVES = tuple(
    "big small old young happy sad red green blue tall short quiet brave clever angry tired hungry "
    "kind strange heavy bright dark warm cold new little gentle lazy busy empty famous ugly".split()
)
MANNER_ADVERBS = tuple(
    "quickly slowly quietly loudly happily sadly carefully suddenly gently easily badly".split()
)
FREQUENCY_ADVERBS = tuple("often always never sometimes usually rarely".split())
# Sentence-initial time adverbs, drawn to suit the tense: a context cue for the ambiguous verbs.
TIME_ADVERBS = {"Past": ("yesterday", "today", "then"), "Pres": ("nowadays", "today", "now")}
PREPOSITIONS = tuple("in on under near behind with from beside without across through at".split())
PLACE_PREPOSITIONS = tuple("in on under near behind beside".split())
SINGULAR_DETERMINERS = ("a", "this", "that", "every")  # "a" becomes "an" before a vowel
PLURAL_DETERMINERS = ("some", "these", "those", "many")
NEUTRAL_DETERMINERS = ("the", "my", "your", "his", "her", "our", "their")
# Agreement classes: which present and copula form a subject takes.
FIRST_SINGULAR, THIRD_SINGULAR, OTHER = "1sg", "3sg", "other"
SUBJECT_PRONOUNS = {"I": FIRST_SINGULAR, "he": THIRD_SINGULAR, "she": THIRD_SINGULAR,
                    "it": THIRD_SINGULAR, "you": OTHER, "we": OTHER, "they": OTHER}
SUBJECT_PRONOUN_FORMS = tuple(SUBJECT_PRONOUNS)
OBJECT_PRONOUNS = ("me", "you", "him", "her", "it", "us", "them")
COPULA = {("Pres", FIRST_SINGULAR): "am", ("Pres", THIRD_SINGULAR): "is", ("Pres", OTHER): "are",
          ("Past", FIRST_SINGULAR): "was", ("Past", THIRD_SINGULAR): "was", ("Past", OTHER): "were"}
TENSES = ("Past", "Pres")
Option = TypeVar("Option")


def templated_task(feature: str, name: str, version: str, n_sentences: int = 2000,
                   seed: int = 0) -> Task:
    """One feature of the templated corpus; every feature sees the same sentences for a seed.

    Features and their labels (None marks context words):
      word_class  DET NOUN VERB ADJ ADV ADP PRON CONJ PUNCT on every word (the copula is a VERB)
      number      Sing/Plur on nouns
      tense       Past/Pres on finite verbs; bare infinitives ("let them *eat*") get None
      position    begin/middle/end on every word: word i of an n-word sentence (punctuation counts)
                  is in third (3 * i) // n, so integer arithmetic decides the borders exactly
    """
    if feature not in FEATURES:
        raise NeuronbenchError(f"unknown templated feature {feature!r}; valid features: "
                               f"{', '.join(FEATURES)}")
    split_sentences = _split_corpus(n_sentences, seed)
    return Task(
        name=name,
        version=version,
        sentences={split: [[word.form for word in sent] for sent in sents]
                   for split, sents in split_sentences.items()},
        labels={split: [_labels(sent, feature) for sent in sents]
                for split, sents in split_sentences.items()},
        meta={"source": "templated", "n_sentences": n_sentences, "seed": seed,
              **({"minimal_pairs": pair_declaration(feature, seed)} if feature in PAIR_ATTRIBUTES else {})},
    )


def _split_corpus(n_sentences: int, seed: int) -> dict[str, list[list[Word]]]:
    """Write the corpus and shuffle it into 70/15/15 splits, from two independent seeded streams."""
    n_train = n_sentences * SPLIT_PERCENT["train"] // 100
    n_dev = n_sentences * SPLIT_PERCENT["dev"] // 100
    if n_dev < 1:
        raise NeuronbenchError(f"n_sentences={n_sentences} leaves the dev split empty; "
                               "use at least 7 sentences")
    grammar_rng, split_rng = (np.random.default_rng(stream)
                              for stream in np.random.SeedSequence(seed).spawn(2))
    sentences = [_sentence(grammar_rng) for _ in range(n_sentences)]
    order = split_rng.permutation(n_sentences).tolist()
    bounds = {"train": (0, n_train), "dev": (n_train, n_train + n_dev),
              "test": (n_train + n_dev, n_sentences)}
    return {split: [sentences[i] for i in order[slice(*bounds[split])]] for split in SPLITS}


def _labels(sentence: list[Word], feature: str) -> list[str | None]:
    if feature == "position":
        return position_labels(sentence)
    return [getattr(word, feature) for word in sentence]


def _pick(rng: np.random.Generator, options: Sequence[Option]) -> Option:
    """A uniform choice; a scalar float draw is several times faster than rng.integers."""
    return options[int(rng.random() * len(options))]


def _chance(rng: np.random.Generator, probability: float) -> bool:
    return rng.random() < probability


def _sentence(rng: np.random.Generator) -> list[Word]:
    """Draw until a sentence has 5-15 words: redrawing, unlike trimming, never breaks a template."""
    while True:
        words = _sentence_draft(rng)
        if len(words) in SENTENCE_LENGTHS:
            return words


def _sentence_draft(rng: np.random.Generator) -> list[Word]:
    tense = _pick(rng, TENSES)
    words = []
    if _chance(rng, 0.2):
        words.append(Word(_pick(rng, TIME_ADVERBS[tense]), "ADV"))
    words += _clause(rng, tense)
    if _chance(rng, 0.35):
        if _chance(rng, 0.5):
            words.append(Word(",", "PUNCT"))
        words.append(Word(_pick(rng, ("and", "but", "or")), "CONJ"))
        words += _clause(rng, tense)
    words.append(Word("." if _chance(rng, 0.85) else "!", "PUNCT"))
    return words


def _clause(rng: np.random.Generator, tense: str) -> list[Word]:
    """Subject plus predicate; inanimate subjects only get the copula, which suits them."""
    subject, agreement, animate = _subject(rng)
    if not animate:
        return subject + _copular_predicate(rng, tense, agreement)
    roll = rng.random()
    if roll < 0.15:
        predicate = _copular_predicate(rng, tense, agreement)
    elif roll < 0.3:
        predicate = _complement_predicate(rng, tense, agreement)
    elif roll < 0.5:
        predicate = (_verb_phrase(rng, tense, agreement) + [Word(_pick(rng, ("and", "or")), "CONJ")]
                     + _verb_phrase(rng, tense, agreement))
    else:
        predicate = _verb_phrase(rng, tense, agreement)
    return subject + predicate


def _subject(rng: np.random.Generator) -> tuple[list[Word], str, bool]:
    """Subject words, its agreement class and whether it is animate."""
    roll = rng.random()
    if roll < 0.3:
        pronoun = _pick(rng, SUBJECT_PRONOUN_FORMS)
        return [Word(pronoun, "PRON")], SUBJECT_PRONOUNS[pronoun], True
    if roll < 0.45:
        first, _ = _noun_phrase(rng, ANIMATE_NOUNS)
        second, _ = _noun_phrase(rng, ANIMATE_NOUNS)
        return first + [Word("and", "CONJ")] + second, OTHER, True
    animate = roll < 0.88
    head, plural = _noun_phrase(rng, ANIMATE_NOUNS if animate else INANIMATE_NOUNS)
    agreement = OTHER if plural else THIRD_SINGULAR
    roll = rng.random()
    if roll < 0.3:
        head += _prepositional_phrase(rng, PREPOSITIONS)
    elif roll < 0.45 and animate:
        head += _relative_clause(rng, agreement)
    return head, agreement, animate


def _noun_phrase(rng: np.random.Generator, nouns: tuple[Noun, ...]) -> tuple[list[Word], bool]:
    """Determiner, optional adjective and noun, agreeing in number; returns (words, is_plural)."""
    noun = _pick(rng, nouns)
    plural = _chance(rng, 0.5)
    number, form = ("Plur", noun.plural) if plural else ("Sing", noun.singular)
    roll = rng.random()
    if roll < 0.35:
        determiner = _pick(rng, PLURAL_DETERMINERS if plural else SINGULAR_DETERMINERS)
    else:
        determiner = _pick(rng, NEUTRAL_DETERMINERS)
    modifiers = [Word(_pick(rng, ADJECTIVES), "ADJ")] if _chance(rng, 0.3) else []
    following = modifiers[0].form if modifiers else form
    if determiner == "a" and following[0] in "aeiou":
        determiner = "an"
    return [Word(determiner, "DET"), *modifiers, Word(form, "NOUN", number=number)], plural


def _object(rng: np.random.Generator, nouns: tuple[Noun, ...] | None = None) -> list[Word]:
    """A pronoun or noun phrase; `nouns` narrows the noun phrase, else either animacy will do."""
    if _chance(rng, 0.2):
        return [Word(_pick(rng, OBJECT_PRONOUNS), "PRON")]
    return _noun_phrase(rng, nouns or _pick(rng, (ANIMATE_NOUNS, INANIMATE_NOUNS)))[0]


def _prepositional_phrase(rng: np.random.Generator, prepositions: tuple[str, ...]) -> list[Word]:
    place, _ = _noun_phrase(rng, INANIMATE_NOUNS)
    return [Word(_pick(rng, prepositions), "ADP")] + place


def _relative_clause(rng: np.random.Generator, agreement: str) -> list[Word]:
    """A subject relative whose verb agrees with the head noun, not with the object after it."""
    tense = _pick(rng, TENSES)
    words = [Word(_pick(rng, ("that", "who")), "PRON")]
    if _chance(rng, 0.5):
        return words + [_finite_verb(_pick(rng, INTRANSITIVE_VERBS), tense, agreement)]
    verb = _pick(rng, OBJECT_ONLY_VERBS)
    return words + [_finite_verb(verb, tense, agreement)] + _object(rng)


def _verb_phrase(rng: np.random.Generator, tense: str, agreement: str) -> list[Word]:
    """An intransitive or transitive predicate with optional adverbs and place."""
    words = [Word(_pick(rng, FREQUENCY_ADVERBS), "ADV")] if _chance(rng, 0.2) else []
    if _chance(rng, 0.4):
        words.append(_finite_verb(_pick(rng, INTRANSITIVE_VERBS), tense, agreement))
        if _chance(rng, 0.6):
            words += _prepositional_phrase(rng, PREPOSITIONS)
    else:
        verb = _pick(rng, TRANSITIVE_VERBS)
        words += [_finite_verb(verb, tense, agreement)] + _object(rng)
        if verb.needs_place or _chance(rng, 0.3):
            words += _prepositional_phrase(rng, PLACE_PREPOSITIONS)
    if _chance(rng, 0.3):
        words.append(Word(_pick(rng, MANNER_ADVERBS), "ADV"))
    return words


def _copular_predicate(rng: np.random.Generator, tense: str, agreement: str) -> list[Word]:
    words = [Word(COPULA[tense, agreement], "VERB", tense=tense),
             Word(_pick(rng, ADJECTIVES), "ADJ")]
    if _chance(rng, 0.4):
        words += [Word(_pick(rng, ("and", "but")), "CONJ"), Word(_pick(rng, ADJECTIVES), "ADJ")]
    elif _chance(rng, 0.5):
        words += _prepositional_phrase(rng, PLACE_PREPOSITIONS)
    return words


def _complement_predicate(rng: np.random.Generator, tense: str, agreement: str) -> list[Word]:
    """'let the dog eat the cake': the second verb is a bare infinitive, a VERB with no tense."""
    words = [_finite_verb(_pick(rng, COMPLEMENT_VERBS), tense, agreement),
             *_object(rng, ANIMATE_NOUNS)]  # the one who does the second verb
    if _chance(rng, 0.5):
        return words + [Word(_pick(rng, INTRANSITIVE_VERBS).base, "VERB")]
    verb = _pick(rng, TRANSITIVE_VERBS)
    words += [Word(verb.base, "VERB"), *_object(rng)]
    if verb.needs_place:
        words += _prepositional_phrase(rng, PLACE_PREPOSITIONS)
    return words


def _finite_verb(verb: Verb, tense: str, agreement: str) -> Word:
    if tense == "Past":
        form = verb.past
    else:
        form = verb.third_singular if agreement == THIRD_SINGULAR else verb.base
    return Word(form, "VERB", tense=tense)


# Minimal pairs per attribute, and the unrelated attribute whose pairs give the off-target readout.
PAIR_ATTRIBUTES = {"number": "tense", "tense": "number"}
N_PAIRS = 200  # per split, before the behavioural scorer keeps those the model gets right
# Test pairs of a task's own concept: smollm2_135m gets both members of only about 35% of the number pairs right
# (it reads a plural subject past an attractor of the other number as singular: 91% of singular members right, 44%
# of plural ones), so 320 test pairs leave about 110 to read (bench.pair_readout.MAX_READ); the first N_PAIRS of
# them are the 200-pair test split's, and the train split does not change.
N_TEST_PAIRS = 320


def pair_declaration(attribute: str, seed: int) -> dict:
    """What a task's meta says about its pairs: the loader configs of its concept's, of the off-target and of the
    crossed (number x tense) pairs, which the behavioural scorers instantiate (bench reads them without importing
    tasks/)."""
    def loader(name: str, **more) -> dict:
        return {"_target_": "tasks.templated.minimal_pairs", "attribute": name, "seed": seed, **more}

    return {"concept": loader(attribute, n_test=N_TEST_PAIRS), "off_target": loader(PAIR_ATTRIBUTES[attribute]),
            "crossed": {"_target_": "tasks.templated.crossed_pairs", "seed": seed}}


def minimal_pairs(attribute: str, n_pairs: int = N_PAIRS, seed: int = 0, n_test: int | None = None) -> MinimalPairs:
    """`n_pairs` train and `n_test` (default `n_pairs`) test pairs, no prompt twice, from the templated grammar
    (reference addendum A.1). Pairs are drawn in one seeded stream, train first, so a larger `n_test` only appends
    test pairs: the train split and the first `n_pairs` test pairs stay those of `n_test = n_pairs`.

      number  "the dog near the boxes" -> is / "the dogs near the boxes" -> are: the subject noun (the
              attribute word) changes number; the attractor, a prepositional phrase or a past-tense
              relative clause with a noun of the other number, is kept; answers is/are or was/were
      tense   "the dog slept and the cat" -> was / "the dog sleeps and the cat" -> is: the first verb
              (the attribute word) changes tense; the second subject's copula must follow it
    Nouns whose plural is their singular (sheep) and verbs whose past is their present (cut) are left out,
    so the attribute word always differs between the members.
    """
    if attribute not in PAIR_ATTRIBUTES:
        raise NeuronbenchError(f"no minimal pairs for attribute {attribute!r}; valid: {', '.join(PAIR_ATTRIBUTES)}")
    draw = {"number": _number_pair, "tense": _tense_pair}[attribute]
    n_test = n_pairs if n_test is None else n_test
    if n_pairs < 1 or n_test < 1:
        raise NeuronbenchError(f"minimal pairs of {attribute!r}: n_pairs={n_pairs} and n_test={n_test} must be >= 1")
    rng = cell_rng(seed, "minimal_pairs", attribute)
    pairs: dict[tuple[str, ...], Pair] = {}
    while len(pairs) < n_pairs + n_test:
        pair = draw(rng)
        pairs.setdefault(pair.base, pair)
    drawn = list(pairs.values())
    return MinimalPairs(name=f"templated_{attribute}_pairs", attribute=attribute,
                        pairs={"train": tuple(drawn[:n_pairs]), "test": tuple(drawn[n_pairs:])})


def _changing_nouns(nouns: tuple[Noun, ...]) -> tuple[Noun, ...]:
    return tuple(noun for noun in nouns if noun.plural != noun.singular)


def _plain_noun_phrases(rng: np.random.Generator, noun: Noun) -> dict[bool, list[str]]:
    """The same determiner (one that carries no number) and optional adjective before the singular and
    before the plural noun, keyed by plural: only the noun says the number."""
    head = [_pick(rng, NEUTRAL_DETERMINERS)] + ([_pick(rng, ADJECTIVES)] if _chance(rng, 0.3) else [])
    return {False: head + [noun.singular], True: head + [noun.plural]}


def _number_pair(rng: np.random.Generator) -> Pair:
    animate = _chance(rng, 0.5)
    subject = _plain_noun_phrases(rng, _pick(rng, _changing_nouns(ANIMATE_NOUNS if animate else INANIMATE_NOUNS)))
    plural = _chance(rng, 0.5)  # the base's number; the attractor takes the other one
    attractor = _plain_noun_phrases(rng, _pick(rng, _changing_nouns(INANIMATE_NOUNS)))[not plural]
    if animate and _chance(rng, 0.5):  # past tense, so the relative's own verb shows no number
        attractor = [_pick(rng, ("that", "who")), _pick(rng, OBJECT_ONLY_VERBS).past, *attractor]
    else:
        attractor = [_pick(rng, PREPOSITIONS), *attractor]
    tense = _pick(rng, TENSES)
    where = len(subject[plural]) - 1
    return Pair(tuple(subject[plural] + attractor), tuple(subject[not plural] + attractor), (where, where),
                (COPULA[tense, OTHER if plural else THIRD_SINGULAR], COPULA[tense, THIRD_SINGULAR if plural else OTHER]))


def _clause_frame(rng: np.random.Generator) -> tuple[list[str], dict[str, str], list[str], bool, dict[bool, list[str]]]:
    """'the dog | slept/sleeps | in the box and | the cat/the cats': the first subject, its verb in both tenses,
    the words between, the second subject's drawn number and that subject in both numbers (keyed by plural)."""
    first_plural = _chance(rng, 0.5)
    first = _plain_noun_phrases(rng, _pick(rng, _changing_nouns(ANIMATE_NOUNS)))[first_plural]
    verb = _pick(rng, INTRANSITIVE_VERBS)  # every one has a past unlike its present
    forms = {"Past": verb.past, "Pres": verb.base if first_plural else verb.third_singular}
    rest = _prepositional_phrase(rng, PLACE_PREPOSITIONS) if _chance(rng, 0.4) else []
    second_plural = _chance(rng, 0.5)
    second = _plain_noun_phrases(rng, _pick(rng, _changing_nouns(ANIMATE_NOUNS)))
    return first, forms, [word.form for word in rest] + ["and"], second_plural, second


def _tense_pair(rng: np.random.Generator) -> Pair:
    first, forms, between, second_plural, second = _clause_frame(rng)
    tense, other = ("Past", "Pres") if _chance(rng, 0.5) else ("Pres", "Past")
    tail = between + second[second_plural]
    agreement = OTHER if second_plural else THIRD_SINGULAR
    return Pair(tuple(first + [forms[tense]] + tail), tuple(first + [forms[other]] + tail), (len(first),) * 2,
                (COPULA[tense, agreement], COPULA[other, agreement]))


CROSSED_ATTRIBUTES = ("number", "tense")  # of the crossed pairs, in the order of their values


def crossed_pairs(n_pairs: int = N_PAIRS, seed: int = 0) -> CrossedPairs:
    """`n_pairs` test pairs for RAVEL's cause and isolation (reference addendum B.2): the tense pairs' frame
    "the dog slept and the cat" -> was, whose source flips both the first verb's tense and the second subject's
    number ("the dog sleeps and the cats" -> are), so the copula encodes both attributes of each prompt."""
    rng = cell_rng(seed, "crossed_pairs")
    pairs: dict[tuple[str, ...], Crossed] = {}
    while len(pairs) < n_pairs:
        first, forms, between, plural, second = _clause_frame(rng)
        tense, other = ("Past", "Pres") if _chance(rng, 0.5) else ("Pres", "Past")
        base = tuple(first + [forms[tense]] + between + second[plural])
        source = tuple(first + [forms[other]] + between + second[not plural])
        number = {True: "Plur", False: "Sing"}
        pairs.setdefault(base, Crossed(base, source, (len(base) - 1, len(first)),
                                       ((number[plural], tense), (number[not plural], other))))
    answers = tuple(((number, tense), COPULA[tense, OTHER if number == "Plur" else THIRD_SINGULAR])
                    for number in ("Sing", "Plur") for tense in TENSES)
    return CrossedPairs(name="templated_crossed_pairs", attributes=CROSSED_ATTRIBUTES, answers=answers,
                        pairs=tuple(pairs.values()))
