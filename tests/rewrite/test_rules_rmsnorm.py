"""RMSNormalization (opset 23) from its decomposed forms, and the fuse pass's target-opset that makes room for it."""

from __future__ import annotations

import numpy as np
import pytest

from graphopt.passes._opsets import upgrade_blockers
from graphopt.testing import assert_same_outputs, assert_valid, count_ops, from_text, snapshot

from .util import check_fuses, check_not_fused, fuse

BIND = [{"N": 1}, {"N": 3}]
F16 = {"rtol": 1e-2, "atol": 1e-2}

FORMS = {
    # torch.rsqrt as the dynamo exporter writes it
    "dynamo": "sq = Pow(x, two)\n  ms = ReduceMean(sq, ax)\n  a = Add(ms, eps)\n  s = Sqrt(a)\n"
              "  r = Reciprocal(s)\n  n = Mul(x, r)\n  y = Mul(gamma, n)",
    # TorchScript: 1 / sqrt
    "torchscript": "sq = Pow(x, two)\n  ms = ReduceMean(sq, ax)\n  a = Add(ms, eps)\n  s = Sqrt(a)\n"
                   "  r = Div(one, s)\n  n = Mul(x, r)\n  y = Mul(n, gamma)",
    # x / sqrt(mean(x * x) + eps)
    "div": "sq = Mul(x, x)\n  ms = ReduceMean(sq, ax)\n  a = Add(ms, eps)\n  s = Sqrt(a)\n"
           "  n = Div(x, s)\n  y = Mul(n, gamma)",
}


def rms_text(body: str, *, t: str = "float", opset: int = 23, x: str = "N, 5, 16") -> str:
    return f"""
<ir_version: 9, opset_import: ["" : {opset}]>
g ({t}[{x}] x) => ({t}[{x}] y) {{
  {body}
}}
"""


def inits(rng: np.random.Generator, dtype: type = np.float32, gamma: tuple[int, ...] = (16,),
          axes: list[int] | None = None, eps: np.ndarray | None = None) -> dict[str, np.ndarray]:
    return {"two": np.array(2.0, dtype), "one": np.array(1.0, dtype),
            "eps": np.array(1e-6, dtype) if eps is None else eps.astype(dtype),
            "ax": np.array([-1] if axes is None else axes, np.int64),
            "gamma": (1 + 0.1 * rng.standard_normal(gamma)).astype(dtype)}


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_rms_norm(rng: np.random.Generator, form: str, dtype: type) -> None:
    t = "float16" if dtype == np.float16 else "float"
    m = check_fuses(rms_text(FORMS[form], t=t), inits(rng, dtype), "fuse-rms-norm", {"RMSNormalization": 1},
                    bindings=BIND, **(F16 if dtype == np.float16 else {}))
    (n,) = list(m.graph)
    assert n.attr("axis") == -1 and abs(n.attr("epsilon") - 1e-6) < 2e-8  # eps as stored (float16 rounds it)


def test_rms_norm_two_axes_and_scalar_gamma_materialized(rng: np.random.Generator) -> None:
    m = check_fuses(rms_text(FORMS["dynamo"]), inits(rng, gamma=(1,), axes=[-2, -1]), "fuse-rms-norm",
                    {"RMSNormalization": 1}, bindings=BIND)
    (n,) = list(m.graph)
    assert n.attr("axis") == -2 and tuple(n.input(1).const.shape) == (5, 16)


# ---------------------------------------------------------------------------------------------------------------
# one negative test per precondition
# ---------------------------------------------------------------------------------------------------------------
def test_opset_below_23(rng: np.random.Generator) -> None:
    check_not_fused(rms_text(FORMS["dynamo"], opset=20), inits(rng), "fuse-rms-norm", "outside the rule's range")


def test_double_not_fused(rng: np.random.Generator) -> None:
    check_not_fused(rms_text(FORMS["dynamo"], t="double"), inits(rng, np.float64), "fuse-rms-norm",
                    "element type 11")


def test_axes_not_last(rng: np.random.Generator) -> None:
    check_not_fused(rms_text(FORMS["dynamo"]), inits(rng, gamma=(1,), axes=[1]), "fuse-rms-norm",
                    "not the last 1 axes")


def test_keepdims_zero(rng: np.random.Generator) -> None:
    body = FORMS["dynamo"].replace("ReduceMean(sq, ax)", "ReduceMean <keepdims = 0> (sq, ax)")
    text = rms_text(body).replace("float[N, 5, 16] y", "float[N, 5, N] y")
    check_not_fused(text, inits(rng, gamma=(1,)), "fuse-rms-norm", "keepdims=0")


