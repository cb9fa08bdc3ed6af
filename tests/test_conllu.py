"""The CoNLL-U reader: edge cases from a hand-written treebank, file:line errors for bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.errors import NeuronbenchError
from tasks.conllu import Token, read_conllu

# Written by hand: a multiword token, an empty node (8.1) with an enhanced graph, an empty XPOS and
# head, and no blank line after the last sentence.
EDGE_CASES = """\
# newdoc id = fixture
# sent_id = 1
# text = I don't know.
1	I	I	PRON	PRP	Case=Nom|Number=Sing|Person=1|PronType=Prs	4	nsubj	4:nsubj	_
2-3	don't	_	_	_	_	_	_	_	_
2	do	do	AUX	VBP	Mood=Ind|Number=Sing|Person=1|Tense=Pres|VerbForm=Fin	4	aux	4:aux	_
3	n't	not	PART	RB	Polarity=Neg	4	advmod	4:advmod	_
4	know	know	VERB	VB	VerbForm=Inf	0	root	0:root	SpaceAfter=No
5	.	.	PUNCT	.	_	4	punct	4:punct	_

# sent_id = 2
# text = I ate an apple at noon and Kim a pear.
1	I	I	PRON	PRP	Case=Nom|Number=Sing|Person=1|PronType=Prs	2	nsubj	2:nsubj	_
2	ate	eat	VERB	VBD	Mood=Ind|Tense=Past|VerbForm=Fin	0	root	0:root	_
3	an	a	DET	DT	Definite=Ind|PronType=Art	4	det	4:det	_
4	apple	apple	NOUN	NN	Number=Sing	2	obj	2:obj	_
5	at	at	ADP	IN	_	6	case	6:case	_
6	noon	noon	NOUN	NN	Number=Sing	2	obl	2:obl:at	_
7	and	and	CCONJ	CC	_	8	cc	8.1:cc	_
8	Kim	Kim	PROPN	NNP	Number=Sing	2	conj	8.1:nsubj	_
8.1	ate	eat	VERB	VBD	Mood=Ind|Tense=Past|VerbForm=Fin	_	_	2:conj:and	CopyOf=2
9	a	a	DET	DT	Definite=Ind|PronType=Art	10	det	10:det	_
10	pear	pear	NOUN	NN	Number=Sing	8	orphan	8.1:obj	SpaceAfter=No
11	.	.	PUNCT	.	_	2	punct	2:punct	_

