"""Run a model with edited neurons at word positions: ablation, clamping, translation, IG paths.

The only model-side code besides `bench.extract`. It serves the model-based ranking methods
(reference.md#method-ablate-single, #method-ig `ig_head`) and the model-level metrics
(#metric-causal, #metric-interventions, #metric-faithfulness):

- `model_inputs` tokenizes the sentences that hold a list of target words (sentence index, word index)
  exactly as extraction does (`bench.extract.tokenize_words`, offsets alignment, BOS for decoders), sorts
  them by length, pads them into batches, and records per batch every subword piece of every target
  word (where edits apply) and the pooling weights of the final read-out (`first`/`last`/`mean`).
- `edit_hook` swaps the activations of one site and layer at given (row, position) pairs; the hook
  sits on the module whose output *is* that site: site `hidden` layer 0 = input of block 1 (the
  embeddings output), layer l = output of block l, except that the last hidden state of a decoder
  with a final norm is that norm's output (transformers ties `hidden_states[-1]` to
  `last_hidden_state`); site `mlp` layer l = input of block l's FFN output projection.
- `run_with_edit` returns the final-layer pooled representation of every target word under an `Edit`
  (none, mean/zero ablation, clamp, translation, scaling); `FinalHead` reads them.
- `ablation_sweep` and `integrated_gradients` batch many edits of one sentence batch at once by
  replicating it along the batch axis. A batch of one sentence is replicated *inside* the hook, so
  the layers below the edited one run once per forward instead of once per replicate; a batch of
  several sentences is replicated at the input (the attention mask of S > 1 sentences does not
  broadcast over a replicated batch).

An edit at a sentence applies to all its edited target words at once (all their pieces); other
positions keep their clean values at the edited layer and change only through later layers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from bench.cache import BoundedMemo
from bench.core.method import DEAD_TOLERANCE
from bench.errors import NeuronbenchError
from bench.extract import POOLINGS, tokenize_words
from bench.models import LoadedModel
from bench.probe import LogisticProbe, accuracy, fit_select

log = logging.getLogger(__name__)

# Where the residual stream's hidden_states[l] is produced: block l's module (l >= 1; layer 0 is the
# input of the first block) and, for decoders with a final norm, the norm that makes
# hidden_states[L] = last_hidden_state.
HIDDEN_BLOCKS = {
    "bert": ("encoder.layer.{i}", None),
    "roberta": ("encoder.layer.{i}", None),
    "mpnet": ("encoder.layer.{i}", None),
    "gpt2": ("h.{i}", "ln_f"),
    "gpt_neox": ("layers.{i}", "final_layer_norm"),
    "llama": ("layers.{i}", "norm"),
    "xlnet": ("layer.{i}", None),
}
EDIT_MODES = ("set", "add", "scale")
# Causal LMs whose logits are `last_hidden_state @ input_embedding.T` when the config ties the output
# embedding to the input one: GPT2LMHeadModel and LlamaForCausalLM apply a bias-free, unscaled lm_head to
# the already final-normed last_hidden_state (ln_f / norm run inside the base model AutoModel loads).
# Untied heads (Pythia's embed_out, most Llama checkpoints) are not loaded by AutoModel.
TIED_LM_HEADS = ("gpt2", "llama")


# --- inputs ---------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class WordBatch:
    """One padded batch of S rows (sentences) and the target words it holds.

    `words` are positions in the `ModelInputs` word list, row-major; `piece_rows`/`piece_cols` are
    every subword position of every *edited* target word and `piece_word` the index into `words` of
    each; `pool` (n, S*T) holds the read-out weights of each target word over the flattened batch.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    words: np.ndarray
    piece_rows: torch.Tensor
    piece_cols: torch.Tensor
    piece_word: torch.Tensor
    pool: torch.Tensor

    @property
    def n_rows(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def width(self) -> int:
        return int(self.input_ids.shape[1])


@dataclass(frozen=True, eq=False)
class ModelInputs:
    """Batches covering `n_words` target words; results are returned in the order words were given."""

    batches: list[WordBatch]
    n_words: int
    pooling: str
    per_word: bool


def model_inputs(loaded: LoadedModel, sentences: list[list[str]], words, pooling: str = "last", *,
                 edited=None, per_word: bool = False, batch_size: int = 32,
                 edit_pieces: str = "all") -> ModelInputs:
    """Tokenized, length-sorted, padded batches for target words `words` ((N, 2): sentence, word).

    Rows are sentences (each holds all its target words, edited together) or, with `per_word`, one
    row per target word (the same sentence may then appear in several rows). `edited` (N,) bool marks
    the words whose pieces an edit touches (default all); the others are read out only. `edit_pieces`
    "last" edits only a word's last piece: an interchange aligns base and source words by their last
    pieces, since `dog` and `dogs` may split differently (reference addendum B.1).
    """
    if pooling not in POOLINGS:
        raise NeuronbenchError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
    if edit_pieces not in ("all", "last"):
        raise NeuronbenchError(f"edit_pieces must be 'all' or 'last', got {edit_pieces!r}")
    words = np.asarray(words, dtype=np.int64).reshape(-1, 2)
    n_words = len(words)
    edited = np.ones(n_words, dtype=bool) if edited is None else np.asarray(edited, dtype=bool)
    if edited.shape != (n_words,):
        raise NeuronbenchError(f"edited: expected {n_words} flags, got shape {edited.shape}")
    if n_words == 0:
        return ModelInputs(batches=[], n_words=0, pooling=pooling, per_word=per_word)
    unique, inverse = np.unique(words[:, 0], return_inverse=True)
    if len(unique) and (unique[0] < 0 or unique[-1] >= len(sentences)):
        raise NeuronbenchError(f"word references point outside the {len(sentences)} sentences")
    ids, token_words = tokenize_words(loaded, [sentences[s] for s in unique])
    lengths = np.array([len(t) for t in ids], dtype=np.int64)
    too_long = np.flatnonzero(lengths > loaded.max_tokens)
    if len(too_long):
        raise NeuronbenchError(f"sentence {unique[too_long[0]]} has {lengths[too_long[0]]} tokens, more "
                               f"than the model's {loaded.max_tokens}; such sentences are no examples")
    if per_word:
        row_sentence, row_targets = inverse, [np.array([i]) for i in range(n_words)]
    else:
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(unique) + 1))
        row_sentence = np.arange(len(unique))
        row_targets = [order[bounds[r]:bounds[r + 1]] for r in range(len(unique))]
    row_order = np.argsort(lengths[row_sentence], kind="stable")
    pad = loaded.tokenizer.pad_token_id or 0
    batches = []
    for start in range(0, len(row_order), batch_size):
        rows = row_order[start:start + batch_size]
        width = int(lengths[row_sentence[rows]].max())
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        targets, p_rows, p_cols, p_word, pool_entries = [], [], [], [], []
        for r, row in enumerate(rows):
            u = row_sentence[row]
            input_ids[r, :lengths[u]] = torch.tensor(ids[u])
            mask[r, :lengths[u]] = 1
            for i in row_targets[row]:
                pieces = np.flatnonzero(token_words[u] == words[i, 1])
                if len(pieces) == 0:
                    raise NeuronbenchError(f"word {words[i, 1]} of sentence {words[i, 0]} has no subword "
                                           "token; such words are no examples (valid mask)")
                k = len(targets)
                targets.append(i)
                if edited[i]:
                    touched = pieces[-1:] if edit_pieces == "last" else pieces
                    p_rows.extend([r] * len(touched))
                    p_cols.extend(touched.tolist())
                    p_word.extend([k] * len(touched))
                read = {"first": pieces[:1], "last": pieces[-1:], "mean": pieces}[pooling]
                pool_entries.extend((k, r * width + c, 1.0 / len(read)) for c in read)
        pool = torch.zeros((len(targets), len(rows) * width), dtype=torch.float32)
        if pool_entries:
            k_idx, col_idx, weight = zip(*pool_entries)
            pool[list(k_idx), list(col_idx)] = torch.tensor(weight, dtype=torch.float32)
        batches.append(WordBatch(input_ids=input_ids, attention_mask=mask,
                                 words=np.asarray(targets, dtype=np.int64),
                                 piece_rows=torch.tensor(p_rows, dtype=torch.long),
                                 piece_cols=torch.tensor(p_cols, dtype=torch.long),
                                 piece_word=torch.tensor(p_word, dtype=torch.long), pool=pool))
    return ModelInputs(batches=batches, n_words=n_words, pooling=pooling, per_word=per_word)


