"""The published board as one self-contained HTML page: sortable tables, curves over k, agreement heat maps, cost.

Everything is inline (CSS, a few lines of JS that sort tables, SVG drawn here in Python), so the file opens from
disk with no network. Method, task and submission names come from outside, so every text is escaped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

import pandas as pd

from leaderboard.board import (
    BASELINE_METHODS, BUILTIN_SOURCE, DEPTH_METRIC, FAMILY_COLUMNS, METHOD_KEYS, MISSING, Group, Summary, column_label,
    context_items, cost_summary, depth_stats, format_k, format_number, format_stats, headline_columns, headline_sentence,
    headline_stats, method_label, overall_sentence, seed_summary,
)

# Curves drawn per task x model x site when their records exist: (metric, title, reference lines). A reference is
# `chance` (the metric's own chance column) or another metric, drawn dotted over k (or flat if it has no k).
CURVES = (
    ("probe_acc", "Probe accuracy, linear probe on the top-k", (("chance", "majority (chance)"),
                                                                ("acc_all", "all neurons"))),
    ("probe_acc_gaussian", "Probe accuracy, Gaussian probe on the top-k", (("chance", "majority (chance)"),
                                                                           ("acc_all_gaussian", "all neurons"))),
    ("selectivity", "Selectivity (task − control accuracy), linear", (("chance", "chance"),)),
    ("selectivity_gaussian", "Selectivity (task − control accuracy), Gaussian", (("chance", "chance"),)),
    ("ablate_keep_top", "Ablation: accuracy with only the top-k kept", (("ablate_keep_random", "random-k kept"),)),
    ("ablate_drop_top", "Ablation: accuracy lost with the top-k removed",
     (("ablate_drop_random", "random-k removed"),)),
    ("causal_drop", "In-model accuracy lost, top-k mean-ablated", (("causal_drop_random", "random-k"),)),
    ("causal_gain", "In-model drop minus random-k drop", (("chance", "chance"),)),
    ("translate_success", "Translation success (Antverg & Belinkov)", (("chance", "no edit"),)),
    ("clamp_success", "Clamp success (Suau et al.)", (("chance", "no edit"),)),
    ("faith", "Faithfulness f(k): top-k kept, rest mean-ablated", ()),
)
CURVE_INPUTS = frozenset(metric for curve, _, references in CURVES
                          for metric in (curve, *(r for r, _ in references if r != "chance")))
AGREEMENT_METRIC = "jaccard"
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#17becf")
DASHES = ("", "6 3", "2 2")  # methods beyond the palette repeat its colours with another dash
BASELINE_STYLE = ("#8c8c8c", "6 3")
REFERENCE = ("#111", "1.5 3")  # reference lines (chance, all neurons, random-k): thin, dotted, black
WIDTH, HEIGHT = 380, 250
TEXT_WIDTH = 6.5  # average pixels per character at font size 11, to size label margins
MARGIN = {"left": 48, "right": 12, "top": 10, "bottom": 38}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1280px;padding:0 1.2em 3em;
color:#222;line-height:1.4}
h1{margin-top:.8em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.4em}
p.note,figcaption,.context{color:#555;font-size:.9em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #ddd;padding:.25em .55em}th{max-width:12em}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.missing{color:#aaa;text-align:center}td{white-space:nowrap}
.scroll{overflow-x:auto;max-width:100%}
thead th{background:#f3f3f3;cursor:pointer;user-select:none}
thead th:hover{background:#e6eef7}
thead th[aria-sort=ascending]::after{content:" ▲"}thead th[aria-sort=descending]::after{content:" ▼"}
tbody tr:nth-child(even){background:#fafafa}
.figures{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0;border:1px solid #e3e3e3;border-radius:4px;padding:.4em;background:#fff}
figcaption{max-width:380px}
svg text{font-family:inherit}
.legend{display:flex;flex-wrap:wrap;gap:.3em 1.2em;font-size:.85em;margin:.4em 0}
.legend span{white-space:nowrap}
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
    """A table cell: shown text and the value it sorts by (None: missing, sorted last)."""
    text: str
    sort: float | str | None
    numeric: bool = True


def _missing() -> Cell:
    return Cell(MISSING, None)


def _number(value, text: str | None = None) -> Cell:
    if pd.isna(value):
        return _missing()
    return Cell(format_number(value) if text is None else text, float(value))


def _table(headers: list[tuple[str, str]], rows: list[list[Cell]], title: str = "") -> str:
    """A sortable table; headers are (text, first sort direction). Every text is escaped here."""
    head = "".join(f'<th data-dir="{direction}" title="click to sort">{_breakable(text)}</th>'
                   for text, direction in headers)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            css = "missing" if cell.sort is None else ("num" if cell.numeric else "")
            sort = "" if cell.sort is None else (repr(cell.sort) if isinstance(cell.sort, float) else cell.sort)
            cells.append(f'<td class="{css}" data-sort="{escape(str(sort))}">{escape(cell.text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = f"<caption>{escape(title)}</caption>" if title else ""
    return (f'<div class="scroll"><table class="sortable">{caption}<thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _breakable(text: str) -> str:
    """Escaped text that may wrap after underscores and before `@` (long metric and task names in headers)."""
    return escape(text).replace("_", "_<wbr>").replace("@", "<wbr>@")


def _styles(summary: Summary) -> dict[tuple, tuple[str, str]]:
    """(colour, dash) per (source, method), fixed for the whole page in overall rank order; baselines are grey."""
    styles, position = {}, 0
    for row in summary.ranking.itertuples():
        if row.source == BUILTIN_SOURCE and row.method in BASELINE_METHODS:
            styles[(row.source, row.method)] = BASELINE_STYLE
            continue
        styles[(row.source, row.method)] = (PALETTE[position % len(PALETTE)],
                                            DASHES[(position // len(PALETTE)) % len(DASHES)])
        position += 1
    return styles


# --- axes and charts ------------------------------------------------------------------------------------------------


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]: steps of 1, 2, 2.5 or 5 times a power of ten."""
    if not high > low:
        low, high = low - 0.5 * (abs(low) or 1), high + 0.5 * (abs(high) or 1)
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start, stop = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [round(i * step, 10) for i in range(start, stop + 1)]


