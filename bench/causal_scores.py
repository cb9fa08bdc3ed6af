"""Model-level scorers: causal ablation (head, LM and off-target readouts), interventions,
faithfulness, and the behavioural drop and interchange interventions on minimal pairs (reference.md#metric-causal,
#metric-interventions, #metric-faithfulness; addendum #metric-beh-drop, #metric-iia, #metric-ravel).

Each scorer has the shared signature `(ranking, data, ks, rng) -> list[Score]`, higher is better, and
reads the model through `data.context`: the `bench.intervene.ModelContext` of the job already
`.at(site, layer)` for the cell (None for planted tasks, which have no model). Every readout but `lm`'s,
`beh`'s and `interchange`'s is the frozen final-layer head of `bench.intervene.final_head` on the pooled final
states of test words; `READOUTS` names each scorer's, and the records carry it (`readout`). `beh` and
`interchange` read minimal pairs, not the job's test words.

Shared conventions:

- **Words**: a seeded sample (the cell's scorer generator) of at most `N_WORDS` = 500 test words,
  drawn once per scorer call and used for every k and every edit.
- **k cap** (`capped_ks`): the model-level curves use only the grid's k <= 100 plus round(10% of D),
  never more than D. A forward per (sentence, edit) is the cost; this bounds the edits per cell at
  about a dozen per curve whatever D is (reference.md: the causal cost is O(|K|·(1+R)·N_test·F_l)).
- **Train statistics at the site**: the raw train activations of the cell (means, class means,
  class medians). They come from `data.raw_train` (the cell's raw X["train"], rows in the
  context's train order), so no extra pass over the train words is needed (`tpp` alone runs one, over
  the multi-class form's train words).
- **Batching**: `model_inputs` once per scorer call with one sentence per forward; every edit of the
  call (all k, the random sets, the clean pass) is a replicate of that sentence made *inside* the site
  hook (`bench.intervene._forward_replicated`), so the layers below the site run once per sentence.
  Identical edits (e.g. k = D in faithfulness and the clean pass) share one replicate, so they agree
  exactly.

The `lm` readout and the `tpp` family head read other words than the job's sample (words followed
by a token; a class-stratified sample of the multi-class form's words); see each scorer.

Scorers and metrics:

- `causal`: mean-ablate the top-k neurons at all pieces of the sampled test words.
  `causal_drop@k` = A(clean) − A(ablated) (head accuracy), `causal_logp_drop@k` (mean gold
  log-probability drop), `causal_gain@k` = causal_drop@k − mean drop of R = 3 random k-sets (drawn from
  all D neurons with the scorer generator); `causal_drop_random@k`; areas over ln k
  (`causal_drop_auc`, `causal_gain_auc`) and `causal_clean_acc`. `value="zero"` (compat, via
  functools.partial) zero-ablates instead, with the same metric names.
- `lm`: the same ablation (top-k and R random k-sets, mean values) read by the model's own LM head on
  causal LMs with a tied output embedding: `causal_lm_drop@k` = rise of the next-token cross-entropy of
  the token after each word (nats), `causal_lm_gain@k` (minus the random sets' rise),
  `causal_lm_drop_random@k`, areas `causal_lm_drop_auc`, `causal_lm_gain_auc`, context
  `causal_lm_clean_loss`. No rows (reason logged) for models without such a head.
- `tpp`: off-target specificity of a concept job's ranking, SAEBench TPP style, read per class by the
  multi-class form's head: `causal_tpp@k` = intended − unintended recall drop, with the two parts and
  `causal_tpp_auc` (see `tpp` for the in-job design). No rows for multi-class jobs.
- `intervention`: `translate_success@k` (Antverg & Belinkov): every sampled test word of class v gets
  `h_S += α_S ⊙ (q_S(v') − q_S(v))`, q the train class means at the site, v' = the next class id
  cyclically (class ids follow sorted label order), α rank-scaled `α_r = β·(1e-3/β)^{r/(D−1)}`, β = 8,
  r the neuron's rank in the whole ranking; success = the head now predicts v'.
  `clamp_success@k` (Suau et al.): top-k neurons set to the train median (`on_p50`) of the target
  class at all pieces of the word. Concept form (2 classes): only the sampled NEGATIVE test words,
  target = the concept (class 1). Multi-class form: every sampled test word, target = the next class
  cyclically, as translation. Do-no-harm row `clamp_noharm@k`: head accuracy on words clamped to their
  own class's median (concept form: the sampled POSITIVE words, clamped to the concept). Score chances
  are the clean shares already predicting the target (the clean accuracy for `clamp_noharm`);
  `translate_auc`, `clamp_auc`, `clamp_noharm_auc` are the ln-k areas.
- `faithfulness`: budgets P = {0.1, ..., 100}% of D, k_p = max(1, round(p·D)); C_k keeps the top-k
  neurons and mean-ablates the rest at the word pieces, ∅ ablates all, N is clean;
  f(k) = (m(C_k) − m(∅)) / (m(N) − m(∅)), m the mean gold log-probability. `faith_cpr` = trapezoid
  area of f over p ∈ [0.001, 1] divided by the span 0.999 (so f ≡ 1 scores 1), `faith_cmd` = −(same
  area of |1 − f|), `faith_cpr_log` = the area over ln p normalized; `faith@k` the curve itself. NaN
  (and a warning) when |m(N) − m(∅)| < 1e-3.
- `beh`: the model's own logit difference on the task's minimal pairs under mean ablation of the top-k at
  the attribute word, minus random-k, on the concept's and on off-target pairs (see `beh`).
- `interchange`: the same pairs with the top-k patched from the other member (IIA beside random-k), and
  RAVEL's cause and isolation on pairs that cross number and tense (see `interchange`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from bench.cache import BoundedMemo
from bench.errors import NeuronbenchError
from bench.intervene import (FinalHead, ModelContext, ModelInputs, _forward_replicated, final_head, model_inputs,
                             following_tokens, site_states, tied_lm_head)
from bench.core.metrics import OWN, Metric
from bench.core.pairs import CrossedPairs
from bench.pair_readout import (ROLES, CrossedReadout, PairReadout, answer_ids, crossed_answer_ids, crossed_readout,
                                declared_pairs, pair_readout)
from bench.scorers import Score, log_area
from bench.seeds import sample_rows

log = logging.getLogger(__name__)

N_WORDS = 500
K_MAX = 100
K_FRACTION = 0.10
RANDOM_SETS = 3
BETA = 8.0
ALPHA_MIN = 1e-3
BUDGETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.10, 0.20, 0.50, 1.0)
FAITH_MIN_GAP = 1e-3
BLOCK = 64  # replicates (edits) per forward


# --- shared machinery ------------------------------------------------------------------------------

def _context(data, scorer: str) -> ModelContext:
    ctx = getattr(data, "context", None)
    if ctx is None:
        raise NeuronbenchError(f"scorer {scorer!r} needs the model; planted tasks have none "
                               "(or the runner passed no model context for this cell)")
    if not isinstance(ctx, ModelContext):
        raise NeuronbenchError(f"scorer {scorer!r}: data.context must be a bench.intervene.ModelContext, "
                               f"got {type(ctx).__name__}")
    ctx.cell()  # raises if the context names no cell
    n_test = len(data.examples.y["test"])
    if len(ctx.words["test"]) != n_test or not np.array_equal(ctx.y["test"], data.examples.y["test"]):
        raise NeuronbenchError(f"scorer {scorer!r}: the model context's test words do not match the "
                               f"cell's {n_test} test examples (another task form?)")
    return ctx


def capped_ks(ks, n_neurons: int) -> list[int]:
    """The k grid of the model-level curves: k <= 100 from `ks`, plus round(10% of D), within [0, D]."""
    grid = {int(k) for k in ks if 0 <= int(k) <= min(K_MAX, n_neurons)}
    grid.add(min(n_neurons, max(1, round(K_FRACTION * n_neurons))))
    return sorted(grid)


def _cell(data, ranking, scorer: str) -> tuple[ModelContext, str, int, int, np.ndarray]:
    """The cell's model context, site, layer and width, and the ranking checked against that width."""
    ctx = _context(data, scorer)
    site, layer = ctx.cell()
    n_neurons = ctx.loaded.width(site)
    ranking = np.asarray(ranking, dtype=np.int64)
    if ranking.shape != (n_neurons,) or not np.array_equal(np.sort(ranking), np.arange(n_neurons)):
        raise NeuronbenchError(f"scorer {scorer!r} needs a full ranking of all {n_neurons} neurons")
    return ctx, site, layer, n_neurons, ranking


