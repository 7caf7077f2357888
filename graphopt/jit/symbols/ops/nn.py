"""Shape rules of the compute ops: MatMul, Gemm, reductions, ArgMax/ArgMin, convolution and pooling, Pad, TopK,
LayerNormalization.
"""

from __future__ import annotations

from typing import TYPE_CHECKING


from ....ir.core import Node
from ..expr import ONE, SymExpr
from . import shape_rule

from ._util import _INT64, _attr_str, _axes_of, _norm_axis

if TYPE_CHECKING:
    from ..table import Out, SymbolTable


@shape_rule("MatMul")
def _r_matmul(t: SymbolTable, n: Node) -> list[Out]:
    a, b = n.input(0), n.input(1)
    sa, sb = t._s(a), t._s(b)
    dt = t._dt(a)
    if sa is None or sb is None or not sa or not sb:
        return [(None, None, dt)]
    la, lb = list(sa), list(sb)
    if len(la) == 1 and len(lb) == 1:
        t._unify(la[0], lb[0], "MatMul inner dims")
        return [([], None, dt)]
    drop_a = len(la) == 1
    drop_b = len(lb) == 1
    if drop_a:
        la = [ONE] + la
    if drop_b:
        lb = lb + [ONE]
    t._unify(la[-1], lb[-2], "MatMul inner dims")
    batch = t._bcast([la[:-2], lb[:-2]], "MatMul batch dims")
    if batch is None:
        return [(None, None, dt)]
    out = batch + ([] if drop_a else [la[-2]]) + ([] if drop_b else [lb[-1]])
    return [(out, None, dt)]


@shape_rule("Gemm")
def _r_gemm(t: SymbolTable, n: Node) -> list[Out]:
    sa, sb = t._s(n.input(0)), t._s(n.input(1))
    dt = t._dt(n.input(0))
    if sa is None or sb is None or len(sa) != 2 or len(sb) != 2:
        return [([None, None], None, dt)]
    m, ka = (sa[1], sa[0]) if n.attr("transA", 0) else (sa[0], sa[1])
    kb, nn = (sb[1], sb[0]) if n.attr("transB", 0) else (sb[0], sb[1])
    t._unify(ka, kb, "Gemm inner dims")
    return [([m, nn], None, dt)]


