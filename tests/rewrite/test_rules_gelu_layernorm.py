"""GELU (erf and tanh forms) and LayerNormalization, in the forms exporters leave behind."""

from __future__ import annotations

import math

import numpy as np
import pytest

from graphopt.testing import assert_same_outputs, assert_valid, count_ops, from_text, snapshot

from .util import check_fuses, check_not_fused, explain_reasons, fuse

BIND = [{"N": 1}, {"N": 4}]
F16 = {"rtol": 1e-2, "atol": 1e-2}
S2 = math.sqrt(2.0)


def _t(dtype: type) -> str:
    return {np.float32: "float", np.float16: "float16", np.float64: "double"}[dtype]


def gelu_model(body: str, dtype: type = np.float32, opset: int = 20, consts: dict | None = None,
               x: str = "N, 8") -> tuple[str, dict]:
    t = _t(dtype)
    text = f"""
<ir_version: 9, opset_import: ["" : {opset}]>
g ({t}[{x}] x) => ({t}[{x}] y) {{
  {body}
}}
"""
    return text, {k: np.array(v, dtype) for k, v in (consts or {}).items()}


ERF_FORMS = {
    # TorchScript: (x * (erf(x / sqrt2) + 1)) * 0.5
    "torchscript": ("d = Div(x, sqrt2)\n e = Erf(d)\n a = Add(e, one)\n m = Mul(x, a)\n y = Mul(m, half)",
                    {"sqrt2": S2, "one": 1.0, "half": 0.5}),
    # Hugging Face BERT: (x * 0.5) * (1 + erf(x * 1/sqrt2))
    "hf": ("h = Mul(half, x)\n d = Mul(inv, x)\n e = Erf(d)\n a = Add(one, e)\n y = Mul(h, a)",
           {"inv": 1 / S2, "one": 1.0, "half": 0.5}),
    # x * ((1 + erf) * 0.5)
    "grouped": ("d = Div(x, sqrt2)\n e = Erf(d)\n a = Add(e, one)\n g = Mul(a, half)\n y = Mul(x, g)",
                {"sqrt2": S2, "one": 1.0, "half": 0.5}),
}

TANH_FORMS = {
    # TorchScript (approximate="tanh", opset < 20): 0.5 * (x * (1 + tanh(beta * (x + kappa * (x * (x * x))))))
    "torchscript": ("sq = Mul(x, x)\n cube = Mul(x, sq)\n kc = Mul(kappa, cube)\n inner = Add(x, kc)\n"
                    " arg = Mul(beta, inner)\n th = Tanh(arg)\n a = Add(one, th)\n m = Mul(x, a)\n y = Mul(half, m)",
                    {"kappa": 0.044715, "beta": math.sqrt(2 / math.pi), "one": 1.0, "half": 0.5}),
    # Hugging Face NewGELU: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * pow(x, 3))))
    "hf": ("h = Mul(half, x)\n cube = Pow(x, three)\n kc = Mul(kappa, cube)\n inner = Add(x, kc)\n"
           " arg = Mul(beta, inner)\n th = Tanh(arg)\n a = Add(one, th)\n y = Mul(h, a)",
           {"kappa": 0.044715, "beta": math.sqrt(2 / math.pi), "one": 1.0, "half": 0.5, "three": 3.0}),
}


@pytest.mark.parametrize("form", sorted(ERF_FORMS))
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_gelu_erf(form: str, dtype: type) -> None:
    text, inits = gelu_model(ERF_FORMS[form][0], dtype, consts=ERF_FORMS[form][1])
    m = check_fuses(text, inits, "fuse-gelu-erf", {"Gelu": 1}, bindings=BIND, **(F16 if dtype == np.float16 else {}))
    (g,) = list(m.graph)
    assert g.attr("approximate") is None and [o.name for o in m.graph.outputs] == ["y"]


@pytest.mark.parametrize("form", sorted(TANH_FORMS))
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_gelu_tanh(form: str, dtype: type) -> None:
    text, inits = gelu_model(TANH_FORMS[form][0], dtype, consts=TANH_FORMS[form][1])
    m = check_fuses(text, inits, "fuse-gelu-tanh", {"Gelu": 1}, bindings=BIND,
                    **(F16 if dtype == np.float16 else {"rtol": 1e-4, "atol": 1e-4}))
    assert next(iter(m.graph)).attr("approximate") == "tanh"


def test_gelu_with_constant_nodes() -> None:
    body = ("sqrt2 = Constant <value = float {1.4142135}> ()\n one = Constant <value_float = 1.0> ()\n"
            " half = Constant <value = float {0.5}> ()\n" + ERF_FORMS["torchscript"][0])
    text, _ = gelu_model(body)
    # the Constant nodes are left for dead-code elimination
    check_fuses(text, {}, "fuse-gelu-erf", {"Gelu": 1, "Constant": 3}, bindings=BIND)


