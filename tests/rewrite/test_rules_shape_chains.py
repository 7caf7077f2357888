"""Concat of Concats, Slice of Slice, Unsqueeze of Unsqueeze, Squeeze of Squeeze."""

from __future__ import annotations

import numpy as np
import pytest

from graphopt.testing import assert_same_outputs, assert_valid, count_ops, from_text, run_pass, snapshot

from .util import check_fuses, check_not_fused, explain_reasons, fuse

BIND = [{"N": 1}, {"N": 3}]

CONCAT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 2] a, float[N, 3] b, float[N, 1] c, float[N, 4] d) => (float[N, 10] y) {
  i = Concat <axis = INNER> (b, c)
  y = Concat <axis = 1> (a, i, d)
}
"""


@pytest.mark.parametrize("inner", ["1", "-1"])
def test_flatten_concat(inner: str) -> None:
    m = check_fuses(CONCAT.replace("INNER", inner), {}, "flatten-concat", {"Concat": 1}, bindings=BIND)
    assert [v.name for v in next(iter(m.graph)).inputs] == ["a", "b", "c", "d"]


def test_flatten_nested_concats_in_one_run() -> None:
    text = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 2] a, float[N, 3] b, float[N, 1] c, float[N, 4] d) => (float[N, 14] y) {
  i = Concat <axis = 1> (b, c)
  j = Concat <axis = 1> (i, a)
  y = Concat <axis = 1> (a, j, d, i2)
  i2 = Concat <axis = 1> (c, c)
}
""".replace("  y = Concat <axis = 1> (a, j, d, i2)\n  i2 = Concat <axis = 1> (c, c)",
            "  i2 = Concat <axis = 1> (c, c)\n  y = Concat <axis = 1> (a, j, d, i2)")
    m = check_fuses(text, {}, "flatten-concat", {"Concat": 1}, bindings=BIND, fires=2)
    assert [v.name for v in next(iter(m.graph)).inputs] == ["a", "b", "c", "a", "d", "c", "c"]


def test_flatten_concat_other_axis() -> None:
    text = CONCAT.replace("INNER", "0").replace("float[N, 3] b, float[N, 1] c", "float[1, 3] b, float[2, 3] c") \
        .replace("float[N, 2] a", "float[3, 2] a").replace("float[N, 4] d", "float[3, 4] d").replace(
        "float[N, 10] y", "float[3, 9] y")
    check_not_fused(text, {}, "flatten-concat", "concatenates along axis 0, not 1")


def test_flatten_concat_inner_read_elsewhere() -> None:
    text = CONCAT.replace("INNER", "1").replace("float[N, 10] y)", "float[N, 10] y, float[N, 4] i)")
    check_not_fused(text, {}, "flatten-concat", "output 'i' is read elsewhere")


def test_flatten_concat_mixed_sign_axes_with_unknown_rank() -> None:
    text = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 3] b, int64[M] s) => (float y) {
  r = Reshape(b, s)
  i = Concat <axis = -1> (r, r)
  y = Concat <axis = 1> (i, r)
}
"""
    check_not_fused(text, {}, "flatten-concat", "(rank unknown)")


# ----------------------------------------------------------------------------------------------------------------
SLICES = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 8, 10] x) => (float[N, 6, 4] y) {
  s = Slice(x, s1, e1, a1)
  y = Slice(s, s2, e2, a2, t2)
}
"""


def slice_inits(a1: int = 1, a2: int = 2, dt: type = np.int64) -> dict:
    return {"s1": np.array([1], dt), "e1": np.array([7], dt), "a1": np.array([a1], dt),
            "s2": np.array([2], np.int64), "e2": np.array([9], np.int64), "a2": np.array([a2], np.int64),
            "t2": np.array([2], np.int64)}


@pytest.mark.parametrize("a1,a2,dt", [(1, 2, np.int64), (-2, 2, np.int64), (1, -1, np.int32)])
def test_merge_slices(a1: int, a2: int, dt: type) -> None:
    m = check_fuses(SLICES, slice_inits(a1, a2, dt), "merge-slices", {"Slice": 1}, bindings=BIND)
    sl = next(iter(m.graph))
    assert sl.input(3).const.numpy().tolist() == [a1, a2] and sl.input(4).const.numpy().tolist() == [1, 2]


