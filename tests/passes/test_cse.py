"""Tests of the cse pass (graphopt/passes/cse.py)."""

from __future__ import annotations

import numpy as np
import pytest

from graphopt.ir.core import Model, Node, Value
from graphopt.ir.shapes import TensorType
from graphopt.testing import (assert_same_outputs, assert_unchanged, assert_valid, count_ops, from_text, op_types,
                              pass_stats, snapshot, to_proto)

H = '<ir_version: 8, opset_import: ["" : 17]>'


def _cse(m: Model, **options: object) -> dict[str, int]:
    return pass_stats(m, "cse", **options)


def _check(before: bytes, m: Model) -> None:
    assert_valid(m)
    assert_same_outputs(before, m, bindings=[{"N": 2}, {"N": 5}])


def _idempotent(m: Model) -> None:
    assert_unchanged(m, "cse")


def _unchanged(text: str, inits: dict[str, np.ndarray] | None = None, **kw: object) -> Model:
    return assert_unchanged(from_text(text, inits, **kw), "cse")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# positive
# ---------------------------------------------------------------------------------------------------------------
def test_merges_duplicates_and_their_consumers_in_one_walk(rng: np.random.Generator) -> None:
    m = from_text(f"""
    {H}
    g (float[N] x) => (float[N] y) {{
      a1 = Add(x, w)
      a2 = Add(w, x)
      e1 = Exp(a1)
      e2 = Exp(a2)
      t1 = Transpose<perm = [0]>(e1)
      t2 = Transpose<perm = [0]>(e2)
      y = Sub(t1, t2)
    }}
    """, {"w": rng.standard_normal(1).astype(np.float32)})
    before = snapshot(m)
    assert _cse(m) == {"nodes_merged": 3}
    assert op_types(m) == ["Add", "Exp", "Transpose", "Sub"]
    sub = list(m.graph)[-1]
    assert sub.inputs[0] is sub.inputs[1]
    _check(before, m)
    _idempotent(m)


def test_trailing_absent_optional_input_is_the_same_as_none(rng: np.random.Generator) -> None:
    m = from_text(f"""
    {H}
    g (float[N] x) => (float[N] y) {{
      a = Clip(x, lo)
      b = Clip(x, lo, "")
      y = Add(a, b)
    }}
    """, {"lo": np.array(0.1, np.float32)})
    before = snapshot(m)
    assert _cse(m) == {"nodes_merged": 1}
    _check(before, m)


def test_equal_constant_nodes_merge_different_ones_do_not() -> None:
    m = from_text(f"""
    {H}
    g (float[N] x) => (float[N] y) {{
      k1 = Constant<value = float[2] {{1.5, 2.0}}>()
      k2 = Constant<value = float[2] {{1.5, 2.0}}>()
      k3 = Constant<value = float[2] {{1.5, 2.5}}>()
      k4 = Constant<value = double[2] {{1.5, 2.0}}>()
      s = Add(k1, k2)
      t = Add(s, k3)
      u = Cast<to = 1>(k4)
      v = Add(t, u)
      y = Add(x, v)
    }}
    """)
    before = snapshot(m)
    # x must broadcast against [2]: bind N to 2
    assert _cse(m) == {"nodes_merged": 1}
    assert count_ops(m)["Constant"] == 3
    assert_valid(m)
    assert_same_outputs(before, m, bindings=[{"N": 2}])
    _idempotent(m)


def test_equal_initializers_merge_ir4(rng: np.random.Generator) -> None:
    w = rng.standard_normal(3).astype(np.float32)
    m = from_text(f"""
    {H}
    g (float[3] x) => (float[3] y) {{
      a = Add(x, w1)
      b = Add(x, w2)
      c = Mul(x, w3)
      t = Add(a, c)
      y = Add(t, b)
    }}
    """, {"w1": w, "w2": w.copy(), "w3": w + 1})
    before = snapshot(m)
    # w2 merges into w1, which makes b a duplicate of a
    assert _cse(m) == {"initializers_merged": 1, "nodes_merged": 1}
    assert list(m.graph.initializers) == ["w1", "w3"]
    _check(before, m)
    _idempotent(m)