# --- hooks ----------------------------------------------------------------------------------------

def _check_site(loaded: LoadedModel, site: str, layer: int) -> None:
    if layer not in loaded.layers(site):  # also rejects unknown sites
        raise NeuronbenchError(f"site {site!r} has no layer {layer}; valid: {loaded.layers(site)}")


def _hidden_module(loaded: LoadedModel, layer: int) -> tuple[torch.nn.Module, str]:
    """(module, "pre" | "post"): where hidden_states[layer] is the first input or the output."""
    arch = loaded.model.config.model_type
    if arch not in HIDDEN_BLOCKS:
        raise NeuronbenchError(f"site 'hidden' edits are not mapped for architecture {arch!r}; add it "
                               "to bench.intervene.HIDDEN_BLOCKS")
    block, final_norm = HIDDEN_BLOCKS[arch]
    if layer == 0:
        return loaded.model.get_submodule(block.format(i=0)), "pre"
    if layer == loaded.n_layers and final_norm is not None:
        return loaded.model.get_submodule(final_norm), "post"
    return loaded.model.get_submodule(block.format(i=layer - 1)), "post"


@contextlib.contextmanager
def site_hook(loaded: LoadedModel, site: str, layer: int, transform: Callable[[torch.Tensor], torch.Tensor]):
    """Pass the (B, T, D) activations of (site, layer) through `transform` in every forward inside
    the block; the hook is removed even on error. `transform` may change the batch size B. In a
    sequence-first model (bench.models.SEQUENCE_FIRST) it gets the transposed (B, T, D) view and its
    result is transposed back."""
    _check_site(loaded, site, layer)
    if site == "mlp":
        module, where = loaded.ffn_module(layer), "pre"
    else:
        module, where = _hidden_module(loaded, layer)
    sequence_first = loaded.sequence_first

    def batch_first(h):
        return transform(h.transpose(0, 1)).transpose(0, 1) if sequence_first else transform(h)

    def pre(_module, args, kwargs):
        if args:
            return (batch_first(args[0]), *args[1:]), kwargs
        key = next(iter(kwargs))  # called by keyword: the activations come first
        return args, {**kwargs, key: batch_first(kwargs[key])}

    def post(_module, _args, output):
        if isinstance(output, torch.Tensor):
            return batch_first(output)
        if isinstance(output, tuple):
            return (batch_first(output[0]), *output[1:])
        raise NeuronbenchError(f"cannot edit the output of {type(_module).__name__} ({type(output)})")

    handle = (module.register_forward_pre_hook(pre, with_kwargs=True) if where == "pre"
              else module.register_forward_hook(post))
    try:
        yield
    finally:
        handle.remove()


