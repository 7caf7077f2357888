"""Comparison of an optimized model with its original in real onnxruntime sessions: per-output checks, tolerances
and special values, models onnxruntime cannot load, external data, the checker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from graphopt.errors import InvalidModelError, UsageError
from graphopt.ir import serde
from graphopt.ir.builder import Builder
from graphopt.testing import from_text, snapshot
from graphopt.validate import (
    ModelSource,
    ValidateOptions,
    Validator,
    check_model,
)

from ._helpers import HDR, TWO_OUT, src, validate


# ================================================================================================================
# Comparison
# ================================================================================================================
def test_same_model_passes_with_zero_difference_and_two_sessions() -> None:
    v, res = validate(TWO_OUT, TWO_OUT)
    assert res.status == "passed" and res.reason is None
    assert [o.name for o in res.outputs] == ["y", "z"]
    assert all(o.ok and o.max_abs == 0.0 and o.max_rel == 0.0 for o in res.outputs)
    assert [o.dtype for o in res.outputs] == ["float", "float"] and res.outputs[0].shape == [2, 3]
    assert len(res.trials) == 2 and [t.seed for t in res.trials] == [0, 1]  # one symbolic dim: two sizes
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


def test_validation_does_not_touch_the_files_it_reads(tmp_path: Path) -> None:
    path = _external_model(tmp_path / "m")
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "m").iterdir()}
    model = serde.load(path)
    Validator(ModelSource(path=str(path))).compare(model)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "m").iterdir()} == before
