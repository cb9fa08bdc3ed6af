"""Neuron views (neuronbench/views.py, pages.py, cli.py): known answers on planted neurons, the views read the very
rows of the cache, the pages are escaped, self-contained and open in headless Chromium, and the CLI writes them."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import neuronbench as nb
from bench.errors import NeuronbenchError
from bench.run import run_job
from conftest import CONF
from leaderboard.cli import build
from neuronbench.cli import main as neurons_cli
from test_html_board import browser, parsed  # noqa: F401  (the board's headless Chromium fixture and HTML parser)

PLANTED = ["task.loader.n_neurons=64"]
EVIL = '<img src=x onerror="document.title=1">'


@pytest.fixture(scope="module")
def planted():
    return nb.load("planted_single", "planted", PLANTED).activations(0)


@pytest.fixture(scope="module")
def minilm():
    """templated_number on minilm_l6, layer 3: the README's cell (the project cache holds it once other tests ran)."""
    return nb.load("templated_number", "minilm_l6").activations(3)


def planted_neuron(acts, label: int) -> int:
    (neuron,) = acts.source.truth[label]
    return neuron


@pytest.mark.parametrize("label", range(5))
def test_a_planted_neuron_fires_on_its_class(planted, label):
    view = nb.neuron_view(planted, planted_neuron(planted, label), top=10)
    name = planted.label_names[label]
    assert [hit.label for hit in view.top] == [name] * 10
    assert name not in [hit.label for hit in view.bottom]
    assert len({hit.word for hit in view.top}) == 10  # one row per word type
    assert all(a.activation >= b.activation for a, b in zip(view.top, view.top[1:]))
    means = {d.label: d.mean for d in view.distribution}
    assert max(means, key=means.get) == name
    assert view.maps == () and all(hit.sentence is None and hit.left == "" for hit in view.top)
    header = parsed(nb.neuron_page(view)).tables[0][0]
    assert header == ["#", "word", "activation", "label", "n", "mean", "split"]  # no sentences, no context columns


def test_distribution_counts_are_the_label_counts(planted):
    view = nb.neuron_view(planted, 3, splits=["dev", "test"], bins=12)
    counts = np.bincount(np.concatenate([planted.y["dev"], planted.y["test"]]), minlength=5)
    assert [d.count for d in view.distribution] == counts.tolist()
    assert [sum(d.histogram) for d in view.distribution] == counts.tolist()
    assert len(view.edges) == 13 and view.n_words == 1000
    values = np.concatenate([planted.X["dev"][:, 3], planted.X["test"][:, 3]])
    assert view.edges[0] == pytest.approx(values.min()) and view.edges[-1] == pytest.approx(values.max())
    assert view.top[0].activation == pytest.approx(values.max())
    assert view.bottom[0].activation == pytest.approx(values.min())


def test_a_hit_and_its_map_read_the_cached_rows(minilm):
    """Every top word's activation is its example row's, with the sentence around it; the map of that sentence (read
    from the same cache entry) gives the word the same value."""
    ranking = nb.rank("probeless", minilm)
    view = nb.neuron_view(minilm, int(ranking[0]), top=5)
    for hit in view.top:
        words = minilm.experiment.task.sentences[hit.split][hit.sentence]
        assert words[hit.position] == hit.word
        assert hit.left.split() == words[max(0, hit.position - 6):hit.position]
        row = np.flatnonzero((minilm.refs[hit.split] == (hit.sentence, hit.position)).all(axis=1)).item()
        assert minilm.X[hit.split][row, view.neuron] == np.float32(hit.activation)
    by_sentence = {(m.split, m.sentence): m for m in view.maps}
    assert len(view.maps) == len({(h.split, h.sentence) for h in view.top})
    for hit in view.top:
        assert by_sentence[(hit.split, hit.sentence)].activations[hit.position] == hit.activation
    free = nb.activation_map(minilm, view.neuron, ["the dogs are hungry .", ("test", 0)])
    assert free[0].split is None and free[0].words == ("the", "dogs", "are", "hungry", ".")
    assert free[1].words == tuple(minilm.experiment.task.sentences["test"][0])