def edit_hook(loaded: LoadedModel, site: str, layer: int, positions, fn: Callable[[torch.Tensor], torch.Tensor]):
    """Context manager: at (site, layer), replace the activations at `positions` = (rows, cols) by
    `fn(values)`, values being the (P, D) activations there; out of place, so autograd flows."""
    rows, cols = (torch.as_tensor(p, dtype=torch.long) for p in positions)

    def transform(h):
        if len(rows) == 0:
            return h
        r, c = rows.to(h.device), cols.to(h.device)
        return h.index_put((r, c), fn(h[r, c]))

    return site_hook(loaded, site, layer, transform)


# --- edits and clean/edited passes ---------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Edit:
    """What happens to neurons `neurons` at the edited pieces: `set` to `values`, `add` `values` or `scale` them
    by `values`.

    `values` is (k,) for all words or (N, k) per target word (rows in `ModelInputs` word order).
    """

    mode: str
    neurons: np.ndarray
    values: np.ndarray

    def __post_init__(self):
        if self.mode not in EDIT_MODES:
            raise NeuronbenchError(f"edit mode must be one of {EDIT_MODES}, got {self.mode!r}")
        neurons = np.asarray(self.neurons, dtype=np.int64).reshape(-1)
        values = np.asarray(self.values, dtype=np.float32)
        if values.ndim == 0:
            values = np.full(len(neurons), float(values), dtype=np.float32)
        if values.shape[-1:] != (len(neurons),) or values.ndim > 2:
            raise NeuronbenchError(f"edit values of shape {values.shape} do not fit {len(neurons)} neurons")
        object.__setattr__(self, "neurons", neurons)
        object.__setattr__(self, "values", values)

    @classmethod
    def ablate(cls, neurons, means) -> Edit:
        """Mean ablation: `means` are the per-neuron values of `neurons` (e.g. train means)."""
        return cls("set", neurons, means)

    @classmethod
    def zero(cls, neurons) -> Edit:
        return cls("set", neurons, 0.0)

    @classmethod
    def clamp(cls, neurons, values) -> Edit:
        return cls("set", neurons, values)

    @classmethod
    def translate(cls, neurons, delta) -> Edit:
        """Add `delta` ((k,) or per word (N, k)), e.g. α_S ⊙ (q_S(v') − q_S(v))."""
        return cls("add", neurons, delta)

    @classmethod
    def scale(cls, neurons, factors) -> Edit:
        """Multiply by `factors` ((k,) or one for all): each piece keeps its own sign and relative size."""
        return cls("scale", neurons, factors)

    def apply(self, values: torch.Tensor, word_of_piece: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Edited copy of the (P, D) activations of pieces whose word (ModelInputs order) is given."""
        out = values.clone()
        if len(self.neurons) == 0:
            return out
        cols = torch.as_tensor(self.neurons, device=values.device)
        new = torch.as_tensor(self.values, device=values.device, dtype=values.dtype)
        if new.ndim == 2:
            new = new[torch.as_tensor(word_of_piece, dtype=torch.long, device=values.device)]
        if self.mode == "set":
            out[:, cols] = new
        elif self.mode == "scale":
            out[:, cols] *= new
        else:
            out[:, cols] += new
        return out


def _device(loaded: LoadedModel) -> torch.device:
    return next(loaded.model.parameters()).device


def _forward(loaded: LoadedModel, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    device = _device(loaded)
    kwargs = {"use_cache": False} if loaded.decoder else {}
    out = loaded.model(input_ids=input_ids.to(device), attention_mask=mask.to(device), **kwargs)
    return out.last_hidden_state


def run_with_edit(loaded: LoadedModel, inputs: ModelInputs, site: str | None = None,
                  layer: int | None = None, edit: Edit | None = None) -> torch.Tensor:
    """(N, D_final) float32 final-layer pooled representations of the target words, on the model's
    device, in the order the words were given; `edit=None` (or no site) is the clean pass."""
    if edit is not None and (site is None or layer is None):
        raise NeuronbenchError("run_with_edit: an edit needs a site and a layer")
    out = None
    with torch.inference_mode():
        for batch in inputs.batches:
            if edit is None:
                ctx = contextlib.nullcontext()
            else:
                word_of_piece = batch.words[batch.piece_word.numpy()]
                ctx = edit_hook(loaded, site, layer, (batch.piece_rows, batch.piece_cols),
                                lambda v, w=word_of_piece: edit.apply(v, w))
            with ctx:
                final = _forward(loaded, batch.input_ids, batch.attention_mask)
            pooled = batch.pool.to(final.device) @ final.reshape(-1, final.shape[-1])
            if out is None:
                out = torch.zeros((inputs.n_words, final.shape[-1]), dtype=torch.float32,
                                  device=final.device)
            out[torch.as_tensor(batch.words, device=final.device)] = pooled.float()
    return out if out is not None else torch.zeros((0, 0))


def site_states(loaded: LoadedModel, inputs: ModelInputs, site: str, layer: int) -> np.ndarray:
    """(N, D) clean activations of (site, layer) pooled over each target word's pieces as the final
    read-out pools (the values extraction caches, before float16 storage)."""
    out = None
    with torch.inference_mode():
        for batch in inputs.batches:
            seen = {}

            def record(h, seen=seen):
                seen["h"] = h
                return h

            with site_hook(loaded, site, layer, record):
                _forward(loaded, batch.input_ids, batch.attention_mask)
            h = seen["h"]
            pooled = batch.pool.to(h.device) @ h.reshape(-1, h.shape[-1])
            if out is None:
                out = np.zeros((inputs.n_words, h.shape[-1]), dtype=np.float32)
            out[batch.words] = pooled.float().cpu().numpy()
    return out


def _forward_replicated(loaded: LoadedModel, batch: WordBatch, site: str, layer: int, n_rep: int,
                        edit: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """(n_rep, n, D_final) pooled final states of the batch's targets when replicate r of the batch
    gets `edit(h)[r]`; `edit` maps the site's (n_rep, S, T, D) activations (replicate-major,
    replicate 0 of an input-level replication equal to the others) to edited ones, out of place."""
    S, T = batch.n_rows, batch.width
    inside = S == 1
    ids, mask = batch.input_ids, batch.attention_mask
    if not inside:
        ids, mask = ids.repeat(n_rep, 1), mask.repeat(n_rep, 1)

    def transform(h):
        D = h.shape[-1]
        h4 = h.expand(n_rep, T, D).unsqueeze(1) if inside else h.reshape(n_rep, S, T, D)
        return edit(h4).reshape(n_rep * S, T, D)

    with site_hook(loaded, site, layer, transform):
        final = _forward(loaded, ids, mask)
    final = final.reshape(n_rep, S * T, final.shape[-1])
    return torch.matmul(batch.pool.to(final.device), final)


# --- the model's own language-model head -----------------------------------------------------------

def tied_lm_head(loaded: LoadedModel) -> tuple[torch.Tensor | None, str]:
    """(V, D) output embedding of a causal LM whose logits are `last_hidden_state @ W.T`, or (None, why
    not). Encoders (sentence-transformers ship no masked-LM head, and AutoModel loads none) and decoders
    with an untied or unmapped head have none."""
    config = loaded.model.config
    if not loaded.decoder:
        return None, (f"{config.model_type} encoder: AutoModel loads no masked-LM head (sentence-transformer "
                      "checkpoints ship none), so there is no LM loss to read")
    if config.model_type not in TIED_LM_HEADS:
        return None, (f"LM head of architecture {config.model_type!r} is not mapped (bench.intervene."
                      "TIED_LM_HEADS)")
    if not getattr(config, "tie_word_embeddings", False):
        return None, "the output embedding is not tied to the input one, and AutoModel does not load lm_head"
    return loaded.model.get_input_embeddings().weight, ""


def next_token_ids(inputs: ModelInputs) -> np.ndarray:
    """(N,) id of the token right after each target word's read-out position (-1 if the sentence ends
    there); with `last` pooling that is the token a causal LM predicts from the word's last piece."""
    out = np.full(inputs.n_words, -1, dtype=np.int64)
    for batch in inputs.batches:
        flat = batch.pool.argmax(dim=1).numpy()  # the read-out column of each target word
        rows, cols = flat // batch.width, flat % batch.width + 1
        inside = cols < batch.width
        inside[inside] = batch.attention_mask[rows[inside], cols[inside]].numpy() == 1
        ids = batch.input_ids[rows[inside], cols[inside]].numpy()
        out[batch.words[inside]] = ids
    return out


