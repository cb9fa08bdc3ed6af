"""The board's headline: one summary per scorer family and cell, ranked by the share of other methods beaten.

A cell is (task, concept, model, layer, site). In each cell every scorer family gives one value per method
(FAMILIES: an area over ln k, or the mean of two), and methods are compared only there:

- Identical rankings are one entry: methods whose family values agree on every seed and k of the cell share
  one place, so a method's clone under another name changes no other method's score.
- A method's cell score is the share of the cell's other entries it beats (a tie counts half):
  (n - rank) / (n - 1), which does not depend on how many methods cover the cell.
- A (cell, family) where no method beats `random` by more than twice the seed standard error of the
  difference is flagged and left out: its order is noise.
- The headline is the mean over families of the mean cell score over the cells a method has, so each family
  weighs the same and agreement or stability never enter it.

Uncertainty: a bootstrap over cells (the same draws for every method, so differences are paired) gives a 95%
interval for each headline and each family score, and a two-sided paired test for each pair of methods, with Holm's
step-down correction over all pairs of the board at alpha 0.05 (reference-causal-and-uncertainty.md#stats-paired;
the test draws 50 replicates per pair, at least B, since a bootstrap p-value is at least 1/(B + 1));
two methods are tied when their adjusted difference is not significant, and `tier` is 1 + the number of methods
significantly better. It measures how much the headline depends on which cells the board holds,
not the test-word noise inside a cell (see README, "Reading the headline").
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

# FAMILIES: family -> its per-k metrics, as the scorers declare them; a family's cell value is the area over ln k of
# each (as bench.scorers.log_area computes it: probe_auc and selectivity_auc are the first two), averaged over them.
from bench.metrics import FAMILIES

UNIT_KEYS = ["task", "concept", "model", "layer", "site"]
METHOD_KEYS = ["source", "method"]
BASELINE = "random"
NOISE_SE = 2.0  # a method beats random when its margin exceeds this many standard errors
BOOTSTRAP = 1000
MIN_UNITS = 5  # fewer cells give no interval and no tiers: a bootstrap over 1-4 cells says nothing
LEVEL = 0.95
TEST_DRAWS_PER_PAIR = 50  # the pairwise tests draw at least this many bootstrap replicates per pair (test_draws)
DECIMALS = 9  # values equal up to summation order (areas are recomputed here) are equal


def family_values(records: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, family, method, seed): the family's summary value."""
    curve_keys = [*UNIT_KEYS, *METHOD_KEYS, "seed", "metric"]
    parts = []
    for family, metrics in FAMILIES.items():
        rows = records[records["metric"].isin(metrics) & records["k"].notna()]
        if len(rows):
            areas = log_areas(rows, curve_keys)
            summary = areas.groupby([*UNIT_KEYS, *METHOD_KEYS, "seed"], dropna=False)["value"].mean()
            parts.append(summary.reset_index().assign(family=family))
    if not parts:
        return pd.DataFrame(columns=[*UNIT_KEYS, *METHOD_KEYS, "seed", "value", "family"])
    return pd.concat(parts, ignore_index=True)


