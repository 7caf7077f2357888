"""Tests of the simplify-control-flow pass (graphopt/passes/control_flow.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from graphopt.ir import serde
from graphopt.ir.core import Model
from graphopt.ir.verify import verify
from graphopt.passes.control_flow import SimplifyControlFlow
from graphopt.testing import (assert_same_outputs, assert_unchanged, assert_valid, count_ops, from_text, op_types,
                              pass_stats, run, snapshot)

H = '<ir_version: 8, opset_import: ["" : 17]>'
NAME = "simplify-control-flow"


def _scf(m: Model, **options: object) -> dict[str, int]:
    return pass_stats(m, NAME, **options)


def _check(before: bytes, m: Model) -> None:
    assert_valid(m)
    assert_same_outputs(before, m, bindings=[{"N": 2}, {"N": 5}])


def _idempotent(m: Model) -> None:
    assert_unchanged(m, NAME)


def _unchanged(text: str, inits: dict[str, np.ndarray] | None = None, **kw: object) -> Model:
    return assert_unchanged(from_text(text, inits, **kw), NAME)  # type: ignore[arg-type]


def _if(cond_def: str, extra_in: str = "") -> str:
    return f"""
    {H}
    g (float[N] x{extra_in}) => (float[N] y) {{
      {cond_def}
      t = Neg(x)
      r = If(c) <then_branch = g1 () => (float[N] a) {{ e = Exp(t)  a = Add(e, x) }},
                 else_branch = g2 () => (float[N] b) {{ b = Abs(t) }}>
      y = Sin(r)
    }}
    """


# ---------------------------------------------------------------------------------------------------------------
# If with a constant condition
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, taken", [(1, ["Exp", "Add"]), (0, ["Abs"])])
def test_if_with_constant_node_condition_is_replaced_by_the_taken_branch(value: int, taken: list[str]) -> None:
    m = from_text(_if(f"c = Constant<value = bool {{{value}}}>()"))
    before = snapshot(m)
    assert _scf(m) == {"ifs_constant_cond": 1, "nodes_moved": len(taken)}
    assert op_types(m) == ["Constant", "Neg", *taken, "Sin"]
    _check(before, m)
    _idempotent(m)


@pytest.mark.parametrize("ir", [3, 8])
def test_if_with_constant_initializer_condition(ir: int) -> None:
    # IR 3: the initializer is listed as an input too, and is still a constant
    extra = ", bool[1] c" if ir == 3 else ""
    head = '<ir_version: 3, opset_import: ["" : 8]>' if ir == 3 else H
    m = from_text(_if("", extra).replace(H, head), {"c": np.array([False])}, ir_version=ir)
    before = snapshot(m)
    assert _scf(m) == {"ifs_constant_cond": 1, "nodes_moved": 1}
    assert op_types(m) == ["Neg", "Abs", "Sin"]
    _check(before, m)
    _idempotent(m)


def test_non_constant_condition_is_left_alone() -> None:
    _unchanged(_if("c = Greater(x1, zero)", ", float[1] x1").replace(
        "t = Neg(x)", "t = Neg(x)"), {"zero": np.zeros(1, np.float32)})


def test_overridable_ir4_initializer_condition_is_left_alone() -> None:
    # an IR>=4 initializer listed as a graph input is a default the caller may override: not a constant
    _unchanged(_if("", ", bool[1] c"), {"c": np.array([True])})


def test_multi_element_condition_is_left_alone() -> None:
    _unchanged(_if("c = Constant<value = bool[2] {1, 1}>()"))


def test_branch_initializers_move_to_the_main_graph_and_outputs_map_to_outer_values() -> None:
    import onnx.helper as oh

    mp = onnx.parser.parse_model(f"""
    {H}
    g (float[N] x) => (float[N] y, float[N] z) {{
      c = Constant<value = bool {{1}}>()
      t = Neg(x)
      y, z = If(c) <then_branch = g1 () => (float[N] a, float[N] t1) {{ a = Add(x, k)  t1 = Identity(t) }},
                    else_branch = g2 () => (float[N] b, float[N] b2) {{ b = Abs(t)  b2 = Abs(x) }}>
    }}
    """)
    then_g = mp.graph.node[2].attribute[0].g
    then_g.initializer.append(onnx.numpy_helper.from_array(np.array([2.5], np.float32), "k"))
    del oh
    m = serde.from_proto(mp)
    before = snapshot(m)
    assert _scf(m) == {"ifs_constant_cond": 1, "nodes_moved": 2}
    assert op_types(m) == ["Constant", "Neg", "Add", "Identity"]
    assert [v.name for v in m.graph.outputs] == ["y", "z"]  # the interface keeps its names
    (k,) = [name for name in m.graph.initializers]
    assert m.graph.initializers[k].const.numpy().tolist() == [2.5]
    _check(before, m)
    _idempotent(m)


def test_nested_ifs_and_ifs_inside_loop_bodies_are_simplified_in_one_run() -> None:
    m = from_text(f"""
    {H}
    g (float[N] x, int64 n) => (float[N] y, float[N] w) {{
      c = Constant<value = bool {{1}}>()
      y = If(c) <then_branch = g1 () => (float[N] a) {{
                   a = If(c) <then_branch = g3 () => (float[N] a2) {{ a2 = Exp(x) }},
                              else_branch = g4 () => (float[N] b2) {{ b2 = Cos(x) }}>
                 }},
                 else_branch = g2 () => (float[N] b) {{ b = Abs(x) }}>
      w = Loop(n, "", x) <body = body (int64 i, bool cin, float[N] acc) => (bool cout, float[N] acc2) {{
        cout = Identity(cin)
        s = If(c) <then_branch = g5 () => (float[N] p) {{ p = Sin(acc) }},
                   else_branch = g6 () => (float[N] q) {{ q = Cos(acc) }}>
        acc2 = Add(s, acc)
      }}>
    }}
    """)
    before = snapshot(m)
    assert _scf(m) == {"ifs_constant_cond": 3, "nodes_moved": 3}
    assert count_ops(m) == {"Constant": 1, "Exp": 1, "Loop": 1, "Identity": 1, "Sin": 1, "Add": 1}
    assert_valid(m)
    for n in (0, 2):  # a scalar trip count: fed by hand
        feeds = {"x": np.linspace(-1, 1, 4, dtype=np.float32), "n": np.array(n, np.int64)}
        for a, b in zip(run(before, feeds), run(m, feeds)):
            np.testing.assert_allclose(b, a, rtol=1e-6)
    _idempotent(m)


def test_branch_names_that_clash_elsewhere_are_renamed() -> None:
    # Two sibling branches may both define `u` (different scopes); once one branch's `u` joins the main graph it
    # would shadow the other's, so it is renamed.
    m = from_text(f"""
    {H}
    g (float[N] x, bool[1] d) => (float[N] y) {{
      c = Constant<value = bool {{1}}>()
      r = If(c) <then_branch = g1 () => (float[N] a) {{ u = Exp(x)  a = Neg(u) }},
                 else_branch = g2 () => (float[N] b) {{ b = Abs(x) }}>
      y = If(d) <then_branch = g3 () => (float[N] a2) {{ u = Sin(r)  a2 = Neg(u) }},
                 else_branch = g4 () => (float[N] b2) {{ b2 = Cos(r) }}>
    }}
    """)
    before = snapshot(m)
    assert _scf(m) == {"ifs_constant_cond": 1, "nodes_moved": 2, "values_renamed": 1}
    assert verify(m, strict=False) == []
    _check(before, m)
    _idempotent(m)


# ---------------------------------------------------------------------------------------------------------------
# If with identical branches
# ---------------------------------------------------------------------------------------------------------------
def test_if_with_identical_branches_is_replaced_by_one_of_them() -> None:
    m = from_text(f"""
    {H}
    g (float[N] x, bool[1] c) => (float[N] y) {{
      y = If(c) <then_branch = g1 () => (float[N] a) {{ t = Neg(x)  a = LeakyRelu<alpha = 0.2>(t) }},
                 else_branch = g2 () => (float[N] b) {{ t2 = Neg(x)  b = LeakyRelu<alpha = 0.2>(t2) }}>
    }}
    """)
    before = snapshot(m)
    assert _scf(m) == {"ifs_identical_branches": 1, "nodes_moved": 2}
    assert op_types(m) == ["Neg", "LeakyRelu"]
    _check(before, m)
    _idempotent(m)


def test_if_with_branches_differing_in_an_attribute_is_left_alone() -> None:
    _unchanged(f"""
    {H}
    g (float[N] x, bool[1] c) => (float[N] y) {{
      y = If(c) <then_branch = g1 () => (float[N] a) {{ t = Neg(x)  a = LeakyRelu<alpha = 0.2>(t) }},
                 else_branch = g2 () => (float[N] b) {{ t2 = Neg(x)  b = LeakyRelu<alpha = 0.3>(t2) }}>
    }}
    """)


# ---------------------------------------------------------------------------------------------------------------
# Loop
# ---------------------------------------------------------------------------------------------------------------
def _loop(trip: str, cond: str, scan: bool = False) -> str:
    scan_out = ", float[N] sc" if scan else ""
    scan_body = "  sc = Identity(acc)" if scan else ""
    return f"""
    {H}
    g (float[N] x) => (float[N] y{", float[M, N] z" if scan else ""}) {{
      {trip}
      {cond}
      l{", z" if scan else ""} = Loop(m, c, x) <body = body (int64 i, bool cin, float[N] acc) => (bool cout, float[N] acc2{scan_out}) {{
        cout = Identity(cin)
        acc2 = Add(acc, acc){scan_body}
      }}>
      y = Neg(l)
    }}
    """


@pytest.mark.parametrize("trip, cond", [
    ("m = Constant<value = int64 {0}>()", "c = Constant<value = bool {1}>()"),
    ("m = Constant<value = int64 {5}>()", "c = Constant<value = bool {0}>()"),
])
def test_loop_that_runs_zero_times_is_replaced_by_its_initial_values(trip: str, cond: str) -> None:
    m = from_text(_loop(trip, cond))
    before = snapshot(m)
    assert _scf(m) == {"loops_zero_trip": 1}
    assert op_types(m) == ["Constant", "Constant", "Neg"]
    assert list(m.graph)[-1].input(0) is m.graph.inputs[0]
    _check(before, m)
    _idempotent(m)


@pytest.mark.parametrize("trip, cond, scan", [
    ("m = Constant<value = int64 {3}>()", "c = Constant<value = bool {1}>()", False),
    ("m = Constant<value = int64 {0}>()", "c = Constant<value = bool {1}>()", True),  # scan outputs: skipped
])
def test_loop_that_may_run_or_has_scan_outputs_is_left_alone(trip: str, cond: str, scan: bool) -> None:
    _unchanged(_loop(trip, cond, scan))


# ---------------------------------------------------------------------------------------------------------------
# undo
# ---------------------------------------------------------------------------------------------------------------
def test_a_rolled_back_inlining_restores_the_model_exactly() -> None:
    from graphopt.jit import init
    from graphopt.pipeline import PipelineConfig

    m = from_text(_if("c = Constant<value = bool {1}>()"))
    text = onnx.printer.to_text(serde.to_proto(m))
    ctx = init(m, PipelineConfig(passes=[]), plugins=False)
    j = m.begin_journal()
    assert SimplifyControlFlow().run(m, ctx).changed
    m.end_journal()
    m.rollback(j)
    assert verify(m, strict=False) == []
    assert onnx.printer.to_text(serde.to_proto(m)) == text



# ---------------------------------------------------------------------------------------------------------------
# If with a branch that always makes the run fail (a rank that a later op cannot take)
# ---------------------------------------------------------------------------------------------------------------
def _rank_if(consumer: str = "y = Gemm(r, w)", then: str = "a = Unsqueeze(x, zero)", extra: str = "",
             out: str = "float[N, 3] y") -> str:
    # the then branch gives a 3-D tensor, the else branch a 2-D one; Gemm takes 2-D inputs only
    return f"""
    {H}
    g (float[N, 4] x, bool c{extra}) => ({out}) {{
      r = If(c) <then_branch = g1 () => (float[1, N, 4] a) {{ {then} }},
                 else_branch = g2 () => (float[N, 4] b) {{ b = Neg(x) }}>
      {consumer}
    }}
    """


_RANK_INITS = {"zero": np.array([0], np.int64), "w": np.ones((4, 3), np.float32)}


def _feeds(c: bool) -> dict[str, np.ndarray]:
    return {"x": np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4), "c": np.array(c)}


def test_if_whose_branch_gives_a_rank_a_later_op_cannot_take_becomes_the_other_branch() -> None:
    # a second If reads a copy of the same condition (Cast to bool of a bool, Identity): it is decided too
    m = from_text(_rank_if(consumer="""y = Gemm(r, w)
      c2 = Cast<to = 9>(c)
      c3 = Identity(c2)
      z = If(c3) <then_branch = g3 () => (float[N, 4] p) { p = Exp(x) }, else_branch = g4 () => (float[N, 4] q) { q = Sin(x) }>
    """, out="float[N, 3] y, float[N, 4] z"), _RANK_INITS)
    before = snapshot(m)
    assert _scf(m) == {"if_conditions_pinned": 2, "ifs_constant_cond": 2, "nodes_moved": 2}
    assert count_ops(m) == {"Neg": 1, "Gemm": 1, "Cast": 1, "Identity": 1, "Sin": 1}
    assert_valid(m)
    for a, b in zip(run(before, _feeds(False)), run(m, _feeds(False))):  # with c true, the original fails
        np.testing.assert_allclose(b, a, rtol=1e-6)
    with pytest.raises(Exception):
        run(before, _feeds(True))
    _idempotent(m)


def test_rank_need_is_followed_through_unsqueeze_and_same_rank_ops() -> None:
    # LSTM's initial_h must be 3-D: Unsqueeze(Relu(r)) is 3-D only for the 2-D branch
    m = from_text(f"""
    {H}
    g (float[1, 4] x, bool c) => (float[1, 1, 2] y) {{
      r = If(c) <then_branch = g1 () => (float[1, 1, 4] a) {{ a = Unsqueeze(x, zero) }},
                 else_branch = g2 () => (float[1, 4] b) {{ b = Neg(x) }}>
      h = Relu(r)
      h3 = Unsqueeze(h, zero)
      xs = Unsqueeze(x, zero)
      _, y = LSTM<hidden_size = 4>(xs, wl, rl, , , h3)
    }}
    """, {"zero": np.array([0], np.int64), "wl": np.ones((1, 16, 4), np.float32) * 0.1,
          "rl": np.ones((1, 16, 4), np.float32) * 0.1})
    before = snapshot(m)
    assert _scf(m)["ifs_constant_cond"] == 1
    assert "If" not in op_types(m)
    feeds = {"x": np.linspace(-1, 1, 4, dtype=np.float32).reshape(1, 4), "c": np.array(False)}
    for a, b in zip(run(before, feeds), run(m, feeds)):
        np.testing.assert_allclose(b, a, rtol=1e-6)


@pytest.mark.parametrize("case", ["reader_in_subgraph", "reader_not_live", "rank_only_declared", "both_fail",
                                  "option_off"])
def test_if_decided_by_rank_only_when_that_is_proven(case: str) -> None:
    kw: dict[str, object] = {}
    if case == "reader_in_subgraph":
        # the Gemm runs only when another If takes its then branch
        text = _rank_if(consumer="y = If(c) <then_branch = g5 () => (float[N, 3] p) { p = Gemm(r, w) }, "
                                 "else_branch = g6 () => (float[N, 3] q) { q = Gemm(x, w) }>")
    elif case == "reader_not_live":
        text = _rank_if(consumer="dead = Gemm(r, w)  y = Gemm(x, w)")
    elif case == "rank_only_declared":
        # the then branch's output is declared 3-D, but its rank comes from an op we know nothing of
        text = _rank_if(then="a = local.Thing(x)").replace('"" : 17]', '"" : 17, "local" : 1]')
    elif case == "both_fail":
        text = _rank_if(consumer="y = Gemm(r, w)  t = Transpose<perm = [0, 1, 2]>(r)", out="float[N, 3] y, float t")
    else:
        text = _rank_if()
        kw = {"decide_by_rank": False}
    assert_unchanged(from_text(text, _RANK_INITS), NAME, **kw)


def test_a_condition_decided_inside_a_branch_is_pinned_only_there() -> None:
    # inside k's then branch, c must be false (else the Gemm fails); the If outside that branch reads the same c
    # and may run with c true (when k is false): it stays
    m = from_text(f"""
    {H}
    g (float[N, 4] x, bool c, bool k) => (float[N, 3] y, float[N, 4] z) {{
      y = If(k) <then_branch = g1 () => (float[N, 3] o1) {{
                   r = If(c) <then_branch = g3 () => (float[1, N, 4] a) {{ a = Unsqueeze(x, zero) }},
                              else_branch = g4 () => (float[N, 4] b) {{ b = Neg(x) }}>
                   o1 = Gemm(r, w)
                 }},
                 else_branch = g2 () => (float[N, 3] o2) {{ o2 = Gemm(x, w) }}>
      z = If(c) <then_branch = g5 () => (float[N, 4] p) {{ p = Exp(x) }}, else_branch = g6 () => (float[N, 4] q) {{ q = Sin(x) }}>
    }}
    """, _RANK_INITS)
    before = snapshot(m)
    assert _scf(m) == {"if_conditions_pinned": 1, "ifs_constant_cond": 1, "nodes_moved": 1}
    assert count_ops(m) == {"If": 2, "Neg": 1, "Gemm": 2, "Exp": 1, "Sin": 1}
    assert_valid(m)
    for c, k in ((True, False), (False, False), (False, True)):  # every run of the original that succeeds
        feeds = {**_feeds(c), "k": np.array(k)}
        for a, b in zip(run(before, feeds), run(m, feeds)):
            np.testing.assert_allclose(b, a, rtol=1e-6)
    _idempotent(m)
