"""Shape rules of the control-flow ops: If (branches that agree), Loop and Scan (loop-carried values and scan
outputs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING


from ....ir.core import Graph, Node, Value
from ..expr import SymExpr
from . import shape_rule

from ._util import _norm_axis

if TYPE_CHECKING:
    from ..table import Out, SymbolTable


@shape_rule("If")
def _r_if(t: SymbolTable, n: Node) -> list[Out] | None:
    tg, eg = n.attr("then_branch", None), n.attr("else_branch", None)
    if not isinstance(tg, Graph) or not isinstance(eg, Graph):
        return None
    cv = t._v(n.input(0))
    if cv is not None and len(cv) == 1 and cv[0].c is not None:
        g = tg if cv[0].c else eg
        return [(None if t._s(o) is None else list(t._s(o)), t._v(o), t._dt(o))  # type: ignore[arg-type]
                for o in g._outputs]
    outs: list[Out] = []
    for a, b in zip(tg._outputs, eg._outputs):
        sa, sb = t._s(a), t._s(b)
        dt = t._dt(a) or t._dt(b)
        if sa is None or sb is None or len(sa) != len(sb):
            outs.append((None, None, dt))
            continue
        dims = [x if x == y else None for x, y in zip(sa, sb)]
        va, vb = t._v(a), t._v(b)
        outs.append((dims, va if va is not None and va == vb else None, dt))
    return outs


def _carried(t: SymbolTable, init: Value | None, bin_: Value | None, bout: Value | None) -> Out:
    """A loop-carried value's final shape: dims that the body keeps (output dim = input dim) or that are the
    same constant before and after every iteration."""
    si, sbi, so = t._s(init), t._s(bin_), t._s(bout)
    dt = t._dt(init) or t._dt(bout)
    if si is None or so is None or len(si) != len(so):
        return (None, None, dt)
    dims: list[SymExpr | None] = []
    for i, (a, o) in enumerate(zip(si, so)):
        if o.c is not None and a == o:
            dims.append(a)
        elif sbi is not None and len(sbi) == len(so) and o == sbi[i]:
            dims.append(a)
        else:
            dims.append(None)
    return (dims, None, dt)


@shape_rule("Loop")
def _r_loop(t: SymbolTable, n: Node) -> list[Out] | None:
    body = n.attr("body", None)
    if not isinstance(body, Graph):
        return None
    nc = len(n._inputs) - 2
    bo = body._outputs
    bi = body._inputs
    outs: list[Out] = []
    for j in range(nc):
        outs.append(_carried(t, n.input(2 + j), bi[2 + j] if 2 + j < len(bi) else None,
                             bo[1 + j] if 1 + j < len(bo) else None))
    for o in bo[1 + nc:]:
        so = t._s(o)
        outs.append((None if so is None else [None] + list(so), None, t._dt(o)))
    return outs


@shape_rule("Scan")
def _r_scan(t: SymbolTable, n: Node) -> list[Out] | None:
    body = n.attr("body", None)
    if not isinstance(body, Graph) or t._opset < 9:
        return None
    m = int(n.attr("num_scan_inputs", 0))
    ns = len(n._inputs) - m
    bo, bi = body._outputs, body._inputs
    outs: list[Out] = []
    for j in range(ns):
        outs.append(_carried(t, n.input(j), bi[j] if j < len(bi) else None, bo[j] if j < len(bo) else None))
    seq: SymExpr | None = None
    first = n.input(ns)
    fs = t._s(first)
    in_axes = list(n.attr("scan_input_axes", None) or [0] * m)
    if fs is not None and in_axes:
        seq = fs[_norm_axis(in_axes[0], len(fs))]
    out_axes = list(n.attr("scan_output_axes", None) or [0] * (len(bo) - ns))
    for k, o in enumerate(bo[ns:]):
        so = t._s(o)
        if so is None:
            outs.append((None, None, t._dt(o)))
            continue
        dims: list[SymExpr | None] = list(so)
        ax = out_axes[k] if k < len(out_axes) else 0
        ax = ax + len(so) + 1 if ax < 0 else ax
        dims.insert(ax, seq)
        outs.append((dims, None, t._dt(o)))
    return outs