def _log_ticks(low: float, high: float, values: list[float]) -> list[float]:
    """The values themselves when few, else powers of ten inside the range plus its ends."""
    if len(values) <= 8:
        return sorted(values)
    decades = [10.0 ** p for p in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)]
    return sorted({low, high, *(d for d in decades if low <= d <= high)})


def _tick(value: float) -> str:
    return f"{value:g}"


class _Frame:
    """Plot area of one chart (log x, linear y): data-to-pixel maps, axes and grid lines."""

    def __init__(self, x_range, y_ticks):
        self.x0, self.x1 = (math.log(v) for v in x_range)
        if self.x1 == self.x0:
            self.x0, self.x1 = self.x0 - 1, self.x1 + 1
        self.y0, self.y1 = y_ticks[0], y_ticks[-1]
        self.left, self.top = MARGIN["left"], MARGIN["top"]
        self.width = WIDTH - MARGIN["left"] - MARGIN["right"]
        self.height = HEIGHT - MARGIN["top"] - MARGIN["bottom"]

    def x(self, value: float) -> float:
        return self.left + (math.log(value) - self.x0) / (self.x1 - self.x0) * self.width

    def y(self, value: float) -> float:
        return self.top + (self.y1 - value) / (self.y1 - self.y0) * self.height

    def axes(self, x_ticks: list[float], y_ticks: list[float], x_label: str) -> str:
        parts = []
        for value in y_ticks:
            y = self.y(value)
            parts.append(f'<line x1="{self.left}" x2="{self.left + self.width}" y1="{y:.1f}" y2="{y:.1f}" '
                         f'stroke="#eee"/><text x="{self.left - 4}" y="{y + 3:.1f}" font-size="10" '
                         f'text-anchor="end">{_tick(value)}</text>')
        bottom = self.top + self.height
        for value in x_ticks:
            x = self.x(value)
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{self.top}" y2="{bottom}" stroke="#f2f2f2"/>'
                         f'<text x="{x:.1f}" y="{bottom + 13}" font-size="10" text-anchor="middle">'
                         f'{_tick(value)}</text>')
        parts.append(f'<rect x="{self.left}" y="{self.top}" width="{self.width}" height="{self.height}" '
                     f'fill="none" stroke="#999"/>')
        parts.append(f'<text x="{self.left + self.width / 2:.1f}" y="{HEIGHT - 6}" font-size="11" '
                     f'text-anchor="middle">{escape(x_label)}</text>')
        return "".join(parts)


