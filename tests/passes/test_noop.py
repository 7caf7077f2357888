"""Tests of eliminate-noops (graphopt/passes/noop.py)."""

from __future__ import annotations

import numpy as np
import pytest

from graphopt.ir.core import Model
from graphopt.ir.tensors import DataType
from graphopt.passes.noop import holds_exactly
from graphopt.testing import assert_same_outputs, assert_valid, from_text, op_types, run, run_pass, snapshot

BINDINGS = [{"N": 1}, {"N": 3}, {"N": 5}]
TEXT = {np.float32: "float", np.float16: "float16", np.float64: "double", np.int32: "int32", np.int64: "int64",
        np.int8: "int8", np.uint8: "uint8"}
I64 = np.int64


def _noop(m: Model) -> dict[str, int]:
    rec = run_pass(m, "eliminate-noops")
    (r,) = rec.passes
    assert r.changed == bool(r.stats), r
    return r.stats


def _positive(text: str, inits: dict[str, np.ndarray] | None, expect_ops: list[str],
              bindings: list[dict[str, int]] | None = None, **kw: object) -> tuple[Model, dict[str, int]]:
    """Run the pass: the graph must end with `expect_ops`, compute the same outputs, and stay put on a rerun."""
    m = from_text(text, inits, **kw)  # type: ignore[arg-type]
    names_in = [v.name for v in m.graph.inputs]
    names_out = [v.name for v in m.graph.outputs]
    snap = snapshot(m)
    stats = _noop(m)
    assert stats, "the pass should fire"
    assert op_types(m) == expect_ops
    assert [v.name for v in m.graph.inputs] == names_in and [v.name for v in m.graph.outputs] == names_out
    assert_valid(m)
    assert_same_outputs(snap, m, bindings=bindings or BINDINGS)
    before = snapshot(m)
    rec = run_pass(m, "eliminate-noops")
    assert not rec.passes[0].changed and snapshot(m) == before
    return m, stats


def _negative(text: str, inits: dict[str, np.ndarray] | None = None, **kw: object) -> None:
    m = from_text(text, inits, **kw)  # type: ignore[arg-type]
    ops = op_types(m)
    before = snapshot(m)
    stats = _noop(m)
    assert not stats and op_types(m) == ops and snapshot(m) == before


def _g(body: str, sig: str = "(float[N, 4] x) => (float[N, 4] y)", opset: int = 18) -> str:
    return f"""
    <ir_version: 8, opset_import: ["" : {opset}]>
    g {sig} {{
      {body}
    }}
    """


# ----------------------------------------------------------------------------------------------------------------
# Identity, Dropout
# ----------------------------------------------------------------------------------------------------------------
def test_identity_chain_is_removed() -> None:
    _, stats = _positive(_g("a = Relu(x)\n b = Identity(a)\n c = Identity(b)\n y = Neg(c)"), None, ["Relu", "Neg"])
    assert stats == {"identity": 2}


def test_identity_feeding_an_output_hands_the_name_over() -> None:
    m, _ = _positive(_g("a = Relu(x)\n y = Identity(a)"), None, ["Relu"])
    assert m.graph.outputs[0].producer.op_type == "Relu"


def test_identity_between_a_graph_input_and_an_output_stays() -> None:
    # the input cannot take the output's name: removing the Identity would only make the IR re-create it
    _negative(_g("y = Identity(x)"))


def test_identity_of_a_value_that_is_already_an_output_stays() -> None:
    _negative(_g("y = Relu(x)\n z = Identity(y)", "(float[N, 4] x) => (float[N, 4] y, float[N, 4] z)"))


def test_identity_inside_an_if_branch_is_removed(rng: np.random.Generator) -> None:
    text = _g("""y = If(c) <then_branch = t () => (float[N, 4] a) { r = Relu(x)
                                                                     a = Identity(r) },
                            else_branch = e () => (float[N, 4] b) { i = Identity(x)
                                                                     b = Neg(i) }>""",
              "(float[N, 4] x, bool[1] c) => (float[N, 4] y)")
    m = from_text(text)
    snap = snapshot(m)
    stats = _noop(m)
    assert stats == {"identity": 2} and op_types(m) == ["If", "Relu", "Neg"]
    assert_valid(m)
    for cond in (True, False):
        xs = rng.standard_normal((3, 4)).astype(np.float32)
        np.testing.assert_array_equal(run(m, {"x": xs, "c": np.array([cond])})[0],
                                      run(snap, {"x": xs, "c": np.array([cond])})[0])


