"""RotaryEmbedding (opset 23) from Hugging Face's apply_rotary_pos_emb spelled out in primitive ops."""

from __future__ import annotations

import numpy as np
import pytest

from graphopt.testing import assert_same_outputs, assert_valid, count_ops, from_text, run_pass, snapshot

from .util import check_not_fused, explain_reasons, fuse

RULE = "fuse-rotary-embedding"
PARTIAL = "fuse-rotary-embedding-partial"
BIND = [{"N": 1, "S": 3}, {"N": 2, "S": 5}]
F16 = {"rtol": 1e-2, "atol": 1e-2}

# rotate_half(x) = Concat(-x[..., 8:], x[..., :8]); y = x * cos + rotate_half(x) * sin
ROTATE = ("x2 = Slice(x, h, big, last, step)\n  nx2 = Neg(x2)\n  x1 = Slice(x, zero, h, last, step)\n"
          "  rot = Concat <axis = -1> (nx2, x1)\n  a = Mul(x, cos)\n  b = Mul(rot, sin)\n  y = Add(a, b)")
# cos and sin from the angles f [., S, 8] as Hugging Face builds them: cat((f, f), -1).cos(), unsqueezed at 1
CACHES = ("ff = Concat <axis = -1> (f, f)\n  c = Cos(ff)\n  s = Sin(ff)\n  cos = Unsqueeze(c, one)\n"
          "  sin = Unsqueeze(s, one)\n  ")


def text(body: str, *, t: str = "float", opset: int = 23, x: str = "N, 4, S, 16", f: str | None = "1, S, 8",
         ft: str | None = None) -> str:
    extra = f", {ft or t}[{f}] f" if f is not None else ""
    return f"""
<ir_version: 10, opset_import: ["" : {opset}]>
g ({t}[{x}] x{extra}) => ({t}[{x}] y) {{
  {body}
}}
"""


def check_fuses(t: str, init: dict[str, np.ndarray], rule: str, expect: dict[str, int], *,
                bindings: list[dict[str, int]] | None = None, rtol: float = 1e-4, atol: float = 1e-5):
    """Fuse with the rule alone, then drop the cos/sin chains it left unread (dce): the rule fired once, the op
    counts are `expect` exactly, the model is valid, onnxruntime gives the original's outputs, a second run does
    nothing."""
    from graphopt.ir import serde

    rules = [RULE, PARTIAL] if rule == PARTIAL else [rule]
    m = from_text(t, init)
    before = snapshot(m)
    stats = fuse(m, rules)
    assert stats.get(rule, 0) == 1, (stats, explain_reasons(serde.loads(before), rule))
    run_pass(m, "dce")
    assert dict(count_ops(m)) == dict(expect), dict(count_ops(m))
    assert_valid(m)
    assert_same_outputs(before, m, bindings=bindings, rtol=rtol, atol=atol)
    assert fuse(m, rules) == {}
    return m


def inits(**over: np.ndarray) -> dict[str, np.ndarray]:
    d = {"h": np.array([8], np.int64), "big": np.array([2**63 - 1], np.int64), "zero": np.array([0], np.int64),
         "last": np.array([-1], np.int64), "step": np.array([1], np.int64), "one": np.array([1], np.int64)}
    d.update(over)
    return d


def test_rotary_from_angles_expands_batch_one_caches() -> None:
    # f has batch 1 (positions computed in the graph), x has batch N: onnxruntime wants caches of x's batch
    m = check_fuses(text(CACHES + ROTATE), inits(), RULE,
                    {"RotaryEmbedding": 1, "Cos": 1, "Sin": 1, "Expand": 2, "Shape": 1, "Gather": 1, "Concat": 1},
                    bindings=BIND)
    (rot,) = [n for n in m.graph if n.op_type == "RotaryEmbedding"]
    assert not rot.attrs  # interleaved = 0, whole head, no position_ids
    (cos,) = [n for n in m.graph if n.op_type == "Cos"]
    assert cos.input(0).name == "f"  # the cache is cos(f), half the width


def test_rotary_caches_of_x_batch_need_no_expand() -> None:
    check_fuses(text(CACHES + ROTATE, f="N, S, 8"), inits(), RULE, {"RotaryEmbedding": 1, "Cos": 1, "Sin": 1},
                bindings=BIND)