def test_json_is_the_views_data(planted):
    view = nb.ranking_view(planted, nb.rank("probeless", planted), method="probeless", top=3, words=4)
    data = json.loads(view.to_json())
    assert data["kind"] == "ranking" and data["method"] == "probeless" and len(data["ranking"]) == 64
    assert [n["neuron"] for n in data["neurons"]] == list(view.ranking[:3])
    first = data["neurons"][0]
    assert first["kind"] == "neuron" and len(first["top"]) == 4 and first["top"][0]["label"] == view.neurons[0].top[0].label
    assert [d["count"] for d in first["distribution"]] == [d.count for d in view.neurons[0].distribution]


VIEW_ERRORS = [
    (lambda p: nb.neuron_view(p, 64), "neuron 64: planted_single/planted/hidden/L0 has neurons 0..63"),
    (lambda p: nb.neuron_view(p, True), "neuron True: planted_single/planted/hidden/L0 has neurons 0..63"),
    (lambda p: nb.neuron_view(p, 0, splits=["val"]), "splits=['val']: expected some of train, dev, test"),
    (lambda p: nb.neuron_view(p, 0, top=0), "neuron_view: top=0 and bins=30 must be positive integers"),
    (lambda p: nb.neuron_view(p.X, 0), "expected the Activations of a cell"),
    (lambda p: nb.ranking_view(p, [0, 1, 2]), "ranking_view: expected a permutation of the 64 neurons"),
    (lambda p: nb.ranking_view(p, np.arange(64), top=65), "ranking_view: top=65 must be an integer in 1..64"),
    (lambda p: nb.activation_map(p, 0, "a sentence"), "activation_map: give a non-empty list"),
    (lambda p: nb.activation_map(p, 0, ["the dogs ."]), "a planted task has no sentences and no model"),
]


@pytest.mark.parametrize("call, message", VIEW_ERRORS, ids=[m[:30] for _, m in VIEW_ERRORS])
def test_bad_view_input_is_one_clear_error(planted, call, message):
    with pytest.raises(NeuronbenchError, match=re.escape(message)):
        call(planted)


def test_pages_are_escaped_and_self_contained(minilm):
    neuron = int(nb.rank("probeless", minilm)[0])
    view = nb.neuron_view(minilm, neuron, sentences=[f"{EVIL} the dogs are here ."])
    page = nb.neuron_page(view)
    assert EVIL not in page and "<img" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page) and "<link" not in page
    tables = parsed(page).tables
    assert tables[0][0] == ["#", "left context", "word", "right context", "activation", "label", "n", "mean",
                            "split · sentence"]
    assert [row[2] for row in tables[0][1:]] == [hit.word for hit in view.top]
    assert [row[0] for row in tables[2][1:]] == ["Plur", "Sing"]
    assert page.count('class="w"') + page.count('class="w none"') == 7 + len(view.maps[0].words)  # scale + map


def test_pages_in_chromium(browser, minilm, tmp_path):  # noqa: F811  (browser: the board test's fixture)
    ranking = nb.rank("probeless", minilm)
    paths = nb.write_pages(nb.ranking_view(minilm, ranking, method="probeless", top=4), tmp_path)
    assert paths[0] == nb.ranking_page_path(tmp_path, "templated_number", "minilm_l6", 0, "probeless", "hidden", 3)
    assert paths[1:] == [nb.neuron_page_path(tmp_path, "templated_number", "minilm_l6", 0, "hidden", 3, int(n))
                         for n in ranking[:4]]
    assert all(path.with_suffix(".json").is_file() for path in paths)

    browser.get(paths[0].as_uri())
    assert browser.title.startswith("probeless: top 4 neurons")
    cards = browser.find_elements("css selector", ".card")
    assert [card.get_attribute("data-neuron") for card in cards] == [str(n) for n in ranking[:4]]
    assert all(card.find_elements("css selector", "svg path") for card in cards)
    _check_and_shoot(browser, tmp_path / "ranking.png")

    cards[0].find_element("css selector", "h3 a").click()  # the card's link opens the neuron's own page
    assert browser.current_url == paths[1].as_uri()
    assert browser.find_elements("css selector", "#top, #bottom, #labels, #map")
    assert len(browser.find_elements("css selector", "table.sortable")) == 3
    shaded = browser.find_elements("css selector", ".map span.w")
    assert len(shaded) == sum(len(m.words) for m in nb.neuron_view(minilm, int(ranking[0]), top=10).maps)
    header = browser.find_elements("css selector", "table.sortable")[0].find_elements("css selector", "thead th")
    header[4].click()  # activation: descending first, which is the table's order already
    header[4].click()
    values = [float(row.find_elements("css selector", "td")[4].text)
              for row in browser.find_elements("css selector", "table.sortable")[0].find_elements("css selector",
                                                                                                    "tbody tr")]
    assert values == sorted(values)
    _check_and_shoot(browser, tmp_path / "neuron.png")