@pytest.mark.parametrize("args", ["x", "x, r", "x, r, off"])
def test_dropout_in_inference_is_removed(args: str) -> None:
    _positive(_g(f"a = Relu(x)\n d = Dropout({args.replace('x', 'a')})\n y = Neg(d)"),
              {"r": np.float32(0.3), "off": np.array(False)}, ["Relu", "Neg"])


def test_dropout_with_opset_10_is_inference() -> None:
    _positive(_g("a = Relu(x)\n d = Dropout<ratio = 0.5>(a)\n y = Neg(d)", opset=10), None, ["Relu", "Neg"])


def test_dropout_in_training_mode_stays() -> None:
    _negative(_g("d = Dropout(x, r, on)\n y = Neg(d)"), {"r": np.float32(0.3), "on": np.array(True)})


def test_dropout_with_a_runtime_training_flag_stays() -> None:
    _negative(_g("d = Dropout(x, r, t)\n y = Neg(d)", "(float[N, 4] x, bool t) => (float[N, 4] y)"),
              {"r": np.float32(0.3)})


def test_dropout_whose_mask_is_read_stays() -> None:
    _negative(_g("d, mask = Dropout(x)\n y = Neg(d)", "(float[N, 4] x) => (float[N, 4] y, bool[N, 4] mask)"))


# ----------------------------------------------------------------------------------------------------------------
# Cast, CastLike, Cast chains
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int64, np.uint8])
def test_cast_to_the_same_type_is_removed(dtype: type) -> None:
    t = TEXT[dtype]
    to = {np.float32: DataType.FLOAT, np.float16: DataType.FLOAT16, np.int64: DataType.INT64,
          np.uint8: DataType.UINT8}[dtype]
    _positive(_g(f"a = Abs(x)\n c = Cast<to = {int(to)}>(a)\n y = Neg(c)" if dtype != np.uint8 else
                 f"c = Cast<to = {int(to)}>(x)\n y = Add(c, c)", f"({t}[N, 4] x) => ({t}[N, 4] y)"),
              None, ["Abs", "Neg"] if dtype != np.uint8 else ["Add"])


def test_cast_to_another_type_stays() -> None:
    _negative(_g("c = Cast<to = 11>(x)\n y = Neg(c)", "(float[N, 4] x) => (double[N, 4] y)"))


def test_castlike_to_the_same_type_is_removed() -> None:
    _positive(_g("a = Abs(x)\n c = CastLike(a, like)\n y = Neg(c)"), {"like": np.zeros(1, np.float32)},
              ["Abs", "Neg"])


def test_castlike_to_another_type_stays() -> None:
    _negative(_g("c = CastLike(x, like)\n y = Neg(c)", "(float[N, 4] x) => (double[N, 4] y)"),
              {"like": np.zeros(1, np.float64)})


def test_cast_chain_without_precision_loss_is_shortened() -> None:
    # int32 -> int64 -> double: int64 holds every int32, so int32 -> double directly is the same
    m, stats = _positive(_g("a = Cast<to = 7>(x)\n y = Cast<to = 11>(a)", "(int32[N, 4] x) => (double[N, 4] y)"),
                         None, ["Cast"])
    (n,) = m.graph
    assert n.attr("to") == DataType.DOUBLE and n.input(0).name == "x" and stats == {"cast_chain": 1}


def test_cast_chain_back_to_the_source_type_disappears() -> None:
    _, stats = _positive(_g("a = Abs(x)\n b = Cast<to = 7>(a)\n c = Cast<to = 6>(b)\n y = Neg(c)",
                            "(int32[N, 4] x) => (int32[N, 4] y)"), None, ["Abs", "Neg"])
    assert stats == {"cast_chain": 1, "cast_same_type": 1}


@pytest.mark.parametrize("src,mid,dst", [("float", 10, 1), ("int64", 6, 7), ("int32", 1, 6), ("float", 16, 1),
                                         ("int32", 2, 6)])
