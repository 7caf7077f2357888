"""The IR's guarantees (graphopt/ir/core.py module docstring), one test per promise.

Use-def is checked with an independent recomputation (tests/ir/_util.py), not with verify(), which has tests of its
own below. Mutators are listed once (MUTATORS) and every one of them is checked for use-def consistency, for the
serialized form agreeing with the IR, and for a byte-exact journal rollback.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest

from graphopt.ir import Builder, Graph, IRError, Node, Tensor, TensorType, Value, serde, verify
from graphopt.ir.core import ChangeTracker, Model
from graphopt.testing import assert_same_outputs, from_text

from ._util import check_use_def, proto, roundtrip

# a: read in main graph and in both branches; b: read by the then-branch and by Softmax; d: dead
BASE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N,4] x, bool[1] c) => (float[N,4] y, float[N,4] z)
  <float[4] w = {1.0, 2.0, 3.0, 4.0}, float[N,4] d, float[N,4] a>
{
  a = Add(x, w)
  b = Relu(a)
  s = Softmax <axis = 1> (b)
  z = If(c) <then_branch = t1 () => (float[N,4] o1) { o1 = Mul(b, a) },
             else_branch = t2 () => (float[N,4] o2) { o2 = Neg(a) }>
  y = Sigmoid(s)
  d = Cos(x)
}
"""

