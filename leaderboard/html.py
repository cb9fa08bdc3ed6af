"""The published board as one self-contained HTML page: sortable tables, curves over k, agreement heat maps, cost.

Everything is inline (CSS, SVG drawn here in Python, a little JS that sorts tables and picks which methods the curves
show), so the file opens from disk with no network. With two dozen methods one chart cannot show every curve in a
colour of its own: the legends choose at most len(PALETTE) methods at once, page-wide, and each shown method holds one
palette colour until it is hidden. Method, task and submission names come from outside, so every text is escaped.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from html import escape

import pandas as pd

from leaderboard.board import (
    BASELINE_METHODS, BUILTIN_SOURCE, CI_COLUMNS, DEPTH_METRIC, FAMILY_COLUMNS, METHOD_KEYS, MISSING, Group, Summary,
    bracketed_interval, column_label, context_items, cost_summary, depth_stats, format_intervals, format_k,
    format_number, format_stats, has_depth, headline_columns, headline_sentence, headline_stats, interval_sentence,
    method_label, overall_sentence, seed_summary,
)
from leaderboard.htmlparts import CSS, SCRIPT, Cell, missing as _missing, nice_ticks as _nice_ticks, number as _number
from leaderboard.htmlparts import svg as _svg, table as _table, tick as _tick

# Curves drawn per task x model x site when their records exist: (metric, title, reference lines), a page layout
# choice, so the board's. A reference is `chance` (the metric's own chance column) or another metric, drawn dotted
# over k (or flat if it has no k).
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
    ("beh_drop_top", "Model's own logit difference lost (nats), top-k mean-ablated",
     (("beh_drop_random", "random-k"),)),
    ("iia", "Interchange intervention accuracy", (("iia_random", "random-k"),)),
    ("ravel_cause", "RAVEL cause: the patched attribute follows the source", (("chance", "random-k"),)),
    ("ravel_iso", "RAVEL isolation: the other attribute stays the base's", (("chance", "random-k"),)),
)
CURVE_INPUTS = frozenset(metric for curve, _, references in CURVES
                          for metric in (curve, *(r for r, _ in references if r != "chance")))
AGREEMENT_METRIC = "jaccard"
# Colours of the shown methods (Tableau 10 with cyan for its grey, which marks baselines): no two shown methods
# share one, so at most len(PALETTE) are shown at once; baselines are drawn grey and dashed beside them.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#17becf")
DEFAULT_SHOWN = 8  # the overall top methods shown when the page opens (and by a legend's `top` button)
REFERENCE = ("#111", "1.5 3")  # reference lines (chance, all neurons, random-k): thin, dotted, black
WIDTH, HEIGHT = 420, 280
TEXT_WIDTH = 6.5  # average pixels per character at font size 11, to size label margins
TICK_WIDTH = 6.4  # pixels per character of a tick label (font size 10), to keep neighbours apart
TICK_GAP = 6  # least pixels between two tick labels
MARGIN = {"left": 48, "right": 12, "top": 10, "bottom": 38}
WRAP_AT = 30  # characters: a longer list of tied methods wraps in a wide cell, a shorter one keeps its line

# Which methods the curves show, page-wide: every legend edits one set, `shown` (method id -> palette slot, -1 for a
# baseline). A method takes the first free colour and keeps it until hidden, so shown methods never share a colour;
# with every colour taken, the unticked boxes are disabled. Hovering a legend name or a curve picks the method out.
# Last, each chart's viewBox grows to hold any label wider than the margins estimated in Python.
SERIES_SCRIPT = """
(function () {
  var palette = PALETTE_JSON, style = document.getElementById("series-style"), shown = {};
  var legends = Array.prototype.slice.call(document.querySelectorAll(".legend"));
  function baseline(id) {
    return document.querySelector('.legend label[data-m="' + id + '"]').classList.contains("baseline");
  }
  function freeSlot() {
    var used = Object.keys(shown).map(function (id) { return shown[id]; });
    for (var slot = 0; slot < palette.length; slot++) { if (used.indexOf(slot) < 0) { return slot; } }
    return null;
  }
  function show(id) {
    if (id in shown) { return; }
    var slot = baseline(id) ? -1 : freeSlot();
    if (slot !== null) { shown[id] = slot; }
  }
  function render() {
    style.textContent = Object.keys(shown).map(function (id) {
      var colour = shown[id] < 0 ? "" : '[data-m="' + id + '"]{--c:' + palette[shown[id]] + "}";
      return '.js .series[data-m="' + id + '"]{display:inline}' + colour;
    }).join("\\n");
    var full = freeSlot() === null, count = Object.keys(shown).length;
    document.querySelectorAll(".legend input").forEach(function (box) {
      box.checked = box.value in shown;
      box.disabled = full && !box.checked && !baseline(box.value);
    });
    legends.forEach(function (legend) {
      legend.querySelector(".count").textContent =
        count + " shown" + (full ? "; every colour is taken: untick one to show another" : "");
    });
  }
  function pickTop(legend) {
    shown = {};
    var taken = 0;
    legend.querySelectorAll("label[data-m]").forEach(function (label) {
      if (label.classList.contains("baseline")) { show(label.dataset.m); }
      else if (taken < DEFAULT_SHOWN) { show(label.dataset.m); taken += 1; }
    });
    render();
  }
  function focus(id, on) {
    document.body.classList.toggle("focusing", on);
    document.querySelectorAll('.series[data-m="' + id + '"], .legend label[data-m="' + id + '"]')
      .forEach(function (element) { element.classList.toggle("focus", on); });
  }
  if (legends.length) {
    document.documentElement.classList.add("js");
    Array.prototype.slice.call(legends[0].querySelectorAll("input"))
      .filter(function (box) { return box.defaultChecked; })
      .map(function (box) { return box.value; })
      .sort(function (a, b) { return a - b; })
      .forEach(show);
    render();
    document.addEventListener("change", function (event) {
      var box = event.target;
      if (!box.matches(".legend input")) { return; }
      if (box.checked) { show(box.value); } else { delete shown[box.value]; }
      render();
    });
    document.addEventListener("click", function (event) {
      var button = event.target.closest(".legend button");
      if (!button) { return; }
      if (button.dataset.pick === "top") { pickTop(button.closest(".legend")); } else { shown = {}; render(); }
    });
    ["mouseover", "mouseout"].forEach(function (type) {
      document.addEventListener(type, function (event) {
        var target = event.target.closest && event.target.closest(".legend label[data-m], .series");
        if (target) { focus(target.dataset.m, type === "mouseover"); }
      });
    });
  }
  document.querySelectorAll("figure svg").forEach(function (svg) {
    var box = svg.getBBox(), width = +svg.getAttribute("width"), height = +svg.getAttribute("height");
    var x0 = Math.min(0, Math.floor(box.x) - 2), y0 = Math.min(0, Math.floor(box.y) - 2);
    var x1 = Math.max(width, Math.ceil(box.x + box.width) + 2);
    var y1 = Math.max(height, Math.ceil(box.y + box.height) + 2);
    if (x0 < 0 || y0 < 0 || x1 > width || y1 > height) {
      svg.setAttribute("viewBox", [x0, y0, x1 - x0, y1 - y0].join(" "));
      svg.setAttribute("width", x1 - x0);
      svg.setAttribute("height", y1 - y0);
    }
  });
})();
""".replace("PALETTE_JSON", json.dumps(PALETTE)).replace("DEFAULT_SHOWN", str(DEFAULT_SHOWN))


class _Methods:
    """A page-wide id per (source, method): its overall rank, shared by the clones folded into its row, so that one
    toggle and one colour rule reach the method's curves, legend entries and bars in every section."""

    def __init__(self, ranking: pd.DataFrame):
        self._ids = {member: index for index, row in enumerate(ranking.itertuples()) for member in row.members}
        self._next = itertools.count(len(ranking))  # methods outside the ranking (cost records only) come last
        ranked = [self._ids[(row.source, row.method)] for row in ranking.itertuples()
                  if not _is_baseline(row.source, row.method)]
        self._opening = set(ranked[:DEFAULT_SHOWN])

    def opens_shown(self, key: tuple) -> bool:
        """Ticked when the page opens: the baselines and the overall top DEFAULT_SHOWN."""
        return _is_baseline(*key) or self.position(key) in self._opening

    def position(self, key: tuple) -> int:
        if key not in self._ids:
            self._ids[key] = next(self._next)
        return self._ids[key]

    def attrs(self, key: tuple, css: str) -> str:
        """`class` and `data-m` of an element drawn for the method (baselines get their grey, dashed class)."""
        return f'class="{css}{" baseline" if _is_baseline(*key) else ""}" data-m="{self.position(key)}"'


