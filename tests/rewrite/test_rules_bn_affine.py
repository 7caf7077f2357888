"""fuse-bn-affine (BatchNormalization + per-channel Mul / Add -> BatchNormalization) and fuse-bn-fill-params
(BatchNormalization parameters computed by fills -> stored parameters, -O3 only)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from graphopt.ir import serde
from graphopt.rewrite.driver import explain
from graphopt.rewrite.rules.bn_affine import FuseBatchNormAffine
from graphopt.testing import assert_valid, count_ops, from_text, run, run_pass, snapshot

from .test_rules_fill import DTYPES, bn_inits, check, make
from .util import check_not_fused, ctx_for, fuse

AFF = ["fuse-bn-affine"]


def _t(dtype: type) -> str:
    return "float16" if dtype == np.float16 else "float"


def bn_op(dtype: type = np.float32, *, op: str = "Mul", k: str = "k", opset: int = 17, pre: str = "",
          body: str = "", bn_attrs: str = "epsilon = 0.001", extra_out: str = "", xshape: str = "N, 6, 5, 5") -> str:
    """x -> BatchNormalization -> `op` (Mul / Add) with `k`; `pre` goes before the BN, `body` after."""
    t = _t(dtype)
    return f"""
<ir_version: 8, opset_import: ["" : {opset}]>
g ({t}[{xshape}] x) => ({t}[{xshape}] y{extra_out}) {{
  {pre}
  y0 = BatchNormalization <{bn_attrs}> (x, s, bb, mu, var)
  y = {op} (y0, {k})
  {body}
}}
"""


def inits(rng: np.random.Generator, dtype: type = np.float32, kshape: tuple[int, ...] = (6, 1, 1)) -> dict:
    return {**bn_inits(rng, dtype=dtype), "k": rng.uniform(0.5, 2, kshape).astype(dtype)}


# ----------------------------------------------------------------------------------------------------------------
# fuse-bn-affine
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_bn_mul(rng: np.random.Generator, dtype: type) -> None:
    m = check(make(bn_op(dtype), inits(rng, dtype)), AFF, {"fuse-bn-affine": 1}, {"BatchNormalization": 1},
              dtype=dtype)
    (bn,) = list(m.graph)
    # new scale and bias (C numbers each, in the parameters' type), mean and var reused as they are
    assert [v.name for v in bn.inputs[3:]] == ["mu", "var"]
    assert all(tuple(v.const.shape) == (6,) and v.const.dtype == (10 if dtype == np.float16 else 1)
               for v in bn.inputs[1:3])
    assert bn.attr("epsilon") == pytest.approx(0.001) and bn.output.name == "y"


@pytest.mark.parametrize("dtype", DTYPES)
def test_bn_add_keeps_the_scale(rng: np.random.Generator, dtype: type) -> None:
    m = check(make(bn_op(dtype, op="Add"), inits(rng, dtype)), AFF, {"fuse-bn-affine": 1}, {"BatchNormalization": 1},
              dtype=dtype)
    (bn,) = list(m.graph)
    assert [v.name for v in bn.inputs] == ["x", "s", bn.input(2).name, "mu", "var"] and bn.input(2).name != "bb"


@pytest.mark.parametrize("dtype", DTYPES)
def test_caffe2_scale_layer_with_fills(dtype: type) -> None:
    """Caffe2's light models: BN parameters are one fill [C]; Mul and Add read one Unsqueeze(fill) shared by two
    BN -> Mul -> Add chains. Each chain becomes one BN; mean and var keep reading the fill."""
    t = _t(dtype)
    text = f"""
