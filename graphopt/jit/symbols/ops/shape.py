"""Shape rules of the shape and data-movement ops exporters chain together: Shape, Size, Gather, Slice, Concat,
(Un)squeeze, Reshape, Expand, ConstantOfShape, Range, Tile, Transpose, Flatten, Split, GatherElements, NonZero.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ....ir.core import Node
from ..expr import ONE, ZERO, SymExpr
from . import shape_rule

from ._util import _BIG, _FLOAT, _INT64, _VALUE_DT, _axes_of, _norm_axis

if TYPE_CHECKING:
    from ..table import Out, SymbolTable


@shape_rule("Shape")
def _r_shape(t: SymbolTable, n: Node) -> list[Out]:
    s = t._s(n.input(0))
    if s is None:
        return [(None, None, _INT64)]
    start = int(n.attr("start", 0))
    end = n.attr("end", None)
    sel = s[start:] if end is None else s[start:int(end)]
    return [([SymExpr.const(len(sel))], tuple(sel), _INT64)]


@shape_rule("Size")
def _r_size(t: SymbolTable, n: Node) -> list[Out]:
    p = t._prod(t._s(n.input(0)))
    return [([], None if p is None else (p,), _INT64)]


@shape_rule("Gather")
def _r_gather(t: SymbolTable, n: Node) -> list[Out]:
    x, idx = n.input(0), n.input(1)
    xs, is_ = t._s(x), t._s(idx)
    dt = t._dt(x)
    if xs is None or is_ is None:
        return [(None, None, dt)]
    r = len(xs)
    axis = _norm_axis(n.attr("axis", 0), r)
    dims = list(xs[:axis]) + list(is_) + list(xs[axis + 1:])
    val = None
    xv = t._v(x)
    if xv is not None and r == 1 and len(is_) <= 1:
        iv = t._ints(idx)
        if iv is not None:
            L = len(xv)
            picked = []
            for k in iv:
                k = k + L if k < 0 else k
                if not 0 <= k < L:
                    picked = None
                    break
                picked.append(xv[k])
            if picked is not None:
                val = tuple(picked)
    return [(dims, val, dt)]


def _slice_len(t: SymbolTable, d: SymExpr, st: SymExpr, en: SymExpr, sp: int) -> SymExpr | None:
    """The length of x[st:en:sp] along a dim of size d (ONNX clamping), when exact for every binding."""
    if sp == 0:
        return None
    if d.c is not None and st.c is not None and en.c is not None:
        return SymExpr.const(len(range(*slice(st.c, en.c, sp).indices(d.c))))
    if sp < 0:
        # a full reverse: start at the end, end before the beginning
        if (st.c is not None and (st.c >= _BIG or st.c == -1)) and en.c is not None and en.c <= -_BIG:
            return d if sp == -1 else (d + (-sp - 1))._floordiv_const(-sp)
        return None
    s = st.c
    if s is None:
        return None
    L: SymExpr | None
    if s < 0:
        # the last -s elements, to the end
        L = SymExpr.const(-s) if en.c is not None and en.c >= _BIG and (d + s).nonneg() else None
    elif en.c is not None:
        e = en.c
        if e >= _BIG:
            L = d if s == 0 else (d - s if (d - s).nonneg() else None)
        elif e < 0:
            L = d + e - s if (d + e - s).nonneg() else None
        else:
            L = (SymExpr.const(max(e - s, 0)) if (d - e).nonneg() else None)
    else:
        e_ = t.canon(en)
        if e_ == d:
            L = d if s == 0 else (d - s if (d - s).nonneg() else None)
        elif (d - e_).nonneg() and (e_ - s).nonneg():
            L = e_ - s
        else:
            L = None
    if L is None or sp == 1:
        return L
    return (L + (sp - 1))._floordiv_const(sp)


@shape_rule("Slice")
def _r_slice(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    if xs is None:
        return [(None, None, dt)]
    r = len(xs)
    if n.has_attr("starts"):  # opset < 10
        starts = tuple(SymExpr.const(int(a)) for a in n.attr("starts"))
        ends = tuple(SymExpr.const(int(a)) for a in n.attr("ends"))
        axes = [int(a) for a in n.attr("axes", None) or range(len(starts))]
        steps = [1] * len(starts)
    else:
        starts, ends = t._v(n.input(1)), t._v(n.input(2))  # type: ignore[assignment]
        a_in, s_in = n.input(3), n.input(4)
        axes = t._ints(a_in) if a_in is not None else None  # type: ignore[assignment]
        steps = t._ints(s_in) if s_in is not None else None  # type: ignore[assignment]
        if starts is None or ends is None or (a_in is not None and axes is None) or (
                s_in is not None and steps is None):
            return [([None] * r, None, dt)]
        if axes is None:
            axes = list(range(len(starts)))
        if steps is None:
            steps = [1] * len(starts)
    dims: list[SymExpr | None] = list(xs)
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        ax = _norm_axis(ax, r)
        dims[ax] = _slice_len(t, xs[ax], st, en, sp)
    val = None
    xv = t._v(x)
    if xv is not None and r == 1 and len(starts) == 1 and starts[0].c is not None and ends[0].c is not None:
        val = tuple(xv[slice(starts[0].c, ends[0].c, steps[0])])
    return [(dims, val, dt)]


@shape_rule("Concat")
def _r_concat(t: SymbolTable, n: Node) -> list[Out]:
    ins = [v for v in n._inputs if v is not None]
    shapes = [t._s(v) for v in ins]
    dt = t._dt(ins[0]) if ins else None
    known = [s for s in shapes if s is not None]
    if not known:
        return [(None, None, dt)]
    r = len(known[0])
    if any(len(s) != r for s in known):
        return [(None, None, dt)]
    axis = _norm_axis(n.attr("axis"), r)
    dims: list[SymExpr | None] = []
    for i in range(r):
        if i == axis:
            if len(known) == len(shapes):
                tot = ZERO
                for s in known:
                    tot = tot + s[i]
                dims.append(tot)
            else:
                dims.append(None)
        else:
            first = known[0][i]
            for s in known[1:]:
                t._unify(first, s[i], "Concat")
            dims.append(t.canon(first))
    val = None
    if r == 1:
        vals = [t._v(v) for v in ins]
        if all(v is not None for v in vals):
            val = tuple(e for v in vals for e in v)  # type: ignore[union-attr]
    return [(dims, val, dt)]




@shape_rule("Unsqueeze")
def _r_unsqueeze(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    axes = _axes_of(t, n)
    if xs is None or axes is None:
        return [(None, None, dt)]
    ro = len(xs) + len(axes)
    dims: list[SymExpr | None] = list(xs)
    for a in sorted(_norm_axis(a, ro) for a in axes):
        dims.insert(a, ONE)
    val = t._v(x) if len(xs) == 0 and ro == 1 else None
    return [(dims, val, dt)]


@shape_rule("Squeeze")
def _r_squeeze(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    axes = _axes_of(t, n)
    if xs is None or axes is None:
        return [(None, None, dt)]
    r = len(xs)
    if not axes:
        # squeeze every dim that is 1: only known when no dim might or might not be 1
        if any(d.c is None and d.can_be(1) for d in xs):
            return [(None, None, dt)]
        dims = [d for d in xs if d.c != 1]
    else:
        drop = {_norm_axis(a, r) for a in axes}
        dims = [d for i, d in enumerate(xs) if i not in drop]
    val = t._v(x) if r <= 1 and len(dims) == 0 else None
    return [(dims, val, dt)]


@shape_rule("Reshape")
def _r_reshape(t: SymbolTable, n: Node) -> list[Out]:
    x, sh = n.input(0), n.input(1)
    xs = t._s(x)
    dt = t._dt(x)
    tgt = t._v(sh)
    if tgt is None:
        ss = t._s(sh)
        if ss is not None and len(ss) == 1 and ss[0].c is not None:
            return [([None] * ss[0].c, None, dt)]
        return [(None, None, dt)]
    allowzero = int(n.attr("allowzero", 0))
    dims: list[SymExpr | None] = []
    neg = -1
    for i, e in enumerate(tgt):
        c = e.c
        if c == 0 and not allowzero:
            dims.append(xs[i] if xs is not None and i < len(xs) else None)
        elif c == -1:
            if neg >= 0:
                return [([None] * len(tgt), None, dt)]
            neg = i
            dims.append(None)
        elif c is not None and c < 0:
            return [([None] * len(tgt), None, dt)]
        else:
            dims.append(e)
    if neg >= 0:
        total = t._prod(xs)
        rest = t._prod([d for i, d in enumerate(dims) if i != neg])
        if total is not None and rest is not None:
            # exact in every run that does not fail (the runtime checks divisibility, and rest != 0)
            dims[neg] = t.canon(total).floordiv(t.canon(rest))
    elif xs is not None and [d for d in xs if d.c is None] != [d for d in dims if d is None or d.c is None]:
        # the symbolic dims differ between input and output: their products must match
        total, out = t._prod(xs), t._prod(dims)
        if total is not None and out is not None:
            t._unify_products(total, out, "Reshape")
    val = None
    xv = t._v(x)
    if xv is not None and len(dims) <= 1:
        val = xv
    return [(dims, val, dt)]


@shape_rule("Expand")
def _r_expand(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    tv = t._v(n.input(1))
    if tv is None:
        ss = t._s(n.input(1))
        if xs is not None and ss is not None and len(ss) == 1 and ss[0].c is not None:
            return [([None] * max(len(xs), ss[0].c), None, dt)]
        return [(None, None, dt)]
    dims = t._bcast([xs, tv], "Expand")
    val = None
    xv = t._v(x)
    if xv is not None and dims is not None:
        if not dims:
            val = xv
        elif len(dims) == 1 and dims[0] is not None and dims[0].c is not None:
            L = dims[0].c
            val = xv if len(xv) == L else (xv * L if len(xv) == 1 and L <= t.max_value_len else None)
    return [(dims, val, dt)]


@shape_rule("ConstantOfShape")
def _r_constant_of_shape(t: SymbolTable, n: Node) -> list[Out]:
    a = n.attr("value", None)
    dt = a.dtype if a is not None else _FLOAT
    tv = t._v(n.input(0))
    if tv is None:
        ss = t._s(n.input(0))
        if ss is not None and len(ss) == 1 and ss[0].c is not None:
            return [([None] * ss[0].c, None, dt)]
        return [(None, None, dt)]
    dims = list(tv)
    val = None
    if dt in _VALUE_DT and len(dims) <= 1:
        fill = SymExpr.const(int(np.asarray(a.numpy()).reshape(-1)[0])) if a is not None else ZERO
        if not dims:
            val = (fill,)
        elif dims[0].c is not None and dims[0].c <= t.max_value_len:
            val = (fill,) * dims[0].c
    return [(dims, val, dt)]


@shape_rule("Range")
def _r_range(t: SymbolTable, n: Node) -> list[Out]:
    s, lim, d = (t._v(n.input(i)) for i in range(3))
    dt = t._dt(n.input(0))
    if s is None or lim is None or d is None or len(s) != 1 or len(lim) != 1 or len(d) != 1:
        return [([None], None, dt)]
    a, b, k = t.canon(s[0]), t.canon(lim[0]), t.canon(d[0])
    if a.c is not None and b.c is not None and k.c is not None:
        if k.c == 0:
            return [([None], None, dt)]
        length = max(0, -(-(b.c - a.c) // k.c))
        val = tuple(SymExpr.const(a.c + i * k.c) for i in range(length)) if length <= t.max_value_len else None
        return [([SymExpr.const(length)], val, dt)]
    if k.c is None or k.c == 0:
        return [([None], None, dt)]
    diff = b - a if k.c > 0 else a - b
    step = abs(k.c)
    if not diff.nonneg():
        return [([None], None, dt)]
    return [([(diff + (step - 1))._floordiv_const(step)], None, dt)]


@shape_rule("Tile")
def _r_tile(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    reps = t._v(n.input(1))
    dt = t._dt(x)
    if xs is None:
        return [(None, None, dt)]
    if reps is None or len(reps) != len(xs):
        return [([None] * len(xs), None, dt)]
    return [([d * r for d, r in zip(xs, reps)], None, dt)]


@shape_rule("Transpose")
def _r_transpose(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    if xs is None:
        return [(None, None, dt)]
    perm = n.attr("perm", None)
    perm = list(range(len(xs)))[::-1] if perm is None else [int(p) for p in perm]
    return [([xs[p] for p in perm], None, dt)]


@shape_rule("Flatten")
def _r_flatten(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    if xs is None:
        return [([None, None], None, dt)]
    axis = int(n.attr("axis", 1))
    if axis < 0:
        axis += len(xs)
    return [([t._prod(xs[:axis]), t._prod(xs[axis:])], None, dt)]


@shape_rule("Split")
def _r_split(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    k = len(n._outputs)
    if xs is None:
        return [(None, None, dt)] * k
    ax = _norm_axis(n.attr("axis", 0), len(xs))
    split = n.attr("split", None)
    sizes: list[SymExpr | None]
    if split is not None:
        sizes = [SymExpr.const(int(s)) for s in split]
    elif n.input(1) is not None:
        sv = t._v(n.input(1))
        sizes = list(sv) if sv is not None else [None] * k
    else:
        d = xs[ax]
        num = int(n.attr("num_outputs", k))
        if d.c is not None:
            chunk = -(-d.c // num)
            sizes = [SymExpr.const(min(chunk, max(d.c - i * chunk, 0))) for i in range(num)]
        elif t._opset < 18:
            sizes = [d._floordiv_const(num)] * num  # the spec requires an even split
        else:
            chunk_e = (d + (num - 1))._floordiv_const(num)
            sizes = [chunk_e] * (num - 1) + [d - (num - 1) * chunk_e]
    outs: list[Out] = []
    for i in range(k):
        dims: list[SymExpr | None] = list(xs)
        dims[ax] = sizes[i] if i < len(sizes) else None
        outs.append((dims, None, dt))
    return outs


@shape_rule("GatherElements")
def _r_gather_elements(t: SymbolTable, n: Node) -> list[Out]:
    s = t._s(n.input(1))
    return [(None if s is None else list(s), None, t._dt(n.input(0)))]


@shape_rule("NonZero")
def _r_nonzero(t: SymbolTable, n: Node) -> list[Out]:
    xs = t._s(n.input(0))
    return [([SymExpr.const(len(xs)) if xs is not None else None, None], None, _INT64)]
