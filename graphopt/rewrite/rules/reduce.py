"""A reduction that drops its axes followed by an Unsqueeze that puts them back -> the reduction with keepdims.

For every Reduce* op, ``keepdims = 1`` keeps each reduced axis as a dim of size 1, exactly where it was; with
``keepdims = 0`` those dims are removed. Unsqueeze inserts size-1 dims at the given output positions. So::

    Unsqueeze(Reduce(x, axes, keepdims=0), axes) == Reduce(x, axes, keepdims=1)

when the two axis sets are the same after normalization: a reduced axis a of a rank-r input is position a of the
rank-r keepdims output, and Unsqueeze's output also has rank r, so negative axes normalize against the same r.
When r is unknown the sets must be literally equal. Axes must be constants and explicit (a reduction over "all
axes" is left alone: its Unsqueeze counterpart would need the rank). Axes are attributes for Reduce* before opset
18 (ReduceSum: 13) and Unsqueeze before 13, inputs from then on; the rewrite keeps the reduction's own form.
"""

from __future__ import annotations

from ...ir.builder import Builder
from ...ir.core import Value
from ..pattern import Fail, Match, Pat, Var, describe
from ..rule import RewriteContext, Rule, axes_input_or_attr
from .common import copy_attrs

REDUCE_OPS = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")


class FuseReduceUnsqueeze(Rule):
    name = "fuse-reduce-unsqueeze"
    summary = "Reduce*(keepdims=0) + Unsqueeze of the same axes -> Reduce*(keepdims=1)"
    opsets = (1, None)
    pattern = Pat("Unsqueeze", Pat(REDUCE_OPS, Var("x"), allow_extra_inputs=True, name="reduce"),
                  allow_extra_inputs=True, name="unsqueeze")

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        red, unsq = m.node("reduce"), m.node("unsqueeze")
        if int(red.attr("keepdims", 1)) != 0:
            return Fail(f"{describe(red)} keeps its dims already")
        since = 13 if red.op_type == "ReduceSum" else 18
        ra, why = axes_input_or_attr(red, ctx, 1, since)
        if why:
            return Fail(why)
        if not ra:
            return Fail(f"{describe(red)} reduces every axis (no explicit axes)")
        ua, why = axes_input_or_attr(unsq, ctx, 1, 13)
        if why:
            return Fail(why)
        if ua is None:
            return Fail(f"{describe(unsq)} has no axes")
        r = ctx.rank_of(m["x"])
        if r is not None:
            rn = sorted(a + r if a < 0 else a for a in ra)
            un = sorted(a + r if a < 0 else a for a in ua)
        else:
            rn, un = sorted(ra), sorted(ua)
        if rn != un:
            return Fail(f"{describe(red)} reduces axes {ra}, {describe(unsq)} inserts {ua}"
                        + ("" if r is not None else " (rank unknown)"))
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        red = m.node("reduce")
        n = b.node(red.op_type, list(red.inputs), copy_attrs(red, keepdims=1))
        return [n.output]


RULES = [FuseReduceUnsqueeze]
