"""Edit a set of neurons on one sentence and show the model's output before and after (NeuroX's manipulation).

A decoder's output is its next-token distribution at the sentence's end (through its tied output embedding) and a
short greedy continuation; an encoder's is the task's frozen final-layer head (`bench.intervene.FinalHead`, the
causal scorers' head) read at every word. The edit is the project's one engine (`bench.intervene.Edit` through
`edit_hook` / `run_with_edit`), applied at every subword piece of the words chosen (default all), as the causal
scorers apply it at their target words; tokens a decoder generates are not edited and see the edited words through
attention.

    nb.manipulate(exp, "The keys to the cabinet", [1264, 954], layer=15, site="mlp", edit="zero", at=[1],
                  compare=("is", "are"))
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import OmegaConf

from bench.errors import NeuronbenchError
from bench.extract import tokenize_words
from bench.intervene import Edit, _forward, edit_hook, final_head, model_inputs, run_with_edit, tied_lm_head
from bench.models import LoadedModel, load_model
from bench.run import job_device
from leaderboard.submission import compose_config
from neuronbench.experiment import Activations, Experiment, _checked_name, sentence_words
from neuronbench.scoring import _neurons

EDITS = ("zero", "mean", "clamp", "scale")
TOKENS = 8  # greedy tokens a decoder continues with unless told


@dataclass(frozen=True)
class NextTokens:
    """A decoder's output at the end of the sentence."""

    top: tuple[tuple[str, float], ...]  # the most probable next tokens (decoded) and their probabilities
    compared: tuple[float, float, float] | None  # p(first), p(second), logit(first) - logit(second)
    continuation: str  # the greedy continuation, decoded


@dataclass(frozen=True)
class WordPrediction:
    """The frozen head's reading of one word: its most probable label and every label's probability."""

    word: str
    label: str
    probabilities: tuple[float, ...]  # in the order of `Manipulation.labels`


@dataclass(frozen=True)
class Manipulation:
    """The model's output on `words` before and after `edit` of `neurons` at (site, layer) at the words `at`;
    prints as a table."""

    model: str
    site: str
    layer: int
    neurons: tuple[int, ...]
    edit: str  # as given: zero, mean, clamp=<value>, scale=<factor>
    words: tuple[str, ...]
    at: tuple[int, ...]  # the edited words (indices into `words`)
    before: NextTokens | tuple[WordPrediction, ...]
    after: NextTokens | tuple[WordPrediction, ...]
    compared: tuple[str, str] | None = None  # the two next tokens (decoded) of `NextTokens.compared`
    labels: tuple[str, ...] = ()  # the head's classes (encoders)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        shown = ", ".join(map(str, self.neurons[:12])) + (", ..." if len(self.neurons) > 12 else "")
        where = "every word" if len(self.at) == len(self.words) else "words " + ", ".join(
            repr(self.words[i]) for i in self.at)
        head = [f"{self.model} {self.site} L{self.layer}: {len(self.neurons)} neurons [{shown}], edit {self.edit}, at "
                f"{where} of {' '.join(self.words)!r}"]
        body = _decoder_lines(self) if isinstance(self.before, NextTokens) else _encoder_lines(self)
        return "\n".join(head + body)


