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
from leaderboard.board import build_board, cost_markdown
from leaderboard.records import agreement_records, read_records


def build(results: Path, headline_k: int) -> Path:
    """Merge job records with agreement records; write leaderboard.md and leaderboard.csv."""
    records = read_records(results)
    overlap = agreement_records(records, results)
    merged = pd.concat([records, overlap], ignore_index=True) if len(overlap) else records
    markdown, table = build_board(merged, headline_k=headline_k)
    if list(results.glob("runs/**/cost.jsonl")):
        markdown += "\n\n" + cost_markdown(read_records(results, "cost.jsonl")) + "\n"
    atomic_write_bytes(results / "leaderboard.md", markdown.encode())
    atomic_write_bytes(results / "leaderboard.csv", table.to_csv(index=False).encode())
    return results / "leaderboard.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neuronbench-board", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build_cmd = sub.add_parser("build", help="records -> results/leaderboard.md and .csv")
    build_cmd.add_argument("--results", type=Path, default=Path("results"))
    build_cmd.add_argument("--headline-k", type=int, default=10)
    build_cmd.add_argument("--print", action="store_true", help="print the Markdown board")
    args = parser.parse_args(argv)
    single_threaded_blas()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        path = build(args.results, args.headline_k)
    except NeuronbenchError as err:
        print(f"neuronbench-board: error: {err}", file=sys.stderr)
        return 2
    if args.print:
        print(path.read_text())
    print(f"wrote {path} and {path.with_suffix('.csv')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
