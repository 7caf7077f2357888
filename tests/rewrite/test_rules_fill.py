"""Compact known constants (graphopt.rewrite.rules.known) and the fill family: fuse-conv-bn-fill,
fuse-conv-mul-fill, fuse-conv-add-fill; plus -O2 on onnx's light_resnet50 (weights made by ConstantOfShape)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import pytest

import graphopt
from graphopt.ir import serde
from graphopt.ir.core import Model
from graphopt.ir.tensors import Tensor
from graphopt.rewrite.driver import explain
from graphopt.rewrite.pattern import Fail
from graphopt.rewrite.rules.fill import FuseConvBatchNormFill
from graphopt.rewrite.rules.known import Known, channel_vector, known_value
from graphopt.testing import (
    assert_same_outputs,
    assert_valid,
    corpus_cases,
    corpus_data_sets,
    count_ops,
    from_text,
    run,
    run_pass,
    session,
    snapshot,
)

from .util import check_not_fused, ctx_for, explain_reasons, fuse

BIND = [{"N": 1}, {"N": 3}]
F16 = {"rtol": 2e-2, "atol": 2e-2}
DTYPES = [np.float32, np.float16]
V = 0.05  # the fill value of the weights


def _t(dtype: type) -> str:
    return "float16" if dtype == np.float16 else "float"


def make(text: str, inits: Mapping[str, Any], dtype: type = np.float32) -> Model:
    """A model from ONNX text; in float16, every float ConstantOfShape value becomes float16 (ONNX text has no
    float16 literals)."""
    m = from_text(text, inits)
    if dtype == np.float16:
        for g in m.graph.all_graphs():
            for n in g:
                val = n.attr("value", None) if n.op_type == "ConstantOfShape" else None
                if val is not None and val.dtype == 1:
                    n.set_attr("value", Tensor.from_numpy(val.numpy().astype(np.float16)))
    return m


def check(m: Model, rules: Sequence[str], fired: Mapping[str, int], expect: Mapping[str, int], *,
          bindings: Sequence[Mapping[str, int]] | None = BIND, dtype: type = np.float32,
          level: str = "portable") -> Model:
    """Fuse with `rules`, then dce: the rules fired `fired` times, the op counts are `expect`, the model is valid,
    onnxruntime gives the original's outputs, and a second run changes nothing."""
    before = snapshot(m)
    stats = fuse(m, rules, level=level)
    got = {k: v for k, v in stats.items() if k != "rewrites"}
    assert got == dict(fired), (stats, [explain_reasons(serde.loads(before), r) for r in rules])
    run_pass(m, "dce")
    assert dict(count_ops(m)) == dict(expect), dict(count_ops(m))
    assert_valid(m)
    assert_same_outputs(before, m, bindings=bindings, **(F16 if dtype == np.float16 else {}))
    assert fuse(m, rules, level=level) == {}, "a second run changed something"
    return m


def bn_inits(rng: np.random.Generator, c: int = 6, dtype: type = np.float32) -> dict[str, np.ndarray]:
    return {"s": rng.uniform(0.5, 1.5, c).astype(dtype), "bb": rng.standard_normal(c).astype(dtype),
            "mu": rng.standard_normal(c).astype(dtype), "var": rng.uniform(0.5, 2, c).astype(dtype)}


WS = {"ws": np.array([6, 4, 3, 3], np.int64)}


def conv_bn_fill(dtype: type = np.float32, *, bias: str = "", extra_out: str = "", body: str = "",
                 opset: int = 17, bn_attrs: str = "epsilon = 0.001", w: str = "w", pre: str = "") -> str:
    """Conv(x, fill w) -> BatchNormalization; `pre` goes before the Conv, `body` after the BN."""
    t = _t(dtype)
    b = f", {bias}" if bias else ""
    return f"""
<ir_version: 8, opset_import: ["" : {opset}]>
g ({t}[N, 4, 7, 7] x) => ({t}[N, 6, 7, 7] y{extra_out}) {{
  w = ConstantOfShape <value = float[1] {{{V}}}> (ws)
  {pre}
  c = Conv <pads = [1, 1, 1, 1]> (x, {w}{b})
  y = BatchNormalization <{bn_attrs}> (c, s, bb, mu, var)
  {body}
}}
"""


# ----------------------------------------------------------------------------------------------------------------
# known values
# ----------------------------------------------------------------------------------------------------------------
def _known_of(text: str, inits: Mapping[str, Any], name: str, cap: int = 1 << 24) -> Known | Fail:
    m = from_text(text, inits)
    v = next(o for g in m.graph.all_graphs() for n in g for o in n.outputs if o.name == name)
    return known_value(v, m.opset(""), cap)


