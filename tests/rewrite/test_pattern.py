"""The pattern engine: Pat/Var/Const/AnyOf/Opt matching, commutative alternatives, attribute constraints, extra
inputs, and the Fail reasons it gives when a graph does not fit."""

from __future__ import annotations

import numpy as np
import pytest

from graphopt.ir.core import Node
from graphopt.rewrite.pattern import AnyOf, AttrIs, Const, Fail, Match, Opt, Pat, Var, const_tensor, match_pattern
from graphopt.testing import from_text


def node_of(model, out: str) -> Node:
    for n in model.graph.all_nodes():
        if any(v.name == out for v in n.outputs):
            return n
    raise KeyError(out)


MUL_ADD = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x, float[N, 4] y) => (float[N, 4] out) {
  t = Mul(x, y)
  out = Add(c, t)
}
"""


def test_var_binds_and_commutative_order_is_tried(rng: np.random.Generator) -> None:
    m = from_text(MUL_ADD, {"c": rng.standard_normal(4).astype(np.float32)})
    root = node_of(m, "out")
    # the pattern puts the Mul first; the graph has it second: Add is commutative, so it still matches
    res = match_pattern(Pat("Add", Pat("Mul", Var("a"), Var("b"), name="mul"), Const("k"), name="add"), root)
    assert isinstance(res, Match)
    assert res["a"].name == "x" and res["b"].name == "y" and res["k"].name == "c"
    assert res.node("mul").op_type == "Mul" and res.node("add") is root
    assert list(res.matched) == [root, res.node("mul")]  # root first
    assert res.array("k").shape == (4,)


def test_commute_false_reports_the_mismatch(rng: np.random.Generator) -> None:
    m = from_text(MUL_ADD, {"c": rng.standard_normal(4).astype(np.float32)})
    res = match_pattern(Pat("Add", Pat("Mul", Var("a"), Var("b")), Const("k"), commute=False), node_of(m, "out"))
    assert isinstance(res, Fail)
    assert "input 0 of Add" in res.reason and "constant" in res.reason and "not the output of Mul" in res.reason


def test_repeated_var_must_be_the_same_value() -> None:
    m = from_text("""
<ir_version: 8, opset_import: ["" : 17]>
g (float[4] x, float[4] y) => (float[4] o1, float[4] o2) {
  o1 = Mul(x, x)
  o2 = Mul(x, y)
}
""")
    pat = Pat("Mul", Var("a"), Var("a"))
    assert isinstance(match_pattern(pat, node_of(m, "o1")), Match)
    res = match_pattern(pat, node_of(m, "o2"))
    assert isinstance(res, Fail) and "bound as 'a'" in res.reason


def test_backtracking_across_commuted_branches() -> None:
    # Sub(x, Mul(x, y)): the Var x bound by Sub's input 0 forces Mul's commuted order (y, x) -> (x, y)
    m = from_text("""
<ir_version: 8, opset_import: ["" : 17]>
g (float[4] x, float[4] y) => (float[4] o) {
  t = Mul(y, x)
  o = Sub(x, t)
}
""")
    res = match_pattern(Pat("Sub", Var("x"), Pat("Mul", Var("x"), Var("other"))), node_of(m, "o"))
    assert isinstance(res, Match)
    assert res["x"].name == "x" and res["other"].name == "y"


def test_const_matches_initializers_and_constant_nodes_but_not_inputs() -> None:
    m = from_text("""
<ir_version: 8, opset_import: ["" : 17]>
g (float[4] x, float[4] y) => (float[4] o1, float[4] o2, float[4] o3) {
  k = Constant <value_float = 0.5> ()
  o1 = Mul(x, k)
  o2 = Mul(x, w)
  o3 = Mul(x, y)
}
""", {"w": np.full(4, 2.0, np.float32)})
    pat = Pat("Mul", Var("x"), Const("c"))
    r1 = match_pattern(pat, node_of(m, "o1"))
    assert isinstance(r1, Match) and float(r1.array("c")) == 0.5
    r2 = match_pattern(pat, node_of(m, "o2"))
    assert isinstance(r2, Match) and r2.array("c").tolist() == [2.0] * 4
    r3 = match_pattern(pat, node_of(m, "o3"))
    assert isinstance(r3, Fail) and "is not a constant" in r3.reason


def test_const_with_value_and_tolerance() -> None:
    m = from_text("""