# a value read only inside a Loop body (two levels down: the body holds an If)
NESTED = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[4] x, int64 n, bool c) => (float[4] y) {
  k = Exp(x)
  y = Loop(n, c, x) <body = b1 (int64 i, bool cin, float[4] acc) => (bool cout, float[4] accout) {
      cout = Identity(cin)
      accout = If(cin) <then_branch = t1 () => (float[4] r1) { r1 = Add(acc, k) },
                        else_branch = t2 () => (float[4] r2) { r2 = Identity(acc) }>
  }>
}
"""


def base() -> Model:
    return from_text(BASE)


def val(m: Model, name: str) -> Value:
    """The value called `name` anywhere in the model."""
    for g in m.graph.all_graphs():
        for v in list(g.inputs) + list(g.initializers.values()):
            if v.name == name:
                return v
        for n in g:
            for v in n.outputs:
                if v.name == name:
                    return v
    raise KeyError(name)


def prod(m: Model, name: str) -> Node:
    p = val(m, name).producer
    assert p is not None
    return p


def names(g: Graph) -> list[str]:
    return [n.output.name for n in g]


# ---------------------------------------------------------------------------------------------------------------
# Every mutator
# ---------------------------------------------------------------------------------------------------------------
def _rauw_output_alias(m: Model) -> None:
    n = Node("Tanh", [val(m, "s")])
    m.graph.insert_after(prod(m, "s"), n)
    val(m, "y").replace_all_uses_with(n.output)


def _set_attr_subgraph(m: Model) -> None:
    sg = Graph("t3")
    k = Node("Abs", [val(m, "a")])
    sg.append(k)
    sg.append_output(k.output)
    k.output.type = TensorType(1, ("N", 4))
    prod(m, "z").set_attr("else_branch", sg)


def _remove_if(m: Model) -> None:
    n = Node("Neg", [val(m, "a")])
    m.graph.append(n)
    val(m, "z").replace_all_uses_with(n.output)
    m.graph.remove(prod(m, "z_old") if _has(m, "z_old") else prod(m, "z"))


def _has(m: Model, name: str) -> bool:
    try:
        val(m, name)
        return True
    except KeyError:
        return False


def _sort(m: Model) -> None:
    g = m.graph
    g.move_before(prod(m, "a"), prod(m, "y"))  # Sigmoid before everything: out of order
    assert g.sort()


def _add_initializer(m: Model) -> None:
    v = Value("w2")
    m.graph.add_initializer(v, Tensor.from_numpy(np.ones(4, np.float32)))
    prod(m, "a").replace_input_with(1, v)


def _builder(m: Model) -> None:
    b = Builder(m.graph, before=prod(m, "y"))
    t = b.op("Mul", val(m, "s"), b.const(np.float32(2.0)))
    prod(m, "y").replace_input_with(0, t)


def _builder_in_subgraph(m: Model) -> None:
    then = prod(m, "z").subgraphs()[0]
    o1 = then.outputs[0]
    b = Builder(then, after=o1.producer)
    t = b.op("Add", val(m, "b"), b.const(np.ones(4, np.float32)))  # the constant is hoisted to the main graph
    o1.replace_all_uses_with(t)


MUTATORS: dict[str, Callable[[Model], None]] = {
    "replace_input_with": lambda m: prod(m, "y").replace_input_with(0, val(m, "b")),
    "replace_input_with_none": lambda m: prod(m, "s").set_inputs([val(m, "b"), None]),
    "set_inputs": lambda m: prod(m, "a").set_inputs([val(m, "x"), val(m, "x")]),
    "rauw_inner_and_subgraph_reads": lambda m: val(m, "b").replace_all_uses_with(val(m, "a")),
    "rauw_output_alias": _rauw_output_alias,
    "rauw_output_identity": lambda m: val(m, "y").replace_all_uses_with(val(m, "x")),
    "rauw_output_by_other_output": lambda m: val(m, "y").replace_all_uses_with(val(m, "z")),
    "rauw_subgraph_output": lambda m: val(m, "o1").replace_all_uses_with(val(m, "a")),
    "insert_before": lambda m: m.graph.insert_before(prod(m, "b"), Node("Abs", [val(m, "a")])),
    "insert_after": lambda m: m.graph.insert_after(prod(m, "b"), Node("Abs", [val(m, "b")], outputs=["ab"])),
    "append": lambda m: m.graph.append(Node("Abs", [val(m, "y")])),
    "prepend": lambda m: m.graph.prepend(Node("Abs", [val(m, "x")])),
    "insert_in_subgraph": lambda m: prod(m, "o2").graph.prepend(Node("Abs", [val(m, "b")])),
    "remove": lambda m: m.graph.remove(prod(m, "d")),
    "remove_node_with_subgraphs": _remove_if,
    "move_before": lambda m: m.graph.move_before(prod(m, "z"), prod(m, "d")),
    "rename": lambda m: val(m, "b").rename("b_renamed"),
    "rename_graph_output": lambda m: val(m, "o1").rename("o1_renamed"),
    "rename_initializer": lambda m: val(m, "w").rename("w_renamed"),
    "rename_graph_input": lambda m: val(m, "x").rename("x_renamed"),
    "node_name": lambda m: setattr(prod(m, "b"), "name", "relu_0"),
    "set_attr": lambda m: prod(m, "s").set_attr("axis", 0),
    "set_attr_new": lambda m: prod(m, "b").set_attr("alpha", 0.5),
    "del_attr": lambda m: prod(m, "s").del_attr("axis"),
    "set_attr_subgraph": _set_attr_subgraph,
    "add_initializer": _add_initializer,
    "remove_initializer": lambda m: (prod(m, "a").replace_input_with(1, val(m, "x")),
                                     m.graph.remove_initializer(val(m, "w"))),
    "set_const": lambda m: m.graph.set_const(val(m, "w"), Tensor.from_numpy(np.zeros(4, np.float32))),
    "add_input": lambda m: m.graph.add_input(Value("extra", type=TensorType(1, (4,)))),
    "remove_input": lambda m: (m.graph.remove(prod(m, "d")), prod(m, "a").replace_input_with(0, val(m, "w")),
                               m.graph.remove_input(val(m, "x"))),
    "set_output": lambda m: m.graph.set_output(0, val(m, "s")),
    "append_output": lambda m: m.graph.append_output(val(m, "d")),
    "declare": lambda m: (setattr(val(m, "b"), "type", TensorType(1, ("N", 4))), m.graph.declare(val(m, "b"))),
    "undeclare": lambda m: m.graph.undeclare(val(m, "a")),
    "set_type": lambda m: setattr(val(m, "a"), "type", TensorType(1, (3, 4))),
    "sort": _sort,
    "opset_imports": lambda m: m.set_opset_imports({"": 18}),
    "functions": lambda m: m.set_functions([onnx.FunctionProto(name="f", domain="local")]),
    "node_append_output": lambda m: prod(m, "d").append_output("d_extra"),
    "node_remove_output": lambda m: prod(m, "d").remove_output(0),  # declared in value_info: the entry goes too
    "graph_remove_output": lambda m: m.graph.remove_output(0),
    "builder": _builder,
    "builder_in_subgraph": _builder_in_subgraph,
}


@pytest.mark.parametrize("name", list(MUTATORS))
def test_use_def_after_mutator(name: str) -> None:
    m = base()
    check_use_def(m)
    MUTATORS[name](m)
    check_use_def(m)
    assert verify(m, strict=False) == []
    # what the IR says is what it writes: loading the written model gives the same model again
    assert proto(roundtrip(m)) == proto(m)


@pytest.mark.parametrize("name", list(MUTATORS))
def test_journal_rollback_restores_bytes(name: str) -> None:
    m = base()
    before = serde.serialize(m)
    count = m.mutations
    journal = m.begin_journal()
    MUTATORS[name](m)
    assert m.mutations > count, "a mutator must bump the mutation counter"
    assert serde.serialize(m) != before or name in ("sort",), "the mutator changed nothing"
    undone = m.rollback(journal)
    assert undone == len(journal) + undone and undone > 0
    assert serde.serialize(m) == before
    check_use_def(m)
    assert verify(m, strict=False) == []


def test_journal_rollback_of_many_mutations_on_a_fresh_load() -> None:
    m = base()
    before = serde.serialize(m)
    j = m.begin_journal()
    for name in ("insert_before", "rauw_output_alias", "set_attr_subgraph", "remove", "set_const", "declare",
                 "undeclare", "builder", "builder_in_subgraph", "rauw_subgraph_output", "sort", "rename_initializer",
                 "add_input", "node_name", "opset_imports", "del_attr", "rename"):
        MUTATORS[name](m)
        check_use_def(m)
    m.rollback(j)
    assert serde.serialize(m) == before
    check_use_def(m)


def test_rolled_back_model_keeps_working() -> None:
    m = base()
    j = m.begin_journal()
    MUTATORS["remove_node_with_subgraphs"](m)
    m.rollback(j)
    # after the rollback the If is back and reads a and b again
    a = val(m, "a")
    assert {n.op_type for n, _ in a.uses()} == {"Relu", "Mul", "Neg"}
    with pytest.raises(IRError):
        m.graph.remove(prod(m, "a"))
    MUTATORS["rauw_output_alias"](m)
    check_use_def(m)


def test_rollback_restores_table_orders_after_many_removals() -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) <float[2] t1, float[2] t2, float[2] t3> {
      t1 = Neg(x)  t2 = Abs(t1)  t3 = Exp(t2)  y = Relu(t3)
    }
    """, {f"k{i}": np.full(2, i, np.float32) for i in range(6)})
    g = m.graph
    before = serde.serialize(m)
    j = m.begin_journal()
    for name in ("k1", "k4", "k0"):
        g.remove_initializer(g.initializers[name])
    g.undeclare(val(m, "t2"))
    g.undeclare(val(m, "t1"))
    g.add_initializer(Value("k9"), Tensor.from_numpy(np.zeros(2, np.float32)))
    g.remove_initializer(g.initializers["k5"])
    assert list(g.initializers) == ["k2", "k3", "k9"]
    assert [v.name for v in g.value_info] == ["t3"]
    m.rollback(j)
    assert list(g.initializers) == [f"k{i}" for i in range(6)]
    assert [v.name for v in g.value_info] == ["t1", "t2", "t3"]
    assert serde.serialize(m) == before
    # a second journal snapshots afresh
    j2 = m.begin_journal()
    g.remove_initializer(g.initializers["k3"])
    m.rollback(j2)
    assert serde.serialize(m) == before