CHAIN = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2] x) => (float[2] y) {
  f = ConstantOfShape <value = float[1] {2.5}> (shp)
  u = Unsqueeze (f, ax)
  s = Squeeze (u, ax)
  r = Reshape (s, rs)
  e = Expand (r, es)
  i = Identity (e)
  z = ConstantOfShape (shp)
  y = Add (x, x)
}
"""
CHAIN_INITS = {"shp": np.array([6], np.int64), "ax": np.array([0, -1], np.int64),
               "rs": np.array([1, 6, 1], np.int64), "es": np.array([2, 6, 3], np.int64)}


@pytest.mark.parametrize("name,shape", [("f", (6,)), ("u", (1, 6, 1)), ("s", (6,)), ("r", (1, 6, 1)),
                                        ("e", (2, 6, 3)), ("i", (2, 6, 3))])
def test_known_fill_chain(name: str, shape: tuple[int, ...]) -> None:
    k = _known_of(CHAIN, CHAIN_INITS, name)
    assert isinstance(k, Known) and k.shape == shape and k.is_fill and not k.stored and k.dtype == 1
    assert float(k.base.reshape(-1)[0]) == 2.5 and k.base.ndim == len(shape)


def test_known_value_absent_is_a_float_zero() -> None:
    k = _known_of(CHAIN, CHAIN_INITS, "z")
    assert isinstance(k, Known) and k.dtype == 1 and float(k.base.reshape(-1)[0]) == 0.0 and k.shape == (6,)


def test_known_per_channel_expand_and_reshape_keep_the_base_small() -> None:
    text = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2] x) => (float[2] y) {
  e = Expand (c, es)
  r = Reshape (e, rs)
  m = Reshape (r, flat)
  z = Reshape (e, zs)
  y = Add (x, x)
}
"""
    inits = {"c": np.arange(4, dtype=np.float32).reshape(4, 1, 1), "es": np.array([4, 3, 5], np.int64),
             "rs": np.array([1, 4, 3, -1], np.int64), "flat": np.array([-1], np.int64),
             "zs": np.array([0, 15], np.int64)}
    e = _known_of(text, inits, "e")
    assert isinstance(e, Known) and e.shape == (4, 3, 5) and e.base.shape == (4, 1, 1)
    np.testing.assert_array_equal(e.along(0), np.arange(4.0))
    assert e.along(1) is None
    r = _known_of(text, inits, "r")
    assert isinstance(r, Known) and r.shape == (1, 4, 3, 5) and r.base.shape == (1, 4, 1, 1)
    # flattening moves the varying axis: materialized, within the cap, and refused above it
    flat = _known_of(text, inits, "m")
    assert isinstance(flat, Known) and flat.shape == (60,)
    np.testing.assert_array_equal(flat.array(), np.repeat(np.arange(4.0), 15))
    z = _known_of(text, inits, "z")  # 0 copies the input's dim
    assert isinstance(z, Known) and z.shape == (4, 15)
    np.testing.assert_array_equal(z.array(), np.repeat(np.arange(4.0), 15).reshape(4, 15))
    small = _known_of(text, inits, "m", cap=59)
    assert isinstance(small, Fail) and "materialize (cap 59)" in small.reason


@pytest.mark.parametrize("body,reason", [
    ("f = ConstantOfShape (x2)", "the shape input of ConstantOfShape -> 'f' is not an integer constant"),
    ("f = Relu (c)", "comes from Relu -> 'f', which is not ConstantOfShape"),
    ("f = Identity (x)", "'x' is a graph input, not a known constant"),
    ("f = Expand (c, bad)", "cannot broadcast [4, 1, 1] to [3, 1, 1]"),
])
def test_known_failures(body: str, reason: str) -> None:
    text = f"""
<ir_version: 8, opset_import: ["" : 17]>
g (float[2] x, int64[1] x2) => (float[2] y) {{
  {body}
  y = Add (x, x)
}}
"""
    inits = {"c": np.ones((4, 1, 1), np.float32), "bad": np.array([3, 1, 1], np.int64)}
    got = _known_of(text, inits, "f")
    assert isinstance(got, Fail) and reason in got.reason, got