def test_cast_chain_that_loses_precision_stays(src: str, mid: int, dst: int) -> None:
    out = {1: "float", 7: "int64", 6: "int32"}[dst]
    _negative(_g(f"a = Cast<to = {mid}>(x)\n y = Cast<to = {dst}>(a)", f"({src}[N, 4] x) => ({out}[N, 4] y)"))


def test_holds_exactly_table() -> None:
    D = DataType
    assert holds_exactly(D.INT8, D.FLOAT16) and holds_exactly(D.UINT8, D.BFLOAT16)
    assert holds_exactly(D.INT32, D.DOUBLE) and not holds_exactly(D.INT32, D.FLOAT)
    assert holds_exactly(D.UINT16, D.INT32) and not holds_exactly(D.UINT16, D.INT16)
    assert not holds_exactly(D.INT8, D.UINT64) and holds_exactly(D.BOOL, D.FLOAT16)
    assert holds_exactly(D.FLOAT16, D.FLOAT) and not holds_exactly(D.FLOAT16, D.BFLOAT16)
    assert not holds_exactly(D.FLOAT, D.FLOAT16) and not holds_exactly(D.INT16, D.FLOAT16)


# ----------------------------------------------------------------------------------------------------------------
# Reshape, Expand, Squeeze, Unsqueeze to the same shape; Reshape chains
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [[0, 4], [0, -1], [-1, 4], [0, 0]])
def test_reshape_to_the_same_shape_is_removed(shape: list[int]) -> None:
    _positive(_g("a = Relu(x)\n r = Reshape(a, s)\n y = Neg(r)"), {"s": np.array(shape, I64)}, ["Relu", "Neg"])


def test_reshape_to_the_same_static_shape_is_removed() -> None:
    _positive(_g("a = Relu(x)\n r = Reshape(a, s)\n y = Neg(r)", "(float[2, 6] x) => (float[2, 6] y)"),
              {"s": np.array([2, 6], I64)}, ["Relu", "Neg"], bindings=[{}])


@pytest.mark.parametrize("shape", [[-1, 2, 2], [4, -1], [-1, 1], [2, -1]])
def test_reshape_that_may_change_the_shape_stays(shape: list[int]) -> None:
    _negative(_g("r = Reshape(x, s)\n y = Neg(r)", "(float[N, 4] x) => (float[M, K] y)"),
              {"s": np.array(shape, I64)})


def test_reshape_with_a_runtime_target_stays() -> None:
    _negative(_g("r = Reshape(x, s)\n y = Neg(r)", "(float[N, 4] x, int64[2] s) => (float[N, 4] y)"))


def test_reshape_of_a_reshape_reads_the_first_input() -> None:
    m, stats = _positive(_g("a = Reshape(x, s1)\n b = Reshape(a, s2)\n y = Neg(b)",
                            "(float[N, 4] x) => (float[N, 2, 2] y)"),
                         {"s1": np.array([-1], I64), "s2": np.array([-1, 2, 2], I64)}, ["Reshape", "Neg"])
    assert stats == {"reshape_chain": 1}


def test_reshape_of_a_reshape_with_a_copying_zero_stays() -> None:
    # the 0 copies a dim of the intermediate [2N, 2]: reading x [N, 4] instead would give [N, 1, 4]
    _negative(_g("a = Reshape(x, s1)\n b = Reshape(a, s2)\n y = Neg(b)", "(float[N, 4] x) => (float[M, 1, 2] y)"),
              {"s1": np.array([-1, 2], I64), "s2": np.array([0, 1, -1], I64)})


def test_reshape_of_a_reshape_read_elsewhere_stays() -> None:
    _negative(_g("a = Reshape(x, s1)\n b = Reshape(a, s2)\n y = Neg(b)\n z = Abs(a)",
                 "(float[N, 4] x) => (float[N, 2, 2] y, float[M] z)"),
              {"s1": np.array([-1], I64), "s2": np.array([-1, 2, 2], I64)})


