"""README "From Python" runs as written: its Python block is executed as is, and each `print(...)  # output` line's
comment is what that print shows, so the walkthrough and the API cannot drift apart."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_block() -> str:
    section = REPO.joinpath("README.md").read_text(encoding="utf-8").split("\n## From Python\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_walkthrough_runs_as_written(tmp_path, monkeypatch):
    """Run from a fresh folder, reading the project's activation cache (where the other minilm_l6 tests leave
    templated_number), as a user in the clone would."""
    monkeypatch.setenv("NEURONBENCH_CACHE", os.environ.get("NEURONBENCH_CACHE", str(REPO / ".cache" / "neuronbench")))
    monkeypatch.chdir(tmp_path)
    code = readme_block()
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        exec(compile(code, "README.md#from-python", "exec"), {"__name__": "readme"})
    output = shown.getvalue()
    promised = re.findall(r"^print\(.*\)  # (.*)$", code, re.M)
    assert len(promised) == 5
    for line in promised:
        assert line in output.splitlines(), f"README promises {line!r}; the block printed:\n{output}"
    page = tmp_path / promised[-1]
    assert page.is_file() and page.with_suffix(".json").is_file()
    assert len(list(page.parent.parent.joinpath("neurons").glob("*.html"))) == 6