def manipulate(source: Experiment | Activations | LoadedModel | str, sentence: str | Sequence[str], neurons,
               layer: int | None = None, site: str | None = None, edit="zero", *, at: Sequence[int] | None = None,
               compare: tuple[str, str] | None = None, top: int = 5, tokens: int | None = None) -> Manipulation:
    """The model's output on `sentence` (a string is split on whitespace) before and after editing `neurons` of
    (site, layer) at the words `at` (indices; default every word: an attractor noun is edited too).

    `source`: an experiment (`nb.load(task, model)`, give layer and site), a cell's activations (their layer and
    site), or, for a decoder, a conf/model name or a loaded model (no task: no mean edit). `edit`: "zero",
    "mean" (each neuron's mean over the task's train words), ("clamp", value) or ("scale", factor); a value or
    factor is one number or one per neuron. Decoders: the `top` next tokens, `compare=("is", "are")` (two words
    that are each one token after the sentence) for their probabilities and logit difference, and a greedy
    continuation of `tokens` tokens (default 8). Encoders: the task's frozen head at every word.
    """
    loaded, site, layer, activations = _cell(source, layer, site)
    where = f"manipulate {loaded.name} {site} L{layer}"
    chosen = _neurons(neurons, loaded.width(site), where, empty=True)
    words = sentence_words(sentence)
    if not words:
        raise NeuronbenchError(f"{where}: the sentence has no words")
    edited = _words_at(at, len(words), where)
    change = _edit(edit, chosen, activations, where)
    if not loaded.decoder:
        asked = [name for name, value in (("compare", compare), ("tokens", tokens)) if value is not None]
        if asked:
            raise NeuronbenchError(f"{where}: model {loaded.name!r} is an encoder: it predicts no next token, so "
                                   f"{' and '.join(asked)} cannot be shown; its output is the task's frozen head "
                                   "per word")
        if activations is None:
            raise NeuronbenchError(f"{where}: model {loaded.name!r} is an encoder, whose output here is a task's "
                                   "frozen head: pass nb.load(task, model) or its activations, not the model alone")
    acts = activations() if not loaded.decoder else None
    inputs = model_inputs(loaded, [words], [(0, w) for w in range(len(words))],
                          "last" if acts is None else acts.source.pooling, edited=edited)
    common = dict(model=loaded.name, site=site, layer=layer, neurons=tuple(chosen.tolist()), edit=_described(edit),
                  words=tuple(words), at=tuple(np.flatnonzero(edited).tolist()))
    if acts is not None:
        before, after = (_predictions(loaded, inputs, site, layer, this, words, acts) for this in (None, change))
        return Manipulation(**common, before=before, after=after, labels=tuple(acts.label_names))
    n_tokens = TOKENS if tokens is None else tokens
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, (int, np.integer)) or n_tokens < 0:
        raise NeuronbenchError(f"{where}: tokens={tokens!r} must be a whole number >= 0")
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise NeuronbenchError(f"{where}: top={top!r} must be a whole number >= 1")
    pair = None if compare is None else _answer_ids(loaded, words, compare)
    before, after = (_next_tokens(loaded, inputs, site, layer, this, pair, int(top), int(n_tokens))
                     for this in (None, change))
    return Manipulation(**common, before=before, after=after,
                        compared=None if pair is None else tuple(loaded.tokenizer.decode([i]) for i in pair))


def _words_at(at, n_words: int, where: str) -> np.ndarray:
    """(n_words,) bool: the words an edit touches."""
    if at is None:
        return np.ones(n_words, dtype=bool)
    chosen = np.asarray(at)
    if (chosen.ndim != 1 or not len(chosen) or not np.issubdtype(chosen.dtype, np.integer) or chosen.min() < 0
            or chosen.max() >= n_words):
        raise NeuronbenchError(f"{where}: at={at!r}: expected word indices 0..{n_words - 1} of the sentence")
    edited = np.zeros(n_words, dtype=bool)
    edited[chosen] = True
    return edited


def _cell(source, layer, site) -> tuple[LoadedModel, str, int, Callable[[], Activations] | None]:
    """The model, the cell, and (where there is a task) the cell's activations, read only when asked for."""
    if isinstance(source, Activations):
        given = [f"{name}={value!r}" for name, value, own in (("layer", layer, source.layer),
                                                               ("site", site, source.site)) if value not in (None, own)]
        if given:
            raise NeuronbenchError(f"manipulate: {source.name} is one cell; {', '.join(given)} is not it (leave "
                                   "layer and site out, or pass the experiment)")
        if source.source.model is None:
            raise NeuronbenchError(f"manipulate: {source.name} is planted: it has no model to run")
        return source.source.model, source.site, source.layer, lambda: source
    site = "hidden" if site is None else site
    if isinstance(source, Experiment):
        if source.cfg.model.source == "planted":
            raise NeuronbenchError(f"manipulate: {source.name} is planted: it has no model to run")
        loaded, activations = _loaded(source.cfg), lambda: source.activations(layer, site)
    elif isinstance(source, str):
        loaded, activations = _loaded(compose_config([f"model={_checked_name('model', source)}"])), None
        if loaded is None:
            raise NeuronbenchError(f"manipulate: model {source!r} is planted: it has no network to run")
    elif isinstance(source, LoadedModel):
        loaded, activations = source, None
    else:
        raise NeuronbenchError(f"manipulate: expected nb.load(task, model), its activations, a conf/model name or a "
                               f"loaded model, got {type(source).__name__}")
    valid = loaded.layers(site)  # an unknown site fails here, listing the sites
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or layer not in valid:
        raise NeuronbenchError(f"manipulate: layer {layer!r}: model {loaded.name!r} has layers {valid[0]}..{valid[-1]} "
                               f"at site {site!r}")
    return loaded, site, int(layer), activations


