"""verify() catches every kind of corruption it claims to: each test pokes the IR's internals the way a buggy pass
might, and expects the matching problem (and an IRError in strict mode)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from graphopt.ir import IRError, Node, Value, verify
from graphopt.ir.core import Model
from graphopt.testing import from_text

TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N,4] x, bool[1] c) => (float[N,4] y, float[N,4] z) <float[4] w = {1.0, 2.0, 3.0, 4.0}> {
  a = Add(x, w)
  b = Relu(a)
  z = If(c) <then_branch = t1 () => (float[N,4] o1) { o1 = Mul(b, a) },
             else_branch = t2 () => (float[N,4] o2) { o2 = Neg(a) }>
  y = Sigmoid(b)
}
"""


def nodes(m: Model) -> dict[str, Node]:
    return {n.output.name: n for n in m.graph.all_nodes()}  # type: ignore[misc]


def _read_before_defined(m: Model) -> None:
    ns = nodes(m)
    m.graph._detach_for_move(ns["a"])
    m.graph._relink(ns["y"], ns["a"])  # Add moved to the end, behind its readers


def _missing_use(m: Model) -> None:
    a = nodes(m)["a"].output
    a._uses.pop((nodes(m)["b"], 0))


def _stale_use(m: Model) -> None:
    nodes(m)["a"].output._uses[(nodes(m)["y"], 0)] = None  # y reads b, not a


def _stale_use_index(m: Model) -> None:
    nodes(m)["a"].output._uses[(nodes(m)["b"], 7)] = None


def _use_by_removed_node(m: Model) -> None:
    ghost = Node("Abs", [nodes(m)["a"].output])
    ghost._erased = True
    nodes(m)["a"].output._uses[(ghost, 0)] = None


def _use_by_detached_node(m: Model) -> None:
    # a node in a graph that is no subgraph of anything (as a buggy pass might leave behind)
    from graphopt.ir import Graph

    g = Graph("detached")
    ghost = Node("Abs", [nodes(m)["a"].output])
    g.append(ghost)
    ghost._register_uses()


def _use_of_input_by_removed_node(m: Model) -> None:
    ghost = Node("Abs", [m.graph.inputs[0]])
    ghost._erased = True
    m.graph.inputs[0]._uses[(ghost, 0)] = None


def _edge_behind_back(m: Model) -> None:
    # a pass editing the list directly: the new edge is not registered and the old one is stale
    nodes(m)["y"]._inputs[0] = nodes(m)["a"].output


def _output_index(m: Model) -> None:
    nodes(m)["a"].output.index = 3


def _output_producer(m: Model) -> None:
    nodes(m)["a"].output.producer = nodes(m)["b"]


def _output_undefined(m: Model) -> None:
    v = Value("nowhere")
    m.graph._outputs[0] = v
    v._out_graphs = [m.graph]


def _output_unmarked(m: Model) -> None:
    m.graph._outputs[0]._out_graphs = None


def _duplicate_names(m: Model) -> None:
    nodes(m)["b"].output._name = "a"


def _duplicate_names_across_graphs(m: Model) -> None:
    nodes(m)["o2"].output._name = "y"


def _initializer_key(m: Model) -> None:
    m.graph._initializers["v"] = m.graph._initializers.pop("w")


def _initializer_without_tensor(m: Model) -> None:
    m.graph._initializers["w"]._const = None


def _input_with_producer(m: Model) -> None:
    m.graph.inputs[0].producer = nodes(m)["a"]


def _node_in_wrong_graph(m: Model) -> None:
    nodes(m)["o1"].graph = m.graph


def _count(m: Model) -> None:
    m.graph._count += 1


def _subgraph_owner(m: Model) -> None:
    nodes(m)["z"]._subgraphs[0].owner = nodes(m)["y"]  # type: ignore[index]


def _out_vi(m: Model) -> None:
    m.graph._out_vi.pop()


def _defined_twice(m: Model) -> None:
    ns = nodes(m)
    v = ns["a"].output
    ns["b"]._outputs[0] = v  # one Value listed as the output of two nodes