_NEXT_TOKENS = BoundedMemo(16)


def following_tokens(ctx: ModelContext) -> np.ndarray:
    """`next_token_ids` of the context's test words under `last` pooling, once per process: the same
    for every layer and every method of the task form."""
    return _NEXT_TOKENS.get(ctx.key, lambda: next_token_ids(model_inputs(
        ctx.loaded, ctx.sentences["test"], ctx.words["test"], "last", batch_size=ctx.batch_size)))


# --- the frozen final-layer head -----------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class FinalHead:
    """Linear head on z-scored clean final-layer pooled word states (reference.md#metric-causal).

    z = (h − mean) / scale with train statistics (dead dimensions get z = 0), then the L2 logistic
    probe of `bench.probe` (C chosen on dev); frozen. One logit l for two classes reads as the
    softmax over [0, l].
    """

    probe: LogisticProbe
    mean: np.ndarray
    scale: np.ndarray
    C: float
    dev_accuracy: float

    @property
    def n_classes(self) -> int:
        return self.probe.n_classes

    def log_prob(self, states: torch.Tensor) -> torch.Tensor:
        """(..., C) log p(c | h) for final states (..., D_final), differentiable in torch."""
        kw = {"device": states.device, "dtype": states.dtype}
        z = (states - torch.as_tensor(self.mean, **kw)) / torch.as_tensor(self.scale, **kw)
        logits = z @ torch.as_tensor(self.probe.W, **kw).T + torch.as_tensor(self.probe.b, **kw)
        if logits.shape[-1] == 1:
            logits = torch.cat([torch.zeros_like(logits), logits], dim=-1)
        return torch.log_softmax(logits, dim=-1)

    def predict(self, states: torch.Tensor) -> np.ndarray:
        """int64 class ids (ties to the lower id, as `LogisticProbe.predict`)."""
        with torch.inference_mode():
            return self.log_prob(states).argmax(dim=-1).cpu().numpy().astype(np.int64)

    def gold_log_prob(self, states: torch.Tensor, gold) -> torch.Tensor:
        """(...,) log p(gold | h); `gold` broadcasts against the leading dimensions of states."""
        logp = self.log_prob(states)
        gold = (gold if isinstance(gold, torch.Tensor) else torch.as_tensor(np.asarray(gold)))
        gold = gold.to(device=logp.device, dtype=torch.long)
        return torch.gather(logp, -1, gold.expand(logp.shape[:-1]).unsqueeze(-1)).squeeze(-1)