def test_eps_would_broadcast_to_higher_rank(rng: np.random.Generator) -> None:
    text = rms_text(FORMS["dynamo"]).replace("float[N, 5, 16] y", "float[1, N, 5, 16] y")
    check_not_fused(text, inits(rng, eps=np.full((1, 1, 1, 1), 1e-6)), "fuse-rms-norm", "broadcasting changes")


def test_gamma_broadcasts_beyond_normalized_axes(rng: np.random.Generator) -> None:
    text = rms_text(FORMS["dynamo"], x="2, 5, 16")
    check_not_fused(text, inits(rng, gamma=(5, 16)), "fuse-rms-norm", "broadcasts beyond the normalized axes")


def test_gamma_does_not_pin_unknown_dims(rng: np.random.Generator) -> None:
    text = rms_text(FORMS["dynamo"], x="N, 5, D")
    check_not_fused(text, inits(rng, gamma=(1,)), "fuse-rms-norm", "does not pin them")


def test_mean_subtracted_is_not_rms(rng: np.random.Generator) -> None:
    # LayerNorm's centered variance: the pattern must not take x - mean for x
    body = ("mu = ReduceMean(x, ax)\n  d = Sub(x, mu)\n  sq = Pow(d, two)\n  ms = ReduceMean(sq, ax)\n"
            "  a = Add(ms, eps)\n  s = Sqrt(a)\n  n = Div(x, s)\n  y = Mul(n, gamma)")
    check_not_fused(rms_text(body), inits(rng), "fuse-rms-norm", "should be 'x'")


# ---------------------------------------------------------------------------------------------------------------
# fuse.target-opset: raise the opset where every op keeps its meaning, then fuse
# ---------------------------------------------------------------------------------------------------------------
def test_target_opset_raises_and_fuses(rng: np.random.Generator) -> None:
    m = from_text(rms_text(FORMS["dynamo"], opset=20), inits(rng))
    before = snapshot(m)
    stats = fuse(m, target_opset=23)
    assert stats.get("opset_raised") == 1 and stats.get("fuse-rms-norm") == 1
    assert m.opset("") == 23 and dict(count_ops(m)) == {"RMSNormalization": 1}
    assert_valid(m)
    assert_same_outputs(before, m, bindings=BIND)
    assert fuse(m, target_opset=23) == {}  # idempotent


def test_target_opset_converts_reduce_axes_attribute(rng: np.random.Generator) -> None:
    # opset 17: ReduceMean's axes are an attribute; from 18 they are an input
    body = FORMS["torchscript"].replace("ReduceMean(sq, ax)", "ReduceMean <axes = [-1]> (sq)")
    body += "\n  z = ReduceSum <axes = [1], keepdims = 0> (x)\n  u = Unsqueeze <axes = [0]> (z)"
    text = rms_text(body, opset=12).replace("float[N, 5, 16] y)", "float[N, 5, 16] y, float[1, N, 16] u)")
    m = from_text(text, inits(rng))
    before = snapshot(m)
    stats = fuse(m, target_opset=23)
    assert stats.get("opset_raised") == 1 and stats.get("fuse-rms-norm") == 1
    ops = count_ops(m)
    assert ops["RMSNormalization"] == 1 and ops["ReduceSum"] == 1 and ops["Unsqueeze"] == 1
    assert_valid(m)
    assert_same_outputs(before, m, bindings=BIND)


def test_target_opset_blocked_by_changed_op(rng: np.random.Generator) -> None:
    # GroupNormalization changed the meaning of its scale and bias at opset 21
    text = """
<ir_version: 9, opset_import: ["" : 18]>
g (float[N, 4, 6] x) => (float[N, 4, 6] y) {
  y = GroupNormalization <num_groups = 2> (x, s, b)
}
"""
    m = from_text(text, {"s": np.ones(2, np.float32), "b": np.zeros(2, np.float32)})
    assert upgrade_blockers(m, 23) == ["GroupNormalization changed meaning at opset 21"]
    before = snapshot(m)
    assert fuse(m, target_opset=23) == {}
    assert snapshot(m) == before and m.opset("") == 18


def test_target_opset_blocked_by_moved_attribute() -> None:
    # Split's `split` attribute became an input at opset 13; it is not converted
    text = """
<ir_version: 8, opset_import: ["" : 12]>
g (float[N, 4] x) => (float[N, 1] a, float[N, 3] b) {
  a, b = Split <axis = 1, split = [1, 3]> (x)
}
"""
    m = from_text(text)
    (why,) = upgrade_blockers(m, 23)
    assert why.startswith("Split")
    before = snapshot(m)
    assert fuse(m, target_opset=23) == {}
    assert snapshot(m) == before


def test_target_opset_lower_than_the_models_changes_nothing(rng: np.random.Generator) -> None:
    m = from_text(rms_text(FORMS["dynamo"]), inits(rng))
    stats = fuse(m, target_opset=18, rules=("fuse-gelu-erf",))
    assert stats == {} and m.opset("") == 23