def test_rotary_scaled_and_cast_caches_float16() -> None:
    # Llama-3 style attention scaling and the cast to the model's dtype, both applied to the halves
    body = CACHES.replace("c = Cos(ff)", "c0 = Cos(ff)\n  c1 = Mul(c0, scale)\n  c = Cast <to = 10> (c1)")
    body = body.replace("s = Sin(ff)", "s0 = Sin(ff)\n  s1 = Mul(scale, s0)\n  s = Cast <to = 10> (s1)")
    m = check_fuses(text(body + ROTATE, t="float16", ft="float", f="N, S, 8"),
                    inits(scale=np.array(0.75, np.float32)), RULE,
                    {"RotaryEmbedding": 1, "Cos": 1, "Sin": 1, "Mul": 2, "Cast": 2}, bindings=BIND, **F16)
    assert m.graph.outputs[0].dtype == 10


def test_rotary_constant_caches_static_shapes() -> None:
    rng = np.random.default_rng(0)
    f = rng.standard_normal((1, 6, 8)).astype(np.float32)
    full = np.concatenate([f, f], -1)[:, None]  # [1, 1, 6, 16]
    m = check_fuses(text(ROTATE, x="2, 4, 6, 16", f=None), inits(cos=np.cos(full), sin=np.sin(full)), RULE,
                    {"RotaryEmbedding": 1, "Expand": 2})
    (e, _) = [n for n in m.graph if n.op_type == "Expand"]
    assert e.input(0).const.shape == (1, 6, 8) and e.input(1).const.numpy().tolist() == [2, 6, 1]


def test_rotary_constant_caches_batch_one_no_expand() -> None:
    rng = np.random.default_rng(1)
    f = rng.standard_normal((6, 8)).astype(np.float32)  # rank 2: broadcast as [1, 1, 6, 16]
    full = np.concatenate([f, f], -1)
    check_fuses(text(ROTATE, x="1, 4, 6, 16", f=None), inits(cos=np.cos(full), sin=np.sin(full)), RULE,
                {"RotaryEmbedding": 1})


def test_rotary_query_and_key_share_caches_after_cse() -> None:
    # two sites (query and key) over the same angles: after CSE one Cos, one Sin and one Expand per cache remain
    key = ("k2 = Slice(k, h, big, last, step)\n  nk2 = Neg(k2)\n  k1 = Slice(k, zero, h, last, step)\n"
           "  rotk = Concat <axis = -1> (nk2, k1)\n  ak = Mul(k, cos)\n  bk = Mul(rotk, sin)\n  yk = Add(ak, bk)")
    body = CACHES + ROTATE + "\n  " + key
    t = text(body).replace("float[1, S, 8] f", "float[1, S, 8] f, float[N, 4, S, 16] k") \
        .replace("=> (float[N, 4, S, 16] y)", "=> (float[N, 4, S, 16] y, float[N, 4, S, 16] yk)")
    m = from_text(t, inits())
    before = snapshot(m)
    assert fuse(m, [RULE]).get(RULE) == 2
    run_pass(m, "cse")
    run_pass(m, "dce")
    ops = count_ops(m)
    assert ops["RotaryEmbedding"] == 2 and ops["Cos"] == 1 and ops["Sin"] == 1 and ops["Expand"] == 2, dict(ops)
    assert ops["Shape"] == 1  # both sites take [batch, seq] from the same graph input
    assert_valid(m)
    assert_same_outputs(before, m, bindings=BIND)


def test_target_opset_raises_and_fuses_rotary() -> None:
    m = from_text(text(CACHES + ROTATE, opset=20), inits())
    before = snapshot(m)
    stats = fuse(m, target_opset=23)
    assert stats.get("opset_raised") == 1 and stats.get(RULE) == 1
    assert m.opset("") == 23 and count_ops(m)["RotaryEmbedding"] == 1
    assert_valid(m)
    assert_same_outputs(before, m, bindings=BIND)


# ---------------------------------------------------------------------------------------------------------------
# one negative test per precondition
# ---------------------------------------------------------------------------------------------------------------
def test_opset_below_23() -> None:
    check_not_fused(text(CACHES + ROTATE, opset=22), inits(), RULE, "outside the rule's range")


def test_double_not_fused() -> None:
    check_not_fused(text(CACHES + ROTATE, t="double"), inits(), RULE, "element type 11")