<ir_version: 8, opset_import: ["" : 17]>
g (float[4] x) => (float[4] o1, float[4] o2) {
  o1 = Div(x, a)
  o2 = Div(x, b)
}
""", {"a": np.array(1.4142, np.float32), "b": np.array(1.5, np.float32)})
    pat = Pat("Div", Var("x"), Const("s", 2 ** 0.5))
    assert isinstance(match_pattern(pat, node_of(m, "o1")), Match)
    r = match_pattern(pat, node_of(m, "o2"))
    assert isinstance(r, Fail) and "is 1.5, not 1.41421" in r.reason


def test_const_scalar_flag_rejects_vectors(rng: np.random.Generator) -> None:
    m = from_text(MUL_ADD, {"c": rng.standard_normal(4).astype(np.float32)})
    r = match_pattern(Pat("Add", Const("k", scalar=True), Var("t"), commute=False), node_of(m, "out"))
    assert isinstance(r, Fail) and "has 4 elements, not 1" in r.reason


def test_initializer_that_is_an_overridable_input_is_not_constant() -> None:
    m = from_text("""
<ir_version: 8, opset_import: ["" : 17]>
g (float[4] x, float[4] w) => (float[4] o) {
  o = Mul(x, w)
}
""", {"w": np.ones(4, np.float32)})
    assert const_tensor(node_of(m, "o").input(1)) is None
    r = match_pattern(Pat("Mul", Var("x"), Const("c")), node_of(m, "o"))
    assert isinstance(r, Fail) and "not a constant" in r.reason


CONV = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 2, 5, 5] x) => (float[1, 3, 5, 5] o1, float[1, 3, 5, 5] o2) {
  o1 = Conv <pads = [1, 1, 1, 1]> (x, w, b)
  o2 = Conv <pads = [1, 1, 1, 1], auto_pad = "NOTSET"> (x, w)
}
"""


def _conv_inits(rng: np.random.Generator) -> dict:
    return {"w": rng.standard_normal((3, 2, 3, 3)).astype(np.float32), "b": np.zeros(3, np.float32)}


def test_extra_inputs_need_allow_extra_inputs(rng: np.random.Generator) -> None:
    m = from_text(CONV, _conv_inits(rng))
    strict = Pat("Conv", Var("x"), Const("w"))
    r = match_pattern(strict, node_of(m, "o1"))
    assert isinstance(r, Fail) and "has 3 inputs, the pattern expects 2" in r.reason
    assert isinstance(match_pattern(strict, node_of(m, "o2")), Match)
    loose = Pat("Conv", Var("x"), Const("w"), allow_extra_inputs=True)
    assert isinstance(match_pattern(loose, node_of(m, "o1")), Match)


def test_opt_matches_present_and_absent_inputs(rng: np.random.Generator) -> None:
    m = from_text(CONV, _conv_inits(rng))
    pat = Pat("Conv", Var("x"), Const("w"), Opt(Const("b")))
    r1 = match_pattern(pat, node_of(m, "o1"))
    r2 = match_pattern(pat, node_of(m, "o2"))
    assert isinstance(r1, Match) and "b" in r1
    assert isinstance(r2, Match) and "b" not in r2


def test_attribute_constraints(rng: np.random.Generator) -> None:
    m = from_text(CONV, _conv_inits(rng))
    n1, n2 = node_of(m, "o1"), node_of(m, "o2")
    # a literal constraint: an absent attribute does not match it
    lit = Pat("Conv", Var("x"), Const("w"), allow_extra_inputs=True, attrs={"auto_pad": "NOTSET"})
    assert isinstance(match_pattern(lit, n2), Match)
    r = match_pattern(lit, n1)
    assert isinstance(r, Fail) and "auto_pad=None" in r.reason and "'NOTSET'" in r.reason
    # AttrIs with a default: the absent attribute counts as the default
    dflt = Pat("Conv", Var("x"), Const("w"), allow_extra_inputs=True, attrs={"auto_pad": AttrIs("NOTSET", "NOTSET")})
    assert isinstance(match_pattern(dflt, n1), Match)
    # a predicate over the attribute's value
    pred = Pat("Conv", Var("x"), Const("w"), allow_extra_inputs=True, attrs={"pads": lambda p: p == [0, 0, 0, 0]})
    r = match_pattern(pred, n1)
    assert isinstance(r, Fail) and "pads=[1, 1, 1, 1]" in r.reason


def test_anyof_root_and_inner_alternatives() -> None:
    m = from_text("""
<ir_version: 8, opset_import: ["" : 17]>
g (float[4] x, float[4] y) => (float[4] o1, float[4] o2) {
  a = Relu(x)
  o1 = Mul(a, y)
  b = Sigmoid(x)
  o2 = Add(b, y)
}
""")
    pat = AnyOf(Pat("Mul", Pat("Relu", Var("x"), name="act"), Var("y")),
                Pat("Add", Pat(("Sigmoid", "Tanh"), Var("x"), name="act"), Var("y")))
    assert pat.root_ops() == ("Mul", "Add")
    r1 = match_pattern(pat, node_of(m, "o1"))
    r2 = match_pattern(pat, node_of(m, "o2"))
    assert isinstance(r1, Match) and r1.node("act").op_type == "Relu"
    assert isinstance(r2, Match) and r2.node("act").op_type == "Sigmoid"


