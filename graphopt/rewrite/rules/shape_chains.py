"""Chains of shape ops merged into one: Concat of Concats, Slice of Slice, Unsqueeze of Unsqueeze, Squeeze of
Squeeze. (Removing no-ops and cancelling pairs — Identity, Transpose-Transpose, Reshape-Reshape, Cast-Cast — is
the eliminate-noops pass's job, not this family's.)

* ``Concat(a, Concat(b, c; axis k), d; axis k) == Concat(a, b, c, d; axis k)``: concatenation is associative
  along one axis. The axes must be the same (compared after normalizing negative axes when the rank is known) and
  the inner Concat must be read only by the outer one (otherwise it stays and nothing is saved).
* ``Slice(Slice(x, s1, e1, a1, t1), s2, e2, a2, t2) == Slice(x, s1++s2, e1++e2, a1++a2, t1++t2)`` when the two
  slices touch disjoint axes: each axis is sliced once, by one of them, and slicing different axes commutes.
  Starts/ends/axes/steps must be constants (opset 10+, where they are inputs); they are merged as int64.
* ``Unsqueeze(Unsqueeze(x, a1), a2) == Unsqueeze(x, a)``: a2 names positions in the final output; the positions
  left free, in order, are the positions of the intermediate tensor, so a1's position p lands on the p-th free
  position. ``Squeeze(Squeeze(x, a1), a2) == Squeeze(x, a)`` symmetrically: a2's position p is the p-th axis of x
  not in a1. Negative axes need the rank; Squeeze without axes (squeeze every 1) is left alone. When the inner
  op is read by several ops of its own kind (``merge-unsqueeze-shared``, ``merge-squeeze-shared``), each merges
  it and the inner op goes with dead-code elimination (one node less in the end; onnxoptimizer does the same).
"""

from __future__ import annotations

import numpy as np

from ...ir.builder import Builder
from ...ir.core import Node, Value
from ..pattern import Const, Fail, Match, Opt, Pat, Var, describe, describe_value
from ..rule import RewriteContext, Rule, axes_input_or_attr
from .common import const_ints, copy_attrs


# ----------------------------------------------------------------------------------------------------------------
class FlattenConcat(Rule):
    name = "flatten-concat"
    summary = "Concat reading Concats along the same axis -> one Concat"
    opsets = (4, None)  # axis is required from opset 4
    depth = 2  # the Concat and the Concats it reads

    def root_ops(self) -> tuple[str, ...]:
        return ("Concat",)

    def match(self, node: Node, ctx: RewriteContext, accept: object = None) -> Match | Fail:
        axis = node.attr("axis", None)
        if axis is None:
            return Fail(f"{describe(node)} has no axis")
        rank = None
        for v in node.inputs:
            rank = ctx.rank_of(v)
            if rank is not None:
                break
        outer = _norm_axis(int(axis), rank)
        m = Match(node)
        m.matched[node] = None
        flat: list[Value | None] = []
        reasons: list[str] = []
        for v in node.inputs:
            p = v.producer if v is not None else None
            if p is None or p.op_type != "Concat" or p.domain not in ("", "ai.onnx") or p.graph is not node.graph:
                flat.append(v)
                continue
            inner_axis = p.attr("axis", None)
            if inner_axis is None or _norm_axis(int(inner_axis), rank) != outer:
                reasons.append(f"{describe(p)} concatenates along axis {inner_axis}, not {axis}"
                               + ("" if rank is not None else " (rank unknown)"))
                flat.append(v)
                continue
            if v.is_graph_output() or any(u is not node for u, _ in v.uses()):
                reasons.append(f"{describe(p)} output {describe_value(v)} is read elsewhere")
                flat.append(v)
                continue
            m.matched[p] = None
            flat.extend(p.inputs)
        if len(m.matched) == 1:
            if reasons:
                return Fail("; ".join(reasons), node)
            return Fail(f"no input of {describe(node)} is a Concat", node)
        m.data["inputs"] = flat
        if accept is not None:
            f = accept(m)  # type: ignore[operator]
            if f is not None:
                return f
        return m

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        root = m.root
        return [b.node("Concat", m.data["inputs"], copy_attrs(root)).output]


