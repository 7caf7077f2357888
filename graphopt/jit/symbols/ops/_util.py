"""Small helpers the per-op shape rules share: attribute access, axis normalization, and exact integer arithmetic
on symbolic values (division, modulo, min/max, comparisons) that gives up (None) rather than guess.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING


from ....ir.core import Node
from ....ir.tensors import INT_TYPES, DataType
from ..expr import ONE, ZERO, SymExpr

_BOOL = int(DataType.BOOL)
_INT64 = int(DataType.INT64)
_FLOAT = int(DataType.FLOAT)
_INT_DT = frozenset(int(d) for d in INT_TYPES)
_VALUE_DT = _INT_DT | {_BOOL}  # dtypes whose small 1-D/scalar tensors get tracked values
_RANGE = {int(DataType.INT8): (-(1 << 7), (1 << 7) - 1), int(DataType.UINT8): (0, (1 << 8) - 1),
          int(DataType.INT16): (-(1 << 15), (1 << 15) - 1), int(DataType.UINT16): (0, (1 << 16) - 1),
          int(DataType.INT32): (-(1 << 31), (1 << 31) - 1), int(DataType.UINT32): (0, (1 << 32) - 1),
          int(DataType.INT64): (-(1 << 63), (1 << 63) - 1), int(DataType.UINT64): (0, (1 << 64) - 1),
          int(DataType.INT4): (-8, 7), int(DataType.UINT4): (0, 15), int(DataType.INT2): (-2, 1),
          int(DataType.UINT2): (0, 3), _BOOL: (0, 1)}
# Slice bounds at or past this are "to the end" (dims are assumed to stay below 2**31 - 1).
_BIG = (1 << 31) - 1

if TYPE_CHECKING:
    from ..table import SymbolTable


def _attr_str(n: Node, name: str, default: str) -> str:
    a = n.attr(name, default)
    return a.decode() if isinstance(a, bytes) else str(a)


def _norm_axis(a: int, r: int) -> int:
    a = int(a)
    if a < 0:
        a += r
    if not 0 <= a < r:
        raise IndexError(f"axis {a} out of range for rank {r}")
    return a


def _zip_vals(vals: Sequence[tuple[SymExpr, ...]], fn: Callable[..., SymExpr | None]) -> tuple | None:
    n = max(len(v) for v in vals)
    if any(len(v) not in (1, n) for v in vals):
        return None
    out = []
    for i in range(n):
        r = fn(*[v[i] if len(v) > 1 else v[0] for v in vals])
        if r is None:
            return None
        out.append(r)
    return tuple(out)


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _div(a: SymExpr, b: SymExpr) -> SymExpr | None:
    """ONNX integer Div (truncating)."""
    if a.c is not None and b.c is not None:
        return SymExpr.const(_trunc_div(a.c, b.c)) if b.c else None
    q = a.exact_div(b)
    if q is not None:
        return q
    if b.c is not None and b.c > 0 and a.nonneg():
        return a._floordiv_const(b.c)
    return None


def _mod(a: SymExpr, b: SymExpr, fmod: int) -> SymExpr | None:
    if b.c is not None and a.c is not None:
        if not b.c:
            return None
        if fmod:
            return SymExpr.const(a.c - b.c * _trunc_div(a.c, b.c))
        return SymExpr.const(a.c % b.c)
    if b.c is not None and b.c > 0 and (not fmod or a.nonneg()):
        return a._mod_const(b.c)
    return None


def _min(a: SymExpr, b: SymExpr) -> SymExpr | None:
    if (b - a).nonneg():
        return a
    if (a - b).nonneg():
        return b
    return None


def _max(a: SymExpr, b: SymExpr) -> SymExpr | None:
    if (b - a).nonneg():
        return b
    if (a - b).nonneg():
        return a
    return None


def _cmp(a: SymExpr, b: SymExpr, op: str) -> SymExpr | None:
    """Decide a comparison for every binding (1 / 0), or None."""
    d = a - b
    if op == "Equal":
        if d.c is not None:
            return ONE if d.c == 0 else ZERO
        return None if d.can_be(0) else ZERO
    if op in ("Greater", "LessOrEqual"):
        gt = True if d.positive() else (False if (-d).nonneg() else None)
        if gt is None:
            return None
        return ONE if gt == (op == "Greater") else ZERO
    if op in ("Less", "GreaterOrEqual"):
        lt = True if (-d).positive() else (False if d.nonneg() else None)
        if lt is None:
            return None
        return ONE if lt == (op == "Less") else ZERO
    return None


def _bool(e: SymExpr) -> bool | None:
    return None if e.c is None else e.c != 0


_ARITH: dict[str, Callable[[SymExpr, SymExpr], SymExpr | None]] = {
    "Add": lambda a, b: a + b, "Sub": lambda a, b: a - b, "Mul": lambda a, b: a * b, "Div": _div,
    "Max": _max, "Min": _min, "Sum": lambda a, b: a + b,
}

def _axes_of(t: SymbolTable, n: Node, idx: int = 1) -> list[int] | None:
    """Axes from the attribute (older opsets) or the input `idx` (static); [] when absent."""
    a = n.attr("axes", None)
    if a is not None:
        return [int(x) for x in a]
    v = n.input(idx)
    if v is None:
        return []
    return t._ints(v)
