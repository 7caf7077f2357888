"""Shape rules of elementwise and value-preserving ops: broadcasting arithmetic, comparisons and logic on tracked
shape values, Where, unary ops, Identity, Constant, Cast, Dropout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ....ir.core import Node
from ..expr import ONE, ZERO, SymExpr
from . import shape_rule

from ._util import _ARITH, _BOOL, _FLOAT, _INT64, _RANGE, _VALUE_DT, _bool, _cmp, _mod, _zip_vals

if TYPE_CHECKING:
    from ..table import Out, SymbolTable


@shape_rule("Add", "Sub", "Mul", "Div", "Mod", "Max", "Min", "Sum", "Pow", "PRelu", "BitShift", "Mean", "BitwiseAnd", "BitwiseOr", "BitwiseXor")
def _r_binary(t: SymbolTable, n: Node) -> list[Out]:
    ins = [v for v in n._inputs if v is not None]
    if not ins:
        return [(None, None, None)]
    dt = t._dt(ins[0])
    dims = t._bcast([t._s(v) for v in ins], n.op_type) if len(ins) > 1 else (
        None if t._s(ins[0]) is None else list(t._s(ins[0])))  # type: ignore[arg-type]
    val = None
    op = n.op_type
    if dt in _VALUE_DT and dt != _BOOL:
        vals = [t._v(v) for v in ins]
        if all(v is not None for v in vals):
            if op == "Mod":
                fmod = int(n.attr("fmod", 0))
                val = _zip_vals(vals, lambda a, b: _mod(a, b, fmod))  # type: ignore[arg-type]
            elif op in _ARITH:
                f = _ARITH[op]

                def fold(*xs: SymExpr) -> SymExpr | None:
                    acc: SymExpr | None = xs[0]
                    for x in xs[1:]:
                        if acc is None:
                            return None
                        acc = f(acc, x)
                    return acc

                val = _zip_vals(vals, fold)  # type: ignore[arg-type]
    return [(dims, val, dt)]


@shape_rule("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual")
def _r_compare(t: SymbolTable, n: Node) -> list[Out]:
    a, b = n.input(0), n.input(1)
    dims = t._bcast([t._s(a), t._s(b)], n.op_type)
    val = None
    if t._dt(a) in _VALUE_DT:
        va, vb = t._v(a), t._v(b)
        if va is not None and vb is not None:
            op = n.op_type
            val = _zip_vals([va, vb], lambda x, y: _cmp(x, y, op))
    return [(dims, val, _BOOL)]


@shape_rule("Not", "And", "Or", "Xor")
def _r_logic(t: SymbolTable, n: Node) -> list[Out]:
    ins = [n.input(i) for i in range(n.num_inputs)]
    dims = t._bcast([t._s(v) for v in ins], n.op_type) if len(ins) > 1 else (
        None if t._s(ins[0]) is None else list(t._s(ins[0])))  # type: ignore[arg-type]
    vals = [t._v(v) for v in ins]
    val = None
    if all(v is not None for v in vals):
        op = n.op_type

        def f(*xs: SymExpr) -> SymExpr | None:
            bs = [_bool(x) for x in xs]
            if any(b is None for b in bs):
                return None
            if op == "Not":
                r = not bs[0]
            elif op == "And":
                r = bs[0] and bs[1]
            elif op == "Or":
                r = bs[0] or bs[1]
            else:
                r = bs[0] != bs[1]
            return ONE if r else ZERO

        val = _zip_vals(vals, f)  # type: ignore[arg-type]
    return [(dims, val, _BOOL)]


@shape_rule("Where")
def _r_where(t: SymbolTable, n: Node) -> list[Out]:
    c, x, y = n.input(0), n.input(1), n.input(2)
    dims = t._bcast([t._s(c), t._s(x), t._s(y)], "Where")
    dt = t._dt(x) or t._dt(y)
    val = None
    vc, vx, vy = t._v(c), t._v(x), t._v(y)
    if vc is not None and vx is not None and vy is not None and dt in _VALUE_DT:
        val = _zip_vals([vc, vx, vy], lambda cc, a, b: None if cc.c is None else (a if cc.c else b))
    return [(dims, val, dt)]


@shape_rule("Neg", "Abs")
def _r_unary_val(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    s = t._s(x)
    dt = t._dt(x)
    val = None
    vx = t._v(x)
    if vx is not None and dt in _VALUE_DT and dt != _BOOL:
        if n.op_type == "Neg":
            val = tuple(-e for e in vx)
        elif n.op_type == "Abs":
            val = _zip_vals([vx], lambda e: e if e.nonneg() else (-e if (-e).nonneg() else None))
    return [(None if s is None else list(s), val, dt)]


@shape_rule("Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Erf", "Softmax", "LogSoftmax", "Hardmax", "Gelu", "LeakyRelu", "Elu", "Selu", "Celu", "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Clip", "Floor", "Ceil", "Round", "Reciprocal", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Sign", "Mish", "Shrink", "ThresholdedRelu", "BatchNormalization", "InstanceNormalization", "LRN", "CumSum", "Trilu", "ScatterElements", "ScatterND", "Scatter", "MeanVarianceNormalization", "GroupNormalization", "RMSNormalization", "BitwiseNot", "Swish")
def _r_same(t: SymbolTable, n: Node) -> list[Out]:
    """Ops whose first output has the first input's shape and dtype (and no tracked value)."""
    x = n.input(0)
    s = t._s(x)
    return [(None if s is None else list(s), None, t._dt(x))]


