"""Word-level activations of the words a job reads, pooled over subwords, cached on disk.

Words are aligned to subwords by the character offsets of the space-joined sentence, which works
for WordPiece and byte-level BPE alike (reference.md#data-pooling). Which words can have activations
(`word_validity`) follows from tokenization alone, so a job selects its examples before any forward
pass; `extract` then runs only the sentences that hold a selected word and that some requested
(site, layer) cell does not store yet, once each: one forward pass yields every layer the cells need,
and stops after the deepest of them. Every word of a run sentence is stored in each cell that lacked
it (another seed's selection in the same sentences costs nothing), streamed into the cell's next file
(bench.cache.CellWriter), which replaces the old one whole. Batches are shaped as a whole-split
extraction shapes them (`_batches`), so the rows are bit-identical to extracting every sentence.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.cache import ActivationCache, BoundedMemo, CellWriter, atomic_save_npy, cell_dtype, npy_fault
from bench.core.types import SPLITS, Task
from bench.errors import NeuronbenchError
from bench.models import FFN_OUTPUT_PROJECTION, LoadedModel
from bench.progress import Progress

log = logging.getLogger(__name__)
POOLINGS = ("first", "last", "mean")
FLOAT16_MAX = float(np.finfo(np.float16).max)


def align_words(words: list[str], offsets: np.ndarray) -> np.ndarray:
    """Word index of each token (-1 for special tokens), from its character span in " ".join(words).

    A token belongs to the word holding its last character, so a leading-space BPE piece
    ("Ġword") still lands on its word.
    """
    lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
    last_char = offsets[:, 1] - 1
    word = np.searchsorted(starts, last_char, side="right") - 1
    inside = (offsets[:, 1] > offsets[:, 0]) & (word >= 0)
    inside &= last_char < starts[np.clip(word, 0, None)] + lengths[np.clip(word, 0, None)]
    return np.where(inside, word, -1)


def pool(states: np.ndarray, word_of_row: np.ndarray, pooling: str) -> tuple[np.ndarray, np.ndarray]:
    """Pool token rows into word rows. Rows of one word are contiguous; returns (words, pooled)."""
    change = np.flatnonzero(np.diff(word_of_row)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(word_of_row)]])
    words = word_of_row[starts]
    if pooling == "first":
        return words, states[starts]
    if pooling == "last":
        return words, states[ends - 1]
    return words, np.add.reduceat(states, starts, axis=0) / (ends - starts)[:, None]


@contextlib.contextmanager
def ffn_capture(loaded: LoadedModel, layers: list[int], sink: dict[int, torch.Tensor]):
    """Record the input of each block's FFN output projection as (B, T, D), whatever the layout the
    blocks run in; hooks are removed even on error."""
    handles = []
    try:
        for layer in layers:
            def hook(_module, args, layer=layer):
                sink[layer] = args[0].transpose(0, 1) if loaded.sequence_first else args[0]
            handles.append(loaded.ffn_module(layer).register_forward_pre_hook(hook))
        yield sink
    finally:
        for handle in handles:
            handle.remove()


class _Enough(Exception):
    """Raised by a hook once a forward pass has reached the deepest layer its batch needs."""


def _block(loaded: LoadedModel, index: int) -> torch.nn.Module | None:
    """Block `index` (0-based) of the model, or None for an architecture the FFN table does not map."""
    path = FFN_OUTPUT_PROJECTION.get(loaded.model.config.model_type)
    return None if path is None else loaded.model.get_submodule(path.split("{i}")[0] + str(index))


@contextlib.contextmanager
def block_inputs(loaded: LoadedModel, layers: list[int], sink: dict[int, torch.Tensor], stop: int):
    """Record hidden layer l of `layers` (the input of block l: hidden_states[l] for l < n_layers) as
    (B, T, D), and end the forward pass at the input of block `stop` by raising _Enough; hooks are
    removed even on error."""
    handles = []
    try:
        for layer in sorted({*layers, stop}):
            def hook(_module, args, layer=layer):
                if not args:
                    raise NeuronbenchError(f"model {loaded.name!r}: block {layer} got its hidden states by "
                                           "keyword; bench.extract.block_inputs reads them positionally")
                if layer in layers:
                    sink[layer] = args[0].transpose(0, 1) if loaded.sequence_first else args[0]
                if layer == stop:
                    raise _Enough
            handles.append(_block(loaded, layer).register_forward_pre_hook(hook))
        yield sink
    finally:
        for handle in handles:
            handle.remove()


def tokenize_words(loaded: LoadedModel, sentences: list[list[str]]):
    """Token ids and the word of each token, per sentence; BOS first for decoders."""
    tok = loaded.tokenizer
    enc = tok([" ".join(s) for s in sentences], return_offsets_mapping=True, add_special_tokens=True,
              verbose=False)
    ids, words = [], []
    bos = tok.bos_token_id
    for sent, token_ids, offsets in zip(sentences, enc["input_ids"], enc["offset_mapping"]):
        offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        word = align_words(sent, offsets)
        if loaded.decoder and bos is not None and (not token_ids or token_ids[0] != bos):
            token_ids, word = [bos, *token_ids], np.concatenate([[-1], word])
        ids.append(token_ids)
        words.append(word)
    return ids, words


_TOKENS = BoundedMemo(6)  # a job tokenizes a split once for validity and again for the sentences it runs


def _tokens(loaded: LoadedModel, task: Task, split: str):
    """(token ids, word of each token) of every sentence of the split, tokenized once per process."""
    return _TOKENS.get((loaded.name, loaded.revision, task.corpus_id, split),
                       lambda: tokenize_words(loaded, task.sentences[split]))


def _first_words(sentences: list[list[str]]) -> np.ndarray:
    """Index of each sentence's first word among the split's words, then the split's word count."""
    return np.concatenate([[0], np.cumsum([len(s) for s in sentences])]).astype(np.int64)


