"""The HTML board's 95% intervals: under each value in the tables, as whiskers on the curves, the rule stated once;
a board whose records have none says so and draws none. Opened in headless Chromium once."""

from __future__ import annotations

import pandas as pd
import pytest

from leaderboard.board import summarize
from leaderboard.html import render_html
from test_html_board import STRENGTH, browser, method_rows, parsed  # noqa: F401 (browser is a fixture)

HALF_WIDTH = 0.02


@pytest.fixture(scope="module")
def records() -> pd.DataFrame:
    """The HTML test's board (two tasks, two layers, two seeds), each value with a ±0.02 interval."""
    rows = [row for task in ("alpha", "beta") for method, strength in STRENGTH.items()
            for row in method_rows(task, method, strength)]
    frame = pd.DataFrame(rows)
    has = frame["metric"].isin(["probe_acc", "selectivity", "probe_auc"])
    return frame.assign(ci_low=(frame["value"] - HALF_WIDTH).where(has),
                        ci_high=(frame["value"] + HALF_WIDTH).where(has))


def test_tables_show_each_value_with_its_interval_and_the_rule_once(records):
    page = render_html(summarize(records))
    assert page.count("In square brackets after a test-split value") == 1
    assert "carry no test-sentence intervals" not in page
    overall = parsed(page).tables[0]
    header = overall[0]
    lca = next(row for row in overall[1:] if row[0] == "lca")
    value = lca[header.index("probe_acc@k*")]  # text then its interval, as the cell's two lines
    mean, interval = value.split("[")
    low, high = (float(end) for end in interval.rstrip("]").split(", "))
    assert float(mean.split("±")[0]) == pytest.approx((low + high) / 2, abs=1e-3)
    assert high - low > 2 * HALF_WIDTH  # the two seeds' spread (0.01 apart) widens it
    without = render_html(summarize(records.drop(columns=["ci_low", "ci_high"])))
    assert without.count("carry no test-sentence intervals") == 1
    assert 'class="ci"' not in without.split("</style>", 2)[-1]


def test_intervals_render_in_chromium(browser, records, tmp_path):  # noqa: F811 (the fixture)
    path = tmp_path / "leaderboard.html"
    path.write_text(render_html(summarize(records)), encoding="utf-8")
    browser.get(path.as_uri())
    small = browser.execute_script(
        "return Array.from(document.querySelectorAll('table.sortable td small.ci'))"
        ".map(s => [s.textContent, s.getBoundingClientRect().height, getComputedStyle(s).display]);")
    assert len(small) >= 3 * 3  # the Overall table's probe_auc, probe_acc@k*, selectivity@k* of 3 methods at least
    assert all(text.startswith("[") and height > 5 and display == "block" for text, height, display in small)
    whiskers = browser.execute_script(
        "return Array.from(document.querySelectorAll('figure svg .series path.ci'))"
        ".filter(p => getComputedStyle(p.parentNode).display !== 'none')"
        ".map(p => p.getBBox().height);")
    assert len(whiskers) >= 2 * 2 * 3  # probe_acc and selectivity curves of both tasks, 3 methods shown
    assert all(height > 3 for height in whiskers)
    tip = browser.execute_script("return document.querySelector('figure svg .series circle title').textContent;")
    assert "95% interval [" in tip
