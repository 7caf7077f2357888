"""Tests of the dce pass (graphopt/passes/dce.py), and of the IR behaviour it relies on."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnx.parser

import graphopt
from graphopt.ir.core import Model, Node, Value
from graphopt.ir.shapes import TensorType
from graphopt.ir.verify import verify
from graphopt.testing import (assert_same_outputs, assert_valid, from_text, op_types, run, run_pass, snapshot,
                              to_proto)

IF_READS_OUTER = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2] x, bool[1] c) => (float[2] y, float[2] z) {
  t = Neg(x)
  z = If(c) <then_branch = g1 () => (float[2] a) { a = Abs(t) }, else_branch = g2 () => (float[2] t2) { t2 = Identity(t) }>
  y = Relu(x)
}
"""

IF_OUTPUTS_OUTER = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2] x, bool[1] c) => (float[2] y, float[2] z) {
  t = Neg(x)
  z = If(c) <then_branch = g1 () => (float[2] a) { a = Abs(t) }, else_branch = g2 () => (float[2] t) { }>
  y = Relu(x)
}
"""


def test_ir_removing_a_node_releases_its_subgraphs_reads_of_outer_values() -> None:
    # Regression (graphopt/ir/core.py): removing an If left its branches' reads of `t` registered, so `t` looked
    # used forever and DCE could never remove its producer; undo must register them again.
    for text in (IF_READS_OUTER, IF_OUTPUTS_OUTER):
        m = from_text(text)
        g = m.graph
        neg, if_node, relu = list(g)
        t = neg.output
        assert t.is_used()
        j = m.begin_journal()
        if_node.output.replace_all_uses_with(relu.output)
        g.remove(if_node)
        assert t.uses() == () and t.output_graphs() == () and not t.is_used()
        g.remove(neg)  # no longer refused
        m.rollback(j)
        assert t.is_used() and len(t.uses()) + len(t.output_graphs()) == 2
        assert verify(m, strict=False) == []


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------
def _dce(m: Model, **options: object) -> dict[str, int]:
    rec = run_pass(m, "dce", **options)
    (r,) = rec.passes
    assert r.changed == bool(r.stats), r
    return r.stats


def _check(before: bytes, m: Model, bindings: list[dict[str, int]] | None = None) -> None:
    assert_valid(m)
    assert_same_outputs(before, m, bindings=bindings or [{"N": 2}, {"N": 5}])


def _idempotent(m: Model) -> None:
    again = snapshot(m)
    assert _dce(m) == {}
    assert snapshot(m) == again


# ---------------------------------------------------------------------------------------------------------------
# nodes
# ---------------------------------------------------------------------------------------------------------------
def test_removes_unread_nodes_and_chains(rng: np.random.Generator) -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N] x, float[N] unused_in) => (float[N] y) {
      a = Neg(x)
      b = Exp(a)
      dead1 = Abs(b)
      dead2 = Mul(dead1, w)
      dead3 = Relu(dead2)
      y = Add(a, w)
    }
    """, {"w": rng.standard_normal(1).astype(np.float32)})
    before = snapshot(m)
    assert _dce(m) == {"nodes_removed": 4}
    assert op_types(m) == ["Neg", "Add"]
    assert [v.name for v in m.graph.inputs] == ["x", "unused_in"]  # inputs are interface, even unread ones
    _check(before, m)
    _idempotent(m)


def test_value_read_only_inside_an_if_branch_is_kept() -> None:
    m = from_text(IF_READS_OUTER)
    before = snapshot(m)
    assert _dce(m) == {}
    assert op_types(m) == ["Neg", "If", "Abs", "Identity", "Relu"]
    _check(before, m)


def test_value_output_by_a_branch_is_kept() -> None:
    m = from_text(IF_OUTPUTS_OUTER)
    assert _dce(m) == {}
    assert op_types(m) == ["Neg", "If", "Abs", "Relu"]