@pytest.mark.parametrize("shape", [[1, 4], [4], [1], [1, 1]])
def test_expand_that_does_not_grow_is_removed(shape: list[int]) -> None:
    _positive(_g("a = Relu(x)\n e = Expand(a, s)\n y = Neg(e)"), {"s": np.array(shape, I64)}, ["Relu", "Neg"])


@pytest.mark.parametrize("shape", [[3, 4], [2, 1, 4], [5, 1, 1]])
def test_expand_that_may_grow_stays(shape: list[int]) -> None:
    _negative(_g("e = Expand(x, s)\n y = Neg(e)", "(float[N, 4] x) => (float[M, 4] y)"),
              {"s": np.array(shape, I64)})


def test_unsqueeze_with_no_axes_and_squeeze_of_no_unit_dims_are_removed() -> None:
    _positive(_g("a = Relu(x)\n u = Unsqueeze(a, none)\n s = Squeeze(u)\n y = Neg(s)",
                 "(float[2, 4] x) => (float[2, 4] y)"), {"none": np.zeros(0, I64)}, ["Relu", "Neg"],
              bindings=[{}])


def test_squeeze_of_a_possible_unit_dim_stays() -> None:
    _negative(_g("s = Squeeze(x)\n y = Neg(s)", "(float[N, 4] x) => (float[M] y)"))
    _negative(_g("s = Squeeze(x)\n y = Neg(s)", "(float[1, 4] x) => (float[4] y)"))


def test_squeeze_of_unsqueeze_over_the_same_axes_is_removed() -> None:
    _positive(_g("a = Relu(x)\n u = Unsqueeze(a, ax)\n s = Squeeze(u, ax2)\n y = Neg(s)"),
              {"ax": np.array([0, -1], I64), "ax2": np.array([3, 0], I64)}, ["Relu", "Neg"])


def test_unsqueeze_of_squeeze_over_the_same_axes_is_removed() -> None:
    _positive(_g("a = Relu(x)\n s = Squeeze(a, ax)\n u = Unsqueeze(s, ax)\n y = Neg(u)",
                 "(float[N, 1, 4] x) => (float[N, 1, 4] y)"), {"ax": np.array([1], I64)}, ["Relu", "Neg"])


def test_squeeze_unsqueeze_attribute_axes_opset_11() -> None:
    _positive(_g("a = Relu(x)\n u = Unsqueeze<axes = [1]>(a)\n s = Squeeze<axes = [-2]>(u)\n y = Neg(s)", opset=11),
              None, ["Relu", "Neg"])


def test_squeeze_of_unsqueeze_over_other_axes_stays() -> None:
    _negative(_g("u = Unsqueeze(x, ax)\n s = Squeeze(u, ax2)\n y = Neg(s)", "(float[N, 4] x) => (float[N, 4] y)"),
              {"ax": np.array([0, 1], I64), "ax2": np.array([0, 2], I64)})


# ----------------------------------------------------------------------------------------------------------------
# Transpose
# ----------------------------------------------------------------------------------------------------------------
def test_identity_transpose_is_removed() -> None:
    _positive(_g("a = Relu(x)\n t = Transpose<perm = [0, 1]>(a)\n y = Neg(t)"), None, ["Relu", "Neg"])
    _positive(_g("a = Relu(x)\n t = Transpose(a)\n y = Neg(t)", "(float[4] x) => (float[4] y)"), None,
              ["Relu", "Neg"], bindings=[{}])


def test_moving_transpose_stays() -> None:
    _negative(_g("t = Transpose<perm = [1, 0]>(x)\n y = Neg(t)", "(float[N, 4] x) => (float[4, N] y)"))


def test_transpose_without_perm_of_unknown_rank_stays() -> None:
    m = from_text(_g("t = Transpose(x)\n y = Neg(t)", "(float[N, 4] x) => (float[4, N] y)"))
    # an unknown-rank input: drop the declared shape (and what the symbol table could learn from it)
    m.graph.inputs[0].set_tensor_type(DataType.FLOAT, None)
    stats = _noop(m)
    assert not stats


def test_transposes_cancelling_out_are_both_removed() -> None:
    _, stats = _positive(_g("a = Relu(x)\n t1 = Transpose<perm = [1, 2, 0]>(a)\n t2 = Transpose<perm = [2, 0, 1]>(t1)"
                            "\n y = Neg(t2)", "(float[N, 3, 4] x) => (float[N, 3, 4] y)"), None, ["Relu", "Neg"])
    assert stats == {"transpose_chain": 1}