def word_validity(loaded: LoadedModel, task: Task, cache: ActivationCache, pooling: str) -> dict[str, np.ndarray]:
    """Per split, which words can have activations: a word with a subword piece, in a sentence of at most
    max_tokens tokens. It follows from tokenization alone, so it is computed (seconds on EWT) and cached in
    the entry's `<split>/valid.npy` before any forward pass; a damaged file is computed again."""
    entry = cache.entry(loaded.name, loaded.extraction_id, task.corpus_id, pooling)
    valid = {}
    for split in SPLITS:
        path = cache.valid_path(entry, split)
        n_words = int(_first_words(task.sentences[split])[-1])
        fault = npy_fault(path, np.bool_, (n_words,))
        if fault is None:
            valid[split] = np.load(path, allow_pickle=False)
            continue
        if fault != "missing":
            log.warning("activation cache file %s: %s; computing it again", path, fault)
        ids, token_words = _tokens(loaded, task, split)
        first = _first_words(task.sentences[split])
        fits = np.array([len(t) <= loaded.max_tokens for t in ids], dtype=bool)
        if (~fits).any():
            log.warning("%s: %d sentences longer than %d tokens are dropped whole", split,
                        int((~fits).sum()), loaded.max_tokens)
        mask = np.zeros(n_words, dtype=bool)
        for s in np.flatnonzero(fits):
            local = token_words[s]
            mask[local[local >= 0] + first[s]] = True
        atomic_save_npy(path, mask)  # racing jobs write the same bytes
        valid[split] = mask
    return valid


def extract(loaded: LoadedModel, task: Task, cache: ActivationCache, *, sites: list[str] | None = None,
            cells: list[tuple[str, int]] | None = None, words: dict[str, np.ndarray] | None = None,
            pooling: str = "last", batch_size: int = 32, quiet: bool = False) -> Path:
    """Make the entry of (model, task corpus, pooling) hold what a job reads; return the entry path.

    `cells`: the (site, layer) cells to fill (default: every layer of each site of `sites`). `words`: per
    split, the word indices the job reads (a split left out reads none); default: every word of every
    split. Each cell gets every valid word of each sentence that holds one of `words`, and only what it
    lacks is extracted: a sentence runs once for all the cells that lack it, and stored rows are never
    recomputed. A cell that holds everything is reused without loading a batch; a damaged cell file
    (header, size or word index) is named and extracted again. A full disk is one NeuronbenchError.
    """
    if pooling not in POOLINGS:
        raise NeuronbenchError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
    if loaded.decoder and pooling != "last":
        raise NeuronbenchError(f"model {loaded.name!r} is a decoder: pooling must be 'last' "
                               "(reference.md#data-pooling)")
    if cells is None:
        cells = [(site, layer) for site in sites for layer in loaded.layers(site)]
    for site, layer in cells:
        if layer not in loaded.layers(site):
            raise NeuronbenchError(f"model {loaded.name!r} has no layer {layer} at site {site!r}; its layers "
                                   f"there are {loaded.layers(site)}")
    cells = sorted(set(cells))
    entry = cache.entry(loaded.name, loaded.extraction_id, task.corpus_id, pooling)
    valid = word_validity(loaded, task, cache, pooling)
    need = {split: _needed_words(task.sentences[split], valid[split],
                                 None if words is None else words.get(split, ())) for split in SPLITS}

    stored_rows: dict[tuple[str, str, int], int] = {}

    def missing(warn: bool) -> dict[str, dict[tuple[str, int], np.ndarray]]:
        """Per split, the needed words each cell lacks (a damaged cell lacks all: warned and removed)."""
        plan = {}
        for split in SPLITS:
            if not len(need[split]):
                continue
            n_words = len(valid[split])
            for site, layer in cells:
                stored, fault = cache.stored_words(entry, split, site, layer, loaded.width(site), n_words)
                if fault is not None and warn:
                    path = cache.layer_path(entry, split, site, layer)
                    log.warning("activation cache file %s: %s; extracting it again", path, fault)
                    path.unlink(missing_ok=True)
                lacking = np.setdiff1d(need[split], stored, assume_unique=True)
                stored_rows[(split, site, layer)] = len(stored)
                if len(lacking) or fault is not None:
                    plan.setdefault(split, {})[(site, layer)] = lacking if fault is None else need[split]
        return plan

    if not missing(warn=False):
        log.info("activation cache hit: %s", entry)
        return entry
    with cache.filling(entry):
        cache.clean_partials(entry)  # a killed fill's leftovers: they would only take room
        plan = missing(warn=True)  # another job may have filled some of it meanwhile
        if not plan:
            log.info("activation cache filled by another job: %s", entry)
            return entry
        started = time.perf_counter()
        n_words = n_sentences = 0
        for split, todo in plan.items():
            n_run, n_stored = _extract_split(loaded, task, entry, split, todo, stored_rows, pooling, batch_size,
                                             quiet, cache)
            n_sentences, n_words = n_sentences + n_run, n_words + n_stored
        elapsed = time.perf_counter() - started
    n_cells = len({cell for todo in plan.values() for cell in todo})
    log.info("extracted %d sentences (%d word rows over %d cells) in %.1fs", n_sentences, n_words, n_cells,
             elapsed)
    return entry