def train_states(data, ctx: ModelContext) -> np.ndarray:
    """(N_train, D) raw train activations of the cell (LayerData.raw_train), checked against the context."""
    site, _ = ctx.cell()
    raw = np.asarray(data.raw_train, dtype=np.float32)
    if raw.shape != (len(ctx.words["train"]), ctx.loaded.width(site)):
        raise NeuronbenchError(f"data.raw_train has shape {raw.shape}; expected "
                               f"({len(ctx.words['train'])}, {ctx.loaded.width(site)})")
    return raw


@dataclass(frozen=True)
class EditSpec:
    """One replicate: `mode` "set" (to `table` values) or "add" (`table`) on the neurons in `mask`.

    `table` names an entry of the tables passed to `run_edits`: (D,) for every word or (N, D) per word
    (rows in ModelInputs word order; an interchange's per-example source states come in this way). An empty
    mask is the clean pass.
    """

    mode: str
    mask: np.ndarray
    table: str = ""


# A read-out of the pooled final states: (n_rep, n, D_final) states of the targets `words` (ModelInputs
# order) of one batch -> (n_rep, n, R) values.
Readout = Callable[[torch.Tensor, np.ndarray], torch.Tensor]


def head_readout(head: FinalHead) -> tuple[Readout, int]:
    """The frozen head's class log-probabilities as a `run_edits` read-out, and its width C."""
    return (lambda pooled, words: head.log_prob(pooled.float())), head.n_classes


def run_edits(ctx: ModelContext, inputs: ModelInputs, specs: list[EditSpec], tables: dict[str, np.ndarray],
              readout: tuple[Readout, int] | None = None) -> torch.Tensor:
    """(len(specs), N, n_out) read-outs of every target word under every edit, on CPU.

    `readout` is (read, n_out); None reads the context's frozen final-layer head (`head_readout`).
    `inputs` should hold one sentence per batch (in-hook replication); identical specs are run once.
    """
    read, n_out = readout or head_readout(final_head(ctx))
    site, layer = ctx.cell()
    keys, unique, index = {}, [], []
    for spec in specs:
        mask = np.asarray(spec.mask, dtype=bool)
        key = (spec.mode if mask.any() else "", spec.table if mask.any() else "", mask.tobytes())
        if key not in keys:
            keys[key] = len(unique)
            unique.append(EditSpec(spec.mode, mask, spec.table))
        index.append(keys[key])
    device = next(ctx.loaded.model.parameters()).device
    table_t = {name: torch.as_tensor(np.asarray(t, dtype=np.float32), device=device) for name, t in tables.items()}
    masks = torch.as_tensor(np.stack([s.mask for s in unique]), device=device)
    out = torch.zeros((len(unique), inputs.n_words, n_out), dtype=torch.float32)
    with torch.inference_mode():
        for batch in inputs.batches:
            rows, cols = batch.piece_rows.to(device), batch.piece_cols.to(device)
            piece_word = torch.as_tensor(batch.words, device=device)[batch.piece_word.to(device)]
            for start in range(0, len(unique), BLOCK):
                block = list(range(start, min(start + BLOCK, len(unique))))

                def edit(h4, block=block, rows=rows, cols=cols, piece_word=piece_word):
                    h4 = h4.clone()  # materializes the in-hook expansion
                    if len(rows) == 0:
                        return h4
                    for r, u in enumerate(block):
                        spec = unique[u]
                        if not spec.mask.any():
                            continue
                        x = h4[r, rows, cols]  # (P, D)
                        t = table_t[spec.table].to(x.dtype)
                        values = t[piece_word] if t.ndim == 2 else t.expand_as(x)
                        m = masks[u]
                        new = torch.where(m, values, x) if spec.mode == "set" else x + m * values
                        h4[r, rows, cols] = new
                    return h4

                pooled = _forward_replicated(ctx.loaded, batch, site, layer, len(block), edit)
                out[block[0]:block[-1] + 1, torch.as_tensor(batch.words)] = read(pooled, batch.words).float().cpu()
    return out[torch.as_tensor(index, dtype=torch.long)]


def _sample_inputs(ctx: ModelContext, rows: np.ndarray, edited=None) -> ModelInputs:
    return ctx.inputs("test", rows, batch_size=1, edited=edited)