def test_known_unsqueeze_with_axes_attribute_before_opset_13() -> None:
    text = """
<ir_version: 7, opset_import: ["" : 11]>
g (float[2] x) => (float[2] y) {
  f = ConstantOfShape <value = float[1] {1.5}> (shp)
  u = Unsqueeze <axes = [1, 2]> (f)
  y = Add (x, x)
}
"""
    k = _known_of(text, {"shp": np.array([6], np.int64)}, "u")
    assert isinstance(k, Known) and k.shape == (6, 1, 1)
    np.testing.assert_array_equal(channel_vector(k, 4, 6, "k"), np.full(6, 1.5))  # type: ignore[arg-type]


def test_channel_vector_rejects_other_axes_and_rank_growth() -> None:
    k = Known(np.ones((1, 1, 7, 1)), (1, 1, 7, 1), 1)
    got = channel_vector(k, 4, 6, "k")
    assert isinstance(got, Fail) and "varies along axis 2" in got.reason
    k = Known(np.ones((1,) * 5), (1,) * 5, 1)
    got = channel_vector(k, 4, 6, "k")
    assert isinstance(got, Fail) and "rank 5 > 4" in got.reason
    got = channel_vector(Known(np.ones((6, 1, 1)), (6, 1, 1), 1), None, 6, "k")
    assert isinstance(got, Fail) and "the rank of the result is unknown" in got.reason
    np.testing.assert_array_equal(channel_vector(Known(np.full((1,), 3.0), (1,), 1), None, 6, "k"), np.full(6, 3.0))


