"""A scalar multiplying a linear layer's output -> the layer's constants scaled.

torch's dynamo exporter decomposes ``scaled_dot_product_attention`` by multiplying both q and k by
``sqrt(scale)`` after the head split, each ``q = Transpose(Reshape(Add(MatMul(x, Wq), bq)))``. Multiplication by a
scalar commutes with Reshape and Transpose (they only move elements) and distributes over the Add, so::

    Mul(T(R(Add(MatMul(x, W), b))), c) == T(R(Add(MatMul(x, W * c), b * c)))

(also without the Reshape, the Transpose or the Add). One Mul per use goes, at no size cost: the scaled constants
replace W and b, which must be read by nothing else (otherwise both copies would be stored). As real numbers the
two sides are equal; in floating point the scale is applied before the sum instead of after it, a difference of
the order of one rounding (as when a BatchNormalization is folded into a Conv).

Conditions: c is a one-element constant that cannot broadcast the result to a higher rank (0-d, or rank no larger
than the result's known rank); W, b and c are float, float16 or double; the Reshape's target and the Transpose's
perm are kept as they are.
"""

from __future__ import annotations

import numpy as np

from ...ir.builder import Builder
from ...ir.core import Value
from ..pattern import AnyOf, Const, Fail, Match, Pat, Var
from ..rule import RewriteContext, Rule, float_fail, shared_fail, to_dtype
from .common import scalar_rank_fail


def _pattern() -> Pat:
    mm = Pat("MatMul", Var("x"), Const("w"), name="mm")
    lin = AnyOf(Pat("Add", mm, Const("b"), name="add"), mm)
    chain = AnyOf(Pat("Transpose", Pat("Reshape", lin, Var("t"), allow_extra_inputs=True, name="rs"), name="tp"),
                  Pat("Reshape", lin, Var("t"), allow_extra_inputs=True, name="rs"),
                  Pat("Transpose", lin, name="tp"),
                  lin)
    return Pat("Mul", chain, Const("c", scalar=True), name="mul")


class FuseLinearScale(Rule):
    name = "fuse-linear-scale"
    summary = "Mul by a scalar of a (Reshaped/Transposed) MatMul (+ bias) with constant weights -> weights scaled"
    opsets = (5, None)
    pattern = _pattern()

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        w = m.tensor("w")
        for k in ("w", "b", "c"):
            if k in m.tensors:
                f = float_fail(m.tensor(k), k)
                if f is not None:
                    return f
        f = shared_fail(m["w"], m.node("mm"), "the weight")
        if f is not None:
            return f
        if "b" in m.tensors:
            f = shared_fail(m["b"], m.node("add"), "the bias")
            if f is not None:
                return f
        mul = m.node("mul")
        other = mul.input(0) if mul.input(1) is m["c"] else mul.input(1)
        assert other is not None
        f = scalar_rank_fail(m.tensor("c"), other, ctx, f"the scale {m['c'].name!r}")
        if f is not None:
            return f
        c = float(np.asarray(m.array("c"), dtype=np.float64).reshape(-1)[0])
        m.data["w"] = to_dtype(np.asarray(w.numpy(), dtype=np.float64) * c, w)
        if "b" in m.tensors:
            bt = m.tensor("b")
            m.data["b"] = to_dtype(np.asarray(bt.numpy(), dtype=np.float64) * c, bt)
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        y = b.op("MatMul", m["x"], b.const(m.data["w"], prefix=(m["w"].name or "w") + "_scaled"))
        if "b" in m.data:
            y = b.op("Add", y, b.const(m.data["b"], prefix=(m["b"].name or "b") + "_scaled"))
        if m.has_node("rs"):
            rs = m.node("rs")
            y = b.node("Reshape", [y, m["t"]], {k: a.value for k, a in rs.attrs.items()}).output
        if m.has_node("tp"):
            tp = m.node("tp")
            y = b.node("Transpose", [y], {k: a.value for k, a in tp.attrs.items()}).output
        return [y]


RULES = [FuseLinearScale]