def _top_mask(ranking: np.ndarray, k: int, n: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[ranking[:k]] = True
    return mask


def _gold_logp(logp: torch.Tensor, gold: np.ndarray) -> np.ndarray:
    """(E,) mean gold log-probability per edit from (E, N, C) log-probabilities."""
    g = torch.as_tensor(gold, dtype=torch.long)
    return logp.gather(-1, g.expand(logp.shape[:-1]).unsqueeze(-1)).squeeze(-1).double().mean(dim=1).numpy()


def _accuracy(logp: torch.Tensor, gold: np.ndarray) -> np.ndarray:
    return (logp.argmax(dim=-1).numpy() == np.asarray(gold)[None]).mean(axis=1)


def _auc(ks: list[int], values: list[float]) -> float:
    pairs = [(k, v) for k, v in zip(ks, values) if k >= 1]
    if not pairs:
        return float("nan")
    return log_area([k for k, _ in pairs], [v for _, v in pairs])


# --- causal ablation -------------------------------------------------------------------------------

def _ablation_specs(ranking: np.ndarray, grid: list[int], randoms: dict[int, list[np.ndarray]],
                    n: int) -> list[EditSpec]:
    """Clean pass, then per k the top-k set and its RANDOM_SETS random k-sets, all set to table "v"."""
    specs = [EditSpec("set", np.zeros(n, dtype=bool), "v")]
    for k in grid:
        specs.append(EditSpec("set", _top_mask(ranking, k, n), "v"))
        specs += [EditSpec("set", _top_mask(chosen, k, n), "v") for chosen in randoms[k]]
    return specs


def _drops(values: np.ndarray, grid: list[int]) -> tuple[list[float], list[float]]:
    """Per k, value(clean) − value(top-k ablated) and the mean of the same over the random k-sets,
    from per-edit values laid out as `_ablation_specs`."""
    per = 1 + RANDOM_SETS
    top = [float(values[0] - values[1 + i * per]) for i in range(len(grid))]
    random = [float(np.mean(values[0] - values[2 + i * per:1 + (i + 1) * per])) for i in range(len(grid))]
    return top, random


def causal(ranking, data, ks, rng, *, value: str = "mean") -> list[Score]:
    """causal_drop@k, causal_logp_drop@k, causal_gain@k (reference.md#metric-causal, head readout)."""
    if value not in ("mean", "zero"):
        raise NeuronbenchError(f"causal: value must be 'mean' or 'zero', got {value!r}")
    ctx, site, layer, n, ranking = _cell(data, ranking, "causal")
    started = time.perf_counter()
    grid = capped_ks(ks, n)
    rows = sample_rows(len(ctx.y["test"]), N_WORDS, rng)
    gold = ctx.y["test"][rows]
    randoms = {k: [rng.choice(n, size=k, replace=False) for _ in range(RANDOM_SETS)] for k in grid}
    values = (train_states(data, ctx).mean(axis=0) if value == "mean" else np.zeros(n, dtype=np.float32))
    specs = _ablation_specs(ranking, grid, randoms, n)
    logp = run_edits(ctx, _sample_inputs(ctx, rows), specs, {"v": values})
    acc, m = _accuracy(logp, gold), _gold_logp(logp, gold)
    drops, random_drops = _drops(acc, grid)
    logp_drops, random_logp_drops = _drops(m, grid)
    gains = [d - r for d, r in zip(drops, random_drops)]
    scores = [Score("causal_clean_acc", None, float(acc[0]))]
    for i, k in enumerate(grid):
        scores += [Score("causal_drop", k, drops[i], random_drops[i]),
                   Score("causal_logp_drop", k, logp_drops[i], random_logp_drops[i]),
                   Score("causal_gain", k, gains[i], 0.0),
                   Score("causal_drop_random", k, random_drops[i])]
    scores += [Score("causal_drop_auc", None, _auc(grid, drops)),
               Score("causal_gain_auc", None, _auc(grid, gains), 0.0)]
    log.info("causal %s L%d: %d words, %d edits, clean acc %.3f, %.1fs", site, layer, len(rows),
             len(specs), acc[0], time.perf_counter() - started)
    return scores


def lm(ranking, data, ks, rng) -> list[Score]:
    """causal_lm_drop@k: increase of the next-token cross-entropy of the token after each word when the
    top-k are mean-ablated at the word's pieces (reference.md#metric-causal, `lm` readout, causal LMs).

    Logits are the model's own: last_hidden_state (already final-normed) times the tied input embedding
    (`bench.intervene.tied_lm_head`). Models without such a head (encoders, untied decoders) emit no
    rows, with the reason logged. Words with no token after them (sentence-final, no EOS) are left out.
    """
    ctx, site, layer, n, ranking = _cell(data, ranking, "lm")
    weight, why_not = tied_lm_head(ctx.loaded)
    if weight is None:
        log.warning("lm %s L%d: skipped, model %s has no usable LM head: %s", site, layer, ctx.loaded.name, why_not)
        return []
    started = time.perf_counter()
    grid = capped_ks(ks, n)
    following = following_tokens(ctx)
    candidates = np.flatnonzero(following >= 0)
    if len(candidates) == 0:
        log.warning("lm %s L%d: skipped, no test word has a token after it", site, layer)
        return []
    rows = candidates[sample_rows(len(candidates), N_WORDS, rng)]
    randoms = {k: [rng.choice(n, size=k, replace=False) for _ in range(RANDOM_SETS)] for k in grid}
    specs = _ablation_specs(ranking, grid, randoms, n)
    inputs = model_inputs(ctx.loaded, ctx.sentences["test"], ctx.words["test"][rows], "last", batch_size=1)
    target = torch.as_tensor(following[rows])

    def read(pooled, batch_words):
        logp = torch.log_softmax((pooled @ weight.T).float(), dim=-1)  # (n_rep, n, V)
        token = target[batch_words].to(logp.device)
        return logp.gather(-1, token.expand(logp.shape[:-1]).unsqueeze(-1))

    ll = run_edits(ctx, inputs, specs, {"v": train_states(data, ctx).mean(axis=0)}, (read, 1))[..., 0]
    ll = ll.double().mean(dim=1).numpy()  # (E,) mean next-token log-probability
    drops, random_drops = _drops(ll, grid)  # a drop of log-probability = a rise of the loss
    gains = [d - r for d, r in zip(drops, random_drops)]
    scores = [Score("causal_lm_clean_loss", None, float(-ll[0]))]
    for i, k in enumerate(grid):
        scores += [Score("causal_lm_drop", k, drops[i], random_drops[i]),
                   Score("causal_lm_gain", k, gains[i], 0.0),
                   Score("causal_lm_drop_random", k, random_drops[i])]
    scores += [Score("causal_lm_drop_auc", None, _auc(grid, drops)),
               Score("causal_lm_gain_auc", None, _auc(grid, gains), 0.0)]
    log.info("lm %s L%d: %d words, %d edits, clean loss %.3f, %.1fs", site, layer, len(rows), len(specs),
             -ll[0], time.perf_counter() - started)
    return scores


def _tpp_rows(y: np.ndarray, n_classes: int, concept: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted seeded sample: half of `size` from the concept's class, the other half shared equally by the
    other classes (all rows of a smaller class), so intended and unintended get about equal precision."""
    half = -(-size // 2)
    picks = []
    for c in range(n_classes):
        members = np.flatnonzero(y == c)
        quota = half if c == concept else -(-half // (n_classes - 1))
        picks.append(members[sample_rows(len(members), quota, rng)])
    return np.sort(np.concatenate(picks))


def tpp(ranking, data, ks, rng) -> list[Score]:
    """causal_tpp@k: off-target specificity in the style of SAEBench's TPP (reference.md#metric-causal).

    In-job version: a job has one ranking, so only a concept job (`task.concept` set, one-vs-rest) has
    the S_i = S_k(π_i) chosen for one concept i that TPP needs. Its readout is the frozen final-layer
    head of the task's multi-class form (`context.family`), read per class: A_j = recall of class j
    (accuracy on test words of class j) over a class-stratified sample of the family's test words
    (250 of class i, 250 shared by the others). S_k is mean-ablated (means over a sample of 500 of the
    family's train words, so no class is favoured) at all sampled words; `causal_tpp_intended@k` = A_i(clean) −
    A_i(abl), `causal_tpp_unintended@k` = mean_{j≠i} [A_j(clean) − A_j(abl)], `causal_tpp@k` = their
    difference. SAEBench instead trains one binary probe per class and reads each on its own balanced
    test set, and averages over all concepts i of the family; here the mean over i is left to the board
    (one concept job per i). A multi-class job (one ranking for every class) emits no rows.
    """
    ctx, site, layer, n, ranking = _cell(data, ranking, "tpp")
    family = ctx.family
    if family is None:
        log.info("tpp %s L%d: skipped, a multi-class job has one ranking for every class and TPP needs one "
                 "per concept (run concept jobs, task.concept=<class>)", site, layer)
        return []
    concept = ctx.labels[-1]
    if concept not in family.labels:
        raise NeuronbenchError(f"tpp: concept {concept!r} is not a class of the task's multi-class form "
                               f"({', '.join(family.labels)})")
    c = family.labels.index(concept)
    started = time.perf_counter()
    grid = capped_ks(ks, n)
    rows = _tpp_rows(family.y["test"], family.n_classes, c, N_WORDS, rng)
    gold = family.y["test"][rows]
    train_rows = sample_rows(len(family.y["train"]), N_WORDS, rng)
    means = site_states(family.loaded, family.inputs("train", train_rows), site, layer).mean(axis=0)
    specs = [EditSpec("set", _top_mask(ranking, k, n), "v") for k in [0] + grid]
    logp = run_edits(family, _sample_inputs(family, rows), specs, {"v": means})
    predicted = logp.argmax(dim=-1).numpy()  # (E, N)
    recall = np.stack([(predicted[:, gold == j] == j).mean(axis=1) for j in range(family.n_classes)], axis=1)
    drop = recall[0] - recall[1:]  # (K, C)
    intended, unintended = drop[:, c], np.delete(drop, c, axis=1).mean(axis=1)
    specificity = intended - unintended
    scores = []
    for i, k in enumerate(grid):
        scores += [Score("causal_tpp", k, float(specificity[i]), 0.0),
                   Score("causal_tpp_intended", k, float(intended[i])),
                   Score("causal_tpp_unintended", k, float(unintended[i]))]
    scores.append(Score("causal_tpp_auc", None, _auc(grid, list(specificity)), 0.0))
    log.info("tpp %s L%d: concept %s of %d classes, %d words, %.1fs", site, layer, concept, family.n_classes,
             len(rows), time.perf_counter() - started)
    return scores


# --- interventions ---------------------------------------------------------------------------------

def rank_alpha(ranking: np.ndarray, beta: float = BETA) -> np.ndarray:
    """(D,) per-neuron α: α_r = β·(1e-3/β)^{r/(D−1)} for the neuron at rank r."""
    d = len(ranking)
    r = np.arange(d, dtype=np.float64)
    alpha_r = beta * (ALPHA_MIN / beta) ** (r / max(d - 1, 1))
    alpha = np.empty(d, dtype=np.float64)
    alpha[ranking] = alpha_r
    return alpha


def _class_stats(states: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(C, D) train means and medians per class at the site."""
    counts = np.bincount(y, minlength=n_classes)
    if np.any(counts == 0):
        raise NeuronbenchError(f"intervention: class(es) {np.flatnonzero(counts == 0).tolist()} have no "
                               "train words")
    means = np.stack([states[y == c].mean(axis=0, dtype=np.float64) for c in range(n_classes)])
    medians = np.stack([np.median(states[y == c], axis=0) for c in range(n_classes)])
    return means, medians


def intervention(ranking, data, ks, rng) -> list[Score]:
    """translate_success@k, clamp_success@k and the do-no-harm row clamp_noharm@k
    (reference.md#metric-interventions)."""
    ctx, site, layer, n, ranking = _cell(data, ranking, "intervention")
    started = time.perf_counter()
    grid = capped_ks(ks, n)
    n_classes = ctx.n_classes
    rows = sample_rows(len(ctx.y["test"]), N_WORDS, rng)
    y = ctx.y["test"][rows]
    target = (y + 1) % n_classes
    means, medians = _class_stats(train_states(data, ctx), ctx.y["train"], n_classes)
    alpha = rank_alpha(ranking)
    masks = [np.zeros(n, dtype=bool)] + [_top_mask(ranking, k, n) for k in grid]
    if n_classes == 2:  # concept form: negatives clamped to the concept (success), positives too (no harm)
        clamp_rows, keep_rows = rows[y == 0], rows[y == 1]
        clamp_target, keep_gold = np.ones(len(clamp_rows), np.int64), np.ones(len(keep_rows), np.int64)
    else:  # multi-class: every word to the next class (success) and to its own class (no harm)
        clamp_rows, clamp_target, keep_rows, keep_gold = rows, target, rows, y
    # (edit mode, table name, per-word table, rows, gold): one curve each, the first mask being the clean pass
    curves = {"translate_success": ("add", "delta", alpha[None] * (means[target] - means[y]), rows, target),
              "clamp_success": ("set", "median", medians[clamp_target], clamp_rows, clamp_target),
              "clamp_noharm": ("set", "own", medians[keep_gold], keep_rows, keep_gold)}
    by_rows: dict[bytes, list[str]] = {}  # curves on the same words share one pass
    for name, (_, _, _, curve_rows, _) in curves.items():
        by_rows.setdefault(curve_rows.tobytes(), []).append(name)
    values = {}
    for names in by_rows.values():
        curve_rows = curves[names[0]][3]
        if len(curve_rows) == 0:
            log.warning("intervention %s L%d: no test word sampled for %s; NaN", site, layer, ", ".join(names))
            values.update({name: np.full(len(masks), np.nan) for name in names})
            continue
        specs = [EditSpec(curves[name][0], m, curves[name][1]) for name in names for m in masks]
        logp = run_edits(ctx, _sample_inputs(ctx, curve_rows), specs,
                         {curves[name][1]: curves[name][2] for name in names})
        for i, name in enumerate(names):
            values[name] = _accuracy(logp[i * len(masks):(i + 1) * len(masks)], curves[name][4])
    scores = []
    for name, auc in (("translate_success", "translate_auc"), ("clamp_success", "clamp_auc"),
                      ("clamp_noharm", "clamp_noharm_auc")):
        curve = values[name]
        scores += [Score(name, k, float(v), float(curve[0])) for k, v in zip(grid, curve[1:])]
        scores.append(Score(auc, None, _auc(grid, list(curve[1:])), float(curve[0])))
    log.info("intervention %s L%d: %d words (%d clamped, %d kept), %.1fs", site, layer, len(rows), len(clamp_rows),
             len(keep_rows), time.perf_counter() - started)
    return scores


# --- faithfulness ----------------------------------------------------------------------------------

def faithfulness_curve(ranking, data, budgets_k, rng) -> tuple[np.ndarray, float, float]:
    """f(k) for each k in `budgets_k` (0 = ∅, D = N), and m(N), m(∅), on the sampled test words."""
    ctx, _, _, n, ranking = _cell(data, ranking, "faithfulness")
    rows = sample_rows(len(ctx.y["test"]), N_WORDS, rng)
    gold = ctx.y["test"][rows]
    means = train_states(data, ctx).mean(axis=0)
    specs = [EditSpec("set", np.zeros(n, dtype=bool), "v"), EditSpec("set", np.ones(n, dtype=bool), "v")]
    specs += [EditSpec("set", ~_top_mask(ranking, int(k), n), "v") for k in budgets_k]
    m = _gold_logp(run_edits(ctx, _sample_inputs(ctx, rows), specs, {"v": means}),
                   gold)
    m_full, m_empty = float(m[0]), float(m[1])
    gap = m_full - m_empty
    if abs(gap) < FAITH_MIN_GAP:
        return np.full(len(budgets_k), np.nan), m_full, m_empty
    return (m[2:] - m_empty) / gap, m_full, m_empty


def faithfulness(ranking, data, ks, rng) -> list[Score]:
    """faith_cpr, faith_cmd (negated), faith_cpr_log and the curve faith@k (reference.md#metric-faithfulness).

    `ks` is not used: the budgets are fixed shares of D."""
    ctx = _context(data, "faithfulness")
    started = time.perf_counter()
    site, layer = ctx.cell()
    n = ctx.loaded.width(site)
    p = np.asarray(BUDGETS)
    k_of_p = np.array([max(1, round(q * n)) for q in p])
    unique_k = sorted(set(k_of_p.tolist()))
    f_unique, m_full, m_empty = faithfulness_curve(ranking, data, unique_k, rng)
    f = f_unique[np.searchsorted(unique_k, k_of_p)]
    scores = [Score("faith", k, float(v)) for k, v in zip(unique_k, f_unique)]
    if np.isnan(f).any():
        log.warning("faithfulness %s L%d: |m(N) − m(∅)| = %.2g < %g; the cell is NaN (flagged)", site, layer,
                    abs(m_full - m_empty), FAITH_MIN_GAP)
        cpr = cmd = cpr_log = float("nan")
    else:
        span = p[-1] - p[0]
        cpr = float(np.trapezoid(f, p) / span)
        cmd = -float(np.trapezoid(np.abs(1 - f), p) / span)
        cpr_log = log_area(list(p), list(f))
    scores += [Score("faith_cpr", None, cpr), Score("faith_cmd", None, cmd),
               Score("faith_cpr_log", None, cpr_log)]
    log.info("faithfulness %s L%d: m(N) %.4f, m(∅) %.4f, cpr %.3f, %.1fs", site, layer, m_full, m_empty, cpr,
             time.perf_counter() - started)
    return scores


# --- behavioural readout on minimal pairs ------------------------------------------------------------

BEH_RANDOM_SETS = 5  # reference addendum A.3: R = 5
PAIR_BOOTSTRAP = 1000  # resamples of the kept pairs behind the 95% intervals of the beh rows
_RANDOM_EDITS = BoundedMemo(32)


def _pair_drops(readout: PairReadout, ctx: ModelContext, masks: list[np.ndarray]) -> np.ndarray:
    """(len(masks), n_pairs) LD drop of each read pair (mean of its two members) when the neurons of each mask
    are set at the attribute word to their train-pair means."""
    site, layer = ctx.cell()
    specs = [EditSpec("set", mask, "v") for mask in [np.zeros_like(masks[0]), *masks]]
    ld = run_edits(ctx, readout.inputs, specs, {"v": readout.means(site, layer)}, (readout.read, 1))
    ld = ld[:, torch.as_tensor(readout.read_rows), 0].double().numpy()  # (1 + len(masks), members)
    return (ld[0] - ld[1:]).reshape(len(masks), -1, 2).mean(axis=2)


def _random_masks(rng: np.random.Generator, grid: list[int], n: int) -> list[np.ndarray]:
    """BEH_RANDOM_SETS random k-sets per k of `grid` (k-major), from the scorer generator of the cell."""
    return [_top_mask(rng.choice(n, size=k, replace=False), k, n) for k in grid for _ in range(BEH_RANDOM_SETS)]


def _per_cell(compute: Callable, readout, ctx: ModelContext, masks: list[np.ndarray], *args) -> np.ndarray:
    """`compute(readout, ctx, masks, *args)` of the random k-sets, once per cell: they come from the cell's
    generator, so every ranking of the cell meets the same ones, and only the first pays for them."""
    digest = hashlib.sha256(b"".join(np.packbits(mask).tobytes() for mask in masks)).hexdigest()
    key = (compute.__name__, *args, ctx.loaded.name, ctx.loaded.extraction_id, readout.pairs.pairs_id, *ctx.cell(),
           digest)
    return _RANDOM_EDITS.get(key, lambda: compute(readout, ctx, masks, *args))


def _pair_means(per_pair: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(K,) means over pairs of (K, n_pairs) values, and their (PAIR_BOOTSTRAP, K) resampled means."""
    drawn = rng.integers(per_pair.shape[1], size=(PAIR_BOOTSTRAP, per_pair.shape[1]))
    return per_pair.mean(axis=1), per_pair[:, drawn].mean(axis=2).T


def _interval(replicates: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(replicates, [2.5, 97.5])
    return float(low), float(high)


def beh(ranking, data, ks, rng) -> list[Score]:
    """beh_drop@k: drop of the model's own logit difference on the concept's minimal pairs when the top-k are
    mean-ablated, minus random-k (reference addendum A.3, readout lm_logit_diff, nats).

    Pairs come from the task's declaration (`ModelContext.pairs`, e.g. tasks.templated.minimal_pairs); the
    test pairs the clean model gets right in both members are kept (`bench.pair_readout`). Every member of a
    kept pair is a base, read with its own answer first, so the mean is over pairs and both directions. The
    top-k (and R = 5 random k-sets from the scorer generator, the same for every method of the cell) are set
    at every piece of the attribute word to their mean over both members of the train pairs; the prediction
    is read at the last prompt position. Rows: `beh_drop@k` (top-k drop − random-k drop, chance 0),
    `beh_drop_top@k` (the top-k drop, chance = `beh_drop_random@k`), `beh_frac@k` (ratio of sums: top-k drop
    over the clean base/counterfactual gap LD(b) − LD(c)); `beh_off@k`, the same drop minus random on the
    off-target pairs (e.g. tense for a number ranking; lower is more specific, shown only), `beh_sel@k` =
    beh_drop − beh_off; areas over ln k `beh_drop_auc`, `beh_off_auc`, `beh_sel_auc`; context rows
    `beh_pairs`, `beh_kept`, `beh_clean_ld` and `beh_off_pairs`, `beh_off_kept`, `beh_off_clean_ld`.
    Intervals: 95% percentile over PAIR_BOOTSTRAP = 1,000 resamples of the kept pairs.
    The intervals are over pairs only: they leave out the draw of the random k-sets (a `random` ranking's own
    beh_drop can sit a little above 0). Values and cost: leaderboard/published/behavioural_smollm2_135m (on
    2 CPU cores, about 340 s for the first ranking of a cell, which pays for the random k-sets, and 75-105 s for
    each further one; linear in the kept pairs, at most MAX_READ = 128 of each set, and in the edits).
    """
    ctx, site, layer, n, ranking = _cell(data, ranking, "beh")
    started = time.perf_counter()
    readouts = {role: pair_readout(ctx.loaded, declared_pairs(ctx.pairs, role, "scorer 'beh'"), ctx.pooling)
                for role in ROLES}
    grid = capped_ks(ks, n)
    randoms = _random_masks(rng, grid, n)
    tops = [_top_mask(ranking, k, n) for k in grid]
    drops = {}
    for role, readout in readouts.items():
        random = _per_cell(_pair_drops, readout, ctx, randoms).reshape(len(grid), BEH_RANDOM_SETS, -1).mean(axis=1)
        drops[role] = (_pair_drops(readout, ctx, tops), random)
    (on_top, on_random), (off_top, off_random) = drops["concept"], drops["off_target"]
    drop, drop_boot = _pair_means(on_top - on_random, rng)
    off, off_boot = _pair_means(off_top - off_random, rng)
    sel, sel_boot = drop - off, drop_boot - off_boot
    gap = 2 * readouts["concept"].clean_ld.mean()  # mean over pairs of LD(b) − LD(c) = LD_own(b) + LD_own(c)
    scores = []
    for i, k in enumerate(grid):
        scores += [Score("beh_drop", k, float(drop[i]), 0.0, _interval(drop_boot[:, i])),
                   Score("beh_drop_top", k, float(on_top[i].mean()), float(on_random[i].mean())),
                   Score("beh_drop_random", k, float(on_random[i].mean())),
                   Score("beh_frac", k, float(on_top[i].mean() / gap), float(on_random[i].mean() / gap)),
                   Score("beh_off", k, float(off[i]), 0.0, _interval(off_boot[:, i])),
                   Score("beh_sel", k, float(sel[i]), 0.0, _interval(sel_boot[:, i]))]
    for name, values, boot in (("beh_drop_auc", drop, drop_boot), ("beh_off_auc", off, off_boot),
                               ("beh_sel_auc", sel, sel_boot)):
        scores.append(Score(name, None, _auc(grid, list(values)), 0.0, _interval(_auc(grid, list(boot.T)))))
    for prefix, role in (("beh", "concept"), ("beh_off", "off_target")):
        readout = readouts[role]
        scores += [Score(f"{prefix}_pairs", None, float(len(readout.kept))),
                   Score(f"{prefix}_kept", None, readout.kept_share),
                   Score(f"{prefix}_clean_ld", None, float(readout.clean_ld.mean()))]
    log.info("beh %s L%d: %d + %d pairs, drop@%d %.3f (random %.3f) nats, %.1fs", site, layer,
             len(readouts["concept"].kept), len(readouts["off_target"].kept), grid[-1],
             on_top[-1].mean(), on_random[-1].mean(), time.perf_counter() - started)
    return scores


def check_beh(loaded, task) -> None:
    """The pairs `beh` will read exist, the model has an output head and every answer is one token."""
    for role in ROLES:
        answer_ids(loaded, declared_pairs(task.meta.get("minimal_pairs"), role, f"task {task.name!r}"))


# --- interchange interventions on minimal pairs -----------------------------------------------------

def _partner_table(sources: np.ndarray) -> dict[str, np.ndarray]:
    """The per-target table of an interchange: each member's attribute word takes its pair partner's
    (members are laid out pair by pair); the read targets that follow are never edited."""
    partner = np.arange(len(sources)) ^ 1
    return {"source": np.concatenate([sources[partner], np.zeros_like(sources)])}


def _patched_ld(readout: PairReadout, ctx: ModelContext, masks: list[np.ndarray]) -> np.ndarray:
    """(len(masks), 2 kept) LD of every read member (own answer first) when the neurons of each mask take, at
    the last piece of its attribute word, their values in the other member of its pair."""
    site, layer = ctx.cell()
    specs = [EditSpec("set", mask, "source") for mask in masks]
    ld = run_edits(ctx, readout.patch_inputs, specs, _partner_table(readout.sources(site, layer)), (readout.read, 1))
    return ld[:, torch.as_tensor(readout.read_rows), 0].double().numpy()


def _crossed_hits(readout: CrossedReadout, ctx: ModelContext, masks: list[np.ndarray], attribute: str) -> np.ndarray:
    """(2, len(masks), kept) per pair, mean over its two directions: [the answer's `attribute` follows the
    source (cause), every other attribute stays the base's (isolation)] when the neurons of each mask take the
    source's values at the last piece of the `attribute` word; the answer is the argmax over the A answers."""
    site, layer = ctx.cell()
    specs = [EditSpec("set", mask, "source") for mask in masks]
    logits = run_edits(ctx, readout.inputs[attribute], specs, _partner_table(readout.sources(attribute, site, layer)),
                       (readout.read, len(readout.pairs.answers)))
    predicted = readout.combinations[logits[:, torch.as_tensor(readout.read_rows)].argmax(dim=-1).numpy()]
    own = readout.values
    source = own[np.arange(len(own)) ^ 1]
    a = readout.pairs.attributes.index(attribute)
    others = [j for j in range(own.shape[1]) if j != a]
    cause = predicted[..., a] == source[:, a]
    isolation = (predicted[..., others] == own[:, others]).all(axis=-1)
    return np.stack([cause, isolation]).reshape(2, len(masks), -1, 2).mean(axis=-1)


def _flips(ld: np.ndarray) -> np.ndarray:
    """(K, pairs) share of a pair's two directions whose patched answer is the source's (LD < 0)."""
    return (ld < 0).reshape(len(ld), -1, 2).mean(axis=2)


def _curve_rows(name: str, grid: list[int], top: np.ndarray, random: np.ndarray, rng: np.random.Generator,
                gain: str) -> list[Score]:
    """`name@k` (the top-k value, chance = random-k, interval), `name_random@k`, `gain@k` = top − random
    (chance 0, interval) and the ln-k areas `name_auc`, `gain_auc` with intervals, from (K, pairs) values."""
    (value, boot), (delta, delta_boot) = _pair_means(top, rng), _pair_means(top - random, rng)
    scores = []
    for i, k in enumerate(grid):
        scores += [Score(name, k, float(value[i]), float(random[i].mean()), _interval(boot[:, i])),
                   Score(f"{name}_random", k, float(random[i].mean())),
                   Score(gain, k, float(delta[i]), 0.0, _interval(delta_boot[:, i]))]
    for metric, values, replicates in ((f"{name}_auc", value, boot), (f"{gain}_auc", delta, delta_boot)):
        scores.append(Score(metric, None, _auc(grid, list(values)), None, _interval(_auc(grid, list(replicates.T)))))
    return scores


def interchange(ranking, data, ks, rng) -> list[Score]:
    """iia@k: interchange intervention accuracy of the top-k on the concept's minimal pairs, beside random-k
    (reference addendum B.1, readout lm_logit_diff), and RAVEL's cause and isolation on crossed pairs (B.2).

    IIA: for every kept test pair (`beh`'s) and both directions, the base runs with the top-k set, at the last
    piece of its attribute word (members are aligned by word index, pieces by the last one), to their values
    in the source member; success = the base's LD turns negative (its answer is the source's). Rows
    `iia@k` (chance = `iia_random@k`, the mean of R = 5 random k-sets drawn from the scorer generator, the
    same for every method of a cell and run once per cell), `iia_gain@k` = iia − random, `iia_odds@k`
    (CausalGym's odds ratio: mean LD(b) − LD_patched(b), nats, chance = random's; shown only), areas over
    ln k `iia_auc`, `iia_gain_auc`, context `iia_pairs`, `iia_kept`.
    RAVEL (when the task declares `crossed` pairs over its attribute, e.g. tasks.templated.crossed_pairs:
    source and base differ in number and tense, the copula is/are/was/were encodes both): the top-k are
    patched at the word of the task's attribute, the answer is the argmax over the four copulas;
    `ravel_cause@k` = share whose targeted attribute follows the source, `ravel_iso@k` = share whose other
    attribute stays the base's, `ravel_disent@k` = their mean (each with chance = random-k and an interval),
    `ravel_disent_gain@k` = disent − random, areas `ravel_disent_auc`, `ravel_disent_gain_auc`, context
    `ravel_pairs`, `ravel_kept`. k = 0 is the clean model: IIA 0, cause 0, isolation 1.
    Intervals: 95% percentile over PAIR_BOOTSTRAP = 1,000 resamples of the kept pairs.
    Every neuron of smollm2_135m's hidden L15 patched gives iia 0.80 on templated_number. Values and cost:
    leaderboard/published/behavioural_smollm2_135m (on 2 CPU cores, 290-360 s for the first ranking of a cell with
    its crossed pairs, 75-100 s for each further one; linear in the kept pairs and in the edits).
    """
    ctx, site, layer, n, ranking = _cell(data, ranking, "interchange")
    started = time.perf_counter()
    readout = pair_readout(ctx.loaded, declared_pairs(ctx.pairs, "concept", "scorer 'interchange'"), ctx.pooling)
    grid = capped_ks(ks, n)
    randoms = _random_masks(rng, grid, n)
    tops = [_top_mask(ranking, k, n) for k in grid]
    top_ld = _patched_ld(readout, ctx, tops)
    random_ld = _per_cell(_patched_ld, readout, ctx, randoms).reshape(len(grid), BEH_RANDOM_SETS, -1)
    top, random = _flips(top_ld), np.stack([_flips(ld) for ld in random_ld]).mean(axis=1)
    odds = readout.clean_ld[None] - top_ld
    random_odds = (readout.clean_ld[None, None] - random_ld).mean(axis=(1, 2))
    scores = _curve_rows("iia", grid, top, random, rng, "iia_gain")
    scores += [Score("iia_odds", k, float(odds[i].mean()), float(random_odds[i])) for i, k in enumerate(grid)]
    scores += [Score("iia_pairs", None, float(len(readout.kept))), Score("iia_kept", None, readout.kept_share)]
    crossed = _crossed(ctx, readout.pairs.attribute)
    if crossed is not None:
        hits = _crossed_hits(crossed, ctx, tops, readout.pairs.attribute)
        random_hits = _per_cell(_crossed_hits, crossed, ctx, randoms, readout.pairs.attribute)
        random_hits = random_hits.reshape(2, len(grid), BEH_RANDOM_SETS, -1).mean(axis=2)
        for j, name in enumerate(("ravel_cause", "ravel_iso")):
            (value, boot), chance = _pair_means(hits[j], rng), random_hits[j].mean(axis=1)
            scores += [Score(name, k, float(value[i]), float(chance[i]), _interval(boot[:, i])) for i, k in enumerate(grid)]
        disent = [part.mean(axis=0) for part in (hits, random_hits)]
        scores += [s for s in _curve_rows("ravel_disent", grid, *disent, rng, "ravel_disent_gain")
                   if s.metric != "ravel_disent_random"]
        scores += [Score("ravel_pairs", None, float(len(crossed.kept))), Score("ravel_kept", None, crossed.kept_share)]
    log.info("interchange %s L%d: %d pairs, iia@%d %.3f (random %.3f)%s, %.1fs", site, layer, len(readout.kept),
             grid[-1], top[-1].mean(), random[-1].mean(),
             "" if crossed is None else f", {len(crossed.kept)} crossed pairs", time.perf_counter() - started)
    return scores


def _crossed(ctx: ModelContext, attribute: str) -> CrossedReadout | None:
    """The task's crossed pairs over `attribute`, or None (logged) when it declares none."""
    if not ctx.pairs or "crossed" not in ctx.pairs:
        log.info("interchange: the task declares no crossed pairs, so no RAVEL rows")
        return None
    pairs = declared_pairs(ctx.pairs, "crossed", "scorer 'interchange'", CrossedPairs)
    if attribute not in pairs.attributes:
        raise NeuronbenchError(f"scorer 'interchange': the crossed pairs {pairs.name} cross {pairs.attributes}, "
                               f"not the concept pairs' attribute {attribute!r}")
    return crossed_readout(ctx.loaded, pairs)


def check_interchange(loaded, task) -> None:
    """The pairs `interchange` will read exist, the model has an output head and every answer is one token."""
    declaration = task.meta.get("minimal_pairs")
    answer_ids(loaded, declared_pairs(declaration, "concept", f"task {task.name!r}"))
    if declaration and "crossed" in declaration:
        crossed_answer_ids(loaded, declared_pairs(declaration, "crossed", f"task {task.name!r}", CrossedPairs))


SCORERS = {"causal": causal, "lm": lm, "tpp": tpp, "intervention": intervention, "faithfulness": faithfulness,
           "beh": beh, "interchange": interchange}

_MODEL, _PAIRS = frozenset({"model"}), frozenset({"model", "pairs"})


def _model_curve(name: str, ranked: bool, **kwargs) -> tuple[Metric, Metric]:
    """A model-level curve over the capped k grid and its area over ln k."""
    return (Metric(name, ranked=ranked, ks=OWN, needs=_MODEL, **kwargs),
            Metric(f"{name}_auc", ranked=ranked, needs=_MODEL))


def _shown(*names: str, ks: str | None = OWN, higher_is_better: bool | None = True) -> tuple[Metric, ...]:
    """Minimal-pair rows (readout lm_logit_diff), shown and not ranked, as the board had them: no validity report
    has read them yet."""
    return tuple(Metric(name, ks=ks, higher_is_better=higher_is_better, needs=_PAIRS) for name in names)


# The metrics of these scorers (bench.metrics gathers every module's); a baseline or the clean model's value, the
# same for every method, has no better direction.
METRICS = (
    *_model_curve("causal_drop", True, family="causal"),
    Metric("causal_gain", ranked=True, ks=OWN, needs=_MODEL), Metric("causal_gain_auc", needs=_MODEL),
    Metric("causal_logp_drop", ks=OWN, needs=_MODEL),
    Metric("causal_drop_random", ks=OWN, higher_is_better=None, needs=_MODEL),
    Metric("causal_clean_acc", higher_is_better=None, needs=_MODEL),
    *_model_curve("causal_lm_drop", True), *_model_curve("causal_lm_gain", True),
    Metric("causal_lm_drop_random", ks=OWN, higher_is_better=None, needs=_MODEL),
    Metric("causal_lm_clean_loss", higher_is_better=None, needs=_MODEL),
    *_model_curve("causal_tpp", True), Metric("causal_tpp_intended", ks=OWN, needs=_MODEL),
    Metric("causal_tpp_unintended", ks=OWN, higher_is_better=False, needs=_MODEL),
    Metric("translate_success", ranked=True, ks=OWN, needs=_MODEL), Metric("translate_auc", needs=_MODEL),
    Metric("clamp_success", ranked=True, ks=OWN, needs=_MODEL), Metric("clamp_auc", needs=_MODEL),
    *_model_curve("clamp_noharm", False,
                  doc="do no harm: a useless ranking keeps the clean accuracy, so it would tie a good one"),
    Metric("faith", ks=OWN, needs=_MODEL), Metric("faith_cpr", ranked=True, needs=_MODEL),
    Metric("faith_cmd", ranked=True, needs=_MODEL), Metric("faith_cpr_log", needs=_MODEL),
    *_shown("beh_drop", "beh_drop_top", "beh_frac", "beh_sel", "iia", "iia_gain", "iia_odds", "ravel_cause",
            "ravel_iso", "ravel_disent", "ravel_disent_gain"),
    *_shown("beh_drop_auc", "beh_sel_auc", "iia_auc", "iia_gain_auc", "ravel_disent_auc", "ravel_disent_gain_auc",
            ks=None),
    *_shown("beh_off", higher_is_better=False), *_shown("beh_off_auc", ks=None, higher_is_better=False),
    *_shown("beh_drop_random", "iia_random", higher_is_better=None),
    *_shown(*(f"{prefix}_{row}" for prefix in ("beh", "beh_off", "iia", "ravel") for row in ("pairs", "kept")),
            "beh_clean_ld", "beh_off_clean_ld", ks=None, higher_is_better=None),
)
# Which readout produced each scorer's values (the records' `readout`); values of different readouts are
# never ranked together (reference addendum A.3).
READOUTS = {"causal": "frozen_head", "tpp": "frozen_head", "intervention": "frozen_head",
            "faithfulness": "frozen_head", "lm": "lm_next_token", "beh": "lm_logit_diff",
            "interchange": "lm_logit_diff"}
# What a scorer needs of the job's model and task, checked once the model is loaded, before any forward pass.
PREFLIGHT = {"beh": check_beh, "interchange": check_interchange}


def check_scorer_inputs(names, loaded, task) -> None:
    for name in names:
        if name in PREFLIGHT:
            PREFLIGHT[name](loaded, task)
