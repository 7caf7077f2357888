"""--report-html on `graphopt optimize` and `graphopt check`: the page is written from the library's report (with
the changed regions only when it is asked for), for one model or many (worker processes too), with bisection when
there was one; a bad destination is an output error, stdout is refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from graphopt.html_report import pictures_unavailable


def _page_class() -> type:
    # the page reader of tests/html_report (this folder is not a package: load it by path, as conftest.py loads the
    # test plugin)
    import importlib.util

    spec = importlib.util.spec_from_file_location("_html_report_util",
                                                  Path(__file__).resolve().parents[1] / "html_report" / "util.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Page  # type: ignore[no-any-return]


Page = _page_class()


def test_optimize_writes_a_page_with_the_changes(cli: Callable[..., Result], add_model: Path,
                                                 tmp_path: Path) -> None:
    r = cli("optimize", str(add_model), "--report-html", "r.html", "--report-json", "r.json", "-q")
    assert r.exit_code == 0, r.output
    page = Page((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert page.find("section", id="m1-changes") and page.find("section", id="m1-validation")
    assert "1 node(s) removed" in page.text           # the Identity
    if pictures_unavailable() is None:
        assert page.pictures() == ["m1-r1-before", "m1-r1-after"]
    d = json.loads((tmp_path / "r.json").read_text())["models"][0]["graph_diff"]
    assert d["removed"] == 1 and d["regions_total"] == 1


def test_without_the_flag_nothing_is_recorded(cli: Callable[..., Result], add_model: Path, tmp_path: Path) -> None:
    r = cli("optimize", str(add_model), "--report-json", "r.json", "-q")
    assert r.exit_code == 0
    assert json.loads((tmp_path / "r.json").read_text())["models"][0]["graph_diff"] is None
    assert not list(tmp_path.glob("*.html"))


def test_check_writes_one_page_for_many_models(cli: Callable[..., Result], add_model: Path, clean_model: Path,
                                               tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    r = cli("check", str(add_model), str(clean_model), "junk.onnx", "-j", "2", "--report-html", "check.html")
    assert r.exit_code == 3   # the junk file is invalid; the page is written all the same
    page = Page((tmp_path / "check.html").read_text(encoding="utf-8"))
    rows = [a for a in page.find("tr") if "data-model" in a]
    assert [a["data-model"] for a in rows] == ["m1", "m2", "m3"]
    assert [a["data-status"] for a in page.find("section", class_="model")] == ["ok", "ok", "invalid"]
    assert page.find("section", id="m1-changes") and page.find("section", id="m3-error")
    assert "The pipeline changed no node of the main graph." in page.text


def test_bisection_is_on_the_page(cli: Callable[..., Result], add_model: Path, tmp_path: Path) -> None:
    r = cli("optimize", str(add_model), "--passes", "test-drop-identity,test-break-add", "--report-html", "b.html",
            "-q")
    assert r.exit_code == 0   # the culprit was found and disabled
    page = Page((tmp_path / "b.html").read_text(encoding="utf-8"))
    assert len(page.find("section", id="m1-bisection")) == 1
    assert "culprit: pass test-break-add changes output" in page.text
    # the pictures show the model that was written: without the culprit, the Identity dropped
    assert "1 node(s) removed, 0 added, 1 rewritten" in page.text


def test_a_bad_destination_is_an_output_error(cli: Callable[..., Result], add_model: Path) -> None:
    r = cli("check", str(add_model), "--report-html", "no/such/folder/r.html")
    assert r.exit_code == 6
    assert "cannot write the report" in r.stderr


def test_stdout_is_refused(cli: Callable[..., Result], add_model: Path) -> None:
    r = cli("check", str(add_model), "--report-html", "-")
    assert r.exit_code == 2
    assert "the HTML report goes to a file" in r.stderr
