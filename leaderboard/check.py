"""`neuronbench-board check`: the built-in methods re-run on small fixed cells and compared with committed goldens.

A change that silently alters a method's ranking or a scorer's numbers moves them away from the golden set
(design.md#leaderboard); CI runs the check after the tests. In the golden folder, `check.yaml` states the cells,
the methods (and which are skipped, with why) and the tolerances; `golden.json` holds each method's ranking prefix
and scores per cell. Every number comes from bench.run.run_methods, the path of a real benchmark run.
"""

from __future__ import annotations

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
from bench.cli import CONF_DIR
from bench.errors import NeuronbenchError
from bench.run import ranking_file, run_methods, task_form
from leaderboard.submission import compose_config

log = logging.getLogger(__name__)

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
SPEC_FILE = "check.yaml"
GOLDEN_FILE = "golden.json"


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
    """check.yaml of a golden folder, as plain containers."""
    path = Path(golden_dir) / SPEC_FILE
    if not path.is_file():
        raise NeuronbenchError(f"{path} is missing; copy leaderboard/golden/{SPEC_FILE} and adapt it")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def method_configs(spec: dict, names: list[str] | None = None) -> dict[str, dict]:
    """The configs of the checked methods: conf/method/<name>.yaml or check.yaml's `method_configs`, with its
    `method_overrides` applied. `names` picks a subset; by default `methods` in check.yaml (`all` = every
    conf/method config not under `skip`)."""
    inline = spec.get("method_configs") or {}
    skip = spec.get("skip") or {}
    wanted = names if names is not None else spec.get("methods", "all")
    if wanted == "all":
        wanted = [path.stem for path in sorted((CONF_DIR / "method").glob("*.yaml")) if path.stem not in skip]
        wanted += [name for name in inline if name not in wanted]
    configs = {}
    for name in wanted:
        path = CONF_DIR / "method" / f"{name}.yaml"
        if name in inline:
            params = dict(inline[name])
        elif path.is_file():
            params = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        else:
            raise NeuronbenchError(f"check: unknown method {name!r}: no conf/method/{name}.yaml and no entry in "
                                   f"{SPEC_FILE}'s method_configs")
        configs[name] = {**params, **(spec.get("method_overrides") or {}).get(name, {})}
    return configs


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


def compare(golden: dict, fresh: dict, spec: dict) -> list[Comparison]:
    """Every fresh (cell, method) against its golden, with check.yaml's tolerances."""
    tolerance = spec["tolerance"]
    k = int(tolerance["jaccard_k"])
    comparisons = []
    for cell, methods in sorted(fresh.items()):
        for method, result in sorted(methods.items()):
            limits = {**tolerance["default"], **(tolerance.get("methods") or {}).get(method, {})}
            old = golden.get(cell, {}).get(method)
            if old is None:
                comparisons.append(Comparison(method, cell, k, None, (), (
                    "no golden for this method and cell: run `neuronbench-board check --update` and commit "
                    f"{GOLDEN_FILE}",)))
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
    comparisons = compare(golden, fresh, spec)
    lines = report(comparisons, stale)
    return all(c.ok for c in comparisons) and not stale, lines