def test_second_journal_refused() -> None:
    m = base()
    m.begin_journal()
    with pytest.raises(IRError):
        m.begin_journal()


# ---------------------------------------------------------------------------------------------------------------
# Uses
# ---------------------------------------------------------------------------------------------------------------
def test_uses_is_a_snapshot() -> None:
    m = base()
    a = val(m, "a")
    uses = a.uses()
    assert len(uses) == 3
    seen = []
    for node, i in uses:  # mutating while walking the snapshot
        node.replace_input_with(i, val(m, "x"))
        seen.append(node.op_type)
    assert sorted(seen) == ["Mul", "Neg", "Relu"]
    assert len(uses) == 3  # the snapshot did not change under the loop
    assert a.uses() == () and not a.is_used()
    check_use_def(m)


def test_constructed_but_not_inserted_node_does_not_use_its_inputs() -> None:
    m = base()
    d = val(m, "d")
    Node("Abs", [d])
    assert d.uses() == ()
    m.graph.remove(d.producer)  # still removable
    check_use_def(m)


def test_consumers_distinct_in_first_use_order() -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y, float[2] z) { y = Mul(x, x)  z = Neg(x) }
    """)
    x = m.graph.inputs[0]
    assert [n.op_type for n in x.consumers()] == ["Mul", "Neg"]
    assert x.num_uses() == 3


# ---------------------------------------------------------------------------------------------------------------
# remove()
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("victims", [["b"], ["y"], ["a"], ["a", "b"], ["d", "b"], ["o1"], ["z"]])
def test_remove_refuses_and_leaves_graph_unchanged(victims: list[str]) -> None:
    m = base()
    before = serde.serialize(m)
    nodes = [prod(m, v) for v in victims]
    g = nodes[0].graph
    assert g is not None
    count = len(g)
    with pytest.raises(IRError, match="cannot remove"):
        g.remove(nodes)
    assert serde.serialize(m) == before
    assert len(g) == count and all(n.is_alive for n in nodes)
    check_use_def(m)


def test_remove_refuses_when_read_only_inside_a_subgraph() -> None:
    m = from_text(NESTED)
    k = val(m, "k")
    (reader, _), = k.uses()
    assert reader.op_type == "Add" and reader.graph is not m.graph  # a real use, two levels down
    assert k.is_used()
    with pytest.raises(IRError, match="read by"):
        m.graph.remove(k.producer)


def test_remove_a_closed_set() -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) { t = Neg(x)  u = Abs(t)  v = Mul(t, u)  y = Relu(x) }
    """)
    g = m.graph
    g.remove([prod(m, "v"), prod(m, "t"), prod(m, "u")])  # any order inside the set
    assert names(g) == ["y"]
    assert val(m, "x").consumers() == [prod(m, "y")]
    check_use_def(m)