def _loaded(cfg) -> LoadedModel | None:
    """The config's model as a job loads it (same device rule); None for the planted pseudo-model."""
    if cfg.model.source == "planted":
        return None
    return load_model(cfg.model.name, OmegaConf.to_container(cfg.model, resolve=True), cfg.cache_dir, job_device(cfg))


def _edit(edit, neurons: np.ndarray, activations, where: str) -> Edit:
    if isinstance(edit, str):
        kind, value = edit, None
    elif isinstance(edit, (tuple, list)) and len(edit) == 2:
        kind, value = edit
    else:
        kind, value = None, None
    if kind not in EDITS or (kind in ("zero", "mean")) != (value is None):
        raise NeuronbenchError(f"edit {edit!r}: expected 'zero', 'mean', ('clamp', value) or ('scale', factor)")
    if kind == "zero":
        return Edit.zero(neurons)
    if kind == "mean":
        if activations is None:
            raise NeuronbenchError(f"{where}: edit 'mean' is each neuron's mean over a task's train words: pass "
                                   "nb.load(task, model) or its activations, not the model alone")
        return Edit.ablate(neurons, activations().X["train"][:, neurons].mean(axis=0))
    try:
        values = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        values = np.array(np.nan)
    if values.ndim > 1 or (values.ndim == 1 and len(values) != len(neurons)) or not np.isfinite(values).all():
        raise NeuronbenchError(f"edit {edit!r}: the {kind} {'value' if kind == 'clamp' else 'factor'} must be one "
                               f"finite number or one per neuron ({len(neurons)})")
    return Edit.clamp(neurons, values) if kind == "clamp" else Edit.scale(neurons, values)


def _described(edit) -> str:
    """The edit as given, one value per neuron at 4 significant digits (numpy's repr of an array wraps lines)."""
    if isinstance(edit, str) or np.ndim(edit[1]) == 0:
        return edit if isinstance(edit, str) else f"{edit[0]}={edit[1]}"
    return f"{edit[0]}=[{', '.join(f'{float(v):.4g}' for v in np.ravel(edit[1]))}]"


def _next_tokens(loaded: LoadedModel, inputs, site, layer, change: Edit | None, pair, top: int,
                 n_tokens: int) -> NextTokens:
    """The next-token distribution after the sentence and the greedy continuation, under `change` (None: clean)."""
    weight, why_not = tied_lm_head(loaded)
    if weight is None:
        raise NeuronbenchError(f"manipulate: model {loaded.name!r} has no output head to read ({why_not})")
    (batch,) = inputs.batches
    end = int(batch.pool.argmax(dim=1).max()) + 1  # after the last word's last piece (nothing a tokenizer appends)
    if end + n_tokens > loaded.max_tokens:
        raise NeuronbenchError(f"manipulate: {end} tokens of sentence and {n_tokens} to generate are more than the "
                               f"{loaded.max_tokens} of model {loaded.name!r}; ask for fewer tokens")

    def next_logits(ids: torch.Tensor) -> torch.Tensor:
        return _forward(loaded, ids, torch.ones_like(ids))[0, -1] @ weight.T

    hook = contextlib.nullcontext() if change is None else edit_hook(
        loaded, site, layer, (batch.piece_rows, batch.piece_cols),
        lambda values: change.apply(values, batch.piece_word))
    ids, generated = batch.input_ids[:, :end], []
    with torch.inference_mode(), hook:
        first = logits = next_logits(ids)
        for _ in range(n_tokens):
            token = int(logits.argmax())
            if token == loaded.tokenizer.eos_token_id:
                break
            generated.append(token)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
            logits = next_logits(ids)
    first = first.double()
    probs = torch.softmax(first, dim=0)
    best = torch.topk(probs, top)
    decode = loaded.tokenizer.decode
    compared = None if pair is None else (float(probs[pair[0]]), float(probs[pair[1]]),
                                          float(first[pair[0]] - first[pair[1]]))
    return NextTokens(top=tuple((decode([int(i)]), float(p)) for p, i in zip(best.values, best.indices)),
                      compared=compared, continuation=decode(generated))