def test_gelu_before_opset_20() -> None:
    text, inits = gelu_model(ERF_FORMS["torchscript"][0], opset=17, consts=ERF_FORMS["torchscript"][1])
    check_not_fused(text, inits, "fuse-gelu-erf", "the model's opset 17 is outside the rule's range (>= 20)")


def test_gelu_wrong_constant() -> None:
    text, inits = gelu_model(ERF_FORMS["torchscript"][0], consts={**ERF_FORMS["torchscript"][1], "half": 0.6})
    check_not_fused(text, inits, "fuse-gelu-erf", "is 0.6, not 0.5")


def test_gelu_intermediate_read_elsewhere() -> None:
    text, inits = gelu_model(ERF_FORMS["torchscript"][0], consts=ERF_FORMS["torchscript"][1])
    text = text.replace("y = Mul(m, half)", "y0 = Mul(m, half)\n y = Add(y0, e)")
    check_not_fused(text, inits, "fuse-gelu-erf", "intermediate 'e' (Erf")


def test_gelu_constant_could_broadcast_an_input_of_unknown_rank() -> None:
    body = "r = Reshape(x, shp)\n" + ERF_FORMS["torchscript"][0].replace("(x,", "(r,") + ""
    text = f"""
<ir_version: 9, opset_import: ["" : 20]>
g (float[N, 8] x, int64[M] shp) => (float[P] y) {{
  {body}
}}
"""
    inits = {k: np.array([v], np.float32) for k, v in ERF_FORMS["torchscript"][1].items()}  # shape [1]
    check_not_fused(text, inits, "fuse-gelu-erf", "has rank 1 and the rank of 'r' is unknown")


# ----------------------------------------------------------------------------------------------------------------
def ln_text(dtype: type = np.float32, *, opset: int = 17, square: str = "Pow(d, two)", axes: str = "[-1]",
            axes2: str | None = None, x: str = "N, 5, 16", keepdims: str = "", bias: bool = True) -> str:
    t = _t(dtype)
    axes2 = axes2 or axes
    if opset >= 18:
        mean = f"ax1 = Constant <value_ints = {axes}> ()\n  mean = ReduceMean{keepdims}(x, ax1)"
        var = f"ax2 = Constant <value_ints = {axes2}> ()\n  var = ReduceMean(sq, ax2)"
    else:
        mean = f"mean = ReduceMean <axes = {axes}{keepdims}> (x)"
        var = f"var = ReduceMean <axes = {axes2}> (sq)"
    tail = "sc = Mul(nrm, gamma)\n  y = Add(sc, beta)" if bias else "y = Mul(gamma, nrm)"
    return f"""
<ir_version: 9, opset_import: ["" : {opset}]>
g ({t}[{x}] x) => ({t}[{x}] y) {{
  {mean}
  d = Sub(x, mean)
  sq = {square}
  {var}
  ve = Add(var, eps)
  sd = Sqrt(ve)
  nrm = Div(d, sd)
  {tail}
}}
"""


def ln_inits(rng: np.random.Generator, dtype: type = np.float32, gshape: tuple = (16,)) -> dict:
    return {"two": np.array(2.0, dtype), "eps": np.array(1e-5, dtype),
            "gamma": rng.uniform(0.5, 1.5, gshape).astype(dtype), "beta": rng.standard_normal(gshape).astype(dtype)}


LN_RULES = ["fuse-layer-norm", "fuse-layer-norm-bias"]


def check_ln(text: str, inits: dict, *, tol: dict | None = None, expect: dict | None = None) -> object:
    m = from_text(text, inits)
    before = snapshot(m)
    stats = fuse(m, LN_RULES)
    assert stats.get("fuse-layer-norm") == 1, (stats, explain_reasons(from_text(text, inits), "fuse-layer-norm"))
    counts = dict(count_ops(m))
    counts.pop("Constant", None)  # opset 18's axes constants, left for DCE
    assert counts == (expect or {"LayerNormalization": 1})
    assert_valid(m)
    assert_same_outputs(before, m, bindings=BIND, **(tol or {"rtol": 1e-4, "atol": 1e-4}))
    assert fuse(m, LN_RULES) == {}
    return m


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("square", ["Pow(d, two)", "Mul(d, d)"])
def test_layer_norm(rng: np.random.Generator, opset: int, square: str) -> None:
    m = check_ln(ln_text(opset=opset, square=square), ln_inits(rng))
    (ln,) = [n for n in m.graph if n.op_type == "LayerNormalization"]
    assert ln.attr("axis") == -1 and abs(ln.attr("epsilon") - 1e-5) < 1e-12 and ln.num_inputs == 3


