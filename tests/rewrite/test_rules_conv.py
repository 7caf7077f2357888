"""Conv + BatchNormalization, ConvTranspose + BatchNormalization, Conv + per-channel Add / Mul."""

from __future__ import annotations

import numpy as np
import pytest

from .util import check_fuses, check_not_fused

BIND = [{"N": 1}, {"N": 3}]
F16 = {"rtol": 2e-2, "atol": 2e-2}


def _t(dtype: type) -> str:
    return "float16" if dtype == np.float16 else "float"


def bn(rng: np.random.Generator, c: int, dtype: type = np.float32) -> dict:
    return {"s": rng.uniform(0.5, 1.5, c).astype(dtype), "bb": rng.standard_normal(c).astype(dtype),
            "mu": rng.standard_normal(c).astype(dtype), "var": rng.uniform(0.5, 2, c).astype(dtype)}


def conv_bn_text(dtype: type = np.float32, *, opset: int = 17, bias: bool = False, group: int = 1,
                 extra: str = "", bn_attrs: str = "epsilon = 0.001", cin: int = 4, cout: int = 6) -> str:
    t = _t(dtype)
    b = ", cb" if bias else ""
    return f"""
<ir_version: 8, opset_import: ["" : {opset}]>
g ({t}[N, {cin}, 7, 7] x) => ({t}[N, {cout}, 7, 7] y{extra and f', {t}[N, {cout}, 7, 7] z'}) {{
  c = Conv <pads = [1, 1, 1, 1], group = {group}> (x, w{b})
  y = BatchNormalization <{bn_attrs}> (c, s, bb, mu, var)
  {extra}
}}
"""