@shape_rule("IsNaN", "IsInf", "QuantizeLinear", "DequantizeLinear")
def _r_same_shape(t: SymbolTable, n: Node) -> list[Out]:
    """Same shape as the first input, dtype from onnx's inference (IsNaN, QuantizeLinear, ...)."""
    s = t._s(n.input(0))
    return [(None if s is None else list(s), None, None)]


@shape_rule("Identity")
def _r_identity(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    s = t._s(x)
    return [(None if s is None else list(s), t._v(x), t._dt(x))]


@shape_rule("Constant")
def _r_constant(t: SymbolTable, n: Node) -> list[Out] | None:
    for name, a in n.attrs.items():
        v = a.value
        if name == "value":
            dims = [SymExpr.const(d) for d in v.shape]
            val = None
            if v.dtype in _VALUE_DT and len(v.shape) <= 1 and v.size <= t.max_value_len:
                val = tuple(SymExpr.const(int(x)) for x in np.asarray(v.numpy()).reshape(-1).tolist())
            return [(dims, val, v.dtype)]
        if name == "value_int":
            return [([], (SymExpr.const(int(v)),), _INT64)]
        if name == "value_ints":
            return [([SymExpr.const(len(v))], tuple(SymExpr.const(int(x)) for x in v), _INT64)]
        if name == "value_float":
            return [([], None, _FLOAT)]
        if name == "value_floats":
            return [([SymExpr.const(len(v))], None, _FLOAT)]
    return None


@shape_rule("Cast", "CastLike")
def _r_cast(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    s = t._s(x)
    to = int(n.attr("to")) if n.op_type == "Cast" else t._dt(n.input(1))
    val = None
    vx = t._v(x)
    src = t._dt(x)
    if vx is not None and to in _VALUE_DT and src in _VALUE_DT:
        if to == _BOOL:
            val = _zip_vals([vx], lambda e: None if e.c is None else (ONE if e.c else ZERO))
        else:
            lo, hi = _RANGE.get(to, (None, None))  # type: ignore[arg-type]
            # a constant that does not fit would wrap: leave it unknown; symbolic dims are assumed to fit
            val = _zip_vals([vx], lambda e: e if e.c is None or lo is None or lo <= e.c <= hi else None)
    return [(None if s is None else list(s), val, to)]


@shape_rule("Dropout")
def _r_dropout(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    d = None if xs is None else list(xs)
    return [(d, None, t._dt(x)), (d, None, _BOOL)]
