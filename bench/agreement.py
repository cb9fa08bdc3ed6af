"""Cross-method agreement of rankings (Fan et al. 2023) and their stability over seeds.

reference.md#metric-overlap and #metric-stability. They need several rankings of one cell at once, so the board
builder runs them over the rankings saved by the jobs rather than inside a job. Rows per method:

- `jaccard@k` (per ordered pair, `other` set; context) and `avg_overlap@k` (mean over the others; ranked);
- `rank_corr` (Spearman rho over full rankings, per ordered pair; context) and `avg_rank_corr` (mean; ranked);
- `neuron_vote@k`: Jaccard@k with the family-weighted Borda consensus of the other methods' top-L lists (ranked);
- `stab_seed@k`: mean pairwise Jaccard@k of one method's rankings over the seeds of a cell (ranked; 1 when the
  method is deterministic).

`stab_boot@k` (bootstrap stability) needs the method itself, so the runner computes it inside the job
(`bootstrap_stability`, config `bootstrap: B`) and writes it with the job's records.
"""

from __future__ import annotations

import dataclasses
from itertools import combinations

import numpy as np

from bench.core.metrics import OWN, Metric
from bench.errors import NeuronbenchError
from bench.scorers import Score

OVERLAP_KS = (10, 20, 30, 40, 50, 100)
VOTE_LIST = 100  # L, the length of each voter's list in NeuronVote

# Method families of reference.md#method-summary (§2.16). NeuronVote gives each voter weight 1/|family| (its family
# counted among the voters), so near-duplicates (probeless* = anova_f under z-scoring, lca ~ linear_meanw) do not
# outvote the rest. A method not in this table (random, submissions, later methods) is a family of its own.
FAMILIES = {
    **dict.fromkeys(("lca", "lasso", "ridge", "noreg", "linear_meanw", "sparse_l1"), "linear"),
    "gaussian": "gaussian",
    **dict.fromkeys(("probeless", "probeless_tag", "probeless_ovr", "meanselect", "anova_f"), "mean-diff"),
    **dict.fromkeys(("ap", "ap2", "iou", "iou_prev"), "detector"),
    **dict.fromkeys(("mi", "mi_hist"), "univariate"),
    **dict.fromkeys(("variance", "mean_abs"), "label-free"),
    **dict.fromkeys(("ig_probe", "ig_head"), "attribution"),
    "ablate_single": "causal",
    **dict.fromkeys(("maxcorr", "mincorr", "linreg"), "cross-model"),
    "cluster_rep": "cluster",
}

_RANKINGS = frozenset({"rankings"})  # several rankings of one cell: the board builder's, not a job's
# The metrics of this module (bench.metrics gathers every module's): pairwise rows and bootstrap companions are
# context, the per-method means and stabilities are ranked.
METRICS = (
    Metric("jaccard", ks=OWN, needs=_RANKINGS), Metric("avg_overlap", ranked=True, ks=OWN, needs=_RANKINGS),
    Metric("rank_corr", needs=_RANKINGS), Metric("avg_rank_corr", ranked=True, needs=_RANKINGS),
    Metric("neuron_vote", ranked=True, ks=OWN, needs=_RANKINGS),
    Metric("stab_seed", ranked=True, ks=OWN, needs=_RANKINGS),
    Metric("stab_boot", ranked=True, ks=OWN), Metric("stab_boot_pairwise", ks=OWN), Metric("stab_boot_rho"),
)


def family(method: str) -> str:
    return FAMILIES.get(method, f"own:{method}")


def jaccard(a: np.ndarray, b: np.ndarray, k: int) -> float:
    top_a, top_b = set(a[:k].tolist()), set(b[:k].tolist())
    return len(top_a & top_b) / len(top_a | top_b)


def chance_jaccard(k: int, n_neurons: int) -> float:
    """Expected Jaccard of two independent random k-sets out of D: E|A∩B| = k²/D."""
    shared = k * k / n_neurons
    return shared / (2 * k - shared)


def dead_tail(rankings: list[np.ndarray]) -> int:
    """Length of the suffix shared by every ranking, position by position, in increasing index order.

    Dead neurons are appended to every ranking in increasing index order (reference.md#ranking-contract), and
    the saved rankings carry no liveness, so this tail stands in for the dead set. At least two neurons are
    always left; a live suffix common to all methods of a cell is rare, and leaving it out barely moves rho.
    """
    stacked = np.stack(rankings)
    same = np.all(stacked == stacked[0], axis=0)
    n = stacked.shape[1]
    tail = 0
    while tail < n - 2 and same[n - 1 - tail] and (tail == 0 or stacked[0, n - 1 - tail] < stacked[0, n - tail]):
        tail += 1
    return tail


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rho of two rankings of the same neurons (no ties): 1 - 6 sum d² / (n (n² - 1))."""
    n = len(a)
    if n < 2:
        return 1.0
    position_b = np.empty(int(max(a.max(), b.max())) + 1, dtype=np.int64)
    position_b[b] = np.arange(n)
    d = np.arange(n) - position_b[a]
    return float(1.0 - 6.0 * np.dot(d, d) / (n * (n * n - 1.0)))


def consensus(voters: dict[str, np.ndarray], n_neurons: int, length: int = VOTE_LIST) -> np.ndarray:
    """NeuronVote's ranking V: v_j = sum_B w_B max(0, L - pos_B(j)), w_B = 1/|family(B) among voters|; ties by index."""
    sizes: dict[str, int] = {}
    for method in voters:
        sizes[family(method)] = sizes.get(family(method), 0) + 1
    votes = np.zeros(n_neurons)
    points = np.arange(length, 0, -1, dtype=np.float64)  # L - pos for pos = 0..L-1
    for method, ranking in voters.items():
        top = ranking[:length]
        votes[top] += points[:len(top)] / sizes[family(method)]
    return np.argsort(-votes, kind="stable")