def test_transpose_chain_composes_into_one() -> None:
    m, _ = _positive(_g("t1 = Transpose<perm = [1, 0, 2]>(x)\n t2 = Transpose<perm = [0, 2, 1]>(t1)\n y = Neg(t2)",
                        "(float[N, 3, 4] x) => (float[3, 4, N] y)"), None, ["Transpose", "Neg"])
    t = next(iter(m.graph))
    assert t.attr("perm") == [1, 2, 0] and t.input(0).name == "x"


def test_transpose_chain_with_a_shared_first_transpose_keeps_it() -> None:
    m, _ = _positive(_g("t1 = Transpose<perm = [1, 0]>(x)\n t2 = Transpose<perm = [1, 0]>(t1)\n y = Neg(t2)"
                        "\n z = Abs(t1)", "(float[N, 4] x) => (float[N, 4] y, float[4, N] z)"), None,
                     ["Transpose", "Neg", "Abs"])
    assert m.graph.outputs[0].producer.input(0).name == "x"


# ----------------------------------------------------------------------------------------------------------------
# Pad, Slice, Concat, Split
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_with_zero_pads_is_removed(mode: str) -> None:
    _positive(_g(f'a = Relu(x)\n p = Pad<mode = "{mode}">(a, pads)\n y = Neg(p)'), {"pads": np.zeros(4, I64)},
              ["Relu", "Neg"])


def test_pad_opset_2_attribute() -> None:
    _positive(_g("a = Relu(x)\n p = Pad<pads = [0, 0, 0, 0]>(a)\n y = Neg(p)", opset=10), None, ["Relu", "Neg"])


def test_pad_with_padding_stays() -> None:
    _negative(_g("p = Pad(x, pads)\n y = Neg(p)", "(float[N, 4] x) => (float[N, 5] y)"),
              {"pads": np.array([0, 0, 0, 1], I64)})


@pytest.mark.parametrize("starts,ends,axes,steps", [
    ([0], [2 ** 63 - 1], None, None), ([0, 0], [2 ** 31 - 1, 4], [0, 1], [1, 1]), ([-4], [4], [-1], None),
    ([0], [100], [1], [1]),
])
def test_full_range_slice_is_removed(starts: list[int], ends: list[int], axes: list[int] | None,
                                     steps: list[int] | None) -> None:
    inits = {"st": np.array(starts, I64), "en": np.array(ends, I64)}
    args = "a, st, en"
    if axes is not None:
        inits["ax"] = np.array(axes, I64)
        args += ", ax"
    if steps is not None:
        inits["sp"] = np.array(steps, I64)
        args += ", sp"
    _positive(_g(f"a = Relu(x)\n s = Slice({args})\n y = Neg(s)"), inits, ["Relu", "Neg"])


@pytest.mark.parametrize("starts,ends,axes,steps", [
    ([0], [3], [1], [1]), ([1], [2 ** 62], [1], [1]), ([0], [2 ** 62], [1], [2]), ([0], [100], [0], [1]),
    ([0], [-1], [1], [1]),
])
def test_slice_that_may_cut_stays(starts: list[int], ends: list[int], axes: list[int], steps: list[int]) -> None:
    inits = {"st": np.array(starts, I64), "en": np.array(ends, I64), "ax": np.array(axes, I64),
             "sp": np.array(steps, I64)}
    _negative(_g("s = Slice(x, st, en, ax, sp)\n y = Neg(s)", "(float[N, 4] x) => (float[M, K] y)"), inits)


def test_slice_opset_9_attributes() -> None:
    _positive(_g("a = Relu(x)\n s = Slice<starts = [0], ends = [9223372036854775807], axes = [0]>(a)\n y = Neg(s)",
                 opset=9), None, ["Relu", "Neg"])


