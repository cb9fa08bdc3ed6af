"""The model's own logit difference on minimal pairs (reference addendum A.1, readout `lm_logit_diff`).

`LD(x) = ℓ_own(x) − ℓ_other(x)` at the last prompt position, ℓ = last_hidden_state (already final-normed)
times the tied output embedding, in nats (the softmax normalizer cancels). Every member of a pair is read
with its own answer first, so LD > 0 means the model prefers the right answer; a pair is kept when both
members have LD > 0 (the reference's `LD(b) > 0` and `LD(c) < 0`). Answers must be one token each where
they occur, after the prompt, and the model must have such a head: both are checked, and fail naming the
model and the pair, before any forward pass.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import torch
from hydra.utils import instantiate

from bench.cache import BoundedMemo
from bench.core.pairs import PAIR_SPLITS, MinimalPairs
from bench.errors import NeuronbenchError
from bench.extract import tokenize_words
from bench.intervene import ModelInputs, model_inputs, run_with_edit, site_states, tied_lm_head
from bench.models import LoadedModel

log = logging.getLogger(__name__)

ROLES = ("concept", "off_target")  # the keys of a task's minimal-pair declaration
MAX_READ = 64  # kept pairs read under edits (the first ones; every edit costs a forward per member)


def declared_pairs(declaration: dict | None, role: str, where: str) -> MinimalPairs:
    """The `role` pairs of a task's `meta["minimal_pairs"]` (loader configs, e.g. tasks.templated)."""
    if not declaration or role not in declaration:
        raise NeuronbenchError(f"{where}: the behavioural scorer reads the task's minimal pairs, and this task "
                               f"declares no {role!r} pairs (task meta 'minimal_pairs'); templated_number and "
                               "templated_tense have them")
    pairs = _PAIRS.get(json.dumps(declaration[role], sort_keys=True), lambda: instantiate(declaration[role]))
    if not isinstance(pairs, MinimalPairs):
        raise NeuronbenchError(f"{where}: minimal-pair loader {declaration[role].get('_target_')} returned "
                               f"{type(pairs).__name__}, not bench.core.pairs.MinimalPairs")
    return pairs


def answer_ids(loaded: LoadedModel, pairs: MinimalPairs) -> dict[str, np.ndarray]:
    """Per split, (n_pairs, 2 members, 2) token ids [own answer, other answer] of each member; raises if
    the model has no tied output head or an answer is not one token right after its prompt."""
    _, why_not = tied_lm_head(loaded)
    if why_not:
        raise NeuronbenchError(f"readout lm_logit_diff of {pairs.name}: model {loaded.name!r} has no output head "
                               f"to read ({why_not}); encoders keep the frozen-head scorers (causal, intervention)")
    out = {}
    for split in PAIR_SPLITS:
        members = [(i, m, pair[m], pair.answers[a]) for i, pair in enumerate(pairs.pairs[split])
                   for m in range(2) for a in (m, 1 - m)]  # own answer, then the other
        prompts, prompt_words = tokenize_words(loaded, [list(prompt) for _, _, prompt, _ in members[::2]])
        answered, words = tokenize_words(loaded, [[*prompt, answer] for _, _, prompt, answer in members])
        ids = np.zeros(len(members), dtype=np.int64)
        for j, (i, m, prompt, answer) in enumerate(members):
            pieces = np.flatnonzero(words[j] == len(prompt))
            end = int(np.flatnonzero(prompt_words[j // 2] == len(prompt) - 1)[-1]) + 1  # after the last word
            if len(pieces) != 1 or pieces[0] != end or answered[j][:end] != prompts[j // 2][:end]:
                tokens = loaded.tokenizer.convert_ids_to_tokens([answered[j][p] for p in pieces])
                raise NeuronbenchError(
                    f"model {loaded.name!r}: answer {answer!r} of {split} pair {i} of {pairs.name} "
                    f"({' '.join(prompt)!r} -> {answer!r}) is not one token after the prompt (it reads {tokens}); "
                    "the logit difference needs single-token answers")
            ids[j] = answered[j][pieces[0]]
        out[split] = ids.reshape(-1, 2, 2)
    return out


@dataclass(frozen=True, eq=False)
class PairReadout:
    """The kept test pairs of one pair set in one model, ready for `bench.causal_scores.run_edits`: of the
    `n_right` test pairs the model gets right, `kept` are the (at most MAX_READ) first, which are read.

    Members are laid out pair by pair (base, counterfactual). `inputs` holds one sentence per batch with
    two targets per member: its attribute word (edited, not read) and its last word (read, not edited);
    `read_rows` are the read targets in member order. `clean_ld` (2 x kept) are the clean LDs in nats.
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

    @property
    def kept_share(self) -> float:
        return self.n_right / len(self.pairs.pairs["test"])

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
    prompts, where = _members(pairs, split)
    return model_inputs(loaded, prompts, np.stack([np.arange(len(prompts)), where], axis=1), pooling)


def _readout_inputs(loaded: LoadedModel, prompts: list[list[str]], where: np.ndarray,
                    batch_size: int) -> tuple[ModelInputs, np.ndarray]:
    """Two targets per prompt: the attribute word (edited) and the last word (read with `last` pooling)."""
    n = len(prompts)
    last = np.array([len(p) - 1 for p in prompts], dtype=np.int64)
    refs = np.concatenate([np.stack([np.arange(n), where], axis=1), np.stack([np.arange(n), last], axis=1)])
    edited = np.repeat([True, False], n)
    return model_inputs(loaded, prompts, refs, "last", edited=edited, batch_size=batch_size), np.arange(n, 2 * n)


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
    members = np.stack([2 * kept, 2 * kept + 1], axis=1).reshape(-1)
    inputs, read_rows = _readout_inputs(loaded, *_members(pairs, "test", kept), batch_size=1)
    log.info("%s in %s: %d of %d test pairs right (both members), %d read, mean clean LD %.2f nats", pairs.name,
             loaded.name, len(right), len(ld), len(kept), ld[kept].mean())
    return PairReadout(pairs=pairs, model=loaded, n_right=len(right), kept=kept, clean_ld=ld[kept].reshape(-1), inputs=inputs,
                       read_rows=read_rows,
                       directions=torch.cat([torch.zeros_like(directions[members]), directions[members]]),
                       train_inputs=_attribute_inputs(loaded, pairs, "train", pooling))


_PAIRS = BoundedMemo(8)
_READOUTS = BoundedMemo(8)
_MEANS = BoundedMemo(64)