def test_rank_3_not_fused() -> None:
    body = CACHES.replace("cos = Unsqueeze(c, one)", "cos = Identity(c)").replace("sin = Unsqueeze(s, one)",
                                                                                  "sin = Identity(s)")
    check_not_fused(text(body + ROTATE, x="N, S, 16"), inits(), RULE, "[batch, heads, seq, head_size]")


def test_unknown_head_size() -> None:
    body = "ff = Concat <axis = -1> (f, f)\n  cos = Unsqueeze(ff, one)\n  sin = Identity(cos)\n  "
    t = text(body + ROTATE, x="N, 4, S, D", f="1, S, H")
    check_not_fused(t, inits(), RULE, "not a known even size")


def test_slice_not_on_last_axis() -> None:
    # the "halves" are taken along the heads: that is not a rotation of each head
    body = CACHES + ROTATE.replace("last", "heads")
    t = text(body, x="N, 16, S, 16")
    check_not_fused(t, inits(heads=np.array([1], np.int64)), RULE, "does not slice the last axis alone")


def test_rotation_the_other_way() -> None:
    # Concat(-x1, x2): the negated half is the first, not the second
    body = CACHES + ROTATE.replace("x2 = Slice(x, h, big, last, step)", "x2 = Slice(x, zero, h, last, step)") \
        .replace("x1 = Slice(x, zero, h, last, step)", "x1 = Slice(x, h, big, last, step)")
    check_not_fused(text(body), inits(), RULE, "not the first half")


def test_rotary_halves_by_negative_indices() -> None:
    # x[..., -8:] and x[..., -16:-8] are the same halves of a 16-wide head
    body = CACHES + ROTATE.replace("Slice(x, h, big, last, step)", "Slice(x, m8, big, last)") \
        .replace("Slice(x, zero, h, last, step)", "Slice(x, m16, m8, last)")
    check_fuses(text(body), inits(m8=np.array([-8], np.int64), m16=np.array([-16], np.int64)), RULE,
                {"RotaryEmbedding": 1, "Cos": 1, "Sin": 1, "Expand": 2, "Shape": 1, "Gather": 1, "Concat": 1},
                bindings=BIND)


def test_cos_halves_from_different_angles() -> None:
    body = CACHES.replace("ff = Concat <axis = -1> (f, f)", "g = Neg(f)\n  ff = Concat <axis = -1> (f, g)")
    check_not_fused(text(body + ROTATE), inits(), RULE, "is not Concat(f, f)")


def test_constant_cos_halves_differ() -> None:
    rng = np.random.default_rng(2)
    c = rng.standard_normal((1, 1, 6, 16)).astype(np.float32)
    check_not_fused(text(ROTATE, x="1, 4, 6, 16", f=None), inits(cos=c, sin=c), RULE, "two halves of the constant")


def test_cos_through_a_non_elementwise_op() -> None:
    body = CACHES.replace("c = Cos(ff)", "c = Softmax(ff)")
    check_not_fused(text(body + ROTATE), inits(), RULE, "not an elementwise op the rule follows")


def test_cos_scaled_along_the_last_axis() -> None:
    body = CACHES.replace("c = Cos(ff)", "c0 = Cos(ff)\n  c = Mul(c0, w)")
    w = np.linspace(0.5, 1.5, 16).astype(np.float32)
    check_not_fused(text(body + ROTATE), inits(w=w), RULE, "varies along the last axis")


def test_cos_unsqueezed_at_the_seq_axis() -> None:
    # [batch, seq, heads, head_size] layout: cos is [1, S, 1, 16]; RotaryEmbedding's 4-D input is heads-first
    body = CACHES.replace("Unsqueeze(c, one)", "Unsqueeze(c, two)").replace("Unsqueeze(s, one)", "Unsqueeze(s, two)")
    check_not_fused(text(body + ROTATE, x="N, S, 4, 16"), inits(two=np.array([2], np.int64)), RULE,
                    "does not insert axis 1 alone")


@pytest.mark.parametrize("fdims", ["1, T, 8", "M, S, 8"])
def test_cache_dims_not_those_of_x(fdims: str) -> None:
    # a cache whose seq (or batch) dim is another symbol: the Mul broadcast it, RotaryEmbedding could not
    check_not_fused(text(CACHES + ROTATE, f=fdims), inits(), RULE, "is neither 1 nor x's")