def _check_and_shoot(browser, shot):
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1300, min(height + 100, 8000))
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
    if os.environ.get("NEURONBENCH_SCREENSHOT"):
        shutil.copy(shot, f"{os.environ['NEURONBENCH_SCREENSHOT']}.{shot.name}")


def test_cli_writes_the_pages(tmp_path, capsys):
    out = tmp_path / "pages"
    assert neurons_cli(["task=planted_single", "model=planted", *PLANTED, "--layer", "0", "--method", "probeless",
                        "--top", "3", "--out", str(out)]) == 0
    written = capsys.readouterr().out.split()
    assert written[0] == str(out / "planted_single/planted/seed0/probeless/hidden_L00.html") and len(written) == 4
    assert json.loads((out / "planted_single/planted/seed0/probeless/hidden_L00.json").read_text())["kind"] == "ranking"
    saved = tmp_path / "job" / "probeless" / "seed0" / "rankings" / "hidden_L00.npy"
    saved.parent.mkdir(parents=True)
    np.save(saved, np.arange(64)[::-1].astype(np.int64))
    assert neurons_cli(["task=planted_single", "model=planted", *PLANTED, "--layer", "0", "--ranking", str(saved),
                        "--top", "2", "--out", str(out)]) == 0
    data = json.loads((out / "planted_single/planted/seed0/probeless/hidden_L00.json").read_text())
    assert data["ranking"][:2] == [63, 62]  # the saved ranking, named after its job folder's method
    assert neurons_cli(["task=planted_single", *PLANTED, "--layer", "0", "--neuron", "1"]) == 2
    assert "error: give task=<name> and model=<name>" in capsys.readouterr().err
    assert neurons_cli(["task=planted_single", "model=planted", *PLANTED, "--layer", "0", "--method", "probeless",
                        "--sentence", "the dogs ."]) == 2
    assert "error: --sentence goes with --neuron" in capsys.readouterr().err


def test_board_links_its_method_rows_to_the_pages(browser, tmp_path, capsys):  # noqa: F811
    """A tiny built board: `neuronbench neurons --board` writes each method's best-cell pages beside it (HTML only
    with --no-json), `build` links the task table's method rows to them (relative, every link resolving) and says
    so under the table, and a click opens the page."""
    results, cache = tmp_path / "board", tmp_path / "cache"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for method in ("random", "probeless"):
            run_job(compose("config", overrides=[
                "~suite", "task=planted_single", "model=planted", *PLANTED, f"method={method}", "ks=[1,3,10]",
                "scorers=[probe_acc]", "test_bootstrap=0", f"results_dir={results}", f"cache_dir={cache}"]), method)
    build(results, 10)
    assert 'href="pages/' not in (results / "leaderboard.html").read_text()  # no pages yet: no links
    assert neurons_cli(["--board", str(results), "--top", "2", "--no-json", *PLANTED, f"cache_dir={cache}"]) == 0
    written = capsys.readouterr().out.split()
    assert not list(results.joinpath("pages").rglob("*.json"))
    assert written[0] == str(results / "pages/planted_single/planted/seed0/probeless/hidden_L00.html")
    assert len(written) == 2 * 3 and all(os.path.isfile(path) for path in written)
    build(results, 10)
    board = results / "leaderboard.html"
    links = re.findall(r'<a href="([^"#]+)"', board.read_text())
    assert sorted(links) == ["pages/planted_single/planted/seed0/probeless/hidden_L00.html",
                             "pages/planted_single/planted/seed0/random/hidden_L00.html"]
    assert all((results / link).is_file() for link in links)
    assert "A method's name opens the page of its top neurons" in board.read_text()

    browser.get(board.as_uri())
    browser.find_element("link text", "probeless").click()
    assert browser.current_url == (results / links[0]).as_uri()
    assert browser.title.startswith("probeless: top 2 neurons")
    _check_and_shoot(browser, tmp_path / "board_ranking.png")
    assert neurons_cli(["--board", str(results), "--layer", "0"]) == 2
    assert "--board takes its tasks, models and layers from the board's records" in capsys.readouterr().err
