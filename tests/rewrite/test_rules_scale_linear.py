"""Mul by a scalar of a (Reshaped/Transposed) MatMul (+ bias) with constant weights -> the weights scaled."""

from __future__ import annotations

import numpy as np
import pytest

from .util import check_fuses, check_not_fused

BIND = [{"B": 1, "S": 3}, {"B": 2, "S": 5}]

HEAD_SPLIT = """
<ir_version: 8, opset_import: ["" : 17]>
g ({t}[B, S, 8] x) => ({t}[{ydims}] y) {{
  {body}
}}
"""
BODIES = {
    # dynamo's SDPA: q * sqrt(scale) after the head split
    "sdpa": ("mm = MatMul (x, w)\n  ad = Add (mm, b)\n  rs = Reshape (ad, t)\n"
             "  tp = Transpose <perm = [0, 2, 1, 3]> (rs)\n  y = Mul (tp, c)", "B, 2, S, 4"),
    "reshape": ("mm = MatMul (x, w)\n  ad = Add (b, mm)\n  rs = Reshape (ad, t)\n  y = Mul (c, rs)", "B, S, 2, 4"),
    "transpose": ("mm = MatMul (x, w)\n  tp = Transpose <perm = [0, 2, 1]> (mm)\n  y = Mul (tp, c)", "B, 8, S"),
    "plain": ("mm = MatMul (x, w)\n  ad = Add (mm, b)\n  y = Mul (ad, c)", "B, S, 8"),
}
EXPECT = {"sdpa": {"MatMul": 1, "Add": 1, "Reshape": 1, "Transpose": 1},
          "reshape": {"MatMul": 1, "Add": 1, "Reshape": 1},
          "transpose": {"MatMul": 1, "Transpose": 1}, "plain": {"MatMul": 1, "Add": 1}}


def inits(rng: np.random.Generator, dtype: type = np.float32, c: object = 0.5) -> dict[str, np.ndarray]:
    return {"w": rng.standard_normal((8, 8)).astype(dtype), "b": rng.standard_normal(8).astype(dtype),
            "t": np.array([0, 0, 2, 4], np.int64), "c": np.asarray(c, dtype)}


@pytest.mark.parametrize("form", sorted(BODIES))
@pytest.mark.parametrize("t,dtype", [("float", np.float32), ("float16", np.float16)])
def test_linear_scale(rng: np.random.Generator, form: str, t: str, dtype: type) -> None:
    body, ydims = BODIES[form]
    tol = {"rtol": 1e-2, "atol": 1e-2} if dtype == np.float16 else {}
    m = check_fuses(HEAD_SPLIT.format(t=t, ydims=ydims, body=body), inits(rng, dtype), "fuse-linear-scale",
                    EXPECT[form], bindings=BIND, **tol)
    w = next(n for n in m.graph if n.op_type == "MatMul").input(1)
    assert w.name != "w" and w.const.dtype == (10 if dtype == np.float16 else 1)


# one negative test per precondition
def test_weight_shared(rng: np.random.Generator) -> None:
    body = BODIES["plain"][0] + "\n  z = MatMul (x, w)"
    text = HEAD_SPLIT.format(t="float", ydims="B, S, 8", body=body).replace("float[B, S, 8] y)",
                                                                             "float[B, S, 8] y, float[B, S, 8] z)")
    check_not_fused(text, inits(rng), "fuse-linear-scale", "the weight 'w' is shared")


def test_bias_shared(rng: np.random.Generator) -> None:
    body = BODIES["plain"][0] + "\n  z = Add (x, b)"
    text = HEAD_SPLIT.format(t="float", ydims="B, S, 8", body=body).replace("float[B, S, 8] y)",
                                                                             "float[B, S, 8] y, float[B, S, 8] z)")
    check_not_fused(text, inits(rng), "fuse-linear-scale", "the bias 'b' is shared")


def test_scale_not_one_element(rng: np.random.Generator) -> None:
    body, ydims = BODIES["plain"]
    check_not_fused(HEAD_SPLIT.format(t="float", ydims=ydims, body=body), inits(rng, c=np.full(8, 0.5)),
                    "fuse-linear-scale", "has 8 elements, not 1")


def test_scale_grows_the_rank(rng: np.random.Generator) -> None:
    body, _ = BODIES["plain"]
    text = HEAD_SPLIT.format(t="float", ydims="1, B, S, 8", body=body)
    check_not_fused(text, inits(rng, c=np.full((1, 1, 1, 1), 0.5)), "fuse-linear-scale", "broadcasting changes")


def test_integer_weights(rng: np.random.Generator) -> None:
    body, ydims = BODIES["plain"]
    ints = {k: (v * 4).astype(np.int32) if k != "t" else v for k, v in inits(rng).items()}
    ints["c"] = np.array(2, np.int32)
    check_not_fused(HEAD_SPLIT.format(t="int32", ydims=ydims, body=body), ints, "fuse-linear-scale",
                    "element type 6")
