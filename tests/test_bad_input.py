"""The bad-input matrix: hostile or mistaken input must fail fast with one clear NeuronbenchError.

CASES is a table of (case id, input, expected exception type, message regex). Each input is a function of a
temporary folder that returns the call to make; the call runs in a forked child that is killed after LIMIT_S
seconds, so a case that hangs fails instead of stalling the suite. The regex is searched in the message, which
must name what is wrong and where (the key or field and its value) and what is valid. Grow the matrix with every
new defect: one row per bad input.

Silent traps, where bad input used to give a wrong number instead of an error, are the tests after the table;
they pin the right values.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
from functools import partial

import numpy as np
import pytest

from hydra.utils import instantiate

from bench.errors import NeuronbenchError
from bench.run import method_configs, run_job
from bench.scorers import k_grid, probe_acc
from leaderboard.board import method_label
from leaderboard.submission import META_FILE, compose_config, load_submission
from conftest import CONF
from test_scorers import D, perfect, planted_layer

LIMIT_S = 5.0


def alias_bomb(depth: int = 9, width: int = 9) -> str:
    """A few hundred bytes of YAML whose `contact` expands to width**depth strings: each level is a list of
    `width` aliases of the level before (the YAML loads in milliseconds; printing the value never ends)."""
    levels = [f"l{i}" for i in range(depth)]
    lines = [f"{levels[0]}: &{levels[0]} [{', '.join(['x'] * width)}]"]
    lines += [f"{level}: &{level} [{', '.join([f'*{below}'] * width)}]" for below, level in zip(levels, levels[1:])]
    return "\n".join([*lines, f"contact: *{levels[-1]}"]) + "\n"


def submission(text: str):
    """A submission folder holding only `submission.yaml` with `text`; the call loads (validates) it."""
    def make(tmp_path):
        folder = tmp_path / "hostile_v1"
        folder.mkdir()
        (folder / META_FILE).write_text(text)
        return lambda: load_submission(folder)
    return make


def runner(*overrides: str, task: str | None = "planted_single", model: str = "planted"):
    """A one-method runner job with these command-line overrides (planted: no model to load)."""
    def make(tmp_path):
        chosen = [] if task is None else [f"task={task}"]
        cfg = compose_config([*chosen, f"model={model}", "method=probeless", "scorers=[probe_acc]",
                              f"results_dir={tmp_path}", f"cache_dir={tmp_path / 'cache'}", *overrides])
        return lambda: run_job(cfg, "probeless")
    return make


def treebank(text: str):
    """A conllu-task job whose three split files all hold `text` (the reader fails before any model loads)."""
    def make(tmp_path):
        path = tmp_path / "split.conllu"
        path.write_bytes(text.encode("utf-8"))
        files = [f"task.files.{split}={path}" for split in ("train", "dev", "test")]
        return runner("task=conllu", *files, model="tiny_random", task=None)(tmp_path)
    return make


def under_a_file(tmp_path):
    """results_dir below a plain file: no folder can be made there."""
    (tmp_path / "file").write_text("")
    return runner(f"results_dir={tmp_path / 'file' / 'results'}")(tmp_path)


def call(function, *args):
    return lambda tmp_path: lambda: function(*args)


CASES = [
    # leaderboard/submission.py validate: a value is shown by its type, a long string shortened, never whole
    ("submission contact: 9-deep YAML alias bomb", submission(alias_bomb()), NeuronbenchError,
     r"submission\.yaml: contact: a value of type list is neither an e-mail address nor an http\(s\) URL"),
    ("submission url: 5,000-character string", submission(f"url: {'x' * 5000}\n"), NeuronbenchError,
     r"url: 'x{80}'\.\.\. \(5000 characters\) is not an http\(s\) URL"),
    ("submission name: a mapping", submission("name: {a: [1, 2]}\n"), NeuronbenchError,
     r"name: a value of type dict is not a safe name"),
    ("submission task version: a list", submission("task_versions: {templated_number: [1]}\n"), NeuronbenchError,
     r"templated_number: the version must be a quoted string, e.g. \"1\", not a value of type list"),
    ("submission neuronbench_version: 5,000-digit integer", submission(f"neuronbench_version: {'9' * 5000}\n"),
     NeuronbenchError, r"submission\.yaml: not valid YAML \(Exceeds the limit \(4300 digits\)"),
    # bench/run.py check_config: before the task, a model or a method is loaded
    ("seed=-1", runner("seed=-1"), NeuronbenchError, r"seed=-1: expected a non-negative integer"),
    ("seed=abc", runner("seed=abc"), NeuronbenchError, r"seed='abc': expected a non-negative integer"),
    ("seed=true", runner("seed=true"), NeuronbenchError, r"seed=True: expected a non-negative integer"),
    ("sites=[]", runner("sites=[]"), NeuronbenchError,
     r"sites=\[\]: expected a non-empty list of distinct sites from hidden, mlp"),
    ("sites=[hidden,attn]", runner("sites=[hidden,attn]"), NeuronbenchError,
     r"sites=\['hidden', 'attn'\]: expected a non-empty list of distinct sites from hidden, mlp"),
    ("sites=[hidden,hidden]", runner("sites=[hidden,hidden]"), NeuronbenchError,
     r"sites=\['hidden', 'hidden'\]: expected a non-empty list of distinct sites"),
    ("sites=hidden", runner("sites=hidden"), NeuronbenchError, r"sites='hidden': expected a non-empty list"),
    ("ks=[]", runner("ks=[]"), NeuronbenchError, r"ks=\[\]: expected a non-empty list of positive integers"),
    ("ks=[0,5]", runner("ks=[0,5]"), NeuronbenchError, r"ks=\[0, 5\]: expected a non-empty list of positive"),
    ("ks=[2.5]", runner("ks=[2.5]"), NeuronbenchError, r"ks=\[2\.5\]: expected a non-empty list of positive"),
    ("ks=5", runner("ks=5"), NeuronbenchError, r"ks=5: expected a non-empty list of positive integers"),
    ("ks=[99999]", runner("ks=[99999]"), NeuronbenchError,
     r"ks=\[99999\]: every k is above this layer's 768 neurons, which leaves only k = D; give at least one "
     r"k <= 768"),
    ("layers=[99]", runner("layers=[99]", task="templated_number", model="tiny_random"), NeuronbenchError,
     r"layers=\[99\] selects nothing: model 'tiny_random' has layers \[0, 1, 2\] at site 'hidden'"),
    ("layers=abc", runner("layers=abc", task="templated_number", model="tiny_random"), NeuronbenchError,
     r"layers='abc': expected a non-empty list of layer indices, e\.g\. layers=\[0,2\], or null"),
    ("layers=[]", runner("layers=[]", task="templated_number", model="tiny_random"), NeuronbenchError,
     r"layers=\[\]: expected a non-empty list of layer indices"),
    ("layers=[-1]", runner("layers=[-1]", task="templated_number", model="tiny_random"), NeuronbenchError,
     r"layers=\[-1\]: expected a non-empty list of layer indices"),
    ("depths=[2]", runner("depths=[2]", task="templated_number", model="tiny_random"), NeuronbenchError,
     r"depths=\[2\]: expected a non-empty list of fractions of the model's depth in \[0, 1\]"),
    ("depths=[]", runner("depths=[]", task="templated_number", model="tiny_random"), NeuronbenchError,
     r"depths=\[\]: expected a non-empty list of fractions"),
    ("layers and depths", runner("layers=[1]", "depths=[0.5]", task="templated_number", model="tiny_random"),
     NeuronbenchError, r"give layers=\[1\] or depths=\[0\.5\], not both"),
    ("pooling=bad", runner("pooling=bad", task="templated_number", model="tiny_random"), NeuronbenchError,
     r"pooling='bad': expected one of first, last, mean, or null for the model's default \(last\)"),
    # a typo that only a real model's job would reach: caught before the 90 MB model loads (LIMIT_S)
    ("scorers=[probe_accc] on minilm_l6 upos", runner("scorers=[probe_accc]", task="upos", model="minilm_l6"),
     NeuronbenchError, r"unknown scorer 'probe_accc'; valid: probe_acc, selectivity, probe_acc_gaussian"),
    ("layers=[7] on minilm_l6 upos", runner("layers=[7]", task="upos", model="minilm_l6"),
     NeuronbenchError, r"layers=\[7\] selects nothing: model 'minilm_l6' has layers \[0, 1, 2, 3, 4, 5, 6\]"),
    ("device=cuda without a GPU", runner("device=cuda", task="upos", model="minilm_l6"), NeuronbenchError,
     r"device=cuda: torch sees 0 CUDA GPU\(s\) \(torch [^)]+\); use device=auto or device=cpu"),
    ("device=tpu", runner("device=tpu"), NeuronbenchError,
     r"device='tpu' is not a device; valid: auto, cpu, cuda, cuda:<index>"),
    ("k_grid(8, [9, 20])", call(k_grid, 8, [9, 20]), NeuronbenchError,
     r"ks=\[9, 20\]: every k is above this layer's 8 neurons"),
    ("task.max_words.train=0", runner("task.max_words.train=0", task="templated_number", model="tiny_random"),
     NeuronbenchError, r"task\.max_words\.train=0: expected a positive number of words for each split of "
                       r"train, dev, test"),
    ("task.max_words.dev=-5", runner("task.max_words.dev=-5", task="templated_number", model="tiny_random"),
     NeuronbenchError, r"task\.max_words\.dev=-5: expected a positive number of words"),
    ("task.max_words=0", runner("task.max_words=0", task="templated_number", model="tiny_random"),
     NeuronbenchError, r"task\.max_words=0: expected a cap per split"),
    ("results_dir below a file", under_a_file, NeuronbenchError,
     r"results_dir=\S+/file/results: cannot write there \(Not a directory\); give a folder you can write"),
    # tasks/conllu.py: split files without sentences, or with bytes no CoNLL-U line holds
    ("conllu: empty split file", treebank(""), NeuronbenchError, r"split\.conllu: no sentences: the file is empty"),
    ("conllu: only comments", treebank("# a\n# b\n"), NeuronbenchError, r"split\.conllu: no sentences"),
    ("conllu: only blank lines", treebank("\n\n\n"), NeuronbenchError, r"split\.conllu: no sentences"),
    ("conllu: old-Mac line ends", treebank("# a\r1\tw\tw\tX\t_\t_\t0\troot\t_\t_\r"), NeuronbenchError,
     r"split\.conllu:1: a carriage return \(\\r\) that ends no \\r\\n line"),
    ("conllu: NUL byte in a word", treebank("1\tw\x00\tw\tX\t_\t_\t0\troot\t_\t_\n"), NeuronbenchError,
     r"split\.conllu:1: a NUL byte"),
    ("conllu: empty FORM", treebank("1\t\tw\tX\t_\t_\t0\troot\t_\t_\n"), NeuronbenchError,
     r"split\.conllu:1: column FORM is empty"),
    ("conllu: empty UPOS", treebank("1\tw\tw\t\t_\t_\t0\troot\t_\t_\n"), NeuronbenchError,
     r"split\.conllu:1: column UPOS is empty"),
    ("conllu: ID in Devanagari digits", treebank("\u0967\tw\tw\tX\t_\t_\t0\troot\t_\t_\n"),
     NeuronbenchError, r"split\.conllu:1: ID '\u0967' is not an integer"),
]


# Method.rank (bench/core/method.py) for every activation-only method: inputs no method can rank
METHODS = {name: instantiate(params) for name, params in method_configs("all", CONF).items()
           if "other_activations" not in instantiate(params).needs}
RNG = np.random.default_rng(0)
SMALL = RNG.normal(size=(30, 6)).astype(np.float32)
RANK_INPUTS = [
    ("0 words", np.zeros((0, 6), np.float32), np.zeros(0, np.int64), r"rank\(\) needs at least 2 words .*got 0"),
    ("1 word", SMALL[:1], np.array([0]), r"rank\(\) needs at least 2 words .*got 1"),
    ("object dtype", SMALL.astype(object), np.arange(30) % 2, r"activations: expected a numeric array, got dtype object"),
    ("one class", SMALL, np.zeros(30, np.int64), r"the labels hold one class \(0\); a labelled method needs at least two"),
]
CASES += [(f"{name}.rank(): {label}", call(partial(method.rank, rng=0), X, y), NeuronbenchError, message)
          for name, method in METHODS.items() for label, X, y, message in RANK_INPUTS
          if method.uses_labels or label != "one class"]


def outcome(function, expected: type[BaseException]) -> tuple[bool, str, str]:
    """(raised `expected`?, what it raised or "returned", message) of function() run in a forked child, which is
    killed after LIMIT_S seconds: nothing may hang."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def child():
        try:
            result = function()
        except BaseException as err:  # noqa: BLE001 (every outcome goes back to the test)
            send.send((isinstance(err, expected), type(err).__name__, str(err)[:20_000]))
        else:
            send.send((False, "returned", repr(result)[:2_000]))

    process = context.Process(target=child, daemon=True)
    process.start()
    try:
        if not receive.poll(LIMIT_S):
            pytest.fail(f"still running after {LIMIT_S} s")
        return receive.recv()
    finally:
        process.kill()
        process.join()


