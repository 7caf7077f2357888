"""Layer normalization spelled out in primitive ops -> LayerNormalization (opset 17+).

TorchScript's export of ``nn.LayerNorm`` before opset 17 is::

    mean = ReduceMean(x, axes)                 # keepdims = 1, axes = the last k axes
    d    = Sub(x, mean)
    var  = ReduceMean(Pow(d, 2), axes)         # or d * d
    y    = Div(d, Sqrt(Add(var, eps))) * gamma (+ beta)

which is ``LayerNormalization(x, gamma, beta, axis = -k, epsilon = eps)`` by definition. Two rules cover it:
``fuse-layer-norm`` rewrites the part up to the Mul by gamma into ``LayerNormalization(x, gamma)``, and
``fuse-layer-norm-bias`` then folds a following ``Add(., beta)`` into its bias input (the driver requeues the Add,
so both happen in one run).

Conditions: both ReduceMeans reduce the same axes, which must be the last k axes (negative axes say so directly;
non-negative ones need x's rank), with keepdims = 1; eps is a one-element constant; gamma is a constant that
broadcasts over the normalized dims only. LayerNormalization wants gamma (and beta) of the normalized shape: when x's
trailing dims are known they must match (gamma is materialized at that shape if it broadcasts); when they are
unknown gamma must have rank k and no dim of size 1 — then the Mul's broadcasting can only have matched x's dims
(x's dim of size 1 against gamma's D > 1 would make the unfused graph broadcast a degenerate normalization over a
single element; onnxruntime rejects that LayerNormalization rather than computing something else). Input types float
and float16 (LayerNormalization's stash_type = 1 computes statistics in float32: for float16 the fused op is at
least as accurate; double would lose precision, so it is not fused).
"""

from __future__ import annotations

import numpy as np

from ...ir.builder import Builder
from ...ir.core import Node, Value
from ...ir.tensors import Tensor
from ..pattern import AnyOf, Const, Fail, Match, Pat, Var, describe
from ..rule import RewriteContext, Rule, axes_input_or_attr, to_dtype
from .common import scalar_rank_fail


def _reduce_axes(node: Node, ctx: RewriteContext, rank: int | None) -> list[int] | Fail:
    if int(node.attr("keepdims", 1)) != 1:
        return Fail(f"{describe(node)} has keepdims=0")
    axes, why = axes_input_or_attr(node, ctx, 1, 18)
    if why:
        return Fail(why)
    if axes is None or not axes:
        if ctx.opset >= 18 and int(node.attr("noop_with_empty_axes", 0)):
            return Fail(f"{describe(node)} reduces nothing (noop_with_empty_axes)")
        if rank is None:
            return Fail(f"{describe(node)} reduces every axis and the rank is unknown")
        return list(range(-rank, 0))
    if rank is not None:
        return sorted(a - rank if a >= 0 else a for a in axes)
    if any(a >= 0 for a in axes):
        return Fail(f"{describe(node)} reduces axes {axes} and the rank is unknown")
    return sorted(axes)


def normalized_scale(g: Tensor, shape: tuple | None, k: int) -> np.ndarray | None | Fail:
    """gamma (a constant multiplied into a normalization over the last `k` dims of an x of `shape`) at the
    normalized shape: an array when it must be materialized there, None when it can be used as it is, or why
    it cannot be the scale input of a fused normalization."""
    gshape = tuple(g.shape)
    norm = tuple(shape[-k:]) if shape is not None and len(shape) >= k else None
    if norm is not None and all(isinstance(d, int) for d in norm):
        # gamma must broadcast to the normalized dims without touching the others
        lead = gshape[:-k] if len(gshape) > k else ()
        if any(d != 1 for d in lead) or len(gshape) > len(shape):  # type: ignore[arg-type]
            return Fail(f"gamma has shape {list(gshape)}: it broadcasts beyond the normalized axes")
        tail = gshape[-k:] if len(gshape) >= k else (1,) * (k - len(gshape)) + gshape
        if any(t not in (1, n) for t, n in zip(tail, norm)):
            return Fail(f"gamma has shape {list(gshape)}, the normalized dims are {list(norm)}")
        if gshape == norm:
            return None
        return to_dtype(np.broadcast_to(np.asarray(g.numpy()).reshape(tail), norm), g)
    if len(gshape) != k or any(d == 1 for d in gshape):
        return Fail(f"x's normalized dims are unknown and gamma's shape {list(gshape)} does not pin them")
    return None


