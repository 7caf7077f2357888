"""Reshape merging leading axes + Transpose of the rest + Reshape splitting them back -> one Transpose."""

from __future__ import annotations

import numpy as np
import pytest

from graphopt.testing import assert_same_outputs, assert_valid, count_ops, from_text, run_pass, snapshot

from .util import check_fuses, check_not_fused, fuse

BIND = [{"B": 1, "S": 3}, {"B": 2, "S": 5}]
I64 = np.int64

# torch's dynamo decomposition of k.transpose(-2, -1) inside scaled_dot_product_attention, k [B, 4, S, 16]
SDPA_K = """
<ir_version: 8, opset_import: ["" : 18]>
g (float[B, 4, S, 16] k) => (float[B, 4, 16, S] y) {
  s = Shape (k)
  s1 = Slice (s, m2, m1)
  s0 = Slice (s, lo, m2)
  t1 = Concat <axis = 0> (neg, s1, d)
  r1 = Reshape (k, t1)
  tr = Transpose <perm = [0, 2, 1]> (r1)
  t2 = Concat <axis = 0> (s0, d, s1)
  y = Reshape (tr, t2)
}
"""
SDPA_INITS = {"m2": np.array([-2], I64), "m1": np.array([-1], I64), "lo": np.array([-(1 << 63)], I64),
              "neg": np.array([-1], I64), "d": np.array([16], I64)}


def test_sdpa_key_transpose() -> None:
    m = from_text(SDPA_K, SDPA_INITS)
    before = snapshot(m)
    stats = fuse(m, ["reshape-transpose-reshape"])
    assert stats.get("reshape-transpose-reshape") == 1
    run_pass(m, "dce")
    assert dict(count_ops(m)) == {"Transpose": 1}
    (t,) = list(m.graph)
    assert t.attr("perm") == [0, 1, 3, 2]
    assert_valid(m)
    assert_same_outputs(before, m, bindings=BIND)
    assert fuse(m, ["reshape-transpose-reshape"]) == {}


def static_text(x: str, t1: list[int], perm: list[int], t2: list[int], y: str) -> tuple[str, dict]:
    text = f"""
<ir_version: 8, opset_import: ["" : 17]>
g (float[{x}] x) => (float[{y}] y) {{
  r1 = Reshape (x, t1)
  tr = Transpose <perm = {perm}> (r1)
  y = Reshape (tr, t2)
}}
"""
    return text, {"t1": np.array(t1, I64), "t2": np.array(t2, I64)}


def test_two_leading_axes_three_trailing() -> None:
    # [2, 3, 4, 5, 6] -> [6, 4, 5, 6] -> perm [0, 3, 1, 2] -> [6, 6, 4, 5] -> [2, 3, 6, 4, 5]
    text, inits = static_text("2, 3, 4, 5, 6", [6, 4, 5, 6], [0, 3, 1, 2], [2, 3, 6, 4, 5], "2, 3, 6, 4, 5")
    m = check_fuses(text, inits, "reshape-transpose-reshape", {"Transpose": 1})
    assert next(iter(m.graph)).attr("perm") == [0, 1, 4, 2, 3]


