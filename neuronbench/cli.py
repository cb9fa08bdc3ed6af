"""`neuronbench neurons`: write the neuron views of one cell as HTML pages with their JSON, from the shell.

    neuronbench neurons task=templated_number model=minilm_l6 --layer 3 --method probeless --top 6
    neuronbench neurons task=templated_number model=minilm_l6 --layer 3 --neuron 276 --sentence "the dogs are here ."

Words after the options are Hydra overrides of the `neuronbench` command line (task= and model= are needed; seed=,
cache_dir=, task.concept= and the rest as for a job). Pages land under --out in the layout of
`neuronbench.pages.neuron_page_path` / `ranking_page_path`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.errors import NeuronbenchError
from bench.run import single_threaded_blas
from leaderboard.submission import read_ranking
from neuronbench.experiment import load
from neuronbench.pages import write_pages
from neuronbench.ranking import rank
from neuronbench.views import neuron_view, ranking_view


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="neuronbench neurons", description=__doc__.split("\n\n")[0],
                                  epilog="Pages are self-contained: open them from disk, no network needed.")
    cli.add_argument("overrides", nargs="*", help="Hydra overrides: task=<name> model=<name> [seed=..] [...]")
    cli.add_argument("--layer", type=int, required=True, help="layer index (hidden: 0 = embeddings .. L)")
    cli.add_argument("--site", default="hidden", help="hidden (default) or mlp")
    which = cli.add_mutually_exclusive_group(required=True)
    which.add_argument("--neuron", type=int, action="append", help="a neuron's page (repeat for several)")
    which.add_argument("--method", help="a conf/method name: the page of its ranking and of its top neurons")
    which.add_argument("--ranking", help="a saved ranking (.npy, e.g. a job's rankings/hidden_L03.npy): its page")
    cli.add_argument("--name", help="the ranking's name on its page and in its path (default: --method, or the "
                                    "file's job folder's method)")
    cli.add_argument("--top", type=int, default=6, help="neurons of a ranking shown side by side (default 6)")
    cli.add_argument("--words", type=int, default=15, help="top and bottom word types per neuron (default 15)")
    cli.add_argument("--sentence", action="append", default=None,
                     help="a sentence for the activation map of each --neuron page (repeat for several; default: "
                          "the sentences of the neuron's top words)")
    cli.add_argument("--out", default="results/neuron_pages",
                     help="folder the pages go to (default results/neuron_pages)")
    return cli


def main(argv: list[str]) -> int:
    args = parser().parse_intermixed_args(argv)
    given = dict(item.split("=", 1) for item in args.overrides if "=" in item and item.split("=", 1)[0] in
                 ("task", "model"))
    try:
        if set(given) != {"task", "model"}:
            raise NeuronbenchError("give task=<name> and model=<name>, e.g. "
                                   "task=templated_number model=minilm_l6")
        single_threaded_blas()
        rest = [item for item in args.overrides if item.split("=", 1)[0] not in given]
        if args.sentence and not args.neuron:
            raise NeuronbenchError("--sentence goes with --neuron: a ranking's page shows no activation map")
        acts = load(given["task"], given["model"], rest).activations(args.layer, args.site)
        if args.neuron:
            paths = [path for neuron in args.neuron for path in write_pages(
                neuron_view(acts, neuron, top=args.words, sentences=args.sentence), args.out)]
        else:
            if args.method:
                ranking, name = rank(args.method, acts), args.name or args.method
            else:
                ranking = read_ranking(args.ranking, acts.n_neurons)
                name = args.name or _method_of(args.ranking)
            paths = write_pages(ranking_view(acts, ranking, method=name, top=args.top, words=args.words), args.out)
    except NeuronbenchError as err:
        print(f"neuronbench neurons: error: {err}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


def _method_of(path: str) -> str:
    """A saved ranking's method: <job>/rankings/<site>_L<ll>.npy sits in <method>/seed<s>/ of the runner's layout."""
    parts = Path(path).resolve().parts
    return parts[-4] if len(parts) >= 4 and parts[-2] == "rankings" else Path(path).stem