def test_merge_slices_default_axes() -> None:
    text = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[6, 8] x) => (float[4, 3] y) {
  s = Slice(x, s1, e1)
  y = Slice(s, s2, e2, a2)
}
"""
    inits = {"s1": np.array([1], np.int64), "e1": np.array([5], np.int64), "s2": np.array([-3], np.int64),
             "e2": np.array([100], np.int64), "a2": np.array([1], np.int64)}
    check_fuses(text, inits, "merge-slices", {"Slice": 1})


def test_merge_slices_same_axis() -> None:
    check_not_fused(SLICES.replace("float[N, 6, 4] y", "float[N, 3, 10] y"), slice_inits(1, -2),
                    "merge-slices", "both slices cut axis 1")


def test_merge_slices_non_constant_starts() -> None:
    text = SLICES.replace("float[N, 8, 10] x)", "float[N, 8, 10] x, int64[1] s2)")
    inits = slice_inits()
    del inits["s2"]
    check_not_fused(text, inits, "merge-slices", "('s2') is not a constant")


def test_merge_slices_before_opset_10() -> None:
    text = """
<ir_version: 8, opset_import: ["" : 9]>
g (float[6, 8] x) => (float[4, 3] y) {
  s = Slice <starts = [1], ends = [5], axes = [0]> (x)
  y = Slice <starts = [1], ends = [4], axes = [1]> (s)
}
"""
    check_not_fused(text, {}, "merge-slices", "outside the rule's range (>= 10)")


# ----------------------------------------------------------------------------------------------------------------
def unsq_shape(a1: list[int], a2: list[int]) -> str:
    """The output shape of Unsqueeze(Unsqueeze(x[N, 3], a1), a2), computed with numpy."""
    y = np.expand_dims(np.expand_dims(np.zeros((7, 3)), tuple(a1)), tuple(a2))
    return ", ".join("N" if d == 7 else str(d) for d in y.shape)


def unsq_text(a1: list[int], a2: list[int], opset: int, rank_known: bool = True) -> str:
    x = "float[N, 3]" if rank_known else "float[M] x0, int64[M] shp"
    pre = "" if rank_known else "x = Reshape(x0, shp)\n  "
    if opset >= 13:
        body = f"{pre}u = Unsqueeze(x, k1)\n  y = Unsqueeze(u, k2)"
    else:
        body = f"{pre}u = Unsqueeze <axes = {a1}> (x)\n  y = Unsqueeze <axes = {a2}> (u)"
    head = f"{x} x" if rank_known else x
    out = f"float[{unsq_shape(a1, a2)}] y" if rank_known else "float[P] y"
    return f"""