def _is_baseline(source, method) -> bool:
    return source == BUILTIN_SOURCE and method in BASELINE_METHODS


# --- axes and charts ------------------------------------------------------------------------------------------------


def _log_ticks(low: float, high: float, values: list[float]) -> list[float]:
    """The values themselves when few, else powers of ten inside the range plus its ends."""
    if len(values) <= 8:
        return sorted(values)
    decades = [10.0 ** p for p in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)]
    return sorted({low, high, *(d for d in decades if low <= d <= high)})


def _spaced(ticks: list[float], position) -> list[float]:
    """The ticks whose labels (centred at `position(tick)` pixels) stay TICK_GAP apart: both ends (the last is D,
    the full layer), then each inner tick that clears the last one kept and the end."""
    def clear(a: float, b: float) -> bool:
        room = TICK_WIDTH * (len(_tick(a)) + len(_tick(b))) / 2 + TICK_GAP
        return abs(position(b) - position(a)) >= room

    if len(ticks) < 2:
        return ticks
    if not clear(ticks[0], ticks[-1]):
        return ticks[-1:]
    kept = ticks[:1]
    for tick in ticks[1:-1]:
        if clear(kept[-1], tick) and clear(tick, ticks[-1]):
            kept.append(tick)
    return kept + ticks[-1:]


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
        labelled = _spaced(x_ticks, self.x)
        for value in x_ticks:
            x = self.x(value)
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{self.top}" y2="{bottom}" stroke="#f2f2f2"/>')
            if value in labelled:
                parts.append(f'<text x="{x:.1f}" y="{bottom + 13}" font-size="10" text-anchor="middle">'
                             f'{_tick(value)}</text>')
        parts.append(f'<rect x="{self.left}" y="{self.top}" width="{self.width}" height="{self.height}" '
                     f'fill="none" stroke="#999"/>')
        parts.append(f'<text x="{self.left + self.width / 2:.1f}" y="{HEIGHT - 6}" font-size="11" '
                     f'text-anchor="middle">{escape(x_label)}</text>')
        return "".join(parts)