@dataclass(frozen=True)
class Series:
    name: str
    colour: str
    dash: str
    points: pd.DataFrame  # k, mean, std, count


@dataclass(frozen=True)
class Reference:
    name: str
    points: pd.DataFrame  # k (null: flat line), mean


def _line_chart(series: list[Series], references: list[Reference], label: str) -> str:
    """Curves over k on a log axis, with ±std bands over seeds and dotted reference lines."""
    ks = sorted({float(k) for s in series for k in s.points["k"]})
    references = [Reference(r.name, r.points[r.points["k"].isna() | r.points["k"].between(ks[0], ks[-1])])
                  for r in references]
    references = [r for r in references if len(r.points)]
    values = [v for s in series for v in (s.points["mean"] - s.points["std"].fillna(0)).tolist()
              + (s.points["mean"] + s.points["std"].fillna(0)).tolist()]
    values += [v for r in references for v in r.points["mean"].tolist()]
    values = [v for v in values if math.isfinite(v)]
    y_ticks = _nice_ticks(min(values), max(values))
    frame = _Frame((ks[0], ks[-1]), y_ticks)
    parts = [frame.axes(_log_ticks(ks[0], ks[-1], ks), y_ticks, "k (log scale)")]
    for ref in references:
        flat = ref.points[ref.points["k"].isna()]
        if len(flat):
            y = frame.y(float(flat["mean"].mean()))
            path = f"M{frame.left},{y:.1f}H{frame.left + frame.width}"
        else:
            path = _path(frame, ref.points)
        parts.append(f'<path d="{path}" fill="none" stroke="{REFERENCE[0]}" stroke-width="1.1" '
                     f'stroke-dasharray="{REFERENCE[1]}"><title>{escape(ref.name)}</title></path>')
    for s in series:
        points = s.points.dropna(subset=["mean"])
        spread = points[points["count"] > 1]
        if len(spread) > 1:
            upper = [(frame.x(k), frame.y(m + d)) for k, m, d in zip(spread["k"], spread["mean"], spread["std"])]
            lower = [(frame.x(k), frame.y(m - d)) for k, m, d in zip(spread["k"], spread["mean"], spread["std"])]
            outline = " ".join(f"{x:.1f},{y:.1f}" for x, y in upper + lower[::-1])
            parts.append(f'<polygon points="{outline}" fill="{s.colour}" fill-opacity="0.15" stroke="none"/>')
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        parts.append(f'<path d="{_path(frame, points)}" fill="none" stroke="{s.colour}" stroke-width="1.8"{dash}>'
                     f'<title>{escape(s.name)}</title></path>')
        for k, mean, std, count in zip(points["k"], points["mean"], points["std"], points["count"]):
            spread_text = f" ± {format_number(std)} over {count} seeds" if count > 1 else ""
            parts.append(f'<circle cx="{frame.x(k):.1f}" cy="{frame.y(mean):.1f}" r="2.4" fill="{s.colour}">'
                         f'<title>{escape(s.name)}: {escape(label)} at k={int(k)} = {format_number(mean)}'
                         f'{spread_text}</title></circle>')
    return _svg(parts, label)