def test_unused_extra_outputs_are_fine_used_ones_fail(rng: np.random.Generator) -> None:
    m = from_text("""
<ir_version: 8, opset_import: ["" : 17]>
g (float[2, 4] x) => (float[2, 4] o1, float[2, 4] o2, float[2, 4] mask) {
  d1 = Dropout(x)
  o1 = Relu(d1)
  d2, mask = Dropout(x)
  o2 = Relu(d2)
}
""")
    pat = Pat("Relu", Pat("Dropout", Var("x")))
    assert isinstance(match_pattern(pat, node_of(m, "o1")), Match)
    r = match_pattern(pat, node_of(m, "o2"))
    assert isinstance(r, Fail) and "output 1 ('mask') is used" in r.reason


def test_the_failure_that_got_furthest_is_reported(rng: np.random.Generator) -> None:
    m = from_text(MUL_ADD, {"c": rng.standard_normal(4).astype(np.float32)})
    # both orders fail: (t as Sub: wrong op) and (c as Sub: a constant); the deeper one names the Mul
    pat = Pat("Add", Pat("Mul", Var("a"), Const("k")), Var("z"))
    r = match_pattern(pat, node_of(m, "out"))
    assert isinstance(r, Fail)
    assert "input 1 of Mul" in r.reason and "'y'" in r.reason and "not a constant" in r.reason


def test_wrong_root_op_and_graph_input_reasons() -> None:
    m = from_text(MUL_ADD.replace("c, t", "x, t"))
    r = match_pattern(Pat("Mul", Var("a"), Var("b")), node_of(m, "out"))
    assert isinstance(r, Fail) and "is not Mul" in r.reason
    r = match_pattern(Pat("Add", Pat("Relu", Var("a")), Pat("Mul", Var("p"), Var("q")), commute=False),
                      node_of(m, "out"))
    assert isinstance(r, Fail) and "is a graph input, not the output of Relu" in r.reason


def test_accept_rejection_moves_on_to_the_next_alternative(rng: np.random.Generator) -> None:
    m = from_text("""
<ir_version: 8, opset_import: ["" : 17]>
g (float[4] x, float[4] y) => (float[4] o) {
  a = Relu(x)
  b = Relu(y)
  o = Add(a, b)
}
""")
    pat = Pat("Add", Pat("Relu", Var("in"), name="r"), Var("other"))
    seen = []

    def accept(mt: Match) -> Fail | None:
        seen.append(mt["in"].name)
        return Fail("not this one") if mt["in"].name == "x" else None

    r = match_pattern(pat, node_of(m, "o"), accept)
    assert isinstance(r, Match) and r["in"].name == "y" and seen == ["x", "y"]
    r = match_pattern(pat, node_of(m, "o"), lambda mt: Fail("never"))
    assert isinstance(r, Fail) and r.reason == "never"


def test_root_pattern_must_be_a_node_pattern() -> None:
    m = from_text(MUL_ADD.replace("c, t", "x, t"))
    with pytest.raises(TypeError):
        match_pattern(Var("x"), node_of(m, "out"))  # type: ignore[arg-type]


def test_one_node_reached_under_two_names_binds_both() -> None:
    # Sub(Neg(s), s): the patterns name the two reads of s differently; both names (and the names inside) must
    # be bound, or a rule's check finds them missing (found by benchmarks/fuzz.py: KeyError in a rule's check)
    m = from_text("""
<ir_version: 8, opset_import: ["" : 17]>
g (float[4] x) => (float[4] out) {
  s = Abs(x)
  n = Neg(s)
  out = Sub(n, s)
}
""")
    pat = Pat("Sub", Pat("Neg", Pat("Abs", Var("a"), name="first")), Pat("Abs", Var("b"), name="second"))
    res = match_pattern(pat, node_of(m, "out"))
    assert isinstance(res, Match)
    assert res.node("first") is res.node("second") and res["a"] is res["b"]
    assert list(res.matched).count(res.node("first")) == 1
    # unnamed, the second read is taken as matched once already
    res = match_pattern(Pat("Sub", Pat("Neg", Pat("Abs", Var("a"))), Pat("Abs", Var("a"))), node_of(m, "out"))
    assert isinstance(res, Match)
