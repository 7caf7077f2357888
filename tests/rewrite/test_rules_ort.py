"""onnxruntime contrib fusions (aggressive level): Gelu, FastGelu, BiasGelu, FusedMatMul."""

from __future__ import annotations

import numpy as np
import pytest

from graphopt.testing import assert_same_outputs, assert_valid, count_ops, from_text, snapshot

from .test_rules_gelu_layernorm import ERF_FORMS, TANH_FORMS, gelu_model
from .util import check_fuses, check_not_fused, explain_reasons, fuse

BIND = [{"N": 1}, {"N": 4}]
F16 = {"rtol": 1e-2, "atol": 1e-2}
AGG = {"level": "aggressive"}


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_ort_gelu_before_opset_20(dtype: type) -> None:
    text, inits = gelu_model(ERF_FORMS["hf"][0], dtype, opset=17, consts=ERF_FORMS["hf"][1])
    m = check_fuses(text, inits, "ort-gelu", {"Gelu": 1}, bindings=BIND, level="aggressive",
                    **(F16 if dtype == np.float16 else {}))
    g = next(iter(m.graph))
    assert g.domain == "com.microsoft" and m.opset_imports.get("com.microsoft") == 1


def test_ort_gelu_double_has_no_kernel() -> None:
    text, inits = gelu_model(ERF_FORMS["hf"][0], np.float64, opset=17, consts=ERF_FORMS["hf"][1])
    check_not_fused(text, inits, "ort-gelu", "no double kernel")


@pytest.mark.parametrize("form", sorted(TANH_FORMS))
def test_ort_fast_gelu(form: str) -> None:
    text, inits = gelu_model(TANH_FORMS[form][0], opset=17, consts=TANH_FORMS[form][1])
    m = check_fuses(text, inits, "ort-fast-gelu", {"FastGelu": 1}, bindings=BIND, level="aggressive",
                    rtol=1e-4, atol=1e-4)
    assert next(iter(m.graph)).domain == "com.microsoft"


def test_other_version_of_the_contrib_domain_is_left_alone() -> None:
    text, inits = gelu_model(ERF_FORMS["hf"][0], opset=17, consts=ERF_FORMS["hf"][1])
    text = text.replace('"" : 17]', '"" : 17, "com.microsoft" : 2]')
    check_not_fused(text, inits, "ort-gelu", "imports com.microsoft version 2; the rule emits version 1")


BIAS_GELU = ERF_FORMS["torchscript"][0].replace("d = Div(x, sqrt2)", "xb = Add(x0, bias)\n d = Div(xb, sqrt2)") \
    .replace("m = Mul(x, a)", "m = Mul(xb, a)")


def bias_gelu_model(opset: int, x_shape: str = "N, 8", bias_shape: tuple = (8,)) -> tuple[str, dict]:
    text, inits = gelu_model(BIAS_GELU, opset=opset, consts=ERF_FORMS["torchscript"][1], x=x_shape)
    text = text.replace(f"float[{x_shape}] x)", f"float[{x_shape}] x0)")
    inits["bias"] = np.linspace(-1, 1, int(np.prod(bias_shape))).reshape(bias_shape).astype(np.float32)
    return text, inits


@pytest.mark.parametrize("opset", [17, 20])
def test_bias_gelu_chains_after_the_gelu_fusion(opset: int) -> None:
    text, inits = bias_gelu_model(opset)
    m = from_text(text, inits)
    before = snapshot(m)
    stats = fuse(m, **AGG)
    gelu_rule = "fuse-gelu-erf" if opset >= 20 else "ort-gelu"  # the standard op wins where it exists
    assert stats == {"rewrites": 2, gelu_rule: 1, "ort-bias-gelu": 1}
    assert dict(count_ops(m)) == {"BiasGelu": 1}
    assert_valid(m)
    assert_same_outputs(before, m, bindings=BIND)
    assert fuse(m, **AGG) == {}


def test_bias_gelu_bias_of_wrong_length() -> None:
    text, inits = bias_gelu_model(20, x_shape="N, 1", bias_shape=(8,))
    text = text.replace("float[N, 1] y", "float[N, 8] y")
    m = from_text(text, inits)
    fuse(m, ["fuse-gelu-erf"])
    reasons = explain_reasons(m, "ort-bias-gelu")
    assert any("x's last dim is 1, the bias has 8 elements" in r for r in reasons), reasons


def test_bias_gelu_needs_a_1d_bias() -> None:
    text, inits = bias_gelu_model(20, bias_shape=(1, 8))
    m = from_text(text, inits)
    fuse(m, ["fuse-gelu-erf"])
    assert any("not 1-D" in r for r in explain_reasons(m, "ort-bias-gelu"))


FMM = """
<ir_version: 9, opset_import: ["" : 17]>
g (float[N, 6, 4] a, float[N, 6, 5] b) => (float[N, 4, 5] y) {
  t = Transpose <perm = PERM> (a)
  y = MatMul(t, b)
}
"""


def test_fused_matmul_trans_a() -> None:
    m = check_fuses(FMM.replace("PERM", "[0, 2, 1]"), {}, "ort-fused-matmul", {"FusedMatMul": 1}, bindings=BIND,
                    level="aggressive")
    assert next(iter(m.graph)).attr("transA") == 1


def test_fused_matmul_trans_b_2d() -> None:
    text = """
<ir_version: 9, opset_import: ["" : 17]>
g (float[N, 6] a, float[5, 6] b) => (float[N, 5] y) {
  t = Transpose (b)
  y = MatMul(a, t)
}
"""
    m = check_fuses(text, {}, "ort-fused-matmul", {"FusedMatMul": 1}, bindings=BIND, level="aggressive")
    assert next(iter(m.graph)).attr("transB") == 1


def test_fused_matmul_other_permutation() -> None:
    text = FMM.replace("PERM", "[1, 2, 0]").replace("float[N, 6, 4] a", "float[4, N, 6] a")
    check_not_fused(text, {}, "ort-fused-matmul", "does not just swap the last two axes")


def test_aggressive_rules_do_not_run_at_the_portable_level() -> None:
    m = from_text(FMM.replace("PERM", "[0, 2, 1]"))
    assert fuse(m) == {}
    assert fuse(m, **AGG) == {"rewrites": 1, "ort-fused-matmul": 1}