def _path(frame: _Frame, points: pd.DataFrame) -> str:
    coords = [f"{frame.x(k):.1f},{frame.y(v):.1f}" for k, v in zip(points["k"], points["mean"]) if pd.notna(v)]
    return "M" + "L".join(coords)


def _svg(parts: list[str], label: str, width: int = WIDTH, height: int = HEIGHT) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">{"".join(parts)}</svg>')


def _heatmap(names: list[str], matrix: list[list[float]], label: str) -> str:
    """Method x method matrix in [0, 1], white to dark blue; diagonal grey, missing pairs marked."""
    cell = 34
    text = TEXT_WIDTH * max(len(name) for name in names)  # longest label in pixels, at font size 11
    name_width = int(text) + 10
    top = int(text * math.sin(math.radians(40))) + 12  # column labels run up and right at 40 degrees
    right = int(text * math.cos(math.radians(40)))
    size = cell * len(names)
    parts = []
    for j, name in enumerate(names):
        x = name_width + j * cell + cell / 2
        parts.append(f'<text x="{x:.1f}" y="{top - 6}" font-size="11" transform="rotate(-40 {x:.1f} {top - 6})">'
                     f'{escape(name)}</text>')
    for i, row_name in enumerate(names):
        y = top + i * cell
        parts.append(f'<text x="{name_width - 6}" y="{y + cell / 2 + 4:.1f}" font-size="11" text-anchor="end">'
                     f'{escape(row_name)}</text>')
        for j, value in enumerate(matrix[i]):
            x = name_width + j * cell
            if i == j:
                fill, text, tip = "#e0e0e0", "", f"{row_name} (itself)"
            elif pd.isna(value):
                fill, text, tip = "#fafafa", MISSING, f"{row_name} vs {names[j]}: no common cell"
            else:
                fill, text = _blue(value), f"{value:.2f}"
                tip = f"{row_name} vs {names[j]}: {format_number(value)}"
            colour = "#fff" if not pd.isna(value) and value > 0.55 and i != j else "#222"
            parts.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" stroke="#fff">'
                         f'<title>{escape(tip)}</title></rect><text x="{x + cell / 2:.1f}" y="{y + cell / 2 + 4:.1f}" '
                         f'font-size="10" text-anchor="middle" fill="{colour}">{escape(text)}</text>')
    return _svg(parts, label, width=name_width + size + right, height=top + size + 10)


def _blue(value: float) -> str:
    """White (0) to dark blue (1)."""
    t = min(max(float(value), 0.0), 1.0)
    low, high = (247, 251, 255), (8, 48, 107)
    return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in zip(low, high))


def _bar_chart(names: list[str], values: list[float], colours: list[str], unit: str, label: str) -> str:
    """Horizontal bars on a log axis (costs span orders of magnitude), value printed at each bar's end."""
    shown = [(n, v, c) for n, v, c in zip(names, values, colours) if pd.notna(v) and v > 0]
    if not shown:
        return ""
    name_width = int(TEXT_WIDTH * max(len(n) for n, _, _ in shown)) + 10
    bar, width = 18, 300
    low = 10.0 ** math.floor(math.log10(min(v for _, v, _ in shown)))
    high = 10.0 ** math.ceil(math.log10(max(v for _, v, _ in shown)) + 1e-9)
    if high <= low:
        high = low * 10

    def x(value: float) -> float:
        return name_width + (math.log10(value) - math.log10(low)) / (math.log10(high) - math.log10(low)) * width

    parts = []
    bottom = 8 + bar * len(shown)
    decade = low
    while decade <= high * 1.0001:
        parts.append(f'<line x1="{x(decade):.1f}" x2="{x(decade):.1f}" y1="4" y2="{bottom}" stroke="#eee"/>'
                     f'<text x="{x(decade):.1f}" y="{bottom + 12}" font-size="10" text-anchor="middle">'
                     f'{_tick(decade)}</text>')
        decade *= 10
    for i, (name, value, colour) in enumerate(shown):
        y = 8 + i * bar
        parts.append(f'<text x="{name_width - 6}" y="{y + 12}" font-size="11" text-anchor="end">{escape(name)}</text>'
                     f'<rect x="{name_width}" y="{y + 2}" width="{max(x(value) - name_width, 1):.1f}" '
                     f'height="{bar - 5}" fill="{colour}"><title>{escape(name)}: {value:.4g} {escape(unit)}</title>'
                     f'</rect><text x="{x(value) + 4:.1f}" y="{y + 12}" font-size="10">{value:.3g}</text>')
    parts.append(f'<text x="{name_width + width / 2:.1f}" y="{bottom + 28}" font-size="11" text-anchor="middle">'
                 f'{escape(unit)} (log scale)</text>')
    return _svg(parts, label, width=name_width + width + 50, height=bottom + 36)


