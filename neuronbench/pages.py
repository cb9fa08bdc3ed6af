"""Neuron views as self-contained HTML pages: one per neuron, one per ranking (its top neurons side by side).

The pages are built like the board, from the parts they share (leaderboard/htmlparts.py: its CSS, sortable tables
and table-sorting script, SVG and tick helpers), so they open from disk with no network; every word comes from a
corpus or a user and is escaped. `write_pages` puts each page beside its JSON under one folder layout
(`neuron_page_path`, `ranking_page_path`, defined in leaderboard/pages.py so that a board finds the pages it links
to).
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path

from bench.cache import atomic_write_bytes
from leaderboard.board import format_number
from leaderboard.html import PALETTE
from leaderboard.htmlparts import CSS, SCRIPT, Cell, nice_ticks, number, svg, table, tick
from leaderboard.pages import neuron_page_path, ranking_page_path
from neuronbench.concepts import ConceptSearch
from neuronbench.views import LabelDistribution, NeuronView, RankingView, WordHit

PAGE_CSS = """
.map p{margin:.35em 0;line-height:2}.map span.w{padding:.1em .25em;border-radius:3px;margin-right:.15em}
.map span.none{color:#aaa}.scale span{display:inline-block;min-width:3.4em;padding:.1em 0;text-align:center;font-size:.8em}
.cards{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.card{border:1px solid #e3e3e3;border-radius:4px;padding:.4em .6em;background:#fff;width:330px}
.card h3{margin:.2em 0 .4em}.card table{font-size:.8em}
.formula{font-family:ui-monospace,monospace;font-size:1.05em;background:#f6f6f6;padding:.3em .5em;border-radius:3px}
.card .formula{font-size:.95em;display:block;margin:.3em 0;overflow-wrap:anywhere}.card p.context{font-size:.8em}
"""
POSITIVE, NEGATIVE = (214, 39, 40), (31, 119, 180)  # red for activation above 0, blue below
HIST_WIDTH, HIST_HEIGHT = 520, 250
SMALL_HIST = (320, 170)
HIST_MARGIN = {"left": 46, "right": 12, "top": 10, "bottom": 36}
CARD_WORDS = 8  # top words per neuron on a ranking page (the neuron's own page has all the view holds)


def _page_path(root, view: NeuronView) -> Path:
    return neuron_page_path(root, view.task, view.model, view.seed, view.site, view.layer, view.neuron)


def write_pages(view: NeuronView | RankingView, root, data: bool = True) -> list[Path]:
    """Write the page of `view` and, with `data`, its JSON (same name, .json) under `root`; a ranking's page also
    writes the page of each of its neurons, which it links to. Returns the HTML paths, the view's own first."""
    if isinstance(view, NeuronView):
        path = _page_path(root, view)
        _write(path, neuron_page(view), view.to_json() if data else None)
        return [path]
    first = view.neurons[0]
    path = ranking_page_path(root, first.task, first.model, first.seed, view.method, first.site, first.layer)
    links = {n.neuron: os.path.relpath(_page_path(root, n), path.parent) for n in view.neurons}
    _write(path, ranking_page(view, links), view.to_json() if data else None)
    return [path] + [p for n in view.neurons for p in write_pages(n, root, data)]


def _write(path: Path, page: str, data: str | None) -> None:
    atomic_write_bytes(path, page.encode())
    if data is not None:
        atomic_write_bytes(path.with_suffix(".json"), data.encode())


def neuron_page(view: NeuronView) -> str:
    """The neuron's page as one string: its top and bottom words in context, its distribution per label, its map."""
    title = f"neuron {view.neuron} · {view.model} {view.site} layer {view.layer} · {view.task}"
    intro = (f"Raw activations of neuron {view.neuron} (of {view.n_neurons}) on the {view.n_words} example words of "
             f"{', '.join(view.splits)} (seed {view.seed}). A word type is listed once, at its most extreme "
             "occurrence; <i>n</i> and <i>mean</i> are over all its occurrences. Click a column header to sort.")
    body = [f"<h1>{escape(title)}</h1><p class=note>{intro}</p>",
            '<h2 id="top">Top-activating words</h2>', _hits_table(view.top),
            '<h2 id="bottom">Bottom-activating words</h2>', _hits_table(view.bottom),
            '<h2 id="labels">Activation per label</h2>',
            f'<div class="figures"><figure>{_histogram(view, HIST_WIDTH, HIST_HEIGHT)}{_legend(view.distribution)}'
            "<figcaption>Share of each label's words per activation bin.</figcaption></figure>"
            f"<div>{_distribution_table(view.distribution)}</div></div>"]
    if view.concepts is not None:
        body += _concepts_section(view.concepts)
    if view.maps:
        body += ['<h2 id="map">Activation map</h2>',
                 f"<p class=note>Each word shaded by the neuron's activation, against ±{view.scale:.3g} (the largest "
                 "magnitude on this page); hover a word for its value.</p>", _scale(view.scale), _maps(view)]
    return _document(title, body)


def ranking_page(view: RankingView, links: dict[int, str] | None = None) -> str:
    """A ranking's top neurons side by side: for each, its top and bottom words and its distribution per label;
    `links` maps a neuron to its own page's address."""
    first = view.neurons[0]
    title = f"{view.method}: top {len(view.neurons)} neurons · {first.model} {first.site} layer {first.layer} · {first.task}"
    intro = (f"The first {len(view.neurons)} neurons of the ranking by {escape(view.method)} (of {first.n_neurons}), "
             f"on the example words of {', '.join(first.splits)} (seed {first.seed}): raw activations.")
    cards = []
    for position, neuron in enumerate(view.neurons, 1):
        name = f"#{position} · neuron {neuron.neuron}"
        if links and neuron.neuron in links:
            name = f'<a href="{escape(links[neuron.neuron])}">{escape(name)}</a>'
        else:
            name = escape(name)
        cards.append(f'<div class="card" data-neuron="{neuron.neuron}"><h3>{name}</h3>'
                     + _words_table(neuron.top[:CARD_WORDS], "top words")
                     + _words_table(neuron.bottom[:CARD_WORDS // 2], "bottom words")
                     + _histogram(neuron, *SMALL_HIST) + _legend(neuron.distribution)
                     + (_card_concepts(neuron.concepts) if neuron.concepts is not None else "") + "</div>")
    body = [f"<h1>{escape(title)}</h1><p class=note>{intro}</p>", f'<div class="cards">{"".join(cards)}</div>']
    return _document(title, body)


def _document(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{CSS}{PAGE_CSS}</style></head><body>\n"
            + "\n".join(body) + f"\n<script>{SCRIPT}</script>\n</body></html>\n")


def _text(value: str) -> Cell:
    return Cell(value, value, numeric=False)


def _hits_table(hits: tuple[WordHit, ...]) -> str:
    """Keyword in context: the left context right-aligned against the word, as a concordance shows it (a planted
    task's words have no sentence, so no context columns)."""
    context = any(h.sentence is not None for h in hits)
    headers = [("#", "ascending"), *([("left context", "ascending")] if context else []), ("word", "ascending"),
               *([("right context", "ascending")] if context else []), ("activation", "descending"),
               ("label", "ascending"), ("n", "descending"), ("mean", "descending"),
               ("split · sentence" if context else "split", "ascending")]
    rows = [[number(i, str(i)), *([Cell(h.left, h.left)] if context else []), _text(h.word),
             *([_text(h.right)] if context else []), number(h.activation), _text(h.label),
             number(h.count, str(h.count)), number(h.mean),
             _text(h.split if h.sentence is None else f"{h.split} · {h.sentence}")]
            for i, h in enumerate(hits, 1)]
    return table(headers, rows)


def _words_table(hits: tuple[WordHit, ...], title: str) -> str:
    rows = [[_text(h.word), number(h.activation), _text(h.label)] for h in hits]
    return table([("word", "ascending"), ("activation", "descending"), ("label", "ascending")], rows, title)


def _distribution_table(distribution: tuple[LabelDistribution, ...]) -> str:
    headers = [("label", "ascending"), ("words", "descending"), ("mean", "descending"), ("std", "descending"),
               ("10th pct", "descending"), ("median", "descending"), ("90th pct", "descending")]
    rows = [[_text(d.label), number(d.count, str(d.count)), number(d.mean), number(d.std),
             *(number(q) for q in d.quantiles or (None,) * 3)] for d in distribution]
    return table(headers, rows)


def _concepts_section(search: ConceptSearch) -> list[str]:
    """Concept search: the explanation with its held-out IoU beside the best single atom's and the best control
    atom's, the final beam, and every label of the corpus's tasks ranked."""
    e = search.explanation
    rule = "x > 0" if e.alpha is None else f"x > {e.threshold:.4g}, the train quantile 1 − {e.alpha:g}"
    intro = (f"On means {escape(rule)}: {e.on_train:.2%} of the {search.n_words['train']} train words and "
             f"{e.on_test:.2%} of the {search.n_words['test']} test words (every word of the sentences that hold the "
             "cell's examples). The formula (at most 3 atoms: task labels, frequent word forms, suffixes; AND, OR, "
             "AND NOT; beam search as Mu &amp; Andreas) is chosen on train words by IoU with the on mask and scored "
             "on test words, beside the best single atom and the best control-task atom, each chosen on train.")
    summary = table([("", "ascending"), ("formula or atom", "ascending"), ("train IoU", "descending"),
                      ("test IoU", "descending")],
                     [[_text(kind), _text(name), number(train), number(test)] for kind, name, train, test in (
                         ("explanation", e.formula, e.train_iou, e.test_iou),
                         ("best atom", e.atom, e.atom_train_iou, e.atom_test_iou),
                         ("best control atom", e.control, e.control_train_iou, e.control_test_iou))])
    beam = table([("formula", "ascending"), ("atoms", "ascending"), ("train IoU", "descending"),
                   ("test IoU", "descending")],
                  [[_text(f.formula), number(f.length, str(f.length)), number(f.train_iou), number(f.test_iou)]
                   for f in e.beam], "final beam")
    ranked = "AP gain (the ap method's (AP − p)/(1 − p))" if search.by == "ap" else "IoU"
    labels = table([("task", "ascending"), ("label", "ascending"), ("test words", "descending"),
                     ("p", "descending"), ("AP", "descending"), ("AP control", "descending"),
                     ("AP gain", "descending"), ("IoU", "descending"), ("IoU control", "descending")],
                    [[_text(c.task), _text(c.label), number(c.n_test, str(c.n_test)), number(c.prevalence),
                      number(c.ap), number(c.ap_control), number(c.ap_gain), number(c.iou), number(c.iou_control)]
                     for c in search.concepts])
    return ['<h2 id="concepts">Concepts</h2>',
            f'<p>Explains as <span class="formula">{escape(e.formula)}</span> (test IoU {e.test_iou:.3f}; train '
            f"{e.train_iou:.3f}).</p>", f"<p class=note>{intro}</p>", summary, beam,
            f"<p class=note>Every label of every task on the corpus, on test words, ranked by {ranked}; p is the "
            "label's share of the test words (a random neuron's AP); the control columns are the same label of the "
            "task's control task (one random label per word type, Hewitt &amp; Liang).</p>", labels]


def _card_concepts(search: ConceptSearch) -> str:
    best, e = search.concepts[0], search.explanation
    return (f'<p class="context">best label {escape(best.task)}:{escape(best.label)} (AP {format_number(best.ap)}, '
            f'control {format_number(best.ap_control)}); explains as <span class="formula">{escape(e.formula)}'
            f"</span>test IoU {e.test_iou:.3f} (best control atom {e.control_test_iou:.3f})</p>")


def _colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _legend(distribution: tuple[LabelDistribution, ...]) -> str:
    items = "".join(f'<span><svg width="18" height="10"><line x1="0" x2="18" y1="5" y2="5" stroke="{_colour(i)}" '
                    f'stroke-width="2.5"/></svg> {escape(d.label)} ({d.count})</span>'
                    for i, d in enumerate(distribution))
    return f'<div class="legend">{items}</div>'


def _histogram(view: NeuronView, width: int, height: int) -> str:
    """One step line per label over the shared bins: the share of the label's words in each bin, so labels of
    different sizes compare; a bin's tooltip gives its word count."""
    edges = view.edges
    shares = [[c / d.count if d.count else 0.0 for c in d.histogram] for d in view.distribution]
    x_ticks = nice_ticks(edges[0], edges[-1])
    y_ticks = nice_ticks(0.0, max((v for row in shares for v in row), default=0.0) or 1.0)
    left, top = HIST_MARGIN["left"], HIST_MARGIN["top"]
    plot_w, plot_h = width - left - HIST_MARGIN["right"], height - top - HIST_MARGIN["bottom"]

    def x(value: float) -> float:
        return left + (value - x_ticks[0]) / (x_ticks[-1] - x_ticks[0]) * plot_w

    def y(value: float) -> float:
        return top + (y_ticks[-1] - value) / (y_ticks[-1] - y_ticks[0]) * plot_h

    parts = []
    for value in y_ticks:
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#eee"/>'
                     f'<text x="{left - 4}" y="{y(value) + 3:.1f}" font-size="10" text-anchor="end">{tick(value)}'
                     "</text>")
    for value in x_ticks:
        parts.append(f'<text x="{x(value):.1f}" y="{top + plot_h + 13}" font-size="10" text-anchor="middle">'
                     f"{tick(value)}</text>")
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>')
    for i, (dist, row) in enumerate(zip(view.distribution, shares)):
        path = f"M{x(edges[0]):.1f},{y(0):.1f}" + "".join(
            f"V{y(v):.1f}H{x(edges[b + 1]):.1f}" for b, v in enumerate(row)) + f"V{y(0):.1f}"
        parts.append(f'<path d="{path}" fill="{_colour(i)}" fill-opacity="0.12" stroke="{_colour(i)}" '
                     f'stroke-width="1.6"><title>{escape(dist.label)}: {dist.count} words, mean '
                     f"{format_number(dist.mean)}</title></path>")
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" font-size="11" text-anchor="middle">'
                 f"activation of neuron {view.neuron}</text>")
    return svg(parts, f"activation distribution of neuron {view.neuron} per label", width=width, height=height)


def _shade(value: float, scale: float) -> str:
    """White at 0, to red (above 0) or blue (below) at ±scale."""
    t = min(abs(value) / scale, 1.0)
    end = POSITIVE if value >= 0 else NEGATIVE
    return "#" + "".join(f"{round(255 + (c - 255) * t):02x}" for c in end)


def _word(word: str, value: float | None, scale: float) -> str:
    if value is None:
        return f'<span class="w none" title="no activation (no subword piece)">{escape(word)}</span>'
    ink = "#fff" if abs(value) / scale > 0.6 else "#222"
    return (f'<span class="w" style="background:{_shade(value, scale)};color:{ink}" data-activation="{value:.6g}" '
            f'title="{value:.4f}">{escape(word)}</span>')


def _maps(view: NeuronView) -> str:
    lines = []
    for sentence in view.maps:
        where = "your sentence" if sentence.split is None else f"{sentence.split} · {sentence.sentence}"
        words = "".join(_word(w, a, view.scale) for w, a in zip(sentence.words, sentence.activations))
        lines.append(f'<p><span class="context">{escape(where)}</span> {words}</p>')
    return f'<div class="map">{"".join(lines)}</div>'


def _scale(scale: float) -> str:
    steps = [-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0]
    return '<p class="scale">' + "".join(_word(f"{s * scale:.2g}", s * scale, scale) for s in steps) + "</p>"