def test_remove_then_reinsert() -> None:
    m = base()
    d = prod(m, "d")
    m.graph.remove(d)
    assert not d.is_alive and val(m, "x").num_uses() == 1
    m.graph.append(d)
    assert d.is_alive and val(m, "x").num_uses() == 2
    check_use_def(m)


# ---------------------------------------------------------------------------------------------------------------
# replace_all_uses_with and graph outputs
# ---------------------------------------------------------------------------------------------------------------
def test_rauw_aliases_a_fresh_node_output() -> None:
    m = base()
    _rauw_output_alias(m)
    g = m.graph
    assert [v.name for v in g.outputs] == ["y", "z"]
    y = g.outputs[0]
    assert y.producer is not None and y.producer.op_type == "Tanh"
    assert "Identity" not in [n.op_type for n in g]
    old = prod(m, "y_old")  # the old producer lost the name; its output is now dead
    assert old.op_type == "Sigmoid" and not old.output.is_used()
    assert g.outputs[0].type == TensorType(1, ("N", 4))  # the declared output type is kept
    check_use_def(m)
    m.graph.remove(old)
    onnx.checker.check_model(proto(m), full_check=True)


@pytest.mark.parametrize("new", ["x", "z"])
def test_rauw_keeps_output_name_with_identity(new: str) -> None:
    # a graph input, another graph output: neither can take the name "y"
    m = base()
    y = val(m, "y")
    target = val(m, new)
    y.replace_all_uses_with(target)
    g = m.graph
    assert [v.name for v in g.outputs] == ["y", "z"]
    out = g.outputs[0]
    assert out.producer is not None and out.producer.op_type == "Identity"
    assert out.producer.inputs == (target,)
    assert target.name == new  # the stand-in keeps its own name
    check_use_def(m)
    mp = proto(m)
    onnx.checker.check_model(mp, full_check=True)


def test_rauw_with_initializer_keeps_output_name_with_identity() -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4] x) => (float[4] y) { t = Neg(x)  y = Mul(t, w) }
    """, {"w": np.arange(4, dtype=np.float32)})
    ref = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4] x) => (float[4] y) { t = Neg(x)  y = Mul(t, w) }
    """, {"w": np.arange(4, dtype=np.float32)})
    val(m, "y").replace_all_uses_with(val(m, "w"))
    ident = m.graph.outputs[0].producer
    assert ident is not None and ident.op_type == "Identity" and m.graph.outputs[0].name == "y"
    m.graph.remove([prod(m, "y_old"), prod(m, "t")])
    check_use_def(m)
    onnx.checker.check_model(proto(m), full_check=True)
    with pytest.raises(AssertionError):  # the numbers did change (y is now w): the comparison must see it
        assert_same_outputs(ref, m)


def test_rauw_of_subgraph_output_with_outer_value_uses_identity_inside() -> None:
    m = base()
    then = prod(m, "o1").graph
    assert then is not None and then is not m.graph
    val(m, "o1").replace_all_uses_with(val(m, "a"))
    assert [v.name for v in then.outputs] == ["o1"]
    ident = then.outputs[0].producer
    assert ident is not None and ident.op_type == "Identity" and ident.graph is then
    assert ident.inputs == (val(m, "a"),)
    check_use_def(m)
    onnx.checker.check_model(proto(m), full_check=True)


def test_rauw_of_subgraph_output_with_value_of_same_subgraph_aliases() -> None:
    m = base()
    then = prod(m, "o1").graph
    assert then is not None
    n = Node("Abs", [val(m, "b")])  # made inside the branch, reading an outer value
    then.append(n)
    val(m, "o1").replace_all_uses_with(n.output)
    assert then.outputs[0] is n.output and n.output.name == "o1"
    assert "Identity" not in [x.op_type for x in then]
    then.remove(prod(m, "o1_old"))
    check_use_def(m)
    onnx.checker.check_model(proto(m), full_check=True)


