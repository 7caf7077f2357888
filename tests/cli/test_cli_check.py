"""`graphopt check`: the CI step. onnx.checker, onnxruntime, an in-memory pipeline run that must validate; one line
per model, a summary table, documented exit codes, nothing written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from graphopt.report import load_schema

jsonschema = pytest.importorskip("jsonschema")


def _files(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


def test_one_line_per_model_and_a_summary_table(cli, add_model: Path, clean_model: Path, tmp_path: Path) -> None:
    before = _files(tmp_path)
    r = cli("check", str(add_model), str(clean_model), "--passes", "test-drop-identity")
    assert r.exit_code == 0, r.stdout + r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith(("✓", "✗"))]
    assert len(lines) == 2
    assert "add.onnx: valid, validated (2 trials" in lines[0] and "would remove 1 of 4 nodes" in lines[0]
    assert "clean.onnx" in lines[1] and "already optimized" in lines[1]
    assert "graphopt check: 2 model(s)" in r.stdout and "all models ok" in r.stdout
    assert _files(tmp_path) == before  # nothing written


def test_default_pipeline_is_o2_and_runs_in_memory(cli) -> None:
    sample = Path(__file__).resolve().parents[2] / "samples" / "transformer.onnx"
    r = cli("check", str(sample), "--report-json", "r.json", "--bench-runs", "0")
    assert r.exit_code == 0, r.stdout + r.stderr
    rep = json.loads(Path("r.json").read_text())
    jsonschema.validate(rep, load_schema())
    m = rep["models"][0]
    assert rep["command"] == "check" and m["pipeline"]["preset"] == "O2"
    assert m["output"] is None and not m["written"] and m["file_bytes"]["after"] is None
    assert m["validation"]["status"] == "passed"


def test_invalid_model_is_exit_3_and_others_still_checked(cli, invalid_model: Path, clean_model: Path) -> None:
    r = cli("check", str(invalid_model), str(clean_model), "--passes", "test-drop-identity", "--report-json", "-")
    assert r.exit_code == 3
    rep = json.loads(r.stdout)
    assert [m["status"] for m in rep["models"]] == ["invalid", "ok"]
    assert rep["models"][0]["error"]["type"] == "InvalidModelError"
    assert "invalid" in r.stderr  # with the JSON on stdout, the lines go to stderr


def test_validation_failure_is_exit_1_and_names_the_culprit(cli, add_model: Path) -> None:
    r = cli("check", str(add_model), "--passes", "test-drop-identity,test-break-add", "--report-json", "r.json")
    assert r.exit_code == 1
    m = json.loads(Path("r.json").read_text())["models"][0]
    assert m["status"] == "mismatch" and m["bisection"]["culprits"][0]["name"] == "test-break-add"
    assert "culprit: pass 'test-break-add'" in r.stdout


def test_fail_if_optimizable(cli, add_model: Path, clean_model: Path) -> None:
    r = cli("check", str(add_model), str(clean_model), "--passes", "test-drop-identity", "--fail-if-optimizable")
    assert r.exit_code == 8
    assert "✗" in r.stdout and "optimizable" in r.stdout and "hint: run `graphopt optimize`" in r.stdout


def test_onnxruntime_cannot_run_is_a_warning_not_a_pass(cli, custom_op_model: Path) -> None:
    r = cli("check", str(custom_op_model), "--passes", "test-drop-identity", "--report-json", "r.json")
    assert r.exit_code == 0
    assert "validation skipped" in r.stdout
    m = json.loads(Path("r.json").read_text())["models"][0]
    assert m["validation"]["status"] == "skipped" and "Frobnicate" in m["validation"]["reason"]


def test_jobs_and_markdown_summary(cli, add_model: Path, clean_model: Path, tmp_path: Path) -> None:
    r = cli("check", str(add_model), str(clean_model), "--passes", "test-drop-identity", "-j", "2",
            "--report-md", "s.md", "--bench-runs", "0")
    assert r.exit_code == 0, r.stdout + r.stderr
    md = (tmp_path / "s.md").read_text()
    assert md.startswith("### graphopt check") and md.count("| `") == 2 and "exit code: 0" in md


def test_quiet_check_prints_only_errors(cli, add_model: Path, invalid_model: Path) -> None:
    r = cli("check", str(add_model), "--passes", "test-drop-identity", "-q")
    assert r.exit_code == 0 and r.stdout == "" and r.stderr == ""
    r = cli("check", str(invalid_model), "-q")
    assert r.exit_code == 3 and r.stdout == "" and "error:" in r.stderr


def test_check_reads_stdin(cli, add_model: Path) -> None:
    r = cli("check", "-", "--passes", "test-drop-identity", input=add_model.read_bytes())
    assert r.exit_code == 0 and "<stdin>" in r.stdout
    assert os.path.exists(add_model)


def test_the_documented_ci_step_fails_the_build_on_an_invalid_model(tmp_path: Path, invalid_model: Path) -> None:
    """The CI example in docs/report.md, run as written by a shell, on real models."""
    import re
    import shutil
    import subprocess

    doc = (Path(__file__).resolve().parents[2] / "docs" / "report.md").read_text()
    yaml = re.search(r"```yaml\n(.*?)```", doc, flags=re.S)
    assert yaml is not None
    cmd = next(ln.strip() for ln in yaml.group(1).splitlines() if ln.strip().startswith("graphopt check"))
    models = tmp_path / "models"
    models.mkdir()
    samples = Path(__file__).resolve().parents[2] / "samples"
    for name in ("cnn.onnx", "if_model.onnx"):
        shutil.copy(samples / name, models / name)
    env = dict(os.environ, GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"))
    if shutil.which("graphopt") is None:
        pytest.skip("the graphopt console script is not installed")
    ok = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "### graphopt check" in (tmp_path / "summary.md").read_text()
    assert json.loads((tmp_path / "graphopt-check.json").read_text())["summary"]["models"] == 2
    shutil.copy(invalid_model, models / "broken.onnx")
    bad = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 3, bad.stdout + bad.stderr
    assert "broken.onnx: invalid" in bad.stdout