def test_symbolic_leading_axes_computed_target() -> None:
    # [B, S, 4, 8] -> [-1, 4, 8] -> [B*S, 8, 4] -> Concat(Shape(x)[0:2], [8, 4])
    text = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[B, S, 4, 8] x) => (float[B, S, 8, 4] y) {
  r1 = Reshape (x, t1)
  tr = Transpose <perm = [0, 2, 1]> (r1)
  s = Shape <end = 2> (x)
  t2 = Concat <axis = 0> (s, tail)
  y = Reshape (tr, t2)
}
"""
    inits = {"t1": np.array([-1, 4, 8], I64), "tail": np.array([8, 4], I64)}
    m = from_text(text, inits)
    before = snapshot(m)
    assert fuse(m, ["reshape-transpose-reshape"]).get("reshape-transpose-reshape") == 1
    run_pass(m, "dce")
    assert dict(count_ops(m)) == {"Transpose": 1} and next(iter(m.graph)).attr("perm") == [0, 1, 3, 2]
    assert_same_outputs(before, m, bindings=BIND)


# one negative test per precondition
def test_first_reshape_changes_trailing_axes() -> None:
    text, inits = static_text("2, 3, 4, 6", [6, 6, 4], [0, 2, 1], [2, 3, 4, 6], "2, 3, 4, 6")
    check_not_fused(text, inits, "reshape-transpose-reshape", "changes more than the leading axes")


def test_first_reshape_adds_axes() -> None:
    text, inits = static_text("2, 3", [2, 3, 1], [0, 2, 1], [2, 1, 3], "2, 1, 3")
    check_not_fused(text, inits, "reshape-transpose-reshape", "does not merge leading axes")


def test_transpose_moves_the_merged_axis() -> None:
    text, inits = static_text("2, 3, 4", [6, 4], [1, 0], [4, 2, 3], "4, 2, 3")
    check_not_fused(text, inits, "reshape-transpose-reshape", "moves the merged axis")


def test_last_reshape_is_not_the_split_back() -> None:
    text, inits = static_text("2, 3, 4, 5", [6, 4, 5], [0, 2, 1], [3, 2, 5, 4], "3, 2, 5, 4")
    check_not_fused(text, inits, "reshape-transpose-reshape", "not the split-back shape")


def test_shape_unknown() -> None:
    # Squeeze without axes: the rank of x is unknown
    text = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2, N, 3, 4] x0) => (float[2, 4, 3] y) {
  x = Squeeze (x0)
  r1 = Reshape (x, t1)
  tr = Transpose <perm = [0, 2, 1]> (r1)
  y = Reshape (tr, t2)
}
"""
    check_not_fused(text, {"t1": np.array([2, 3, 4], I64), "t2": np.array([2, 4, 3], I64)},
                    "reshape-transpose-reshape", "the shape of x is unknown")


def test_split_back_through_minus_one() -> None:
    # ViT (dynamo): [B, 4, 17, 16] -> [-1, 17, 16] -> [B*4, 16, 17] -> [-1, 4, 16, 17]
    text, inits = static_text("B, 4, 17, 16", [-1, 17, 16], [0, 2, 1], [-1, 4, 16, 17], "B, 4, 16, 17")
    m = check_fuses(text, inits, "reshape-transpose-reshape", {"Transpose": 1}, bindings=BIND)
    assert next(iter(m.graph)).attr("perm") == [0, 1, 3, 2]


# ---------------------------------------------------------------------------------------------------------------
# reshape-elementwise-reshape
# ---------------------------------------------------------------------------------------------------------------
GPT2_MLP = """
<ir_version: 8, opset_import: ["" : 20]>
g (float[B, S, 8] x, float[M, 16] h) => (float[M, 16] y) {
  s = Shape <end = 2> (x)
  t1 = Concat <axis = 0> (s, sixteen)
  r1 = Reshape <allowzero = 1> (h, t1)
  a = OP
  y = Reshape (a, t2)
}
"""


@pytest.mark.parametrize("op", ['Gelu <approximate = "tanh"> (r1)', "Relu (r1)", "LeakyRelu <alpha = 0.2> (r1)"])
def test_elementwise_between_reshapes(op: str) -> None:
    # GPT-2 (dynamo): Gemm -> Reshape [B, S, 4H] -> Gelu -> Reshape [-1, 4H] -> Gemm; here h plays Gemm's [B*S, 16]
    text = GPT2_MLP.replace("OP", op)
    inits = {"sixteen": np.array([16], I64), "t2": np.array([-1, 16], I64)}
    m = from_text(text, inits)
    before = snapshot(m)
    assert fuse(m, ["reshape-elementwise-reshape"]).get("reshape-elementwise-reshape") == 1
    run_pass(m, "dce")
    assert len(list(m.graph)) == 1
    assert_valid(m)
    # x fixes B and S; h must have B*S rows
    assert_same_outputs(before, m, bindings=[{"B": 2, "S": 3, "M": 6}, {"B": 1, "S": 5, "M": 5}])
    assert fuse(m, ["reshape-elementwise-reshape"]) == {}


def test_elementwise_reshaped_to_another_shape() -> None:
    text, inits = static_text("2, 12", [2, 3, 4], [0, 1, 2], [6, 4], "6, 4")
    text = text.replace("tr = Transpose <perm = [0, 1, 2]> (r1)", "tr = Relu (r1)")
    check_not_fused(text, inits, "reshape-elementwise-reshape", "not the input's shape")


def test_elementwise_shape_unknown() -> None:
    text = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2, N, 12] x0) => (float[2, 12] y) {
  x = Squeeze (x0)
  r1 = Reshape (x, t1)
  a = Relu (r1)
  y = Reshape (a, t2)
}
"""
    check_not_fused(text, {"t1": np.array([2, 3, 4], I64), "t2": np.array([2, 12], I64)},
                    "reshape-elementwise-reshape", "the shape of the input is unknown")