@pytest.mark.parametrize("make, expected, message", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_fails_fast_with_a_clear_error(tmp_path, make, expected, message):
    matched, raised, text = outcome(make(tmp_path), expected)
    assert matched, f"expected {expected.__name__}, got {raised}: {text}"
    assert len(text) < 20_000, "the message must not print a whole value"
    assert re.search(message, text), text


@pytest.mark.parametrize("name", sorted(METHODS))
def test_all_constant_activations_rank_in_index_order(name):
    """Every neuron dead: nothing to rank, so the contract's dead-last rule gives the index order."""
    assert METHODS[name].rank(np.ones((30, 6), np.float32), np.arange(30) % 2, rng=0).tolist() == list(range(6))


def test_a_full_results_disk_is_one_clear_error_and_the_rerun_resumes(small_disk, tmp_path):
    """A real tmpfs filled to the last block: the job's first ranking cannot be saved. The error names the
    job's folder and the free bytes, no records file is left, and with room the same job runs."""
    filler = os.open(small_disk / "filler", os.O_WRONLY | os.O_CREAT)
    with pytest.raises(OSError, match="No space left on device"):
        while True:
            os.write(filler, b"\0" * 4096)
    os.close(filler)
    job = runner(f"results_dir={small_disk / 'results'}")(tmp_path)
    with pytest.raises(NeuronbenchError, match=r"cannot write the results of \S+/runs/planted_single/planted/"
                       r"probeless/seed0: No space left on device; 0 bytes free on its disk; finished jobs are "
                       r"kept, so free space \(or choose another results_dir=\) and rerun the same command"):
        job()
    assert not list(small_disk.rglob("records.jsonl"))
    (small_disk / "filler").unlink()
    assert (job() / "records.jsonl").exists()


def test_probe_scorers_end_their_grid_at_all_neurons():
    """ks=[5] without D: acc_all is the probe on all 40 neurons (286 of 300 test words), not the one on 5 (102),
    and the area runs over k = 5 and k = D (two points: their mean)."""
    data = planted_layer()
    scores = probe_acc(perfect()[::-1], data, [5], None)
    assert {s.k: s.value for s in scores if s.metric == "probe_acc"} == pytest.approx({5: 102 / 300, D: 286 / 300})
    values = {s.metric: s.value for s in scores if s.k is None}
    assert values["acc_all"] == pytest.approx(286 / 300) == data.retrained_accuracy(np.arange(D))
    assert values["probe_auc"] == pytest.approx((102 + 286) / 600)


def test_a_method_with_another_target_is_recorded_as_custom(tmp_path):
    """method=probeless method._target_=... runs that class: its records must not pass for the built-in."""
    base = ["task=planted_single", "model=planted", "scorers=[probe_acc]", "ks=[3]", "method=probeless"]
    builtin = run_job(compose_config([*base, f"results_dir={tmp_path / 'builtin'}"]), "probeless")
    custom = run_job(compose_config([*base, "method._target_=methods.univariate.AnovaF",
                                     f"results_dir={tmp_path / 'custom'}"]), "probeless")
    sources = {out: {json.loads(line)["source"] for line in (out / "records.jsonl").read_text().splitlines()}
               for out in (builtin, custom)}
    assert sources == {builtin: {"builtin"}, custom: {"custom:methods.univariate.AnovaF"}}
    assert method_label(*sources[custom], "probeless") == "probeless (custom:methods.univariate.AnovaF)"
    assert (custom / "cost.jsonl").exists()  # a custom class is measured like a built-in one