@dataclass(frozen=True)
class Series:
    name: str
    attrs: str  # _Methods.attrs of its <g>: the page's script shows, hides and colours it by these
    points: pd.DataFrame  # k, mean, std, count, ci_low, ci_high (NaN: no interval)


@dataclass(frozen=True)
class Reference:
    name: str
    points: pd.DataFrame  # k (null: flat line), mean


def _line_chart(series: list[Series], references: list[Reference], label: str) -> str:
    """Curves over k on a log axis, with ±std bands over seeds, 95% interval whiskers and dotted reference lines."""
    ks = sorted({float(k) for s in series for k in s.points["k"]})
    references = [Reference(r.name, r.points[r.points["k"].isna() | r.points["k"].between(ks[0], ks[-1])])
                  for r in references]
    references = [r for r in references if len(r.points)]
    values = [v for s in series for v in (s.points["mean"] - s.points["std"].fillna(0)).tolist()
              + (s.points["mean"] + s.points["std"].fillna(0)).tolist()]
    values += [v for s in series for column in ("ci_low", "ci_high") for v in s.points[column].tolist()]
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
            band = f'<polygon class="band" points="{outline}"/>'
        else:
            band = ""
        parts.append(f'<g {s.attrs}>{band}<path class="line" d="{_path(frame, points)}"><title>{escape(s.name)}'
                     '</title></path>')
        whiskers = points.dropna(subset=["ci_low", "ci_high"])
        if len(whiskers):
            parts.append('<path class="ci" d="' + "".join(
                f"M{frame.x(k):.1f},{frame.y(low):.1f}V{frame.y(high):.1f}"
                for k, low, high in zip(whiskers["k"], whiskers["ci_low"], whiskers["ci_high"])) + '"/>')
        for k, mean, std, count, low, high in zip(points["k"], points["mean"], points["std"], points["count"],
                                                  points["ci_low"], points["ci_high"]):
            spread_text = f" ± {format_number(std)} over {count} seeds" if count > 1 else ""
            interval_text = "" if pd.isna(low) else f", 95% interval [{format_number(low)}, {format_number(high)}]"
            parts.append(f'<circle cx="{frame.x(k):.1f}" cy="{frame.y(mean):.1f}" r="2.4">'
                         f'<title>{escape(s.name)}: {escape(label)} at k={int(k)} = {format_number(mean)}'
                         f'{spread_text}{interval_text}</title></circle>')
        parts.append("</g>")
    return _svg(parts, label, WIDTH, HEIGHT)