def agreement(rankings: dict[str, np.ndarray], ks=OVERLAP_KS) -> list[tuple[str, str | None, Score]]:
    """(method, other method or None, score) rows over the methods of one cell (one ranking each)."""
    rows = []
    methods = sorted(rankings)
    n_neurons = len(next(iter(rankings.values())))
    for k in (k for k in ks if k <= n_neurons):
        chance = chance_jaccard(k, n_neurons)
        for a in methods:
            pairs = {b: jaccard(rankings[a], rankings[b], k) for b in methods if b != a}
            rows += [(a, b, Score("jaccard", k, v, chance)) for b, v in pairs.items()]
            if pairs:
                rows.append((a, None, Score("avg_overlap", k, float(np.mean(list(pairs.values()))),
                                            chance)))
    if len(methods) < 2:
        return rows
    live = n_neurons - dead_tail([rankings[m] for m in methods])
    for a in methods:
        rhos = {b: spearman(rankings[a][:live], rankings[b][:live]) for b in methods if b != a}
        rows += [(a, b, Score("rank_corr", None, v, 0.0)) for b, v in rhos.items()]
        rows.append((a, None, Score("avg_rank_corr", None, float(np.mean(list(rhos.values()))), 0.0)))
        vote = consensus({b: rankings[b] for b in methods if b != a}, n_neurons)
        rows += [(a, None, Score("neuron_vote", k, jaccard(rankings[a], vote, k), chance_jaccard(k, n_neurons)))
                 for k in ks if k <= n_neurons]
    return rows


def seed_stability(rankings: list[np.ndarray], ks=OVERLAP_KS) -> list[Score]:
    """`stab_seed@k`: mean pairwise Jaccard@k of one method's rankings of one cell over seeds (>= 2 of them)."""
    if len(rankings) < 2:
        return []
    n_neurons = len(rankings[0])
    return [Score("stab_seed", k, float(np.mean([jaccard(a, b, k) for a, b in combinations(rankings, 2)])),
                  chance_jaccard(k, n_neurons))
            for k in ks if k <= n_neurons]


def bootstrap_stability(method, X: np.ndarray, y: np.ndarray | None, groups, reference: np.ndarray,
                        rng: np.random.Generator, n_boot: int, ks=OVERLAP_KS) -> list[Score]:
    """`stab_boot@k` (reference.md#metric-stability): rank B cluster-bootstrap resamples of the train words
    and compare each ranking with the full-data one, `reference`.

    A resample draws as many groups (train sentences: their words are not independent) as there are, with
    replacement, and keeps every word of each drawn group as often as it is drawn. The job's selected words
    are resampled as they are; the reference rebuilds §1.3 (balancing, caps) from the resampled sentences,
    which would add the undersampling's own noise on top of the data's. Each resample's `rank` gets its own
    generator spawned from `rng`, so a stochastic method's seed noise counts too (the `random` method
    scores chance). Rows: `stab_boot@k` = mean_b J_k(boot_b, reference); `stab_boot_pairwise@k` = mean
    pairwise J_k of the bootstrap rankings; `stab_boot_rho` = mean Spearman rho with the reference over the
    neurons before the common dead tail.
    """
    groups = np.asarray(groups)
    if groups.shape != (len(X),):
        raise NeuronbenchError(f"bootstrap: {groups.shape} group ids for {len(X)} train words; give one "
                               "sentence id per word")
    if n_boot < 1:
        raise NeuronbenchError(f"bootstrap: B must be a positive number of resamples, got {n_boot}")
    _, inverse = np.unique(groups, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    members = np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)
    rankings = []
    for _ in range(n_boot):
        drawn = rng.integers(len(members), size=len(members))
        rows = np.concatenate([members[g] for g in drawn])
        labels = None if y is None else np.asarray(y)[rows]
        rankings.append(np.asarray(method.rank(X[rows], labels, rng=rng.spawn(1)[0]), dtype=np.int64))
    n_neurons = len(reference)
    live = n_neurons - dead_tail([reference, *rankings])
    scores = [Score("stab_boot", k, float(np.mean([jaccard(r, reference, k) for r in rankings])),
                    chance_jaccard(k, n_neurons))
              for k in ks if k <= n_neurons]
    scores += [dataclasses.replace(s, metric="stab_boot_pairwise") for s in seed_stability(rankings, ks)]
    rho = np.mean([spearman(r[:live], reference[:live]) for r in rankings])
    return scores + [Score("stab_boot_rho", None, float(rho), 0.0)]
