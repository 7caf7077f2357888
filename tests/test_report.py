"""graphopt.report: the report as data (checked against its JSON schema), its exit-code severity, and its rich and
markdown renderings. Reports come from real runs (graphopt.cli.optimize.run_job: load, passes, onnxruntime
validation, bisection) on tiny models, with the test plugin's passes installed as a real plugin package."""

from __future__ import annotations

import copy
import importlib.util
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
import onnx.parser
import pytest
from rich.console import Console

from graphopt.cli.optimize import Job, run_job
from graphopt.pipeline import PipelineConfig
from graphopt.report import (
    SCHEMA_VERSION,
    SEVERITY,
    ModelReport,
    OpDiff,
    Report,
    load_schema,
    op_diff,
    render,
    to_markdown,
    worst_exit_code,
)
from graphopt.validate import ValidateOptions

jsonschema = pytest.importorskip("jsonschema")

ADD = """<ir_version: 8, opset_import: ["": 17]>
g (float[N,4] x) => (float[N,4] y, float[N,4] z) <float[4] w = {1.0, 2.0, 3.0, 4.0}> {
    a = Add(x, w)
    y = Relu(a)
    t = Identity(a)
    z = Mul(t, x)
}"""
CUSTOM = """<ir_version: 8, opset_import: ["": 17, "com.example": 1]>
g (float[N] x) => (float[N] y) {
    y = com.example.Frobnicate(x)
}"""


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = Path(__file__).resolve().parent / "cli" / "clitest_plugin_src.py"
    spec = importlib.util.spec_from_file_location("clitest_plugin_src_r", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["clitest_plugin_src_r"] = mod
    spec.loader.exec_module(mod)
    return mod.install(tmp_path_factory.mktemp("site"))


@pytest.fixture
def models(tmp_path: Path, plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    monkeypatch.syspath_prepend(str(plugin_site))
    out = {}
    for name, text in (("add", ADD), ("custom", CUSTOM)):
        onnx.save(onnx.parser.parse_model(text), str(tmp_path / f"{name}.onnx"))
        out[name] = tmp_path / f"{name}.onnx"
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    out["junk"] = tmp_path / "junk.onnx"
    yield out
    sys.modules.pop("graphopt_clitest_plugin", None)


def job(path: Path, passes: str, *, command: str = "optimize", strict: bool = False, validate: bool = True,
        **kw: Any) -> Job:
    cfg = PipelineConfig(passes=passes.split(",") if passes else [], strict=strict)
    out = None if command == "check" else str(path.with_suffix(".out.onnx"))
    return Job(command, str(path), cfg, output=out, validate=validate,
               vopts=ValidateOptions(bench_runs=2, trials=2), **kw)


OUTCOMES = {
    # name: (model, passes, job keywords, expected status)
    "ok": ("add", "test-drop-identity", {}, "ok"),
    "recovered": ("add", "test-drop-identity,test-break-add", {}, "ok"),
    "mismatch": ("add", "test-break-add", {"strict": True}, "mismatch"),
    "invalid": ("junk", "test-drop-identity", {}, "invalid"),
    "not-validated": ("add", "test-drop-identity", {"validate": False}, "ok"),
    "validation-skipped": ("custom", "test-drop-identity", {}, "ok"),
    "pass-failed": ("add", "test-explode", {"strict": True}, "pass-failed"),
    "rolled-back": ("add", "test-explode", {}, "ok"),
    "internal": ("add", "test-corrupt", {"validate": False}, "internal-error"),
    "optimizable": ("add", "test-drop-identity", {"command": "check", "fail_if_optimizable": True}, "optimizable"),
}


def outcome(models: dict[str, Path], name: str) -> ModelReport:
    model, passes, kw, _ = OUTCOMES[name]
    return run_job(job(models[model], passes, **kw))


# ================================================================================================================
# Data and schema
# ================================================================================================================
@pytest.mark.parametrize("name", list(OUTCOMES))
def test_every_outcome_fits_the_schema(models: dict[str, Path], name: str) -> None:
    rep = outcome(models, name)
    assert rep.status == OUTCOMES[name][3], rep.error
    command = "check" if OUTCOMES[name][2].get("command") == "check" else "optimize"
    d = Report(command, [rep]).to_dict()
    jsonschema.validate(d, load_schema())
    assert d["schema_version"] == SCHEMA_VERSION == 1
    assert d["exit_code"] == rep.exit_code and d["summary"]["by_status"] == {rep.status: 1}


def test_recovered_run_names_culprit_and_first_output(models: dict[str, Path]) -> None:
    d = outcome(models, "recovered").to_dict()
    assert d["recovered"] and d["pipeline"]["disabled"] == ["test-break-add"]
    (c,) = d["bisection"]["culprits"]
    assert c["name"] == "test-break-add" and c["first_output"] == "y" and c["rewrites"] == {"add_to_sub": 1}
    assert d["validation"]["status"] == "passed" and d["written"]
    assert d["timings"]["validate"]["bisection"] > 0


def test_data_of_a_successful_run(models: dict[str, Path]) -> None:
    d = outcome(models, "ok").to_dict()
    assert d["nodes"] == {"before": 4, "after": 3, "removed": 1} and d["changed"]
    assert d["file_bytes"]["before"] == models["add"].stat().st_size
    assert d["file_bytes"]["after"] == models["add"].with_suffix(".out.onnx").stat().st_size
    assert {o["op_type"]: (o["before"], o["after"], o["change"]) for o in d["op_types"]} == {
        "Add": (1, 1, 0), "Relu": (1, 1, 0), "Identity": (1, 0, -1), "Mul": (1, 1, 0)}
    (p,) = d["passes"]
    assert p["name"] == "test-drop-identity" and p["removed"] == 1 and p["stats"] == {"identity_removed": 1}
    assert p["runs"] == 2 and not p["rolled_back"]  # the second round finds nothing: the fixed point
    assert [s["name"] for s in d["init_steps"]] == ["submodule", "translators", "symbols", "pipeline"]
    assert d["validation"]["latency_ms"]["runs"] == 2


def test_same_input_same_report_apart_from_times(models: dict[str, Path]) -> None:
    def strip(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items()
                    if k not in ("seconds", "timings", "session_seconds", "latency_ms")}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    a = strip(outcome(models, "recovered").to_dict())
    b = strip(outcome(models, "recovered").to_dict())
    assert a == b


def test_schema_rejects_unknown_missing_and_mistyped_fields(models: dict[str, Path]) -> None:
    d = Report("optimize", [outcome(models, "ok")]).to_dict()
    schema = load_schema()
    jsonschema.validate(d, schema)
    bad = copy.deepcopy(d)
    bad["models"][0]["surprise"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    bad = copy.deepcopy(d)
    del bad["models"][0]["validation"]["outputs"][0]["max_abs"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    bad = copy.deepcopy(d)
    bad["schema_version"] = 2
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    bad = copy.deepcopy(d)
    bad["models"][0]["status"] = "fine"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_schema_documents_every_field() -> None:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    undocumented: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for name, sub in (node.get("properties") or {}).items():
                if not isinstance(sub, dict) or not ({"description", "$ref", "const"} & set(sub)):
                    undocumented.append(f"{path}.{name}")
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(schema, "$")
    assert undocumented == []


def test_worst_exit_code_follows_the_documented_severity() -> None:
    assert SEVERITY == (0, 8, 1, 4, 3, 6, 2, 7, 5)
    assert worst_exit_code([]) == 0
    assert worst_exit_code([0, 8, 0]) == 8
    assert worst_exit_code([8, 1]) == 1 and worst_exit_code([1, 3]) == 3 and worst_exit_code([3, 5, 7]) == 5
    assert Report("optimize", [ModelReport("a", exit_code=1), ModelReport("b", exit_code=3)]).exit_code == 3


def test_op_diff_lists_every_op_most_frequent_first() -> None:
    rows = op_diff({"Add": 3, "Relu": 1, "Identity": 2}, {"Add": 1, "Relu": 1, "Gemm": 1})
    assert rows == [OpDiff("Add", 3, 1), OpDiff("Identity", 2, 0), OpDiff("Relu", 1, 1), OpDiff("Gemm", 0, 1)]
    assert [r.change for r in rows] == [-2, -2, 0, 1]


def test_reports_cross_process_boundaries(models: dict[str, Path]) -> None:
    rep = outcome(models, "recovered")
    back = pickle.loads(pickle.dumps(rep))
    assert back.to_dict() == rep.to_dict()
    assert back.bisection is not None and back.bisection.model is None


# ================================================================================================================
# Rendering
# ================================================================================================================
def _text(report: Report, verbose: int = 0) -> str:
    c = Console(record=True, width=140, file=open("/dev/null", "w"))  # noqa: SIM115
    render(report, c, verbose=verbose)
    return c.export_text()


def test_render_one_model_shows_every_section(models: dict[str, Path]) -> None:
    text = _text(Report("optimize", [outcome(models, "recovered")]))
    for needle in ("add.onnx -> ", "size", "nodes", "4 -> 3 (-25.0%)", "optimize", "load", "passes",
                   "validate", "pipeline", "test-drop-identity", "rolled back", "op types (changed)", "Identity",
                   "validation passed: 2 trial(s)", "max abs diff", "session", "median of 2 runs",
                   "culprit: pass test-break-add changes output y (rewrites: add_to_sub=1)",
                   "re-optimized without test-break-add and validated"):
        assert needle in text, needle
    assert "JIT context init" not in text


def test_render_verbose_adds_init_steps_details_and_all_op_types(models: dict[str, Path]) -> None:
    rep = Report("optimize", [outcome(models, "ok")])
    plain, verbose = _text(rep), _text(rep, verbose=1)
    assert "JIT context init" in verbose and "identity_removed=1" in verbose
    assert "Relu" in verbose and "Relu" not in plain.split("op types")[1].split("validation")[0]


def test_render_several_models_one_line_each_and_summary(models: dict[str, Path]) -> None:
    rep = Report("optimize", [outcome(models, "ok"), outcome(models, "invalid"),
                              outcome(models, "validation-skipped")])
    text = _text(rep)
    lines = [ln for ln in text.splitlines() if ln.startswith(("✓", "✗"))]
    assert len(lines) == 3 and lines[1].startswith("✗") and "junk.onnx: invalid" in lines[1]
    assert "validation skipped" in lines[2]
    assert "graphopt optimize: 3 model(s)" in text and "exit code 3 (invalid)" in text


def test_markdown_summary(models: dict[str, Path]) -> None:
    rep = Report("optimize", [outcome(models, "recovered"), outcome(models, "invalid")])
    md = to_markdown(rep)
    lines = md.splitlines()
    assert lines[0] == "### graphopt optimize"
    assert lines[2].startswith("| model | status | nodes | size | validation |")
    assert lines[4].startswith("| `") and "ok (recovered)" in lines[4] and "4 → 3" in lines[4]
    assert "pass `test-break-add` changes output `y`; disabled" in md
    assert "junk.onnx`: invalid" in md and md.rstrip().endswith("exit code: 3")