def _needed_words(sentences: list[list[str]], valid: np.ndarray, words) -> np.ndarray:
    """The valid words of every sentence that holds one of `words` (None: of every sentence), sorted."""
    if words is None:
        return np.flatnonzero(valid)
    words = np.asarray(words, dtype=np.int64)
    if not len(words):
        return np.zeros(0, dtype=np.int64)
    first = _first_words(sentences)
    if words.min() < 0 or words.max() >= first[-1]:
        raise NeuronbenchError(f"extract: word indices {words.min()}..{words.max()} outside the split's "
                               f"{first[-1]} words")
    chosen = np.zeros(len(sentences), dtype=bool)
    chosen[np.searchsorted(first, words, side="right") - 1] = True
    sentence_of_word = np.repeat(np.arange(len(sentences)), np.diff(first))
    return np.flatnonzero(chosen[sentence_of_word] & valid)


def _extract_split(loaded, task, entry, split, todo, stored_rows, pooling, batch_size, quiet,
                   cache) -> tuple[int, int]:
    """Run the sentences holding the words `todo` lacks ({cell: words}) and put those words' rows into each
    cell's next file (old rows: stored_rows[(split, site, layer)]); returns (sentences run, rows added)."""
    sentences = task.sentences[split]
    ids, token_words = _tokens(loaded, task, split)
    first = _first_words(sentences)
    lacking = np.unique(np.concatenate(list(todo.values())))
    run = np.unique(np.searchsorted(first, lacking, side="right") - 1)
    batches = _batches(run, np.array([len(t) for t in ids], dtype=np.int64), loaded.max_tokens, batch_size)
    width = {site: loaded.width(site) for site, _ in todo}
    needed = sum((stored_rows[(split, *cell)] + len(new)) * cell_dtype(width[cell[0]]).itemsize
                 for cell, new in todo.items())
    free = shutil.disk_usage(entry.parent if entry.parent.exists() else cache.root).free
    writers: dict[tuple[str, int], CellWriter] = {}
    try:
        for (site, layer), new in todo.items():
            writers[(site, layer)] = cache.grow(entry, split, site, layer, width[site], new)
        _run_batches(loaded, ids, token_words, first, batches, writers, pooling, split, len(sentences), quiet)
        for writer in writers.values():
            writer.commit()
    except BaseException as error:
        for writer in writers.values():
            writer.abort()
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            sites = ", ".join(dict.fromkeys(site for site, _ in todo))
            raise NeuronbenchError(
                f"no room for activations in the cache folder {cache.root}: extracting {sites} of "
                f"{loaded.name} ({split}) needs {needed:,} bytes, {free:,} are free; free space there or point "
                "cache_dir= (or NEURONBENCH_CACHE) at a disk with room") from error
        raise
    return len(run), sum(len(new) for new in todo.values())


