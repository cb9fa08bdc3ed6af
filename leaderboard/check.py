"""`neuronbench-board check`: the built-in methods re-run on small fixed cells and compared with committed goldens.

A change that silently alters a method's ranking or a scorer's numbers moves them away from the golden set
(design.md#leaderboard); CI runs the check after the tests. In the golden folder, `check.yaml` states the cells,
the methods (and which are skipped, with why) and the tolerances; `golden.json` holds each method's ranking prefix
and scores per cell. Every number comes from bench.run.run_methods, the path of a real benchmark run.

A method author's repository uses the same machinery on its own golden folder: its check.yaml's `method_dir` names
the folder of its conf/method-style configs, `check --golden <folder> --update` writes its golden.json, and its CI
runs `check --golden <folder>` or, from pytest, `assert_matches_golden(<folder>)` (leaderboard/README.md).
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from bench.agreement import jaccard
from bench.cache import atomic_write_bytes
from bench.errors import NeuronbenchError
from bench.run import METHOD_CONFIGS, ranking_file, run_methods, task_form
from leaderboard.submission import compose_config

log = logging.getLogger(__name__)

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
SPEC_FILE = "check.yaml"
GOLDEN_FILE = "golden.json"
REQUIRED_KEYS = ("seed", "top", "cells", "tolerance")


@dataclass(frozen=True)
class Comparison:
    """One method on one cell against its golden: the top-k overlap and every score that changed."""

    method: str
    cell: str
    k: int
    jaccard: float | None  # J@k of the fresh and golden rankings; None: no golden to compare with
    deltas: tuple[tuple[str, float, float], ...]  # (metric@k, golden, fresh) for values that differ
    failures: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.failures


def load_spec(golden_dir: Path = GOLDEN_DIR) -> dict:
    """check.yaml of a golden folder, as plain containers; its `method_dir` made absolute (it is relative to the
    golden folder, so a check runs the same from any working directory)."""
    path = Path(golden_dir) / SPEC_FILE
    if not path.is_file():
        raise NeuronbenchError(f"{path} is missing; copy leaderboard/golden/{SPEC_FILE} (or the short one in "
                               "leaderboard/README.md) and adapt it")
    spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    missing = [key for key in REQUIRED_KEYS if not isinstance(spec, dict) or key not in spec]
    if missing:
        raise NeuronbenchError(f"{path}: missing keys {missing} (see leaderboard/golden/{SPEC_FILE})")
    if spec.get("method_dir") is not None:
        spec["method_dir"] = str((path.parent / spec["method_dir"]).resolve())
    return spec


def method_configs(spec: dict, names: list[str] | None = None) -> dict[str, dict]:
    """The configs of the checked methods: <method_dir>/<name>.yaml (default neuronbench's conf/method) or
    check.yaml's `method_configs`, with its `method_overrides` applied. `names` picks a subset; by default `methods`
    in check.yaml (`all` = every config in the method folder not under `skip`, and every `method_configs` entry).
    Each config's class must import, so a missing package fails here, before any work, naming the config."""
    inline = spec.get("method_configs") or {}
    skip = spec.get("skip") or {}
    folder = Path(spec.get("method_dir") or METHOD_CONFIGS)
    if not folder.is_dir():
        raise NeuronbenchError(f"check: method_dir {folder} (from {SPEC_FILE}) is not a folder")
    wanted = names if names is not None else spec.get("methods", "all")
    if wanted == "all":
        wanted = [path.stem for path in sorted(folder.glob("*.yaml")) if path.stem not in skip]
        wanted += [name for name in inline if name not in wanted]
    configs = {}
    for name in wanted:
        path = folder / f"{name}.yaml"
        if name in inline:
            params, where = dict(inline[name]), f"{SPEC_FILE} method_configs.{name}"
        elif path.is_file():
            params, where = OmegaConf.to_container(OmegaConf.load(path), resolve=True), str(path)
        else:
            raise NeuronbenchError(f"check: unknown method {name!r}: no {path} and no entry in {SPEC_FILE}'s "
                                   "method_configs")
        _check_target(params, where)
        configs[name] = {**params, **(spec.get("method_overrides") or {}).get(name, {})}
    return configs


def _check_target(params, where: str) -> None:
    target = params.get("_target_") if isinstance(params, dict) else None
    if not isinstance(target, str) or "." not in target:
        raise NeuronbenchError(f"{where}: needs `_target_: package.module.Class`, the method's class")
    module, _, name = target.rpartition(".")
    try:
        getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise NeuronbenchError(f"{where}: _target_ {target} does not import ({err}); install the package that "
                               "holds it (pip install -e .) or put its folder on PYTHONPATH") from None


def cell_id(task: str, concept, model: str, site: str, layer: int, seed: int) -> str:
    form = task_form(task, concept if isinstance(concept, str) else None)
    return f"{form}/{model}/{site}/L{int(layer)}/seed{int(seed)}"


def fresh_results(spec: dict, configs: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """{cell id: {method: {"top": ranking prefix, "scores": {metric@k: value}}}} from runner jobs on the cells."""
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="neuronbench-check-") as workdir:
        for cell in spec["cells"]:
            base = compose_config([
                f"task={cell['task']}", f"model={cell['model']}", f"seed={spec['seed']}",
                f"results_dir={workdir}", "force=true", "quiet=true",
                f"scorers=[{','.join(cell['scorers'])}]", f"ks=[{','.join(map(str, cell['ks']))}]",
                f"layers=[{','.join(map(str, cell['layers']))}]" if cell.get("layers") else "layers=null",
                *cell.get("overrides", [])])
            folders = run_methods(base, {method: params for method, params in configs.items()
                                         if method not in cell.get("skip", ())})
            for method, out in folders.items():
                records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
                for row in records:
                    key = cell_id(row["task"], row["concept"], row["model"], row["site"], row["layer"], row["seed"])
                    entry = results.setdefault(key, {}).setdefault(method, {"scores": {}})
                    if "top" not in entry:
                        ranking = np.load(ranking_file(out, row["site"], row["layer"]), allow_pickle=False)
                        entry["top"] = ranking[:spec["top"]].tolist()
                    label = row["metric"] if row["k"] is None else f"{row['metric']}@{row['k']}"
                    entry["scores"][label] = row["value"]
            log.info("check: %d methods on %s done", len(folders), cell["task"])
    return results


def compare(golden: dict, fresh: dict, spec: dict,
            update: str = "neuronbench-board check --update") -> list[Comparison]:
    """Every fresh (cell, method) against its golden, with check.yaml's tolerances; `update` is the command that
    records a missing golden."""
    tolerance = spec["tolerance"]
    k = int(tolerance["jaccard_k"])
    comparisons = []
    for cell, methods in sorted(fresh.items()):
        for method, result in sorted(methods.items()):
            limits = {**tolerance["default"], **(tolerance.get("methods") or {}).get(method, {})}
            old = golden.get(cell, {}).get(method)
            if old is None:
                comparisons.append(Comparison(method, cell, k, None, (), (
                    f"no golden for this method and cell: run `{update}` and commit {GOLDEN_FILE}",)))
                continue
            overlap = jaccard(np.asarray(old["top"]), np.asarray(result["top"]), k)
            failures = []
            if overlap < limits["min_jaccard"]:
                failures.append(f"J@{k} below {limits['min_jaccard']}")
            deltas, beyond = [], 0
            for label in sorted(set(old["scores"]) | set(result["scores"])):
                before, after = old["scores"].get(label), result["scores"].get(label)
                if before is None or after is None:
                    failures.append(f"{label} {'appeared' if before is None else 'disappeared'}")
                elif not _same(before, after):
                    deltas.append((label, before, after))
                    beyond += limits["value_atol"] is not None and not abs(after - before) <= limits["value_atol"]
            if beyond:
                failures.append(f"{beyond} of {len(deltas)} changed values beyond ±{limits['value_atol']}")
            comparisons.append(Comparison(method, cell, k, overlap, tuple(deltas), tuple(failures)))
    return comparisons


def _golden_text(golden: dict) -> str:
    """JSON with one line per (cell, method), so a moved method is one line in a diff."""
    cells = []
    for cell in sorted(golden):
        entries = [f"  {json.dumps(method)}: {json.dumps(golden[cell][method], sort_keys=True)}"
                   for method in sorted(golden[cell])]
        cells.append(f" {json.dumps(cell)}: {{\n" + ",\n".join(entries) + "\n }")
    return "{\n" + ",\n".join(cells) + "\n}\n"


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def report(comparisons: list[Comparison], stale: list[str]) -> list[str]:
    """Readable lines: one per (method, cell) that moved at all, failures first, then a summary."""
    lines = []
    for c in sorted(comparisons, key=lambda c: (c.ok, c.method, c.cell)):
        if c.ok and not c.deltas and (c.jaccard is None or c.jaccard == 1):
            continue
        status = "FAIL" if not c.ok else "drift"
        shown = sorted(c.deltas, key=lambda d: -abs(d[2] - d[1]))[:3]
        moved = "; ".join(f"{label} {old:.4f} -> {new:.4f} ({new - old:+.4f})" for label, old, new in shown)
        more = f" (+{len(c.deltas) - 3} more)" if len(c.deltas) > 3 else ""
        overlap = "" if c.jaccard is None else f"J@{c.k} {c.jaccard:.2f}"
        parts = [part for part in (overlap, moved + more, "; ".join(c.failures)) if part]
        lines.append(f"{status} {c.method} on {c.cell}: " + " | ".join(parts))
    lines += [f"FAIL golden has {entry}, which this run no longer produces: rerun with --update" for entry in stale]
    failed = sum(not c.ok for c in comparisons) + len(stale)
    lines.append(f"check: {len(comparisons)} method x cell comparisons, {failed} failed, "
                 f"{sum(bool(c.deltas) and c.ok for c in comparisons)} within tolerance")
    return lines


def check(golden_dir: Path = GOLDEN_DIR, methods: list[str] | None = None, update: bool = False,
          spec: dict | None = None) -> tuple[bool, list[str]]:
    """Run the checked methods on the golden cells; compare (or, with `update`, rewrite golden.json).

    Returns (passed, report lines). `spec` replaces check.yaml (tests narrow the cells with it). Only a full check
    (no `methods`, no `spec`) fails on goldens nothing produces any more; an update of a subset leaves the other
    goldens alone.
    """
    golden_dir = Path(golden_dir)
    full = methods is None and spec is None
    spec = spec if spec is not None else load_spec(golden_dir)
    configs = method_configs(spec, methods)
    fresh = fresh_results(spec, configs)
    path = golden_dir / GOLDEN_FILE
    golden = json.loads(path.read_text()) if path.is_file() else {}
    if update:  # a full update replaces the goldens; a subset's is merged into them
        golden = {} if full else golden
        for cell, results in fresh.items():
            golden.setdefault(cell, {}).update(results)
        atomic_write_bytes(path, _golden_text(golden).encode())
        return True, [f"wrote {path}: {sum(len(r) for r in fresh.values())} method x cell goldens updated"]
    # A full check also fails on goldens nothing produces any more (a removed method, a changed cell).
    stale = [] if not full else [
        f"{method} on {cell}" for cell, results in sorted(golden.items()) for method in sorted(results)
        if method not in configs or cell not in fresh]
    command = "neuronbench-board check" + ("" if golden_dir == GOLDEN_DIR else f" --golden {golden_dir}")
    comparisons = compare(golden, fresh, spec, update=f"{command} --update")
    lines = report(comparisons, stale)
    return all(c.ok for c in comparisons) and not stale, lines


def assert_matches_golden(golden_dir: Path, methods: list[str] | None = None) -> None:
    """The check of a golden folder as a pytest assertion, for a method author's own test suite: fails with the
    report's lines (which method moved on which cell, and how far). Goldens are written by `check --update`."""
    passed, lines = check(Path(golden_dir), methods=methods)
    if not passed:
        raise AssertionError("golden check failed:\n" + "\n".join(lines))