def test_dead_if_frees_what_its_branches_read_in_the_same_run() -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N] x, bool[1] c) => (float[N] y) {
      t = Neg(x)
      u = Exp(t)
      z = If(c) <then_branch = g1 () => (float[N] a) { a = Abs(u) }, else_branch = g2 () => (float[N] b) { b = Identity(t) }>
      y = Relu(x)
    }
    """)
    before = snapshot(m)
    assert _dce(m) == {"nodes_removed": 3}  # If (its branch's Abs with it), Exp, Neg
    assert op_types(m) == ["Relu"]
    _check(before, m)
    _idempotent(m)


def test_cleans_inside_subgraphs_but_keeps_their_interface() -> None:
    # The body's unread input `unused` and its outputs stay (positional interface of Loop); the dead Exp and the
    # Neg only it reads go; the outer `s` read only by that dead Neg goes too, in the same run.
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N] x, int64 n) => (float[N] y, float[N] k) {
      s = Sin(x)
      y, k = Loop(n, "", x, x) <body = b (int64 i, bool cin, float[N] acc, float[N] unused) => (bool cout, float[N] acc2, float[N] unused2) {
        cout = Identity(cin)
        acc2 = Add(acc, acc)
        dead_in = Neg(s)
        dead = Exp(dead_in)
        unused2 = Identity(unused)
      }>
    }
    """)
    before = snapshot(m)
    assert _dce(m) == {"nodes_removed": 3}
    assert op_types(m) == ["Loop", "Identity", "Add", "Identity"]
    body = list(m.graph)[0].subgraphs()[0]
    assert [v.name for v in body.inputs] == ["i", "cin", "acc", "unused"]
    assert [v.name for v in body.outputs] == ["cout", "acc2", "unused2"]
    assert_valid(m)
    for n in (0, 3):  # the trip count is a scalar: fed by hand (the random helper makes 0-d arrays badly)
        feeds = {"x": np.arange(4, dtype=np.float32), "n": np.array(n, dtype=np.int64)}
        for a, b in zip(run(before, feeds), run(m, feeds)):
            np.testing.assert_array_equal(a, b)
    _idempotent(m)


# ---------------------------------------------------------------------------------------------------------------
# initializers and value_info
# ---------------------------------------------------------------------------------------------------------------
def test_unused_initializers_go_ir4_inputs_stay(rng: np.random.Generator) -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N] x, float[1] over) => (float[N] y) {
      y = Add(x, w)
    }
    """, {"w": rng.standard_normal(1).astype(np.float32), "junk": rng.standard_normal(3).astype(np.float32),
          "over": np.ones(1, np.float32)})
    # `over` is an initializer listed as an input: with IR>=4 it is an overridable default, part of the interface
    before = snapshot(m)
    assert _dce(m) == {"initializers_removed": 1}
    assert list(m.graph.initializers) == ["w", "over"]
    assert [v.name for v in m.graph.inputs] == ["x", "over"]
    _check(before, m)
    _idempotent(m)


def test_ir3_unused_initializer_drops_its_input_and_passes_the_checker(rng: np.random.Generator) -> None:
    # Before IR version 4 every initializer must also be a graph input: those inputs are plumbing, not interface.
    m = from_text("""
    <ir_version: 3, opset_import: ["" : 8]>
    g (float[N] x, float[1] w, float[3] junk) => (float[N] y) {
      d = Neg(junk)
      y = Add(x, w)
    }
    """, {"w": rng.standard_normal(1).astype(np.float32), "junk": rng.standard_normal(3).astype(np.float32)},
        ir_version=3)
    before = snapshot(m)
    assert _dce(m) == {"nodes_removed": 1, "initializers_removed": 1, "inputs_removed": 1}
    assert list(m.graph.initializers) == ["w"]
    assert [v.name for v in m.graph.inputs] == ["x", "w"]
    _check(before, m)
    _idempotent(m)


def test_ir3_used_initializer_input_and_plain_input_stay() -> None:
    m = from_text("""
    <ir_version: 3, opset_import: ["" : 8]>
    g (float[N] x, float[1] w, float[1] free) => (float[N] y) {
      y = Add(x, w)
    }
    """, {"w": np.ones(1, np.float32)}, ir_version=3)
    assert _dce(m) == {}
    assert [v.name for v in m.graph.inputs] == ["x", "w", "free"]


def test_orphan_value_info_and_declarations_of_removed_values_go() -> None:
    import onnx
    import onnx.helper as oh

    from graphopt.ir import serde

    mp = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N] x) => (float[N] y) {
      a = Neg(x)
      dead = Exp(a)
      y = Abs(a)
    }
    """)
    mp.graph.value_info.extend([oh.make_tensor_value_info(n, onnx.TensorProto.FLOAT, ["N"])
                                for n in ("a", "dead", "ghost")])
    m = serde.from_proto(mp)
    before = snapshot(m)
    assert _dce(m) == {"nodes_removed": 1, "value_info_removed": 1}
    assert [vi.name for vi in to_proto(m).graph.value_info] == ["a"]
    _check(before, m)
    _idempotent(m)