def _answer_ids(loaded: LoadedModel, words: list[str], compare) -> tuple[int, int]:
    """The token ids of two answer words, each of which must be one token right after the sentence."""
    if not (isinstance(compare, (tuple, list)) and len(compare) == 2 and all(isinstance(a, str) for a in compare)):
        raise NeuronbenchError(f"compare={compare!r}: expected two words, e.g. ('is', 'are')")
    (prompt,), (prompt_words,) = tokenize_words(loaded, [words])
    end = int(np.flatnonzero(prompt_words >= 0).max()) + 1  # what a tokenizer appends ([SEP]) is not the prompt
    ids = []
    for answer in compare:
        (answered,), (word_of,) = tokenize_words(loaded, [[*words, answer.strip()]])
        pieces = np.flatnonzero(word_of == len(words))
        if list(pieces) != [end] or answered[:end] != prompt[:end] or not answer.strip():
            tokens = loaded.tokenizer.convert_ids_to_tokens([answered[p] for p in pieces])
            raise NeuronbenchError(f"compare: {answer!r} is not one token after the sentence for model "
                                   f"{loaded.name!r} (it reads {tokens}); give two words that are one token each")
        ids.append(int(answered[pieces[0]]))
    return ids[0], ids[1]


def _predictions(loaded: LoadedModel, inputs, site, layer, change: Edit | None, words: list[str],
                 acts: Activations) -> tuple[WordPrediction, ...]:
    """The task's frozen final-layer head at every word, under `change` (None: clean)."""
    states = run_with_edit(loaded, inputs, site, layer, change)
    with torch.inference_mode():
        probs = final_head(acts.model_context).log_prob(states).exp().double().cpu().numpy()
    return tuple(WordPrediction(word, acts.label_names[int(p.argmax())], tuple(float(v) for v in p))
                 for word, p in zip(words, probs))


def _decoder_lines(result: Manipulation) -> list[str]:
    before, after = result.before, result.after
    lines = [f"{'next token':<12}{'before':<24}after"]
    for rank, (b, a) in enumerate(zip(before.top, after.top), 1):
        lines.append(f"{rank:>4}        {repr(b[0]):<14}{b[1]:>7.2%}   {repr(a[0]):<14}{a[1]:>7.2%}")
    if result.compared is not None:
        first, second = (repr(token) for token in result.compared)
        lines.append(f"p({first}) {before.compared[0]:.2%} -> {after.compared[0]:.2%}, p({second}) "
                     f"{before.compared[1]:.2%} -> {after.compared[1]:.2%}, logit {first} - {second} "
                     f"{before.compared[2]:+.3f} -> {after.compared[2]:+.3f}")
    lines += [f"continuation before: {before.continuation!r}", f"continuation after:  {after.continuation!r}"]
    return lines


def _encoder_lines(result: Manipulation) -> list[str]:
    width = max(len(w) for w in result.words) + 2
    lines = [f"{'word':<{width}}{'before':<20}after    (frozen head over {', '.join(result.labels)})"]
    for b, a in zip(result.before, result.after):
        pb, pa = max(b.probabilities), max(a.probabilities)
        flag = "  changed" if a.label != b.label else ""
        lines.append(f"{b.word:<{width}}{b.label:<10}{pb:>7.2%}   {a.label:<10}{pa:>7.2%}{flag}")
    return lines