def _norm_axis(a: int, rank: int | None) -> int:
    return a + rank if a < 0 and rank is not None else a


# ----------------------------------------------------------------------------------------------------------------
def _slice_pat(inner: Pat | Var, name: str, k: str) -> Pat:
    return Pat("Slice", inner, Const("s" + k), Const("e" + k), Opt(Const("a" + k)), Opt(Const("t" + k)), name=name)


class MergeSlices(Rule):
    name = "merge-slices"
    summary = "Slice of a Slice on disjoint axes -> one Slice"
    opsets = (10, None)
    pattern = _slice_pat(_slice_pat(Var("x"), "inner", "1"), "outer", "2")

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        parts = {}
        for k in ("1", "2"):
            s, e = const_ints(m.tensor("s" + k)), const_ints(m.tensor("e" + k))
            assert s is not None and e is not None
            if len(s) != len(e):
                return Fail(f"slice {k} has {len(s)} starts and {len(e)} ends")
            a = const_ints(m.tensors.get("a" + k)) if ("a" + k) in m.values else list(range(len(s)))
            t = const_ints(m.tensors.get("t" + k)) if ("t" + k) in m.values else [1] * len(s)
            if a is None or t is None or len(a) != len(s) or len(t) != len(s):
                return Fail(f"slice {k} has starts/ends/axes/steps of different lengths")
            parts[k] = (s, e, a, t)
        a1, a2 = parts["1"][2], parts["2"][2]
        rank = ctx.rank_of(m["x"])
        if rank is not None:
            n1 = [_norm_axis(x, rank) for x in a1]
            n2 = [_norm_axis(x, rank) for x in a2]
        elif all(x >= 0 for x in a1 + a2) or all(x < 0 for x in a1 + a2):
            n1, n2 = a1, a2
        else:
            return Fail("the slices mix negative and non-negative axes and the rank is unknown")
        common = sorted(set(n1) & set(n2))
        if common:
            return Fail(f"both slices cut axis {common[0]}")
        m.data["parts"] = [np.array(parts["1"][i] + parts["2"][i], dtype=np.int64) for i in range(4)]
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        s, e, a, t = (b.const(x, prefix="slice_" + k) for x, k in
                      zip(m.data["parts"], ("starts", "ends", "axes", "steps")))
        return [b.op("Slice", m["x"], s, e, a, t)]


# ----------------------------------------------------------------------------------------------------------------
class _MergeSqueezeLike(Rule):
    op = "Unsqueeze"
    opsets = (1, None)

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        return self._merge(m, m.node("inner"), m.node("outer"), m["x"], ctx)

    def _merge(self, m: Match, inner: Node, outer: Node, x: Value, ctx: RewriteContext) -> Fail | None:
        a1, why1 = axes_input_or_attr(inner, ctx, 1, 13)
        a2, why2 = axes_input_or_attr(outer, ctx, 1, 13)
        if why1 or why2:
            return Fail(why1 or why2)
        if a1 is None or a2 is None:
            return Fail(f"{describe(inner if a1 is None else outer)} has no axes")
        r = ctx.rank_of(x)
        if self.op == "Unsqueeze":
            if any(x < 0 for x in a1 + a2):
                if r is None:
                    return Fail("negative axes and the input's rank is unknown")
                a1 = [x + r + len(a1) if x < 0 else x for x in a1]
                a2 = [x + r + len(a1) + len(a2) if x < 0 else x for x in a2]
            taken = set(a2)
            free = []
            pos = 0
            need = max(a1) + 1 if a1 else 0
            while len(free) < need:
                if pos not in taken:
                    free.append(pos)
                pos += 1
            merged = sorted(set(a2) | {free[p] for p in a1})
            if len(merged) != len(a1) + len(a2):
                return Fail("the axes overlap")
        else:
            if any(x < 0 for x in a1 + a2):
                if r is None:
                    return Fail("negative axes and the input's rank is unknown")
                a1 = [x + r if x < 0 else x for x in a1]
                a2 = [x + r - len(a1) if x < 0 else x for x in a2]
            gone = set(a1)
            kept = []
            pos = 0
            need = max(a2) + 1 if a2 else 0
            while len(kept) < need:
                if pos not in gone:
                    kept.append(pos)
                pos += 1
            merged = sorted(gone | {kept[p] for p in a2})
            if len(merged) != len(a1) + len(a2):
                return Fail("the axes overlap")
        m.data["axes"] = merged
        m.data["x"] = x
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        axes = m.data["axes"]
        x = m.data["x"]
        model = b.graph.model
        opset = model.opset("") if model is not None else None
        if opset is not None and opset >= 13:
            return [b.op(self.op, x, b.const(np.array(axes, dtype=np.int64), prefix="axes"))]
        return [b.node(self.op, [x], copy_attrs(m.node("outer"), axes=axes)).output]