def conv_bn_inits(rng: np.random.Generator, dtype: type = np.float32, *, group: int = 1, cin: int = 4,
                  cout: int = 6) -> dict:
    return {"w": (rng.standard_normal((cout, cin // group, 3, 3)) * 0.3).astype(dtype),
            "cb": rng.standard_normal(cout).astype(dtype), **bn(rng, cout, dtype)}


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("bias,group", [(False, 1), (True, 1), (True, 2)])
def test_conv_bn(rng: np.random.Generator, dtype: type, bias: bool, group: int) -> None:
    tol = F16 if dtype == np.float16 else {}
    m = check_fuses(conv_bn_text(dtype, bias=bias, group=group), conv_bn_inits(rng, dtype, group=group),
                    "fuse-conv-bn", {"Conv": 1}, bindings=BIND, **tol)
    (conv,) = list(m.graph)
    assert conv.attr("group", 1) == group and conv.attr("pads") == [1, 1, 1, 1]
    assert conv.input(1).const.dtype == conv.input(2).const.dtype == (10 if dtype == np.float16 else 1)
    assert [o.name for o in m.graph.outputs] == ["y"]


def test_conv_bn_opset_7_and_9(rng: np.random.Generator) -> None:
    for opset in (7, 9):
        check_fuses(conv_bn_text(opset=opset), conv_bn_inits(rng), "fuse-conv-bn", {"Conv": 1}, bindings=BIND)


def test_conv_bn_weight_shared(rng: np.random.Generator) -> None:
    text = conv_bn_text(extra="z = Conv <pads = [1, 1, 1, 1]> (x, w)")
    check_not_fused(text, conv_bn_inits(rng), "fuse-conv-bn", "the conv weight 'w' is shared with Conv")


def test_conv_bn_opset_out_of_range(rng: np.random.Generator) -> None:
    check_not_fused(conv_bn_text(opset=6), conv_bn_inits(rng), "fuse-conv-bn",
                    "the model's opset 6 is outside the rule's range (>= 7)")


def test_conv_bn_params_not_constant(rng: np.random.Generator) -> None:
    text = conv_bn_text().replace("float[N, 4, 7, 7] x)", "float[N, 4, 7, 7] x, float[6] s)")
    inits = conv_bn_inits(rng)
    del inits["s"]
    check_not_fused(text, inits, "fuse-conv-bn", "input 1 of BatchNormalization -> 'y' ('s') is not a constant")


def test_conv_bn_weight_not_constant(rng: np.random.Generator) -> None:
    text = conv_bn_text().replace("float[N, 4, 7, 7] x)", "float[N, 4, 7, 7] x, float[6, 4, 3, 3] w)")
    inits = conv_bn_inits(rng)
    del inits["w"]
    check_not_fused(text, inits, "fuse-conv-bn", "('w') is not a constant")


def test_conv_bn_training_mode(rng: np.random.Generator) -> None:
    check_not_fused(conv_bn_text(bn_attrs="training_mode = 1"), conv_bn_inits(rng), "fuse-conv-bn",
                    "is in training mode")


def test_conv_bn_spatial_0_before_opset_9(rng: np.random.Generator) -> None:
    check_not_fused(conv_bn_text(opset=8, bn_attrs="spatial = 0"), conv_bn_inits(rng), "fuse-conv-bn",
                    "spatial=0")


CONVT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4, 5, 5] x) => (float[N, 6, 11, 11] y) {
  c = ConvTranspose <strides = [2, 2], group = GROUP> (x, w)
  y = BatchNormalization (c, s, bb, mu, var)
}
"""


@pytest.mark.parametrize("group", [1, 2])
def test_convtranspose_bn(rng: np.random.Generator, group: int) -> None:
    inits = {"w": (rng.standard_normal((4, 6 // group, 3, 3)) * 0.3).astype(np.float32), **bn(rng, 6)}
    check_fuses(CONVT.replace("GROUP", str(group)), inits, "fuse-convtranspose-bn", {"ConvTranspose": 1},
                bindings=BIND)


# ----------------------------------------------------------------------------------------------------------------
def affine_text(op: str, cshape: str, dtype: type = np.float32, conv: str = "Conv", order: str = "c, k") -> str:
    t = _t(dtype)
    return f"""
<ir_version: 8, opset_import: ["" : 17]>
g ({t}[N, 4, 7, 7] x) => ({t}[N, 6, 7, 7] y) {{
  c = {conv} <pads = [1, 1, 1, 1]> (x, w, cb)
  y = {op}({order})
}}
"""


@pytest.mark.parametrize("op", ["Add", "Mul"])
@pytest.mark.parametrize("kshape", [(6, 1, 1), (1, 6, 1, 1), (), (1,)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_conv_affine(rng: np.random.Generator, op: str, kshape: tuple, dtype: type) -> None:
    inits = {"w": (rng.standard_normal((6, 4, 3, 3)) * 0.3).astype(dtype), "cb": rng.standard_normal(6).astype(dtype),
             "k": rng.uniform(0.5, 2, kshape).astype(dtype)}
    tol = F16 if dtype == np.float16 else {}
    m = check_fuses(affine_text(op, "", dtype, order="k, c" if kshape == () else "c, k"), inits,
                    f"fuse-conv-{op.lower()}", {"Conv": 1}, bindings=BIND, **tol)
    (conv,) = list(m.graph)
    if op == "Add":
        assert conv.input(1).name == "w"  # the weight is reused, not copied


def test_conv_add_without_conv_bias(rng: np.random.Generator) -> None:
    text = affine_text("Add", "").replace("(x, w, cb)", "(x, w)")
    inits = {"w": rng.standard_normal((6, 4, 3, 3)).astype(np.float32), "k": rng.standard_normal((6, 1, 1))
             .astype(np.float32)}
    m = check_fuses(text, inits, "fuse-conv-add", {"Conv": 1}, bindings=BIND)
    assert next(iter(m.graph)).num_inputs == 3


def test_convtranspose_add_and_mul(rng: np.random.Generator) -> None:
    text = CONVT.replace("GROUP", "2").replace("y = BatchNormalization (c, s, bb, mu, var)", "d = Mul(c, k)\n  y = Add(d, k2)")
    inits = {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "k": rng.uniform(0.5, 2, (6, 1, 1))
             .astype(np.float32), "k2": rng.standard_normal((6, 1, 1)).astype(np.float32)}
    from graphopt.testing import assert_same_outputs, count_ops, from_text, snapshot

    from .util import fuse

    m = from_text(text, inits)
    before = snapshot(m)
    assert fuse(m, ["fuse-conv-mul", "fuse-conv-add"]) == {"rewrites": 2, "fuse-conv-mul": 1, "fuse-conv-add": 1}
    assert dict(count_ops(m)) == {"ConvTranspose": 1}
    assert_same_outputs(before, m, bindings=BIND)


def test_conv_add_spatially_varying_constant(rng: np.random.Generator) -> None:
    inits = {"w": rng.standard_normal((6, 4, 3, 3)).astype(np.float32), "cb": np.zeros(6, np.float32),
             "k": rng.standard_normal((6, 7, 7)).astype(np.float32)}
    check_not_fused(affine_text("Add", ""), inits, "fuse-conv-add", "it varies along axis 2")


def test_conv_add_constant_of_higher_rank(rng: np.random.Generator) -> None:
    inits = {"w": rng.standard_normal((6, 4, 3, 3)).astype(np.float32), "cb": np.zeros(6, np.float32),
             "k": rng.standard_normal((1, 1, 6, 1, 1)).astype(np.float32)}
    check_not_fused(affine_text("Add", ""), inits, "fuse-conv-add", "has rank 5 > 4")


def test_conv_add_wrong_channel_count(rng: np.random.Generator) -> None:
    inits = {"w": rng.standard_normal((6, 4, 3, 3)).astype(np.float32), "cb": np.zeros(6, np.float32),
             "k": rng.standard_normal((1, 7, 1, 1)).astype(np.float32)}
    text = affine_text("Add", "").replace("float[N, 6, 7, 7] y", "float[N, 7, 7, 7] y")
    check_not_fused(text, inits, "fuse-conv-add", "has 7 values along the channel axis, the conv has 6")


def test_conv_add_non_constant_addend(rng: np.random.Generator) -> None:
    text = affine_text("Add", "").replace("float[N, 4, 7, 7] x)", "float[N, 4, 7, 7] x, float[6, 1, 1] k)")
    inits = {"w": rng.standard_normal((6, 4, 3, 3)).astype(np.float32), "cb": np.zeros(6, np.float32)}
    check_not_fused(text, inits, "fuse-conv-add", "('k') is not a constant")


def test_conv_mul_weight_shared(rng: np.random.Generator) -> None:
    text = affine_text("Mul", "").replace("float[N, 6, 7, 7] y)", "float[N, 6, 7, 7] y, float[N, 6, 7, 7] z)") \
        .replace("y = Mul(c, k)", "y = Mul(c, k)\n  z = Conv <pads = [1, 1, 1, 1]> (x, w)")
    inits = {"w": rng.standard_normal((6, 4, 3, 3)).astype(np.float32), "cb": np.zeros(6, np.float32),
             "k": rng.standard_normal((6, 1, 1)).astype(np.float32)}
    check_not_fused(text, inits, "fuse-conv-mul", "is shared with Conv")