# ---------------------------------------------------------------------------------------------------------------
# If and Loop outputs nobody reads
# ---------------------------------------------------------------------------------------------------------------
IF_TWO_OUTPUTS = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N] x, bool c) => (float[N] y{extra_out}) {{
  u = Exp(x)
  y, z = If(c) <then_branch = g1 () => (float[N] a, float[N] a2) {{ a = Neg(x)  a2 = Sin(u) }},
               else_branch = g2 () => (float[N] b, float[N] b2) {{ b = Abs(x)  b2 = Cos(u) }}>
  {extra}
}}
"""


def test_unread_if_output_goes_from_the_node_and_both_branches_with_what_computes_it() -> None:
    m = from_text(IF_TWO_OUTPUTS.format(extra_out="", extra=""))
    before = snapshot(m)
    # z: the If's second output, then Sin and Cos in the branches, then Exp that only they read
    assert _dce(m) == {"if_outputs_removed": 1, "nodes_removed": 3}
    assert op_types(m) == ["If", "Neg", "Abs"]
    if_node = list(m.graph)[0]
    assert [v.name for v in if_node.outputs] == ["y"]
    assert [[v.name for v in b.outputs] for b in if_node.subgraphs()] == [["a"], ["b"]]
    _check(before, m)
    _idempotent(m)


def test_if_output_read_by_a_graph_output_or_inside_a_subgraph_stays() -> None:
    # z is a model output; then z is read only inside another If's branch
    for extra_out, extra in ((", float[N] z", ""),
                             (", float[N] w", "w = If(c) <then_branch = g3 () => (float[N] p) { p = Relu(z) }, "
                                              "else_branch = g4 () => (float[N] q) { q = Relu(x) }>")):
        m = from_text(IF_TWO_OUTPUTS.format(extra_out=extra_out, extra=extra))
        assert _dce(m) == {}


LOOP = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N] x, int64 n) => (float[N] y{extra_out}) {{
  x2 = Exp(x)
  y, d, s1, s2 = Loop(n, "", x, x2) <body = body (int64 i, bool cin, float[N] acc, float[N] dacc)
                                                => (bool cout, float[N] acc2, float[N] dacc2, float[N] o1, float[N] o2) {{
    cout = Identity(cin)
    acc2 = Add(acc, {acc_reads})
    dacc2 = Mul(dacc, dacc)
    o1 = Neg(acc2)
    o2 = {o2}
  }}>
}}
"""


def _loop(extra_out: str = "", acc_reads: str = "acc", o2: str = "Abs(acc2)") -> Model:
    return from_text(LOOP.format(extra_out=extra_out, acc_reads=acc_reads, o2=o2))


def _run_loop(before: bytes, m: Model) -> None:
    assert_valid(m)
    for trips in (0, 1, 3):
        feeds = {"x": np.linspace(-1, 1, 4, dtype=np.float32), "n": np.array(trips, np.int64)}
        got = run(m, feeds)
        want = run(before, feeds)
        assert len(got) == len(want)
        for a, b in zip(want, got):
            np.testing.assert_allclose(b, a, rtol=1e-6)