def test_rauw_output_values_match_in_onnxruntime() -> None:
    ref = base()
    for name in ("rauw_output_alias", "rauw_subgraph_output", "rauw_inner_and_subgraph_reads"):
        m = base()
        MUTATORS[name](m)
        mp = proto(m)
        onnx.checker.check_model(mp, full_check=True)
        assert [o.name for o in mp.graph.output] == ["y", "z"]
        assert [i.name for i in mp.graph.input] == ["x", "c"]
    # a rewrite that keeps the numbers: y = Sigmoid(s) replaced by an equal Sigmoid made elsewhere
    m = base()
    n = Node("Sigmoid", [val(m, "s")])
    m.graph.append(n)
    val(m, "y").replace_all_uses_with(n.output)
    m.graph.remove(prod(m, "y_old"))
    assert_same_outputs(ref, m, bindings=[{"N": 2}, {"N": 5}])


def test_rauw_outputs_false_leaves_graph_outputs() -> None:
    m = base()
    y = val(m, "y")
    y.replace_all_uses_with(val(m, "s"), outputs=False)
    assert m.graph.outputs[0] is y and y.name == "y"
    check_use_def(m)


# ---------------------------------------------------------------------------------------------------------------
# Iteration
# ---------------------------------------------------------------------------------------------------------------
def test_insert_during_iteration() -> None:
    m = base()
    g = m.graph
    seen = []
    for n in g:
        seen.append(n.op_type)
        if n.op_type == "Relu":
            g.insert_after(n, Node("Abs", [n.output]))  # after the cursor: visited
            g.insert_before(n, Node("Neg", [val(m, "a")]))  # before the cursor: not visited
    assert seen == ["Add", "Relu", "Abs", "Softmax", "If", "Sigmoid", "Cos"]
    assert [n.op_type for n in g] == ["Add", "Neg", "Relu", "Abs", "Softmax", "If", "Sigmoid", "Cos"]
    check_use_def(m)


def test_remove_during_iteration() -> None:
    m = base()
    g = m.graph
    seen = []
    for n in g:
        seen.append(n.op_type)
        if n.op_type == "Sigmoid":
            g.remove(prod(m, "d"))  # the next node: skipped
        if n.op_type == "Cos":
            raise AssertionError("a removed node was visited")
    assert seen == ["Add", "Relu", "Softmax", "If", "Sigmoid"]
    m = base()
    g = m.graph
    seen = []
    for n in g:
        seen.append(n.op_type)
        if n.op_type == "Cos":
            g.remove(n)  # the current node: the walk goes on past it
    assert seen[-1] == "Cos" and len(g) == 5
    m = base()
    g = m.graph
    seen = []
    for n in g:  # remove and reinsert elsewhere while walking
        seen.append(n.op_type)
        if n.op_type == "Add":
            d = prod(m, "d")
            g.remove(d)
            g.insert_after(n, d)
    assert seen == ["Add", "Cos", "Relu", "Softmax", "If", "Sigmoid"]
    check_use_def(m)


def test_reversed_iteration_and_len() -> None:
    m = base()
    assert [n.op_type for n in m.graph.reversed()] == ["Cos", "Sigmoid", "If", "Softmax", "Relu", "Add"]
    assert len(m.graph) == 6 and m.num_nodes() == 8


# ---------------------------------------------------------------------------------------------------------------
# sort()
# ---------------------------------------------------------------------------------------------------------------
def test_sort_keeps_a_valid_order() -> None:
    m = base()
    order = list(m.graph)
    before = serde.serialize(m)
    assert m.graph.sort() is False
    assert list(m.graph) == order
    assert serde.serialize(m) == before


