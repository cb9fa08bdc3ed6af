"""A strict CoNLL-U reader: syntactic words with their labels, and exact file:line errors otherwise.

Strict because a silently misread treebank (a shifted column, a skipped word) would shift every
label after it; failing loudly at the offending line is cheaper than debugging a benchmark number.
"""

from __future__ import annotations

import gc
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from bench.errors import NeuronbenchError

N_COLUMNS = 10
COLUMNS = ("ID", "FORM", "LEMMA", "UPOS", "XPOS", "FEATS", "HEAD", "DEPREL", "DEPS", "MISC")
# Characters no CoNLL-U line holds: a lone \r means old-Mac line ends (the file would read as one line).
FORBIDDEN = {"\r": "a carriage return (\\r) that ends no \\r\\n line: CoNLL-U lines end in \\n",
             "\x00": "a NUL byte: CoNLL-U is text"}


class Token(NamedTuple):
    """One syntactic word; multiword-token lines and empty nodes never become Tokens."""

    id: int
    form: str
    lemma: str
    upos: str
    xpos: str
    feats: dict[str, str]
    head: int | None
    deprel: str


class _Sentence:
    """The words of the sentence being read, plus what is needed to validate the next line."""

    def __init__(self):
        self.tokens: list[Token] = []
        self.range_lines: list[tuple[int, int]] = []  # (lineno, end) per multiword token
        self.head_lines: list[tuple[int, int]] = []  # (lineno, head) per word with a HEAD


class _FeatsParser:
    """Parses and validates FEATS once per distinct string (EWT has a few thousand over 204k words),
    so every word shares the same name and value strings; with the interned tag columns this takes
    parsed EWT train from about 134 MB to 74 MB."""

    def __init__(self, path: Path):
        self.path = path
        self.seen: dict[str, tuple[tuple[str, str], ...]] = {"_": ()}

    def __call__(self, lineno: int, feats: str) -> dict[str, str]:
        items = self.seen.get(feats)
        if items is None:
            items = self.seen[feats] = self._parse(lineno, feats)
        return dict(items)

    def _parse(self, lineno: int, feats: str) -> tuple[tuple[str, str], ...]:
        parsed: dict[str, str] = {}
        for item in feats.split("|"):
            name, has_equals, value = item.partition("=")
            if not (has_equals and name and value):
                raise NeuronbenchError(f"{self.path}:{lineno}: FEATS item {item!r} is not "
                                       "Name=Value")
            if name in parsed:
                raise NeuronbenchError(f"{self.path}:{lineno}: FEATS names {name!r} twice")
            parsed[sys.intern(name)] = sys.intern(value)
        return tuple(parsed.items())


def read_conllu(path: str | Path) -> list[list[Token]]:
    """Parse a CoNLL-U file into one list of syntactic words per sentence.

    Comments and empty nodes are skipped; multiword-token ranges are validated and skipped, since
    the syntactic words they cover carry the labels. Raises NeuronbenchError("{path}:{lineno}: ...").
    """
    path = Path(path)
    lines = _read_lines(path)
    with _gc_paused():
        sentences = _parse(path, lines)
    if not sentences:
        raise NeuronbenchError(f"{path}: no sentences: the file is empty or holds only comments and blank "
                               "lines")
    return sentences