def test_concat_of_one_input_and_split_into_one_are_removed() -> None:
    _positive(_g("a = Relu(x)\n c = Concat<axis = 1>(a)\n s = Split<axis = 1, num_outputs = 1>(c)\n y = Neg(s)"),
              None, ["Relu", "Neg"])
    _positive(_g("a = Relu(x)\n s = Split<axis = 1>(a, four)\n y = Neg(s)"), {"four": np.array([4], I64)},
              ["Relu", "Neg"])


def test_split_with_an_unproven_size_stays() -> None:
    _negative(_g("s = Split<axis = 0>(x, n)\n y = Neg(s)", "(float[N, 4] x) => (float[M, 4] y)"),
              {"n": np.array([3], I64)})


def test_concat_of_two_stays() -> None:
    _negative(_g("c = Concat<axis = 1>(x, x)\n y = Neg(c)", "(float[N, 4] x) => (float[N, 8] y)"))


# ----------------------------------------------------------------------------------------------------------------
# neutral elements
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("expr,value,cshape", [
    ("Add(a, c)", 0, [4]), ("Add(c, a)", 0, []), ("Sub(a, c)", 0, [1, 4]), ("Mul(a, c)", 1, [1]),
    ("Mul(c, a)", 1, [4]), ("Div(a, c)", 1, []), ("Pow(a, c)", 1, [4]),
])
def test_neutral_element_is_removed(dtype: type, expr: str, value: int, cshape: list[int]) -> None:
    t = TEXT[dtype]
    _positive(_g(f"a = Abs(x)\n r = {expr}\n y = Neg(r)", f"({t}[N, 4] x) => ({t}[N, 4] y)"),
              {"c": np.full(cshape, value, dtype)}, ["Abs", "Neg"])


@pytest.mark.parametrize("expr,value,cshape", [
    ("And(a, c)", True, []), ("And(c, a)", True, [4]), ("Or(a, c)", False, [1, 4]), ("Or(c, a)", False, []),
])
def test_boolean_neutral_element_is_removed(expr: str, value: bool, cshape: list[int]) -> None:
    _positive(_g(f"a = Not(x)\n r = {expr}\n y = Not(r)", "(bool[N, 4] x) => (bool[N, 4] y)"),
              {"c": np.full(cshape, value, np.bool_)}, ["Not", "Not"])


@pytest.mark.parametrize("expr,value,cshape,sig", [
    ("And(x, c)", False, [], None),  # x and false is false
    ("Or(x, c)", True, [4], None),  # x or true is true
    ("And(x, c)", True, [2, 4], "(bool[N, 4] x) => (bool[2, 4] y)"),  # broadcasting grows the shape
])
def test_boolean_neutral_look_alikes_stay(expr: str, value: bool, cshape: list[int], sig: str | None) -> None:
    _negative(_g(f"r = {expr}\n y = Not(r)", sig or "(bool[N, 4] x) => (bool[N, 4] y)"),
              {"c": np.full(cshape, value, np.bool_)})


def test_pow_of_one_with_an_other_exponent_type() -> None:
    _positive(_g("a = Abs(x)\n r = Pow(a, c)\n y = Neg(r)"), {"c": np.array(1, I64)}, ["Abs", "Neg"])


@pytest.mark.parametrize("expr,value,cshape,sig", [
    ("Sub(c, x)", 0, [4], None),  # 0 - x is not x
    ("Div(c, x)", 1, [4], None),  # 1 / x is not x
    ("Add(x, c)", 1, [4], None),  # not the neutral value
    ("Add(x, c)", 0, [2, 4], "(float[N, 4] x) => (float[2, 4] y)"),  # broadcasting grows the shape
    ("Mul(x, c)", 1, [3, 1, 1], "(float[N, 4] x) => (float[3, N, 4] y)"),  # grows the rank
    ("Add(x, c)", 0, [4], "(float[N] x) => (float[4] y)"),  # N may be 1: broadcasting may grow it
    ("Mul(x, c)", 1, [1], "(float x) => (float[1] y)"),  # a scalar x gains a dim
])
def test_neutral_element_that_changes_the_result_stays(expr: str, value: int, cshape: list[int],
                                                       sig: str | None) -> None:
    _negative(_g(f"r = {expr}\n y = Neg(r)", sig or "(float[N, 4] x) => (float[N, 4] y)"),
              {"c": np.full(cshape, value, np.float32)})


