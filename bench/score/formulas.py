"""Compositional explanations (Mu & Andreas 2020; reference addendum section D): the logical formula over boolean
atoms (labels, word forms) whose mask best matches a neuron's "on" mask by IoU, found by compexp's beam search.

Counts come from sparse matrix products (atoms are mostly false), so one round scores every beam formula combined
with every atom by AND, OR and AND NOT at the cost of two products per formula, with no loop over words or atoms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import sparse

from bench.errors import NeuronbenchError
from bench.score.detection import mask_iou

OPERATORS = ("AND", "OR", "AND NOT")  # compexp's OPS["all"]: NOT appears only as AND NOT atom
BEAM = 5  # compexp vision and the addendum's D.2; NLI used 10
MAX_LENGTH = 3  # leaves


@dataclass(frozen=True)
class Formula:
    """A left-deep formula ((a op b) op c) over atom columns: the only shape compexp's search builds."""

    leaves: tuple[int, ...]
    ops: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.leaves)

    def name(self, names) -> str:
        text = str(names[self.leaves[0]])
        for op, leaf in zip(self.ops, self.leaves[1:]):
            text = f"({text} {op} {names[leaf]})"
        return text[1:-1] if self.ops else text

    def mask(self, atoms) -> np.ndarray:
        matrix = atom_matrix(atoms)
        mask = _column(matrix, self.leaves[0])
        for op, leaf in zip(self.ops, self.leaves[1:]):
            column = _column(matrix, leaf)
            mask = mask & column if op == "AND" else mask | column if op == "OR" else mask & ~column
        return mask


class Scored(NamedTuple):
    formula: Formula
    iou: float


def atom_matrix(atoms) -> sparse.csc_array:
    """Words x atoms as a sparse 0/1 matrix; `atoms` is a boolean array or any scipy sparse matrix."""
    matrix = sparse.csc_array(atoms, dtype=np.float64)
    if matrix.ndim != 2 or not matrix.shape[1]:
        raise NeuronbenchError(f"atoms: expected a words x atoms matrix with at least one atom, got shape "
                               f"{matrix.shape}")
    return matrix


def _column(matrix: sparse.csc_array, j: int) -> np.ndarray:
    return matrix[:, [j]].toarray().ravel() > 0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks of the same words."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    return float(mask_iou(np.count_nonzero(a & b), np.count_nonzero(a), np.count_nonzero(b)))


def atom_ious(atoms, on: np.ndarray) -> np.ndarray:
    """IoU of every atom's mask with the mask `on`."""
    matrix, on = atom_matrix(atoms), _checked_on(on)
    _check_rows(matrix, on)
    return mask_iou(matrix.T @ on.astype(np.float64), matrix.sum(axis=0), np.count_nonzero(on))


def beam_search(atoms, on: np.ndarray, names, *, beam: int = BEAM, max_length: int = MAX_LENGTH) -> list[Scored]:
    """The final beam, best first: compexp's search for the formula of at most `max_length` leaves whose mask has
    the highest IoU with `on` (no length penalty, COMPLEXITY_PENALTY = 1).

    Every atom is scored; the best `beam` start the beam; each of `max_length` − 1 rounds combines every beam
    formula with every atom by AND, OR and AND NOT, merges the results with the old beam and cuts it back to
    `beam`, so the best IoU never falls as the length grows. Every atom is a candidate in every round (compexp's
    word-level search; its sentence-level one keeps only atoms of nonzero IoU, which rules out A AND NOT B for a B
    that never overlaps the neuron). Two departures that change no best IoU: an atom appears at most once in a
    formula (a repeat gives the mask of a shorter formula), and A OR B / A AND B are written once, operands in
    name order. Ties go to the shorter formula, then to the formula's name in sorted order (addendum D.2).
    """
    matrix, on = atom_matrix(atoms), _checked_on(on)
    _check_rows(matrix, on)
    names = [str(n) for n in names]
    if len(names) != matrix.shape[1]:
        raise NeuronbenchError(f"beam_search: {len(names)} names for {matrix.shape[1]} atoms")
    for value, what in ((beam, "beam"), (max_length, "max_length")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise NeuronbenchError(f"beam_search: {what}={value!r} must be a positive integer")
    n_on = np.count_nonzero(on)
    if not n_on:
        raise NeuronbenchError("beam_search: the neuron is on for no word, so no formula can match it; lower the "
                               "threshold (a smaller quantile, or alpha=None for x > 0)")
    name_rank = np.argsort(np.argsort(np.array(names), kind="stable"), kind="stable")
    sizes = matrix.sum(axis=0)
    with_on = matrix.T @ on.astype(np.float64)
    scored = {Formula((int(j),)): float(v) for j, v in _best(mask_iou(with_on, sizes, n_on), name_rank, beam)}

    def key(item):
        formula, value = item
        return -value, len(formula), formula.name(names)

    frontier = dict(sorted(scored.items(), key=key)[:beam])
    for _ in range(max_length - 1):
        grown = dict(frontier)
        for formula in [f for f in frontier if len(f) < max_length]:
            mask = formula.mask(matrix)
            both = mask & on
            n_mask, n_both = np.count_nonzero(mask), np.count_nonzero(both)
            meets, meets_on = matrix.T @ mask.astype(np.float64), matrix.T @ both.astype(np.float64)
            counts = {"AND": (meets_on, meets),  # (|F op a ∧ on|, |F op a|) for every atom a
                      "OR": (n_both + with_on - meets_on, n_mask + sizes - meets),
                      "AND NOT": (n_both - meets_on, n_mask - meets)}
            for op in OPERATORS:
                values = mask_iou(*counts[op], n_on)
                values[list(formula.leaves)] = -np.inf
                for j, value in _best(values, name_rank, beam):
                    grown[_combined(formula, op, int(j), name_rank)] = float(value)
        frontier = dict(sorted(grown.items(), key=key)[:beam])
    return [Scored(formula, value) for formula, value in frontier.items()]


def _best(values: np.ndarray, name_rank: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k atoms of highest value (ties to the earlier name), never an excluded one (−inf)."""
    order = np.lexsort((name_rank, -values))[:k]
    return [(j, values[j]) for j in order if np.isfinite(values[j])]


def _combined(formula: Formula, op: str, leaf: int, name_rank: np.ndarray) -> Formula:
    if len(formula) == 1 and op != "AND NOT" and name_rank[leaf] < name_rank[formula.leaves[0]]:
        return Formula((leaf, formula.leaves[0]), (op,))
    return Formula(formula.leaves + (leaf,), formula.ops + (op,))


def _checked_on(on) -> np.ndarray:
    on = np.asarray(on)
    if on.ndim != 1 or on.dtype != bool:
        raise NeuronbenchError(f"on: expected a 1-D boolean mask of words, got shape {on.shape}, dtype {on.dtype}")
    return on


def _check_rows(matrix: sparse.csc_array, on: np.ndarray) -> None:
    if matrix.shape[0] != len(on):
        raise NeuronbenchError(f"atoms have {matrix.shape[0]} words, the on mask {len(on)}")