def test_layer_norm_float16(rng: np.random.Generator) -> None:
    check_ln(ln_text(np.float16), ln_inits(rng, np.float16), tol=F16)


def test_layer_norm_without_bias(rng: np.random.Generator) -> None:
    m = check_ln(ln_text(bias=False), ln_inits(rng))
    assert next(iter(m.graph)).num_inputs == 2


def test_layer_norm_over_the_last_two_axes(rng: np.random.Generator) -> None:
    m = check_ln(ln_text(axes="[-2, -1]"), ln_inits(rng, gshape=(5, 16)))
    assert next(iter(m.graph)).attr("axis") == -2


def test_layer_norm_non_negative_axes_with_known_rank(rng: np.random.Generator) -> None:
    check_ln(ln_text(axes="[2]"), ln_inits(rng))


def test_layer_norm_broadcast_gamma_is_materialized(rng: np.random.Generator) -> None:
    inits = ln_inits(rng)
    inits["gamma"] = np.array([1.5], np.float32)  # one value for every channel, shape known from x
    m = check_ln(ln_text(), inits)
    ln = next(iter(m.graph))
    assert ln.input(1).const.shape == (16,)


def test_layer_norm_axes_not_last(rng: np.random.Generator) -> None:
    check_not_fused(ln_text(axes="[1]", x="N, 16, 5").replace("[N, 16, 5] y", "[N, 16, 5] y"),
                    ln_inits(rng, gshape=(16, 1)), "fuse-layer-norm", "are not the last 1 axes")


def test_layer_norm_different_axes(rng: np.random.Generator) -> None:
    check_not_fused(ln_text(axes="[-1]", axes2="[-2]"), ln_inits(rng), "fuse-layer-norm",
                    "the two ReduceMeans reduce different axes")


def test_layer_norm_keepdims_0(rng: np.random.Generator) -> None:
    # keepdims = 0 makes Sub broadcast the mean along other axes: not a layer norm (x is [16, 16] so it type-checks)
    text = ln_text(keepdims=", keepdims = 0", x="16, 16")
    check_not_fused(text, ln_inits(rng), "fuse-layer-norm", "has keepdims=0")


def test_layer_norm_mean_through_another_op(rng: np.random.Generator) -> None:
    text = ln_text(keepdims=", keepdims = 0").replace("d = Sub(x, mean)", "mu = Unsqueeze(mean, m1)\n  d = Sub(x, mu)")
    check_not_fused(text, {**ln_inits(rng), "m1": np.array([-1], np.int64)}, "fuse-layer-norm",
                    "('mu') comes from Unsqueeze -> 'mu', not ReduceMean")


def test_layer_norm_eps_not_constant(rng: np.random.Generator) -> None:
    text = ln_text().replace("float[N, 5, 16] x)", "float[N, 5, 16] x, float eps)")
    inits = ln_inits(rng)
    del inits["eps"]
    check_not_fused(text, inits, "fuse-layer-norm", "('eps') is not a constant")


def test_layer_norm_gamma_does_not_pin_an_unknown_shape(rng: np.random.Generator) -> None:
    text = ln_text().replace("float[N, 5, 16] x)", "float[N, 5, 16] x0, int64[3] shp)").replace(
        "  mean = ReduceMean", "  x = Reshape(x0, shp)\n  mean = ReduceMean").replace("[N, 5, 16] y", "[N, 5, 16] y")
    inits = ln_inits(rng)
    inits["gamma"] = np.array([1.5], np.float32)
    check_not_fused(text, inits, "fuse-layer-norm", "does not pin them")


def test_layer_norm_before_opset_17(rng: np.random.Generator) -> None:
    check_not_fused(ln_text(opset=16), ln_inits(rng), "fuse-layer-norm", "outside the rule's range (>= 17)")


def test_layer_norm_double_is_not_fused(rng: np.random.Generator) -> None:
    check_not_fused(ln_text(np.float64), ln_inits(rng, np.float64), "fuse-layer-norm", "element type 11")


def test_layer_norm_bias_broadcasting_beyond_the_normalized_axes(rng: np.random.Generator) -> None:
    text = ln_text().replace("[N, 5, 16] y", "[N, 5, 16] y")
    inits = ln_inits(rng)
    inits["beta"] = rng.standard_normal((5, 16)).astype(np.float32)
    m = from_text(text, inits)
    before = snapshot(m)
    stats = fuse(m, LN_RULES)
    assert stats == {"rewrites": 1, "fuse-layer-norm": 1}  # the bias Add stays
    assert "beta has shape [5, 16]: it broadcasts beyond the normalized axes" in explain_reasons(
        m, "fuse-layer-norm-bias")
    assert_same_outputs(before, m, bindings=BIND, rtol=1e-4, atol=1e-4)
