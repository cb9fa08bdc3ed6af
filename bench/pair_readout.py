"""The model's own logit difference on minimal pairs (reference addendum A.1, readout `lm_logit_diff`).

`LD(x) = ℓ_own(x) − ℓ_other(x)` at the last prompt position, ℓ = last_hidden_state (already final-normed)
times the tied output embedding, in nats (the softmax normalizer cancels). Every member of a pair is read
with its own answer first, so LD > 0 means the model prefers the right answer; a pair is kept when both
members have LD > 0 (the reference's `LD(b) > 0` and `LD(c) < 0`); fewer than MIN_KEPT kept pairs is logged as a
warning (the pair-bootstrap intervals are then wide). Answers must be one token each where
they occur, after the prompt, and the model must have such a head: both are checked, and fail naming the
model and the pair, before any forward pass.

The interchange scorer reads the same pairs patched from the other member (`PairReadout.sources`) and the
crossed number x tense pairs (`CrossedReadout`: the argmax over the four copulas, for RAVEL's cause and
isolation, reference addendum B.2).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import torch
from hydra.utils import instantiate

from bench.cache import BoundedMemo
from bench.core.pairs import PAIR_SPLITS, CrossedPairs, MinimalPairs
from bench.errors import NeuronbenchError
from bench.extract import tokenize_words
from bench.intervene import ModelInputs, model_inputs, run_with_edit, site_states, tied_lm_head
from bench.models import LoadedModel

log = logging.getLogger(__name__)

ROLES = ("concept", "off_target")  # the keys of a task's minimal-pair declaration
MAX_READ = 128  # kept pairs read under edits (the first ones; every edit costs a forward per member)
MIN_KEPT = 30  # fewer kept pairs than this: a warning, since the pair-bootstrap intervals are then wide


def declared_pairs(declaration: dict | None, role: str, where: str, kind: type = MinimalPairs):
    """The `role` pairs of a task's `meta["minimal_pairs"]` (loader configs, e.g. tasks.templated), of type `kind`."""
    if not declaration or role not in declaration:
        raise NeuronbenchError(f"{where}: the behavioural scorer reads the task's minimal pairs, and this task "
                               f"declares no {role!r} pairs (task meta 'minimal_pairs'); templated_number and "
                               "templated_tense have them")
    pairs = _PAIRS.get(json.dumps(declaration[role], sort_keys=True), lambda: instantiate(declaration[role]))
    if not isinstance(pairs, kind):
        raise NeuronbenchError(f"{where}: minimal-pair loader {declaration[role].get('_target_')} returned "
                               f"{type(pairs).__name__}, not bench.core.pairs.{kind.__name__}")
    return pairs


def _check_head(loaded: LoadedModel, name: str) -> None:
    _, why_not = tied_lm_head(loaded)
    if why_not:
        raise NeuronbenchError(f"readout lm_logit_diff of {name}: model {loaded.name!r} has no output head "
                               f"to read ({why_not}); encoders keep the frozen-head scorers (causal, intervention)")


def _answer_tokens(loaded: LoadedModel, name: str, items: list[tuple[str, tuple[str, ...], str]]) -> np.ndarray:
    """(len(items),) token id of the answer of each (label, prompt, answer); raises naming the model and the
    item when an answer is not one token right after its prompt."""
    prompts = list(dict.fromkeys(prompt for _, prompt, _ in items))
    row = {prompt: r for r, prompt in enumerate(prompts)}
    prompt_ids, prompt_words = tokenize_words(loaded, [list(prompt) for prompt in prompts])
    answered, words = tokenize_words(loaded, [[*prompt, answer] for _, prompt, answer in items])
    ids = np.zeros(len(items), dtype=np.int64)
    for j, (label, prompt, answer) in enumerate(items):
        r = row[prompt]
        pieces = np.flatnonzero(words[j] == len(prompt))
        end = int(np.flatnonzero(prompt_words[r] == len(prompt) - 1)[-1]) + 1  # after the last word
        if len(pieces) != 1 or pieces[0] != end or answered[j][:end] != prompt_ids[r][:end]:
            tokens = loaded.tokenizer.convert_ids_to_tokens([answered[j][p] for p in pieces])
            raise NeuronbenchError(
                f"model {loaded.name!r}: answer {answer!r} of {label} of {name} "
                f"({' '.join(prompt)!r} -> {answer!r}) is not one token after the prompt (it reads {tokens}); "
                "the logit difference needs single-token answers")
        ids[j] = answered[j][pieces[0]]
    return ids


