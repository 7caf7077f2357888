"""The HTML report in a real browser: headless Chromium (the OS package) loads pages from disk. The page must load
with no console message at all (no error, no blocked fetch: the page's Content-Security-Policy turns any fetch into
a console error), with every section and picture in the DOM the browser built, and it must render (a screenshot).
`pytest --update-screenshot` writes that screenshot to docs/report-html.png, the README's picture."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from graphopt.html_report import pictures_unavailable, write_html
from graphopt.html_report.page import CSP
from graphopt.report import Report

from .browser import find_chromium, load, png_size
from .conftest import ROOT, Runs
from .test_page import expected_pictures
from .util import Page

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian/Ubuntu: "
                                "apt-get install chromium; .ci/run installs it)")
SCREENSHOT = (1100, 1000)   # the README's picture: the summary and the first region's pictures


def test_the_page_loads_cleanly_with_every_section_and_picture(runs: Runs, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    report = Report("check", [runs.cnn, runs.transformer, runs.nasty, runs.junk, runs.clean])
    page = tmp_path / "report.html"
    write_html(report, page)
    got = load(CHROMIUM, page, tmp_path / "profile")
    assert got.console == [], got.console
    dom = Page(got.dom)
    ids = set(dom.ids())
    assert {"models", "m1-summary", "m1-changes", "m1-passes", "m1-ops", "m1-symbols", "m1-validation",
            "m2-changes", "m3-changes", "m4-error", "m5-changes"} <= ids
    assert [a["href"] for a in dom.find("a") if a.get("href", "").startswith("#m")][:5] == [
        "#m1", "#m2", "#m3", "#m4", "#m5"]
    assert len(dom.find("figure", class_="region")) == sum(
        len(m.graph_diff.regions) for m in report.models if m.graph_diff is not None)
    if pictures_unavailable() is None:
        assert dom.pictures() == expected_pictures(report)
        # every box of every picture is in the DOM
        boxes = sum(len(getattr(r, side).nodes) for m in report.models if m.graph_diff is not None
                    for r in m.graph_diff.regions for side in ("before", "after"))
        assert len(dom.find("g", class_="node")) == boxes


def test_the_page_renders(runs: Runs, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    assert CHROMIUM is not None
    page = tmp_path / "demo.html"
    write_html(runs.demo, page)
    shot = tmp_path / "report-html.png"
    got = load(CHROMIUM, page, tmp_path / "profile", screenshot=shot, window=SCREENSHOT)
    assert got.console == [], got.console
    assert png_size(shot) == SCREENSHOT
    # a blank window compresses to a few KB; text, tables and two pictures do not
    assert shot.stat().st_size > 40_000
    if request.config.getoption("--update-screenshot"):
        shutil.copyfile(shot, ROOT / "docs" / "report-html.png")


def test_the_console_check_sees_errors_and_blocked_fetches(tmp_path: Path) -> None:
    # the check above can fail: a page with the report's policy (scripts allowed here) that throws and fetches
    assert CHROMIUM is not None
    page = tmp_path / "bad.html"
    page.write_text(f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}; script-src 'unsafe-inline'"></head>
<body><img src="missing.png"><script>throw new Error("boom")</script></body></html>""", encoding="utf-8")
    got = load(CHROMIUM, page, tmp_path / "profile")
    messages = [m for m, _ in got.console]
    assert any("Uncaught Error: boom" in m for m in messages), got.stderr[-2000:]
    assert any("Content Security Policy" in m and "missing.png" in m for m in messages), messages
