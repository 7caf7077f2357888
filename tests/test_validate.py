"""graphopt.validate: onnxruntime comparison of an optimized model with its original, and pass bisection.

Every test runs real onnxruntime sessions on tiny models built here. "Optimized" models are either hand-written
variants of the original (to control exactly what differs) or the output of real pipelines with test-only passes
registered in a test-only context (to plant a wrong pass for bisection to find).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import ClassVar

import numpy as np
import onnx
import pytest

from graphopt.errors import InvalidModelError, UsageError
from graphopt.ir import serde
from graphopt.ir.builder import Builder
from graphopt.ir.core import Model
from graphopt.jit import init
from graphopt.passes.base import Pass, PassResult
from graphopt.pipeline import PipelineConfig, resolve
from graphopt.testing import from_text, snapshot
from graphopt.validate import (
    ModelSource,
    ValidateOptions,
    Validator,
    bisect,
    check_model,
    load_npz,
    optimize_with,
    random_feeds,
    symbols_of,
    trial_bindings,
)

HDR = '<ir_version: 8, opset_import: ["": 17]>'


def src(text: str, inits: dict[str, np.ndarray] | None = None) -> ModelSource:
    return ModelSource(data=snapshot(from_text(HDR + text, inits)))


def validate(original: str, optimized: str, *, inits: dict[str, np.ndarray] | None = None,
             opt_inits: dict[str, np.ndarray] | None = None, **opts: object):
    v = Validator(src(original, inits), ValidateOptions(**opts))  # type: ignore[arg-type]
    return v, v.compare(src(optimized, opt_inits if opt_inits is not None else inits))


TWO_OUT = """
g (float[N,3] x) => (float[N,3] y, float[N,3] z) {
    y = Relu(x)
    z = Add(x, x)
}
"""


# ================================================================================================================
# Comparison
# ================================================================================================================
def test_same_model_passes_with_zero_difference_and_two_sessions() -> None:
    v, res = validate(TWO_OUT, TWO_OUT)
    assert res.status == "passed" and res.reason is None
    assert [o.name for o in res.outputs] == ["y", "z"]
    assert all(o.ok and o.max_abs == 0.0 and o.max_rel == 0.0 for o in res.outputs)
    assert [o.dtype for o in res.outputs] == ["float", "float"] and res.outputs[0].shape == [2, 3]
    assert len(res.trials) == 3 and [t.seed for t in res.trials] == [0, 1, 2]
    assert v.sessions_created == 2
    assert res.session_seconds_original and res.session_seconds_optimized


def test_value_difference_names_first_output_and_largest_difference() -> None:
    bad = TWO_OUT.replace("z = Add(x, x)", "h = Constant<value = float {0.5}>()\n    xx = Add(x, x)\n"
                          "    z = Add(xx, h)")
    _, res = validate(TWO_OUT, bad)
    assert res.status == "failed" and res.first_mismatch == "z"
    y, z = res.outputs
    assert y.ok and y.max_abs == 0.0
    assert not z.ok and z.max_abs == pytest.approx(0.5)
    assert "trial 1" in (z.reason or "") and "z" in (res.reason or "")
    assert not res.trials[0].ok


@pytest.mark.parametrize("optimized, needle", [
    ("g (float[N,3] x) => (float[N,3] y, double[N,3] z) {\n y = Relu(x)\n a = Add(x, x)\n"
     " z = Cast<to = 11>(a)\n}", "dtype"),
    ("g (float[N,3] x) => (float[N,3] y, float[N,3] z) {\n y = Relu(x)\n a = Add(x, x)\n"
     " s = Constant<value = int64[2] {3, -1}>()\n z = Reshape(a, s)\n}", "shape"),
    ("g (float[N,3] x) => (float[N,3] y, float[N,3] w) {\n y = Relu(x)\n w = Add(x, x)\n}", "outputs are"),
    ("g (float[N,3] x) => (float[N,3] y) {\n y = Relu(x)\n}", "outputs are"),
])
def test_dtype_shape_and_output_name_differences_fail(optimized: str, needle: str) -> None:
    _, res = validate(TWO_OUT, optimized, trials=1)
    assert res.status == "failed"
    assert needle in (res.reason or "")
    assert res.first_mismatch == "z"


def test_a_rewrite_right_for_one_shape_only_is_caught_by_the_second_trial() -> None:
    orig = "g (float[N,3] x) => (int64[2] s) {\n s = Shape(x)\n}"
    only_n2 = "g (float[N,3] x) => (int64[2] s) {\n s = Constant<value = int64[2] {2, 3}>()\n}"
    _, one = validate(orig, only_n2, trials=1)
    assert one.status == "passed"  # N=2 in the first trial: the wrong rewrite looks right
    _, three = validate(orig, only_n2, trials=3)
    assert three.status == "failed" and three.first_mismatch == "s"
    assert [t.ok for t in three.trials] == [True, False, False]
    assert "N=3" in (three.outputs[0].reason or "")


def test_trial_bindings_vary_sizes_and_keep_given_dims() -> None:
    assert trial_bindings(["A", "B"], {}, 3) == [{"A": 2, "B": 2}, {"A": 3, "B": 4}, {"A": 4, "B": 4}]
    assert trial_bindings(["A", "B"], {"B": 7}, 2) == [{"B": 7, "A": 2}, {"B": 7, "A": 3}]


def test_dim_binding_applies_to_every_trial_and_unknown_names_warn() -> None:
    _, res = validate(TWO_OUT, TWO_OUT, dims={"N": 7, "batch": 2}, trials=2)
    assert res.passed
    assert [t.dims for t in res.trials] == [{"N": 7}, {"N": 7}]
    assert res.outputs[0].shape == [7, 3]
    assert any("--dim batch" in w for w in res.warnings)


def test_unnamed_dynamic_dims_get_names_and_sizes() -> None:
    from graphopt.validate import InputSpec

    specs = [InputSpec("x", "tensor(float)", (None, "T", 3))]
    assert symbols_of(specs) == ["x:0", "T"]
    feeds = random_feeds(specs, {"x:0": 5, "T": 2}, 0)
    assert feeds["x"].shape == (5, 2, 3)


def test_symbols_that_must_agree_fall_back_to_equal_sizes() -> None:
    # A and B name the same dim in practice: Add refuses A=3, B=4 (trial 2 binds distinct sizes)
    text = "g (float[A] a, float[B] b) => (float[A] y) {\n y = Add(a, b)\n}"
    _, res = validate(text, text, trials=2)
    assert res.passed
    assert res.trials[1].dims == {"A": 3, "B": 3}
    assert "equal sizes" in (res.trials[1].note or "")


def test_random_inputs_are_deterministic_per_seed_and_typed() -> None:
    from graphopt.validate import InputSpec

    specs = [InputSpec("f", "tensor(float)", ("N", 4)), InputSpec("i", "tensor(int64)", ("N",)),
             InputSpec("b", "tensor(bool)", (3,)), InputSpec("h", "tensor(float16)", (2,)),
             InputSpec("s", "tensor(string)", (2,))]
    a = random_feeds(specs, {"N": 5}, seed=3)
    b = random_feeds(specs, {"N": 5}, seed=3)
    c = random_feeds(specs, {"N": 5}, seed=4)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["f"], c["f"])
    assert a["f"].dtype == np.float32 and a["f"].shape == (5, 4) and np.all(np.abs(a["f"]) <= 1)
    assert a["i"].dtype == np.int64 and a["i"].min() >= 0 and a["i"].max() < 4
    assert a["b"].dtype == np.bool_ and a["h"].dtype == np.float16 and a["s"].dtype == object
    with pytest.raises(UsageError, match="cannot draw"):
        random_feeds([InputSpec("q", "seq(tensor(float))", None)], {}, 0)


# ================================================================================================================
# Tolerances and special values
# ================================================================================================================
@pytest.mark.parametrize("dtype, onnx_t, factor, passes_default", [
    (np.float32, "float", 1.0002, True),       # 2e-4 relative: within float32's 1e-3
    (np.float32, "float", 1.01, False),
    (np.float16, "float16", 1.005, True),      # float16's 1e-2
    (np.float64, "double", 1.00001, False),    # float64's 1e-6
])
def test_default_tolerance_depends_on_dtype(dtype: type, onnx_t: str, factor: float, passes_default: bool) -> None:
    orig = f"g ({onnx_t}[N] x) => ({onnx_t}[N] y) {{\n y = Identity(x)\n}}"
    opt = f"g ({onnx_t}[N] x) => ({onnx_t}[N] y) {{\n y = Mul(x, k)\n}}"
    k = {"k": np.array([factor], dtype=dtype)}
    v = Validator(src(orig), ValidateOptions(dims={"N": 64}))
    res = v.compare(src(opt, k))
    assert res.passed is passes_default, res.reason
    (o,) = res.outputs
    assert o.max_rel == pytest.approx(factor - 1, rel=0.2)  # fp16 rounding of the factor itself
    assert o.max_abs is not None and 0 < o.max_abs <= factor - 1 + 1e-3


def test_rtol_atol_override_the_defaults() -> None:
    orig = "g (float[N] x) => (float[N] y) {\n y = Identity(x)\n}"
    opt = "g (float[N] x) => (float[N] y) {\n y = Mul(x, k)\n}"
    k = {"k": np.array([1.0002], dtype=np.float32)}
    _, default = validate(orig, opt, opt_inits=k)
    _, tight = validate(orig, opt, opt_inits=k, rtol=1e-5, atol=0.0)
    _, loose = validate(orig, opt, opt_inits={"k": np.array([1.05], np.float32)}, rtol=0.1)
    assert default.passed and not tight.passed and loose.passed
    assert tight.outputs[0].rtol == 1e-5 and tight.outputs[0].atol == 0.0
    assert "rtol=1e-05" in (tight.outputs[0].reason or "")


def test_integer_outputs_compare_exactly() -> None:
    orig = "g (int64[N] x) => (int64[N] y) {\n y = Identity(x)\n}"
    opt = "g (int64[N] x) => (int64[N] y) {\n one = Constant<value = int64 {1}>()\n y = Add(x, one)\n}"
    _, res = validate(orig, opt, rtol=1.0, atol=5.0)  # tolerances do not apply to integers
    assert res.failed and res.outputs[0].max_abs == 1.0 and res.outputs[0].rtol is None


def test_nan_in_the_same_places_is_equal_in_other_places_is_not() -> None:
    orig = "g (float[N] x) => (float[N] y) {\n y = Log(x)\n}"  # NaN for the negative inputs
    same = "g (float[N] x) => (float[N] y) {\n t = Log(x)\n y = Identity(t)\n}"
    other = "g (float[N] x) => (float[N] y) {\n a = Abs(x)\n y = Log(a)\n}"
    _, ok = validate(orig, same, dims={"N": 32})
    _, bad = validate(orig, other, dims={"N": 32})
    assert ok.passed
    assert bad.failed and "NaN" in (bad.outputs[0].reason or "") and bad.outputs[0].max_abs is None
    assert bad.to_dict()["outputs"][0]["max_abs"] is None  # JSON has no NaN


# ================================================================================================================
# Models onnxruntime cannot run, and inputs it rejects
# ================================================================================================================
CUSTOM = """<ir_version: 8, opset_import: ["": 17, "com.example": 1]>
g (float[N] x) => (float[N] y) {
    y = com.example.Frobnicate(x)
}"""


def test_original_onnxruntime_cannot_load_is_skipped_with_the_reason() -> None:
    v = Validator(ModelSource(data=snapshot(from_text(CUSTOM))))
    res = v.compare(ModelSource(data=snapshot(from_text(CUSTOM))))
    assert res.status == "skipped" and not res.passed and not res.failed
    assert "onnxruntime cannot load the original model" in (res.reason or "")
    assert "Frobnicate" in (res.reason or "")
    assert v.original_error is not None and res.outputs == []


def test_optimized_model_onnxruntime_cannot_load_is_a_failure() -> None:
    orig = "g (float[N] x) => (float[N] y) {\n y = Relu(x)\n}"
    _, res = validate(orig, orig)
    assert res.passed
    v = Validator(src(orig))
    res = v.compare(ModelSource(data=snapshot(from_text(CUSTOM))))
    assert res.failed and "cannot load the optimized model" in (res.reason or "")
    assert res.first_mismatch == "y"


def test_integer_index_inputs_fall_back_to_a_smaller_range() -> None:
    # indices into a 2-row table: [0, 4) is out of range for onnxruntime, [0, 2) is fine
    text = "g (int64[K] i) => (float[K,3] y) {\n y = Gather(table, i)\n}"
    table = {"table": np.arange(6, dtype=np.float32).reshape(2, 3)}
    _, res = validate(text, text, inits=table, dims={"K": 16})
    assert res.passed
    assert all("[0, 2)" in (t.note or "") for t in res.trials)


def test_inputs_the_original_rejects_skip_validation_with_a_hint() -> None:
    text = "g (float[N] x, int64[2] shape) => (float[A,B] y) {\n y = Reshape(x, shape)\n}"
    _, res = validate(text, text, dims={"N": 7})
    assert res.skipped
    assert "fails on random inputs" in (res.reason or "") and "--inputs" in (res.reason or "")


def test_npz_inputs_are_used_as_one_trial(tmp_path: Path) -> None:
    text = "g (float[N] x, int64[2] shape) => (float[A,B] y) {\n y = Reshape(x, shape)\n}"
    p = tmp_path / "in.npz"
    np.savez(p, x=np.arange(6, dtype=np.float64), shape=np.array([2, 3], np.int64))  # float64 -> float32: cast
    _, res = validate(text, text, inputs=str(p))
    assert res.passed and len(res.trials) == 1 and res.trials[0].seed is None
    assert res.outputs[0].shape == [2, 3] and res.input_source == f"npz:{p}"
    bad = text.replace("y = Reshape(x, shape)", "r = Reshape(x, shape)\n y = Neg(r)")
    _, res = validate(text, bad, inputs=str(p))
    assert res.failed


def test_npz_with_wrong_names_or_types_is_a_usage_error(tmp_path: Path) -> None:
    from graphopt.validate import InputSpec

    specs = [InputSpec("x", "tensor(int64)", ("N",))]
    np.savez(tmp_path / "a.npz", y=np.zeros(3, np.int64))
    np.savez(tmp_path / "b.npz", x=np.zeros(3, np.float32))
    np.savez(tmp_path / "c.npz", x=np.zeros(3, np.int64), extra=np.zeros(1))
    with pytest.raises(UsageError, match="lacks input 'x'"):
        load_npz(str(tmp_path / "a.npz"), specs)
    with pytest.raises(UsageError, match="float32.*int64"):
        load_npz(str(tmp_path / "b.npz"), specs)
    with pytest.raises(UsageError, match="'extra'"):
        load_npz(str(tmp_path / "c.npz"), specs)
    with pytest.raises(UsageError, match="no such file"):
        load_npz(str(tmp_path / "none.npz"), specs)


# ================================================================================================================
# External data, timing, session reuse
# ================================================================================================================
def _external_model(folder: Path) -> Path:
    w = np.arange(64 * 64, dtype=np.float32).reshape(64, 64) / 4096
    m = from_text(HDR + "g (float[N,64] x) => (float[N,64] y) {\n t = MatMul(x, w)\n y = Relu(t)\n}", {"w": w})
    mp = serde.to_proto(m)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(mp, str(folder / "m.onnx"), save_as_external_data=True, location="m.weights", size_threshold=0)
    return folder / "m.onnx"


def test_external_data_original_by_path_optimized_by_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _external_model(tmp_path / "model")
    monkeypatch.chdir(tmp_path)  # external data must be found beside the model, not in the working directory
    model = serde.load(path)
    assert model.meta.get("has_external")
    relu = next(n for n in model.graph if n.op_type == "Relu")
    relu_ok = ModelSource.of_model(model)
    assert b"m.weights" in (relu_ok.data or b"")  # the weights stayed external: only the folder is passed
    v = Validator(ModelSource(path=str(path)))
    assert v.compare(relu_ok).passed
    # break it: Relu -> Neg on the same external weights
    neg = Builder(model.graph, before=relu).op("Neg", relu.input(0))
    relu.output.replace_all_uses_with(neg)
    model.graph.remove([relu])
    res = v.compare(model)
    assert res.failed and res.first_mismatch == "y"
    assert v.sessions_created == 3  # the original's session was made once for both candidates


def test_benchmark_measures_both_models_and_can_be_turned_off() -> None:
    v = Validator(src(TWO_OUT), ValidateOptions(bench_runs=5, threads=2, ort_level="basic"))
    res = v.compare(src(TWO_OUT))
    v.benchmark(res)
    d = res.to_dict()
    assert res.bench_runs == 5 and res.latency_ms_original and res.latency_ms_optimized
    assert d["latency_ms"]["speedup"] == pytest.approx(res.latency_ms_original / res.latency_ms_optimized)
    assert d["onnxruntime"] == {"version": d["onnxruntime"]["version"], "optimization_level": "basic",
                                "threads": 2}
    assert res.timings["bench"] > 0
    assert v.seconds == pytest.approx(res.timings["total"], abs=1e-3)  # everything the validator did, counted
    v0 = Validator(src(TWO_OUT), ValidateOptions(bench_runs=0))
    r0 = v0.compare(src(TWO_OUT))
    v0.benchmark(r0)
    assert r0.latency_ms_original is None and r0.to_dict()["latency_ms"]["speedup"] is None


def test_unknown_ort_level_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="optimization level"):
        Validator(src(TWO_OUT), ValidateOptions(ort_level="max"))


def test_check_model_rejects_what_the_checker_rejects(tmp_path: Path) -> None:
    import onnx.helper as oh

    g = oh.make_graph([oh.make_node("Add", ["x", "ghost"], ["y"])], "g",
                      [oh.make_tensor_value_info("x", 1, [2])], [oh.make_tensor_value_info("y", 1, [2])])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)])
    p = tmp_path / "bad.onnx"
    onnx.save(m, str(p))
    with pytest.raises(InvalidModelError, match="checker"):
        check_model(ModelSource(path=str(p)))
    with pytest.raises(InvalidModelError):
        check_model(ModelSource(data=m.SerializeToString()))
    check_model(src(TWO_OUT))  # a valid model passes


# ================================================================================================================
# Bisection
# ================================================================================================================
@dataclasses.dataclass(frozen=True)
class BreakAdd(Pass):
    """Planted bug: a + b becomes a - b."""

    name: ClassVar[str] = "test-break-add"
    summary: ClassVar[str] = "wrong on purpose"

    def run(self, model: Model, ctx: object) -> PassResult:
        n = 0
        g = model.graph
        for node in list(g):
            if node.op_type == "Add":
                new = Builder(g, before=node).op("Sub", node.input(0), node.input(1))
                node.output.replace_all_uses_with(new)
                g.remove([node])
                n += 1
        return PassResult.of(add_to_sub=n)


@dataclasses.dataclass(frozen=True)
class BreakMul(Pass):
    """Second planted bug: a * b becomes a + b."""

    name: ClassVar[str] = "test-break-mul"

    def run(self, model: Model, ctx: object) -> PassResult:
        n = 0
        g = model.graph
        for node in list(g):
            if node.op_type == "Mul":
                new = Builder(g, before=node).op("Max", node.input(0), node.input(1))
                node.output.replace_all_uses_with(new)
                g.remove([node])
                n += 1
        return PassResult.of(mul_to_max=n)


@dataclasses.dataclass(frozen=True)
class DropIdentity(Pass):
    """Correct: bypasses Identity nodes that are not graph outputs."""

    name: ClassVar[str] = "test-drop-identity"

    def run(self, model: Model, ctx: object) -> PassResult:
        n = 0
        g = model.graph
        for node in list(g):
            if node.op_type == "Identity" and not node.output.is_graph_output():
                node.output.replace_all_uses_with(node.input(0))
                g.remove([node])
                n += 1
        return PassResult.of(identity_removed=n)


BISECT_MODEL = """
g (float[N,4] x) => (float[N,4] y, float[N,4] z) {
    i = Identity(x)
    r = Relu(i)
    y = Mul(r, x)
    z = Add(x, r)
}
"""


def _test_ctx(model: Model, order: list[str]) -> object:
    """A test-only context: the built-in passes that exist today plus the test passes, pipeline `order` (names
    of passes that are not registered are dropped, so the test does not depend on which real passes exist)."""
    ctx = init(model, PipelineConfig(passes=[]), plugins=False)
    for cls in (BreakAdd, BreakMul, DropIdentity):
        ctx.passes.register(cls, origin="test")
    ctx.config = PipelineConfig(passes=[n for n in order if n in ctx.passes])
    ctx.pipeline = resolve(ctx.config, ctx.passes)
    return ctx


REAL = ["simplify-control-flow", "fold-constants", "simplify-shapes", "eliminate-noops", "fuse", "cse", "dce"]


def _run_bisect(order: list[str]):
    original = ModelSource(data=snapshot(from_text(HDR + BISECT_MODEL)))
    model = original.load()
    ctx = _test_ctx(model, order)
    record = optimize_with(ctx, model)
    validator = Validator(original, ValidateOptions(trials=2))
    first = validator.compare(model)
    assert first.failed
    return ctx, validator, bisect(original, ctx, validator, failing=first, failing_record=record)


def test_bisection_finds_a_planted_bad_pass_among_real_ones() -> None:
    order = REAL[:3] + ["test-drop-identity", "test-break-add"] + REAL[3:]
    ctx, validator, b = _run_bisect(order)
    assert [c.name for c in b.culprits] == ["test-break-add"]
    c = b.culprits[0]
    assert c.first_output == "z" and c.rewrites == {"add_to_sub": 1}
    assert b.resolved and b.validation is not None and b.validation.passed
    assert "test-break-add" not in b.passes and "test-drop-identity" in b.passes
    n = len(ctx.pipeline)  # type: ignore[attr-defined]
    assert len(b.steps) <= math.ceil(math.log2(n)) + 1  # halving, plus the final re-validation
    # the model handed back is the one without the culprit, optimized by the good passes
    assert b.model is not None
    ops = [nd.op_type for nd in b.model.graph]
    assert "Identity" not in ops and "Add" in ops
    assert validator.sessions_created == 1 + 1 + len(b.steps)


def test_bisection_finds_two_bad_passes() -> None:
    order = ["test-break-mul", "test-drop-identity", "test-break-add"]
    _, _, b = _run_bisect(order)
    assert [c.name for c in b.culprits] == ["test-break-mul", "test-break-add"]
    assert [c.first_output for c in b.culprits] == ["y", "z"]
    assert b.resolved and b.passes == ["test-drop-identity"]
    d = b.to_dict()
    assert set(d) == {"culprits", "steps", "resolved", "passes", "seconds"}
    assert all(s["status"] in ("passed", "failed") for s in d["steps"])


def test_bisection_result_crosses_process_boundaries_without_the_model() -> None:
    import pickle

    _, _, b = _run_bisect(["test-break-add"])
    c = pickle.loads(pickle.dumps(b))
    assert c.model is None and c.ctx is None and c.culprits == b.culprits


def test_validation_does_not_touch_the_files_it_reads(tmp_path: Path) -> None:
    path = _external_model(tmp_path / "m")
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "m").iterdir()}
    model = serde.load(path)
    Validator(ModelSource(path=str(path))).compare(model)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "m").iterdir()} == before