def test_neutral_element_from_an_overridable_initializer_stays() -> None:
    # IR >= 4: an initializer listed as an input is a default the caller may replace
    _negative(_g("r = Add(x, c)\n y = Neg(r)", "(float[N, 4] x, float[4] c) => (float[N, 4] y)"),
              {"c": np.zeros(4, np.float32)})


def test_neutral_element_from_a_constant_node() -> None:
    _positive(_g("a = Abs(x)\n c = Constant<value_float = 1.0>()\n r = Mul(a, c)\n y = Neg(r)"), None,
              ["Abs", "Constant", "Neg"])


# ----------------------------------------------------------------------------------------------------------------
# the interface
# ----------------------------------------------------------------------------------------------------------------
def test_noop_between_an_input_and_an_output_becomes_an_identity_once() -> None:
    # a Reshape from a graph input to a graph output: its output keeps its name through an Identity
    m, _ = _positive(_g("y = Reshape(x, s)"), {"s": np.array([0, 4], I64)}, ["Identity"])
    assert m.graph.outputs[0].name == "y"


def test_ir3_model_initializer_inputs_are_constants() -> None:
    # IR 3: every initializer is listed as an input, and none can be overridden
    text = _g("a = Relu(x)\n b = Identity(a)\n r = Add(b, c)\n y = Neg(r)",
              "(float[N, 4] x, float[4] c) => (float[N, 4] y)", opset=9).replace("ir_version: 8", "ir_version: 3")
    _positive(text, {"c": np.zeros(4, np.float32)}, ["Relu", "Neg"])


@pytest.mark.parametrize("dtype", ["float16", "double", "int8", "int64", "bool"])
def test_data_movement_noops_for_every_dtype(dtype: str) -> None:
    # Identity, Reshape, Transpose, Squeeze/Unsqueeze, Slice, Concat, Expand and Split move data whatever its type
    body = """a = Transpose<perm = [1, 0]>(x)
      b = Identity(a)
      c = Reshape(b, s)
      d = Transpose<perm = [1, 0]>(c)
      e = Unsqueeze(d, ax)
      f = Squeeze(e, ax)
      g = Slice(f, st, en)
      h = Concat<axis = 0>(g)
      i = Expand(h, one)
      j = Split<axis = 1, num_outputs = 1>(i)
      k = Transpose<perm = [0, 1]>(j)
      y = Concat<axis = 1>(k, x)"""
    _, stats = _positive(_g(body, f"({dtype}[N, 4] x) => ({dtype}[N, 8] y)"),
                         {"s": np.array([4, -1], I64), "ax": np.array([1], I64), "st": np.array([0], I64),
                          "en": np.array([2 ** 62], I64), "one": np.array([1], I64)}, ["Concat"])
    assert stats == {"transpose_chain": 1, "identity": 1, "reshape_same_shape": 1, "squeeze_unsqueeze": 1,
                     "slice_full": 1, "concat_one": 1, "expand_same_shape": 1, "split_one": 1,
                     "transpose_identity": 1}


# ----------------------------------------------------------------------------------------------------------------
# reshape-like chains that come back to an earlier shape; zero RNN states
# ----------------------------------------------------------------------------------------------------------------
def test_reshape_of_squeeze_back_to_the_sliced_shape() -> None:
    # what the dynamo exporter leaves: Reshape(Squeeze(Shape(x)[0:1]), [1]) is Shape(x)[0:1]
    _, stats = _positive(_g("s = Shape <start = 0, end = 1> (x)\n q = Squeeze(s)\n one = Constant <value = "
                            "int64[1] {1}> ()\n r = Reshape(q, one)\n y = Add(r, r)",
                            sig="(float[N, 4] x) => (int64[1] y)"), None,
                         ["Shape", "Squeeze", "Constant", "Add"])  # the dead Squeeze is DCE's
    assert stats.get("reshape_back") == 1