def answer_ids(loaded: LoadedModel, pairs: MinimalPairs) -> dict[str, np.ndarray]:
    """Per split, (n_pairs, 2 members, 2) token ids [own answer, other answer] of each member; raises if
    the model has no tied output head or an answer is not one token right after its prompt."""
    _check_head(loaded, pairs.name)
    return {split: _answer_tokens(loaded, pairs.name, [
        (f"{split} pair {i}", pair[m], pair.answers[a]) for i, pair in enumerate(pairs.pairs[split])
        for m in range(2) for a in (m, 1 - m)]).reshape(-1, 2, 2) for split in PAIR_SPLITS}


def crossed_answer_ids(loaded: LoadedModel, pairs: CrossedPairs) -> np.ndarray:
    """(n_pairs, 2 members, A) token ids of every combination's answer (`pairs.answers` order) after each
    member; the same checks as `answer_ids`."""
    _check_head(loaded, pairs.name)
    return _answer_tokens(loaded, pairs.name, [
        (f"pair {i}", pair[m], answer) for i, pair in enumerate(pairs.pairs) for m in range(2)
        for _, answer in pairs.answers]).reshape(len(pairs.pairs), 2, len(pairs.answers))


@dataclass(frozen=True, eq=False)
class PairReadout:
    """The kept test pairs of one pair set in one model, ready for `bench.causal_scores.run_edits`: of the
    `n_right` test pairs the model gets right, `kept` are the (at most MAX_READ) first, which are read.

    Members are laid out pair by pair (base, counterfactual). `inputs` holds one sentence per batch with
    two targets per member: its attribute word (edited, not read) and its last word (read, not edited);
    `read_rows` are the read targets in member order. `clean_ld` (2 x kept) are the clean LDs in nats.
    `patch_inputs` are `inputs` editing only the attribute word's last piece, where `sources` are read.
    """

    pairs: MinimalPairs
    model: LoadedModel
    n_right: int
    kept: np.ndarray
    clean_ld: np.ndarray
    inputs: ModelInputs
    read_rows: np.ndarray
    directions: torch.Tensor
    train_inputs: ModelInputs
    patch_inputs: ModelInputs
    source_inputs: ModelInputs

    @property
    def kept_share(self) -> float:
        return self.n_right / len(self.pairs.pairs["test"])

    def sources(self, site: str, layer: int) -> np.ndarray:
        """(2 kept, D) clean states at the last piece of each read member's attribute word."""
        return _word_states(self.model, self.pairs.pairs_id, "attribute", self.source_inputs, site, layer)

    def read(self, pooled: torch.Tensor, batch_words: np.ndarray) -> torch.Tensor:
        """(n_rep, n, 1) LD of each target of a batch (0 for the attribute-word targets, never read)."""
        directions = self.directions[torch.as_tensor(batch_words)].to(pooled.device, pooled.dtype)
        return (pooled * directions).sum(dim=-1, keepdim=True)

    def means(self, site: str, layer: int) -> np.ndarray:
        """(D,) mean activation at the attribute words of both members of every train pair, pooled as the
        cell's activations are (reference addendum A.2: equal numbers of each attribute value, so the
        replacement carries none)."""
        key = (self.model.name, self.model.extraction_id, self.pairs.pairs_id, self.train_inputs.pooling, site, layer)
        return _MEANS.get(key, lambda: site_states(self.model, self.train_inputs, site, layer).mean(axis=0))


def _members(pairs: MinimalPairs, split: str, rows=None) -> tuple[list[list[str]], np.ndarray]:
    """Prompts of both members of the pairs `rows` (all by default) and each one's attribute word index."""
    chosen = pairs.pairs[split] if rows is None else [pairs.pairs[split][i] for i in rows]
    return ([list(pair[m]) for pair in chosen for m in range(2)],
            np.array([pair.where[m] for pair in chosen for m in range(2)], dtype=np.int64))


def _attribute_inputs(loaded: LoadedModel, pairs: MinimalPairs, split: str, pooling: str) -> ModelInputs:
    return _word_inputs(loaded, *_members(pairs, split), pooling)


def _readout_inputs(loaded: LoadedModel, prompts: list[list[str]], where: np.ndarray, batch_size: int,
                    edit_pieces: str = "all") -> tuple[ModelInputs, np.ndarray]:
    """Two targets per prompt: the attribute word (edited) and the last word (read with `last` pooling)."""
    n = len(prompts)
    last = np.array([len(p) - 1 for p in prompts], dtype=np.int64)
    refs = np.concatenate([np.stack([np.arange(n), where], axis=1), np.stack([np.arange(n), last], axis=1)])
    edited = np.repeat([True, False], n)
    return (model_inputs(loaded, prompts, refs, "last", edited=edited, batch_size=batch_size, edit_pieces=edit_pieces),
            np.arange(n, 2 * n))