def _path(frame: _Frame, points: pd.DataFrame) -> str:
    coords = [f"{frame.x(k):.1f},{frame.y(v):.1f}" for k, v in zip(points["k"], points["mean"]) if pd.notna(v)]
    return "M" + "L".join(coords)


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
        parts.append(f'<text x="{x:.1f}" y="{top - 6}" class="name" transform="rotate(-40 {x:.1f} {top - 6})">'
                     f'{escape(name)}</text>')
    for i, row_name in enumerate(names):
        y = top + i * cell
        parts.append(f'<text x="{name_width - 6}" y="{y + cell / 2 + 4:.1f}" class="name end">'
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
            dark = ' class="dark"' if not pd.isna(value) and value > 0.55 and i != j else ""
            parts.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{fill}">'
                         f'<title>{escape(tip)}</title></rect>'
                         f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2 + 4:.1f}"{dark}>{escape(text)}</text>')
    return _svg([f'<g class="heat">{"".join(parts)}</g>'], label, width=name_width + size + right,
                height=top + size + 10)


def _blue(value: float) -> str:
    """White (0) to dark blue (1)."""
    t = min(max(float(value), 0.0), 1.0)
    low, high = (247, 251, 255), (8, 48, 107)
    return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in zip(low, high))


def _bar_chart(names: list[str], values: list[float], attrs: list[str], unit: str, label: str) -> str:
    """Horizontal bars on a log axis (costs span orders of magnitude), value printed at each bar's end; a bar takes
    its method's colour while the curves show it (`attrs`: _Methods.attrs)."""
    shown = [(n, v, a) for n, v, a in zip(names, values, attrs) if pd.notna(v) and v > 0]
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
    decades = [low * 10 ** i for i in range(round(math.log10(high / low)) + 1)]
    labelled = _spaced(decades, x)
    for decade in decades:
        parts.append(f'<line x1="{x(decade):.1f}" x2="{x(decade):.1f}" y1="4" y2="{bottom}" stroke="#eee"/>')
        if decade in labelled:
            parts.append(f'<text x="{x(decade):.1f}" y="{bottom + 12}" font-size="10" text-anchor="middle">'
                         f'{_tick(decade)}</text>')
    for i, (name, value, bar_attrs) in enumerate(shown):
        y = 8 + i * bar
        parts.append(f'<text x="{name_width - 6}" y="{y + 12}" font-size="11" text-anchor="end">{escape(name)}</text>'
                     f'<rect x="{name_width}" y="{y + 2}" width="{max(x(value) - name_width, 1):.1f}" '
                     f'height="{bar - 5}" {bar_attrs}><title>{escape(name)}: {value:.4g} {escape(unit)}</title>'
                     f'</rect><text x="{x(value) + 4:.1f}" y="{y + 12}" font-size="10">{value:.3g}</text>')
    parts.append(f'<text x="{name_width + width / 2:.1f}" y="{bottom + 28}" font-size="11" text-anchor="middle">'
                 f'{escape(unit)} (log scale)</text>')
    return _svg(parts, label, width=name_width + width + 50, height=bottom + 36)