@contextmanager
def _gc_paused():
    """The parse allocates ~1M acyclic objects; without this the cyclic GC rescans the growing heap
    over and over, and parsing EWT train takes about a third longer."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse(path: Path, lines: list[str]) -> list[list[Token]]:
    sentences: list[list[Token]] = []
    sentence = _Sentence()
    parse_feats = _FeatsParser(path)
    for lineno, line in enumerate(lines, start=1):
        if not line:
            if sentence.tokens or sentence.range_lines:
                _finish(path, sentence, sentences)
                sentence = _Sentence()
        elif line[0] != "#":
            _read_line(path, lineno, line, sentence, parse_feats)
    if sentence.tokens or sentence.range_lines:
        _finish(path, sentence, sentences)
    return sentences


def _read_lines(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NeuronbenchError(f"{path}: CoNLL-U file not found") from None
    except OSError as err:
        raise NeuronbenchError(f"{path}: cannot read CoNLL-U file ({err.strerror})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        lineno = data.count(b"\n", 0, err.start) + 1
        raise NeuronbenchError(f"{path}:{lineno}: not valid UTF-8") from None
    # split("\n") rather than splitlines(): FORM and MISC may hold characters splitlines breaks on.
    text = text.replace("\r\n", "\n")
    for char, what in FORBIDDEN.items():
        at = text.find(char)
        if at >= 0:
            lineno = text.count("\n", 0, at) + 1
            raise NeuronbenchError(f"{path}:{lineno}: {what}")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line does not start another one
    return lines


def _read_line(path: Path, lineno: int, line: str, sentence: _Sentence,
               parse_feats: _FeatsParser) -> None:
    columns = line.split("\t")
    if len(columns) != N_COLUMNS:
        raise NeuronbenchError(f"{path}:{lineno}: expected {N_COLUMNS} tab-separated columns, "
                               f"found {len(columns)}")
    if "" in columns:
        raise NeuronbenchError(f"{path}:{lineno}: column {COLUMNS[columns.index('')]} is empty (CoNLL-U "
                               "writes '_' for no value)")
    word_id, form, lemma, upos, xpos, feats, head, deprel = columns[:8]
    expected = len(sentence.tokens) + 1
    if _is_number(word_id):
        if int(word_id) != expected:
            raise NeuronbenchError(f"{path}:{lineno}: word ID {word_id} out of sequence: expected "
                                   f"{expected} (IDs run 1, 2, 3, ... within a sentence)")
        if head == "_":
            head_id = None
        elif _is_number(head):
            head_id = int(head)
            sentence.head_lines.append((lineno, head_id))
        else:
            raise NeuronbenchError(f"{path}:{lineno}: HEAD {head!r} is neither a word ID nor '_'")
        # Interned: the tag columns have a few dozen values, repeated over every word.
        sentence.tokens.append(Token(expected, form, lemma, sys.intern(upos), sys.intern(xpos),
                                     parse_feats(lineno, feats), head_id, sys.intern(deprel)))
    elif "-" in word_id:
        _check_range(path, lineno, word_id, expected, sentence)
    elif "." in word_id:
        _check_empty_node(path, lineno, word_id, expected)
    else:
        raise NeuronbenchError(f"{path}:{lineno}: ID {word_id!r} is not an integer, a range "
                               "like 2-3 or an empty node like 8.1")


def _is_number(text: str) -> bool:
    """ASCII digits only: str.isdecimal() also takes e.g. Arabic-Indic digits, which CoNLL-U IDs never are."""
    return text.isascii() and text.isdecimal()


def _check_range(path: Path, lineno: int, word_id: str, expected: int, sentence: _Sentence) -> None:
    start, _, end = word_id.partition("-")
    if not (_is_number(start) and _is_number(end)):
        raise NeuronbenchError(f"{path}:{lineno}: multiword token range {word_id!r} is not two "
                               "word IDs like 2-3")
    if int(start) >= int(end):
        raise NeuronbenchError(f"{path}:{lineno}: multiword token range {word_id} must span at "
                               "least two words (start < end)")
    previous_end = sentence.range_lines[-1][1] if sentence.range_lines else 0
    if int(start) != expected or int(start) <= previous_end:
        raise NeuronbenchError(f"{path}:{lineno}: multiword token range {word_id} must start at "
                               f"the next word, {expected}, and not overlap another range")
    sentence.range_lines.append((lineno, int(end)))


def _check_empty_node(path: Path, lineno: int, word_id: str, expected: int) -> None:
    major, _, minor = word_id.partition(".")
    if not (_is_number(major) and _is_number(minor)) or int(major) != expected - 1:
        raise NeuronbenchError(f"{path}:{lineno}: empty node ID {word_id!r} must be "
                               f"{expected - 1}.N, after word {expected - 1}")


def _finish(path: Path, sentence: _Sentence, sentences: list[list[Token]]) -> None:
    """Check what needs the whole sentence (ranges and heads within it), then keep its words."""
    n_words = len(sentence.tokens)
    for lineno, end in sentence.range_lines:
        if end > n_words:
            raise NeuronbenchError(f"{path}:{lineno}: multiword token range ends at word {end}, "
                                   f"but the sentence has {n_words} words")
    for lineno, head in sentence.head_lines:
        if head > n_words:
            raise NeuronbenchError(f"{path}:{lineno}: HEAD {head} points past the last word of "
                                   f"the sentence ({n_words})")
    sentences.append(sentence.tokens)