def record_normalization(m: Match, g: Tensor, shape: tuple | None, k: int) -> Fail | None:
    """The end of a normalization rule's check: gamma broadcast to the last `k` dims (see normalized_scale), the
    axis and epsilon, kept in `m.data` for :func:`build_normalization`."""
    gamma = normalized_scale(g, shape, k)
    if isinstance(gamma, Fail):
        return gamma
    m.data["gamma"] = gamma
    m.data["axis"] = -k
    m.data["epsilon"] = float(np.asarray(m.array("eps"), dtype=np.float64).reshape(-1)[0])
    return None


def build_normalization(m: Match, b: Builder, op: str) -> list[Value]:
    """`op`(x, gamma) with what :func:`record_normalization` kept (gamma stored at full shape where it was not)."""
    gamma = m["gamma"]
    if m.data["gamma"] is not None:
        gamma = b.const(m.data["gamma"], prefix=(gamma.name or "gamma") + "_full")
    return [b.node(op, [m["x"], gamma], {"axis": m.data["axis"], "epsilon": m.data["epsilon"]}).output]


class FuseLayerNorm(Rule):
    name = "fuse-layer-norm"
    summary = "ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul -> LayerNormalization (opset 17+)"
    opsets = (17, None)

    @staticmethod
    def _pattern() -> Pat:
        x = Var("x")
        mean = Pat("ReduceMean", x, allow_extra_inputs=True, name="mean")
        d = Pat("Sub", x, mean, name="d")
        sq = AnyOf(Pat("Pow", d, Const("two", 2.0)), Pat("Mul", d, d))
        var = Pat("ReduceMean", sq, allow_extra_inputs=True, name="var")
        std = Pat("Sqrt", Pat("Add", var, Const("eps", scalar=True)))
        return Pat("Mul", Pat("Div", d, std, name="div"), Const("gamma"), name="mul")

    pattern = _pattern()

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        x = m["x"]
        dt = ctx.dtype_of(x) or m.tensor("gamma").dtype
        if dt not in (1, 10):
            return Fail(f"x has element type {dt}; the rule fuses float and float16")
        shape = ctx.shape_of(x)
        rank = len(shape) if shape is not None else ctx.rank_of(x)
        a1 = _reduce_axes(m.node("mean"), ctx, rank)
        if isinstance(a1, Fail):
            return a1
        a2 = _reduce_axes(m.node("var"), ctx, rank)
        if isinstance(a2, Fail):
            return a2
        if a1 != a2:
            return Fail(f"the two ReduceMeans reduce different axes ({a1} and {a2})")
        k = len(a1)
        if a1 != list(range(-k, 0)):
            return Fail(f"the normalized axes {a1} are not the last {k} axes")
        for c in ("eps", "two"):
            if c in m.tensors:
                f = scalar_rank_fail(m.tensor(c), x, ctx, f"the constant {m[c].name!r}")
                if f is not None:
                    return f
        g = m.tensor("gamma")
        if g.dtype != dt:
            return Fail("gamma's element type differs from x's")
        return record_normalization(m, g, shape, k)

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        return build_normalization(m, b, "LayerNormalization")


class FuseLayerNormBias(Rule):
    name = "fuse-layer-norm-bias"
    summary = "LayerNormalization without bias + Add of a constant -> LayerNormalization with bias"
    opsets = (17, None)
    pattern = Pat("Add", Pat("LayerNormalization", Var("x"), Const("gamma"), name="ln"), Const("beta"),
                  name="add")

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        ln = m.node("ln")
        axis = int(ln.attr("axis", -1))
        g, beta = m.tensor("gamma"), m.tensor("beta")
        gshape, bshape = tuple(g.shape), tuple(beta.shape)
        if beta.dtype != g.dtype:
            return Fail("beta's element type differs from gamma's")
        if axis < 0:
            k = -axis
        else:
            r = ctx.rank_of(m["x"])
            if r is None:
                return Fail(f"{describe(ln)} has axis {axis} and the rank of its input is unknown")
            k = r - axis
        if len(gshape) != k:
            return Fail(f"gamma has shape {list(gshape)}, not the {k} normalized dims")
        if len(bshape) > k:
            return Fail(f"beta has shape {list(bshape)}: it broadcasts beyond the normalized axes")
        tail = (1,) * (k - len(bshape)) + bshape
        if any(t not in (1, n) for t, n in zip(tail, gshape)):
            return Fail(f"beta has shape {list(bshape)}, gamma {list(gshape)}")
        m.data["beta"] = None if tail == gshape and bshape == gshape else \
            to_dtype(np.broadcast_to(np.asarray(beta.numpy()).reshape(tail), gshape), beta)
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        ln = m.node("ln")
        beta = m["beta"] if m.data["beta"] is None else b.const(m.data["beta"], prefix="beta_full")
        attrs = {name: a.value for name, a in ln.attrs.items()}
        return [b.node("LayerNormalization", [m["x"], m["gamma"], beta], attrs).output]


RULES = [FuseLayerNorm, FuseLayerNormBias]