<ir_version: 8, opset_import: ["" : 17]>
g ({t}[N, 6, 5, 5] x) => ({t}[N, 6, 5, 5] y, {t}[N, 6, 5, 5] z) {{
  p = ConstantOfShape <value = float[1] {{0.02}}> (cs)
  u = Unsqueeze (p, ax)
  y0 = BatchNormalization (x, p, p, p, p)
  m1 = Mul (y0, u)
  y1 = Add (m1, u)
  y = Relu (y1)
  z0 = BatchNormalization (y1, p, p, p, p)
  z1 = Mul (z0, u)
  z = Add (z1, u)
}}
"""
    m = make(text, {"cs": np.array([6], np.int64), "ax": np.array([1, 2], np.int64)}, dtype)
    m = check(m, AFF, {"fuse-bn-affine": 4}, {"ConstantOfShape": 1, "BatchNormalization": 2, "Relu": 1},
              dtype=dtype)
    fill = next(n for n in m.graph if n.op_type == "ConstantOfShape")
    for bn in (n for n in m.graph if n.op_type == "BatchNormalization"):
        assert bn.input(3) is fill.output and bn.input(4) is fill.output


@pytest.mark.parametrize("kshape,xshape", [((), "N, 6, 5, 5"), ((1,), "N, 6, 5, 5"), ((1, 6, 1, 1), "N, 6, 5, 5"),
                                           ((6, 1), "N, 6, 5"), ((1, 1, 1), "N, 6, 5, 5")])
def test_bn_mul_operand_shapes(rng: np.random.Generator, kshape: tuple[int, ...], xshape: str) -> None:
    check(from_text(bn_op(xshape=xshape), inits(rng, kshape=kshape)), AFF, {"fuse-bn-affine": 1},
          {"BatchNormalization": 1})


def test_bn_mul_opset_7_and_9(rng: np.random.Generator) -> None:
    for opset in (7, 9):
        check(from_text(bn_op(opset=opset, bn_attrs="epsilon = 0.001"), inits(rng)), AFF, {"fuse-bn-affine": 1},
              {"BatchNormalization": 1})


def test_bn_mul_inside_if_branch_with_outer_fill(rng: np.random.Generator) -> None:
    text = """