def test_unsqueeze_reshape_chain_back_to_the_input_shape() -> None:
    _, stats = _positive(_g("a = Relu(x)\n ax = Constant <value = int64[1] {0}> ()\n u = Unsqueeze(a, ax)\n"
                            " f = Flatten <axis = 2> (u)\n t = Constant <value = int64[2] {0, 4}> ()\n"
                            " r = Reshape(f, t)\n y = Neg(r)"), None,
                         ["Relu", "Constant", "Unsqueeze", "Constant", "Neg"])
    assert stats.get("reshape_back") == 1


def test_reshape_chain_to_another_shape_stays() -> None:
    _negative(_g("ax = Constant <value = int64[1] {0}> ()\n u = Unsqueeze(x, ax)\n t = Constant <value = int64[2] "
                 "{4, -1}> ()\n r = Reshape(u, t)\n y = Neg(r)", sig="(float[N, 4] x) => (float[4, N] y)"))


def test_reshape_chain_through_a_non_reshape_op_stays() -> None:
    _negative(_g("ax = Constant <value = int64[1] {0}> ()\n u = Unsqueeze(x, ax)\n n = Neg(u)\n"
                 " t = Constant <value = int64[2] {0, 4}> ()\n r = Reshape(n, t)\n y = Relu(r)"))


_LSTM = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[T, N, 3] x) => (float[T, 1, N, 5] y) {{
      s = Shape(x)
      i1 = Constant <value = int64[1] {{1}}> ()
      b = Gather(s, i1)
      one = Constant <value = int64[1] {{1}}> ()
      hid = Constant <value = int64[1] {{5}}> ()
      shp = Concat <axis = 0> (one, b, hid)
      h0 = ConstantOfShape {attr} (shp)
      y, yh, yc = LSTM <hidden_size = 5> (x, W, R, B, , h0, h0)
    }}
"""


@pytest.mark.parametrize("attr", ["", "<value = float[1] {0.0}>"])
def test_lstm_zero_initial_state_is_dropped(attr: str, rng: np.random.Generator) -> None:
    inits = {"W": rng.standard_normal((1, 20, 3)).astype(np.float32),
             "R": rng.standard_normal((1, 20, 5)).astype(np.float32),
             "B": rng.standard_normal((1, 40)).astype(np.float32)}
    # the zeros' ConstantOfShape goes; the chain that computed its shape is left to DCE
    m, stats = _positive(_LSTM.format(attr=attr), inits,
                         ["Shape", "Constant", "Gather", "Constant", "Constant", "Concat", "LSTM"],
                         bindings=[{"T": 2, "N": 1}, {"T": 3, "N": 4}])
    assert stats == {"rnn_zero_state": 1}
    lstm = list(m.graph)[-1]
    assert lstm.input(5) is None and lstm.input(6) is None


def test_gru_zero_initializer_state_is_dropped(rng: np.random.Generator) -> None:
    text = _g("y, yh = GRU <hidden_size = 2> (x, W, R, B, , h0)", sig="(float[T, 3, 4] x) => (float[T, 1, 3, 2] y)")
    inits = {"W": rng.standard_normal((1, 6, 4)).astype(np.float32),
             "R": rng.standard_normal((1, 6, 2)).astype(np.float32),
             "B": rng.standard_normal((1, 12)).astype(np.float32), "h0": np.zeros((1, 3, 2), np.float32)}
    m, stats = _positive(text, inits, ["GRU"], bindings=[{"T": 2}, {"T": 5}])
    assert stats == {"rnn_zero_state": 1}


def test_rnn_nonzero_initial_state_stays(rng: np.random.Generator) -> None:
    text = _g("y, yh = GRU <hidden_size = 2> (x, W, R, B, , h0)", sig="(float[T, 3, 4] x) => (float[T, 1, 3, 2] y)")
    inits = {"W": rng.standard_normal((1, 6, 4)).astype(np.float32),
             "R": rng.standard_normal((1, 6, 2)).astype(np.float32),
             "B": rng.standard_normal((1, 12)).astype(np.float32), "h0": np.full((1, 3, 2), 0.5, np.float32)}
    _negative(text, inits)
    _negative(_LSTM.format(attr="<value = float[1] {0.25}>"), {
        "W": rng.standard_normal((1, 20, 3)).astype(np.float32),
        "R": rng.standard_normal((1, 20, 5)).astype(np.float32),
        "B": rng.standard_normal((1, 40)).astype(np.float32)})