@shape_rule("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")
def _r_reduce(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    keep = int(n.attr("keepdims", 1))
    if xs is None:
        return [(None, None, dt)]
    r = len(xs)
    axes = _axes_of(t, n)
    if axes is None:
        return [([None] * r, None, dt) if keep else (None, None, dt)]
    if not axes:
        if int(n.attr("noop_with_empty_axes", 0)):
            return [(list(xs), None, dt)]
        axes = list(range(r))
    red = {_norm_axis(a, r) for a in axes}
    if keep:
        return [([ONE if i in red else d for i, d in enumerate(xs)], None, dt)]
    return [([d for i, d in enumerate(xs) if i not in red], None, dt)]


@shape_rule("ArgMax", "ArgMin")
def _r_argmax(t: SymbolTable, n: Node) -> list[Out]:
    xs = t._s(n.input(0))
    if xs is None:
        return [(None, None, _INT64)]
    ax = _norm_axis(n.attr("axis", 0), len(xs))
    if int(n.attr("keepdims", 1)):
        return [([ONE if i == ax else d for i, d in enumerate(xs)], None, _INT64)]
    return [([d for i, d in enumerate(xs) if i != ax], None, _INT64)]


def _conv_like(t: SymbolTable, n: Node, channels: SymExpr | None, kernel: list[int | None]) -> list | None:
    xs = t._s(n.input(0))
    if xs is None or len(xs) < 3:
        return None
    sp = len(xs) - 2
    strides = [int(s) for s in (n.attr("strides", None) or [1] * sp)]
    dil = [int(s) for s in (n.attr("dilations", None) or [1] * sp)]
    pads = [int(s) for s in (n.attr("pads", None) or [0] * (2 * sp))]
    auto = _attr_str(n, "auto_pad", "NOTSET")
    ceil_mode = int(n.attr("ceil_mode", 0))
    dims: list[SymExpr | None] = [xs[0], channels]
    for i in range(sp):
        d = xs[2 + i]
        s = strides[i]
        k = kernel[i] if i < len(kernel) else None
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            dims.append((d + (s - 1))._floordiv_const(s))
            continue
        if k is None:
            dims.append(None)
            continue
        pb, pe = (0, 0) if auto == "VALID" else (pads[i], pads[i + sp])
        num = d + (pb + pe - dil[i] * (k - 1) - 1)
        if ceil_mode:
            if num.c is None:
                dims.append(None)  # ceil_mode drops a last window starting in the padding: leave to onnx
                continue
            out = -(-num.c // s) + 1
            if (out - 1) * s >= d.c + pb:  # type: ignore[operator]
                out -= 1
            dims.append(SymExpr.const(out))
            continue
        dims.append(num._floordiv_const(s) + 1)
    return dims


@shape_rule("Conv")
def _r_conv(t: SymbolTable, n: Node) -> list[Out]:
    dt = t._dt(n.input(0))
    ws = t._s(n.input(1))
    ks = n.attr("kernel_shape", None)
    kernel: list[int | None] = [int(k) for k in ks] if ks is not None else (
        [d.c for d in ws[2:]] if ws is not None else [])
    dims = _conv_like(t, n, ws[0] if ws is not None else None, kernel)
    return [(dims, None, dt)]


@shape_rule("MaxPool", "AveragePool", "LpPool")
def _r_pool(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    ks = n.attr("kernel_shape", None)
    dims = _conv_like(t, n, xs[1] if xs is not None and len(xs) > 1 else None,
                      [int(k) for k in ks] if ks is not None else [])
    return [(dims, None, dt), (dims, None, _INT64)]


@shape_rule("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def _r_global_pool(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    if xs is None or len(xs) < 2:
        return [(None, None, t._dt(x))]
    return [([xs[0], xs[1]] + [ONE] * (len(xs) - 2), None, t._dt(x))]


@shape_rule("Pad")
def _r_pad(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    if xs is None:
        return [(None, None, dt)]
    r = len(xs)
    pa = n.attr("pads", None)
    pads: tuple[SymExpr, ...] | None
    pads = tuple(SymExpr.const(int(p)) for p in pa) if pa is not None else t._v(n.input(1))
    axes = list(range(r)) if n.input(3) is None else t._ints(n.input(3))
    if pads is None or axes is None or len(pads) != 2 * len(axes):
        return [([None] * r, None, dt)]
    dims: list[SymExpr | None] = list(xs)
    na = len(axes)
    for j, a in enumerate(axes):
        a = _norm_axis(a, r)
        dims[a] = xs[a] + pads[j] + pads[j + na]
    return [(dims, None, dt)]


@shape_rule("TopK")
def _r_topk(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    kv = t._v(n.input(1)) if n.input(1) is not None else (SymExpr.const(int(n.attr("k"))),)
    if xs is None:
        return [(None, None, dt), (None, None, _INT64)]
    ax = _norm_axis(n.attr("axis", -1), len(xs))
    dims: list[SymExpr | None] = list(xs)
    dims[ax] = kv[0] if kv is not None and len(kv) == 1 else None
    return [(dims, None, dt), (list(dims), None, _INT64)]


@shape_rule("LayerNormalization")
def _r_layernorm(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    if xs is None:
        return [(None, None, dt)]
    ax = _norm_axis(n.attr("axis", -1), len(xs))
    stat = list(xs[:ax]) + [ONE] * (len(xs) - ax)
    return [(list(xs), None, dt), (stat, None, None), (list(stat), None, None)]
