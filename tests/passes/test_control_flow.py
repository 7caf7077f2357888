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

