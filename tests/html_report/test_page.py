"""graphopt.html_report: the page as text. Self-contained, every section and picture there, ids unique and links
resolving, user text escaped, the same report giving the same bytes, and without Graphviz a page that says how to
get pictures. (tests/html_report/test_browser.py loads the pages in a real browser.)"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from graphopt.diff import graph_diff
from graphopt.html_report import pictures_unavailable, to_html, write_html
from graphopt.html_report.pictures import compact_type
from graphopt.ir import serde
from graphopt.report import Report
from graphopt.testing import run_pass

from .conftest import FILE_NAME, JUNK_NAME, NODE_NAME, VALUE_NAME, Runs
from .util import ALLOWED_TAGS, Page

needs_dot = pytest.mark.skipif(pictures_unavailable() is not None,
                               reason="Graphviz (dot and the graphviz package) is not installed; .ci/run installs it")


def expected_pictures(report: Report) -> list[str]:
    return [f"m{i}-r{r.index}-{side}" for i, m in enumerate(report.models, 1) if m.graph_diff is not None
            for r in m.graph_diff.regions for side in ("before", "after") if getattr(r, side).nodes]


def test_the_page_is_self_contained(runs: Runs) -> None:
    text = to_html(runs.check())
    assert text.startswith("<!DOCTYPE html>")
    assert "Content-Security-Policy" in text and "default-src 'none'" in text   # the browser enforces it
    page = Page(text)
    assert {t for t, _ in page.tags} <= ALLOWED_TAGS
    assert not page.find("script") and not page.find("link") and not page.find("img")
    for _, a in page.tags:
        for k in ("src", "srcset", "action", "xlink:href"):
            assert k not in a, (k, a)
        assert not a.get("href", "#").lstrip("#").startswith(("http", "//", "file")), a
    # nothing to fetch from the styles either; the only URLs are XML namespace names, which are never fetched
    assert "url(" not in text and "@import" not in text
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) <= {"http://www.w3.org/2000/svg",
                                                              "http://www.w3.org/1999/xlink"}


@pytest.mark.parametrize("which", ["optimize", "check"])
def test_every_section_and_picture_is_there(runs: Runs, which: str) -> None:
    report = runs.optimize() if which == "optimize" else runs.check()
    page = Page(to_html(report))
    sections = {a["id"] for a in page.find("section") if "id" in a}
    if which == "optimize":
        assert {"m1", "m1-summary", "m1-changes", "m1-passes", "m1-ops", "m1-symbols",
                "m1-validation"} <= sections
        assert not page.find("section", id="models")    # one model: no table of models
        assert page.find("svg", class_="ops") and page.find("svg", class_="timing")
    else:
        assert {"models", "m1", "m1-changes", "m2", "m2-error", "m3", "m3-changes"} <= sections
        assert "m2-changes" not in sections             # the junk file never got that far
    if pictures_unavailable() is None:
        assert page.pictures() == expected_pictures(report) and page.pictures()
        assert not page.find("div", data_notice="no-pictures")


def test_ids_are_unique_and_every_link_resolves(runs: Runs) -> None:
    page = Page(to_html(Report("check", [runs.cnn, runs.transformer, runs.junk, runs.nasty])))
    ids = page.ids()
    dupes = {i for i in ids if ids.count(i) > 1}
    assert not dupes, sorted(dupes)[:10]
    links = [a["href"] for a in page.find("a") if "href" in a]
    assert links[:4] == ["#m1", "#m2", "#m3", "#m4"]     # the table of models
    assert all(x.startswith("#") and x[1:] in ids for x in links)


def test_the_models_table_has_a_row_per_model(runs: Runs) -> None:
    page = Page(to_html(runs.check()))
    rows = page.find("tr", data_model="m1") + page.find("tr", data_model="m2") + page.find("tr", data_model="m3")
    assert len(rows) == 3
    assert [a["data-status"] for a in page.find("section", class_="model")] == ["ok", "invalid", "ok"]
    assert "The pipeline changed no node of the main graph." in page.text   # the clean model


def test_the_same_report_gives_the_same_page(runs: Runs) -> None:
    report = runs.check()
    a = to_html(report)
    assert to_html(report) == a
    assert to_html(pickle.loads(pickle.dumps(report))) == a   # as it comes back from a worker process (-j N)


def test_user_text_is_escaped(runs: Runs) -> None:
    text = to_html(Report("check", [runs.nasty, runs.junk]))
    page = Page(text)
    assert {t for t, _ in page.tags} <= ALLOWED_TAGS      # no <b>, <i>, <script> from names
    assert not page.find("script") and "<script>" not in text and "<b>id" not in text
    # ... and every piece comes out as the same text, in headings, captions, tooltips and picture labels
    assert FILE_NAME in page.text and JUNK_NAME in page.text
    if pictures_unavailable() is None:
        # in the pictures too: box labels (Graphviz expands \N, \G ... and must not) and tooltips
        svg = text[text.index('<svg class="graph"'):]
        labels, tips = Page(svg).text, [a["xlink:title"] for a in Page(svg).find("a")]
        assert NODE_NAME in labels and "relu \\N" in labels   # the removed Identity, its neighbour
        assert any(t.startswith(VALUE_NAME + ": float[N, 4]") for t in tips), tips   # an edge's tooltip
        assert any(NODE_NAME in t for t in tips)


def test_without_dot_the_page_says_how_to_get_pictures(runs: Runs, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))           # no dot on PATH: the real situation, not a stand-in
    assert pictures_unavailable() is not None and "apt-get install graphviz" in pictures_unavailable()
    for page in (Page(to_html(runs.optimize())), Page(to_html(runs.optimize(), pictures_on=True))):
        assert not page.pictures()
        assert len(page.find("div", data_notice="no-pictures")) == 1
        assert "dot" in page.text and "pip install 'graphopt[html]'" in page.text
        # everything else is still there, the regions named in their captions
        sections = {a["id"] for a in page.find("section") if "id" in a}
        assert {"m1-summary", "m1-changes", "m1-passes", "m1-ops", "m1-validation"} <= sections
        assert len(page.find("figure", class_="region")) == len(runs.cnn.graph_diff.regions)   # type: ignore[union-attr]


def test_pictures_can_be_turned_off(runs: Runs) -> None:
    page = Page(to_html(runs.optimize(), pictures_on=False))
    assert not page.pictures() and page.find("div", data_notice="no-pictures")


@needs_dot
def test_a_picture_shows_ops_rules_and_shapes(runs: Runs) -> None:
    page = Page(to_html(runs.optimize()))
    text = page.text
    assert "fused: fuse-conv-bn" in text and "fused: fuse-matmul-add" in text
    assert "batch×10" in text                       # a value's shape on an edge (dims joined, dtype in the tooltip)
    assert page.find("g", class_="removed") and page.find("g", class_="added")
    assert page.find("g", class_="context") and page.find("g", class_="rewritten")
    assert page.find("g", class_="initializer") and page.find("g", class_="output")
    # both sides of a region at one scale: each picture's width is a share of the wider one's
    styles = [a["style"] for a in page.find("svg", class_="graph")]
    assert all(s.startswith("width:min(") for s in styles)
    assert sum(s.endswith(", 100.0%)") for s in styles) >= len(styles) // 2


def test_limits_and_repeats_are_said(runs: Runs, tmp_path: Path) -> None:
    lines, prev = [], "x"
    for i, op in enumerate(["Sigmoid", "Tanh", "Sigmoid", "Neg", "Sigmoid"]):
        lines += [f"r{i} = Relu({prev})", f"t{i} = Identity(r{i})", f"u{i} = {op}(t{i})"]
        prev = f"u{i}"
    text = ('<ir_version: 8, opset_import: ["" : 17]>\ng (float[N, 4] x) => (float[N, 4] y) {\n'
            + "\n".join(lines) + f"\ny = Relu({prev})\n}}")
    from graphopt.testing import from_text, snapshot

    data = snapshot(from_text(text))
    before, after = serde.loads(data), serde.loads(data)
    run_pass(after, "eliminate-noops")
    m = pickle.loads(pickle.dumps(runs.clean))
    m.graph_diff = graph_diff(before, after, max_regions=2)
    page = Page(to_html(Report("optimize", [m])))
    assert "2 region(s) repeat a change drawn below" in page.text
    assert "1 more region(s) with 2 changed node(s) are not drawn (at most 2 distinct regions per model)" in page.text
    assert "the same change in 2 more place(s): t2, t4" in page.text


def test_write_html_takes_what_the_api_returns(runs: Runs, tmp_path: Path) -> None:
    write_html(runs.cnn, tmp_path / "one.html")
    write_html([runs.transformer, runs.clean], tmp_path / "two.html", command="check")
    one = (tmp_path / "one.html").read_text(encoding="utf-8")
    assert one == to_html(runs.optimize())
    assert "<h1>graphopt check</h1>" in (tmp_path / "two.html").read_text(encoding="utf-8")


def test_compact_types() -> None:
    assert compact_type("float[1, 64, 56, 56]") == "1×64×56×56"
    assert compact_type("int64[3]") == "[3]"
    assert compact_type("float[]") == "scalar"
    assert compact_type("float[*]") == "?"
    assert compact_type("seq(float[2])") == "seq(float[2])"
    assert compact_type(None) == ""
