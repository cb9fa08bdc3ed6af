"""Model-level scorers: causal ablation, interventions and faithfulness (reference.md#metric-causal,
#metric-interventions, #metric-faithfulness).

Each scorer has the shared signature `(ranking, data, ks, rng) -> list[Score]`, higher is better, and
reads the model through `data.context`: the `bench.intervene.ModelContext` of the job already
`.at(site, layer)` for the cell (None for planted tasks, which have no model). Every readout is the
frozen final-layer head of `bench.intervene.final_head` on the pooled final states of test words.

Shared conventions:

- **Words**: a seeded sample (the cell's scorer generator) of at most `N_WORDS` = 500 test words,
  drawn once per scorer call and used for every k and every edit.
- **k cap** (`capped_ks`): the model-level curves use only the grid's k <= 100 plus round(10% of D),
  never more than D. A forward per (sentence, edit) is the cost; this bounds the edits per cell at
  about a dozen per curve whatever D is (reference.md: the causal cost is O(|K|·(1+R)·N_test·F_l)).
- **Train statistics at the site**: the raw train activations of the cell (means, class means,
  class medians). They come from `data.raw_train` (the cell's raw X["train"], rows in the
  context's train order), so no extra pass over the train words is needed.
- **Batching**: `model_inputs` once per scorer call with one sentence per forward; every edit of the
  call (all k, the random sets, the clean pass) is a replicate of that sentence made *inside* the site
  hook (`bench.intervene._forward_replicated`), so the layers below the site run once per sentence.
  Identical edits (e.g. k = D in faithfulness and the clean pass) share one replicate, so they agree
  exactly.

Scorers and metrics:

- `causal`: mean-ablate the top-k neurons at all pieces of the sampled test words.
  `causal_drop@k` = A(clean) − A(ablated) (head accuracy), `causal_logp_drop@k` (mean gold
  log-probability drop), `causal_gain@k` = causal_drop@k − mean drop of R = 3 random k-sets (drawn from
  all D neurons with the scorer generator); `causal_drop_random@k`; areas over ln k
  (`causal_drop_auc`, `causal_gain_auc`) and `causal_clean_acc`. `value="zero"` (compat, via
  functools.partial) zero-ablates instead, with the same metric names.
- `intervention`: `translate_success@k` (Antverg & Belinkov): every sampled test word of class v gets
  `h_S += α_S ⊙ (q_S(v') − q_S(v))`, q the train class means at the site, v' = the next class id
  cyclically (class ids follow sorted label order), α rank-scaled `α_r = β·(1e-3/β)^{r/(D−1)}`, β = 8,
  r the neuron's rank in the whole ranking; success = the head now predicts v'.
  `clamp_success@k` (Suau et al.): top-k neurons set to the train median (`on_p50`) of the target
  class at all pieces of the word. Concept form (2 classes): only the sampled NEGATIVE test words,
  target = the concept (class 1). Multi-class form: every sampled test word, target = the next class
  cyclically, as translation. Score chances are the clean shares already predicting the target;
  `translate_auc`, `clamp_auc` are the ln-k areas.
- `faithfulness`: budgets P = {0.1, ..., 100}% of D, k_p = max(1, round(p·D)); C_k keeps the top-k
  neurons and mean-ablates the rest at the word pieces, ∅ ablates all, N is clean;
  f(k) = (m(C_k) − m(∅)) / (m(N) − m(∅)), m the mean gold log-probability. `faith_cpr` = trapezoid
  area of f over p ∈ [0.001, 1] divided by the span 0.999 (so f ≡ 1 scores 1), `faith_cmd` = −(same
  area of |1 − f|), `faith_cpr_log` = the area over ln p normalized; `faith@k` the curve itself. NaN
  (and a warning) when |m(N) − m(∅)| < 1e-3.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from bench.errors import NeuronbenchError
from bench.intervene import (ModelContext, ModelInputs, _forward_replicated, final_head)
from bench.scorers import Score, log_area
from methods.causal import sample_rows

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
    (rows in ModelInputs word order). An empty mask is the clean pass.
    """

    mode: str
    mask: np.ndarray
    table: str = ""


