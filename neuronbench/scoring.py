"""Score a ranking, or a set of neurons of your own, with any registered scorer, as a job scores a cell.

The grid and the generators are the runner's (`bench.scorers.k_grid`, `bench.run.score_cell`), so a ranking's
values here equal the records a `neuronbench` job writes for it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.errors import NeuronbenchError
from bench.run import score_cell
from bench.scorers import checked_ks, get_scorer, k_grid
from neuronbench.experiment import Activations

COLUMNS = ("scorer", "metric", "k", "value", "chance", "ci_low", "ci_high")  # ci: test-sentence bootstrap, 95%


def score(neurons, acts: Activations, scorers: list[str] | None = None, ks: list[int] | None = None) -> pd.DataFrame:
    """One row per (scorer, metric, k): `neurons` is a ranking (a permutation of the layer's D neurons) or a set
    of neurons (fewer than D distinct indices, in the order you rank them).

    A ranking is scored on the runner's grid: the ks asked for (default: the config's, e.g. the quick suite's
    1, 3, 10, 30, 100) plus D itself, because probe_auc is the area of the curve up to the all-neuron probe at
    k = D, and a grid that stopped short of D would be another metric under the same name. A k above D that you
    list is an error; the config's ks lose theirs per layer, as in a job (one grid serves layers of every width).

    A set S is scored at k = |S| only: its rows are those of the ranking "S, then every other neuron in index
    order" at k = |S|, so every row reads S alone (the order after S is yours to give only with a full ranking;
    curve areas and bottom-k rows depend on it and are left out). Scorers default to the config's
    (probe_acc, selectivity, ablation)."""
    if not isinstance(acts, Activations):
        raise NeuronbenchError(f"score: expected the Activations of a cell (nb.load(...).activations(layer)), got "
                               f"{type(acts).__name__}")
    d = acts.n_neurons
    chosen = _neurons(neurons, d)
    names = list(acts.cfg.scorers if scorers is None else [scorers] if isinstance(scorers, str) else scorers)
    for name in names:
        get_scorer(name)  # an unknown name fails before any probe is fitted, listing the valid ones
    if len(chosen) == d:
        too_wide = [] if ks is None else [k for k in checked_ks(ks) if k > d]
        if too_wide:
            raise NeuronbenchError(f"ks={list(ks)}: k={too_wide[0]} is above the {d} neurons of {acts.name}; "
                                   f"give ks up to {d} (k = D is always scored)")
        grid = k_grid(d, acts.cfg.ks if ks is None else ks)  # the config's ks: each layer keeps those up to D
        ranking = chosen
    else:
        if ks is not None:
            raise NeuronbenchError(f"score: a set of {len(chosen)} neurons is scored at k = {len(chosen)} only; "
                                   f"leave ks out, or pass a full ranking of all {d} neurons for a grid")
        grid = [len(chosen)]
        ranking = np.concatenate([chosen, np.setdiff1d(np.arange(d), chosen)])
    rows, _ = score_cell(ranking, acts.layer_data, grid, names, int(acts.cfg.seed), acts.key)
    frame = pd.DataFrame([(name, s.metric, s.k, s.value, s.chance, *(s.interval or (np.nan, np.nan)))
                          for name, s in rows], columns=list(COLUMNS))
    if len(chosen) < d:
        frame = frame[(frame["k"] == len(chosen)) & ~frame["metric"].str.contains("bottom")]
    return frame.astype({"k": "Int64"}).reset_index(drop=True)


def _neurons(neurons, d: int, where: str = "score", empty: bool = False) -> np.ndarray:
    """`neurons` as distinct int64 indices below d (none at all only if `empty`), or one error, prefixed with
    `where`, saying what is wrong."""
    array = np.asarray(neurons)
    if empty and array.shape == (0,):
        return array.astype(np.int64)
    if array.ndim != 1 or not len(array):
        raise NeuronbenchError(f"{where}: expected a 1-D list of neuron indices, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise NeuronbenchError(f"{where}: neuron indices must be integers, got dtype {array.dtype}")
    if array.min() < 0 or array.max() >= d:
        raise NeuronbenchError(f"{where}: neuron {array.min() if array.min() < 0 else array.max()} is outside the "
                               f"layer's {d} neurons (0..{d - 1})")
    if len(np.unique(array)) != len(array):
        raise NeuronbenchError(f"{where}: a neuron appears twice; a ranking or a set lists each neuron once")
    return array.astype(np.int64)