def _word_inputs(loaded: LoadedModel, prompts: list[list[str]], where: np.ndarray,
                 pooling: str = "last") -> ModelInputs:
    """The word `where[i]` of each prompt (by default read at its last piece, where an interchange patches)."""
    return model_inputs(loaded, prompts, np.stack([np.arange(len(prompts)), where], axis=1), pooling)


def _word_states(loaded: LoadedModel, pairs_id: str, word: str, inputs: ModelInputs, site: str,
                 layer: int) -> np.ndarray:
    """Memoized per cell: every ranking of a cell patches from the same source states."""
    key = (loaded.name, loaded.extraction_id, pairs_id, word, site, layer)
    return _SOURCES.get(key, lambda: site_states(loaded, inputs, site, layer))


def pair_readout(loaded: LoadedModel, pairs: MinimalPairs, pooling: str) -> PairReadout:
    """The readout of `pairs` in `loaded`, memoized per process (every layer and method of a job shares it):
    checks, one clean pass over the test members, the filter."""
    return _READOUTS.get((loaded.name, loaded.extraction_id, pairs.pairs_id, pooling),
                         lambda: _build(loaded, pairs, pooling))


def clean_logit_diffs(loaded: LoadedModel, pairs: MinimalPairs) -> np.ndarray:
    """(n_test, 2) clean LD of both members of every test pair, own answer first, in nats (one batched pass)."""
    _, ld = _clean(loaded, pairs)
    return ld


def _clean(loaded: LoadedModel, pairs: MinimalPairs) -> tuple[torch.Tensor, np.ndarray]:
    """The (2 n_test, D) answer directions E[own] − E[other] of the test members and their clean LDs."""
    ids = answer_ids(loaded, pairs)["test"]  # raises before any forward pass
    weight, _ = tied_lm_head(loaded)
    prompts, where = _members(pairs, "test")
    with torch.inference_mode():
        directions = (weight[torch.as_tensor(ids[..., 0].reshape(-1))]
                      - weight[torch.as_tensor(ids[..., 1].reshape(-1))]).float().cpu()
        inputs, read_rows = _readout_inputs(loaded, prompts, where, batch_size=32)
        final = run_with_edit(loaded, inputs)[torch.as_tensor(read_rows)].float().cpu()
        ld = (final * directions).sum(dim=-1).double().numpy().reshape(-1, 2)
    return directions, ld


def _build(loaded: LoadedModel, pairs: MinimalPairs, pooling: str) -> PairReadout:
    directions, ld = _clean(loaded, pairs)
    right = np.flatnonzero((ld > 0).all(axis=1))
    kept = right[:MAX_READ]
    if len(kept) == 0:
        raise NeuronbenchError(f"model {loaded.name!r} gets none of the {len(ld)} test pairs of {pairs.name} "
                               "right (LD > 0 for both members), so there is no behaviour to ablate")
    if len(kept) < MIN_KEPT:
        log.warning("%s in %s: only %d of %d test pairs right (both members); the intervals of beh and interchange "
                    "will be wide (ask the pair loader for more test pairs, e.g. n_test)", pairs.name, loaded.name,
                    len(kept), len(ld))
    members = np.stack([2 * kept, 2 * kept + 1], axis=1).reshape(-1)
    prompts, where = _members(pairs, "test", kept)
    inputs, read_rows = _readout_inputs(loaded, prompts, where, batch_size=1)
    log.info("%s in %s: %d of %d test pairs right (both members), %d read, mean clean LD %.2f nats", pairs.name,
             loaded.name, len(right), len(ld), len(kept), ld[kept].mean())
    return PairReadout(pairs=pairs, model=loaded, n_right=len(right), kept=kept, clean_ld=ld[kept].reshape(-1), inputs=inputs,
                       read_rows=read_rows,
                       directions=torch.cat([torch.zeros_like(directions[members]), directions[members]]),
                       train_inputs=_attribute_inputs(loaded, pairs, "train", pooling),
                       patch_inputs=_readout_inputs(loaded, prompts, where, batch_size=1, edit_pieces="last")[0],
                       source_inputs=_word_inputs(loaded, prompts, where))


