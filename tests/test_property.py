"""Property: for random valid graphs, the full -O2 pipeline keeps onnxruntime's outputs equal, and never produces a
model that onnx.checker or onnxruntime rejects.

Hypothesis builds graphs over a dynamic input x: float[N, 4] from a menu of what exporters produce: elementwise ops,
MatMul with constant weights, Reshape/Transpose round trips, shape arithmetic on the dynamic input
(Shape/Gather/Unsqueeze/Concat/Reshape), constant subexpressions, duplicated subexpressions, dead branches, Identity
chains and arithmetic no-ops. Every value in the pool has shape [N, 4], so every generated graph is valid.
Derandomized: the same examples on every run.
"""

from __future__ import annotations

import numpy as np
import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import graphopt
from graphopt.ir import serde
from graphopt.testing import assert_same_outputs, assert_valid

UNARY = ["Relu", "Neg", "Abs", "Sigmoid", "Tanh", "Softsign", "Identity"]
BINARY = ["Add", "Sub", "Mul", "Max", "Min"]
MENU = ["unary", "binary", "binary_const", "matmul", "transpose_pair", "shape_reshape", "identity_chain", "noop",
        "duplicate", "dead", "const_expr", "cast_pair", "concat_split"]


class _G:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.pool = ["x"]
        self.k = 0

    def name(self, p: str) -> str:
        self.k += 1
        return f"{p}{self.k}"

    def node(self, op: str, ins: list[str], **attrs: object) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def const(self, arr: np.ndarray) -> str:
        n = self.name("c")
        self.inits.append(numpy_helper.from_array(arr, n))
        return n


def _build(ops: list[tuple[str, int, int, int]], n_outputs: int) -> onnx.ModelProto:
    g = _G(len(ops))
    for op, a, b, c in ops:
        pick = lambda i: g.pool[i % len(g.pool)]  # noqa: E731
        v = pick(a)
        if op == "unary":
            g.pool.append(g.node(UNARY[b % len(UNARY)], [v]))
        elif op == "binary":
            g.pool.append(g.node(BINARY[c % len(BINARY)], [v, pick(b)]))
        elif op == "binary_const":
            shape = [(4,), (1,), (), (1, 4)][b % 4]
            cst = g.const(g.rng.standard_normal(shape).astype(np.float32))
            g.pool.append(g.node(BINARY[c % len(BINARY)], [v, cst] if c % 2 else [cst, v]))
        elif op == "matmul":
            w = g.const((g.rng.standard_normal((4, 4)) * 0.5).astype(np.float32))
            g.pool.append(g.node("MatMul", [v, w]))
        elif op == "transpose_pair":
            t = g.node("Transpose", [v], perm=[1, 0])
            g.pool.append(g.node("Transpose", [g.node("Relu", [t]) if b % 2 else t], perm=[1, 0]))
        elif op == "shape_reshape":
            shp = g.node("Shape", [v])
            n = g.node("Gather", [shp, g.const(np.array([0], np.int64))], axis=0)
            tgt = g.node("Concat", [n, g.const(np.array([2, 2], np.int64))], axis=0)
            r = g.node("Reshape", [v, tgt])
            r = g.node("Relu", [r]) if b % 2 else r
            back = g.node("Concat", [g.node("Gather", [g.node("Shape", [r]), g.const(np.array([0], np.int64))],
                                              axis=0), g.const(np.array([4], np.int64))], axis=0)
            g.pool.append(g.node("Reshape", [r, back]))
        elif op == "identity_chain":
            g.pool.append(g.node("Identity", [g.node("Identity", [v])]))
        elif op == "noop":
            # neutral elements, and look-alikes that are NOT no-ops (0 - x, 1 ^ x, 1 / x)
            kind = b % 7
            if kind == 0:
                g.pool.append(g.node("Add", [v, g.const(np.zeros(4, np.float32))]))
            elif kind == 1:
                g.pool.append(g.node("Mul", [g.const(np.ones((), np.float32)), v]))
            elif kind == 2:
                g.pool.append(g.node("Cast", [v], to=TensorProto.FLOAT))
            elif kind == 3:
                g.pool.append(g.node("Div", [v, g.const(np.ones(1, np.float32))]))
            elif kind == 4:
                g.pool.append(g.node("Sub", [g.const(np.zeros(4, np.float32)), v]))
            elif kind == 5:
                g.pool.append(g.node("Pow", [g.const(np.ones((1, 4), np.float32)), v]))
            else:
                g.pool.append(g.node("Div", [g.const(np.ones((), np.float32)), g.node("Abs", [v])]))
        elif op == "duplicate":
            for src in reversed(g.nodes):
                if src.op_type not in ("Constant",) and src.output[0] in g.pool:
                    out = g.name("dup")
                    dup = helper.make_node(src.op_type, list(src.input), [out], name=out)
                    dup.attribute.extend(src.attribute)
                    g.nodes.append(dup)
                    g.pool.append(out)
                    break
        elif op == "dead":
            g.node("Exp", [g.node("Sigmoid", [v])])  # never added to the pool: dead
        elif op == "const_expr":
            c1 = g.const(g.rng.standard_normal(4).astype(np.float32))
            c2 = g.const(g.rng.standard_normal(4).astype(np.float32))
            s = g.node("Add", [c1, g.node("Mul", [c2, c2])])
            g.pool.append(g.node("Mul", [v, g.node("Tanh", [s])]))
        elif op == "cast_pair":
            h = g.node("Cast", [v], to=TensorProto.DOUBLE)
            g.pool.append(g.node("Cast", [g.node("Abs", [h])], to=TensorProto.FLOAT))
        elif op == "concat_split":
            cat = g.node("Concat", [v, pick(b)], axis=1)
            o1, o2 = g.name("split"), g.name("split")
            g.nodes.append(helper.make_node("Split", [cat, g.const(np.array([4, 4], np.int64))], [o1, o2],
                                            name=o1, axis=1))
            g.pool.append(o2 if c % 2 else o1)
    outs = list(dict.fromkeys(reversed(g.pool)))[:n_outputs]
    graph = helper.make_graph(
        g.nodes, "random", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["N", 4]) for o in outs], g.inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


op_spec = st.tuples(st.sampled_from(MENU), st.integers(0, 50), st.integers(0, 50), st.integers(0, 50))


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(ops=st.lists(op_spec, min_size=1, max_size=14), n_outputs=st.integers(1, 3))
def test_o2_pipeline_preserves_outputs(ops: list[tuple[str, int, int, int]], n_outputs: int) -> None:
    mp = _build(ops, n_outputs)
    onnx.checker.check_model(mp, full_check=True)
    original = mp.SerializeToString()
    model = serde.loads(original)
    res = graphopt.run(model, preset="O2", strict=True)
    assert not res.record.failed
    assert res.record.converged
    assert_valid(model)
    assert_same_outputs(original, model, bindings=[{"N": 1}, {"N": 3}, {"N": 6}], seeds=(0,))
    # idempotent as a whole: optimizing the result changes nothing
    again = serde.loads(serde.dumps(model))
    res2 = graphopt.run(again, preset="O2", strict=True)
    assert res2.record.nodes_after == res.record.nodes_after