# --- sections ------------------------------------------------------------------------------------------------------


def _legend(keys: list[tuple], styles: dict) -> str:
    items = []
    for source, method in keys:
        colour, dash = styles.get((source, method), BASELINE_STYLE)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        items.append(f'<span><svg width="26" height="10"><line x1="1" x2="25" y1="5" y2="5" stroke="{colour}" '
                     f'stroke-width="2.5"{dash_attr}/></svg> {escape(method_label(source, method))}</span>')
    return '<div class="legend">' + "".join(items) + "</div>"


def _overall(summary: Summary, groups: list[Group]) -> str:
    """The headline over all cells with its interval and tier, the score per task x model, and the headline values."""
    per_group = {f"score · {g.task} · {g.model}": {member: row.score for row in g.ranking.itertuples()
                                                   for member in row.members} for g in groups}
    return (f"<p class=note>{escape(overall_sentence(summary.overall))}</p>"
            + _ranking_table(summary.ranking, summary.overall, summary.labels, per_group))


def _ranking_table(ranking: pd.DataFrame, headline: pd.DataFrame, labels: list[str],
                   per_group: dict | None = None, k=None) -> str:
    """Methods in headline order (`ranking`, the board's method_ranking) with the score, its 95% interval, tier,
    cells and family scores, optional score columns of other tables ({(source, method): score}), and the headline
    values (± over seeds); the group's k replaces `@k*` if given."""
    per_group = per_group or {}
    stats = headline_stats(headline).set_index([*METHOD_KEYS, "label"])
    stats = stats.assign(text=format_stats(stats))[["mean", "text"]]
    families = [f for f in FAMILY_COLUMNS if f in ranking.columns]
    headers = [("method", "ascending"), ("score", "descending"), ("95% CI", "descending"), ("tier", "ascending"),
               ("cells", "descending")]
    headers += [(family, "descending") for family in families]
    headers += [(title, "descending") for title in per_group]
    headers += [(label if k is None else column_label(label, k), "descending") for label in labels]
    rows = []
    for row in ranking.itertuples():
        key = (row.source, row.method)
        text = headline_columns(row)
        cells = [Cell(row.name, row.name, numeric=False), _number(row.score),
                 _number(row.low, text["95% CI"]), _number(row.tier, text["tier"]), Cell(text["cells"], float(row.cells))]
        cells += [_number(getattr(row, family)) for family in families]
        cells += [_number(scores[key]) if key in scores else _missing() for scores in per_group.values()]
        cells += [_number(*stats.loc[(*key, label)]) if (*key, label) in stats.index else _missing()
                  for label in labels]
        rows.append(cells)
    return _table(headers, rows)


def _depth_table(records: pd.DataFrame, ranking: pd.DataFrame, k) -> str:
    stats = depth_stats(records, k).set_index([*METHOD_KEYS, "layer"])
    stats = stats.assign(text=format_stats(stats))[["mean", "text"]]
    layers = sorted(records["layer"].unique())
    keys = list(zip(ranking["source"], ranking["method"]))
    keys += sorted({key[:2] for key in stats.index} - set(keys))
    headers = [("method", "ascending")] + [(f"L{layer}", "descending") for layer in layers]
    rows = []
    for source, method in keys:
        name = method_label(source, method)
        cells = [Cell(name, name, numeric=False)]
        cells += [_number(*stats.loc[(source, method, layer)]) if (source, method, layer) in stats.index
                  else _missing() for layer in layers]
        rows.append(cells)
    return _table(headers, rows)