def test_unread_loop_scan_outputs_and_carried_values_go() -> None:
    # s1, s2: scan outputs nobody reads; d: a carried value whose final value nobody reads and that the body uses
    # only to compute its own next value. Exp(x), its initial value, goes with it.
    m = _loop()
    before = snapshot(m)
    assert _dce(m) == {"loop_outputs_removed": 3, "nodes_removed": 4}
    loop = list(m.graph)[0]
    assert op_types(m) == ["Loop", "Identity", "Add"]
    (body,) = loop.subgraphs()
    assert [v.name for v in loop.outputs] == ["y"] and loop.num_inputs == 3
    assert [v.name for v in body.inputs] == ["i", "cin", "acc"]
    assert [v.name for v in body.outputs] == ["cout", "acc2"]
    _run_loop(before, m)
    _idempotent(m)


def test_loop_outputs_that_are_read_stay() -> None:
    # d's copy in the body feeds acc2, which is kept: d stays (its scan outputs still go)
    m = _loop(acc_reads="dacc")
    before = snapshot(m)
    assert _dce(m) == {"loop_outputs_removed": 2, "nodes_removed": 2}
    assert [v.name for v in list(m.graph)[1].outputs] == ["y", "d"]
    _run_loop(before, m)
    # a scan output that is a model output, and a carried value read by a kept scan output
    m = _loop(extra_out=", float[M,N] s2", o2="Abs(dacc)")
    before = snapshot(m)
    assert _dce(m) == {"loop_outputs_removed": 1, "nodes_removed": 1}
    assert [v.name for v in list(m.graph)[1].outputs] == ["y", "d", "s2"]
    _run_loop(before, m)
    _idempotent(m)


# ---------------------------------------------------------------------------------------------------------------
# functions and opset imports
# ---------------------------------------------------------------------------------------------------------------
FUNCS = """
<ir_version: 8, opset_import: ["" : 17, "local" : 1, "other" : 1, "ai.onnx.ml" : 3]>
g (float[N] x, bool[1] c) => (float[N] y, float[N] z) {
  y = local.f1(x)
  z = If(c) <then_branch = g1 () => (float[N] a) { a = local.in_branch(x) }, else_branch = g2 () => (float[N] b) { b = Neg(x) }>
}
<domain: "local", opset_import: ["" : 17, "local" : 1]>
f1 (p) => (q) { q = local.f2(p) }
<domain: "local", opset_import: ["" : 17]>
f2 (p) => (q) { q = Neg(p) }
<domain: "local", opset_import: ["" : 17]>
in_branch (p) => (q) { q = Abs(p) }
<domain: "local", opset_import: ["" : 17, "other" : 1]>
unused (p) => (q) { q = Abs(p) }
"""


def test_functions_used_directly_in_branches_or_through_others_stay_unused_go() -> None:
    m = from_text(FUNCS)
    before = snapshot(m)
    assert _dce(m) == {"functions_removed": 1, "opsets_removed": 2}
    assert [f.name for f in m.functions] == ["f1", "f2", "in_branch"]
    # "other" was needed only by the unused function, ai.onnx.ml by nothing
    assert m.opset_imports == {"": 17, "local": 1}
    _check(before, m, [{"N": 3}])
    _idempotent(m)


def test_function_called_from_a_function_body_subgraph_stays() -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
    g (float[N] x, bool[1] c) => (float[N] y) {
      y = local.outer(x, c)
    }
    <domain: "local", opset_import: ["" : 17, "local" : 1]>
    outer (p, k) => (q) {
      q = If(k) <then_branch = g1 () => (float[N] a) { a = local.deep(p) }, else_branch = g2 () => (float[N] b) { b = Neg(p) }>
    }
    <domain: "local", opset_import: ["" : 17]>
    deep (p) => (q) { q = Abs(p) }
    """)
    before = snapshot(m)
    assert _dce(m) == {}
    assert [f.name for f in m.functions] == ["outer", "deep"]
    _check(before, m, [{"N": 3}])


def test_default_domain_and_domains_of_used_functions_stay() -> None:
    # No node of the main graph is in the default domain, and "extra" is used by no node at all: the default
    # domain always stays, and "extra" stays because the used function imports it.
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17, "local" : 1, "extra" : 1]>
    g (float[N] x) => (float[N] y) {
      y = local.f(x)
    }
    <domain: "local", opset_import: ["" : 17, "extra" : 1]>
    f (p) => (q) { q = Neg(p) }
    """)
    assert _dce(m) == {}
    assert m.opset_imports == {"": 17, "local": 1, "extra": 1}


