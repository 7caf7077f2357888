"""The Python API: the whole run as a library call (optimize_file, check_file), and optimize() in the caller's
terms. Real files, real onnxruntime."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import pickle
import shutil
from pathlib import Path

import onnx
import pytest

import graphopt
from graphopt.errors import EXIT_INVALID_MODEL, EXIT_OK, EXIT_OPTIMIZABLE, GraphoptError
from graphopt.testing import session

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


@pytest.fixture
def cnn(tmp_path: Path) -> Path:
    p = tmp_path / "cnn.onnx"
    shutil.copy(SAMPLES / "cnn.onnx", p)
    return p


def test_optimize_file_writes_beside_the_input_and_validates(cnn: Path) -> None:
    before = cnn.read_bytes()
    rep = graphopt.optimize_file(cnn)
    assert rep.exit_code == EXIT_OK and rep.written and rep.error is None
    out = cnn.with_name("cnn.opt.onnx")
    assert rep.output == str(out) and out.is_file()
    assert rep.nodes_before == 25 and rep.nodes_after is not None and rep.nodes_after < 25
    assert rep.validation is not None and rep.validation.passed
    assert cnn.read_bytes() == before
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    session(out.read_bytes())


def test_optimize_file_never_raises_for_a_bad_model_unless_asked(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    rep = graphopt.optimize_file(bad, tmp_path / "out.onnx")
    assert rep.exit_code == EXIT_INVALID_MODEL and not rep.written
    assert str(bad) in rep.error["message"] and rep.error["hint"]
    assert not (tmp_path / "out.onnx").exists()
    with pytest.raises(GraphoptError) as ei:
        graphopt.optimize_file(bad, tmp_path / "out.onnx", raise_on_error=True)
    assert ei.value.exit_code == EXIT_INVALID_MODEL


def test_optimize_file_refuses_to_overwrite_the_input(cnn: Path) -> None:
    before = cnn.read_bytes()
    rep = graphopt.optimize_file(cnn, cnn)
    assert rep.exit_code != EXIT_OK and "overwrite" in rep.error["message"]
    assert cnn.read_bytes() == before
    rep = graphopt.optimize_file(cnn, in_place=True, validate=False)
    assert rep.exit_code == EXIT_OK and cnn.read_bytes() != before


def test_check_file_writes_nothing_and_reports_optimizable(cnn: Path) -> None:
    files = sorted(cnn.parent.iterdir())
    rep = graphopt.check_file(cnn, fail_if_optimizable=True)
    assert rep.exit_code == EXIT_OPTIMIZABLE and rep.status == "optimizable" and not rep.written
    assert sorted(cnn.parent.iterdir()) == files
    assert graphopt.check_file(cnn).exit_code == EXIT_OK


def test_options_reach_the_pipeline(cnn: Path, tmp_path: Path) -> None:
    rep = graphopt.optimize_file(cnn, tmp_path / "o.onnx", passes=["dce"], validate=False)
    assert rep.pipeline == ["dce"] and rep.validation is None
    rep = graphopt.optimize_file(cnn, tmp_path / "o.onnx", preset="O1", validate_options={"trials": 1})
    assert "fold-constants" not in rep.pipeline and len(rep.validation.trials) == 1


def test_reports_cross_process_boundaries(cnn: Path, tmp_path: Path) -> None:
    copies = []
    for i in range(2):
        p = tmp_path / f"m{i}.onnx"
        shutil.copy(cnn, p)
        copies.append(p)
    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as ex:
        reports = list(ex.map(graphopt.optimize_file, copies))
    assert [r.exit_code for r in reports] == [EXIT_OK, EXIT_OK]
    assert all(r.written and r.validation.passed for r in reports)
    again = pickle.loads(pickle.dumps(reports[0]))
    assert again.to_dict() == reports[0].to_dict()


def test_optimize_returns_what_it_was_given(cnn: Path) -> None:
    mp = onnx.load(str(cnn))
    out = graphopt.optimize(mp)
    assert isinstance(out, onnx.ModelProto) and len(out.graph.node) < len(mp.graph.node)
    assert len(mp.graph.node) == 25  # the caller's proto is not touched
    assert isinstance(graphopt.optimize(mp.SerializeToString()), onnx.ModelProto)
    assert isinstance(graphopt.optimize(str(cnn)), onnx.ModelProto)
    m = graphopt.load(cnn)
    assert graphopt.optimize(m) is m and m.num_nodes() < 25
    with pytest.raises(TypeError):
        graphopt.optimize(42)


def test_optimize_report_is_one_keyword_away_and_validation_on_request(cnn: Path) -> None:
    mp = onnx.load(str(cnn))
    res = graphopt.optimize(mp, return_report=True)
    assert isinstance(res.model, onnx.ModelProto) and res.report.validation is None
    assert res.report.nodes_after == len(res.model.graph.node)
    res = graphopt.optimize(mp, validate=True, return_report=True)
    assert res.report.validation.passed and res.report.exit_code == EXIT_OK


def test_optimize_raises_when_there_is_no_report_to_carry_the_error() -> None:
    with pytest.raises(GraphoptError) as ei:
        graphopt.optimize(b"garbage")
    assert ei.value.exit_code == EXIT_INVALID_MODEL
    res = graphopt.optimize(b"garbage", return_report=True)
    assert res.model is None and res.report.exit_code == EXIT_INVALID_MODEL


def test_run_annotates_shapes_only_when_asked() -> None:
    src = SAMPLES / "transformer.onnx"
    declared = {vi.name for vi in onnx.load(str(src)).graph.value_info}
    m = graphopt.load(src)
    graphopt.run(m)
    assert {v.name for v in m.graph.value_info} <= declared
    m = graphopt.load(src)
    graphopt.run(m, annotate_shapes=True)
    assert len(m.graph.value_info) > len(declared)
    m = graphopt.load(src)
    from graphopt.pipeline import build_config

    graphopt.run(m, config=build_config(annotate_shapes=True, use_pyproject=False))
    assert len(m.graph.value_info) > len(declared)