def test_sort_keeps_valid_order_of_independent_nodes() -> None:
    # independent chains stay interleaved as written (a stable sort, not a DFS reorder)
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) {
      a1 = Neg(x)  b1 = Abs(x)  a2 = Neg(a1)  b2 = Abs(b1)  c1 = Exp(x)  y = Sum(a2, b2, c1)
    }
    """
    m = from_text(text)
    assert m.graph.sort() is False
    assert names(m.graph) == ["a1", "b1", "a2", "b2", "c1", "y"]


def test_sort_fixes_unsorted_input_stably() -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) {
      a1 = Neg(x)  b1 = Abs(x)  a2 = Neg(a1)  b2 = Abs(b1)  c1 = Exp(x)  y = Sum(a2, b2, c1)
    }
    """)
    g = m.graph
    g.move_before(prod(m, "a1"), prod(m, "y"))
    g.move_before(prod(m, "b1"), prod(m, "b2"))
    assert names(g) == ["y", "a1", "b2", "b1", "a2", "c1"]
    assert verify(m, strict=False) != []
    assert g.sort() is True
    assert verify(m, strict=False) == []
    out = names(g)
    assert sorted(out) == sorted(["y", "a1", "b2", "b1", "a2", "c1"])
    for earlier, later in (("a1", "a2"), ("b1", "b2"), ("a2", "y"), ("b2", "y"), ("c1", "y")):
        assert out.index(earlier) < out.index(later)
    assert g.sort() is False and names(g) == out  # sorted now: a second sort keeps it
    check_use_def(m)


def test_sort_accounts_for_subgraph_reads() -> None:
    m = from_text(NESTED)
    g = m.graph
    g.move_before(prod(m, "k"), prod(m, "y"))  # the Loop before the producer of what its body reads
    assert names(g) == ["y", "k"]
    assert g.sort() is True
    assert names(g) == ["k", "y"]
    check_use_def(m)