<ir_version: 8, opset_import: ["" : {opset}]>
g ({head}) => ({out}) {{
  {body}
}}
"""


@pytest.mark.parametrize("a1,a2", [([0], [0]), ([0], [3]), ([1, 3], [0, 5]), ([-1], [1]), ([0, 2], [-1, -3])])
@pytest.mark.parametrize("opset", [11, 13])
def test_merge_unsqueeze(a1: list[int], a2: list[int], opset: int) -> None:
    inits = {"k1": np.array(a1, np.int64), "k2": np.array(a2, np.int64)} if opset >= 13 else {}
    check_fuses(unsq_text(a1, a2, opset), inits, "merge-unsqueeze", {"Unsqueeze": 1}, bindings=BIND)


def test_merge_unsqueeze_negative_axes_need_the_rank() -> None:
    inits = {"k1": np.array([-1], np.int64), "k2": np.array([0], np.int64)}
    check_not_fused(unsq_text([-1], [0], 13, rank_known=False), inits, "merge-unsqueeze",
                    "negative axes and the input's rank is unknown")


def test_merge_unsqueeze_non_negative_axes_do_not_need_the_rank() -> None:
    inits = {"k1": np.array([1], np.int64), "k2": np.array([0, 3], np.int64)}
    m = from_text(unsq_text([1], [0, 3], 13, rank_known=False), inits)
    assert "fired" in explain_reasons(m, "merge-unsqueeze")


def test_merge_unsqueeze_axes_not_constant() -> None:
    text = unsq_text([0], [0], 13).replace("float[N, 3] x)", "float[N, 3] x, int64[1] k2)")
    check_not_fused(text, {"k1": np.array([0], np.int64)}, "merge-unsqueeze", "are not a constant")


SQ = """
<ir_version: 8, opset_import: ["" : OPSET]>
g (float[N, 1, 5, 1, 1] x) => (float[OUT] y) {
  BODY
}
"""


@pytest.mark.parametrize("a1,a2", [([1], [2]), ([3], [1]), ([-1, 1], [-1]), ([1, 3], [2])])
@pytest.mark.parametrize("opset", [11, 13])
def test_merge_squeeze(a1: list[int], a2: list[int], opset: int) -> None:
    if opset >= 13:
        body = "u = Squeeze(x, k1)\n  y = Squeeze(u, k2)"
        inits = {"k1": np.array(a1, np.int64), "k2": np.array(a2, np.int64)}
    else:
        body = f"u = Squeeze <axes = {a1}> (x)\n  y = Squeeze <axes = {a2}> (u)"
        inits = {}
    y = np.squeeze(np.squeeze(np.zeros((7, 1, 5, 1, 1)), tuple(a1)), tuple(a2))
    out = ", ".join("N" if d == 7 else str(d) for d in y.shape)
    check_fuses(SQ.replace("OPSET", str(opset)).replace("BODY", body).replace("OUT", out), inits, "merge-squeeze",
                {"Squeeze": 1}, bindings=BIND)


def test_merge_squeeze_without_axes() -> None:
    text = SQ.replace("OPSET", "13").replace("BODY", "u = Squeeze(x, k1)\n  y = Squeeze(u)").replace("OUT", "N, 5")
    check_not_fused(text, {"k1": np.array([1], np.int64)}, "merge-squeeze", "has no axes")


# ----------------------------------------------------------------------------------------------------------------
def reduce_text(op: str, ra: list[int], ua: list[int], opset: int, keepdims: int = 0) -> str:
    since = 13 if op == "ReduceSum" else 18
    red = (f"r = {op} <keepdims = {keepdims}> (x, ra)" if opset >= since
           else f"r = {op} <keepdims = {keepdims}, axes = {ra}> (x)")
    uns = "y = Unsqueeze(r, ua)" if opset >= 13 else f"y = Unsqueeze <axes = {ua}> (r)"
    out = np.expand_dims(np.zeros((7, 4, 5)).sum(axis=tuple(ra)), tuple(ua)).shape
    dims = ", ".join("N" if d == 7 else str(d) for d in out)
    return f"""