def test_ir3_equal_initializers_merge_their_inputs_go_and_the_checker_passes() -> None:
    m = from_text("""
    <ir_version: 3, opset_import: ["" : 8]>
    g (float[3] x, float[3] w1, float[3] w2) => (float[3] y) {
      a = Add(x, w1)
      b = Mul(x, w2)
      y = Add(a, b)
    }
    """, {"w1": np.arange(3, dtype=np.float32), "w2": np.arange(3, dtype=np.float32)}, ir_version=3)
    before = snapshot(m)
    assert _cse(m) == {"initializers_merged": 1}
    assert list(m.graph.initializers) == ["w1"]
    assert [v.name for v in m.graph.inputs] == ["x", "w1"]
    _check(before, m)
    _idempotent(m)


def test_graph_output_name_moves_to_the_kept_node() -> None:
    m = from_text(f"""
    {H}
    g (float[N] x) => (float[N] y, float[N] z) {{
      a = Neg(x)
      y = Exp(x)
      z = Neg(x)
    }}
    """)
    before = snapshot(m)
    assert _cse(m) == {"nodes_merged": 1}
    assert [v.name for v in m.graph.outputs] == ["y", "z"]
    assert op_types(m) == ["Neg", "Exp"]
    _check(before, m)
    _idempotent(m)


def test_inside_a_subgraph_reuses_an_outer_value_computed_before_the_owner() -> None:
    m = from_text(f"""
    {H}
    g (float[N] x, bool[1] c) => (float[N] y) {{
      n = Neg(x)
      y = If(c) <then_branch = g1 () => (float[N] a) {{ n2 = Neg(x)  a = Add(n2, n) }},
                 else_branch = g2 () => (float[N] b) {{ b = Abs(x) }}>
    }}
    """)
    before = snapshot(m)
    assert _cse(m) == {"nodes_merged": 1}
    if_node = list(m.graph)[1]
    add = list(if_node.subgraphs()[0])[0]
    assert add.op_type == "Add" and add.inputs[0] is add.inputs[1] is list(m.graph)[0].output
    _check(before, m)
    _idempotent(m)


def test_identical_if_nodes_merge_structurally() -> None:
    m = from_text(f"""
    {H}
    g (float[N] x, bool[1] c) => (float[N] y) {{
      i1 = If(c) <then_branch = g1 () => (float[N] a) {{ t = Neg(x)  a = Exp(t) }},
                  else_branch = g2 () => (float[N] b) {{ b = Abs(x) }}>
      i2 = If(c) <then_branch = g3 () => (float[N] a2) {{ t2 = Neg(x)  a2 = Exp(t2) }},
                  else_branch = g4 () => (float[N] b2) {{ b2 = Abs(x) }}>
      y = Sub(i1, i2)
    }}
    """)
    before = snapshot(m)
    assert _cse(m) == {"nodes_merged": 1}
    assert count_ops(m, recursive=False)["If"] == 1
    _check(before, m)
    _idempotent(m)