@dataclass(frozen=True, eq=False)
class CrossedReadout:
    """The kept crossed pairs of one model (`pair_readout`'s counterpart for RAVEL, reference addendum B.2).

    Of the `n_right` pairs whose members both get the argmax over the answers right, `kept` are the (at most
    MAX_READ) first. Members are laid out pair by pair (base, source); `values` (2 kept, attributes) are each
    member's own. `inputs[a]` edit attribute a's word at its last piece and read the last word (`read_rows`);
    `heads` (2 kept, A, D) are the output embeddings of the A answers after each member.
    """

    pairs: CrossedPairs
    model: LoadedModel
    n_right: int
    kept: np.ndarray
    values: np.ndarray
    inputs: dict[str, ModelInputs]
    read_rows: np.ndarray
    heads: torch.Tensor
    source_inputs: dict[str, ModelInputs]

    @property
    def kept_share(self) -> float:
        return self.n_right / len(self.pairs.pairs)

    @property
    def combinations(self) -> np.ndarray:
        """(A, attributes) the values each answer encodes, in `pairs.answers` order."""
        return np.array([values for values, _ in self.pairs.answers])

    def read(self, pooled: torch.Tensor, batch_words: np.ndarray) -> torch.Tensor:
        """(n_rep, n, A) logits of the answers at each target of a batch (0 at the edited targets)."""
        heads = torch.cat([torch.zeros_like(self.heads), self.heads])[torch.as_tensor(batch_words)]
        return torch.einsum("rnd,nad->rna", pooled.float(), heads.to(pooled.device))

    def sources(self, attribute: str, site: str, layer: int) -> np.ndarray:
        """(2 kept, D) clean states at the last piece of each member's `attribute` word."""
        return _word_states(self.model, self.pairs.pairs_id, attribute, self.source_inputs[attribute], site, layer)


def crossed_readout(loaded: LoadedModel, pairs: CrossedPairs) -> CrossedReadout:
    """The readout of crossed `pairs` in `loaded`, memoized per process like `pair_readout`."""
    return _READOUTS.get((loaded.name, loaded.extraction_id, pairs.pairs_id, "crossed"),
                         lambda: _build_crossed(loaded, pairs))


def _build_crossed(loaded: LoadedModel, pairs: CrossedPairs) -> CrossedReadout:
    ids = torch.as_tensor(crossed_answer_ids(loaded, pairs).reshape(len(pairs.pairs) * 2, -1))  # raises first
    weight, _ = tied_lm_head(loaded)
    prompts = [list(pair[m]) for pair in pairs.pairs for m in range(2)]
    values = np.array([pair.values[m] for pair in pairs.pairs for m in range(2)])
    combinations = [values for values, _ in pairs.answers]
    own = np.array([combinations.index(tuple(v)) for v in values])
    with torch.inference_mode():
        heads = weight[ids].float().cpu()  # (2 n, A, D)
        inputs, read_rows = _readout_inputs(loaded, prompts, np.zeros(len(prompts), np.int64), batch_size=32)
        final = run_with_edit(loaded, inputs)[torch.as_tensor(read_rows)].float().cpu()
        predicted = torch.einsum("nd,nad->na", final, heads).argmax(dim=-1).numpy()
    right = np.flatnonzero((predicted == own).reshape(-1, 2).all(axis=1))
    kept = right[:MAX_READ]
    if len(kept) == 0:
        raise NeuronbenchError(f"model {loaded.name!r} gets none of the {len(pairs.pairs)} pairs of {pairs.name} "
                               "right (argmax over the answers, both members), so there is nothing to patch")
    members = np.stack([2 * kept, 2 * kept + 1], axis=1).reshape(-1)
    chosen = [prompts[i] for i in members]
    where = {a: np.array([pairs.pairs[i // 2].where[j] for i in members]) for j, a in enumerate(pairs.attributes)}
    log.info("%s in %s: %d of %d pairs right (both members), %d read", pairs.name, loaded.name, len(right),
             len(pairs.pairs), len(kept))
    return CrossedReadout(
        pairs=pairs, model=loaded, n_right=len(right), kept=kept, values=values[members],
        inputs={a: _readout_inputs(loaded, chosen, where[a], batch_size=1, edit_pieces="last")[0] for a in where},
        read_rows=np.arange(len(members), 2 * len(members)), heads=heads[members],
        source_inputs={a: _word_inputs(loaded, chosen, where[a]) for a in where})


_PAIRS = BoundedMemo(8)
_READOUTS = BoundedMemo(8)
_MEANS = BoundedMemo(64)
_SOURCES = BoundedMemo(64)