def test_sort_cycle_raises_and_changes_nothing() -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) { a = Neg(x)  b = Abs(a)  y = Relu(b) }
    """)
    prod(m, "a").replace_input_with(0, val(m, "b"))
    order = list(m.graph)
    with pytest.raises(IRError, match="cycle"):
        m.graph.sort()
    assert list(m.graph) == order


def test_sort_long_reversed_chain() -> None:
    # a long chain given in reverse order (iterative, no recursion limit; see benchmarks/roundtrip.py for timings)
    m = Model(Graph("g"))
    g = m.graph
    x = Value("x", type=TensorType(1, (2,)))
    g.add_input(x)
    nodes = []
    prev = x
    for _ in range(20000):
        n = Node("Neg", [prev])
        nodes.append(n)
        prev = n.output
    for n in reversed(nodes):
        g.append(n)
    g.append_output(prev)
    g.sort()
    assert [n.output for n in g] == [n.output for n in nodes]


# ---------------------------------------------------------------------------------------------------------------
# Subgraphs
# ---------------------------------------------------------------------------------------------------------------
def test_subgraph_reads_are_uses() -> None:
    m = base()
    b = val(m, "b")
    readers = {(n.op_type, n.graph.name if n.graph else None) for n, _ in b.uses()}
    assert readers == {("Mul", "t1"), ("Softmax", "g")}
    assert prod(m, "z").implicit_inputs() == [b, val(m, "a")] or set(prod(m, "z").implicit_inputs()) == {
        b, val(m, "a")}
    m2 = from_text(NESTED)
    loop = prod(m2, "y")
    assert loop.implicit_inputs() == [val(m2, "k")]
    assert m2.graph.outputs[0].is_model_output()
    r1 = val(m2, "r1")
    assert r1.is_graph_output() and not r1.is_model_output()
    assert r1.is_graph_output(r1.graph) and not r1.is_graph_output(m2.graph)


def test_removing_a_subgraph_node_releases_outer_reads() -> None:
    m = from_text(NESTED)
    k = val(m, "k")
    loop = prod(m, "y")
    n = Node("Identity", [val(m, "x")])
    m.graph.append(n)
    val(m, "y").replace_all_uses_with(n.output)
    m.graph.remove(loop)
    assert k.uses() == ()
    m.graph.remove(k.producer)
    check_use_def(m)


def test_set_attr_swaps_subgraph_reads() -> None:
    m = base()
    a = val(m, "a")
    assert any(n.op_type == "Neg" for n, _ in a.uses())
    _set_attr_subgraph(m)
    ops = sorted(n.op_type for n, _ in a.uses())
    assert ops == ["Abs", "Mul", "Relu"]  # the old else-branch's Neg no longer reads a
    new_out = prod(m, "z").subgraphs()[1].outputs[0]
    assert new_out.name and new_out.name not in ("", None)  # values made detached get names on attachment
    check_use_def(m)
    mp = proto(m)
    onnx.checker.check_model(mp, full_check=True)


def test_del_attr_of_subgraph_releases_reads() -> None:
    m = base()
    prod(m, "z").del_attr("else_branch")
    assert sorted(n.op_type for n, _ in val(m, "a").uses()) == ["Mul", "Relu"]
    check_use_def(m)


def test_detached_graph_does_not_use_outer_values_until_attached() -> None:
    m = base()
    a = val(m, "a")
    n_uses = a.num_uses()
    sg = Graph("t3")
    k = Node("Abs", [a])
    sg.append(k)
    assert a.num_uses() == n_uses  # building a graph that may never be attached does not use `a`
    sg.append_output(k.output)
    prod(m, "z").set_attr("else_branch", sg)
    assert a.num_uses() == n_uses  # Neg's read was swapped for Abs's
    assert any(u is k for u, _ in a.uses())


def test_model_from_a_prebuilt_graph_registers_uses() -> None:
    g = Graph("g")
    x = Value("x", type=TensorType(1, (2,)))
    g.add_input(x)
    n = Node("Neg", [x], outputs=["y"])
    g.append(n)
    n.output.type = TensorType(1, (2,))
    g.append_output(n.output)
    assert x.uses() == ()  # not part of a model yet
    m = Model(g)
    assert x.uses() == ((n, 0),)
    check_use_def(m)
    onnx.checker.check_model(proto(m), full_check=True)


# ---------------------------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------------------------
def test_rename_everywhere() -> None:
    m = base()
    val(m, "b").rename("bee")
    val(m, "w").rename("weights")
    text = onnx.printer.to_text(proto(m))
    assert " b " not in text and "(b)" not in text and "(b," not in text
    mp = proto(m)
    assert mp.graph.node[1].output[0] == "bee"
    assert mp.graph.node[3].attribute[0].g.node[0].input[0] == "bee"  # the then-branch reads the new name
    assert mp.graph.initializer[0].name == "weights" and mp.graph.node[0].input[1] == "weights"
    assert "weights" in m.graph.initializers and "w" not in m.graph.initializers
    onnx.checker.check_model(mp, full_check=True)
    assert_same_outputs(base(), m, bindings=[{"N": 3}])


def test_rename_refuses_taken_names() -> None:
    m = base()
    for taken in ("a", "x", "w", "o1", "o2"):
        with pytest.raises(IRError, match="taken"):
            val(m, "b").rename(taken)
    assert val(m, "b").name == "b"
    val(m, "b").rename("b")  # same name: nothing to do


def test_fresh_name_avoids_all_names_and_is_deterministic() -> None:
    def calls(m: Model) -> list[str]:
        return [m.fresh_name(p) for p in ("a", "a", "o1", "new", "new", "x")] + [m.fresh_node_name("n")
                                                                                for _ in range(2)]

    m1, m2 = base(), base()
    got = calls(m1)
    assert got == calls(m2)
    assert got == ["a_0", "a_1", "o1_0", "new", "new_1", "x_0", "n_0", "n_1"]
    taken = {v for v in ("a", "b", "s", "z", "y", "d", "w", "x", "c", "o1", "o2")}
    assert not taken & set(got)
    assert len(set(got)) == len(got)
    # a fresh name is reserved for one binding: a rename may take it once, then it is taken
    v = m1.fresh_name("a")
    assert v not in got
    val(m1, "b").rename(v)
    with pytest.raises(IRError, match="taken"):
        val(m1, "s").rename(v)
    assert m1.fresh_name("a") not in (v, *got)


def test_fresh_name_sees_subgraph_and_late_names() -> None:
    m = from_text(NESTED)
    assert m.fresh_name("r1") == "r1_0"
    m.graph.append(Node("Abs", [val(m, "x")], outputs=["later"]))
    assert m.fresh_name("later") == "later_0"


# ---------------------------------------------------------------------------------------------------------------
# ChangeTracker
# ---------------------------------------------------------------------------------------------------------------
def test_change_tracker_counts() -> None:
    m = base()
    t = ChangeTracker()
    m._track = t
    # added: 2 (one then removed again, so not counted), removed: 1 (d), rewritten: 2 (y's input, s's attr)
    n1 = Node("Abs", [val(m, "x")])
    n2 = Node("Neg", [val(m, "x")])
    n3 = Node("Exp", [val(m, "x")])
    m.graph.append(n1, n2, n3)
    m.graph.remove(n3)
    m.graph.remove(prod(m, "d"))
    prod(m, "y").replace_input_with(0, val(m, "b"))
    prod(m, "s").set_attr("axis", 0)
    n1.set_attr("foo", 1)  # touching a node added in the same pass is no rewrite
    m._track = None
    assert list(t.added) == [n1, n2]
    assert t.removed == 1
    assert t.rewritten() == 2


def test_mutation_counter_stays_put_for_reads() -> None:
    m = base()
    c = m.mutations
    for n in m.graph.all_nodes():
        n.attrs, n.inputs, n.outputs, n.name  # noqa: B018
        for v in n.outputs:
            v.type, v.uses(), v.is_constant()  # noqa: B018
    for v in m.graph.initializers.values():
        v.const.numpy()  # type: ignore[union-attr]
    verify(m)
    serde.serialize(m)
    assert m.mutations == c
    m.graph.sort()
    assert m.mutations == c


# ---------------------------------------------------------------------------------------------------------------
# Constants and interface
# ---------------------------------------------------------------------------------------------------------------
def test_is_constant_follows_ir_version() -> None:
    text = """
    <ir_version: {v}, opset_import: ["" : 9]>
    g (float[2] x, float[2] w) => (float[2] y) {{ y = Add(x, w) }}
    """
    w = np.ones(2, np.float32)
    m3 = from_text(text.format(v=3), {"w": w})
    m8 = from_text(text.format(v=8), {"w": w})
    assert val(m3, "w").is_constant()  # IR<4: listed inputs are still constants
    assert not val(m8, "w").is_constant()  # IR>=4: an input with a default can be overridden
    m8b = from_text("""
    <ir_version: 8, opset_import: ["" : 9]>
    g (float[2] x) => (float[2] y) { y = Add(x, w) }
    """, {"w": w})
    assert val(m8b, "w").is_constant()


def test_clear_orphan_value_info_and_rollback() -> None:
    mp = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) <float[2] gone, float[2] t> { t = Neg(x)  y = Abs(t) }
    """)
    m = serde.loads(mp.SerializeToString())
    assert [vi.name for vi in m.graph.orphan_value_info] == ["gone"]
    before = serde.serialize(m)
    j = m.begin_journal()
    assert m.graph.clear_orphan_value_info() == 1
    assert [vi.name for vi in proto(m).graph.value_info] == ["t"]
    m.rollback(j)
    assert serde.serialize(m) == before
    assert m.graph.clear_orphan_value_info() == 1 and m.graph.clear_orphan_value_info() == 0


