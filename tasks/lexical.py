"""Surface concepts computed from the words themselves: position, case, digits, punctuation, calendar
names, suffixes.

The words are those of a CoNLL-U treebank (EWT by default, any treebank through `files`), read by
the same reader as the UD tasks, so a lexical task shares its sentences, and therefore its
activation cache, with UPOS, XPOS and the morphology tasks. Each label is a deterministic function
of the word's string (and, for position, of its index), so the labels are exact by construction:
they describe the surface form, not its grammar ("May I ..." starts with a calendar name, "nothing"
ends in -ing).

Binary properties label every word with the property's name or OTHER and are run in the concept
form (one-vs-rest, balanced); position and suffix are multi-class.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Callable

from bench.core.types import Task
from bench.errors import NeuronbenchError
from bench.examples import OTHER  # binary properties name the rest as the concept form does
from tasks.templated import position_labels
from tasks.ud import forms, read_treebank

SUFFIXES = ("ly", "ing", "ed", "tion", "less")  # no suffix ends another, so at most one matches
MIN_STEM = 3  # letters before a suffix: "red", "sing", "only" and "unless" are not suffixed
NUMERAL_SEPARATORS = frozenset(".,:/-")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
CALENDAR_NAMES = frozenset(MONTHS + WEEKDAYS)


def is_capitalised(word: str) -> bool:
    """The first character is an uppercase or titlecase letter (Unicode Lu, Lt): "The", "USA"."""
    return bool(word) and unicodedata.category(word[0]) in ("Lu", "Lt")


def is_numeral(word: str) -> bool:
    """Written with digits: at least one decimal digit (Unicode Nd), every other character one of
    . , : / - ("3", "1,000", "3.5", "10:30", "2005-06", "1/2"); "3rd", "$5", "1990s" are not."""
    return (any(unicodedata.category(ch) == "Nd" for ch in word)
            and all(unicodedata.category(ch) == "Nd" or ch in NUMERAL_SEPARATORS for ch in word))


def is_punctuation(word: str) -> bool:
    """Every character is Unicode punctuation (P*): ".", "--", "(", "'s" is not, "$" (a symbol) is not."""
    return all(unicodedata.category(ch).startswith("P") for ch in word)


def is_calendar_name(word: str) -> bool:
    """Exactly an English month or weekday name as written capitalised ("May", "Sunday"); no
    abbreviations, no lowercase forms, so the modal "may" is not one but a sentence-initial "May" is."""
    return word in CALENDAR_NAMES


def suffix_of(word: str) -> str | None:
    """The suffix among SUFFIXES that the lowercased word ends with, if the word is all letters and at
    least MIN_STEM letters precede the suffix; None otherwise."""
    if not word.isalpha():
        return None
    lower = word.lower()
    for suffix in SUFFIXES:
        if lower.endswith(suffix) and len(lower) - len(suffix) >= MIN_STEM:
            return suffix
    return None


BINARY: dict[str, Callable[[str], bool]] = {
    "capitalised": is_capitalised,
    "numeral": is_numeral,
    "punctuation": is_punctuation,
    "calendar": is_calendar_name,
}
PROPERTIES = (*BINARY, "position", "suffix")


def lexical_labels(prop: str, words: list[str]) -> list[str | None]:
    """One sentence's labels for property `prop`; None marks a word that is context only."""
    return _labeller(prop)(words)


def lexical_task(prop: str, name: str, version: str, data_dir: str | None = None,
                 files: dict[str, str | Path | None] | None = None) -> Task:
    """A lexical task on the words of EWT (or of the treebank in `files`); see module docstring."""
    label = _labeller(prop)  # an unknown property fails before any file is read
    treebank, meta = read_treebank(data_dir, files)
    sentences = forms(treebank)
    labels = {split: [label(words) for words in sents] for split, sents in sentences.items()}
    return Task(name=name, version=version, sentences=sentences, labels=labels,
                meta={**meta, "property": prop})


def _labeller(prop: str) -> Callable[[list[str]], list[str | None]]:
    if prop in BINARY:
        test = BINARY[prop]
        return lambda words: [prop if test(word) else OTHER for word in words]
    if prop == "position":
        return position_labels
    if prop == "suffix":
        return lambda words: [suffix_of(word) for word in words]
    raise NeuronbenchError(f"unknown lexical property {prop!r}; valid properties: "
                           f"{', '.join(PROPERTIES)}")
