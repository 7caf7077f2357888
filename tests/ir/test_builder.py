"""Builder: insertion points, fresh names, and constants as initializers of the main graph (hoisted out of
subgraphs; also graph inputs before IR version 4, as the checker requires)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from graphopt.ir import Builder, IRError, TensorType, add_constant
from graphopt.ir.tensors import Tensor
from graphopt.testing import from_text, run

from ._util import check_use_def, proto

IF_MODEL = """
<ir_version: {v}, opset_import: ["" : {o}]>
g (float[2] x, bool[1] c) => (float[2] y) {{
  y = If(c) <then_branch = t1 () => (float[2] a) {{ a = Neg(x) }},
             else_branch = t2 () => (float[2] b) {{ b = Abs(x) }}>
}}
"""


@pytest.mark.parametrize("ir_version,opset", [(3, 9), (8, 17)])
def test_constant_made_in_a_subgraph_is_hoisted_to_the_main_graph(ir_version: int, opset: int) -> None:
    m = from_text(IF_MODEL.format(v=ir_version, o=opset))
    ref = from_text(IF_MODEL.format(v=ir_version, o=opset))
    then = m.graph.first().subgraphs()[0]  # type: ignore[union-attr]
    a = then.outputs[0]
    b = Builder(then, after=a.producer)
    k = b.const(np.array([2.0, 2.0], np.float32))
    t = b.op("Mul", a.producer.inputs[0], k)  # type: ignore[union-attr]
    a.replace_all_uses_with(t)
    then.remove(a.producer)  # type: ignore[arg-type]
    assert k.graph is m.graph and k.name in m.graph.initializers
    assert not then.initializers
    assert k.type == TensorType(1, (2,)) and k.is_constant()
    assert (k in m.graph.inputs) == (ir_version < 4)  # IR<4: every initializer is also a graph input
    assert b.constants == [k] and [n.op_type for n in b.created] == ["Mul"]
    check_use_def(m)
    mp = proto(m)
    onnx.checker.check_model(mp, full_check=True)
    x = np.array([1.5, -3.0], np.float32)
    np.testing.assert_array_equal(run(m, {"x": x, "c": np.array([True])})[0], 2 * x)  # then: Mul(x, 2)
    np.testing.assert_array_equal(run(m, {"x": x, "c": np.array([False])})[0], np.abs(x))
    np.testing.assert_array_equal(run(ref, {"x": x, "c": np.array([True])})[0], -x)


def test_insertion_points_and_names() -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) { t = Neg(x)  y = Abs(t) }
    """)
    neg, ab = list(m.graph)
    before = Builder(m.graph, before=ab)
    p = before.op("Exp", neg.output)
    q = before.op("Log", p)
    after = Builder(m.graph, after=neg, name_hint="fold")
    r = after.op("Sin", neg.output)
    s = after.op("Cos", r)  # `after` moves on: nodes come out in the order they are built
    end = Builder(m.graph)
    e = end.op("Tan", s)
    assert [n.op_type for n in m.graph] == ["Neg", "Sin", "Cos", "Exp", "Log", "Abs", "Tan"]
    assert [n.name for n in before.created] == ["graphopt/Exp_0", "graphopt/Log_0"]
    assert [n.name for n in after.created] == ["graphopt/fold_0", "graphopt/fold_1"]
    assert len({v.name for v in (p, q, r, s, e)}) == 5 and all(v.name for v in (p, q, r, s, e))
    check_use_def(m)
    with pytest.raises(IRError):
        Builder(m.graph, before=ab, after=neg)


def test_builder_node_multi_output_and_attrs() -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4,6] x) => (float[4,6] y) { y = Identity(x) }
    """)
    b = Builder(m.graph, before=m.graph.first())
    n = b.node("Split", [m.graph.inputs[0], b.const(np.array([2, 4], np.int64))], {"axis": 1}, outputs=2)
    assert len(n.outputs) == 2 and n.attr("axis") == 1
    assert n.inputs[1].const is not None  # type: ignore[union-attr]
    check_use_def(m)


def test_add_constant_names() -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) { y = Identity(x) }
    """)
    t = Tensor.from_numpy(np.zeros(2, np.float32))
    a = add_constant(m.graph, t)
    b = add_constant(m.graph, t, prefix="y")
    assert a.name == "const" and b.name == "y_0"  # "y" is taken
    with pytest.raises(IRError, match="already exists"):
        add_constant(m.graph, t, name="const")
