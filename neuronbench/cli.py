"""`neuronbench neurons`: write the neuron views of one cell as HTML pages with their JSON, from the shell;
`neuronbench manipulate`: edit neurons on a sentence and print the model's output before and after.

    neuronbench neurons task=templated_number model=minilm_l6 --layer 3 --method probeless --top 6
    neuronbench neurons task=templated_number model=minilm_l6 --layer 3 --neuron 276 --sentence "the dogs are here ."
    neuronbench neurons task=templated_number model=minilm_l6 --layer 3 --method probeless --concepts
    neuronbench neurons --board leaderboard/published/quick/records.parquet --top 5
    neuronbench manipulate task=templated_number model=smollm2_135m --layer 15 --site mlp --method lca --count 10 \
        --edit zero --sentence "The keys to the cabinet" --at 1 --compare is are

Words after the options are Hydra overrides of the `neuronbench` command line (task= and model= are needed; seed=,
cache_dir=, task.concept= and the rest as for a job). Pages land under --out in the layout of
`neuronbench.pages.neuron_page_path` / `ranking_page_path`. With --board, the task and model come from the board's
records: the pages a built board links its method rows to (`leaderboard.pages`), into pages/ beside the board.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from bench.errors import NeuronbenchError
from bench.run import single_threaded_blas
from leaderboard.board import DEPTH_METRIC, summarize
from leaderboard.pages import PAGES, cells_with_pages
from leaderboard.records import board_records
from leaderboard.submission import read_ranking
from neuronbench.concepts import corpus_concepts
from neuronbench.experiment import Experiment, load
from neuronbench.manipulate import TOKENS, manipulate
from neuronbench.pages import write_pages
from neuronbench.ranking import rank
from neuronbench.views import neuron_view, ranking_view


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="neuronbench neurons",
                                  description="Write the neuron views of one cell as HTML pages with their JSON.",
                                  epilog="Pages are self-contained: open them from disk, no network needed.")
    cli.add_argument("overrides", nargs="*", help="Hydra overrides: task=<name> model=<name> [seed=..] [...]")
    cli.add_argument("--layer", type=int, help="layer index (hidden: 0 = embeddings .. L); needed but with --board")
    cli.add_argument("--site", default="hidden", help="hidden (default) or mlp")
    which = cli.add_mutually_exclusive_group(required=True)
    which.add_argument("--neuron", type=int, action="append", help="a neuron's page (repeat for several)")
    which.add_argument("--method", help="a conf/method name: the page of its ranking and of its top neurons")
    which.add_argument("--ranking", help="a saved ranking (.npy, e.g. a job's rankings/hidden_L03.npy): its page")
    which.add_argument("--board", type=Path,
                       help="a board's records (a results folder or a records.parquet made by `neuronbench-board "
                            "pack`): for each built-in method of each task x model, its best seed-0 cell's ranking "
                            "page (ranked again at this commit) and its --top neurons' pages, into pages/ beside the "
                            "board; `neuronbench-board build` then links the method rows to them")
    cli.add_argument("--name", help="the ranking's name on its page and in its path (default: --method, or the "
                                    "file's job folder's method)")
    cli.add_argument("--top", type=int, default=6, help="neurons of a ranking shown side by side (default 6)")
    cli.add_argument("--words", type=int, default=15, help="top and bottom word types per neuron (default 15)")
    cli.add_argument("--sentence", action="append", default=None,
                     help="a sentence for the activation map of each --neuron page (repeat for several; default: "
                          "the sentences of the neuron's top words)")
    cli.add_argument("--concepts", action="store_true",
                     help="add concept search to each neuron's page: the labels of every task on the corpus it "
                          "detects, and its compositional explanation (nb.concept_search)")
    cli.add_argument("--no-json", dest="data", action="store_false",
                     help="write the HTML pages only, not the JSON of their data beside them")
    cli.add_argument("--out", help="folder the pages go to (default results/neuron_pages; with --board, pages/ "
                                   "beside the board)")
    return cli


def main(argv: list[str]) -> int:
    args = parser().parse_intermixed_args(argv)
    try:
        if args.sentence and not args.neuron:
            raise NeuronbenchError("--sentence goes with --neuron: a ranking's page shows no activation map")
        if args.board:
            return _print(_board_pages(args), f"`neuronbench-board build --results {args.board}` links the board's "
                                              "method rows to these pages")
        if args.layer is None:
            raise NeuronbenchError("--layer is needed with --neuron, --method and --ranking")
        args.out = args.out or "results/neuron_pages"
        acts = _experiment(args.overrides).activations(args.layer, args.site)
        concepts = corpus_concepts(acts) if args.concepts else None
        if args.neuron:
            paths = [path for neuron in args.neuron for path in write_pages(
                neuron_view(acts, neuron, top=args.words, sentences=args.sentence, concepts=concepts), args.out,
                args.data)]
        else:
            if args.method:
                ranking, name = rank(args.method, acts), args.name or args.method
            else:
                ranking = read_ranking(args.ranking, acts.n_neurons)
                name = args.name or _method_of(args.ranking)
            paths = write_pages(ranking_view(acts, ranking, method=name, top=args.top, words=args.words,
                                             concepts=concepts), args.out, args.data)
    except NeuronbenchError as err:
        print(f"neuronbench neurons: error: {err}", file=sys.stderr)
        return 2
    return _print(paths)


def _print(paths: list[Path], hint: str = "") -> int:
    for path in paths:
        print(path)
    if hint:
        print(hint, file=sys.stderr)
    return 0


def _board_pages(args) -> list[Path]:
    """The ranking page of each built-in method's best cell on the board (`leaderboard.pages.best_cells`) and its
    top neurons' pages, each cell's activations read once; the rankings are recomputed with the records' method
    parameters, since a packed board keeps no rankings."""
    if args.layer is not None or any(item.split("=", 1)[0] in ("task", "model") for item in args.overrides):
        raise NeuronbenchError("--board takes its tasks, models and layers from the board's records: drop --layer, "
                               "task= and model=")
    records, _ = board_records(args.board)
    cells = cells_with_pages(summarize(records))
    if cells.empty:
        raise NeuronbenchError(f"{args.board}: no built-in method has seed-0 {DEPTH_METRIC} records at k*; no pages")
    board = args.board.parent if args.board.suffix == ".parquet" else args.board
    root = Path(args.out) if args.out else board / PAGES
    paths = []
    for (task, concept, model), rows in cells.groupby(["task", "concept", "model"], dropna=False, sort=False):
        concept = None if pd.isna(concept) else concept
        exp = _experiment([f"task={task}", f"model={model}", *args.overrides,
                           *([f"++task.concept={concept}"] if concept else [])])
        for row in rows.itertuples():
            acts = exp.activations(int(row.layer), row.site)
            params = {k: v for k, v in json.loads(row.method_params or "{}").items() if k != "_target_"}
            ranking = rank(row.method, acts, **params)
            concepts = corpus_concepts(acts) if args.concepts else None
            paths += write_pages(ranking_view(acts, ranking, method=row.method, top=args.top, words=args.words,
                                              concepts=concepts), root, args.data)
    return paths


def _experiment(overrides: list[str]) -> Experiment:
    """The task and model of `task=<name> model=<name>`, the other overrides applied (the model loads lazily)."""
    given = dict(item.split("=", 1) for item in overrides if "=" in item and item.split("=", 1)[0] in
                 ("task", "model"))
    if set(given) != {"task", "model"}:
        raise NeuronbenchError("give task=<name> and model=<name>, e.g. task=templated_number model=minilm_l6")
    single_threaded_blas()
    return load(given["task"], given["model"], [item for item in overrides if item.split("=", 1)[0] not in given])


def manipulate_parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="neuronbench manipulate", description=(
            "Edit a set of neurons of one cell at the words of a sentence (--at; default all) and print the model's "
            "output before and after: a decoder's next-token distribution (--next, --compare) and greedy continuation (--tokens), an "
            "encoder's frozen final-layer head (the causal scorers' head, fitted on the task) at every word."),
        epilog="Generated tokens are not edited; they read the edited words through attention. From Python: "
               "nb.manipulate (README, From Python).")
    cli.add_argument("overrides", nargs="*", help="Hydra overrides: task=<name> model=<name> [seed=..] [...]")
    cli.add_argument("--layer", type=int, required=True, help="layer index (hidden: 0 = embeddings .. L)")
    cli.add_argument("--site", default="hidden", help="hidden (default) or mlp")
    which = cli.add_mutually_exclusive_group(required=True)
    which.add_argument("--neuron", type=int, action="append", help="a neuron to edit (repeat for several)")
    which.add_argument("--method", help="a conf/method name: edit the --count top neurons of its ranking")
    cli.add_argument("--count", type=int, help="with --method: how many top neurons (default 10)")
    cli.add_argument("--edit", type=_edit_arg, default="zero",
                     help="zero (default), mean (each neuron's mean over the task's train words), clamp=<value> or "
                          "scale=<factor>")
    cli.add_argument("--sentence", required=True, help="the sentence, words separated by spaces")
    cli.add_argument("--at", type=int, action="append",
                     help="edit only at word I of the sentence (0-based; repeat for several; default every word)")
    cli.add_argument("--compare", nargs=2, metavar=("A", "B"),
                     help="decoders: two next words of one token each (e.g. is are): their probabilities and the "
                          "logit difference A - B")
    cli.add_argument("--next", type=int, default=5, help="decoders: most probable next tokens shown (default 5)")
    cli.add_argument("--tokens", type=int, default=None,
                     help=f"decoders: tokens of greedy continuation (default {TOKENS})")
    cli.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    return cli


def _edit_arg(text: str):
    if text in ("zero", "mean"):
        return text
    kind, _, number = text.partition("=")
    try:
        if kind in ("clamp", "scale"):
            return kind, float(number)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r}: expected zero, mean, clamp=<value> or scale=<factor>")


def manipulate_main(argv: list[str]) -> int:
    args = manipulate_parser().parse_intermixed_args(argv)
    try:
        if args.method is None and args.count is not None:
            raise NeuronbenchError("--count goes with --method: the neurons given with --neuron are edited")
        exp = _experiment(args.overrides)
        if args.method:
            acts, count = exp.activations(args.layer, args.site), 10 if args.count is None else args.count
            if not 1 <= count <= acts.n_neurons:
                raise NeuronbenchError(f"--count {count}: {acts.name} has neurons 1..{acts.n_neurons} to take")
            source, neurons, cell = acts, rank(args.method, acts)[:count], {}
        else:
            source, neurons, cell = exp, args.neuron, {"layer": args.layer, "site": args.site}
        result = manipulate(source, args.sentence, neurons, edit=args.edit, at=args.at, compare=args.compare,
                            top=args.next, tokens=args.tokens, **cell)
    except NeuronbenchError as err:
        print(f"neuronbench manipulate: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict(), indent=1) if args.json else result)
    return 0


def _method_of(path: str) -> str:
    """A saved ranking's method: <job>/rankings/<site>_L<ll>.npy sits in <method>/seed<s>/ of the runner's layout."""
    parts = Path(path).resolve().parts
    return parts[-4] if len(parts) >= 4 and parts[-2] == "rankings" else Path(path).stem