# ---------------------------------------------------------------------------------------------------------------
# scale
# ---------------------------------------------------------------------------------------------------------------
def _chain_model(n_live: int, n_dead_side: int, n_dead_tail: int) -> Model:
    """A live chain of Neg nodes, one dead Abs hanging off each of its first `n_dead_side` links, and a dead
    chain of `n_dead_tail` Exp nodes hanging off its end."""
    x = Value("x", type=TensorType(1, ("N",)))
    m = Model(ir_version=8, opset_imports={"": 17})
    g = m.graph
    g.add_input(x)
    cur = x
    nodes = []
    for i in range(n_live):
        n = Node("Neg", [cur], outputs=[f"l{i}"])
        nodes.append(n)
        if i < n_dead_side:
            nodes.append(Node("Abs", [n.output], outputs=[f"s{i}"]))
        cur = n.output
    y = cur
    for i in range(n_dead_tail):
        n = Node("Exp", [cur], outputs=[f"t{i}"])
        nodes.append(n)
        cur = n.output
    g.append(*nodes)
    y.type = TensorType(1, ("N",))
    g.append_output(y)
    return m


def test_scales_to_a_long_chain_removing_exactly_the_dead_nodes() -> None:
    # Not a timing test: 20k nodes, 10k of them dead (half in one chain that only the worklist can free in a
    # single reverse walk, half hanging one by one off the live chain).
    from graphopt.jit.context import JitContext
    from graphopt.passes.dce import DeadCodeElimination

    m = _chain_model(10_000, 5_000, 5_000)
    assert m.num_nodes() == 20_000
    dce = DeadCodeElimination()  # run bare (no shape inference, no serialization): this test is about the pass
    assert dce.run(m, JitContext()).stats == {"nodes_removed": 10_000}
    verify(m)
    assert collections.Counter(op_types(m)) == {"Neg": 10_000}
    assert dce.run(m, JitContext()).stats == {}


def test_unused_subgraph_initializer_goes() -> None:
    import onnx

    from graphopt.ir import serde

    mp = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[3] x, bool[1] c) => (float[3] y) {
      y = If(c) <then_branch = g1 () => (float[3] p) { p = Mul(x, k) }, else_branch = g2 () => (float[3] q) { q = Neg(x) }>
    }
    """)
    then_g = mp.graph.node[0].attribute[0].g
    then_g.initializer.extend([onnx.numpy_helper.from_array(np.ones(3, np.float32), "k"),
                               onnx.numpy_helper.from_array(np.ones(3, np.float32), "junk")])
    m = serde.from_proto(mp)
    before = snapshot(m)
    assert _dce(m) == {"initializers_removed": 1}
    assert list(list(m.graph)[0].subgraphs()[0].initializers) == ["k"]
    _check(before, m)
    _idempotent(m)


def test_loop_carried_values_stay_when_the_body_holds_a_node_without_outputs() -> None:
    # a node with no outputs is kept for an effect we cannot see, and it may read anything: d stays
    mp = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17, "custom" : 1]>
    g (float[N] x, int64 n) => (float[N] y) {
      y, d = Loop(n, "", x, x) <body = body (int64 i, bool cin, float[N] acc, float[N] dacc)
                                            => (bool cout, float[N] acc2, float[N] dacc2) {
        cout = Identity(cin)
        acc2 = Neg(acc)
        dacc2 = Exp(dacc)
        unused = custom.Print(dacc)
      }>
    }
    """)
    del mp.graph.node[0].attribute[0].g.node[3].output[:]
    m = graphopt.load(mp)
    assert _dce(m) == {}
    assert [v.name for v in list(m.graph)[0].outputs] == ["y", "d"]
