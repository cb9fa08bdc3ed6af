"""`neuronbench-board`: leaderboard commands over the records in a results folder."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from bench.cache import atomic_write_bytes
from bench.errors import NeuronbenchError
from bench.run import single_threaded_blas
from leaderboard.board import cost_markdown, long_table, render_markdown, summarize
from leaderboard.html import render_html
from leaderboard.check import GOLDEN_DIR, check
from leaderboard.compare import compare, render_compare
from leaderboard.pages import page_links
from leaderboard.records import board_records, pack
from leaderboard.submission import export, score, validate
from leaderboard.validity import render_validity, validity


def build(results: Path, headline_k: int, out: Path | None = None) -> Path:
    """Records (a results folder, or a file made by `pack`) -> leaderboard.md, leaderboard.csv and
    leaderboard.html (the same board as one self-contained page with plots, its method rows linked to the pages that
    `neuronbench neurons --board` wrote into `out`/pages) in `out` (default: beside them)."""
    merged, costs = board_records(results)
    out = Path(out) if out is not None else results.parent if results.suffix == ".parquet" else results
    summary = summarize(merged, headline_k=headline_k)
    markdown = render_markdown(summary)
    if costs is not None:
        markdown += "\n\n" + cost_markdown(costs) + "\n"
    atomic_write_bytes(out / "leaderboard.md", markdown.encode())
    atomic_write_bytes(out / "leaderboard.csv", long_table(summary).to_csv(index=False).encode())
    atomic_write_bytes(out / "leaderboard.html", render_html(summary, costs, page_links(summary, out)).encode())
    return out / "leaderboard.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neuronbench-board", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build_cmd = sub.add_parser("build", help="records -> results/leaderboard.md, .csv and .html")
    build_cmd.add_argument("--results", type=Path, default=Path("results"),
                           help="a results folder, or a records.parquet made by `pack`")
    build_cmd.add_argument("--out", type=Path, help="where the board goes (default: beside the records)")
    build_cmd.add_argument("--headline-k", type=int, default=10)
    build_cmd.add_argument("--print", action="store_true", help="print the Markdown board")
    validity_cmd = sub.add_parser("validity", help="how well each scorer follows planted ground truth -> validity.md")
    validity_cmd.add_argument("--results", type=Path, nargs="+", default=[Path("results")],
                              help="results folders or records.parquet files (suite=validity, suite=implanted), "
                                   "reported together")
    validity_cmd.add_argument("--out", type=Path, help="where validity.md goes (default: beside the records)")
    validity_cmd.add_argument("--k", type=int, default=10, help="the k of the per-k rows")
    compare_cmd = sub.add_parser("compare", help="rank correlation of two boards' method orders (what transfers)")
    compare_cmd.add_argument("a", type=Path, help="a results folder or records.parquet")
    compare_cmd.add_argument("b", type=Path)
    compare_cmd.add_argument("--out", type=Path, help="write the Markdown report here as well")
    pack_cmd = sub.add_parser("pack", help="a results folder's records (with agreement and costs) -> one Parquet file")
    pack_cmd.add_argument("out", type=Path, help="e.g. leaderboard/published/<board>/records.parquet")
    pack_cmd.add_argument("--results", type=Path, default=Path("results"))
    pack_cmd.add_argument("--merge", action="store_true",
                          help="keep OUT's task runs that the results folder lacks (a board run over sessions)")
    _add_submission_commands(sub)
    args, extra = parser.parse_known_args(argv)  # score's overrides may follow its options (argparse stops early)
    if extra and (args.command != "score" or not all("=" in item for item in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides += extra
    single_threaded_blas()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except NeuronbenchError as err:
        print(f"neuronbench-board: error: {err}", file=sys.stderr)
        return 2


def _add_submission_commands(sub) -> None:
    """validate / score / export submissions (leaderboard/submission.py) and the golden check (leaderboard/check.py)."""
    validate_cmd = sub.add_parser("validate", help="check a submission folder; one line per problem")
    validate_cmd.add_argument("folder", type=Path)
    score_cmd = sub.add_parser("score", help="score a valid submission into a results folder, like a method")
    score_cmd.add_argument("folder", type=Path)
    score_cmd.add_argument("overrides", nargs="*", help="runner overrides, e.g. scorers=[probe_acc] ks=[1,10]")
    score_cmd.add_argument("--results", type=Path, default=Path("results"))
    score_cmd.add_argument("--model", action="append", help="score only this model's rankings (repeatable)")
    score_cmd.add_argument("--force", action="store_true", help="rescore jobs whose records exist")
    export_cmd = sub.add_parser("export", help="copy a method's saved rankings into a new submission folder")
    export_cmd.add_argument("out", type=Path, help="the new submission folder, named after the submission")
    export_cmd.add_argument("--results", type=Path, default=Path("results"))
    export_cmd.add_argument("--method", required=True, help="the method whose rankings the results hold")
    export_cmd.add_argument("--author", action="append", default=[], help="repeatable")
    for field in ("contact", "url", "description"):
        export_cmd.add_argument(f"--{field}", default="")
    check_cmd = sub.add_parser("check", help="rerun methods on fixed cells; compare with the goldens (the built-in "
                                             "ones, or yours: leaderboard/README.md)")
    check_cmd.add_argument("--golden", type=Path, default=GOLDEN_DIR,
                           help="folder with check.yaml and golden.json (yours: its method_dir names your configs)")
    check_cmd.add_argument("--methods", help="comma-separated subset (default: check.yaml's `methods`)")
    check_cmd.add_argument("--update", action="store_true", help="write or rewrite golden.json from this run")


def _pack(args) -> int:
    path = pack(args.results, args.out, args.merge)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)", file=sys.stderr)
    return 0


def _build(args) -> int:
    path = build(args.results, args.headline_k, args.out)
    if args.print:
        print(path.read_text())
    print(f"wrote {path}, {path.with_suffix('.csv')} and {path.with_suffix('.html')}", file=sys.stderr)
    return 0


def _validity(args) -> int:
    parts = [board_records(path) for path in args.results]
    records = pd.concat([part[0] for part in parts], ignore_index=True)
    found = [part[1] for part in parts if part[1] is not None]
    costs = pd.concat(found, ignore_index=True) if found else None
    first = args.results[0]
    out = args.out or (first.parent if first.suffix == ".parquet" else first)
    text = render_validity(validity(records, k=args.k), args.k, costs)
    atomic_write_bytes(Path(out) / "validity.md", text.encode())
    print(text)
    print(f"wrote {Path(out) / 'validity.md'}", file=sys.stderr)
    return 0


def _compare(args) -> int:
    text = render_compare(compare(board_records(args.a)[0], board_records(args.b)[0]), str(args.a), str(args.b))
    if args.out:
        atomic_write_bytes(args.out, text.encode())
    print(text)
    return 0


def _validate(args) -> int:
    problems = validate(args.folder)
    for problem in problems:
        print(f"{args.folder}: {problem}")
    if not problems:
        print(f"{args.folder}: valid")
    return 1 if problems else 0


def _score(args) -> int:
    outs = score(args.folder, args.results, args.overrides, models=args.model, force=args.force)
    print(f"scored {len(outs)} jobs into {args.results}; `neuronbench-board build` shows them", file=sys.stderr)
    return 0


def _export(args) -> int:
    path = export(args.results, args.method, args.out.name, args.out,
                  {"authors": args.author, "contact": args.contact, "url": args.url, "description": args.description})
    print(f"wrote {path.parent}; fill in its fields, then `neuronbench-board validate {path.parent}`", file=sys.stderr)
    return 0


def _check(args) -> int:
    methods = args.methods.split(",") if args.methods else None
    passed, lines = check(args.golden, methods=methods, update=args.update)
    print("\n".join(lines))
    return 0 if passed else 1


COMMANDS = {"build": _build, "pack": _pack, "validity": _validity, "compare": _compare, "validate": _validate, "score": _score, "export": _export, "check": _check}


if __name__ == "__main__":
    sys.exit(main())