<ir_version: 8, opset_import: ["" : 17]>
g (bool cond, float[N, 6, 5, 5] x) => (float[N, 6, 5, 5] y) {
  kf = ConstantOfShape <value = float[1] {1.7}> (c611)
  y = If (cond) <
    then_branch = t () => (float[N, 6, 5, 5] ty) {
      t0 = BatchNormalization (x, s, bb, mu, var)
      ty = Mul (kf, t0)
    },
    else_branch = e () => (float[N, 6, 5, 5] ey) {
      ey = Relu (x)
    }
  >
}
"""
    m = from_text(text, {**bn_inits(rng), "c611": np.array([6, 1, 1], np.int64)})
    before = snapshot(m)
    assert fuse(m, AFF) == {"rewrites": 1, "fuse-bn-affine": 1}
    run_pass(m, "dce")
    assert dict(count_ops(m)) == {"If": 1, "BatchNormalization": 1, "Relu": 1}
    assert_valid(m)
    rng2 = np.random.default_rng(0)
    for c in (True, False):
        feeds = {"cond": np.array(c), "x": rng2.standard_normal((2, 6, 5, 5)).astype(np.float32)}
        np.testing.assert_allclose(run(m, feeds)[0], run(before, feeds)[0], rtol=1e-4, atol=1e-5)
    assert fuse(m, AFF) == {}


# -- negatives: one per precondition -------------------------------------------------------------------------------
def test_bn_affine_training_mode(rng: np.random.Generator) -> None:
    check_not_fused(bn_op(bn_attrs="training_mode = 1"), inits(rng), "fuse-bn-affine", "is in training mode")


def test_bn_affine_spatial_0(rng: np.random.Generator) -> None:
    check_not_fused(bn_op(opset=7, bn_attrs="spatial = 0"), inits(rng), "fuse-bn-affine",
                    "has spatial=0 (per-activation parameters)")


def test_bn_affine_opset_6(rng: np.random.Generator) -> None:
    check_not_fused(bn_op(opset=6), inits(rng), "fuse-bn-affine",
                    "the model's opset 6 is outside the rule's range (>= 7)")


def test_bn_affine_operand_unknown(rng: np.random.Generator) -> None:
    text = bn_op().replace("float[N, 6, 5, 5] x)", "float[N, 6, 5, 5] x, float[6, 1, 1] k)")
    check_not_fused(text, bn_inits(rng), "fuse-bn-affine", "the other operand of Mul -> 'y': 'k' is a graph input")


def test_bn_affine_operand_not_per_channel(rng: np.random.Generator) -> None:
    check_not_fused(bn_op(), inits(rng, kshape=(1, 1, 5, 1)), "fuse-bn-affine", "it varies along axis 2")


def test_bn_affine_operand_grows_rank(rng: np.random.Generator) -> None:
    check_not_fused(bn_op(), inits(rng, kshape=(1, 1, 1, 1, 1)), "fuse-bn-affine", "has rank 5 > 4")


def test_bn_affine_operand_channel_count(rng: np.random.Generator) -> None:
    check_not_fused(bn_op(), inits(rng, kshape=(3, 1, 1)), "fuse-bn-affine",
                    "has 3 values along the channel axis, the result has 6 channels")


def test_bn_affine_operand_dtype(rng: np.random.Generator) -> None:
    check_not_fused(bn_op(), {**inits(rng), "k": np.ones((6, 1, 1), np.float64)}, "fuse-bn-affine",
                    "the operand has element type 11, the BatchNormalization input 1")


def test_bn_affine_rank_unknown(rng: np.random.Generator) -> None:
    mp = onnx.parser.parse_model(bn_op())
    for vi in (mp.graph.input[0], mp.graph.output[0]):
        vi.type.tensor_type.ClearField("shape")  # unknown rank
    mp.graph.initializer.extend(onnx.numpy_helper.from_array(a, n) for n, a in inits(rng).items())
    m = serde.from_proto(mp)
    before = snapshot(m)
    rep = explain(m, FuseBatchNormAffine(), jit=ctx_for(m))
    assert "has shape [6, 1, 1] and the rank of the result is unknown" in rep.candidates[0].reason
    assert snapshot(m) == before


def test_bn_affine_bn_output_escapes(rng: np.random.Generator) -> None:
    text = bn_op(extra_out=", float[N, 6, 5, 5] z", body="z = Relu (y0)")
    check_not_fused(text, inits(rng), "fuse-bn-affine",
                    "intermediate 'y0' (BatchNormalization -> 'y0') is also read by Relu")


def test_bn_affine_param_unknown(rng: np.random.Generator) -> None:
    text = bn_op().replace("float[N, 6, 5, 5] x)", "float[N, 6, 5, 5] x, float[6] s)")
    i = inits(rng)
    del i["s"]
    check_not_fused(text, i, "fuse-bn-affine", "BatchNormalization scale: 's' is a graph input")


def test_bn_affine_param_shape(rng: np.random.Generator) -> None:
    check_not_fused(bn_op(), {**inits(rng), "mu": np.zeros((6, 1), np.float32)}, "fuse-bn-affine",
                    "BatchNormalization mean has shape [6, 1], expected [6]")


def test_bn_affine_channel_cap(rng: np.random.Generator) -> None:
    class Small(FuseBatchNormAffine):
        name = "test-small-bn-affine"
        max_stored_elements = 4

    m = from_text(bn_op(), inits(rng))
    rep = explain(m, Small(), jit=ctx_for(m))
    assert [c.reason for c in rep.candidates] == ["6 channels: the new parameters would exceed 4 elements each"]


# ----------------------------------------------------------------------------------------------------------------
# fuse-bn-fill-params (aggressive)
# ----------------------------------------------------------------------------------------------------------------
FILL_PARAMS = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 6, 5, 5] x) => (float[N, 6, 5, 5] y) {
  p = ConstantOfShape <value = float[1] {0.5}> (cs)
  q = ConstantOfShape <value = float[1] {0.25}> (c61)
  qs = Squeeze (q, ax)
  y = BatchNormalization (x, p, qs, mu, p)
}
"""
FILL_INITS = {"cs": np.array([6], np.int64), "c61": np.array([6, 1], np.int64), "ax": np.array([1], np.int64),
              "mu": np.arange(6, dtype=np.float32)}