# sent_id = 3
# text = Hello!
1	Hello	hello	INTJ	_	_	_	_	_	SpaceAfter=No
2	!	!	PUNCT	.	_	1	punct	1:punct	_
"""
WORD = "1\tHaus\tHaus\tNOUN\tNN\tNumber=Sing\t0\troot\t_\t_"


def word_line(word_id="1", form="w", feats="_", head="0", deprel="dep") -> str:
    return "\t".join([word_id, form, form, "X", "XX", feats, head, deprel, "_", "_"])


def write(tmp_path: Path, lines: list[str], name: str = "bad.conllu") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_edge_cases(tmp_path):
    path = tmp_path / "edge_cases.conllu"
    path.write_text(EDGE_CASES, encoding="utf-8")
    sentences = read_conllu(path)

    # Comments skipped, the last sentence counts without a trailing blank line.
    assert [len(sentence) for sentence in sentences] == [5, 11, 2]
    # The multiword token "don't" is skipped; its syntactic words carry the labels.
    first = sentences[0]
    assert [token.form for token in first] == ["I", "do", "n't", "know", "."]
    assert [token.id for token in first] == [1, 2, 3, 4, 5]
    assert first[1] == Token(2, "do", "do", "AUX", "VBP",
                             {"Mood": "Ind", "Number": "Sing", "Person": "1", "Tense": "Pres",
                              "VerbForm": "Fin"}, 4, "aux")
    assert first[2].feats == {"Polarity": "Neg"}
    assert first[4].feats == {}  # "_" means no features
    # The empty node 8.1 is skipped and word 9 follows word 8.
    second = sentences[1]
    assert [token.form for token in second[7:10]] == ["Kim", "a", "pear"]
    assert [token.id for token in second] == list(range(1, 12))
    assert second[9].deprel == "orphan"
    # Underspecified columns stay "_", a HEAD of "_" becomes None.
    hello = sentences[2][0]
    assert (hello.upos, hello.xpos, hello.head, hello.deprel) == ("INTJ", "_", None, "_")
    assert sentences[2][1].head == 1


def test_tokens_do_not_share_feats_dicts(tmp_path):
    lines = [word_line("1", feats="Number=Sing"), word_line("2", feats="Number=Sing")]
    path = write(tmp_path, lines)
    first, second = read_conllu(path)[0]
    first.feats["Number"] = "Plur"
    assert second.feats == {"Number": "Sing"}


@pytest.mark.parametrize("ending", ["\n\n", "\n", "", "\n\n\n"])
def test_file_endings(tmp_path, ending):
    path = tmp_path / "end.conllu"
    path.write_text(WORD + "\n\n" + WORD + ending, encoding="utf-8")
    assert len(read_conllu(path)) == 2


def test_crlf_and_bom_are_read_like_plain_files(tmp_path):
    path = tmp_path / "windows.conllu"
    path.write_bytes(("\ufeff# c\r\n" + WORD + "\r\n\r\n" + WORD + "\r\n").encode("utf-8"))
    sentences = read_conllu(path)
    assert len(sentences) == 2
    assert sentences[0][0] == Token(1, "Haus", "Haus", "NOUN", "NN", {"Number": "Sing"}, 0, "root")


def test_form_with_line_separator_characters_is_one_word(tmp_path):
    path = write(tmp_path, [word_line("1", form="a\u2028b"), word_line("2", form="c\x0bd")])
    assert [token.form for token in read_conllu(path)[0]] == ["a\u2028b", "c\x0bd"]


def test_layered_feature_names(tmp_path):
    path = write(tmp_path, [word_line(feats="Number=Sing|Number[psor]=Plur|Poss=Yes")])
    feats = read_conllu(path)[0][0].feats
    assert feats == {"Number": "Sing", "Number[psor]": "Plur", "Poss": "Yes"}


def multiword(word_range: str) -> str:
    return word_range + "\tab" + "\t_" * 8


def empty_node(node_id: str) -> str:
    return node_id + "\tw\tw\tX" + "\t_" * 6


# name: (lines, line number of the error, what the message says)
MALFORMED = {
    "nine columns": (["# c", word_line(), "1\tw\tw\tX\tXX\t_\t0\tdep\t_"], 3,
                     "expected 10 tab-separated columns, found 9"),
    "spaces not tabs": ([word_line().replace("\t", " ")], 1,
                        "expected 10 tab-separated columns, found 1"),
    "non-integer ID": ([word_line(), word_line("x")], 2, "ID 'x' is not an integer"),
    "ID skips a word": ([word_line("1"), word_line("3")], 2, "word ID 3 out of sequence: expected 2"),
    "first ID not 1": (["# c", word_line("2")], 2, "word ID 2 out of sequence: expected 1"),
    "IDs go on past a blank line": ([word_line("1"), "", word_line("2")], 3,
                                    "word ID 2 out of sequence: expected 1"),
    "feature without =": ([word_line(), word_line("2", feats="Case=Nom|Number")], 2,
                          "FEATS item 'Number' is not Name=Value"),
    "feature without value": ([word_line(feats="Number=")], 1, "FEATS item 'Number=' is not"),
    "feature without name": ([word_line(feats="=Sing")], 1, "FEATS item '=Sing' is not"),
    "empty FEATS item": ([word_line(feats="Case=Nom||Number=Sing")], 1, "FEATS item '' is not"),
    "feature named twice": ([word_line(feats="Number=Sing|Number=Plur")], 1,
                            "FEATS names 'Number' twice"),
    "HEAD not an integer": ([word_line(), word_line("2", head="one")], 2,
                            "HEAD 'one' is neither a word ID nor '_'"),
    "negative HEAD": ([word_line(head="-1")], 1, "HEAD '-1' is neither"),
    "HEAD past the sentence": ([word_line("1", head="3"), word_line("2", head="1"), ""], 1,
                               "HEAD 3 points past the last word of the sentence (2)"),
    "range not integers": ([word_line(), multiword("2-x")], 2, "range '2-x' is not two word IDs"),
    "range backwards": ([multiword("2-1")], 1, "range 2-1 must span at least two words"),
    "range of one word": ([multiword("1-1")], 1, "range 1-1 must span at least two words"),
    "range not at next word": ([word_line(), multiword("3-4")], 2,
                               "range 3-4 must start at the next word, 2"),
    "overlapping ranges": ([multiword("1-3"), word_line("1"), multiword("2-3")], 3,
                           "range 2-3 must start at the next word, 2, and not overlap"),
    "range past the sentence": ([word_line("1"), multiword("2-3"), word_line("2"), ""], 2,
                                "range ends at word 3, but the sentence has 2 words"),
    "range at end of file": ([word_line("1"), multiword("2-3")], 2,
                             "range ends at word 3, but the sentence has 1 words"),
    "empty node not a decimal": ([word_line(), empty_node("1.x")], 2,
                                 "empty node ID '1.x' must be 1.N"),
    "NUL byte in a word": ([word_line(), word_line("2", form="a\x00b")], 2, "a NUL byte: CoNLL-U is text"),
    "empty FORM": ([word_line(form="")], 1, "column FORM is empty (CoNLL-U writes '_' for no value)"),
    "empty UPOS": (["1\tw\tw\t\tXX\t_\t0\tdep\t_\t_"], 1, "column UPOS is empty"),
    "ID in Arabic-Indic digits": ([word_line("\u0661")], 1, "ID '\u0661' is not an integer"),
    "HEAD in fullwidth digits": ([word_line(head="\uff10")], 1, "HEAD '\uff10' is neither a word ID"),
    "old-Mac line ends": (["# c", word_line() + "\r" + word_line("2")], 2,
                          "a carriage return (\\r) that ends no \\r\\n line"),
    "empty node out of place": ([word_line("1"), word_line("2"), empty_node("1.1")], 3,
                                "empty node ID '1.1' must be 2.N, after word 2"),
}


@pytest.mark.parametrize("lines, lineno, message", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_input_names_file_and_line(tmp_path, lines, lineno, message):
    path = write(tmp_path, lines)
    expected = re.escape(f"{path}:{lineno}: ") + ".*" + re.escape(message)
    with pytest.raises(NeuronbenchError, match=expected):
        read_conllu(path)


@pytest.mark.parametrize("text", ["", "# only\n# comments\n", "\n\n\n", "\ufeff"],
                         ids=["empty", "only comments", "only blank lines", "only a BOM"])
def test_a_file_without_sentences_is_an_error(tmp_path, text):
    path = tmp_path / "empty.conllu"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(NeuronbenchError, match=re.escape(f"{path}: no sentences: the file is empty or holds only")):
        read_conllu(path)


def test_invalid_utf8_names_its_line(tmp_path):
    path = tmp_path / "latin1.conllu"
    path.write_bytes(("# c\n" + WORD + "\n" + word_line("2", form="Stra\xdfe")).encode("latin-1"))
    with pytest.raises(NeuronbenchError, match=re.escape(f"{path}:3: not valid UTF-8")):
        read_conllu(path)


def test_missing_file_names_path(tmp_path):
    path = tmp_path / "nowhere.conllu"
    with pytest.raises(NeuronbenchError, match=re.escape(f"{path}: CoNLL-U file not found")):
        read_conllu(path)