def test_deterministic_model_local_function_calls_merge() -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
    g (float[N] x) => (float[N] y) {
      a = local.f(x)
      b = local.f(x)
      y = Add(a, b)
    }
    <domain: "local", opset_import: ["" : 17]>
    f (p) => (q) { q = Neg(p) }
    """)
    before = snapshot(m)
    assert _cse(m) == {"nodes_merged": 1}
    _check(before, m)


# ---------------------------------------------------------------------------------------------------------------
# negative: one per precondition
# ---------------------------------------------------------------------------------------------------------------
def test_nodes_differing_in_one_attribute_stay() -> None:
    _unchanged(f"""
    {H}
    g (float[N] x) => (float[N] y) {{
      a = LeakyRelu<alpha = 0.1>(x)
      b = LeakyRelu<alpha = 0.2>(x)
      y = Add(a, b)
    }}
    """)


def test_input_order_matters_for_non_commutative_ops() -> None:
    _unchanged(f"""
    {H}
    g (float[N] x, float[N] z) => (float[N] y) {{
      a = Sub(x, z)
      b = Sub(z, x)
      y = Add(a, b)
    }}
    """)


def test_a_different_absent_optional_input_stays() -> None:
    # Clip(x, , m) clamps from above, Clip(x, m) from below
    _unchanged(f"""
    {H}
    g (float[N] x) => (float[N] y) {{
      a = Clip(x, , m)
      b = Clip(x, m)
      y = Add(a, b)
    }}
    """, {"m": np.array(0.5, np.float32)})


@pytest.mark.parametrize("op", ["RandomUniform", "RandomNormal"])
def test_random_ops_never_merge(op: str) -> None:
    _unchanged(f"""
    {H}
    g (float[N] x) => (float[2] y) {{
      a = {op}<shape = [2], seed = 1.0>()
      b = {op}<shape = [2], seed = 1.0>()
      y = Add(a, b)
    }}
    """)


def test_random_like_ops_and_subgraphs_holding_random_ops_never_merge() -> None:
    _unchanged(f"""
    {H}
    g (float[N] x, bool[1] c) => (float[N] y) {{
      a = RandomUniformLike(x)
      b = RandomUniformLike(x)
      i1 = If(c) <then_branch = g1 () => (float[N] p) {{ p = RandomNormalLike(x) }},
                  else_branch = g2 () => (float[N] q) {{ q = Abs(x) }}>
      i2 = If(c) <then_branch = g3 () => (float[N] p2) {{ p2 = RandomNormalLike(x) }},
                  else_branch = g4 () => (float[N] q2) {{ q2 = Abs(x) }}>
      s = Add(a, b)
      t = Add(i1, i2)
      y = Add(s, t)
    }}
    """)


def test_unknown_domain_ops_never_merge() -> None:
    _unchanged("""
    <ir_version: 8, opset_import: ["" : 17, "vendor" : 1]>
    g (float[N] x) => (float[N] y) {
      a = vendor.Sample(x)
      b = vendor.Sample(x)
      y = Add(a, b)
    }
    """)


def test_no_reuse_of_an_outer_value_computed_after_the_owner() -> None:
    m = _unchanged(f"""
    {H}
    g (float[N] x, bool[1] c) => (float[N] y) {{
      i = If(c) <then_branch = g1 () => (float[N] a) {{ n2 = Neg(x)  a = Exp(n2) }},
                 else_branch = g2 () => (float[N] b) {{ b = Abs(x) }}>
      n = Neg(x)
      y = Add(i, n)
    }}
    """)
    assert count_ops(m)["Neg"] == 2


def test_sibling_branches_do_not_share_entries() -> None:
    _unchanged(f"""
    {H}
    g (float[N] x, bool[1] c) => (float[N] y) {{
      y = If(c) <then_branch = g1 () => (float[N] a) {{ n1 = Neg(x)  a = Exp(n1) }},
                 else_branch = g2 () => (float[N] b) {{ n2 = Neg(x)  b = Abs(n2) }}>
    }}
    """)


def test_duplicates_that_are_both_graph_outputs_keep_both_names() -> None:
    m = _unchanged(f"""
    {H}
    g (float[N] x) => (float[N] y, float[N] z) {{
      y = Neg(x)
      z = Neg(x)
    }}
    """)
    assert [v.name for v in m.graph.outputs] == ["y", "z"]


def test_subgraph_output_is_not_replaced_by_an_outer_value() -> None:
    # onnxruntime rejects a subgraph output that is an outer value; an Identity would cost what it saves
    _unchanged(f"""
    {H}
    g (float[N] x, bool[1] c) => (float[N] y) {{
      n = Neg(x)
      i = If(c) <then_branch = g1 () => (float[N] a) {{ a = Neg(x) }},
                 else_branch = g2 () => (float[N] b) {{ b = Abs(x) }}>
      y = Add(i, n)
    }}
    """)


def test_ir4_initializer_listed_as_input_is_never_merged() -> None:
    _unchanged(f"""
    {H}
    g (float[3] x, float[3] w2) => (float[3] y) {{
      a = Add(x, w1)
      b = Add(x, w2)
      y = Mul(a, b)
    }}
    """, {"w1": np.ones(3, np.float32), "w2": np.ones(3, np.float32)})


def test_initializers_over_the_size_limit_are_not_hashed() -> None:
    text = f"""
    {H}
    g (float[64] x) => (float[64] y) {{
      a = Add(x, w1)
      b = Mul(x, w2)
      y = Add(a, b)
    }}
    """
    w = np.linspace(0, 1, 64, dtype=np.float32)
    m = from_text(text, {"w1": w, "w2": w.copy()})
    assert _cse(m, max_tensor_bytes=255) == {}
    assert _cse(m, max_tensor_bytes=256) == {"initializers_merged": 1}
    assert list(to_proto(m).graph.initializer)[0].name == "w1"


def test_duplicates_inside_a_loop_body_merge_and_body_interface_stays() -> None:
    m = from_text(f"""
    {H}
    g (float[N] x, int64 n) => (float[N] y) {{
      y = Loop(n, "", x) <body = body (int64 i, bool cin, float[N] acc) => (bool cout, float[N] acc2) {{
        cout = Identity(cin)
        a = Sin(acc)
        b = Sin(acc)
        acc2 = Add(a, b)
      }}>
    }}
    """)
    assert _cse(m) == {"nodes_merged": 1}
    body = list(m.graph)[0].subgraphs()[0]
    assert [v.name for v in body.inputs] == ["i", "cin", "acc"]
    assert [v.name for v in body.outputs] == ["cout", "acc2"]
    assert op_types(m) == ["Loop", "Identity", "Sin", "Add"]
    assert_valid(m)
    _idempotent(m)


def test_subgraph_initializer_equal_to_an_outer_one_merges_into_it() -> None:
    import onnx

    from graphopt.ir import serde

    mp = onnx.parser.parse_model(f"""
    {H}
    g (float[3] x, bool[1] c) => (float[3] y) {{
      a = Add(x, w)
      y = If(c) <then_branch = g1 () => (float[3] p) {{ p = Mul(a, k) }},
                 else_branch = g2 () => (float[3] q) {{ q = Sub(a, k2) }}>
    }}
    """)
    w = np.array([1.0, 2.0, 3.0], np.float32)
    mp.graph.initializer.append(onnx.numpy_helper.from_array(w, "w"))
    mp.graph.node[1].attribute[0].g.initializer.append(onnx.numpy_helper.from_array(w.copy(), "k"))
    mp.graph.node[1].attribute[1].g.initializer.append(onnx.numpy_helper.from_array(w + 1, "k2"))
    m = serde.from_proto(mp)
    before = snapshot(m)
    assert _cse(m) == {"initializers_merged": 1}
    then_g, else_g = list(m.graph)[1].subgraphs()
    assert list(then_g.initializers) == [] and list(else_g.initializers) == ["k2"]
    _check(before, m)
    _idempotent(m)


def test_scales_to_two_long_identical_chains() -> None:
    # Not a timing test: two identical 10k-node chains collapse into one in a single walk (each merge rewires the
    # next link's readers before they are visited).
    links = 10_000
    m = Model(ir_version=8, opset_imports={"": 17})
    g = m.graph
    x = Value("x", type=TensorType(1, ("N",)))
    g.add_input(x)
    ends = []
    for side in ("a", "b"):
        prev = x
        for i in range(links):
            n = Node(("Neg", "Abs", "Relu")[i % 3], [prev], outputs=[f"{side}{i}"])
            g.append(n)
            prev = n.output
        ends.append(prev)
    sub = Node("Sub", ends, outputs=["y"])
    g.append(sub)
    sub.output.type = TensorType(1, ("N",))
    g.append_output(sub.output)
    # run bare (no shape inference, no serialization): this test is about the pass
    from graphopt.ir.verify import verify
    from graphopt.jit.context import JitContext
    from graphopt.passes.cse import CommonSubexpressionElimination

    cse = CommonSubexpressionElimination()
    assert cse.run(m, JitContext()).stats == {"nodes_merged": links}
    verify(m)
    assert m.num_nodes() == links + 1
    assert sub.inputs[0] is sub.inputs[1]
    assert cse.run(m, JitContext()).stats == {}