def fit_head(final_train: np.ndarray, y_train, final_dev: np.ndarray, y_dev, n_classes: int) -> FinalHead:
    """Fit the frozen head on clean final states of train words, C chosen by dev accuracy."""
    final_train = np.asarray(final_train, dtype=np.float64)
    mean, std = final_train.mean(axis=0), final_train.std(axis=0)
    scale = np.where(std > DEAD_TOLERANCE * np.median(std), std, np.inf)
    z_train = ((final_train - mean) / scale).astype(np.float32)
    z_dev = ((np.asarray(final_dev, dtype=np.float64) - mean) / scale).astype(np.float32)
    probe, C = fit_select(z_train, y_train, z_dev, y_dev, n_classes)
    head = FinalHead(probe=probe, mean=mean.astype(np.float32), scale=scale.astype(np.float32), C=C,
                     dev_accuracy=accuracy(probe, z_dev, y_dev))
    log.info("final-layer head: C=%g, train acc %.3f, dev acc %.3f", C,
             accuracy(probe, z_train, y_train), head.dev_accuracy)
    return head


# --- what the runner passes to model-based methods -------------------------------------------------

@dataclass(frozen=True, eq=False)
class ModelContext:
    """Everything a model-based method needs beside X and y; passed as `rank(X, y, model=context)`.

    `words[split]` is the (sentence, word) of every example row of that split, in the row order of
    X/y; `y[split]` the class ids. `final[split]`, if given, are the clean final-layer pooled states
    of those rows (e.g. the activation cache's hidden layer L) and spare the head one forward pass;
    `head`, if given, is used instead of fitting one. `at(site, layer)` names the cell. `labels` are
    the form's class names (class id order); `family`, for a concept job, is the context of the same
    task's multi-class form, whose per-class head the off-target readout (`causal_tpp`) reads. `pairs` is the
    task's minimal-pair declaration (its meta's `minimal_pairs`), which the behavioural scorer reads.
    """

    loaded: LoadedModel
    sentences: dict[str, list[list[str]]]
    words: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    n_classes: int
    pooling: str
    key: str
    site: str | None = None
    layer: int | None = None
    final: dict[str, np.ndarray] | None = None
    head: FinalHead | None = None
    batch_size: int = 32
    labels: tuple[str, ...] = ()
    family: ModelContext | None = None
    pairs: dict | None = None

    def at(self, site: str, layer: int) -> ModelContext:
        _check_site(self.loaded, site, layer)
        family = self.family.at(site, layer) if self.family is not None else None
        return dataclasses.replace(self, site=site, layer=layer, family=family)

    def cell(self) -> tuple[str, int]:
        if self.site is None or self.layer is None:
            raise NeuronbenchError("the model context names no cell: pass context.at(site, layer)")
        return self.site, self.layer

    def inputs(self, split: str, rows=None, **kwargs) -> ModelInputs:
        """`model_inputs` for example rows `rows` (default all) of `split`."""
        words = self.words[split] if rows is None else self.words[split][rows]
        return model_inputs(self.loaded, self.sentences[split], words, self.pooling,
                            **{"batch_size": self.batch_size, **kwargs})