# --- sections ------------------------------------------------------------------------------------------------------


def _legend(keys: list[tuple], methods: _Methods) -> str:
    """Tick boxes in the group's rank order that show or hide a method on every chart of the page."""
    items = []
    for key in keys:
        checked = " checked" if methods.opens_shown(key) else ""
        items.append(f'<label {methods.attrs(key, "item")}><input type="checkbox" value="{methods.position(key)}"'
                     f'{checked}><svg width="26" height="10"><line class="key" x1="1" x2="25" y1="5" y2="5"/></svg>'
                     f'<span>{escape(method_label(*key))}</span></label>')
    tools = (f'<span class="tools"><button type="button" data-pick="top">top {DEFAULT_SHOWN} here</button>'
             '<button type="button" data-pick="none">none</button><span class="count"></span></span>')
    return '<div class="legend">' + tools + "".join(items) + "</div>"


def _overall(summary: Summary, groups: list[Group]) -> str:
    """The headline over all cells with its interval and tier, the score per task x model, and the headline values."""
    per_group = {f"score · {g.task} · {g.model}": {member: (row.score, None, bracketed_interval(row.low, row.high))
                                                   for row in g.ranking.itertuples() for member in row.members}
                 for g in groups}
    return (f"<p class=note>{escape(overall_sentence(summary.overall))}</p>"
            + _ranking_table(summary.ranking, summary.overall, summary.labels, per_group))


def _ranking_table(ranking: pd.DataFrame, headline: pd.DataFrame, labels: list[str],
                   per_group: dict | None = None, k=None, pages: dict[str, str] | None = None) -> str:
    """Methods in headline order (`ranking`, the board's method_ranking) with the score, its 95% interval, tier,
    cells and family scores, optional score columns of other tables ({(source, method): score}), and the headline
    values (± over seeds); the group's k replaces `@k*` if given; `pages` links built-in methods to a page."""
    per_group = per_group or {}
    stats = headline_stats(headline).set_index([*METHOD_KEYS, "label"])
    stats = stats.assign(text=format_stats(stats), interval=format_intervals(stats))[["mean", "text", "interval"]]
    families = [f for f in FAMILY_COLUMNS if f in ranking.columns]
    headers = [("method", "ascending"), ("score", "descending"), ("95% CI", "descending"), ("tier", "ascending"),
               ("cells", "descending")]
    headers += [(family, "descending") for family in families] + [("tied with", "ascending")]
    headers += [(title, "descending") for title in per_group]
    headers += [(label if k is None else column_label(label, k), "descending") for label in labels]
    rows = []
    for row in ranking.itertuples():
        key = (row.source, row.method)
        text = headline_columns(row)
        cells = [_method_cell(row, pages or {}), _number(row.score),
                 _number(row.low, text["95% CI"]), _number(row.tier, text["tier"]), Cell(text["cells"], float(row.cells))]
        cells += [_number(getattr(row, family), None, bracketed_interval(getattr(row, f"{family}_low", None),
                                                                         getattr(row, f"{family}_high", None)))
                  for family in families]
        cells.append(Cell(text["tied with"], text["tied with"] if row.tied_with is not None else None, numeric=False,
                          wrap=len(text["tied with"]) > WRAP_AT))
        cells += [_number(*scores[key]) if key in scores else _missing() for scores in per_group.values()]
        cells += [_number(*stats.loc[(*key, label)]) if (*key, label) in stats.index else _missing()
                  for label in labels]
        rows.append(cells)
    return _table(headers, rows)


