"""Tests of the optimize-functions pass (graphopt/passes/functions.py) and its bridge (graphopt.ir.serde.functions.py)."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest

import graphopt
from graphopt.ir.core import Model
from graphopt.ir.serde.functions import walk_nodes
from graphopt.testing import (assert_same_outputs, assert_unchanged, assert_valid, from_text, op_types, pass_stats,
                              run, run_pass, snapshot, to_proto)

NAME = "optimize-functions"
BODY_PASSES = ("fold-constants", "eliminate-noops", "fuse", "cse", "dce")


def _opt(m: Model, **options: object) -> dict[str, int]:
    options.setdefault("passes", BODY_PASSES)
    return pass_stats(m, NAME, **options)


def _check(before: bytes, m: Model, n: int = 3) -> None:
    assert_valid(m)
    assert_same_outputs(before, m, bindings=[{"N": n}])


def _fn(m: Model, name: str) -> onnx.FunctionProto:
    (f,) = [f for f in m.functions if f.name == name]
    return f


def _body_ops(m: Model, name: str) -> list[str]:
    return [n.op_type for n in walk_nodes(_fn(m, name).node)]


def _idempotent(m: Model, **options: object) -> None:
    options.setdefault("passes", BODY_PASSES)
    assert_unchanged(m, NAME, **options)


# ---------------------------------------------------------------------------------------------------------------
# bodies optimized like graphs
# ---------------------------------------------------------------------------------------------------------------
TWICE = """
<ir_version: 9, opset_import: ["" : {model_opset}, "local" : 1]>
g (float[N] x, float[N] z) => (float[N] y) {{
  a = local.f(x)
  b = local.f(z)
  y = Add(a, b)
}}
<domain: "local", opset_import: ["" : {fn_opset}]>
f (p) => (q) {{
  {body}
}}
"""


def _twice(body: str, fn_opset: int = 18, model_opset: int = 18) -> Model:
    return from_text(TWICE.format(body=body, fn_opset=fn_opset, model_opset=model_opset))


def test_body_dead_duplicate_foldable_and_noop_nodes_go_in_a_function_called_twice() -> None:
    m = _twice("""
      dead = Exp(p)
      c1 = Constant<value = float[1] {1.0}>()
      c2 = Constant<value = float[1] {2.0}>()
      c = Add(c1, c2)
      s1 = Sin(p)
      s2 = Sin(p)
      i = Identity(s2)
      t = Add(s1, i)
      q = Mul(t, c)
    """)
    before = snapshot(m)
    assert _opt(m, inline=False) == {"functions_optimized": 1, "function_nodes_removed": 5}
    # the folded constant is a Constant node at the top; Exp, the second Sin and Identity are gone
    assert _body_ops(m, "f") == ["Constant", "Sin", "Add", "Mul"]
    c = _fn(m, "f").node[0].attribute[0].t
    assert onnx.numpy_helper.to_array(c).tolist() == [3.0]
    assert op_types(m) == ["f", "f", "Add"]
    _check(before, m)
    _idempotent(m, inline=False)


def test_body_fusion_uses_the_functions_own_opset() -> None:
    # the erf form of Gelu: fused into Gelu only where the function itself imports opset 20
    gelu = """
      sqrt2 = Constant<value = float {1.4142135}>()
      one = Constant<value = float {1.0}>()
      half = Constant<value = float {0.5}>()
      h = Div(p, sqrt2)
      e = Erf(h)
      o = Add(e, one)
      k = Mul(p, o)
      q = Mul(k, half)
    """
    m = _twice(gelu, fn_opset=20, model_opset=20)
    before = snapshot(m)
    stats = _opt(m, inline=False)
    assert stats["functions_optimized"] == 1
    assert _body_ops(m, "f") == ["Gelu"]
    _check(before, m)
    _idempotent(m, inline=False)
    # the model imports 20, the function 19 (where every op of the body means the same): no Gelu in the function
    m = _twice(gelu, fn_opset=19, model_opset=20)
    before = snapshot(m)
    _opt(m, inline=False)
    assert "Gelu" not in _body_ops(m, "f") and "Erf" in _body_ops(m, "f")
    _check(before, m)


def test_a_body_rewrite_that_the_models_opsets_cannot_hold_is_dropped() -> None:
    # the function imports 20 and the model 19: every op of the body means the same in both (onnx's checker
    # requires it), but Gelu does not exist in 19. The body is optimized again without fusion.
    m = _twice("""
      sqrt2 = Constant<value = float {1.4142135}>()
      one = Constant<value = float {1.0}>()
      half = Constant<value = float {0.5}>()
      h = Div(p, sqrt2)
      e = Erf(h)
      o = Add(e, one)
      k = Mul(p, o)
      q = Mul(k, half)
      dead = Exp(p)
    """, fn_opset=20, model_opset=19)
    before = snapshot(m)
    assert _opt(m, inline=False) == {"functions_optimized": 1, "function_nodes_removed": 1}
    assert "Gelu" not in _body_ops(m, "f") and "Exp" not in _body_ops(m, "f")
    _check(before, m)
    _idempotent(m, inline=False)


def test_body_cse_shapes_and_control_flow_inside_a_function_body_subgraph() -> None:
    m = from_text("""
    <ir_version: 9, opset_import: ["" : 18, "local" : 1]>
    g (float[N] x, bool c) => (float[N] y, float[N] w) {
      y = local.f(x, c)
      w = local.f(x, c)
    }
    <domain: "local", opset_import: ["" : 18]>
    f (p, k) => (q) {
      t = Constant<value = bool {1}>()
      q = If(k) <then_branch = g1 () => (float[N] a) {
                    a = If(t) <then_branch = g3 () => (float[N] a2) { e1 = Exp(p)  e2 = Exp(p)  a2 = Add(e1, e2) },
                               else_branch = g4 () => (float[N] b2) { b2 = Cos(p) }>
                  },
                 else_branch = g2 () => (float[N] b) { b = Abs(p) }>
    }
    """)
    before = snapshot(m)
    _opt(m, inline=False, passes=("simplify-control-flow", "fold-constants", "cse", "dce"))
    # the inner If had a constant condition: inlined into the outer branch; the two Exps are one
    assert _body_ops(m, "f") == ["If", "Exp", "Add", "Abs"]
    _check(before, m)


@pytest.mark.parametrize("case", ["constant_input", "cast", "transpose", "constant_node"])
def test_nodes_with_attribute_references_are_never_folded_nor_read_as_no_ops(case: str) -> None:
    body, attrs_a, attrs_b = {
        # a LeakyRelu of a constant: foldable, were alpha known
        "constant_input": ("k = Constant<value = float[1] {-2.0}>()  l = LeakyRelu<alpha: float = @alpha>(k)  "
                           "q = Add(p, l)", "<alpha: float = 0.5>", "<alpha: float = 0.25>"),
        # a Cast whose target type is unknown: not a same-type Cast to remove
        "cast": ("c = Cast<to: int = @to>(p)  q = Cast<to = 1>(c)", "<to: int = 1>", "<to: int = 6>"),
        # a Transpose whose perm is unknown: not an identity
        "transpose": ("q = Transpose<perm: ints = @perm>(p)", "<perm: ints = [0, 1]>", "<perm: ints = [1, 0]>"),
        "constant_node": ("k = Constant<value_float: float = @v>()  q = Mul(p, k)", "<v: float = 2.0>",
                          "<v: float = 3.0>"),
    }[case]
    shape = "float[N, N]" if case == "transpose" else "float[N]"
    m = from_text(f"""
    <ir_version: 9, opset_import: ["" : 18, "local" : 1]>
    g ({shape} x) => ({shape} y, {shape} w) {{
      y = local.f {attrs_a} (x)
      w = local.f {attrs_b} (x)
    }}
    <domain: "local", opset_import: ["" : 18]>
    f <alpha, to, perm, v> (p) => (q) {{
      {body}
    }}
    """)
    before = snapshot(m)
    refs_before = sum(1 for n in walk_nodes(_fn(m, "f").node) for a in n.attribute if a.ref_attr_name)
    _opt(m, inline=False)
    f = _fn(m, "f")
    refs = [(n.op_type, n.domain) for n in walk_nodes(f.node) if any(a.ref_attr_name for a in n.attribute)]
    assert len(refs) == refs_before and all(d == "" for _, d in refs)  # their own domain is back
    assert not any(n.domain.startswith("graphopt") for n in walk_nodes(f.node))
    assert all(o.domain == "" for o in f.opset_import)
    _check(before, m)


# ---------------------------------------------------------------------------------------------------------------
# inlining
# ---------------------------------------------------------------------------------------------------------------
ONCE = """
<ir_version: 9, opset_import: ["" : 18, "local" : 1]>
g (float[N] x) => (float[N] y) {
  t = Neg(x)
  y = local.f <alpha: float = 0.5> (t)
}
<domain: "local", opset_import: ["" : 18]>
f <alpha, beta: float = 0.125> (t) => (q) {
  a = LeakyRelu <alpha: float = @alpha> (t)
  b = LeakyRelu <alpha: float = @beta> (a)
  c = Elu <alpha: float = @gamma> (b)
  q = Add(c, t)
}
"""


def test_function_called_once_is_inlined_with_attributes_defaults_and_fresh_names() -> None:
    m = from_text(ONCE)
    before = snapshot(m)
    assert _opt(m, passes=()) == {"calls_inlined": 1, "functions_inlined": 1}
    assert op_types(m) == ["Neg", "LeakyRelu", "LeakyRelu", "Elu", "Add"]
    _, a, b, c, add = list(m.graph)
    assert a.attr("alpha") == 0.5  # from the call
    assert b.attr("alpha") == 0.125  # the function's default
    assert not c.has_attr("alpha")  # neither: absent, Elu's own default applies
    # the body's "t" clashes with the model's: every body value has a fresh name
    assert a.input(0) is list(m.graph)[0].output and add.input(1).name == "t"
    assert add.output.name == "y"  # the model output keeps its name
    _check(before, m)
    assert [f.name for f in m.functions] == ["f"]  # DCE's job to drop it
    run_pass(m, "dce")
    assert m.functions == []
    _idempotent(m)


def test_single_node_function_called_twice_is_inlined_everywhere_and_others_stay() -> None:
    m = from_text("""
    <ir_version: 9, opset_import: ["" : 18, "local" : 1]>
    g (float[N] x, bool c) => (float[N] y, float[N] w) {
      a = local.one(x)
      b = local.two(x)
      y = Add(a, b)
      w = If(c) <then_branch = g1 () => (float[N] p) { p = local.one(b) },
                 else_branch = g2 () => (float[N] q) { q = local.two(a) }>
    }
    <domain: "local", opset_import: ["" : 18]>
    one (p) => (q) { q = Relu(p) }
    <domain: "local", opset_import: ["" : 18]>
    two (p) => (q) { s = Sin(p)  q = Cos(s) }
    """)
    before = snapshot(m)
    assert _opt(m, passes=()) == {"calls_inlined": 2, "functions_inlined": 1}
    assert collections.Counter(op_types(m)) == {"Relu": 2, "two": 2, "Add": 1, "If": 1}
    _check(before, m)
    _idempotent(m)


def test_a_function_called_once_from_a_body_is_inlined_there_and_the_caller_into_the_model() -> None:
    # inner is called once, from outer's body: inlined there; outer, called once, is inlined into the model
    m = from_text("""
    <ir_version: 9, opset_import: ["" : 18, "local" : 1, "deep" : 1]>
    g (float[N] x) => (float[N] y) {
      y = local.outer(x)
    }
    <domain: "local", opset_import: ["" : 18, "deep" : 1]>
    outer (p) => (q) { s = deep.inner(p)  q = Neg(s) }
    <domain: "deep", opset_import: ["" : 18]>
    inner (p) => (q) { s = Sin(p)  q = Exp(s) }
    """)
    before = snapshot(m)
    assert _opt(m, passes=()) == {"calls_inlined_in_functions": 1, "functions_optimized": 1,
                                  "function_nodes_added": 1, "calls_inlined": 1, "functions_inlined": 1}
    assert op_types(m) == ["Sin", "Exp", "Neg"]
    _check(before, m)


def test_a_domain_the_model_does_not_import_is_added_when_inlining() -> None:
    m = from_text("""
    <ir_version: 9, opset_import: ["" : 18, "local" : 1]>
    g (float[N] x) => (float[N] y) {
      y = local.f(x)
    }
    <domain: "local", opset_import: ["" : 18, "ai.onnx.ml" : 1]>
    f (p) => (q) { b = ai.onnx.ml.Binarizer<threshold: float = 0.5>(p)  q = Neg(b) }
    """)
    before = snapshot(m)
    assert _opt(m, passes=()) == {"calls_inlined": 1, "functions_inlined": 1}
    assert m.opset_imports == {"": 18, "local": 1, "ai.onnx.ml": 1}
    _check(before, m)


def test_function_called_from_another_functions_body_is_not_inlined() -> None:
    m = from_text("""
    <ir_version: 9, opset_import: ["" : 18, "local" : 1]>
    g (float[N] x) => (float[N] y) {
      a = local.outer(x)
      b = local.outer(a)
      y = local.inner(b)
    }
    <domain: "local", opset_import: ["" : 18, "local" : 1]>
    outer (p) => (q) { s = local.inner(p)  q = Neg(s) }
    <domain: "local", opset_import: ["" : 18]>
    inner (p) => (q) { s = Sin(p)  q = Exp(s) }
    """)
    assert _opt(m, passes=()) == {}


def test_missing_optional_input_becomes_an_absent_input() -> None:
    m = from_text("""
    <ir_version: 9, opset_import: ["" : 18, "local" : 1]>
    g (float[N] x) => (float[N] y) {
      y = local.f(x)
    }
    <domain: "local", opset_import: ["" : 18]>
    f (p, lo, hi) => (q) { c = Clip(p, lo, hi)  q = Neg(c) }
    """)
    before = snapshot(m)
    assert _opt(m, passes=()) == {"calls_inlined": 1, "functions_inlined": 1}
    clip = list(m.graph)[0]
    assert clip.op_type == "Clip" and clip.inputs[1:] == (None, None)
    _check(before, m)


def test_opset_versions_that_differ_are_fine_when_every_op_means_the_same() -> None:
    # Relu and Neg are the same ops in opset 14 and 18: inlined; ReduceSum changed at 13: refused
    text = """
    <ir_version: 9, opset_import: ["" : 18, "local" : 1]>
    g (float[N] x) => (float[N] y) {{
      y = local.f(x)
    }}
    <domain: "local", opset_import: ["" : {v}]>
    f (p) => (q) {{ {body} }}
    """
    m = from_text(text.format(v=14, body="r = Relu(p)  q = Neg(r)"))
    before = snapshot(m)
    assert _opt(m, passes=()) == {"calls_inlined": 1, "functions_inlined": 1}
    _check(before, m)
    m = from_text(text.format(v=11, body="r = ReduceSum<keepdims = 1>(p)  q = Add(p, r)"))
    assert _opt(m, passes=()) == {"inline_refused_opset": 1}
    assert op_types(m) == ["f"]


def test_functions_of_a_runtime_domain_are_not_inlined() -> None:
    m = from_text("""
    <ir_version: 9, opset_import: ["" : 18, "com.microsoft" : 1]>
    g (float[N] x) => (float[N] y) {
      y = com.microsoft.MyOp(x)
    }
    <domain: "com.microsoft", opset_import: ["" : 18]>
    MyOp (p) => (q) { r = Relu(p)  q = Neg(r) }
    """)
    assert _opt(m, passes=()) == {"inline_refused_native_domain": 1}


def _with_call_attr(attr: onnx.AttributeProto) -> onnx.ModelProto:
    mp = onnx.parser.parse_model("""
    <ir_version: 9, opset_import: ["" : 18, "local" : 1]>
    g (float[N] x) => (float[N] y) {
      y = local.f(x)
    }
    <domain: "local", opset_import: ["" : 18]>
    f <alpha> (p) => (q) { q = LeakyRelu <alpha: float = @alpha> (p) }
    """)
    mp.graph.node[0].attribute.append(attr)
    return mp


@pytest.mark.parametrize("attr, reason", [
    (onnx.helper.make_attribute("alpha", 2), "call"),  # an int where the body wants a float
    (onnx.helper.make_attribute("alpha", onnx.helper.make_graph([], "g", [], [])), "call"),  # a graph
])
def test_attribute_references_to_a_graph_or_another_type_refuse_inlining(attr: onnx.AttributeProto,
                                                                          reason: str) -> None:
    m = graphopt.load(_with_call_attr(attr))
    before = snapshot(m)
    assert _opt(m, passes=()) == {f"inline_refused_{reason}": 1}
    assert snapshot(m) == before


def test_a_call_with_more_inputs_than_the_function_is_not_inlined() -> None:
    mp = _with_call_attr(onnx.helper.make_attribute("alpha", 0.5))
    mp.graph.node[0].input.append("x")
    m = graphopt.load(mp)
    assert _opt(m, passes=()) == {"inline_refused_call": 1}


def test_an_output_that_is_an_absent_input_refuses_inlining() -> None:
    m = from_text("""
    <ir_version: 9, opset_import: ["" : 18, "local" : 1]>
    g (float[N] x) => (float[N] y, float[N] z) {
      y, z = local.f(x)
    }
    <domain: "local", opset_import: ["" : 18]>
    f (p, extra) => (q, extra) { q = Neg(p) }
    """)
    assert _opt(m, passes=()) == {"inline_refused_call": 1}


def test_no_inlining_with_training_info_or_when_disabled() -> None:
    m = from_text(ONCE)
    assert _opt(m, passes=(), inline=False) == {}
    mp = to_proto(m)
    mp.training_info.add()
    m = graphopt.load(mp)
    assert _opt(m, passes=()) == {}


def test_inlined_into_an_if_branch_and_values_renamed_scope_by_scope() -> None:
    # the body holds an If whose branches both define "s": each gets a fresh name of its own
    m = from_text("""
    <ir_version: 9, opset_import: ["" : 18, "local" : 1]>
    g (float[N] x, bool c) => (float[N] y) {
      s = Neg(x)
      y = If(c) <then_branch = g1 () => (float[N] a) { a = local.f(s, c) },
                 else_branch = g2 () => (float[N] b) { b = Abs(s) }>
    }
    <domain: "local", opset_import: ["" : 18]>
    f (p, k) => (q) {
      q = If(k) <then_branch = h1 () => (float[N] o1) { s = Sin(p)  o1 = Exp(s) },
                 else_branch = h2 () => (float[N] o2) { s = Cos(p)  o2 = Exp(s) }>
    }
    """)
    before = snapshot(m)
    assert _opt(m, passes=()) == {"calls_inlined": 1, "functions_inlined": 1}
    assert op_types(m) == ["Neg", "If", "If", "Sin", "Exp", "Cos", "Exp", "Abs"]
    _check(before, m)


# ---------------------------------------------------------------------------------------------------------------
# in the pipeline
# ---------------------------------------------------------------------------------------------------------------
def test_pipeline_optimizes_bodies_inlines_and_drops_what_is_left() -> None:
    m = from_text("""
    <ir_version: 9, opset_import: ["" : 18, "local" : 1]>
    g (float[N] x, float[N] z) => (float[N] y, float[N] w) {
      y = local.once(x)
      a = local.twice(x)
      b = local.twice(z)
      w = Add(a, b)
    }
    <domain: "local", opset_import: ["" : 18]>
    once (p) => (q) { dead = Exp(p)  k = Constant<value = float[1] {3.0}>()  k2 = Mul(k, k)  q = Add(p, k2) }
    <domain: "local", opset_import: ["" : 18]>
    twice (p) => (q) { s1 = Sin(p)  s2 = Sin(p)  q = Add(s1, s2) }
    """)
    before = snapshot(m)
    res = graphopt.run(m, preset="O2")
    assert not res.record.failed
    assert op_types(m) == ["Add", "twice", "twice", "Add"]
    assert [f.name for f in m.functions] == ["twice"]
    assert _body_ops(m, "twice") == ["Sin", "Add"]
    _check(before, m)
    # the bodies were optimized once: later rounds found them in the context's memo
    runs = [r for r in res.record.passes if r.name == NAME]
    assert runs[0].changed and not any(r.changed for r in runs[1:])


def test_a_single_node_function_is_inlined_into_the_bodies_that_call_it() -> None:
    m = from_text("""
    <ir_version: 9, opset_import: ["" : 18, "local" : 1]>
    g (float[N] x, float[N] z) => (float[N] y) {
      a = local.outer(x)
      b = local.outer(z)
      y = Add(a, b)
    }
    <domain: "local", opset_import: ["" : 18, "local" : 1]>
    outer (p) => (q) { s = local.act(p)  t = Neg(s)  q = local.act(t) }
    <domain: "local", opset_import: ["" : 18]>
    act (p) => (q) { q = Relu(p) }
    """)
    before = snapshot(m)
    stats = _opt(m, passes=())
    assert stats == {"calls_inlined_in_functions": 2, "functions_optimized": 1}
    assert _body_ops(m, "outer") == ["Relu", "Neg", "Relu"]
    _check(before, m)
    run_pass(m, "dce")
    assert [f.name for f in m.functions] == ["outer"]
    _idempotent(m)


def test_a_call_that_passes_on_an_attribute_reference_is_left_alone() -> None:
    # the call of act inside outer takes alpha from outer's own attribute: its value is not known in the body
    m = from_text("""
    <ir_version: 9, opset_import: ["" : 18, "local" : 1]>
    g (float[N] x, float[N] z) => (float[N] y) {
      a = local.outer <alpha: float = 0.5> (x)
      b = local.outer <alpha: float = 0.25> (z)
      y = Add(a, b)
    }
    <domain: "local", opset_import: ["" : 18, "local" : 1]>
    outer <alpha> (p) => (q) { s = local.act <alpha: float = @alpha> (p)  q = Neg(s) }
    <domain: "local", opset_import: ["" : 18]>
    act <alpha> (p) => (q) { q = LeakyRelu <alpha: float = @alpha> (p) }
    """)
    before = snapshot(m)
    assert _opt(m, passes=()) == {}
    _check(before, m)


def test_declared_types_of_a_function_input_are_not_taken_as_facts() -> None:
    # the function declares p as 2-D (IR 10 value_info), but the model calls it with a 1-D tensor: the then branch
    # (Unsqueeze to 2-D) is the one that works. Trusting the declaration would pick the else branch.
    mp = onnx.parser.parse_model("""
    <ir_version: 10, opset_import: ["" : 18, "local" : 1]>
    g (float[4] x, bool k) => (float[1, 3] y, float[1, 3] y2) {
      y = local.f(x, k)
      y2 = local.f(x, k)
    }
    <domain: "local", opset_import: ["" : 18]>
    f (p, c) => (q) {
      zero = Constant<value = int64[1] {0}>()
      w = Constant<value = float[4, 3] {1,1,1,1,1,1,1,1,1,1,1,1}>()
      r = If(c) <then_branch = t () => (float[1, 4] a) { a = Unsqueeze(p, zero) },
                 else_branch = e () => (float[4] b) { b = Neg(p) }>
      q = Gemm(r, w)
    }
    """)
    mp.functions[0].value_info.append(onnx.helper.make_tensor_value_info("p", onnx.TensorProto.FLOAT, ["N", 4]))
    m = graphopt.load(mp)
    before = snapshot(m)
    _opt(m, inline=False, passes=("simplify-control-flow", "fold-constants", "dce"))
    assert "If" in _body_ops(m, "f")
    feeds = {"x": np.arange(4, dtype=np.float32), "k": np.array(True)}
    for a, b in zip(run(before, feeds), run(m, feeds)):
        np.testing.assert_allclose(b, a)