def _subgraph_reads_later_outer_value(m: Model) -> None:
    ns = nodes(m)
    inner = ns["o1"]
    old = inner._inputs[0]
    inner._inputs[0] = ns["y"].output  # y is defined after the If
    old._uses.pop((inner, 0))
    ns["y"].output._uses[(inner, 0)] = None


CORRUPTIONS: dict[str, tuple[Callable[[Model], None], str]] = {
    "read_before_defined": (_read_before_defined, "before it is defined"),
    "missing_use": (_missing_use, "does not list its use"),
    "stale_use": (_stale_use, "stale use"),
    "stale_use_index": (_stale_use_index, "stale use"),
    "use_by_removed_node": (_use_by_removed_node, "removed node"),
    "use_by_detached_node": (_use_by_detached_node, "not part of the model"),
    "use_of_input_by_removed_node": (_use_of_input_by_removed_node, "removed node"),
    "edge_behind_back": (_edge_behind_back, "does not list its use"),
    "output_index": (_output_index, "does not point back"),
    "output_producer": (_output_producer, "does not point back"),
    "output_undefined": (_output_undefined, "is not defined"),
    "output_unmarked": (_output_unmarked, "does not know it is an output"),
    "duplicate_names": (_duplicate_names, "used by two values"),
    "duplicate_names_across_graphs": (_duplicate_names_across_graphs, "used by two values"),
    "initializer_key": (_initializer_key, "initializer key"),
    "initializer_without_tensor": (_initializer_without_tensor, "has no tensor"),
    "input_with_producer": (_input_with_producer, "has a producer"),
    "node_in_wrong_graph": (_node_in_wrong_graph, "does not point to"),
    "count": (_count, "counts"),
    "subgraph_owner": (_subgraph_owner, "does not point to it"),
    "out_vi": (_out_vi, "out of step"),
    "defined_twice": (_defined_twice, "defined twice"),
    "subgraph_reads_later_outer_value": (_subgraph_reads_later_outer_value, "before it is defined"),
}


def test_clean_model_verifies() -> None:
    m = from_text(TEXT)
    assert verify(m, strict=False) == []
    assert verify(m) == []
    assert verify(m.graph) == []


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_verify_catches(name: str) -> None:
    poke, expected = CORRUPTIONS[name]
    m = from_text(TEXT)
    poke(m)
    problems = verify(m, strict=False)
    assert any(expected in p for p in problems), problems
    with pytest.raises(IRError, match="verification failed"):
        verify(m)


# sibling subgraphs are separate scopes: onnx's checker and onnxruntime accept an If whose two branches both name
# their result `t` (found by benchmarks/fuzz.py: graphopt refused to write any result of such a model, exit 5)
SIBLINGS = """
<ir_version: 8, opset_import: ["" : 18]>
g (float[N] x) => (float[N] y, float[N] t2) {
  s = ReduceSum<keepdims=0>(x)
  z = Constant<value=float {0.0}>()
  c = Greater(s, z)
  y = If(c) <then_branch = g1 () => (float[N] t) { t = Relu(x) }, else_branch = g2 () => (float[N] t) { t = Neg(x) }>
  t2 = If(c) <then_branch = g3 () => (float[N] t) { t = Abs(x) }, else_branch = g4 () => (float[N] t) { t = Sin(x) }>
}
"""


def test_sibling_subgraphs_may_reuse_a_name() -> None:
    m = from_text(SIBLINGS)
    assert verify(m, strict=False) == []


def test_a_subgraph_may_not_shadow_an_outer_name_defined_later() -> None:
    m = from_text(SIBLINGS.replace("=> (float[N] t) { t = Relu(x) }", "=> (float[N] t2) { t2 = Relu(x) }"))
    assert any("'t2' is used by two values" in p for p in verify(m, strict=False))


def test_the_pipeline_optimizes_a_model_whose_branches_reuse_a_name() -> None:
    import graphopt
    from graphopt.testing import assert_same_outputs, check_pipeline, snapshot

    data = snapshot(from_text(SIBLINGS))
    rep = graphopt.optimize(data, return_report=True).report
    assert rep.exit_code == 0, rep.error
    assert check_pipeline(data) == []
    out = graphopt.optimize(data)
    assert_same_outputs(data, out, bindings=[{"N": 1}, {"N": 4}])
