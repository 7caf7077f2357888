"""Pad + Conv / pooling, MatMul + Add -> Gemm, transposes folded into Gemm."""

from __future__ import annotations

import numpy as np
import pytest

from .util import check_fuses, check_not_fused

BIND = [{"N": 1}, {"N": 3}]
PADS = np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)


def pad_text(consumer: str, *, opset: int = 17, pad_inputs: str = "x, pads", t: str = "float",
             pad_attrs: str = "") -> str:
    return f"""
<ir_version: 8, opset_import: ["" : {opset}]>
g ({t}[N, 3, 8, 8] x) => ({t}[N, C, H, W] y) {{
  p = Pad {pad_attrs} ({pad_inputs})
  y = {consumer}
}}
"""


def w(rng: np.random.Generator, dtype: type = np.float32) -> np.ndarray:
    return rng.standard_normal((4, 3, 3, 3)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_pad_conv(rng: np.random.Generator, dtype: type) -> None:
    t = "float16" if dtype == np.float16 else "float"
    tol = {"rtol": 2e-2, "atol": 2e-2} if dtype == np.float16 else {}
    m = check_fuses(pad_text("Conv <pads = [1, 0, 0, 1]> (p, w)", t=t), {"pads": PADS, "w": w(rng, dtype)},
                    "fuse-pad-conv", {"Conv": 1}, bindings=BIND, **tol)
    assert next(iter(m.graph)).attr("pads") == [2, 2, 2, 2]  # [1, 0, 0, 1] + begins (1, 2), ends (2, 1)


def test_pad_conv_with_zero_value_and_axes_opset_18(rng: np.random.Generator) -> None:
    inits = {"pads": np.array([1, 1, 2, 0], np.int64), "zero": np.array(0.0, np.float32),
             "axes": np.array([-2, 3], np.int64), "w": w(rng)}
    m = check_fuses(pad_text("Conv (p, w)", opset=18, pad_inputs="x, pads, zero, axes"), inits, "fuse-pad-conv",
                    {"Conv": 1}, bindings=BIND)
    assert next(iter(m.graph)).attr("pads") == [1, 1, 2, 0]


def test_pad_conv_attribute_form_opset_10(rng: np.random.Generator) -> None:
    m = check_fuses(pad_text("Conv (p, w)", opset=10, pad_inputs="x", pad_attrs="<pads = [0, 0, 1, 1, 0, 0, 1, 1]>"),
                    {"w": w(rng)}, "fuse-pad-conv", {"Conv": 1}, bindings=BIND)
    assert next(iter(m.graph)).attr("pads") == [1, 1, 1, 1]


def test_pad_conv_nonzero_value(rng: np.random.Generator) -> None:
    check_not_fused(pad_text("Conv (p, w)", pad_inputs="x, pads, v"),
                    {"pads": PADS, "v": np.array(1.5, np.float32), "w": w(rng)}, "fuse-pad-conv", "pads with 1.5, not 0")


def test_pad_conv_reflect_mode(rng: np.random.Generator) -> None:
    check_not_fused(pad_text("Conv (p, w)", pad_attrs='<mode = "reflect">'), {"pads": PADS, "w": w(rng)},
                    "fuse-pad-conv", "mode='reflect'")


def test_pad_conv_channel_padding(rng: np.random.Generator) -> None:
    check_not_fused(pad_text("Conv (p, w)").replace("float[N, 3, 8, 8] x", "float[N, 2, 8, 8] x"),
                    {"pads": np.array([0, 1, 0, 0, 0, 0, 0, 0], np.int64), "w": w(rng)}, "fuse-pad-conv",
                    "pads the batch or channel axis")


def test_pad_conv_negative_pads(rng: np.random.Generator) -> None:
    check_not_fused(pad_text("Conv (p, w)"), {"pads": np.array([0, 0, -1, 0, 0, 0, 1, 1], np.int64), "w": w(rng)},
                    "fuse-pad-conv", "negative pads")


def test_pad_conv_auto_pad(rng: np.random.Generator) -> None:
    check_not_fused(pad_text('Conv <auto_pad = "SAME_UPPER"> (p, w)'), {"pads": PADS, "w": w(rng)},
                    "fuse-pad-conv", "auto_pad=SAME_UPPER")


def test_pad_conv_pads_not_constant(rng: np.random.Generator) -> None:
    text = pad_text("Conv (p, w)").replace("float[N, 3, 8, 8] x)", "float[N, 3, 8, 8] x, int64[8] pads)")
    check_not_fused(text, {"w": w(rng)}, "fuse-pad-conv", "the pads of Pad")


@pytest.mark.parametrize("own", ["", "pads = [1, 0, 0, 0], count_include_pad = 1, "])
def test_pad_average_pool(rng: np.random.Generator, own: str) -> None:
    m = check_fuses(pad_text(f"AveragePool <{own}kernel_shape = [3, 3]> (p)"), {"pads": PADS}, "fuse-pad-pool",
                    {"AveragePool": 1}, bindings=BIND)
    node = next(iter(m.graph))
    assert node.attr("count_include_pad") == 1


def test_pad_average_pool_excluding_its_own_pads(rng: np.random.Generator) -> None:
    check_not_fused(pad_text("AveragePool <pads = [1, 1, 1, 1], kernel_shape = [3, 3]> (p)"), {"pads": PADS},
                    "fuse-pad-pool", "count_include_pad=0")


def test_pad_pool_ceil_mode(rng: np.random.Generator) -> None:
    check_not_fused(pad_text("AveragePool <ceil_mode = 1, kernel_shape = [3, 3]> (p)"), {"pads": PADS},
                    "fuse-pad-pool", "uses ceil_mode")


def test_pad_pool_pads_must_stay_below_the_kernel(rng: np.random.Generator) -> None:
    check_not_fused(pad_text("AveragePool <kernel_shape = [2, 2]> (p)"), {"pads": PADS}, "fuse-pad-pool",
                    "would not be smaller than the kernel")


def test_pad_max_pool_with_minus_inf(rng: np.random.Generator) -> None:
    check_fuses(pad_text("MaxPool <kernel_shape = [3, 3], strides = [2, 2]> (p)", pad_inputs="x, pads, v"),
                {"pads": PADS, "v": np.array(-np.inf, np.float32)}, "fuse-pad-pool", {"MaxPool": 1}, bindings=BIND)


def test_pad_max_pool_with_zero_is_not_exact(rng: np.random.Generator) -> None:
    check_not_fused(pad_text("MaxPool <kernel_shape = [3, 3]> (p)"), {"pads": PADS}, "fuse-pad-pool",
                    "MaxPool's padding equals -inf")


# ----------------------------------------------------------------------------------------------------------------
def mm_text(a_shape: str = "N, 6", c: str = "c", t: str = "float", order: str = "mm, c") -> str:
    return f"""
<ir_version: 8, opset_import: ["" : 17]>
g ({t}[{a_shape}] a) => ({t}[N, 5] y) {{
  mm = MatMul(a, b)
  y = Add({order})
}}
"""


@pytest.mark.parametrize("cshape", [(5,), (1, 5), (), (1, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_matmul_add_to_gemm(rng: np.random.Generator, cshape: tuple, dtype: type) -> None:
    t = "float16" if dtype == np.float16 else "float"
    tol = {"rtol": 2e-2, "atol": 2e-2} if dtype == np.float16 else {}
    inits = {"b": rng.standard_normal((6, 5)).astype(dtype), "c": rng.standard_normal(cshape).astype(dtype)}
    m = check_fuses(mm_text(t=t, order="c, mm"), inits, "fuse-matmul-add", {"Gemm": 1}, bindings=BIND, **tol)
    assert [v.name for v in next(iter(m.graph)).inputs] == ["a", "b", "c"]


def test_matmul_add_bias_with_known_rows(rng: np.random.Generator) -> None:
    inits = {"b": rng.standard_normal((6, 5)).astype(np.float32), "c": rng.standard_normal((4, 5)).astype(np.float32)}
    check_fuses(mm_text("4, 6").replace("[N, 5] y", "[4, 5] y"), inits, "fuse-matmul-add", {"Gemm": 1})


def test_matmul_add_bias_rows_unknown(rng: np.random.Generator) -> None:
    inits = {"b": rng.standard_normal((6, 5)).astype(np.float32), "c": rng.standard_normal((3, 5)).astype(np.float32)}
    check_not_fused(mm_text(), inits, "fuse-matmul-add", "the bias has 3 rows and the number of rows of A is unknown")


def test_matmul_add_3d_a(rng: np.random.Generator) -> None:
    inits = {"b": rng.standard_normal((6, 5)).astype(np.float32), "c": rng.standard_normal(5).astype(np.float32)}
    check_not_fused(mm_text("N, 2, 6").replace("[N, 5] y", "[N, 2, 5] y"), inits, "fuse-matmul-add",
                    "A ('a') has rank 3; Gemm needs a 2-D A")


def test_matmul_add_rank_of_a_unknown(rng: np.random.Generator) -> None:
    # a Reshape to a shape known only at run time: the rank of its output is unknown here
    text = mm_text().replace("mm = MatMul(a, b)", "r = Reshape(a, s)\n  mm = MatMul(r, b)").replace(
        "float[N, 6] a)", "float[N, 6] a, int64[M] s)")
    inits = {"b": rng.standard_normal((6, 5)).astype(np.float32), "c": rng.standard_normal(5).astype(np.float32)}
    check_not_fused(text, inits, "fuse-matmul-add", "the rank of A ('r') is unknown")


def test_matmul_add_rank_through_flatten(rng: np.random.Generator) -> None:
    text = mm_text().replace("mm = MatMul(a, b)", "f = Flatten(q)\n  mm = MatMul(f, b)").replace(
        "float[N, 6] a", "float[N, 2, 3] q")
    inits = {"b": rng.standard_normal((6, 5)).astype(np.float32), "c": rng.standard_normal(5).astype(np.float32)}
    check_fuses(text, inits, "fuse-matmul-add", {"Flatten": 1, "Gemm": 1}, bindings=BIND)


def test_matmul_add_b_not_constant(rng: np.random.Generator) -> None:
    text = mm_text().replace("float[N, 6] a)", "float[N, 6] a, float[6, 5] b)")
    check_not_fused(text, {"c": rng.standard_normal(5).astype(np.float32)}, "fuse-matmul-add",
                    "('b') is not a constant")


def test_matmul_add_bias_of_higher_rank(rng: np.random.Generator) -> None:
    inits = {"b": rng.standard_normal((6, 5)).astype(np.float32), "c": rng.standard_normal((2, 1, 5)).astype(np.float32)}
    check_not_fused(mm_text().replace("[N, 5] y", "[2, N, 5] y"), inits, "fuse-matmul-add", "the bias has rank 3")


def test_matmul_add_integer(rng: np.random.Generator) -> None:
    inits = {"b": rng.integers(0, 4, (6, 5)).astype(np.int32), "c": rng.integers(0, 4, 5).astype(np.int32)}
    check_not_fused(mm_text(t="int32"), inits, "fuse-matmul-add", "folds float, float16 and double only")


GEMM_T = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[6, N] a, float[5, 6] b) => (float[N, 5] y) {
  ta = Transpose <PERM> (a)
  tb = Transpose (b)
  y = Gemm <transB = 0, alpha = 0.5> (ta, tb, c)
}
"""


@pytest.mark.parametrize("perm", ["perm = [1, 0]", ""])
def test_gemm_transposes_folded(rng: np.random.Generator, perm: str) -> None:
    text = GEMM_T.replace("<PERM>", f"<{perm}>" if perm else "")
    m = check_fuses(text, {"c": rng.standard_normal(5).astype(np.float32)}, "fuse-gemm-transpose", {"Gemm": 1},
                    bindings=BIND, fires=2)
    g = next(iter(m.graph))
    assert g.attr("transA") == 1 and g.attr("transB") == 1 and g.attr("alpha") == 0.5
    assert [v.name for v in g.inputs] == ["a", "b", "c"]
