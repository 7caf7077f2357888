"""Rotary position embeddings spelled out in primitive ops -> RotaryEmbedding (opset 23+).

Llama, Mistral, Qwen, Gemma, Phi-3 and every model that copies Hugging Face's ``apply_rotary_pos_emb`` rotate the
query and the key of each attention head by position-dependent angles, written as::

    rotate_half(x) = Concat(Neg(x[..., d/2:]), x[..., :d/2], axis=-1)
    y = x * cos + rotate_half(x) * sin

with x [batch, heads, seq, d] and cos/sin [batch or 1, 1, seq, d], built as ``cos(Concat(f, f, axis=-1))`` (the
same angles f [batch or 1, seq, d/2] for both halves; likewise sin), then Unsqueeze'd at axis 1. Writing
x = [x1, x2] and, because both halves of cos are cos(f) (of sin, sin(f)), the two halves of y are
``x1 * cos(f) - x2 * sin(f)`` and ``x2 * cos(f) + x1 * sin(f)``: exactly ``RotaryEmbedding(x, cos_cache,
sin_cache)`` of opset 23 (interleaved = 0, the whole head rotated, no position_ids), whose caches are
[batch, seq, d/2] — the halves ``cos(f)`` and ``sin(f)`` themselves.

The rule proves that both halves of cos (and of sin) are equal, from how they are computed: a constant whose halves
are equal element for element, or an Unsqueeze at axis 1 of a chain of elementwise ops (Cos, Sin, Cast, Neg,
Identity, and Mul/Div/Add/Sub by a constant that is the same along the last axis) over ``Concat(f, f)`` on the
last axis. The cache is that chain applied to f alone (the rewrite builds those few nodes; CSE merges the copies
that the query and the key of every layer would otherwise make). Other conditions:

* x is float or float16 of rank 4 with a known even last dim d; the two Slices take [0, d/2) and [d/2, end) of the
  last axis with step 1; the Concat is on the last axis;
* cos and sin broadcast to x along the heads only: their batch and seq dims are 1 or x's own (known ints, or the
  same symbol); onnxruntime wants caches of exactly [batch, seq, d/2], so a cache with a dim of 1 where x's is not
  known to be 1 is expanded to x's (``Expand`` to ``[batch, seq, 1]``, a constant when both are known, else taken
  from ``Shape(x)``).

``fuse-rotary-embedding-partial`` then takes in a partial rotation (GPT-NeoX, Phi: the first r of the head's d dims
rotate, the rest pass through): ``Concat(RotaryEmbedding(x[..., :r]), x[..., r:])`` is ``RotaryEmbedding(x,
rotary_embedding_dim = r)`` with the same caches.

Models exported below opset 23 keep the decomposed form: the rule fires there only after the user raises the opset
(``--set fuse.target-opset=23``), and validation checks the result as always.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ir.builder import Builder
from ...ir.constants import constant_value
from ...ir.core import Node, Value
from ..pattern import Const, Fail, Match, Opt, Pat, Var, describe
from ..rule import RewriteContext, Rule, axes_input_or_attr
from .common import const_ints

# elementwise ops that act on each element alone (so they keep "both halves equal")
_UNARY = frozenset({"Cos", "Sin", "Cast", "Neg", "Identity"})
_BINARY = frozenset({"Mul", "Div", "Add", "Sub"})
_MAX_CHAIN = 8


def _slice(x: Var, name: str) -> Pat:
    return Pat("Slice", x, Const(name + "_starts"), Const(name + "_ends"), Opt(Const(name + "_axes")),
               Opt(Const(name + "_steps")), name=name)


def _pattern() -> Pat:
    x = Var("x")
    rot = Pat("Concat", Pat("Neg", _slice(x, "hi"), name="neg"), _slice(x, "lo"), name="cat")
    return Pat("Add", Pat("Mul", x, Var("cos"), name="mcos"), Pat("Mul", rot, Var("sin"), name="msin"),
               name="add")


def _last_axis(node: Node, m: Match, name: str, rank: int) -> Fail | None:
    axes = const_ints(m.tensors.get(name + "_axes"))
    if axes is None or len(axes) != 1 or axes[0] not in (-1, rank - 1):
        return Fail(f"{describe(node)} does not slice the last axis alone")
    steps = const_ints(m.tensors.get(name + "_steps"))
    if steps is not None and steps != [1]:
        return Fail(f"{describe(node)} has steps {steps}")
    return None


def _slice_range(m: Match, name: str, d: int) -> tuple[int, int] | Fail:
    """The [start, end) that the matched Slice `name` takes of the last axis (of size d), as Slice clamps it."""
    f = _last_axis(m.node(name), m, name, 4)
    if f is not None:
        return f
    s, e = const_ints(m.tensors[name + "_starts"]), const_ints(m.tensors[name + "_ends"])
    if s is None or e is None or len(s) != 1 or len(e) != 1:
        return Fail(f"{describe(m.node(name))} does not take one range")

    def clamp(i: int) -> int:
        return min(max(i + d if i < 0 else i, 0), d)

    return clamp(s[0]), clamp(e[0])


def _same_dim(a: Any, b: Any) -> bool:
    """Two dims (int, symbol text or None) known to be equal."""
    return a is not None and a == b


def _dims_fit(bdim: Any, sdim: Any, xs: tuple) -> Fail | None:
    """A cache's batch and seq dims must be 1 or x's own: then the original Mul broadcast only over the heads."""
    for got, want, what in ((bdim, xs[0], "batch"), (sdim, xs[2], "seq")):
        if got == 1 or _same_dim(got, want):
            continue
        return Fail(f"the cos/sin {what} dim {got!r} is neither 1 nor x's {want!r}")
    return None


def _dims_source(xs: tuple, ctx: RewriteContext) -> tuple[Value, list[int]] | None:
    """A graph input that has x's batch and seq dims (the same symbols) and where: a cache expanded to
    ``Shape(input)[i, j]`` is the same at every site that shares those symbols, so CSE keeps one Expand per cache
    for the whole model instead of one per attention. None when no input has both."""
    b, s = xs[0], xs[2]
    if not (isinstance(b, str) or isinstance(s, str)):
        return None
    for inp in ctx.model.graph.inputs:
        sh = ctx.shape_of(inp)
        if not sh:
            continue
        ib = next((i for i, d in enumerate(sh) if _same_dim(d, b)), None)
        js = next((i for i, d in enumerate(sh) if _same_dim(d, s) and i != ib), None)
        if ib is not None and js is not None:
            return inp, [ib, js]
    return None


class _Half:
    """How to compute the first half (along the last axis) of a cos/sin operand whose two halves are equal."""

    __slots__ = ("array", "dims", "source", "steps")

    def __init__(self) -> None:
        self.array: np.ndarray | None = None      # a constant cache [b, s, d/2]
        self.source: Value | None = None          # f, the value concatenated with itself
        self.steps: list[Node] = []               # the elementwise ops from f up to the Unsqueeze, in order
        self.dims: tuple[Any, Any] = (None, None)  # the cache's (batch, seq)


def _half_of(v: Value, d: int, ctx: RewriteContext) -> _Half | Fail:
    t = constant_value(v)
    if t is not None:
        a = np.asarray(t.numpy())
        if a.ndim > 4:
            return Fail(f"the constant {v.name!r} has rank {a.ndim}")
        a = a.reshape((1,) * (4 - a.ndim) + a.shape)
        if a.shape[1] != 1 or a.shape[3] != d:
            return Fail(f"the constant {v.name!r} of shape {list(a.shape)} does not broadcast over the heads only")
        h = d // 2
        if not np.array_equal(a[..., :h], a[..., h:]):
            return Fail(f"the two halves of the constant {v.name!r} differ")
        out = _Half()
        out.array = np.ascontiguousarray(a[:, 0, :, :h])
        out.dims = (a.shape[0], a.shape[2])
        return out
    p = v.producer
    if p is None or p.op_type != "Unsqueeze" or p.domain not in ("", "ai.onnx") or v.index != 0:
        return Fail(f"{v.name!r} is neither a constant nor an Unsqueeze")
    axes, why = axes_input_or_attr(p, ctx, 1, 13)
    if why or axes not in ([1], [-3]):
        return Fail(f"{describe(p)} does not insert axis 1 alone")
    e = p.input(0)
    es = ctx.shape_of(e)
    if es is None or len(es) != 3 or es[2] != d:
        return Fail(f"{describe(p)}'s input has shape {es}, not [batch, seq, {d}]")
    out = _Half()
    out.dims = (es[0], es[1])
    cur = e
    for _ in range(_MAX_CHAIN):
        q = cur.producer
        if q is None or q.domain not in ("", "ai.onnx") or cur.index != 0 or q.graph is not p.graph:
            return Fail(f"{cur.name!r} is not computed from Concat(f, f) by elementwise ops")
        if q.op_type == "Concat":
            ax = int(q.attr("axis", 0))
            if q.num_inputs != 2 or q.input(0) is not q.input(1) or ax not in (-1, 2):
                return Fail(f"{describe(q)} is not Concat(f, f) on the last axis")
            out.source = q.input(0)
            out.steps.reverse()
            return out
        if q.op_type in _UNARY and q.num_inputs == 1:
            out.steps.append(q)
            cur = q.input(0)
            continue
        if q.op_type in _BINARY and q.num_inputs == 2:
            k = next((i for i in (0, 1) if constant_value(q.input(i)) is not None), None)
            if k is None:
                return Fail(f"{describe(q)} has no constant operand")
            c = constant_value(q.input(k))
            assert c is not None
            cs = tuple(c.shape)
            if len(cs) > 3 or (cs and cs[-1] != 1):
                return Fail(f"{describe(q)}'s constant of shape {list(cs)} varies along the last axis")
            out.steps.append(q)
            cur = q.input(1 - k)
            continue
        return Fail(f"{describe(q)} is not an elementwise op the rule follows")
    return Fail(f"{v.name!r}: more than {_MAX_CHAIN} ops from Concat(f, f)")


def _build_half(h: _Half, b: Builder) -> Value:
    if h.array is not None:
        return b.const(h.array, prefix="rotary_cache")
    cur = h.source
    assert cur is not None
    for q in h.steps:
        attrs = {name: a.value for name, a in q.attrs.items()}
        if q.op_type in _UNARY:
            cur = b.node(q.op_type, [cur], attrs).output
        else:
            ins = [cur if constant_value(x) is None else x for x in q.inputs]
            cur = b.node(q.op_type, ins, attrs).output
    return cur


class FuseRotaryEmbedding(Rule):
    name = "fuse-rotary-embedding"
    summary = "x * cos + Concat(-x2, x1) * sin -> RotaryEmbedding (opset 23+)"
    opsets = (23, None)
    pattern = _pattern()

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        x = m["x"]
        dt = ctx.dtype_of(x)
        if dt not in (1, 10):
            return Fail(f"x has element type {dt}; the rule fuses float and float16")
        xs = ctx.shape_of(x)
        if xs is None or len(xs) != 4:
            return Fail(f"x has shape {xs}; the rule fuses [batch, heads, seq, head_size]")
        d = xs[3]
        if not isinstance(d, int) or d <= 0 or d % 2:
            return Fail(f"x's last dim {d!r} is not a known even size")
        h = d // 2
        for name, want, what in (("lo", (0, h), "first"), ("hi", (h, d), "second")):
            got = _slice_range(m, name, d)
            if isinstance(got, Fail):
                return got
            if got != want:
                return Fail(f"{describe(m.node(name))} takes [{got[0]}, {got[1]}), not the {what} half "
                            f"[{want[0]}, {want[1]})")
        if int(m.node("cat").attr("axis", 0)) not in (-1, 3):
            return Fail(f"{describe(m.node('cat'))} is not on the last axis")
        halves = []
        for name in ("cos", "sin"):
            got = _half_of(m[name], d, ctx)
            if isinstance(got, Fail):
                return got
            if ctx.dtype_of(m[name]) not in (None, dt):
                return Fail(f"{name} has another element type than x")
            f = _dims_fit(got.dims[0], got.dims[1], xs)
            if f is not None:
                return f
            halves.append(got)
        m.data["halves"] = halves
        m.data["xs"] = xs
        m.data["dims_from"] = _dims_source(xs, ctx)
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        xs = m.data["xs"]
        x = m["x"]
        caches = [_build_half(h, b) for h in m.data["halves"]]
        target: Value | None = None
        for i, h in enumerate(m.data["halves"]):
            if _same_dim(h.dims[0], xs[0]) and _same_dim(h.dims[1], xs[2]):
                continue
            if target is None:
                if isinstance(xs[0], int) and isinstance(xs[2], int):
                    target = b.const(np.array([xs[0], xs[2], 1], dtype=np.int64), prefix="rotary_cache_shape")
                else:
                    src, idx = m.data["dims_from"] or (x, [0, 2])
                    bs = b.op("Gather", b.op("Shape", src), b.const(np.array(idx, dtype=np.int64),
                                                                     prefix="rotary_dims"), axis=0)
                    target = b.op("Concat", bs, b.const(np.array([1], dtype=np.int64), prefix="one"), axis=0)
            caches[i] = b.op("Expand", caches[i], target)
        return [b.node("RotaryEmbedding", [x, caches[0], caches[1]]).output]


class FuseRotaryPartial(Rule):
    """Partial rotation (GPT-NeoX, Phi, ChatGLM: only the first r of d dims of a head rotate): the rotated part,
    once fused, is ``RotaryEmbedding(x[..., :r], cos, sin)``, concatenated with the untouched ``x[..., r:]`` — by
    the op's definition ``RotaryEmbedding(x, cos, sin, rotary_embedding_dim = r)``, with the same caches
    ([batch, seq, r/2])."""

    name = "fuse-rotary-embedding-partial"
    summary = "Concat(RotaryEmbedding(x[..., :r]), x[..., r:]) -> RotaryEmbedding(x, rotary_embedding_dim=r)"
    opsets = (23, None)
    pattern = Pat("Concat", Pat("RotaryEmbedding", _slice(Var("x"), "rot"), Var("cos"), Var("sin"), name="re"),
                  _slice(Var("x"), "keep"), name="cat")

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        xs = ctx.shape_of(m["x"])
        if xs is None or len(xs) != 4 or not isinstance(xs[3], int):
            return Fail(f"x has shape {xs}; the rule fuses [batch, heads, seq, head_size] with a known head_size")
        d = xs[3]
        if int(m.node("cat").attr("axis", 0)) not in (-1, 3):
            return Fail(f"{describe(m.node('cat'))} is not on the last axis")
        rot = _slice_range(m, "rot", d)
        if isinstance(rot, Fail):
            return rot
        keep = _slice_range(m, "keep", d)
        if isinstance(keep, Fail):
            return keep
        if rot[0] != 0:
            return Fail(f"{describe(m.node('rot'))} does not start at 0")
        r = rot[1]
        if not 0 < r < d or r % 2:
            return Fail(f"{describe(m.node('rot'))} ends at {r}: not an even size inside the head ({d})")
        if keep != (r, d):
            return Fail(f"{describe(m.node('keep'))} takes [{keep[0]}, {keep[1]}), not the rest [{r}, {d})")
        re_node = m.node("re")
        if int(re_node.attr("interleaved", 0)) or int(re_node.attr("rotary_embedding_dim", 0)) not in (0, r):
            return Fail(f"{describe(re_node)} is interleaved or rotates part of its input already")
        m.data["r"] = r
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        attrs = {name: a.value for name, a in m.node("re").attrs.items()}
        attrs["rotary_embedding_dim"] = m.data["r"]
        return [b.node("RotaryEmbedding", [m["x"], m["cos"], m["sin"]], attrs).output]


RULES = [FuseRotaryEmbedding, FuseRotaryPartial]
