"""A product with a reciprocal -> one division.

``y * (1 / s)`` and ``y * Reciprocal(s)`` are ``y / s``: TorchScript writes ``torch.rsqrt`` as ``Div(1, Sqrt(v))``
and the dynamo exporter as ``Reciprocal(Sqrt(v))``, each followed by a Mul (RMSNorm in Llama and T5, attention
scales). One Div replaces two ops; onnxruntime does the same rewrite at its basic level (DivMulFusion), so this is
what a runtime without it gains. The results are equal as real numbers; in floating point ``y / s`` rounds once
where ``y * (1 / s)`` rounds twice (at most one unit in the last place apart, the more accurate of the two).

Conditions: float, float16 or double (an integer ``1 / s`` truncates); the 1 is a one-element constant that cannot
broadcast s to a higher rank (0-d, or a rank no larger than s's, which must then be known), so that
``broadcast(y, s)`` is the product's shape; the reciprocal is read only by the Mul (the driver checks that).
"""

from __future__ import annotations

from ...ir.builder import Builder
from ...ir.core import Value
from ..pattern import AnyOf, Const, Fail, Match, Pat, Var
from ..rule import RewriteContext, Rule
from .common import scalar_rank_fail


class FuseDivMul(Rule):
    name = "fuse-div-mul"
    summary = "y * (1 / s) and y * Reciprocal(s) -> y / s"
    opsets = (6, None)  # Reciprocal, Div and Mul with multidirectional broadcasting
    pattern = Pat("Mul", Var("y"), AnyOf(Pat("Div", Const("one", 1.0, rtol=0.0), Var("s"), name="recip"),
                                         Pat("Reciprocal", Var("s"), name="recip")), name="mul")

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        s = m["s"]
        dt = ctx.dtype_of(s) or ctx.dtype_of(m["y"])
        if dt not in (1, 10, 11):
            return Fail(f"s has element type {dt}; the rule rewrites float, float16 and double only")
        if "one" in m.tensors:
            return scalar_rank_fail(m.tensor("one"), s, ctx, f"the constant {m['one'].name!r}")
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        return [b.op("Div", m["y"], m["s"])]


RULES = [FuseDivMul]
