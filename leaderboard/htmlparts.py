"""The HTML parts that the board (leaderboard/html.py) and the neuron pages (neuronbench/pages.py) share: the page
style, the table-sorting script, sortable tables of escaped cells, and the SVG and tick helpers, so that every page
reads the same and opens from disk with no network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

import pandas as pd

from leaderboard.board import MISSING, format_number

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1400px;padding:0 1.2em 3em;
color:#222;line-height:1.4}
h1{margin-top:.8em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.4em}
p.note,figcaption,.context{color:#555;font-size:.9em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #ddd;padding:.25em .55em}th{max-width:12em}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.missing{color:#aaa;text-align:center}td{white-space:nowrap}
td small.ci{display:block;color:#777;font-size:.78em;line-height:1.1}
td.wrap{white-space:normal;min-width:18em;max-width:26em}
.scroll{overflow-x:auto;max-width:100%}
thead th{background:#f3f3f3;cursor:pointer;user-select:none}
thead th:hover{background:#e6eef7}
thead th[aria-sort=ascending]::after{content:" ▲"}thead th[aria-sort=descending]::after{content:" ▼"}
tbody tr:nth-child(even){background:#fafafa}
.figures{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0;border:1px solid #e3e3e3;border-radius:4px;padding:.4em;background:#fff}
figcaption{max-width:420px}
svg text{font-family:inherit}
.legend{display:flex;flex-wrap:wrap;gap:.2em .9em;font-size:.85em;margin:.4em 0;align-items:center}
.legend label{white-space:nowrap;cursor:pointer}.legend input{margin:0 .2em 0 0;vertical-align:-2px}
.legend input:disabled~span{color:#aaa}.legend .tools{white-space:nowrap;color:#555}
.legend button{font:inherit;padding:0 .5em;margin-right:.3em}
.key{stroke:var(--c,#ddd);stroke-width:2.5}.baseline .key{stroke-dasharray:6 3}
.baseline{--c:#8c8c8c}
.series .line{fill:none;stroke:var(--c,#999);stroke-width:1.8}.series.baseline .line{stroke-dasharray:6 3}
.series .band{fill:var(--c,#999);fill-opacity:.15;stroke:none}.series circle{fill:var(--c,#999)}
.series .ci{stroke:var(--c,#999);stroke-width:1.2;fill:none}
.js .series{display:none}.focusing .series{opacity:.12}.focusing .series.focus{opacity:1}
.focusing .series.focus .line{stroke-width:3}.legend label.focus span{font-weight:bold}
.bar{fill:var(--c,#c8c8c8)}
.heat rect{stroke:#fff}.heat text{font-size:10px;text-anchor:middle;fill:#222}.heat text.dark{fill:#fff}
.heat text.name{font-size:11px;text-anchor:start}.heat text.end{text-anchor:end}
nav ul{columns:3;font-size:.9em}
code{background:#f4f4f4;padding:0 .2em;border-radius:3px}
"""

# Sorts the clicked column: numbers by value (data-sort), text otherwise; missing values always last.
SCRIPT = """
document.querySelectorAll("table.sortable thead th").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
    var now = th.getAttribute("aria-sort");
    var dir = now ? (now === "ascending" ? "descending" : "ascending") : th.dataset.dir;
    table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.sort, y = b.cells[col].dataset.sort;
      if (x === "" || y === "") { return (x === "") - (y === ""); }
      var nx = Number(x), ny = Number(y);
      return sign * (isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""


@dataclass(frozen=True)
class Cell:
    """A table cell: shown text and the value it sorts by (None: missing, sorted last), and where it links to."""
    text: str
    sort: float | str | None
    numeric: bool = True
    detail: str = ""  # a second, smaller line under the text: the value's 95% interval
    wrap: bool = False  # long text (a list of names) may wrap
    href: str | None = None


def missing() -> Cell:
    return Cell(MISSING, None)


def number(value, text: str | None = None, detail: str = "") -> Cell:
    if pd.isna(value):
        return missing()
    return Cell(format_number(value) if text is None else text, float(value), detail=detail)


def table(headers: list[tuple[str, str]], rows: list[list[Cell]], title: str = "") -> str:
    """A sortable table; headers are (text, first sort direction). Every text is escaped here."""
    head = "".join(f'<th data-dir="{direction}" title="click to sort">{_breakable(text)}</th>'
                   for text, direction in headers)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            css = "missing" if cell.sort is None else ("num" if cell.numeric else "wrap" if cell.wrap else "")
            sort = "" if cell.sort is None else (repr(cell.sort) if isinstance(cell.sort, float) else cell.sort)
            text = escape(cell.text) if cell.href is None else f'<a href="{escape(cell.href)}">{escape(cell.text)}</a>'
            cells.append(f'<td class="{css}" data-sort="{escape(str(sort))}">{text}{_detail(cell)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = f"<caption>{escape(title)}</caption>" if title else ""
    return (f'<div class="scroll"><table class="sortable">{caption}<thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _detail(cell: Cell) -> str:
    return f'<small class="ci">{escape(cell.detail)}</small>' if cell.detail else ""


def _breakable(text: str) -> str:
    """Escaped text that may wrap after underscores and before `@` (long metric and task names in headers)."""
    return escape(text).replace("_", "_<wbr>").replace("@", "<wbr>@")


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]: steps of 1, 2, 2.5 or 5 times a power of ten."""
    if not high > low:
        low, high = low - 0.5 * (abs(low) or 1), high + 0.5 * (abs(high) or 1)
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start, stop = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [round(i * step, 10) for i in range(start, stop + 1)]


def tick(value: float) -> str:
    return f"{value:g}"


def svg(parts: list[str], label: str, width: int, height: int) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">{"".join(parts)}</svg>')