# ----------------------------------------------------------------------------------------------------------------
# fuse-conv-bn-fill
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", ["", "cb", "cbf"])
def test_conv_bn_fill(rng: np.random.Generator, dtype: type, bias: str) -> None:
    """A fill weight + BN with per-channel parameters: Expand of M numbers; bias stored, a fill, or absent."""
    body = "cbf = ConstantOfShape <value = float[1] {0.25}> (cs)" if bias == "cbf" else ""
    inits = {**WS, **bn_inits(rng, dtype=dtype), "cb": rng.standard_normal(6).astype(dtype),
             "cs": np.array([6], np.int64)}
    m = make(conv_bn_fill(dtype, bias=bias, body=body), inits, dtype)
    m = check(m, ["fuse-conv-bn-fill"], {"fuse-conv-bn-fill": 1}, {"Expand": 1, "Conv": 1}, dtype=dtype)
    exp, conv = list(m.graph)
    # the weight is the old fill's own shape constant expanding M numbers; the bias is M numbers
    assert exp.input(1).name == "ws" and tuple(exp.input(0).const.shape) == (6, 1, 1, 1)
    assert conv.input(1) is exp.output and tuple(conv.input(2).const.shape) == (6,)
    assert conv.input(2).const.dtype == exp.input(0).const.dtype == (10 if dtype == np.float16 else 1)
    assert conv.attr("pads") == [1, 1, 1, 1] and [o.name for o in m.graph.outputs] == ["y"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_bn_fill_uniform_params_make_a_new_fill(dtype: type) -> None:
    """BN parameters that are fills themselves (Caffe2's light models): the folded weight is still a fill."""
    body = "p = ConstantOfShape <value = float[1] {0.5}> (cs)"
    text = conv_bn_fill(dtype, body=body).replace("(c, s, bb, mu, var)", "(c, p, p, p, p)")
    m = make(text, {**WS, "cs": np.array([6], np.int64)}, dtype)
    m = check(m, ["fuse-conv-bn-fill"], {"fuse-conv-bn-fill": 1}, {"ConstantOfShape": 1, "Conv": 1}, dtype=dtype)
    fill, conv = list(m.graph)
    assert fill.input(0).name == "ws" and conv.input(1) is fill.output
    want = np.float64(dtype(V)) * 0.5 / np.sqrt(0.5 + np.float64(np.float32(0.001)))
    got = fill.attr("value").numpy()
    assert got.dtype == dtype and got.shape == (1,)
    assert got[0] == np.asarray(want).astype(dtype)


def test_conv_bn_fill_params_through_reshape_chains(rng: np.random.Generator) -> None:
    pre = """
  f = ConstantOfShape <value = float[1] {0.7}> (c16)
  s1 = Reshape (f, cs)
  f2 = ConstantOfShape <value = float[1] {1.3}> (c61)
  v1 = Squeeze (f2, ax)
"""
    text = conv_bn_fill(pre=pre).replace("(c, s, bb, mu, var)", "(c, s1, bb, mu, v1)")
    inits = {**WS, **bn_inits(rng), "cs": np.array([6], np.int64), "c16": np.array([1, 6], np.int64),
             "c61": np.array([6, 1], np.int64), "ax": np.array([1], np.int64)}
    m = check(from_text(text, inits), ["fuse-conv-bn-fill"], {"fuse-conv-bn-fill": 1},
              {"ConstantOfShape": 1, "Conv": 1})
    fill = next(n for n in m.graph if n.op_type == "ConstantOfShape")
    want = np.float32(V) * (np.float64(np.float32(0.7)) / np.sqrt(np.float64(np.float32(1.3)) + np.float32(0.001)))
    assert fill.attr("value").numpy()[0] == np.float32(want)


def test_conv_bn_fill_bn_output_is_graph_output_and_default_epsilon(rng: np.random.Generator) -> None:
    m = make(conv_bn_fill(bn_attrs="momentum = 0.9"), {**WS, **bn_inits(rng)})
    m = check(m, ["fuse-conv-bn-fill"], {"fuse-conv-bn-fill": 1}, {"Expand": 1, "Conv": 1})
    assert m.graph.outputs[0].name == "y" and m.graph.outputs[0].producer.op_type == "Conv"


def test_conv_bn_fill_shared_weight_both_fused(rng: np.random.Generator) -> None:
    """One fill read by two Convs, each with its own BN: both fuse, each with its own weight; the fill dies."""
    body = """
  c2 = Conv <pads = [1, 1, 1, 1]> (x, w)
  z = BatchNormalization (c2, s2, bb, mu, var)
"""
    inits = {**WS, **bn_inits(rng), "s2": rng.uniform(0.5, 1.5, 6).astype(np.float32)}
    m = make(conv_bn_fill(extra_out=", float[N, 6, 7, 7] z", body=body), inits)
    m = check(m, ["fuse-conv-bn-fill"], {"fuse-conv-bn-fill": 2}, {"Expand": 2, "Conv": 2})
    e1, e2 = (n for n in m.graph if n.op_type == "Expand")
    assert e1.input(1) is e2.input(1)  # both read the same stored shape constant


def test_conv_bn_fill_shared_weight_other_reader_unchanged(rng: np.random.Generator) -> None:
    """The fill is also the weight of a Conv with no BN: that Conv keeps it, unchanged."""
    body = "z = Conv <pads = [1, 1, 1, 1]> (x, w)"
    m = make(conv_bn_fill(extra_out=", float[N, 6, 7, 7] z", body=body), {**WS, **bn_inits(rng)})
    m = check(m, ["fuse-conv-bn-fill"], {"fuse-conv-bn-fill": 1}, {"ConstantOfShape": 1, "Expand": 1, "Conv": 2})
    (fill,) = (n for n in m.graph if n.op_type == "ConstantOfShape")
    (z,) = (n for n in m.graph if n.op_type == "Conv" and n.output.name == "z")
    assert z.input(1) is fill.output and float(fill.attr("value").numpy()[0]) == pytest.approx(V)


def test_conv_bn_fill_stored_weight_with_fill_params(rng: np.random.Generator) -> None:
    """A stored weight with fill BN parameters (fuse-conv-bn needs stored ones): scaled in full, replacing it."""
    body = "p = ConstantOfShape <value = float[1] {0.5}> (cs)"
    text = conv_bn_fill(body=body, w="wt").replace("(c, s, bb, mu, var)", "(c, p, bb, mu, p)")
    inits = {**WS, **bn_inits(rng), "cs": np.array([6], np.int64),
             "wt": rng.standard_normal((6, 4, 3, 3)).astype(np.float32)}
    m = make(text, inits)
    m = check(m, ["fuse-conv-bn-fill"], {"fuse-conv-bn-fill": 1}, {"Conv": 1})
    assert "wt" not in m.graph.initializers


def test_conv_bn_fill_inside_if_branch(rng: np.random.Generator) -> None:
    """The Conv and BN are in a branch, the fill in the main graph: the new weight is built in the branch."""
    text = f"""
<ir_version: 8, opset_import: ["" : 17]>
g (bool cond, float[N, 4, 7, 7] x) => (float[N, 6, 7, 7] y) {{
  w = ConstantOfShape <value = float[1] {{{V}}}> (ws)
  y = If (cond) <
    then_branch = t () => (float[N, 6, 7, 7] ty) {{
      tc = Conv <pads = [1, 1, 1, 1]> (x, w)
      ty = BatchNormalization (tc, s, bb, mu, var)
    }},
    else_branch = e () => (float[N, 6, 7, 7] ey) {{
      ey = Conv <pads = [1, 1, 1, 1]> (x, w)
    }}
  >
}}
"""
    m = from_text(text, {**WS, **bn_inits(rng)})
    before = snapshot(m)
    assert fuse(m, ["fuse-conv-bn-fill"]) == {"rewrites": 1, "fuse-conv-bn-fill": 1}
    run_pass(m, "dce")
    assert dict(count_ops(m)) == {"ConstantOfShape": 1, "If": 1, "Expand": 1, "Conv": 2}
    then_g = next(n for n in m.graph if n.op_type == "If").subgraphs()[0]
    assert [n.op_type for n in then_g] == ["Expand", "Conv"] and then_g.outputs[0].name == "ty"
    assert_valid(m)
    rng2 = np.random.default_rng(0)
    for c in (True, False):
        feeds = {"cond": np.array(c), "x": rng2.standard_normal((2, 4, 7, 7)).astype(np.float32)}
        np.testing.assert_allclose(run(m, feeds)[0], run(before, feeds)[0], rtol=1e-4, atol=1e-5)
    assert fuse(m, ["fuse-conv-bn-fill"]) == {}


# -- negatives: one per precondition -------------------------------------------------------------------------------
def test_conv_bn_fill_training_mode(rng: np.random.Generator) -> None:
    text = conv_bn_fill(bn_attrs="training_mode = 1")
    check_not_fused(text, {**WS, **bn_inits(rng)}, "fuse-conv-bn-fill", "is in training mode")


def test_conv_bn_fill_opset_before_9(rng: np.random.Generator) -> None:
    check_not_fused(conv_bn_fill(opset=8), {**WS, **bn_inits(rng)}, "fuse-conv-bn-fill",
                    "the model's opset 8 is outside the rule's range (>= 9)")


def test_conv_bn_fill_weight_unknown(rng: np.random.Generator) -> None:
    text = conv_bn_fill(w="wr", pre="wr = Relu (w)")
    check_not_fused(text, {**WS, **bn_inits(rng)}, "fuse-conv-bn-fill",
                    "the weight of Conv -> 'c': 'wr' comes from Relu -> 'wr', which is not ConstantOfShape")


def test_conv_bn_fill_weight_varies_along_input_channels(rng: np.random.Generator) -> None:
    text = conv_bn_fill(w="we", pre="we = Expand (ic, ws)")
    inits = {**WS, **bn_inits(rng), "ic": rng.standard_normal((1, 4, 1, 1)).astype(np.float32)}
    check_not_fused(text, inits, "fuse-conv-bn-fill", "varies along more than its output channels")


def test_conv_bn_fill_param_unknown(rng: np.random.Generator) -> None:
    text = conv_bn_fill().replace("float[N, 4, 7, 7] x)", "float[N, 4, 7, 7] x, float[6] s)")
    inits = {**WS, **bn_inits(rng)}
    del inits["s"]
    check_not_fused(text, inits, "fuse-conv-bn-fill", "BatchNormalization scale: 's' is a graph input")


def test_conv_bn_fill_param_shape(rng: np.random.Generator) -> None:
    inits = {**WS, **bn_inits(rng), "mu": np.zeros((6, 1), np.float32)}
    check_not_fused(conv_bn_fill(), inits, "fuse-conv-bn-fill", "BatchNormalization mean has shape [6, 1]")


def test_conv_bn_fill_bias_shape(rng: np.random.Generator) -> None:
    inits = {**WS, **bn_inits(rng), "cb": np.zeros(1, np.float32)}
    check_not_fused(conv_bn_fill(bias="cb"), inits, "fuse-conv-bn-fill", "the conv bias has shape [1], expected [6]")


def test_conv_bn_fill_bias_unknown(rng: np.random.Generator) -> None:
    text = conv_bn_fill(bias="cb").replace("float[N, 4, 7, 7] x)", "float[N, 4, 7, 7] x, float[6] cb)")
    check_not_fused(text, {**WS, **bn_inits(rng)}, "fuse-conv-bn-fill", "the conv bias: 'cb' is a graph input")


def test_conv_bn_fill_all_stored_is_fuse_conv_bn_case(rng: np.random.Generator) -> None:
    inits = {**WS, **bn_inits(rng), "wt": rng.standard_normal((6, 4, 3, 3)).astype(np.float32)}
    check_not_fused(conv_bn_fill(w="wt"), inits, "fuse-conv-bn-fill", "the plain rule's case")


def test_conv_bn_fill_stored_weight_shared(rng: np.random.Generator) -> None:
    body = "p = ConstantOfShape <value = float[1] {0.5}> (cs)\n  z = Conv <pads = [1, 1, 1, 1]> (x, wt)"
    text = conv_bn_fill(w="wt", pre=body, extra_out=", float[N, 6, 7, 7] z").replace("(c, s, bb", "(c, p, bb")
    inits = {**WS, **bn_inits(rng), "cs": np.array([6], np.int64),
             "wt": rng.standard_normal((6, 4, 3, 3)).astype(np.float32)}
    check_not_fused(text, inits, "fuse-conv-bn-fill", "the conv weight 'wt' is shared with Conv")


def test_conv_bn_fill_conv_output_escapes(rng: np.random.Generator) -> None:
    text = conv_bn_fill(extra_out=", float[N, 6, 7, 7] z", body="z = Relu (c)")
    check_not_fused(text, {**WS, **bn_inits(rng)}, "fuse-conv-bn-fill", "intermediate 'c' (Conv -> 'c') is also read")


def test_conv_bn_fill_channel_cap(rng: np.random.Generator) -> None:
    class Small(FuseConvBatchNormFill):
        name = "test-small-conv-bn-fill"
        max_stored_elements = 4

    m = make(conv_bn_fill(), {**WS, **bn_inits(rng)})
    ctx = ctx_for(m)
    rep = explain(m, Small(), jit=ctx)
    assert [c.reason for c in rep.candidates] == [
        "6 channels: the folded per-channel tensors would exceed 4 elements"]


def test_conv_bn_fill_element_cap(rng: np.random.Generator) -> None:
    """A known value that would have to be materialized beyond the cap is refused (memory stays bounded)."""
    class Small(FuseConvBatchNormFill):
        name = "test-small-conv-bn-fill"
        max_elements = 4

    pre = ("p = ConstantOfShape <value = float[1] {0.5}> (cs)\n  vx = Expand (vc, c23)\n"
           "  vr = Reshape (vx, cs)")
    text = conv_bn_fill(pre=pre).replace("(c, s, bb, mu, var)", "(c, p, p, p, vr)")
    inits = {**WS, "cs": np.array([6], np.int64), "c23": np.array([2, 3], np.int64),
             "vc": np.array([[1.0], [2.0]], np.float32)}
    m = make(text, inits)
    rep = explain(m, Small(), jit=ctx_for(m))
    assert "materialize (cap 4)" in rep.candidates[0].reason, rep.candidates
    assert explain(m, FuseConvBatchNormFill(), jit=ctx_for(m)).candidates[0].reason == "fired"


# ----------------------------------------------------------------------------------------------------------------
# fuse-conv-mul-fill / fuse-conv-add-fill
# ----------------------------------------------------------------------------------------------------------------
def conv_affine_fill(op: str, dtype: type = np.float32, *, bias: str = "", c: str = "k", w: str = "w",
                     body: str = "", extra_out: str = "", pre: str = "") -> str:
    """Conv(x, fill w) -> `op` (Mul / Add) with `c`; `pre` goes before the Conv, `body` after."""
    t = _t(dtype)
    b = f", {bias}" if bias else ""
    return f"""
<ir_version: 8, opset_import: ["" : 17]>
g ({t}[N, 4, 7, 7] x) => ({t}[N, 6, 7, 7] y{extra_out}) {{
  w = ConstantOfShape <value = float[1] {{{V}}}> (ws)
  {pre}
  cv = Conv <pads = [1, 1, 1, 1]> (x, {w}{b})
  y = {op} (cv, {c})
  {body}
}}
"""


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", ["", "cb"])
def test_conv_mul_fill(rng: np.random.Generator, dtype: type, bias: str) -> None:
    inits = {**WS, "k": rng.uniform(0.5, 2, (6, 1, 1)).astype(dtype), "cb": rng.standard_normal(6).astype(dtype)}
    m = make(conv_affine_fill("Mul", dtype, bias=bias), inits, dtype)
    expect = {"Expand": 1, "Conv": 1}
    m = check(m, ["fuse-conv-mul-fill"], {"fuse-conv-mul-fill": 1}, expect, dtype=dtype)
    conv = next(n for n in m.graph if n.op_type == "Conv")
    assert conv.num_inputs == (3 if bias else 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_add_fill_keeps_the_weight(rng: np.random.Generator, dtype: type) -> None:
    """Add of a per-channel fill chain (Unsqueeze of ConstantOfShape): the bias absorbs it, the weight stays."""
    body = "kf = ConstantOfShape <value = float[1] {0.3}> (cs)\n  ku = Unsqueeze (kf, ax)"
    inits = {**WS, "cs": np.array([6], np.int64), "ax": np.array([1, 2], np.int64),
             "cb": rng.standard_normal(6).astype(dtype)}
    m = make(conv_affine_fill("Add", dtype, c="ku", bias="cb", pre=body), inits, dtype)
    m = check(m, ["fuse-conv-add-fill"], {"fuse-conv-add-fill": 1}, {"ConstantOfShape": 1, "Conv": 1}, dtype=dtype)
    fill, conv = list(m.graph)
    assert conv.input(1) is fill.output and fill.input(0).name == "ws"


def test_conv_mul_fill_uniform_scale_keeps_a_fill() -> None:
    m = make(conv_affine_fill("Mul", c="k"), {**WS, "k": np.array(2.0, np.float32)})
    m = check(m, ["fuse-conv-mul-fill"], {"fuse-conv-mul-fill": 1}, {"ConstantOfShape": 1, "Conv": 1})
    fill = next(n for n in m.graph if n.op_type == "ConstantOfShape")
    assert float(fill.attr("value").numpy()[0]) == np.float32(V) * np.float32(2.0)


def test_conv_mul_fill_stored_weight_by_fill_chain(rng: np.random.Generator) -> None:
    body = "kf = ConstantOfShape <value = float[1] {0.3}> (c611)"
    inits = {**WS, "c611": np.array([6, 1, 1], np.int64), "wt": rng.standard_normal((6, 4, 3, 3)).astype(np.float32)}
    m = make(conv_affine_fill("Mul", c="kf", w="wt", pre=body), inits)
    check(m, ["fuse-conv-mul-fill"], {"fuse-conv-mul-fill": 1}, {"Conv": 1})


def test_conv_add_fill_weight_is_a_graph_input(rng: np.random.Generator) -> None:
    text = conv_affine_fill("Add", c="kf", w="wi", pre="kf = ConstantOfShape <value = float[1] {0.3}> (c611)")
    text = text.replace("float[N, 4, 7, 7] x)", "float[N, 4, 7, 7] x, float[6, 4, 3, 3] wi)")
    m = make(text, {**WS, "c611": np.array([6, 1, 1], np.int64)})
    check(m, ["fuse-conv-add-fill"], {"fuse-conv-add-fill": 1}, {"Conv": 1})


def test_conv_bn_mul_add_chain_fuses_into_one_conv(rng: np.random.Generator) -> None:
    """Conv(fill) -> BN -> Mul -> Add (Caffe2's conv + scale layer): every step fuses, one Conv is left."""
    body = "m1 = Mul (y0, k)\n  y = Add (m1, k2)"
    text = conv_bn_fill(body=body).replace("y = BatchNormalization", "y0 = BatchNormalization")
    inits = {**WS, **bn_inits(rng), "k": rng.uniform(0.5, 2, (6, 1, 1)).astype(np.float32),
             "k2": rng.standard_normal((6, 1, 1)).astype(np.float32)}
    m = make(text, inits)
    check(m, ["fuse-conv-bn-fill", "fuse-conv-mul-fill", "fuse-conv-add-fill"],
          {"fuse-conv-bn-fill": 1, "fuse-conv-mul-fill": 1, "fuse-conv-add-fill": 1}, {"Expand": 1, "Conv": 1})


def test_conv_mul_fill_operand_unknown() -> None:
    text = conv_affine_fill("Mul").replace("float[N, 4, 7, 7] x)", "float[N, 4, 7, 7] x, float[6, 1, 1] k)")
    check_not_fused(text, WS, "fuse-conv-mul-fill", "the other operand of Mul -> 'y': 'k' is a graph input")


def test_conv_mul_fill_operand_not_per_channel(rng: np.random.Generator) -> None:
    inits = {**WS, "k": rng.standard_normal((1, 7, 1)).astype(np.float32)}
    check_not_fused(conv_affine_fill("Mul"), inits, "fuse-conv-mul-fill", "it varies along axis 2")


def test_conv_add_fill_all_stored_is_fuse_conv_add_case(rng: np.random.Generator) -> None:
    inits = {**WS, "k": rng.standard_normal((6, 1, 1)).astype(np.float32),
             "wt": rng.standard_normal((6, 4, 3, 3)).astype(np.float32)}
    check_not_fused(conv_affine_fill("Add", w="wt"), inits, "fuse-conv-add-fill", "(fuse-conv-add's case)")


def test_conv_mul_fill_all_stored_is_fuse_conv_mul_case(rng: np.random.Generator) -> None:
    inits = {**WS, "k": rng.standard_normal((6, 1, 1)).astype(np.float32),
             "wt": rng.standard_normal((6, 4, 3, 3)).astype(np.float32)}
    check_not_fused(conv_affine_fill("Mul", w="wt"), inits, "fuse-conv-mul-fill", "the plain rule's case")


def test_conv_add_fill_weight_shape_unknown() -> None:
    text = conv_affine_fill("Add", c="kf", w="wi", pre="kf = ConstantOfShape <value = float[1] {0.3}> (c611)")
    text = text.replace("float[N, 4, 7, 7] x)", "float[N, 4, 7, 7] x, float[6, 4, M, 3] wi)")
    inits = {**WS, "c611": np.array([6, 1, 1], np.int64)}
    check_not_fused(text, inits, "fuse-conv-add-fill", "'wi' is not a known constant and its static shape is unknown")


def test_conv_mul_fill_conv_output_escapes(rng: np.random.Generator) -> None:
    text = conv_affine_fill("Mul", extra_out=", float[N, 6, 7, 7] z", body="z = Relu (cv)")
    inits = {**WS, "k": rng.standard_normal((6, 1, 1)).astype(np.float32)}
    check_not_fused(text, inits, "fuse-conv-mul-fill", "intermediate 'cv' (Conv -> 'cv') is also read by Relu")


# ----------------------------------------------------------------------------------------------------------------
# onnx's light_resnet50: Caffe2 weights made by ConstantOfShape
# ----------------------------------------------------------------------------------------------------------------
LIGHT = {c.id: c for c in corpus_cases(nodes=False) if c.id.startswith("light/")}


@pytest.mark.skipif("light/light_resnet50" not in LIGHT, reason="onnx's light_resnet50.onnx is not installed")
def test_light_resnet50_fuses_without_growing() -> None:
    case = LIGHT["light/light_resnet50"]
    assert case.path is not None
    with open(case.path, "rb") as f:
        original = f.read()
    base = graphopt.optimize(serde.loads(original), strict=True,
                             options={"fuse": {"skip_rules": ("fuse-conv-bn-fill", "fuse-conv-mul-fill",
                                                              "fuse-conv-add-fill", "fuse-bn-affine")}})
    res = graphopt.run(serde.loads(original), preset="O2", strict=True)
    assert not res.record.failed
    m = res.model
    n_base, n_new = len(list(base.graph)), len(list(m.graph))
    assert n_new < n_base - 40, (n_base, n_new)
    ops = count_ops(m)
    assert ops.get("BatchNormalization", 0) == 0, dict(ops)
    data = serde.dumps(m)
    assert len(data) < 2 * len(original), (len(data), len(original))
    mp = onnx.ModelProto()
    mp.ParseFromString(data)
    onnx.checker.check_model(mp, full_check=True)
    # outputs: the reference output, and the logits (the Softmax input) against the original's
    (ins, outs), = corpus_data_sets(case)
    sess = session(data)
    feeds = {i.name: x for i, x in zip(sess.get_inputs(), ins)}
    for got, want in zip(sess.run(None, feeds), outs):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    logits = _softmax_input(mp)
    a, b = _with_output(original, logits), _with_output(data, logits)
    ra = session(a).run([logits], feeds)[0]
    rb = session(b).run([logits], feeds)[0]
    np.testing.assert_allclose(rb, ra, rtol=1e-4, atol=1e-5)
    rand = {k: np.random.default_rng(1).standard_normal(v.shape).astype(np.float32) for k, v in feeds.items()}
    np.testing.assert_allclose(session(b).run([logits], rand)[0], session(a).run([logits], rand)[0],
                               rtol=1e-4, atol=1e-5)


def _softmax_input(mp: onnx.ModelProto) -> str:
    (sm,) = (n for n in mp.graph.node if n.op_type == "Softmax")
    return sm.input[0]


def _with_output(data: bytes, name: str) -> bytes:
    mp = onnx.ModelProto()
    mp.ParseFromString(data)
    mp.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return mp.SerializeToString()


def test_light_models_dir_is_what_the_corpus_says() -> None:
    """Guards the skip above: when onnx ships the light models, the corpus lists resnet50 among them."""
    d = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    if os.path.exists(os.path.join(d, "light_resnet50.onnx")):
        assert "light/light_resnet50" in LIGHT
