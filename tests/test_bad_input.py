"""The bad-input matrix: hostile or mistaken input must fail fast with one clear NeuronbenchError.

CASES is a table of (case id, input, expected exception type, message regex). Each input is a function of a
temporary folder that returns the call to make; the call runs in a forked child that is killed after LIMIT_S
seconds, so a case that hangs fails instead of stalling the suite. The regex is searched in the message, which
must name what is wrong and where (the key or field and its value) and what is valid. Grow the matrix with every
new defect: one row per bad input.
"""

from __future__ import annotations

import multiprocessing
import re

import pytest

from bench.errors import NeuronbenchError
from leaderboard.submission import META_FILE, load_submission

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
]


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