def _method_cell(row, pages: dict[str, str]) -> Cell:
    """A method row's name, linked to its ranking page (`leaderboard.pages.page_links`) when it has one."""
    href = pages.get(row.method) if row.source == BUILTIN_SOURCE else None
    return Cell(row.name, row.name, numeric=False, href=href)


def _depth_table(records: pd.DataFrame, ranking: pd.DataFrame, k) -> str:
    stats = depth_stats(records, k).set_index([*METHOD_KEYS, "layer"])
    stats = stats.assign(text=format_stats(stats), interval=format_intervals(stats))[["mean", "text", "interval"]]
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


def _context(group: Group) -> list[str]:
    items = "".join(f"<li>{_inline_code(text)}: {format_number(value)}</li>"
                    for text, value in context_items(group.records, group.k))
    return ["<p class=note>Baselines and chance levels:</p>", f'<ul class="context">{items}</ul>'] if items else []


def _inline_code(text: str) -> str:
    """Escaped text with `backticked` spans as <code>."""
    pieces = escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def _curves(records: pd.DataFrame, order: list[tuple], methods: _Methods) -> list[str]:
    """One figure per curve metric present in one site's records, methods averaged over layers and concepts."""
    figures = []
    records = records.loc[records["metric"].isin(CURVE_INPUTS),
                          [*METHOD_KEYS, "metric", "k", "seed", "value", "chance",
                           *(c for c in CI_COLUMNS if c in records)]]  # records are wide
    for metric, title, reference_specs in CURVES:
        rows = records[(records["metric"] == metric) & records["k"].notna() & records["value"].notna()]
        if rows.empty:
            continue
        per_method = dict(tuple(seed_summary(rows, [*METHOD_KEYS, "k"]).sort_values("k").groupby(METHOD_KEYS)))
        series = [Series(method_label(*key), methods.attrs(key, "series"), per_method[key])
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


def _group_section(index: int, group: Group, labels: list[str], methods: _Methods, pages: dict[str, str]) -> str:
    order = list(zip(group.ranking["source"], group.ranking["method"]))
    parts = [f'<h2 id="group-{index}">{escape(group.task)} · {escape(group.model)} '
             f"(k* = {escape(format_k(group.k))})</h2>",
             _ranking_table(group.ranking, group.headline, labels, k=group.k, pages=pages),
             *([f"<p class=note>A method's name opens the page of its top neurons in its best cell (the layer of "
                f"its highest <code>{DEPTH_METRIC}@k*</code>, seed 0).</p>"] if pages else []),
             *_context(group)]
    for site, site_records in group.records.groupby("site"):
        if has_depth(site_records):
            parts += [f"<h3>Site <code>{escape(str(site))}</code>: <code>{DEPTH_METRIC}@{escape(format_k(group.k))}"
                      "</code> by layer</h3>", _depth_table(site_records, group.ranking, group.k)]
        figures = _curves(site_records, order, methods)
        if figures:
            parts += [f"<h3>Site <code>{escape(str(site))}</code>: curves over k (mean over layers; band: ±std over "
                      "seeds; whiskers: 95% interval; hover a point for its value)</h3>",
                      f"<p class=note>Tick a method to show it on every chart of the page, each shown method in a "
                      f"colour of its own (at most {len(PALETTE)} at once; baselines grey, dashed); hover a name or a "
                      "curve to pick it out.</p>", _legend(order, methods),
                      '<div class="figures">' + "".join(figures) + "</div>"]
        heat = _agreement(site_records, order, group.k)
        if heat:
            parts += [f"<h3>Site <code>{escape(str(site))}</code>: agreement between methods</h3>",
                      f'<div class="figures">{heat}</div>']
    return "\n".join(parts)


def _group_pages(pages: dict[tuple[str, str, str], str], group: Group) -> dict[str, str]:
    return {method: href for (task, model, method), href in pages.items() if (task, model) == (group.task, group.model)}


def _cost_section(costs: pd.DataFrame, methods: _Methods) -> str:
    per_group = cost_summary(costs)
    headers = [("task", "ascending"), ("model", "ascending"), ("method", "ascending"),
               ("rank() s (median)", "descending"), ("peak MiB (median)", "descending")]
    rows = [[Cell(str(r.task), str(r.task), numeric=False), Cell(str(r.model), str(r.model), numeric=False),
             Cell(r.name, r.name, numeric=False), _number(r.time_s, f"{r.time_s:.3f}"),
             _number(r.peak_mib, f"{r.peak_mib:.1f}")] for r in per_group.itertuples()]
    overall = cost_summary(costs, by=[])
    keys = list(zip(overall["source"], overall["method"]))
    overall = overall.assign(position=[methods.position(key) for key in keys]).sort_values(["position", *METHOD_KEYS])
    attrs = [methods.attrs(key, "bar") for key in zip(overall["source"], overall["method"])]
    names = overall["name"].tolist()
    charts = [_bar_chart(names, overall["time_s"].tolist(), attrs, "seconds", "rank() wall time"),
              _bar_chart(names, overall["peak_mib"].tolist(), attrs, "MiB", "rank() peak memory")]
    figures = "".join(f"<figure>{chart}<figcaption>{caption}, median over tasks, layers and seeds</figcaption>"
                      "</figure>" for chart, caption in zip(charts, ("rank() wall time", "rank() peak memory"))
                      if chart)
    return ("<h2 id=\"cost\">Cost of <code>rank()</code></h2><p class=note>Measured on the machine that ran the "
            "jobs (single-threaded BLAS); shown, never ranked.</p>"
            f'<div class="figures">{figures}</div>' + _table(headers, rows))


def render_html(summary: Summary, costs: pd.DataFrame | None = None,
                pages: dict[tuple[str, str, str], str] | None = None) -> str:
    """The whole page as one string; `pages` maps (task, model, method) to the address of the ranking page its
    method row in that task's table links to (`leaderboard.pages.page_links`)."""
    groups = list(summary.groups)
    methods = _Methods(summary.ranking)
    toc = "".join(f'<li><a href="#group-{i}">{escape(g.task)} · {escape(g.model)}</a></li>'
                  for i, g in enumerate(groups))
    if costs is not None and len(costs):
        toc += '<li><a href="#cost">cost of rank()</a></li>'
    intro = (f"{escape(headline_sentence(summary.ranking))} Other columns: test-split scores, mean over seeds "
             f"(±std over seeds where there is more than one); {MISSING} marks a value a method lacks. "
             f"<code>@k*</code> is the headline k, the largest k ≤ {summary.headline_k} in each task/model grid. "
             f"Click a column header to sort. {_inline_code(interval_sentence(summary.records))}")
    body = [f"<h1>neuronbench leaderboard</h1><p class=note>{intro}</p>",
            f"<nav><ul>{toc}</ul></nav>", "<h2 id=\"overall\">Overall</h2>", _overall(summary, groups)]
    body += [_group_section(i, group, summary.labels, methods, _group_pages(pages or {}, group))
             for i, group in enumerate(groups)]
    if costs is not None and len(costs):
        body.append(_cost_section(costs, methods))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>neuronbench leaderboard</title><style>{CSS}</style><style id=\"series-style\"></style>"
            "</head><body>\n" + "\n".join(body) + f"\n<script>{SCRIPT}{SERIES_SCRIPT}</script>\n</body></html>\n")
