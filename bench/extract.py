"""Word-level activations for every layer and site of a model, pooled over subwords, cached on disk.

Words are aligned to subwords by the character offsets of the space-joined sentence, which works
for WordPiece and byte-level BPE alike (reference.md#data-pooling). One forward pass per batch
yields every layer of every site; each (split, site, layer) is streamed into a float16 memmap.
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

from bench.cache import ActivationCache, atomic_save_npy, reserved_memmap
from bench.core.types import SPLITS, Task
from bench.errors import NeuronbenchError
from bench.models import LoadedModel
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


def extract(loaded: LoadedModel, task: Task, cache: ActivationCache, *, sites: list[str],
            pooling: str = "last", batch_size: int = 32, quiet: bool = False) -> Path:
    """Fill the cache entry of (model, task corpus, pooling) for `sites`; return the entry path.

    A complete entry is reused without loading a batch; only missing sites, and sites with a damaged
    file (checked from headers and sizes), are extracted. A full disk is one NeuronbenchError.
    """
    if pooling not in POOLINGS:
        raise NeuronbenchError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
    if loaded.decoder and pooling != "last":
        raise NeuronbenchError(f"model {loaded.name!r} is a decoder: pooling must be 'last' "
                               "(reference.md#data-pooling)")
    entry = cache.entry(loaded.name, loaded.revision, task.corpus_id, pooling)
    layers = {site: loaded.layers(site) for site in sites}
    rows = {split: sum(map(len, task.sentences[split])) for split in SPLITS}

    def faults(site):
        return cache.site_faults(entry, site, layers[site], rows, loaded.width(site))

    if all(cache.is_complete(entry, s) and not faults(s) for s in sites):
        log.info("activation cache hit: %s", entry)
        return entry
    with cache.filling(entry):
        complete = [s for s in sites if cache.is_complete(entry, s)]  # another job may have filled them
        corrupt = {site: found for site in complete if (found := faults(site))}
        for site, found in corrupt.items():
            for path, fault in found:
                log.warning("activation cache file %s: %s; extracting site %r again", path, fault, site)
        todo = [s for s in sites if s not in complete or s in corrupt]
        if not todo:
            log.info("activation cache filled by another job: %s", entry)
            return entry
        cache.drop(entry, todo)  # corrupt files, a killed fill's leftovers: they would only take room
        needed = sum(rows.values()) * sum(len(layers[s]) * loaded.width(s) for s in todo) * 2
        free = shutil.disk_usage(entry.parent).free
        started = time.perf_counter()
        n_words = 0
        try:
            for split in SPLITS:
                n_words += _extract_split(loaded, task.sentences[split], entry, split,
                                          {s: layers[s] for s in todo}, pooling, batch_size, quiet, cache)
            elapsed = time.perf_counter() - started
            for site in todo:
                cache.mark_complete(entry, site, {"model": loaded.name, "revision": loaded.revision,
                                                  "task": task.name, "corpus_id": task.corpus_id,
                                                  "pooling": pooling, "site": site, "layers": layers[site],
                                                  "words": n_words, "seconds": round(elapsed, 2)})
        except BaseException as error:
            cache.drop(entry, todo)
            if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NeuronbenchError(
                    f"no room for activations in the cache folder {cache.root}: extracting "
                    f"{', '.join(todo)} of {loaded.name} needs {needed:,} bytes, {free:,} are free; free "
                    "space there or point cache_dir= (or NEURONBENCH_CACHE) at a disk with room") from error
            raise
    log.info("extracted %d words x %d sites in %.1fs (%.0f words/s)", n_words, len(todo), elapsed,
             n_words / max(elapsed, 1e-9))
    return entry


def _extract_split(loaded, sentences, entry, split, layers, pooling, batch_size, quiet, cache) -> int:
    ids, token_words = tokenize_words(loaded, sentences)
    n_per_sentence = np.array([len(s) for s in sentences], dtype=np.int64)
    first_word = np.concatenate([[0], np.cumsum(n_per_sentence)[:-1]])
    n_words = int(n_per_sentence.sum())
    lengths = np.array([len(t) for t in ids], dtype=np.int64)
    fits = lengths <= loaded.max_tokens
    if (~fits).any():
        log.warning("%s: %d sentences longer than %d tokens are dropped whole", split,
                    int((~fits).sum()), loaded.max_tokens)
    valid = np.zeros(n_words, dtype=bool)
    outputs, paths = {}, {}
    for site, site_layers in layers.items():
        for layer in site_layers:
            path = cache.layer_path(entry, split, site, layer)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.partial")
            paths[(site, layer)] = (tmp, path)
            outputs[(site, layer)] = reserved_memmap(tmp, (n_words, loaded.width(site)))
    order = np.argsort(lengths, kind="stable")
    order = order[fits[order]]
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    pad = loaded.tokenizer.pad_token_id or 0
    overflow = 0
    show = not quiet and sys.stderr.isatty()
    ffn_layers = layers.get("mlp", [])
    sink: dict[int, torch.Tensor] = {}
    with torch.inference_mode(), ffn_capture(loaded, ffn_layers, sink):
        progress = Progress(f"extract {split} ({len(sentences)} sentences), batches", len(batches))
        for batch in tqdm(batches, desc=f"extract {split}", disable=not show, unit="batch"):
            width = int(lengths[batch].max())
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            word_of_token = np.full((len(batch), width), -1, dtype=np.int64)
            for row, s in enumerate(batch):
                n = lengths[s]
                input_ids[row, :n] = torch.tensor(ids[s])
                mask[row, :n] = 1
                local = token_words[s]
                word_of_token[row, :n] = np.where(local >= 0, local + first_word[s], -1)
            out = loaded.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
            flat_words = word_of_token.reshape(-1)
            rows = np.flatnonzero(flat_words >= 0)
            word_of_row = flat_words[rows]
            for (site, layer) in outputs:
                states = out.hidden_states[layer] if site == "hidden" else sink[layer]
                states = states.reshape(-1, states.shape[-1])[torch.from_numpy(rows)].float().numpy()
                words, pooled = pool(states, word_of_row, pooling)
                overflow += int((np.abs(pooled) > FLOAT16_MAX).sum())
                outputs[(site, layer)][words] = np.clip(pooled, -FLOAT16_MAX, FLOAT16_MAX)
                valid[words] = True
            progress.advance()
    if overflow:
        log.warning("%s: %d activation values exceeded the float16 range and were clipped", split,
                    overflow)
    for key, (tmp, path) in paths.items():
        outputs.pop(key).flush()
        tmp.replace(path)
    atomic_save_npy(entry / split / "valid.npy", valid)
    return n_words