def run_edits(ctx: ModelContext, inputs: ModelInputs, specs: list[EditSpec], tables: dict[str, np.ndarray],
              head) -> torch.Tensor:
    """(len(specs), N, C) head log-probabilities of every target word under every edit, on CPU.

    `inputs` should hold one sentence per batch (in-hook replication); identical specs are run once.
    """
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
    out = torch.zeros((len(unique), inputs.n_words, head.n_classes), dtype=torch.float32)
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
                out[block[0]:block[-1] + 1, torch.as_tensor(batch.words)] = head.log_prob(pooled.float()).cpu()
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
    head = final_head(ctx)
    specs = [EditSpec("set", np.zeros(n, dtype=bool), "v")]
    for k in grid:
        specs.append(EditSpec("set", _top_mask(ranking, k, n), "v"))
        for chosen in randoms[k]:
            specs.append(EditSpec("set", _top_mask(chosen, k, n), "v"))
    logp = run_edits(ctx, _sample_inputs(ctx, rows), specs, {"v": values}, head)
    acc, m = _accuracy(logp, gold), _gold_logp(logp, gold)
    per = 1 + RANDOM_SETS
    drops, gains, scores = [], [], [Score("causal_clean_acc", None, float(acc[0]))]
    for i, k in enumerate(grid):
        top = 1 + i * per
        drop = float(acc[0] - acc[top])
        random_drop = float(np.mean(acc[0] - acc[top + 1:top + per]))
        drops.append(drop)
        gains.append(drop - random_drop)
        scores += [Score("causal_drop", k, drop, random_drop),
                   Score("causal_logp_drop", k, float(m[0] - m[top]), float(np.mean(m[0] - m[top + 1:top + per]))),
                   Score("causal_gain", k, drop - random_drop, 0.0),
                   Score("causal_drop_random", k, random_drop)]
    scores += [Score("causal_drop_auc", None, _auc(grid, drops)),
               Score("causal_gain_auc", None, _auc(grid, gains), 0.0)]
    log.info("causal %s L%d: %d words, %d edits, clean acc %.3f, %.1fs", site, layer, len(rows),
             len(specs), acc[0], time.perf_counter() - started)
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
    """translate_success@k and clamp_success@k (reference.md#metric-interventions)."""
    ctx, site, layer, n, ranking = _cell(data, ranking, "intervention")
    started = time.perf_counter()
    grid = capped_ks(ks, n)
    n_classes = ctx.n_classes
    rows = sample_rows(len(ctx.y["test"]), N_WORDS, rng)
    y = ctx.y["test"][rows]
    target = (y + 1) % n_classes
    means, medians = _class_stats(train_states(data, ctx), ctx.y["train"], n_classes)
    alpha = rank_alpha(ranking)
    head = final_head(ctx)
    empty = np.zeros(n, dtype=bool)
    masks = [_top_mask(ranking, k, n) for k in grid]
    translate_tables = {"delta": alpha[None] * (means[target] - means[y])}
    translate_specs = [EditSpec("add", empty, "delta")] + [EditSpec("add", m, "delta") for m in masks]
    if n_classes == 2:  # concept form: clamp the negatives to the concept's median
        clamp_rows = rows[y == 0]
        clamp_target = np.ones(len(clamp_rows), dtype=np.int64)
    else:
        clamp_rows, clamp_target = rows, target
    clamp_tables = {"median": medians[clamp_target]}
    clamp_specs = [EditSpec("set", empty, "median")] + [EditSpec("set", m, "median") for m in masks]
    if n_classes == 2:
        t_logp = run_edits(ctx, _sample_inputs(ctx, rows), translate_specs, translate_tables, head)
        c_logp = (run_edits(ctx, _sample_inputs(ctx, clamp_rows), clamp_specs, clamp_tables, head)
                  if len(clamp_rows) else None)
    else:  # same words: one pass for both
        both = run_edits(ctx, _sample_inputs(ctx, rows), translate_specs + clamp_specs,
                         {**translate_tables, **clamp_tables}, head)
        t_logp, c_logp = both[:len(translate_specs)], both[len(translate_specs):]
    scores = []
    t_success = _accuracy(t_logp, target)
    scores += [Score("translate_success", k, float(v), float(t_success[0])) for k, v in zip(grid, t_success[1:])]
    scores.append(Score("translate_auc", None, _auc(grid, list(t_success[1:])), float(t_success[0])))
    if c_logp is None:
        log.warning("intervention %s L%d: no negative test word sampled; clamp_success is NaN", site, layer)
        c_success = np.full(len(grid) + 1, np.nan)
    else:
        c_success = _accuracy(c_logp, clamp_target)
    scores += [Score("clamp_success", k, float(v), float(c_success[0])) for k, v in zip(grid, c_success[1:])]
    scores.append(Score("clamp_auc", None, _auc(grid, list(c_success[1:])), float(c_success[0])))
    log.info("intervention %s L%d: %d words (%d clamped), %.1fs", site, layer, len(rows), len(clamp_rows),
             time.perf_counter() - started)
    return scores


# --- faithfulness ----------------------------------------------------------------------------------

def faithfulness_curve(ranking, data, budgets_k, rng) -> tuple[np.ndarray, float, float]:
    """f(k) for each k in `budgets_k` (0 = ∅, D = N), and m(N), m(∅), on the sampled test words."""
    ctx, _, _, n, ranking = _cell(data, ranking, "faithfulness")
    rows = sample_rows(len(ctx.y["test"]), N_WORDS, rng)
    gold = ctx.y["test"][rows]
    head = final_head(ctx)
    means = train_states(data, ctx).mean(axis=0)
    specs = [EditSpec("set", np.zeros(n, dtype=bool), "v"), EditSpec("set", np.ones(n, dtype=bool), "v")]
    specs += [EditSpec("set", ~_top_mask(ranking, int(k), n), "v") for k in budgets_k]
    m = _gold_logp(run_edits(ctx, _sample_inputs(ctx, rows), specs, {"v": means}, head), gold)
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


SCORERS = {"causal": causal, "intervention": intervention, "faithfulness": faithfulness}