def _context(group: Group) -> str:
    items = "".join(f"<li>{_inline_code(text)}: {format_number(value)}</li>"
                    for text, value in context_items(group.records, group.k))
    return f'<ul class="context">{items}</ul>'


def _inline_code(text: str) -> str:
    """Escaped text with `backticked` spans as <code>."""
    pieces = escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def _curves(records: pd.DataFrame, order: list[tuple], styles: dict) -> list[str]:
    """One figure per curve metric present in one site's records, methods averaged over layers and concepts."""
    figures = []
    records = records.loc[records["metric"].isin(CURVE_INPUTS),
                          [*METHOD_KEYS, "metric", "k", "seed", "value", "chance"]]  # records are wide
    for metric, title, reference_specs in CURVES:
        rows = records[(records["metric"] == metric) & records["k"].notna() & records["value"].notna()]
        if rows.empty:
            continue
        per_method = dict(tuple(seed_summary(rows, [*METHOD_KEYS, "k"]).sort_values("k").groupby(METHOD_KEYS)))
        series = [Series(method_label(*key), *styles.get(key, BASELINE_STYLE), per_method[key])
                  for key in order if key in per_method]
        references = []
        for source, name in reference_specs:
            if source == "chance":
                ref = rows.groupby("k", as_index=False)["chance"].mean().rename(columns={"chance": "mean"})
            else:
                ref_rows = records[records["metric"] == source]
                ref = ref_rows.groupby("k", dropna=False, as_index=False)["value"].mean().rename(
                    columns={"value": "mean"})
            ref = ref.dropna(subset=["mean"])
            if len(ref):
                references.append(Reference(name, ref))
        caption = escape(title) + (" · dotted: " + ", ".join(escape(r.name) for r in references)
                                   if references else "")
        figures.append(f"<figure>{_line_chart(series, references, metric)}<figcaption>{caption} "
                       f"(<code>{escape(metric)}</code>)</figcaption></figure>")
    return figures


def _agreement(records: pd.DataFrame, order: list[tuple], k) -> str:
    """Jaccard@k heat map of the methods of one site, at the largest overlap k not above the headline k."""
    rows = records[(records["metric"] == AGREEMENT_METRIC) & records["k"].notna()]
    if rows.empty:
        return ""
    available = sorted(rows["k"].unique())
    below = [value for value in available if pd.notna(k) and value <= k]
    heat_k = below[-1] if below else available[0]
    at_k = rows[rows["k"] == heat_k]
    stats = seed_summary(at_k, [*METHOD_KEYS, "other"]).set_index([*METHOD_KEYS, "other"])["mean"]
    present = {key[:2] for key in stats.index}
    keys = [key for key in order if key in present] + sorted(present - set(order))
    matrix = [[stats.get((source, method, other_method), float("nan")) for _, other_method in keys]
              for source, method in keys]
    chance = at_k["chance"].mean()
    names = [method_label(*key) for key in keys]
    return (f"<figure>{_heatmap(names, matrix, f'Jaccard@{int(heat_k)}')}<figcaption>Jaccard@{int(heat_k)} of the "
            f"top-{int(heat_k)} neurons, method × method, mean over layers and seeds; chance "
            f"{format_number(chance)}.</figcaption></figure>")