def log_areas(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """bench.scorers.log_area of each curve (the rows sharing `keys`, over k), vectorized: the trapezoids over
    ln k divided by the curve's ln-k span; a one-point curve is its value, and a NaN point makes the area NaN."""
    rows = rows.assign(x=np.log(rows["k"].astype(float))).sort_values([*keys, "x"])
    grouped = rows.groupby(keys, dropna=False, sort=False)
    previous_x, previous_value = grouped["x"].shift(), grouped["value"].shift()
    trapezoid = ((rows["value"] + previous_value) / 2 * (rows["x"] - previous_x)).where(previous_x.notna(), 0.0)
    rows = rows.assign(trapezoid=trapezoid, missing=rows["value"].isna())
    curves = rows.groupby(keys, dropna=False, sort=False).agg(
        area=("trapezoid", "sum"), low=("x", "min"), high=("x", "max"), last=("value", "last"),
        missing=("missing", "any"))
    span = curves["high"] - curves["low"]
    value = np.where(span > 0, curves["area"] / span.where(span > 0, 1.0), curves["last"])
    return curves.reset_index()[keys].assign(value=np.where(curves["missing"], np.nan, value))


def cell_scores(values: pd.DataFrame) -> pd.DataFrame:
    """Per (cell, family, method): mean and variance over seeds, its score (the share of the cell's other entries
    beaten; clones are one entry) and whether the (cell, family) is flagged as noise (`noise_only`)."""
    by_cell = [*UNIT_KEYS, "family"]
    columns = [*by_cell, *METHOD_KEYS, "mean", "var", "n", "score", "entries", "flagged"]
    values = values[np.isfinite(values["value"].astype(float))]
    if values.empty:
        return pd.DataFrame(columns=columns)
    stats = values.groupby([*by_cell, *METHOD_KEYS], dropna=False)["value"].agg(
        mean="mean", var=lambda v: v.var(ddof=1), n="count").reset_index()
    # A method's fingerprint in a cell: its values of every family and seed there; equal ones are one entry.
    wide = (values.assign(value=values["value"].round(DECIMALS))
            .set_index([*UNIT_KEYS, *METHOD_KEYS, "family", "seed"])["value"].unstack(["family", "seed"]))
    wide.columns = [f"{family}/{seed}" for family, seed in wide.columns]
    entry = wide.reset_index().groupby([*UNIT_KEYS, *wide.columns], dropna=False, sort=False).ngroup()
    stats = stats.merge(wide.index.to_frame(index=False).assign(entry=entry.to_numpy()),
                        on=[*UNIT_KEYS, *METHOD_KEYS])
    entries = stats.drop_duplicates([*by_cell, "entry"])
    places = entries.assign(
        rank=entries["mean"].round(DECIMALS).groupby([entries[k] for k in by_cell], dropna=False)
        .rank(ascending=False, method="average"),
        entries=entries.groupby(by_cell, dropna=False)["mean"].transform("size"))
    stats = stats.merge(places[[*by_cell, "entry", "rank", "entries"]], on=[*by_cell, "entry"])
    stats = stats[stats["entries"] >= 2]
    stats = stats.assign(score=(stats["entries"] - stats["rank"]) / (stats["entries"] - 1))
    flagged = noise_only(stats, by_cell)
    stats = stats.merge(flagged.rename("flagged").reset_index(), on=by_cell, how="left")
    return stats.assign(flagged=stats["flagged"].fillna(False).astype(bool))[columns]


def noise_only(stats: pd.DataFrame, by_cell: list[str]) -> pd.Series:
    """Per cell: True when `random` is there with two seeds or more and no method beats it by NOISE_SE standard
    errors of the difference (seed variances). A cell with fewer seeds cannot be judged and is kept."""
    baseline = stats[(stats["method"] == BASELINE) & (stats["n"] >= 2)][[*by_cell, "mean", "var", "n"]]
    others = stats[(stats["method"] != BASELINE) & (stats["n"] >= 2)].merge(
        baseline, on=by_cell, suffixes=("", "_random"))
    se = np.sqrt(others["var"] / others["n"] + others["var_random"] / others["n_random"])
    beats = (others["mean"] - others["mean_random"]) > NOISE_SE * se
    return ~beats.groupby([others[k] for k in by_cell], dropna=False).any()


def headline(records: pd.DataFrame, n_boot: int = BOOTSTRAP, seed: int = 0) -> pd.DataFrame:
    """One row per (source, method), best first: `score` (the headline), `low`/`high` (its 95% interval), `tier`,
    the per-family scores, `cells` (unflagged cells scored) and `aliases` (methods identical to it everywhere).
    `attrs` holds the families, the (better, worse) pairs of significant differences and the cell counts."""
    scores = cell_scores(family_values(records))
    methods = records[METHOD_KEYS].drop_duplicates().sort_values(METHOD_KEYS, ignore_index=True)
    kept = scores[~scores["flagged"].astype(bool)]
    families = [f for f in FAMILIES if f in set(kept["family"])]
    units = kept[UNIT_KEYS].drop_duplicates().reset_index(drop=True)
    unit_index = pd.MultiIndex.from_frame(units)
    method_index = pd.MultiIndex.from_frame(methods)
    # (family, unit, method) matrix of scores, NaN where a method has no score
    matrix = np.full((len(families), len(units), len(methods)), np.nan)
    for f, family in enumerate(families):
        part = kept[kept["family"] == family]
        u = unit_index.get_indexer(pd.MultiIndex.from_frame(part[UNIT_KEYS]))
        m = method_index.get_indexer(pd.MultiIndex.from_frame(part[METHOD_KEYS]))
        matrix[f, u, m] = part["score"].to_numpy()
    rng = np.random.default_rng(seed)
    draws = (rng.multinomial(len(units), np.full(len(units), 1 / len(units)), size=n_boot) if len(units)
             else np.zeros((n_boot, 0)))
    weights = np.vstack([np.ones(len(units)), draws])
    boot = bootstrap_headlines(matrix, weights)  # (1 + B, M): row 0 is the point estimate
    point, draws = boot[0], boot[1:]
    if len(units) >= MIN_UNITS:
        low, high = percentile_interval(draws)
        # A bootstrap p-value is at least 1/(B + 1), and Holm multiplies the smallest by the number of pairs m: the
        # test takes max(B, TEST_DRAWS_PER_PAIR * m) draws (the interval's B first, then more from the same stream),
        # so that the smallest adjusted p can reach 1/TEST_DRAWS_PER_PAIR, below alpha.
        n_test = test_draws(n_boot, int(np.isfinite(point).sum()))
        extra = (bootstrap_headlines(matrix, rng.multinomial(len(units), np.full(len(units), 1 / len(units)),
                                                             size=n_test - n_boot)) if n_test > n_boot
                 else draws[:0])
        better, p_raw, p_holm = pairwise_tests(point, np.vstack([draws, extra]))  # better[a, b]: a beats b
        tier = np.where(np.isnan(point), np.nan, 1 + better.sum(axis=0))
    else:
        low = high = tier = np.full(len(methods), np.nan)
        better = np.zeros((len(methods), len(methods)), dtype=bool)
        p_raw = p_holm = np.full((len(methods), len(methods)), np.nan)
    family_scores = {family: nanmean_weighted(matrix[f], np.ones(len(units))) for f, family in enumerate(families)}
    family_scores |= {f"{family}_{end}": value for f, family in enumerate(families)
                      for end, value in zip(("low", "high"), family_interval(matrix[f:f + 1], weights[1:]))}
    table = methods.assign(score=point, low=low, high=high, tier=tier,
                           cells=(~np.isnan(matrix)).any(axis=0).sum(axis=0), **family_scores)
    table["aliases"] = aliases(scores, methods)
    significant = {(a, b) for i, a in enumerate(zip(methods["source"], methods["method"]))
                   for j, b in enumerate(zip(methods["source"], methods["method"])) if better[i, j]}
    table = table.sort_values(["score", "method", "source"], ascending=[False, True, True], na_position="last",
                              ignore_index=True)
    keys = list(zip(methods["source"], methods["method"]))
    p_values = {(keys[i], keys[j]): (float(p_raw[i, j]), float(p_holm[i, j]))
                for i in range(len(keys)) for j in range(i + 1, len(keys)) if np.isfinite(p_raw[i, j])}
    table.attrs.update(families=families, significant=significant, p_values=p_values, flagged=int(scores.drop_duplicates([*UNIT_KEYS, "family"])["flagged"].sum()),
                       scored=int(len(scores.drop_duplicates([*UNIT_KEYS, "family"]))), units=len(units))
    return table


def test_draws(n_boot: int, n_methods: int) -> int:
    """How many bootstrap draws the pairwise tests of n_methods take: n_boot, raised to TEST_DRAWS_PER_PAIR x the
    number of pairs (none when n_boot is 0)."""
    pairs = n_methods * (n_methods - 1) // 2
    return max(n_boot, TEST_DRAWS_PER_PAIR * pairs) if n_boot > 0 else 0


def paired_p_values(point: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """(M,) headlines and their (B, M) bootstrap draws -> (M, M) two-sided p-values of each paired difference
    Δ = θ_a − θ_b, with the draws shifted to the null (reference-causal-and-uncertainty.md#stats-paired):
    p = (1 + #{b : |Δ*_b − Δ̂| ≥ |Δ̂|}) / (B + 1), over the draws where both methods have cells; NaN on the
    diagonal and for a method without cells."""
    delta = point[:, None] - point[None, :]
    count, n = np.zeros(delta.shape), np.zeros(delta.shape)
    for a in range(len(point)):  # one method against all at a time: (B, M), not (B, M, M), in memory
        boot = draws[:, a, None] - draws
        finite = np.isfinite(boot)
        with np.errstate(invalid="ignore"):  # float noise: an equal pair is p = 1
            count[a] = ((np.abs(boot - delta[a]) >= np.abs(delta[a]) - 1e-12) & finite).sum(axis=0)
        n[a] = finite.sum(axis=0)
    p = (1 + count) / (n + 1)
    p[~np.isfinite(delta) | (n == 0)] = np.nan
    np.fill_diagonal(p, np.nan)
    return p


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN left out and kept): the i-th smallest of m,
    p_(i), becomes max over j <= i of min(1, (m − j + 1) p_(j))."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    present = np.flatnonzero(np.isfinite(p))
    order = present[np.argsort(p[present], kind="stable")]
    m = len(order)
    if m:
        scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
        out[order] = np.maximum.accumulate(scaled)
    return out


def pairwise_tests(point: np.ndarray, draws: np.ndarray, alpha: float = 1 - LEVEL) -> tuple[np.ndarray, ...]:
    """Every pair of methods on the board tested once (paired_p_values), Holm-adjusted over all pairs:
    (better, p, p_holm), each (M, M); better[a, b] is True when a's headline is above b's and the adjusted
    p-value is below alpha. Pairs whose adjusted difference is not significant are tied."""
    p = paired_p_values(point, draws)
    upper = np.triu_indices(len(point), 1)
    adjusted = np.full(p.shape, np.nan)
    adjusted[upper] = holm(p[upper])
    adjusted.T[upper] = adjusted[upper]
    with np.errstate(invalid="ignore"):
        better = (adjusted < alpha) & (point[:, None] > point[None, :])
    return better, p, adjusted


def family_interval(matrix: np.ndarray, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 95% interval of one family's score ((1, U, M) scores) over the headline's cell draws (B, U); NaN with
    fewer than MIN_UNITS cells, as the headline's."""
    if draws.shape[1] < MIN_UNITS:
        return np.full(matrix.shape[2], np.nan), np.full(matrix.shape[2], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return percentile_interval(bootstrap_headlines(matrix, draws))


def percentile_interval(boot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The LEVEL percentile interval of (B, M) bootstrap values, per method."""
    alpha = (1 - LEVEL) / 2
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a method without cells has an all-NaN column
        return np.nanquantile(boot, alpha, axis=0), np.nanquantile(boot, 1 - alpha, axis=0)


def nanmean_weighted(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(U, M) scores -> (M,) weighted mean over the units each method has; NaN if it has none."""
    present = ~np.isnan(scores)
    total = weights @ np.where(present, scores, 0.0)
    count = weights @ present
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)


def bootstrap_headlines(matrix: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(F, U, M) scores and (B, U) unit weights -> (B, M): per draw, the mean over families of each family's
    weighted mean over units."""
    present = ~np.isnan(matrix)
    totals = np.einsum("bu,fum->bfm", weights, np.where(present, matrix, 0.0))
    counts = np.einsum("bu,fum->bfm", weights, present.astype(float))
    if len(matrix) == 0:
        return np.full((len(weights), matrix.shape[2]), np.nan)
    per_family = np.where(counts > 0, totals / np.where(counts > 0, counts, 1), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a method without cells is NaN, not a warning
        return np.nanmean(per_family, axis=1)


def aliases(scores: pd.DataFrame, methods: pd.DataFrame) -> list[str]:
    """For each method, the other methods whose scores equal its own in every (cell, family) either has."""
    keyed = scores.assign(key=list(zip(*(scores[c].astype(str) for c in [*UNIT_KEYS, "family"]))))  # NaN != NaN
    profiles = {identity: frozenset(zip(group["key"], group["mean"].round(DECIMALS)))
                for identity, group in keyed.groupby(METHOD_KEYS)}
    out = []
    for identity in zip(methods["source"], methods["method"]):
        mine = profiles.get(identity)
        same = sorted(other[1] for other, profile in profiles.items()
                      if other != identity and mine and profile == mine)
        out.append(", ".join(same))
    return out
