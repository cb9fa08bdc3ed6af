"""Cross-method agreement of rankings: Jaccard@k per pair and its mean, beside chance (Fan et al. 2023).

reference.md#metric-overlap. It needs several rankings of one cell at once, so the board builder
runs it over the rankings saved by the jobs rather than inside a job.
"""

from __future__ import annotations

import numpy as np

from bench.scorers import Score

OVERLAP_KS = (10, 20, 30, 40, 50, 100)


def jaccard(a: np.ndarray, b: np.ndarray, k: int) -> float:
    top_a, top_b = set(a[:k].tolist()), set(b[:k].tolist())
    return len(top_a & top_b) / len(top_a | top_b)


def chance_jaccard(k: int, n_neurons: int) -> float:
    """Expected Jaccard of two independent random k-sets out of D: E|A∩B| = k²/D."""
    shared = k * k / n_neurons
    return shared / (2 * k - shared)


def agreement(rankings: dict[str, np.ndarray], ks=OVERLAP_KS) -> list[tuple[str, str | None, Score]]:
    """(method, other method or None, score) rows: `jaccard` per ordered pair, `avg_overlap` per method."""
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
    return rows