def _group_section(index: int, group: Group, labels: list[str], styles: dict) -> str:
    order = list(zip(group.ranking["source"], group.ranking["method"]))
    parts = [f'<h2 id="group-{index}">{escape(group.task)} · {escape(group.model)} '
             f"(k* = {escape(format_k(group.k))})</h2>",
             _ranking_table(group.ranking, group.headline, labels, k=group.k),
             "<p class=note>Baselines and chance levels:</p>", _context(group)]
    for site, site_records in group.records.groupby("site"):
        parts += [f"<h3>Site <code>{escape(str(site))}</code>: <code>{DEPTH_METRIC}@{escape(format_k(group.k))}"
                  "</code> by layer</h3>", _depth_table(site_records, group.ranking, group.k)]
        figures = _curves(site_records, order, styles)
        if figures:
            parts += [f"<h3>Site <code>{escape(str(site))}</code>: curves over k (mean over layers; band: ±std over "
                      "seeds; hover a point for its value)</h3>", _legend(order, styles),
                      '<div class="figures">' + "".join(figures) + "</div>"]
        heat = _agreement(site_records, order, group.k)
        if heat:
            parts += [f"<h3>Site <code>{escape(str(site))}</code>: agreement between methods</h3>",
                      f'<div class="figures">{heat}</div>']
    return "\n".join(parts)


def _cost_section(costs: pd.DataFrame, styles: dict) -> str:
    per_group = cost_summary(costs)
    headers = [("task", "ascending"), ("model", "ascending"), ("method", "ascending"),
               ("rank() s (median)", "descending"), ("peak MiB (median)", "descending")]
    rows = [[Cell(str(r.task), str(r.task), numeric=False), Cell(str(r.model), str(r.model), numeric=False),
             Cell(r.name, r.name, numeric=False), _number(r.time_s, f"{r.time_s:.3f}"),
             _number(r.peak_mib, f"{r.peak_mib:.1f}")] for r in per_group.itertuples()]
    overall = cost_summary(costs, by=[])
    keys = list(zip(overall["source"], overall["method"]))
    position = {key: index for index, key in enumerate(styles)}  # the page's rank order; unranked methods last
    overall = overall.assign(position=[position.get(key, len(position)) for key in keys]).sort_values(
        ["position", *METHOD_KEYS])
    colours = [styles.get(key, BASELINE_STYLE)[0] for key in zip(overall["source"], overall["method"])]
    names = overall["name"].tolist()
    charts = [_bar_chart(names, overall["time_s"].tolist(), colours, "seconds", "rank() wall time"),
              _bar_chart(names, overall["peak_mib"].tolist(), colours, "MiB", "rank() peak memory")]
    figures = "".join(f"<figure>{chart}<figcaption>{caption}, median over tasks, layers and seeds</figcaption>"
                      "</figure>" for chart, caption in zip(charts, ("rank() wall time", "rank() peak memory"))
                      if chart)
    return ("<h2 id=\"cost\">Cost of <code>rank()</code></h2><p class=note>Measured on the machine that ran the "
            "jobs (single-threaded BLAS); shown, never ranked.</p>"
            f'<div class="figures">{figures}</div>' + _table(headers, rows))


def render_html(summary: Summary, costs: pd.DataFrame | None = None) -> str:
    """The whole page as one string."""
    groups = list(summary.groups)
    styles = _styles(summary)
    toc = "".join(f'<li><a href="#group-{i}">{escape(g.task)} · {escape(g.model)}</a></li>'
                  for i, g in enumerate(groups))
    if costs is not None and len(costs):
        toc += '<li><a href="#cost">cost of rank()</a></li>'
    intro = (f"{escape(headline_sentence(summary.ranking))} Other columns: test-split scores, mean over seeds "
             f"(±std over seeds where there is more than one); {MISSING} marks a value a method lacks. "
             f"<code>@k*</code> is the headline k, the largest k ≤ {summary.headline_k} in each task/model grid. "
             "Click a column header to sort.")
    body = [f"<h1>neuronbench leaderboard</h1><p class=note>{intro}</p>",
            f"<nav><ul>{toc}</ul></nav>", "<h2 id=\"overall\">Overall</h2>", _overall(summary, groups)]
    body += [_group_section(i, group, summary.labels, styles) for i, group in enumerate(groups)]
    if costs is not None and len(costs):
        body.append(_cost_section(costs, styles))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>neuronbench leaderboard</title><style>{CSS}</style></head><body>\n"
            + "\n".join(body) + f"\n<script>{SCRIPT}</script>\n</body></html>\n")
