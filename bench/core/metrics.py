"""What a scorer declares about each metric it emits, beside its code, so the leaderboard reads these declarations
(bench.metrics gathers them) instead of keeping its own lists of metric names."""

from __future__ import annotations

from dataclasses import dataclass, field

GRID = "grid"  # Metric.ks: the reference k grid up to D (bench.scorers.k_grid), which sets a board's headline k
OWN = "own"  # Metric.ks: the scorer's own budgets (capped, %-of-D, overlap or planted-set sizes)


@dataclass(frozen=True)
class Metric:
    """One record `metric`: `ranked` ones decide the board's cell ranks, the rest are shown as context.

    `ks` is None for one value per curve, else GRID or OWN; `family` is the headline family whose area over ln k
    it enters (leaderboard.headline); `higher_is_better` is None for a count or baseline with no better direction;
    `needs` names what a cell must have besides activations and labels (e.g. "model", "truth", "pairs").
    """

    name: str
    ranked: bool = False
    ks: str | None = None
    family: str | None = None
    higher_is_better: bool | None = True
    needs: frozenset[str] = field(default_factory=frozenset)
    doc: str = ""

    def __post_init__(self):
        if self.ks not in (None, GRID, OWN):
            raise ValueError(f"metric {self.name!r}: ks must be None, {GRID!r} or {OWN!r}, got {self.ks!r}")
        if self.ranked and self.higher_is_better is not True:
            raise ValueError(f"metric {self.name!r}: the board ranks higher-is-better values only")
        if self.family is not None and self.ks is None:
            raise ValueError(f"metric {self.name!r}: a headline family takes an area over k, so it needs ks")

    @property
    def per_k(self) -> bool:
        return self.ks is not None