def word_refs(sentences: list[list[str]], flat_rows) -> np.ndarray:
    """(N, 2) (sentence, word in sentence) of rows of the split's flattened word list."""
    lengths = np.array([len(s) for s in sentences], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    flat_rows = np.asarray(flat_rows, dtype=np.int64)
    sentence = np.searchsorted(starts, flat_rows, side="right") - 1
    # empty sentences share a start with the next one; searchsorted "right" picks the last of them
    return np.stack([sentence, flat_rows - starts[sentence]], axis=1)


def model_context(task, examples, loaded: LoadedModel, *, pooling: str, site: str | None = None,
                  layer: int | None = None, final: dict[str, np.ndarray] | None = None,
                  batch_size: int = 32, family=None) -> ModelContext:
    """The context of one job from what `bench.run` already holds: the task (sentences per split),
    the task form's `Examples` (rows of each split's flattened word list, labels), the loaded model
    and the pooling; `site`/`layer` may be set here or per cell with `.at(site, layer)`. `family`:
    the `Examples` of the task's multi-class form, for a concept job (becomes `context.family`)."""
    splits = tuple(examples.index)
    words = {s: word_refs(task.sentences[s], examples.index[s]) for s in splits}
    y = {s: np.asarray(examples.y[s], dtype=np.int64) for s in splits}
    digest = hashlib.sha256()
    for part in (loaded.name, loaded.extraction_id, pooling, str(examples.n_classes), task.corpus_id):
        digest.update(part.encode() + b"\0")
    for s in splits:
        digest.update(s.encode())
        digest.update(words[s].tobytes())
        digest.update(y[s].tobytes())
    family_ctx = (model_context(task, family, loaded, pooling=pooling, batch_size=batch_size)
                  if family is not None else None)
    ctx = ModelContext(loaded=loaded, sentences={s: task.sentences[s] for s in splits}, words=words,
                       y=y, n_classes=examples.n_classes, pooling=pooling, key=digest.hexdigest(),
                       final=final, batch_size=batch_size, labels=tuple(examples.label_names),
                       family=family_ctx, pairs=task.meta.get("minimal_pairs"))
    return ctx.at(site, layer) if site is not None else ctx


_HEADS = BoundedMemo(16)


def clean_final(ctx: ModelContext, split: str) -> np.ndarray:
    """Clean final-layer pooled states of every example row of `split`."""
    if ctx.final is not None and split in ctx.final:
        states = np.asarray(ctx.final[split], dtype=np.float32)
        if len(states) != len(ctx.words[split]):
            raise NeuronbenchError(f"final states of {split}: {len(states)} rows for "
                                   f"{len(ctx.words[split])} examples")
        return states
    return run_with_edit(ctx.loaded, ctx.inputs(split)).cpu().numpy()


def final_head(ctx: ModelContext) -> FinalHead:
    """The frozen head of the context's (task form, model, pooling), fitted once per process."""
    if ctx.head is not None:
        return ctx.head

    def fit() -> FinalHead:
        started = time.perf_counter()
        head = fit_head(clean_final(ctx, "train"), ctx.y["train"], clean_final(ctx, "dev"), ctx.y["dev"],
                        ctx.n_classes)
        log.info("final-layer head for %s fitted in %.1fs", ctx.loaded.name, time.perf_counter() - started)
        return head

    return _HEADS.get(ctx.key, fit)


# --- batched sweeps ------------------------------------------------------------------------------

def mean_gold_log_prob(loaded: LoadedModel, inputs: ModelInputs, head: FinalHead, gold,
                       site: str | None = None, layer: int | None = None, edit: Edit | None = None) -> float:
    """Mean log p(gold | final pooled state) over the target words under an edit (None: clean)."""
    states = run_with_edit(loaded, inputs, site, layer, edit)
    with torch.inference_mode():
        return float(head.gold_log_prob(states, gold).double().mean())


def ablation_sweep(loaded: LoadedModel, inputs: ModelInputs, site: str, layer: int, neurons, values,
                   head: FinalHead, gold, block: int = 64) -> np.ndarray:
    """Mean gold log-probability when each neuron of `neurons` *alone* is set to its `values` entry
    at every edited piece, (len(neurons),) float64 (reference.md#method-ablate-single).

    Each forward carries one sentence batch replicated over a block of `block` neurons (replicate r
    edits neuron r of the block); use one-sentence batches so the layers below run once per block.
    """
    _check_site(loaded, site, layer)
    neurons = np.asarray(neurons, dtype=np.int64)
    values = np.asarray(values, dtype=np.float32)
    gold = np.asarray(gold, dtype=np.int64)
    totals = np.zeros(len(neurons), dtype=np.float64)
    with torch.inference_mode():
        for batch in inputs.batches:
            n_pieces = len(batch.piece_rows)
            batch_gold = torch.as_tensor(gold[batch.words])
            for start in range(0, len(neurons), block):
                J = torch.as_tensor(neurons[start:start + block])
                V = torch.as_tensor(values[start:start + block])
                n_rep = len(J)

                def edit(h4, J=J, V=V, n_rep=n_rep, batch=batch):
                    h4 = h4.clone()  # materializes an in-hook expansion
                    if n_pieces:
                        dev = h4.device
                        rep = torch.arange(n_rep, device=dev).repeat_interleave(n_pieces)
                        rows = batch.piece_rows.to(dev).repeat(n_rep)
                        cols = batch.piece_cols.to(dev).repeat(n_rep)
                        neuron = J.to(dev).repeat_interleave(n_pieces)
                        h4[rep, rows, cols, neuron] = V.to(dev, h4.dtype).repeat_interleave(n_pieces)
                    return h4

                pooled = _forward_replicated(loaded, batch, site, layer, n_rep, edit)
                logp = head.gold_log_prob(pooled, batch_gold.to(pooled.device))  # (n_rep, n)
                totals[start:start + n_rep] += logp.double().sum(dim=1).cpu().numpy()
    return totals / max(inputs.n_words, 1)


@dataclass(frozen=True)
class IGResult:
    """Per-word, per-neuron attributions (N, D) and the target's probability at input and baseline."""

    attributions: np.ndarray
    f_input: np.ndarray
    f_baseline: np.ndarray

    @property
    def completeness_gap(self) -> np.ndarray:
        """|Σ_j A_ij − (F(x_i) − F(b))| per word."""
        return np.abs(self.attributions.sum(axis=1) - (self.f_input - self.f_baseline))


def integrated_gradients(loaded: LoadedModel, inputs: ModelInputs, site: str, layer: int, head: FinalHead,
                         targets, baseline, alphas) -> IGResult:
    """Integrated gradients of F = p(target | h_L) w.r.t. the (site, layer) activations of each word
    (reference.md#method-ig, `ig_head`).

    `inputs` must hold one target word per row (`per_word=True`). Along the path, all neurons at all
    pieces of the word move together, `b + α (x − b)`, other positions stay clean; gradients come
    from autograd through the later layers. Neuron j's attribution sums over the word's pieces:
    `A_j = Σ_p (x_pj − b_j) · mean_s ∂F/∂x_pj (b + α_s (x − b))`, so `Σ_j A_j ≈ F(x) − F(b)`.
    """
    if not inputs.per_word:
        raise NeuronbenchError("integrated_gradients needs one target word per row (per_word=True)")
    _check_site(loaded, site, layer)
    targets = np.asarray(targets, dtype=np.int64)
    steps = len(alphas)
    path_alphas = torch.as_tensor(np.concatenate([np.asarray(alphas, dtype=np.float64), [0.0, 1.0]]),
                                  dtype=torch.float32)
    n_rep = steps + 2  # the path, then the baseline and the input themselves
    attributions, f_input, f_baseline = None, np.zeros(inputs.n_words), np.zeros(inputs.n_words)
    with torch.inference_mode(False), torch.enable_grad():
        for batch in inputs.batches:
            grabbed = {}

            def edit(h4, batch=batch, grabbed=grabbed):
                h4 = h4.detach()
                dev = h4.device
                rows, cols = batch.piece_rows.to(dev), batch.piece_cols.to(dev)
                n_pieces = len(rows)
                x = h4[0, rows, cols]  # (P, D) clean
                b = torch.as_tensor(baseline, dtype=h4.dtype, device=dev)
                a = path_alphas.to(dev, h4.dtype)[:, None, None]
                path = (b + a * (x - b)).requires_grad_(True)  # (n_rep, P, D)
                grabbed.update(path=path, offset=x - b)
                rep = torch.arange(n_rep, device=dev).repeat_interleave(n_pieces)
                return h4.index_put((rep, rows.repeat(n_rep), cols.repeat(n_rep)),
                                    path.reshape(-1, path.shape[-1]))

            pooled = _forward_replicated(loaded, batch, site, layer, n_rep, edit)  # (n_rep, S, Dm)
            gold = torch.as_tensor(targets[batch.words], device=pooled.device)
            prob = head.gold_log_prob(pooled, gold).exp()  # (n_rep, S)
            (grad,) = torch.autograd.grad(prob[:steps].sum(), grabbed["path"])
            per_piece = (grabbed["offset"] * grad[:steps].mean(dim=0)).double()  # (P, D)
            per_word = torch.zeros((batch.n_rows, per_piece.shape[1]), dtype=torch.float64,
                                   device=per_piece.device)
            per_word.index_add_(0, batch.piece_word.to(per_piece.device), per_piece)
            if attributions is None:
                attributions = np.zeros((inputs.n_words, per_piece.shape[1]))
            attributions[batch.words] = per_word.detach().cpu().numpy()
            f_baseline[batch.words] = prob[steps].detach().double().cpu().numpy()
            f_input[batch.words] = prob[steps + 1].detach().double().cpu().numpy()
    if attributions is None:
        attributions = np.zeros((0, len(np.atleast_1d(baseline))))
    return IGResult(attributions=attributions, f_input=f_input, f_baseline=f_baseline)