class MergeUnsqueeze(_MergeSqueezeLike):
    name = "merge-unsqueeze"
    summary = "Unsqueeze of an Unsqueeze -> one Unsqueeze"
    op = "Unsqueeze"
    pattern = Pat("Unsqueeze", Pat("Unsqueeze", Var("x"), allow_extra_inputs=True, name="inner"),
                  allow_extra_inputs=True, name="outer")


class MergeSqueeze(_MergeSqueezeLike):
    name = "merge-squeeze"
    summary = "Squeeze of a Squeeze -> one Squeeze"
    op = "Squeeze"
    pattern = Pat("Squeeze", Pat("Squeeze", Var("x"), allow_extra_inputs=True, name="inner"),
                  allow_extra_inputs=True, name="outer")


class _MergeShared(_MergeSqueezeLike):
    """The same merge when the inner op is read by several ops of the same kind: each reader merges it into its
    own op, and the inner op, left unread, goes with dead-code elimination (so the merges save a node in the end;
    when any reader is of another kind the inner op would stay, and nothing is tried)."""

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        mid, outer = m["mid"], m.node("outer")
        inner = mid.producer
        if inner is None or inner.op_type != self.op or inner.domain not in ("", "ai.onnx") or mid.index != 0:
            return Fail(f"input 0 of {describe(outer)} ({describe_value(mid)}) is not the output of {self.op}")
        if inner.graph is not outer.graph:
            return Fail(f"{describe(inner)} is in an enclosing graph")
        uses = mid.uses()
        if len(uses) < 2:
            return Fail(f"{describe(inner)} is read by this {self.op} only (merge-{self.op.lower()}'s case)")
        for u, i in uses:
            if u.op_type != self.op or u.domain not in ("", "ai.onnx") or i != 0:
                return Fail(f"{describe(inner)} is also read by {describe(u)}: it would stay")
        if mid.is_graph_output():
            return Fail(f"{describe_value(mid)} is a graph output")
        x = inner.input(0)
        assert x is not None
        return self._merge(m, inner, outer, x, ctx)


class MergeUnsqueezeShared(_MergeShared):
    name = "merge-unsqueeze-shared"
    summary = "Unsqueezes of one Unsqueeze -> each one Unsqueeze (the shared one goes)"
    op = "Unsqueeze"
    pattern = Pat("Unsqueeze", Var("mid"), allow_extra_inputs=True, name="outer")


class MergeSqueezeShared(_MergeShared):
    name = "merge-squeeze-shared"
    summary = "Squeezes of one Squeeze -> each one Squeeze (the shared one goes)"
    op = "Squeeze"
    pattern = Pat("Squeeze", Var("mid"), allow_extra_inputs=True, name="outer")


RULES = [FlattenConcat, MergeSlices, MergeUnsqueeze, MergeSqueeze, MergeUnsqueezeShared, MergeSqueezeShared]
