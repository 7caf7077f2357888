"""`graphopt optimize`: every validation, report and multi-model option, with real onnxruntime runs.

Models are tiny and written here; the passes that change them come from the installed test plugin (correct ones:
test-drop-identity, test-nudge; wrong ones: test-break-add) so that the tests do not depend on which real passes
exist yet. The real passes run too where a test uses a preset.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from graphopt.report import load_schema

jsonschema = pytest.importorskip("jsonschema")

FIX = ("--passes", "test-drop-identity")


def report_of(path: Path | str) -> dict:
    rep = json.loads(Path(path).read_text())
    jsonschema.validate(rep, load_schema())
    return rep


def model_of(rep: dict) -> dict:
    assert len(rep["models"]) == 1
    return rep["models"][0]


# ================================================================================================================
# Validation options
# ================================================================================================================
def test_validation_is_on_by_default_and_reported(cli, add_model: Path) -> None:
    r = cli("optimize", str(add_model), *FIX, "--report-json", "r.json")
    assert r.exit_code == 0, r.stderr
    m = model_of(report_of("r.json"))
    v = m["validation"]
    assert v["status"] == "passed" and [o["name"] for o in v["outputs"]] == ["y", "z"]
    assert all(o["max_abs"] == 0.0 and o["ok"] for o in v["outputs"])
    assert len(v["trials"]) == 2 and v["session_seconds"]["original"] > 0
    assert v["latency_ms"]["runs"] >= 3 and v["latency_ms"]["original"] > 0  # as many as the budget allows
    # optimization and validation costs are reported apart
    assert set(m["timings"]["optimize"]) == {"load", "check", "init", "passes", "verify", "save", "total"}
    assert m["timings"]["validate"]["total"] > 0
    assert m["timings"]["optimize"]["total"] == pytest.approx(
        sum(m["timings"]["optimize"][k] for k in ("load", "check", "init", "passes", "verify", "save")))
    # the human report: summary, passes, op diff, validation with speedups
    for needle in ("add.opt.onnx", "nodes", "4 -> 3", "passes", "test-drop-identity", "op types",
                   "Identity", "validation passed", "max abs diff",
                   "latency: onnxruntime, all graph optimizations, 1 thread, median of ", "session"):
        assert needle in r.stdout, needle


def test_no_validate_skips_onnxruntime(cli, add_model: Path) -> None:
    r = cli("optimize", str(add_model), *FIX, "--no-validate", "--report-json", "r.json")
    assert r.exit_code == 0
    m = model_of(report_of("r.json"))
    assert m["validation"] is None and m["timings"]["validate"] == {}
    assert "validation" not in r.stdout


def test_seed_trials_and_dims_are_used_and_runs_are_deterministic(cli, add_model: Path) -> None:
    args = ("optimize", str(add_model), *FIX, "--seed", "5", "--trials", "2", "--dim", "N=6", "--bench-runs", "0")
    assert cli(*args, "--report-json", "a.json").exit_code == 0
    assert cli(*args, "--report-json", "b.json").exit_code == 0
    a, b = model_of(report_of("a.json")), model_of(report_of("b.json"))
    va = a["validation"]
    assert [(t["seed"], t["dims"]) for t in va["trials"]] == [(5, {"N": 6}), (6, {"N": 6})]
    assert va["outputs"][0]["shape"] == [6, 4]

    def strip(d: dict) -> dict:  # everything but the times must be identical
        s = json.dumps(d, sort_keys=True)
        obj = json.loads(s)
        obj.pop("timings")
        obj["validation"].pop("timings")
        obj["validation"].pop("session_seconds")
        for p in obj["passes"]:
            p.pop("seconds")
        for s_ in obj["init_steps"]:
            s_.pop("seconds")
        return obj

    assert strip(a) == strip(b)
    # an unknown --dim is a warning, not an error
    r = cli("optimize", str(add_model), *FIX, "--dim", "batch=3")
    assert r.exit_code == 0 and "--dim batch" in r.stdout


def test_inputs_npz_replaces_random_inputs(cli, add_model: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "in.npz", x=np.ones((5, 4), np.float32))
    r = cli("optimize", str(add_model), *FIX, "--inputs", "in.npz", "--report-json", "r.json")
    assert r.exit_code == 0, r.stderr
    v = model_of(report_of("r.json"))["validation"]
    assert v["input_source"] == "npz:in.npz" and len(v["trials"]) == 1 and v["outputs"][0]["shape"] == [5, 4]
    np.savez(tmp_path / "bad.npz", input=np.ones((5, 4), np.float32))
    r = cli("optimize", str(add_model), *FIX, "--inputs", "bad.npz")
    assert r.exit_code == 2 and "lacks input 'x'" in r.stderr
    assert cli("optimize", str(add_model), "--inputs", "missing.npz").exit_code == 2


def test_rtol_atol_decide_what_counts_as_a_mismatch(cli, add_model: Path, tmp_path: Path) -> None:
    # test-nudge scales Relu's input by 1.0002: inside float32's default rtol (1e-3)...
    r = cli("optimize", str(add_model), "--passes", "test-nudge", "--report-json", "r.json", "-o", "a.onnx")
    assert r.exit_code == 0
    (y, z) = model_of(report_of("r.json"))["validation"]["outputs"]
    assert 0 < y["max_rel"] < 1e-3 and y["rtol"] == 1e-3 and z["max_abs"] == 0.0
    # ...outside rtol=1e-5, atol=0: a mismatch; --strict makes it fatal, nothing written
    r = cli("optimize", str(add_model), "--passes", "test-nudge", "--rtol", "1e-5", "--atol", "0", "--strict",
            "-o", "b.onnx")
    assert r.exit_code == 1 and not (tmp_path / "b.onnx").exists()
    assert "rtol=1e-05" in r.stderr or "rtol=1e-05" in r.stdout


def test_bench_runs_threads_and_levels(cli, add_model: Path) -> None:
    r = cli("optimize", str(add_model), *FIX, "--bench-runs", "3", "--threads", "2", "--ort-level", "basic",
            "--bench-level", "extended", "--report-json", "r.json")
    assert r.exit_code == 0
    v = model_of(report_of("r.json"))["validation"]
    lat = v["latency_ms"]
    assert (lat["runs"], lat["threads"], lat["optimization_level"], lat["budget_seconds"]) == (3, 2, "extended", None)
    # the correctness runs: their own level, onnxruntime's default threads
    assert v["onnxruntime"]["optimization_level"] == "basic" and v["onnxruntime"]["threads"] >= 0
    assert "latency: onnxruntime, extended graph optimizations, 2 threads, median of 3 runs" in r.stdout
    r = cli("optimize", str(add_model), *FIX, "--bench-runs", "0", "--report-json", "r0.json")
    lat = model_of(report_of("r0.json"))["validation"]["latency_ms"]
    assert (lat["original"], lat["runs"], lat["seconds"], lat["note"]) == (None, 0, None, None)
    assert cli("optimize", str(add_model), "--ort-level", "max").exit_code == 2
    assert cli("optimize", str(add_model), "--bench-level", "max").exit_code == 2


def test_defaults_budget_the_benchmark_and_fit_trials_to_the_shapes(cli, add_model: Path, tmp_path: Path) -> None:
    r = cli("optimize", str(add_model), *FIX, "--report-json", "r.json")
    assert r.exit_code == 0
    v = model_of(report_of("r.json"))["validation"]
    lat = v["latency_ms"]
    assert lat["budget_seconds"] == 2.0 and lat["optimization_level"] == "all" and lat["threads"] == 1
    assert 3 <= lat["runs"] <= 50 and lat["seconds"] > 0
    assert v["onnxruntime"]["optimization_level"] == "disable" and len(v["trials"]) == 2  # N: two sizes
    static = tmp_path / "static.onnx"
    m = onnx.load(str(add_model))
    for vi in [*m.graph.input, *m.graph.output]:
        vi.type.tensor_type.shape.dim[0].dim_value = 3  # every shape fixed
    onnx.save(m, str(static))
    r = cli("optimize", str(static), *FIX, "--report-json", "s.json", "--bench-time", "0.5")
    v = model_of(report_of("s.json"))["validation"]
    assert len(v["trials"]) == 1 and v["trials"][0]["dims"] == {}  # fixed shapes: one trial
    assert v["latency_ms"]["budget_seconds"] == 0.5
    r = cli("optimize", str(static), *FIX, "--report-json", "t.json", "--trials", "2", "--bench-time", "0")
    v = model_of(report_of("t.json"))["validation"]
    assert len(v["trials"]) == 2 and v["latency_ms"]["runs"] == 0


EMBED_MODEL = """
<ir_version: 8, opset_import: ["": 17]>
g (int64[B,S] input_ids, int64[B,S] token_type_ids, int64[B,S] pos) => (float[B,S,4] y) {
    w = Gather(words, input_ids)
    t = Gather(types, token_type_ids)
    p3 = Add(pos, three)
    p = Gather(positions, p3)
    s = Add(w, t)
    i = Identity(s)
    y = Add(i, p)
}
"""


def test_table_ids_in_range_at_the_first_try_and_onnxruntime_stays_quiet(gsub, tmp_path: Path) -> None:
    # input_ids and token_type_ids index tables: drawn from [0, 300) and [0, 2) at the first try. `pos` reaches
    # its table through an Add (no exact range): drawn from [0, 4) + 3, out of the 4-row table, onnxruntime
    # rejects it twice before [0, 1) runs; its error lines must not reach the terminal.
    mp = onnx.parser.parse_model(EMBED_MODEL)
    for name, arr in {"words": np.zeros((300, 4), np.float32), "types": np.ones((2, 4), np.float32),
                      "positions": np.zeros((4, 4), np.float32), "three": np.array(3, np.int64)}.items():
        mp.graph.initializer.append(onnx.numpy_helper.from_array(arr, name))
    onnx.save(mp, str(tmp_path / "embed.onnx"))
    p = gsub("optimize", "embed.onnx", "-o", "out.onnx", "--dim", "S=16", "--report-json", "r.json", plugin=False)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stderr.decode() == ""  # nothing from onnxruntime (its logger writes to fd 2 directly)
    v = model_of(report_of(tmp_path / "r.json"))["validation"]
    assert v["status"] == "passed"
    assert all(t["note"] == "integer inputs in [0, 1)" for t in v["trials"])  # the fallback, as graphopt's note
    # without `pos`, every integer input has its table's range: no fallback (with [0, 4) type ids would need one)
    no_pos = onnx.parser.parse_model(EMBED_MODEL.replace(", int64[B,S] pos", "").replace(
        "p3 = Add(pos, three)\n    p = Gather(positions, p3)\n", "").replace("y = Add(i, p)", "y = Relu(i)"))
    no_pos.graph.initializer.extend(i for i in mp.graph.initializer if i.name in ("words", "types"))
    onnx.save(no_pos, str(tmp_path / "embed2.onnx"))
    p = gsub("optimize", "embed2.onnx", "-o", "out2.onnx", "--dim", "S=16", "--report-json", "r2.json",
             plugin=False)
    assert p.returncode == 0 and p.stderr.decode() == ""
    v = model_of(report_of(tmp_path / "r2.json"))["validation"]
    assert v["status"] == "passed" and [t["note"] for t in v["trials"]] == [None, None]


def test_model_onnxruntime_cannot_run_warns_that_validation_was_skipped(cli, custom_op_model: Path) -> None:
    r = cli("optimize", str(custom_op_model), "-O1", "--report-json", "r.json")
    assert r.exit_code == 0, r.stderr
    assert "validation skipped" in r.stdout and "Frobnicate" in r.stdout
    m = model_of(report_of("r.json"))
    assert m["validation"]["status"] == "skipped" and m["written"]
    assert any("validation skipped" in w for w in m["warnings"])


# ================================================================================================================
# Bisection
# ================================================================================================================
def test_mismatch_bisects_disables_the_culprit_and_writes_the_model_without_it(cli, add_model: Path,
                                                                                tmp_path: Path) -> None:
    r = cli("optimize", str(add_model), "--passes", "test-drop-identity,test-break-add", "-o", "out.onnx",
            "--report-json", "r.json")
    assert r.exit_code == 0, r.stderr
    m = model_of(report_of("r.json"))
    b = m["bisection"]
    assert [c["name"] for c in b["culprits"]] == ["test-break-add"]
    assert b["culprits"][0]["first_output"] == "y" and b["culprits"][0]["rewrites"] == {"add_to_sub": 1}
    assert b["resolved"] and m["recovered"] and m["pipeline"]["disabled"] == ["test-break-add"]
    assert m["pipeline"]["passes"] == ["test-drop-identity"]
    assert m["validation"]["status"] == "passed"
    assert "culprit" in r.stdout and "test-break-add" in r.stdout and "warning" in r.stdout
    ops = [n.op_type for n in onnx.load(str(tmp_path / "out.onnx")).graph.node]
    assert ops == ["Add", "Relu", "Mul"]  # the good pass applied, the bad one not


def test_no_bisect_leaves_the_mismatch_unresolved(cli, add_model: Path, tmp_path: Path) -> None:
    r = cli("optimize", str(add_model), "--passes", "test-break-add", "--no-bisect", "-o", "out.onnx",
            "--report-json", "r.json")
    assert r.exit_code == 1 and not (tmp_path / "out.onnx").exists()
    m = model_of(report_of("r.json"))
    assert m["bisection"] is None and m["validation"]["status"] == "failed" and not m["written"]
    assert m["validation"]["first_mismatch"] == "y"


def test_bisection_from_stdin(cli, add_model: Path) -> None:
    r = cli("optimize", "-", "-o", "-", "--passes", "test-drop-identity,test-break-add",
            input=add_model.read_bytes())
    assert r.exit_code == 0, r.stderr
    m = onnx.load_model_from_string(r.stdout_bytes)
    assert [n.op_type for n in m.graph.node] == ["Add", "Relu", "Mul"]
    assert "culprit" in r.stderr  # the human report went to stderr, the model to stdout


# ================================================================================================================
# Reports and output discipline
# ================================================================================================================
def test_report_json_to_stdout_sends_the_human_report_to_stderr(cli, add_model: Path) -> None:
    r = cli("optimize", str(add_model), *FIX, "--report-json", "-")
    assert r.exit_code == 0
    rep = json.loads(r.stdout)
    jsonschema.validate(rep, load_schema())
    assert rep["schema_version"] == 1 and rep["command"] == "optimize"
    assert "validation passed" in r.stderr


def test_model_to_stdout_keeps_stdout_clean(cli, add_model: Path) -> None:
    r = cli("optimize", str(add_model), *FIX, "-o", "-", "--report-json", "r.json")
    assert r.exit_code == 0
    m = onnx.load_model_from_string(r.stdout_bytes)
    assert len(m.graph.node) == 3
    assert "validation passed" in r.stderr
    assert model_of(report_of("r.json"))["output"] == "<stdout>"


def test_report_md_appends(cli, add_model: Path, tmp_path: Path) -> None:
    for _ in range(2):
        assert cli("optimize", str(add_model), *FIX, "--report-md", "summary.md").exit_code == 0
    text = (tmp_path / "summary.md").read_text()
    assert text.count("### graphopt optimize") == 2
    assert "| model | status | nodes |" in text and "| `" in text and "4 → 3" in text and "passed" in text


def test_quiet_prints_nothing_but_errors(cli, add_model: Path) -> None:
    r = cli("optimize", str(add_model), *FIX, "-q")
    assert r.exit_code == 0 and r.stdout == "" and r.stderr == ""
    r = cli("optimize", str(add_model), "-q", "-o", "missing/x.onnx")
    assert r.exit_code == 6 and r.stdout == "" and "error:" in r.stderr


def test_verbose_adds_init_steps_and_pass_details(cli, add_model: Path) -> None:
    plain = cli("optimize", str(add_model), *FIX)
    verbose = cli("optimize", str(add_model), *FIX, "-v")
    assert "JIT context init" not in plain.stdout and "identity_removed=1" not in plain.stdout
    assert "JIT context init" in verbose.stdout and "identity_removed=1" in verbose.stdout
    for step in ("submodule", "translators", "symbols", "pipeline"):
        assert step in verbose.stdout
    assert "jit init 1/4" in verbose.stderr  # the init steps are also logged as they happen


def test_existing_flags_keep_working(cli, add_model: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text('passes = ["test-drop-identity"]\nmax-rounds = 2\n')
    r = cli("optimize", str(add_model), "--config", str(cfg), "--verify-each", "--max-rounds", "3",
            "--report-json", "r.json")
    assert r.exit_code == 0, r.stderr
    m = model_of(report_of("r.json"))
    assert m["pipeline"]["passes"] == ["test-drop-identity"] and m["pipeline"]["preset"] is None
    assert (tmp_path / "add.opt.onnx").exists()
    r = cli("optimize", str(add_model), "-O0", "-o", "o0.onnx", "--report-json", "r0.json")
    assert r.exit_code == 0 and model_of(report_of("r0.json"))["pipeline"]["preset"] == "O0"
    assert cli("optimize", str(add_model), "--in-place", *FIX).exit_code == 0
    assert [n.op_type for n in onnx.load(str(add_model)).graph.node] == ["Add", "Relu", "Mul"]
    assert cli("optimize", str(add_model), "-o", str(add_model)).exit_code == 2  # refuses without --in-place


def test_real_preset_on_a_sample_validates(cli) -> None:
    sample = Path(__file__).resolve().parents[2] / "samples" / "cnn.onnx"
    r = cli("optimize", str(sample), "-o", "cnn.onnx", "--report-json", "r.json", "--bench-runs", "2")
    assert r.exit_code == 0, r.stderr
    m = model_of(report_of("r.json"))
    assert m["validation"]["status"] == "passed" and m["pipeline"]["preset"] == "O2"
    assert {o["op_type"] for o in m["op_types"]} >= {"Conv"}


def test_external_data_model(cli, tmp_path: Path) -> None:
    from graphopt.testing import from_text
    from graphopt.ir import serde

    w = np.linspace(-1, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    m = from_text('<ir_version: 8, opset_import: ["": 17]>\ng (float[N,64] x) => (float[N,64] y) '
                  '{\n t = MatMul(x, w)\n i = Identity(t)\n y = Relu(i)\n}', {"w": w})
    (tmp_path / "ext").mkdir()
    onnx.save(serde.to_proto(m), str(tmp_path / "ext" / "m.onnx"), save_as_external_data=True,
              location="m.bin", size_threshold=0)
    r = cli("optimize", "ext/m.onnx", *FIX, "-o", "ext/out.onnx", "--report-json", "r.json")
    assert r.exit_code == 0, r.stderr
    assert model_of(report_of("r.json"))["validation"]["status"] == "passed"
    out = onnx.load(str(tmp_path / "ext" / "out.onnx"))
    assert [n.op_type for n in out.graph.node] == ["MatMul", "Relu"]
    # bisection reloads the original with its external data, too
    r = cli("optimize", "ext/m.onnx", "--passes", "test-drop-identity,test-nudge", "--rtol", "1e-6", "--atol", "0",
            "-o", "ext/out2.onnx", "--report-json", "r2.json")
    assert r.exit_code == 0, r.stderr
    assert model_of(report_of("r2.json"))["pipeline"]["disabled"] == ["test-nudge"]


# ================================================================================================================
# Several models
# ================================================================================================================
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_several_models_one_bad_does_not_stop_the_others(cli, add_model: Path, clean_model: Path,
                                                         tmp_path: Path, jobs: str) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    r = cli("optimize", str(add_model), str(junk), str(clean_model), "--out-dir", "out", "-j", jobs, *FIX,
            "--report-json", "r.json", "--bench-runs", "0")
    assert r.exit_code == 3, r.stdout + r.stderr  # the worst result
    rep = report_of("r.json")
    assert [m["status"] for m in rep["models"]] == ["ok", "invalid", "ok"]
    assert rep["summary"]["by_status"] == {"ok": 2, "invalid": 1} and rep["exit_code"] == 3
    assert (tmp_path / "out" / "add.onnx").exists() and (tmp_path / "out" / "clean.onnx").exists()
    assert not (tmp_path / "out" / "junk.onnx").exists()
    assert "graphopt optimize: 3 model(s)" in r.stdout and "junk.onnx" in r.stdout


def test_exit_code_is_the_worst_by_severity(cli, add_model: Path, clean_model: Path, tmp_path: Path) -> None:
    # a mismatch (1) and an invalid model (3): 3 is worse; a mismatch alone: 1
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"nope")
    r = cli("optimize", str(add_model), str(clean_model), "--out-dir", "o1", "--passes", "test-break-add",
            "--strict")
    assert r.exit_code == 1
    r = cli("optimize", str(add_model), str(junk), "--out-dir", "o2", "--passes", "test-break-add", "--strict")
    assert r.exit_code == 3


def test_several_models_usage_errors(cli, add_model: Path, clean_model: Path, tmp_path: Path,
                                    write_text_model) -> None:
    assert cli("optimize", str(add_model), str(clean_model), "-o", "x.onnx").exit_code == 2
    assert cli("optimize", str(add_model), "-", "--out-dir", "o").exit_code == 2
    other = tmp_path / "sub"
    other.mkdir()
    write_text_model(other / "add.onnx", "<ir_version: 8, opset_import: [\"\": 17]>\ng (float[N] x) => (float[N] y)"
                    " {\n y = Relu(x)\n}")
    r = cli("optimize", str(add_model), str(other / "add.onnx"), "--out-dir", "o")
    assert r.exit_code == 2 and "same output" in r.stderr


def test_progress_shows_only_on_a_terminal(add_model: Path) -> None:
    from rich.console import Console

    from graphopt.cli.optimize import Steps

    buf = io.StringIO()
    with Steps(Console(file=buf, force_terminal=True), True) as steps:
        steps("loading a big model")
    assert "loading a big model" in buf.getvalue()
    buf = io.StringIO()
    with Steps(Console(file=buf), False) as steps:
        steps("loading a big model")
    assert buf.getvalue() == ""


def test_o0_writes_the_input_back_byte_for_byte(cli, tmp_path: Path) -> None:
    # -O0 is a round trip: no pass, no annotation; a model in protobuf's own field order comes back as the very
    # same bytes (samples with value_info, initializers and If/Loop subgraphs)
    root = Path(__file__).resolve().parents[2]
    srcs = [root / "samples" / n for n in ("transformer.onnx", "cnn.onnx", "if_model.onnx")]
    for src in srcs:
        data = src.read_bytes()
        assert onnx.load_from_string(data).SerializeToString() == data  # the premise: canonical order
        r = cli("optimize", str(src), "-O0", "-o", "o0.onnx", "--no-validate")
        assert r.exit_code == 0, r.stderr
        assert (tmp_path / "o0.onnx").read_bytes() == data, src.name


def test_annotate_shapes_is_opt_in(cli, tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parents[2] / "samples" / "transformer.onnx"
    declared = {vi.name for vi in onnx.load(str(sample)).graph.value_info}
    r = cli("optimize", str(sample), "-o", "plain.onnx", "--no-validate")
    assert r.exit_code == 0, r.stderr
    plain = onnx.load(str(tmp_path / "plain.onnx"))
    assert {vi.name for vi in plain.graph.value_info} <= declared  # nothing declared that was not before
    r = cli("optimize", str(sample), "-o", "ann.onnx", "--no-validate", "--annotate-shapes")
    assert r.exit_code == 0, r.stderr
    ann = onnx.load(str(tmp_path / "ann.onnx"))
    dims = {vi.name: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
            for vi in ann.graph.value_info}
    assert len(dims) > len(plain.graph.value_info) and any("batch" in d for d in dims.values())
    onnx.checker.check_model(ann, full_check=True)
    # the same from a config file
    cfg = tmp_path / "g.toml"
    cfg.write_text("annotate-shapes = true\n")
    r = cli("optimize", str(sample), "-o", "cfg.onnx", "--no-validate", "--config", str(cfg))
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "cfg.onnx").read_bytes() == (tmp_path / "ann.onnx").read_bytes()
