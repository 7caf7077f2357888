"""Independent checks of the IR's invariants for the IR tests (deliberately not using verify(), which is under
test too): use-def recomputed from scratch, and the round trip through bytes."""

from __future__ import annotations

import collections

import onnx

from graphopt.ir import serde
from graphopt.ir.core import Graph, Model, Node, Value


def reachable_graphs(model: Model) -> list[Graph]:
    """The main graph and the subgraphs of nodes that are actually in the model (depth first)."""
    out: list[Graph] = []
    stack = [model.graph]
    while stack:
        g = stack.pop()
        out.append(g)
        for n in g:
            stack.extend(n.subgraphs())
    return out


def check_use_def(model: Model) -> None:
    """Assert that every value's use list and output marks are exactly what the live nodes and graphs say."""
    graphs = reachable_graphs(model)
    live: set[Node] = set()
    expected_uses: dict[Value, collections.Counter] = collections.defaultdict(collections.Counter)
    expected_outs: dict[Value, collections.Counter] = collections.defaultdict(collections.Counter)
    values: dict[Value, None] = {}
    for g in graphs:
        for v in g.inputs:
            values[v] = None
        for v in g.initializers.values():
            values[v] = None
        for n in g:
            live.add(n)
            assert n.graph is g, f"{n!r} is listed in a graph it does not point to"
            for i, v in enumerate(n.inputs):
                if v is not None:
                    expected_uses[v][(n, i)] += 1
                    values[v] = None
            for i, v in enumerate(n.outputs):
                assert v.producer is n and v.index == i, f"output {i} of {n!r} does not point back"
                values[v] = None
        for v in g.outputs:
            expected_outs[v][g] += 1
            values[v] = None
    for v in values:
        got = collections.Counter(v.uses())
        assert got == expected_uses.get(v, collections.Counter()), (
            f"{v!r}: uses {sorted(map(repr, got))} but the live nodes read it at "
            f"{sorted(map(repr, expected_uses.get(v, {})))}")
        for u, _ in v.uses():
            assert u in live, f"{v!r} lists a use by {u!r}, which is not in the model"
        got_outs = collections.Counter(v.output_graphs())
        assert got_outs == expected_outs.get(v, collections.Counter()), f"{v!r}: output marks {got_outs}"


def proto(model: Model) -> onnx.ModelProto:
    mp = onnx.ModelProto()
    mp.ParseFromString(serde.serialize(model))
    return mp


def roundtrip(model: Model) -> Model:
    """The model written to bytes and loaded back (what a later run would see)."""
    return serde.loads(serde.serialize(model))
