"""Every metric the scorers and the runner emit, by name: the declarations (bench.core.metrics.Metric) that each
module keeps beside its code, gathered once for the leaderboard."""

from __future__ import annotations

from bench import agreement, causal_scores, run, scorers
from bench.core.metrics import GRID, Metric


def _by_name(*declarations: tuple[Metric, ...]) -> dict[str, Metric]:
    declared: dict[str, Metric] = {}
    for metric in (m for group in declarations for m in group):
        if metric.name in declared:
            raise ValueError(f"metric {metric.name!r} is declared twice")
        declared[metric.name] = metric
    return declared


def _families(metrics: dict[str, Metric]) -> dict[str, tuple[str, ...]]:
    """Headline family -> its per-k metrics, families in the order they are first declared."""
    families: dict[str, list[str]] = {}
    for metric in metrics.values():
        if metric.family is not None:
            families.setdefault(metric.family, []).append(metric.name)
    return {family: tuple(names) for family, names in families.items()}


METRICS = _by_name(scorers.METRICS, causal_scores.METRICS, agreement.METRICS, run.METRICS)
RANKED = tuple(name for name, metric in METRICS.items() if metric.ranked)
GRID_METRICS = tuple(name for name, metric in METRICS.items() if metric.ks == GRID)
FAMILIES = _families(METRICS)