<ir_version: 8, opset_import: ["" : {opset}]>
g (float[N, 4, 5] x) => (float[{dims}] y) {{
  {red}
  {uns}
}}
"""


@pytest.mark.parametrize("op,opset", [("ReduceSum", 11), ("ReduceSum", 13), ("ReduceMean", 17), ("ReduceMax", 18),
                                      ("ReduceL2", 18)])
@pytest.mark.parametrize("ra,ua", [([1], [1]), ([-1], [2]), ([0, 2], [-3, -1])])
def test_fuse_reduce_unsqueeze(op: str, opset: int, ra: list[int], ua: list[int]) -> None:
    inits = {"ra": np.array(ra, np.int64), "ua": np.array(ua, np.int64)}
    m = check_fuses(reduce_text(op, ra, ua, opset), inits, "fuse-reduce-unsqueeze", {op: 1}, bindings=BIND)
    assert next(iter(m.graph)).attr("keepdims") == 1


def test_fuse_reduce_unsqueeze_other_axes() -> None:
    inits = {"ra": np.array([1], np.int64), "ua": np.array([2], np.int64)}
    check_not_fused(reduce_text("ReduceSum", [1], [2], 13), inits, "fuse-reduce-unsqueeze",
                    "reduces axes [1], Unsqueeze -> 'y' inserts [2]")


def test_fuse_reduce_unsqueeze_keepdims_already() -> None:
    text = reduce_text("ReduceSum", [1], [1], 13, keepdims=1).replace("float[N, 1, 5] y", "float[N, 1, 1, 5] y")
    check_not_fused(text, {"ra": np.array([1], np.int64), "ua": np.array([1], np.int64)}, "fuse-reduce-unsqueeze",
                    "keeps its dims already")


# ---------------------------------------------------------------------------------------------------------------
# an inner Unsqueeze/Squeeze shared by several of its kind: each merges it, the inner one goes with dce
# ---------------------------------------------------------------------------------------------------------------
SHARED = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 3] x) => (float[1, 1, N, 3] y, float[1, N, 1, 3] z) {
  u = Unsqueeze (x, k0)
  y = Unsqueeze (u, k1)
  z = Unsqueeze (u, k2)
}
"""
SHARED_AXES = {"k0": np.array([0], np.int64), "k1": np.array([0], np.int64), "k2": np.array([2], np.int64)}


def test_merge_unsqueeze_shared() -> None:
    m = from_text(SHARED, SHARED_AXES)
    before = snapshot(m)
    stats = fuse(m, ["merge-unsqueeze", "merge-unsqueeze-shared"])
    assert stats.get("merge-unsqueeze-shared") == 1 and stats.get("merge-unsqueeze") == 1  # the last one plain
    run_pass(m, "dce")
    assert dict(count_ops(m)) == {"Unsqueeze": 2}
    assert_valid(m)
    assert_same_outputs(before, m, bindings=BIND)
    assert fuse(m, ["merge-unsqueeze", "merge-unsqueeze-shared"]) == {}


def test_merge_squeeze_shared() -> None:
    text = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 1, N, 1] x) => (float[N, 1] y, float[1, N] z) {
  u = Squeeze (x, k0)
  y = Squeeze (u, k0)
  z = Squeeze (u, k2)
}
"""
    m = from_text(text, {"k0": np.array([0], np.int64), "k2": np.array([2], np.int64)})
    before = snapshot(m)
    fuse(m, ["merge-squeeze", "merge-squeeze-shared"])
    run_pass(m, "dce")
    assert dict(count_ops(m)) == {"Squeeze": 2}
    assert_same_outputs(before, m, bindings=BIND)


def test_merge_unsqueeze_shared_with_a_reader_of_another_kind() -> None:
    text = SHARED.replace("z = Unsqueeze (u, k2)", "z = Neg (u)").replace("float[1, N, 1, 3] z", "float[1, N, 3] z")
    check_not_fused(text, SHARED_AXES, "merge-unsqueeze-shared", "is also read by Neg")


def test_merge_unsqueeze_shared_single_reader_is_the_plain_rule() -> None:
    text = SHARED.replace("  z = Unsqueeze (u, k2)\n", "").replace(", float[1, N, 1, 3] z", "")
    check_not_fused(text, SHARED_AXES, "merge-unsqueeze-shared", "merge-unsqueeze's case")


def test_merge_unsqueeze_shared_inner_is_a_graph_output() -> None:
    text = SHARED.replace("float[1, N, 1, 3] z)", "float[1, N, 1, 3] z, float[1, N, 3] u)")
    check_not_fused(text, SHARED_AXES, "merge-unsqueeze-shared", "is a graph output")


def test_merge_unsqueeze_shared_not_an_unsqueeze() -> None:
    text = SHARED.replace("u = Unsqueeze (x, k0)", "u = Reshape (x, k0)").replace(
        "float[N, 3] x", "float[3] x").replace("N, ", "")
    check_not_fused(text, {**SHARED_AXES, "k0": np.array([1, 3], np.int64)}, "merge-unsqueeze-shared",
                    "is not the output of Unsqueeze")