def _batches(run: np.ndarray, lengths: np.ndarray, max_tokens: int,
             batch_size: int) -> list[tuple[np.ndarray, int, int]]:
    """Batches of the sentences `run` as (sentences, width, rows): shaped as each sentence's batch of a
    whole-split extraction (every sentence that fits, by length, `batch_size` at a time) is shaped.

    A word's activations depend on its batch through float32 rounding alone, and that rounding follows the
    batch's shape: the padded width (attention sums over it) and the row count (the matrix products split
    their work by it). Sentences of one whole-split width go together, padded to that width, and a short
    batch is filled up to its whole-split row count with copies of its first sentence (read by no cell), so
    rows come out as a whole-split extraction gives them, whichever sentences a job selected
    (tests/test_extract_selected.py). The filling costs about a quarter more tokens on UPOS's selection.
    """
    order = np.argsort(lengths, kind="stable")
    order = order[lengths[order] <= max_tokens]
    width = np.zeros(len(lengths), dtype=np.int64)
    rows = np.zeros(len(lengths), dtype=np.int64)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        width[chunk], rows[chunk] = lengths[chunk].max(), len(chunk)
    run = run[np.argsort(lengths[run], kind="stable")]  # the whole split's order, so widths never decrease
    batches = []
    for w in np.unique(width[run]):
        same = run[width[run] == w]
        batches += [(same[i:i + batch_size], int(w), int(rows[same[i:i + batch_size]].max()))
                    for i in range(0, len(same), batch_size)]
    return batches


def _run_batches(loaded, ids, token_words, first, batches, writers, pooling, split, n_sentences, quiet) -> None:
    """Forward each (sentences, width, rows) batch, attention-masked, as far as the deepest layer `writers`
    needs, and put the pooled rows of every cell."""
    hidden = sorted({layer for site, layer in writers if site == "hidden"})
    ffn_layers = sorted({layer for site, layer in writers if site == "mlp"})
    # Hidden layer l is the input of block l and mlp layer l lives in block l-1, so both are known at the
    # input of block l: the pass stops there, unless l is the last layer (hidden L is the model's output,
    # after its final norm where it has one), or the architecture's blocks are not mapped.
    stop = max([*hidden, *ffn_layers])
    early = stop < loaded.n_layers and _block(loaded, stop) is not None
    pad = loaded.tokenizer.pad_token_id or 0
    overflow = 0
    show = not quiet and sys.stderr.isatty()
    sink: dict[int, torch.Tensor] = {}
    hooks = block_inputs(loaded, hidden, {}, stop) if early else contextlib.nullcontext({})
    with torch.inference_mode(), ffn_capture(loaded, ffn_layers, sink), hooks as hidden_sink:
        progress = Progress(f"extract {split} ({sum(len(b) for b, _, _ in batches)} of {n_sentences} sentences), "
                            "batches", len(batches))
        for batch, width, n_rows in tqdm(batches, desc=f"extract {split}", disable=not show, unit="batch"):
            input_ids = torch.full((n_rows, width), pad, dtype=torch.long)
            mask = torch.zeros((n_rows, width), dtype=torch.long)
            word_of_token = np.full((n_rows, width), -1, dtype=np.int64)  # filler rows stay -1: read by no cell
            for row in range(n_rows):
                s = batch[row] if row < len(batch) else batch[0]
                n = len(ids[s])
                input_ids[row, :n] = torch.tensor(ids[s])
                mask[row, :n] = 1
                if row < len(batch):
                    local = token_words[s]
                    word_of_token[row, :n] = np.where(local >= 0, local + first[s], -1)
            input_ids, mask = input_ids.to(loaded.device), mask.to(loaded.device)
            if early:
                try:
                    loaded.model(input_ids=input_ids, attention_mask=mask)
                    raise NeuronbenchError(f"model {loaded.name!r}: the forward pass never reached block {stop}")
                except _Enough:
                    pass
                states_of = {("hidden", layer): hidden_sink[layer] for layer in hidden}
            else:
                out = loaded.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
                states_of = {("hidden", layer): out.hidden_states[layer] for layer in hidden}
            states_of |= {("mlp", layer): sink[layer] for layer in ffn_layers}
            flat_words = word_of_token.reshape(-1)
            rows = np.flatnonzero(flat_words >= 0)
            word_of_row = flat_words[rows]
            for cell, writer in writers.items():
                states = states_of[cell]
                states = states.reshape(-1, states.shape[-1])[torch.from_numpy(rows).to(states.device)]
                states = states.float().cpu().numpy()
                words, pooled = pool(states, word_of_row, pooling)
                overflow += int((np.abs(pooled) > FLOAT16_MAX).sum())
                writer.put(words, np.clip(pooled, -FLOAT16_MAX, FLOAT16_MAX))
            hidden_sink.clear()
            sink.clear()
            progress.advance()
    if overflow:
        log.warning("%s: %d activation values exceeded the float16 range and were clipped", split,
                    overflow)