@pytest.mark.parametrize("dtype", DTYPES)
def test_bn_fill_params_stores_them(dtype: type) -> None:
    text = FILL_PARAMS.replace("float[N", f"{_t(dtype)}[N")
    m = make(text, {**FILL_INITS, "mu": FILL_INITS["mu"].astype(dtype)}, dtype)
    m = check(m, ["fuse-bn-fill-params"], {"fuse-bn-fill-params": 1}, {"BatchNormalization": 1}, level="aggressive",
              dtype=dtype)
    (bn,) = list(m.graph)
    assert bn.input(1) is bn.input(4)  # one chain read as two parameters stays one tensor
    assert bn.input(3).name == "mu"
    np.testing.assert_array_equal(bn.input(2).const.numpy(), np.full(6, 0.25, dtype))


def test_bn_fill_params_only_at_the_aggressive_level() -> None:
    m = from_text(FILL_PARAMS, FILL_INITS)
    assert fuse(m) == {}
    assert fuse(m, level="aggressive") == {"rewrites": 1, "fuse-bn-fill-params": 1}


def test_bn_fill_params_after_the_scale_layer_fuses() -> None:
    """-O3 on a Caffe2 scale layer whose parameters are fills: one BN reading stored parameters only."""
    text = FILL_PARAMS.replace("y = BatchNormalization (x, p, qs, mu, p)",
                               "y0 = BatchNormalization (x, p, qs, mu, p)\n  y1 = Mul (y0, u)\n  y = Add (y1, u)\n"
                               "  u = Unsqueeze (p, ax2)")
    m = from_text(text, {**FILL_INITS, "ax2": np.array([1, 2], np.int64)})
    m.graph.sort()
    m = check(m, ["fuse-bn-affine", "fuse-bn-fill-params"], {"fuse-bn-affine": 2, "fuse-bn-fill-params": 1},
              {"BatchNormalization": 1}, level="aggressive")
    (bn,) = list(m.graph)
    assert all(v.const is not None for v in bn.inputs[1:])


def test_bn_fill_params_already_stored(rng: np.random.Generator) -> None:
    check_not_fused(bn_op(), inits(rng), "fuse-bn-fill-params", "the parameters are stored constants already")


def test_bn_fill_params_chain_read_elsewhere() -> None:
    text = FILL_PARAMS.replace("=> (float[N, 6, 5, 5] y)", "=> (float[N, 6, 5, 5] y, float[6] r)") + ""
    text = text.replace("  y = BatchNormalization", "  r = Relu (p)\n  y = BatchNormalization")
    check_not_fused(text, FILL_INITS, "fuse-bn-fill-params", "BatchNormalization scale ('p') is also read by Relu")


def test_bn_fill_params_chain_is_graph_output() -> None:
    text = FILL_PARAMS.replace("=> (float[N, 6, 5, 5] y)", "=> (float[N, 6, 5, 5] y, float[6] p)")
    check_not_fused(text, FILL_INITS, "fuse-bn-fill-params", "BatchNormalization scale ('p') is a graph output")


def test_bn_fill_params_training_mode() -> None:
    text = FILL_PARAMS.replace("y = BatchNormalization (", "y = BatchNormalization <training_mode = 1> (")
    check_not_fused(text, FILL_INITS, "fuse-bn-fill-params", "is in training mode")


def test_bn_fill_params_unknown() -> None:
    text = FILL_PARAMS.replace("float[N, 6, 5, 5] x)", "float[N, 6, 5, 5] x, float[6] mu)")
    i = dict(FILL_INITS)
    del i["mu"]
    check_not_fused(text, i, "fuse-bn-fill-params", "BatchNormalization mean: 'mu' is a graph input")