def test_node_remove_output_refuses_a_read_output_and_renumbers_the_rest() -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N] x) => (float[N] y) {
      a, b, c = Split <axis = 0, num_outputs = 3> (x)
      y = Concat <axis = 0> (a, c)
    }
    """)
    split = prod(m, "a")
    with pytest.raises(IRError, match="still used"):
        split.remove_output(0)
    split.remove_output(1)
    assert [v.name for v in split.outputs] == ["a", "c"] and [v.index for v in split.outputs] == [0, 1]
    assert verify(m, strict=False) == []


def test_as_loaded_holds_until_something_touches_the_node() -> None:
    text = """<ir_version: 8, opset_import: ["" : 17]>
g (float[N,4] x, bool c) => (float[N,4] y, float[N,4] z, float[N,4] e) {
  a = Add(x, x)
  b = Relu(a)
  s = Softmax <axis = 1> (b)
  z = If(c) <then_branch = t1 () => (float[N,4] o1) { o1 = Mul(b, a) },
             else_branch = t2 () => (float[N,4] o2) { o2 = Neg(a) }>
  y = Sigmoid(s)
  e = Cos(x)
}"""
    m = serde.loads(serde.dumps(from_text(text)))
    nodes = {n.op_type: n for n in m.graph}
    assert all(n.as_loaded for n in m.graph)
    nodes["Softmax"].attrs  # noqa: B018 - reading is not changing
    assert nodes["Softmax"].as_loaded
    nodes["Softmax"].set_attr("axis", -1)
    assert not nodes["Softmax"].as_loaded
    nodes["Sigmoid"].replace_input_with(0, nodes["Relu"].output)
    assert not nodes["Sigmoid"].as_loaded
    # a change inside a body touches the node that owns it
    (then_g, _) = nodes["If"].subgraphs()
    (mul,) = list(then_g)
    mul.set_attr("note", 1)
    assert not nodes["If"].as_loaded
    assert nodes["Add"].as_loaded and nodes["Cos"].as_loaded
    # a node a pass builds was never loaded
    assert not Node("Relu", [nodes["Add"].output]).as_loaded


def test_release_frees_the_model_without_the_cyclic_collector() -> None:
    import gc
    import weakref

    from graphopt.testing import from_text

    m = from_text('<ir_version: 8, opset_import: ["" : 17]>\n'
                  "g (float[2] x) => (float[2] y) { a = Relu(x)  b = Neg(a)  y = Abs(b) }")
    node = next(iter(m.graph))
    refs = [weakref.ref(node), weakref.ref(node.output), weakref.ref(m.graph)]
    gc_was = gc.isenabled()
    gc.disable()
    try:
        m.release()
        assert m.num_nodes() == 0
        del m, node
        assert all(r() is None for r in refs)  # freed by reference counting alone
    finally:
        if gc_was:
            gc.enable()