def test_one_slice_for_both_halves() -> None:
    # Concat(-s, s) of one Slice: not a rotation (found by benchmarks/fuzz.py as a KeyError in the rule's check)
    body = CACHES + ROTATE.replace("x1 = Slice(x, zero, h, last, step)\n  ", "") \
        .replace("rot = Concat <axis = -1> (nx2, x1)", "rot = Concat <axis = -1> (nx2, x2)")
    check_not_fused(text(body), inits(), RULE, "not the first half")


# ---------------------------------------------------------------------------------------------------------------
# partial rotation: the first r dims of each head rotate, the rest pass through (GPT-NeoX, Phi)
# ---------------------------------------------------------------------------------------------------------------
def partial_body(keep: str = "Slice(x, r, big, last)") -> str:
    # x [N, 4, S, 16]: xr = x[..., :8] rotates with caches of f [1, S, 4]; x[..., 8:] passes through
    rot = ROTATE.replace("(x, ", "(xr, ").replace("Mul(x, cos)", "Mul(xr, cos)").replace("y = Add", "yr = Add")
    return (CACHES + "xr = Slice(x, zero, r, last)\n  " + rot + f"\n  xp = {keep}\n"
            "  y = Concat <axis = -1> (yr, xp)")


def partial_inits(**over: np.ndarray) -> dict[str, np.ndarray]:
    return inits(h=np.array([4], np.int64), r=np.array([8], np.int64), **over)


def test_partial_rotary() -> None:
    m = check_fuses(text(partial_body(), f="1, S, 4"), partial_inits(), PARTIAL,
                    {"RotaryEmbedding": 1, "Cos": 1, "Sin": 1, "Expand": 2, "Shape": 1, "Gather": 1, "Concat": 1},
                    bindings=BIND)
    (rot,) = [n for n in m.graph if n.op_type == "RotaryEmbedding"]
    assert rot.attr("rotary_embedding_dim") == 8 and rot.input(0).name == "x"


FUSED = """
<ir_version: 10, opset_import: ["" : 23]>
g (float[N, 4, S, 16] x, float[N, S, R2] c, float[N, S, R2] s) => (float[OUT] y) {
  xr = Slice(x, zero, r, last)
  yr = RotaryEmbedding ATTRS (xr, c, s)
  xp = Slice(x, k, big, last)
  y = Concat <axis = AXIS> (yr, xp)
}
"""


def fused_text(r2: int = 4, out: str = "N, 4, S, 16", attrs: str = "", axis: int = -1) -> str:
    return FUSED.replace("R2", str(r2)).replace("OUT", out).replace("ATTRS", attrs).replace("AXIS", str(axis))


def fused_inits(r: int = 8, k: int = 8) -> dict[str, np.ndarray]:
    return inits(r=np.array([r], np.int64), k=np.array([k], np.int64))


def test_partial_rotary_from_fused_rotation() -> None:
    check_fuses(fused_text(), fused_inits(), PARTIAL, {"RotaryEmbedding": 1}, bindings=BIND)


def test_partial_rotated_part_at_the_end() -> None:
    # Concat(RotaryEmbedding(x[..., 8:]), x[..., :8]): not RotaryEmbedding's partial rotation (it rotates the front)
    t = fused_text().replace("xr = Slice(x, zero, r, last)", "xr = Slice(x, r, big, last)") \
        .replace("xp = Slice(x, k, big, last)", "xp = Slice(x, zero, k, last)")
    check_not_fused(t, fused_inits(), PARTIAL, "does not start at 0")


def test_partial_odd_rotated_width() -> None:
    check_not_fused(fused_text(r2=3), fused_inits(r=7, k=7), PARTIAL, "not an even size")


def test_partial_keep_is_not_the_rest() -> None:
    check_not_fused(fused_text(out="N, 4, S, 14"), fused_inits(r=8, k=10), PARTIAL, "not the rest")


@pytest.mark.parametrize("attrs", ["<interleaved = 1>", "<rotary_embedding_dim = 4>"])
def test_partial_inner_rotation_not_plain(attrs: str) -> None:
    check_not_fused(fused_text(attrs=attrs), fused_inits(), PARTIAL, "interleaved or rotates part")


def test_partial_concat_not_on_last_axis() -> None:
    check_not_fused(fused_text(out="N, 8, S, 8", axis=1), fused_inits(), PARTIAL, "not on the last axis")
