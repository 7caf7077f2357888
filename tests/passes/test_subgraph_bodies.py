"""If branches and Loop bodies optimized as graphs of their own, by the passes of the -O2 pipeline together.

Each pass has its own tests of subgraph handling; these check what they achieve between them on the shapes that
exporters emit for control flow (nested Ifs on conditions that folding decides, constants computed in branches,
loop-invariant constants, unused outputs), with onnxruntime-checked outputs.
"""

from __future__ import annotations

import numpy as np

import graphopt
from graphopt.ir.core import Model
from graphopt.testing import (assert_same_outputs, assert_valid, count_ops, from_text, op_types, pass_stats, run,
                              snapshot)

H = '<ir_version: 8, opset_import: ["" : 17]>'


def _o2(m: Model) -> None:
    res = graphopt.run(m, preset="O2")
    assert not res.record.failed, res.record.warnings
    assert res.record.converged


def _check(before: bytes, m: Model) -> None:
    assert_valid(m)
    assert_same_outputs(before, m, bindings=[{"N": 2}, {"N": 5}])


def _again_unchanged(m: Model) -> None:
    again = snapshot(m)
    res = graphopt.run(m, preset="O2")
    assert not any(r.changed for r in res.record.passes)
    assert snapshot(m) == again


def test_nested_if_whose_condition_folds_inside_the_outer_branch_is_inlined() -> None:
    m = from_text(f"""
    {H}
    g (float[N] x, bool c) => (float[N] y) {{
      y = If(c) <then_branch = t () => (float[N] a) {{
            k = Constant<value = float[1] {{2.0}}>()
            k2 = Mul(k, k)
            four = Constant<value = float[1] {{4.0}}>()
            eq = Equal(k2, four)
            cs = Squeeze(eq)
            a = If(cs) <then_branch = t2 () => (float[N] p) {{ p = Add(x, k2) }},
                        else_branch = e2 () => (float[N] q) {{ q = Sub(x, k2) }}>
         }}, else_branch = e () => (float[N] b) {{ b = Neg(x) }}>
    }}
    """)
    before = snapshot(m)
    _o2(m)
    # the inner If is gone (its condition is the constant true), its then branch moved into the outer branch;
    # k2 = 4 is folded and hoisted to the main graph
    assert op_types(m) == ["If", "Add", "Neg"]
    (k2,) = m.graph.initializers.values()
    assert k2.const.numpy().tolist() == [4.0]
    _check(before, m)
    _again_unchanged(m)


def test_constants_computed_in_both_branches_are_folded_and_hoisted_once() -> None:
    m = from_text(f"""
    {H}
    g (float[N] x, bool c) => (float[N] y) {{
      y = If(c) <then_branch = t () => (float[N] a) {{
            k = Constant<value = float[3] {{1.0, 2.0, 3.0}}>()
            ks = Slice(k, s0, s1)
            kk = Mul(ks, ks)
            a = Add(x, kk)
         }}, else_branch = e () => (float[N] b) {{
            k_ = Constant<value = float[3] {{1.0, 2.0, 3.0}}>()
            ks_ = Slice(k_, s0, s1)
            kk_ = Mul(ks_, ks_)
            b = Mul(x, kk_)
         }}>
    }}
    """, {"s0": np.array([1]), "s1": np.array([2])})
    before = snapshot(m)
    _o2(m)
    assert op_types(m) == ["If", "Add", "Mul"]
    # one main-graph constant [4.0], read by both branches
    (kk,) = m.graph.initializers.values()
    assert kk.const.numpy().tolist() == [4.0]
    assert sorted(n.op_type for n, _ in kk.uses()) == ["Add", "Mul"]
    _check(before, m)
    _again_unchanged(m)


def test_sibling_branches_that_reuse_a_name_fold_into_distinct_constants() -> None:
    # legal ONNX: both branches define "k" and "kk" (sibling scopes). Folding hoists both to the main graph, where
    # one name cannot stand for two values (this made fold-constants fail and roll back)
    m = from_text(f"""
    {H}
    g (float[N] x, bool c) => (float[N] y) {{
      y = If(c) <then_branch = t () => (float[N] a) {{
            k = Constant<value = float[1] {{2.0}}>()  kk = Mul(k, k)  a = Add(x, kk) }},
         else_branch = e () => (float[N] b) {{
            k = Constant<value = float[1] {{3.0}}>()  kk = Mul(k, k)  b = Add(x, kk) }}>
    }}
    """)
    before = snapshot(m)
    stats = pass_stats(m, "fold-constants")
    assert stats["folded"] == 2
    assert sorted(v.const.numpy().item() for v in m.graph.initializers.values()) == [4.0, 9.0]
    _check(before, m)


def test_cse_noops_and_shapes_inside_branch_bodies() -> None:
    m = from_text(f"""
    {H}
    g (float[N, 4] x, bool c) => (float[N, 4] y) {{
      y = If(c) <then_branch = t () => (float[N, 4] a) {{
            p = Exp(x)
            q = Exp(x)
            i = Identity(q)
            a = Add(p, i)
         }}, else_branch = e () => (float[N, 4] b) {{
            s = Shape(x)
            d1 = Gather<axis = 0>(s, one)
            d1u = Unsqueeze(d1, zero)
            tgt = Concat<axis = 0>(nd, d1u)
            r = Reshape(x, tgt)
            b = Neg(r)
         }}>
    }}
    """, {"one": np.array(1, np.int64), "zero": np.array([0], np.int64), "nd": np.array([-1], np.int64)})
    before = snapshot(m)
    _o2(m)
    # then: one Exp, no Identity; else: Shape/Gather/Unsqueeze/Concat fold to [-1, 4], and a Reshape of x to its
    # own shape goes
    assert count_ops(m) == {"If": 1, "Exp": 1, "Add": 1, "Neg": 1}
    _check(before, m)
    _again_unchanged(m)


def test_loop_invariant_constants_are_folded_and_hoisted_and_unused_loop_outputs_go() -> None:
    m = from_text(f"""
    {H}
    g (float[N] x, int64 n) => (float[N] y, float[M, N] sc) {{
      x2 = Exp(x)
      y, dead, sc, sc2 = Loop(n, "", x, x2) <body = b (int64 i, bool cond, float[N] acc, float[N] d)
                                                  => (bool co, float[N] acc2, float[N] d2, float[N] s1, float[N] s2) {{
          k = Constant<value = float[1] {{2.0}}>()
          k2 = Add(k, k)
          co = Identity(cond)
          acc2 = Mul(acc, k2)
          d2 = Sin(d)
          s1 = Identity(acc2)
          s2 = Neg(acc2)
      }}>
    }}
    """)
    before = snapshot(m)
    _o2(m)
    # k2 = 4 is a main-graph constant; the carried value d, the scan output s2 and Exp(x) are gone
    assert count_ops(m) == {"Loop": 1, "Identity": 2, "Mul": 1}
    (k2,) = m.graph.initializers.values()
    assert k2.const.numpy().tolist() == [4.0]
    loop = list(m.graph)[0]
    assert [v.name for v in loop.outputs] == ["y", "sc"]
    assert_valid(m)
    for trips in (0, 1, 3):
        feeds = {"x": np.linspace(-1, 1, 4, dtype=np.float32), "n": np.array(trips, np.int64)}
        for a, b in zip(run(before, feeds), run(m, feeds)):
            np.testing.assert_allclose(b, a, rtol=1e-6)
    _again_unchanged(m)
