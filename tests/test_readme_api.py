"""README "From Python" runs as written: its Python block is executed as is, and each `print(...)  # output` line's
comment is what that print shows, so the walkthrough and the API cannot drift apart."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_block(heading: str = "\n## From Python\n") -> str:
    """The first Python block after `heading`, within its section."""
    section = REPO.joinpath("README.md").read_text(encoding="utf-8").split(heading, 1)[1]
    section = section.split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def run_block(code: str, tmp_path, monkeypatch) -> tuple[str, list[str]]:
    """What the block prints, and the lines its `print(...)  # output` comments promise (each checked here)."""
    monkeypatch.setenv("NEURONBENCH_CACHE", os.environ.get("NEURONBENCH_CACHE", str(REPO / ".cache" / "neuronbench")))
    monkeypatch.chdir(tmp_path)
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        exec(compile(code, "README.md#from-python", "exec"), {"__name__": "readme"})
    output = shown.getvalue()
    promised = re.findall(r"^print\(.*\)  # (.*)$", code, re.M)
    for line in promised:
        assert line in output.splitlines(), f"README promises {line!r}; the block printed:\n{output}"
    return output, promised


def test_readme_python_walkthrough_runs_as_written(tmp_path, monkeypatch):
    """Run from a fresh folder, reading the project's activation cache (where the other minilm_l6 tests leave
    templated_number), as a user in the clone would."""
    _, promised = run_block(readme_block(), tmp_path, monkeypatch)
    assert len(promised) == 5
    page = tmp_path / promised[-1]
    assert page.is_file() and page.with_suffix(".json").is_file()
    assert len(list(page.parent.parent.joinpath("neurons").glob("*.html"))) == 6


def test_readme_concept_search_runs_as_written(tmp_path, monkeypatch):
    """The "Concept search" subsection's block: its promised lines, and the explain table of probeless's top 3."""
    output, promised = run_block(readme_block("\n### Concept search"), tmp_path, monkeypatch)
    assert len(promised) == 4
    assert output.splitlines()[-4].split() == ["neuron", "concept", "formula"]
    assert output.splitlines()[-3].split()[:3] == ["0", "276", "templated_number:Sing"]


def test_readme_manipulation_runs_as_written(tmp_path, monkeypatch):
    """The "Manipulation" subsection's block on smollm2_135m: probeless's number neurons, pushed singular at the
    subject, turn the model's verb from `are` to `is`."""
    output, promised = run_block(readme_block("\n### Manipulation"), tmp_path, monkeypatch)
    assert len(promised) == 2
    assert "continuation before: '.\\n\\nThe key to the cabinet'" in output.splitlines()
