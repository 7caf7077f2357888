"""The evaluator adapter behind constant folding: a numpy fast path for cheap shape ops, and onnxruntime for the
rest, batched into one session per call.

Guarantees:

* :func:`fast_eval` is exact: it handles a small set of ops on small tensors with the same dtype rules as ONNX
  (no type promotion, integer division truncates toward zero, wraparound on overflow as onnxruntime does) and
  returns None for anything it is not sure about, so that the caller falls back to onnxruntime. It never builds an
  output of more than ``max_elements`` elements: sizes are computed before the numbers.
* :class:`BatchEvaluator` runs a list of nodes (in topological order) in ONE onnxruntime session. When the session
  cannot be built or run (an op onnxruntime lacks, a bad node), the batch is split in halves and retried, down to
  single nodes, which are then reported as failed; their dependents are not evaluated. ``sessions`` counts the
  sessions created, so that tests (and the report) can check that folding does not make one session per node.

This module, with :mod:`graphopt.ir.serde`, is where folding touches protobuf and onnxruntime.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..ir.core import Model, Node, Value
from ..ir.serde import attr_to_proto, tensor_to_proto
from ..ir.tensors import DataType, Tensor, bits_of, dtype_of_numpy, numpy_dtype

log = logging.getLogger(__name__)


class Arg:
    """A constant operand: ONNX dtype, shape, byte size, and its numbers on demand (decoded at most once)."""

    __slots__ = ("dtype", "shape", "_tensor", "_array")

    def __init__(self, *, tensor: Tensor | None = None, array: np.ndarray | None = None, dtype: int | None = None):
        if tensor is None and array is None:
            raise ValueError("an Arg needs a tensor or an array")
        self._tensor = tensor
        self._array = array
        if tensor is not None:
            self.dtype = int(tensor.dtype)
            self.shape: tuple[int, ...] = tuple(tensor.shape)
        else:
            assert array is not None
            self.dtype = int(dtype) if dtype is not None else dtype_of_numpy(array.dtype)
            self.shape = tuple(int(d) for d in array.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        if self._tensor is not None:
            return int(self._tensor.nbytes)
        b = bits_of(self.dtype)
        if b == 0:
            assert self._array is not None
            return int(self._array.nbytes) if self._array.dtype != object else 16 * self.size
        return (self.size * b + 7) // 8

    def numpy(self) -> np.ndarray:
        if self._array is None:
            assert self._tensor is not None
            self._array = np.asarray(self._tensor.numpy())
        return self._array

    def tensor(self) -> Tensor:
        """The operand as an IR Tensor (the original one when it came from the model)."""
        if self._tensor is None:
            self._tensor = Tensor.from_numpy(self.numpy(), self.dtype)
        return self._tensor

    def __repr__(self) -> str:
        return f"Arg(dtype={self.dtype}, shape={self.shape})"


# ================================================================================================================
# numpy fast path
# ================================================================================================================
# numpy-native integer types (int4/uint4/int2... are excluded: their storage is not numpy arithmetic)
_NP_INTS = frozenset({DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64, DataType.UINT8,
                      DataType.UINT16, DataType.UINT32, DataType.UINT64})
_SIGNED = frozenset({DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64})
_NP_FLOATS = frozenset({DataType.FLOAT, DataType.DOUBLE})
_NUMERIC = _NP_INTS | _NP_FLOATS | {DataType.FLOAT16}
_INT_LIKE = _NP_INTS | {DataType.BOOL}

# Casts the fast path performs: numpy's astype gives the same bits as onnxruntime's static_cast for these.
# int -> float16 is left out (onnxruntime goes through float32, which may round twice).
_CAST_SRC_DST = {s: _INT_LIKE | _NP_FLOATS for s in _INT_LIKE}
_CAST_SRC_DST.update({s: frozenset(_NP_FLOATS) for s in _NP_FLOATS})

FAST_OPS = frozenset({
    "Identity", "Shape", "Size", "Cast", "Reshape", "Unsqueeze", "Squeeze", "Concat", "Gather", "Slice",
    "Add", "Sub", "Mul", "Div", "Neg", "Min", "Max", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
    "Not", "And", "Or", "Xor", "Where", "Range", "ConstantOfShape", "Expand", "Tile", "Transpose",
    "ReduceProd", "ReduceSum", "ReduceMin", "ReduceMax",
})

# Ops whose only size-relevant input is the header (shape and dtype): the numbers are never decoded.
HEADER_ONLY_OPS = frozenset({"Shape", "Size"})


class _Refuse(Exception):
    """The fast path does not handle this case; the caller falls back to onnxruntime."""


def _ints(a: np.ndarray) -> list[int]:
    if a.dtype.kind not in "iu":
        raise _Refuse
    return [int(x) for x in a.reshape(-1)]


def _scalar_int(a: np.ndarray) -> int:
    vals = _ints(a)
    if len(vals) != 1:
        raise _Refuse
    return vals[0]


def _norm_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise _Refuse
    return axis + rank if axis < 0 else axis


def _check(shape: Sequence[int], max_elements: int) -> tuple[int, ...]:
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape) or math.prod(shape) > max_elements:
        raise _Refuse
    return shape


def _broadcast(shapes: Sequence[tuple[int, ...]], max_elements: int) -> tuple[int, ...]:
    try:
        out = np.broadcast_shapes(*shapes)
    except ValueError as e:
        raise _Refuse from e
    return _check(out, max_elements)


def fast_eval(node: Node, args: Sequence[Arg | None], opset: int, max_elements: int = 1 << 16
              ) -> list[np.ndarray] | None:
    """Outputs of `node` (of the default domain, at `opset`) computed with numpy, or None when the fast path does
    not handle the op, the dtypes, or the sizes. Exact: same dtypes and numbers as onnxruntime."""
    op = node.op_type
    if node.domain not in ("", "ai.onnx") or op not in FAST_OPS:
        return None
    for a in args:
        if a is not None and op not in HEADER_ONLY_OPS and a.size > max_elements:
            return None
    try:
        with np.errstate(all="ignore"):  # overflow wraps / saturates to inf exactly as the runtime does
            out = _FAST[op](node, list(args), opset, max_elements)
    except (_Refuse, IndexError, ValueError, TypeError, OverflowError):
        return None
    if out is None:
        return None
    return [np.asarray(o) for o in out]


def _need(args: list[Arg | None], i: int) -> Arg:
    a = args[i] if i < len(args) else None
    if a is None:
        raise _Refuse
    return a


def _opt(args: list[Arg | None], i: int) -> Arg | None:
    return args[i] if i < len(args) else None


def _same_dtype(args: Sequence[Arg], allowed: frozenset[int]) -> int:
    dts = {a.dtype for a in args}
    if len(dts) != 1:
        raise _Refuse
    dt = dts.pop()
    if dt not in allowed:
        raise _Refuse
    return dt


def _f_identity(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    return [_need(args, 0).numpy()]


def _f_shape(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    shape = _need(args, 0).shape
    start = int(node.attr("start", 0)) if opset >= 15 else 0
    end = node.attr("end", None) if opset >= 15 else None
    # Python slicing clamps exactly as the Shape op specifies (negative + rank, then clamp to [0, rank])
    dims = shape[start:] if end is None else shape[start:int(end)]
    return [np.array(dims, dtype=np.int64)]


def _f_size(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    return [np.array(_need(args, 0).size, dtype=np.int64)]


def _f_cast(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    a = _need(args, 0)
    to = int(node.attr("to", 0))
    if to not in _CAST_SRC_DST.get(a.dtype, ()):
        raise _Refuse
    return [a.numpy().astype(numpy_dtype(to))]


def _f_reshape(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    a = _need(args, 0)
    if opset < 5:
        target = [int(x) for x in node.attr("shape", [])]
    else:
        target = _ints(_need(args, 1).numpy())
    allowzero = int(node.attr("allowzero", 0)) if opset >= 14 else 0
    dims: list[int] = []
    for i, d in enumerate(target):
        if d == 0 and not allowzero:
            if i >= len(a.shape):
                raise _Refuse
            d = a.shape[i]
        elif d < -1:
            raise _Refuse
        dims.append(d)
    if dims.count(-1) > 1:
        raise _Refuse
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        if known == 0 or a.size % known:
            raise _Refuse
        dims[dims.index(-1)] = a.size // known
    if math.prod(dims) != a.size:
        raise _Refuse
    return [a.numpy().reshape(dims)]


def _axes_of(node: Node, args: list[Arg | None], opset: int, since: int, index: int) -> list[int] | None:
    """Axes from the attribute (before opset `since`) or from input `index` (from `since` on)."""
    if opset < since:
        v = node.attr("axes", None)
        return None if v is None else [int(x) for x in v]
    a = _opt(args, index)
    return None if a is None else _ints(a.numpy())


def _f_unsqueeze(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    a = _need(args, 0)
    axes = _axes_of(node, args, opset, 13, 1)
    if axes is None:
        raise _Refuse
    r = len(a.shape) + len(axes)
    norm = sorted(_norm_axis(x, r) for x in axes)
    if len(set(norm)) != len(norm):
        raise _Refuse
    out = a.numpy()
    for ax in norm:
        out = np.expand_dims(out, ax)
    return [out]


def _f_squeeze(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    a = _need(args, 0)
    axes = _axes_of(node, args, opset, 13, 1)
    x = a.numpy()
    if axes is None:
        return [x.reshape([d for d in a.shape if d != 1])]
    r = len(a.shape)
    norm = sorted({_norm_axis(ax, r) for ax in axes})
    if any(a.shape[ax] != 1 for ax in norm):
        raise _Refuse
    return [x.reshape([d for i, d in enumerate(a.shape) if i not in norm])]


def _f_concat(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    ins = [a for a in args if a is not None]
    if not ins or len(ins) != len(args):
        raise _Refuse
    dt = {a.dtype for a in ins}
    if len(dt) != 1:
        raise _Refuse
    rank = len(ins[0].shape)
    if rank == 0 or any(len(a.shape) != rank for a in ins):
        raise _Refuse
    axis = _norm_axis(int(node.attr("axis", 0)), rank)
    _check([sum(a.shape[axis] for a in ins) if i == axis else ins[0].shape[i] for i in range(rank)], mx)
    return [np.concatenate([a.numpy() for a in ins], axis=axis)]


def _f_gather(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    data, idx = _need(args, 0), _need(args, 1)
    if idx.dtype not in (DataType.INT32, DataType.INT64):
        raise _Refuse
    rank = len(data.shape)
    if rank == 0:
        raise _Refuse
    axis = _norm_axis(int(node.attr("axis", 0)), rank)
    n = data.shape[axis]
    _check(data.shape[:axis] + idx.shape + data.shape[axis + 1:], mx)
    ind = idx.numpy().astype(np.int64)
    if ind.size and (ind.min() < -n or ind.max() >= n):
        raise _Refuse  # onnxruntime reports an error: leave the node alone
    ind = np.where(ind < 0, ind + n, ind)
    return [np.take(data.numpy(), ind, axis=axis)]


_INT64_MAX = (1 << 63) - 1


def _f_slice(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    data = _need(args, 0)
    rank = len(data.shape)
    if opset < 10:
        starts = [int(x) for x in node.attr("starts", [])]
        ends = [int(x) for x in node.attr("ends", [])]
        ax = node.attr("axes", None)
        axes = list(range(len(starts))) if ax is None else [int(x) for x in ax]
        steps = [1] * len(starts)
    else:
        starts = _ints(_need(args, 1).numpy())
        ends = _ints(_need(args, 2).numpy())
        a3, a4 = _opt(args, 3), _opt(args, 4)
        axes = list(range(len(starts))) if a3 is None else _ints(a3.numpy())
        steps = [1] * len(starts) if a4 is None else _ints(a4.numpy())
    if not (len(starts) == len(ends) == len(axes) == len(steps)):
        raise _Refuse
    sl: list[slice] = [slice(None)] * rank
    seen: set[int] = set()
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = _norm_axis(a, rank)
        if a in seen or st == 0:
            raise _Refuse
        seen.add(a)
        d = data.shape[a]
        # ONNX: negative indices count from the end, then clamp (start to [0, d] / [0, d-1], end to [0, d] /
        # [-1, d-1] for positive / negative steps); -1 as a clamped end means "through index 0".
        s = s + d if s < 0 else s
        e = e + d if e < 0 else e
        if st > 0:
            s = min(max(s, 0), d)
            e = min(max(e, 0), d)
            sl[a] = slice(s, e, st)
        else:
            s = min(max(s, 0), d - 1)
            e = min(max(e, -1), d - 1)
            sl[a] = slice(s, None if e < 0 else e, st)
    return [data.numpy()[tuple(sl)]]


def _binary_ints(node: Node, args: list[Arg | None], mx: int,
                 allowed: frozenset[int] = _NP_INTS) -> tuple[np.ndarray, np.ndarray]:
    a, b = _need(args, 0), _need(args, 1)
    _same_dtype([a, b], allowed)
    _broadcast([a.shape, b.shape], mx)
    return a.numpy(), b.numpy()


# Add, Sub, Mul and Div on float32/float64 too: IEEE 754 rounds each of them correctly, so numpy and onnxruntime
# give the same bits (no fused operations across nodes; float16 is left to onnxruntime).
_ARITH_DT = _NP_INTS | _NP_FLOATS


def _f_add(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    x, y = _binary_ints(node, args, mx, _ARITH_DT)
    return [np.asarray(np.add(x, y), dtype=x.dtype)]


def _f_sub(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    x, y = _binary_ints(node, args, mx, _ARITH_DT)
    return [np.asarray(np.subtract(x, y), dtype=x.dtype)]


def _f_mul(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    x, y = _binary_ints(node, args, mx, _ARITH_DT)
    return [np.asarray(np.multiply(x, y), dtype=x.dtype)]


def _f_div(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    x, y = _binary_ints(node, args, mx, _ARITH_DT)
    if x.dtype.kind == "f":
        return [np.asarray(np.true_divide(x, y), dtype=x.dtype)]  # x/0 is +-inf or nan, as in onnxruntime
    if np.any(y == 0):
        raise _Refuse  # integer division by zero is undefined: leave it to the runtime
    if x.dtype.kind == "i" and np.any((y == -1) & (x == np.iinfo(x.dtype).min)):
        raise _Refuse  # INT_MIN / -1 overflows: undefined in C++
    q = np.floor_divide(x, y)
    # C++ (and so onnxruntime) truncates toward zero; numpy floors: add one where the signs differ and the
    # division is not exact.
    if x.dtype.kind == "i":
        q = q + ((np.remainder(x, y) != 0) & ((x < 0) != (y < 0))).astype(x.dtype)
    return [np.asarray(q, dtype=x.dtype)]


def _f_neg(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    a = _need(args, 0)
    if a.dtype not in _SIGNED:
        raise _Refuse
    return [np.asarray(np.negative(a.numpy()), dtype=a.numpy().dtype)]


def _variadic_ints(node: Node, args: list[Arg | None], mx: int, fn: Any) -> list[np.ndarray]:
    ins = [a for a in args if a is not None]
    if not ins or len(ins) != len(args):
        raise _Refuse
    _same_dtype(ins, _NP_INTS)
    _broadcast([a.shape for a in ins], mx)
    out = ins[0].numpy()
    for a in ins[1:]:
        out = fn(out, a.numpy())
    return [np.asarray(out, dtype=ins[0].numpy().dtype)]


def _f_min(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    return _variadic_ints(node, args, mx, np.minimum)


def _f_max(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    return _variadic_ints(node, args, mx, np.maximum)


def _compare(fn: Any) -> Any:
    def f(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
        a, b = _need(args, 0), _need(args, 1)
        # comparisons are exact for every numeric type and bool (Equal only takes bool among the two)
        _same_dtype([a, b], _NUMERIC | {DataType.BOOL})
        _broadcast([a.shape, b.shape], mx)
        return [np.asarray(fn(a.numpy(), b.numpy()), dtype=np.bool_)]
    return f


def _logical(fn: Any) -> Any:
    def f(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
        a, b = _need(args, 0), _need(args, 1)
        _same_dtype([a, b], frozenset({DataType.BOOL}))
        _broadcast([a.shape, b.shape], mx)
        return [np.asarray(fn(a.numpy(), b.numpy()), dtype=np.bool_)]
    return f


def _f_not(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    a = _need(args, 0)
    if a.dtype != DataType.BOOL:
        raise _Refuse
    return [np.logical_not(a.numpy())]


def _f_where(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    c, x, y = _need(args, 0), _need(args, 1), _need(args, 2)
    if c.dtype != DataType.BOOL or x.dtype != y.dtype:
        raise _Refuse
    _broadcast([c.shape, x.shape, y.shape], mx)
    xa = x.numpy()
    return [np.asarray(np.where(c.numpy(), xa, y.numpy()), dtype=xa.dtype)]


def _f_range(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    s, lim, d = _need(args, 0), _need(args, 1), _need(args, 2)
    dt = _same_dtype([s, lim, d], _NP_INTS)
    start, limit, delta = _scalar_int(s.numpy()), _scalar_int(lim.numpy()), _scalar_int(d.numpy())
    if delta == 0:
        raise _Refuse
    r = range(start, limit, delta)  # len(r) == max(ceil((limit - start) / delta), 0), exactly as ONNX says
    _check([len(r)], mx)
    return [np.array(r, dtype=numpy_dtype(dt))]


def _f_constant_of_shape(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    shape = _check(_ints(_need(args, 0).numpy()), mx)
    val = node.attr("value", None)
    if val is None:
        fill = np.zeros((), dtype=np.float32)
    else:
        if not isinstance(val, Tensor) or val.size != 1 or val.is_sparse or val.dtype == DataType.STRING:
            raise _Refuse
        fill = np.asarray(val.numpy()).reshape(())
    return [np.full(shape, fill, dtype=fill.dtype)]


def _f_expand(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    a = _need(args, 0)
    shape = tuple(_ints(_need(args, 1).numpy()))
    out = _broadcast([a.shape, shape], mx)
    return [np.ascontiguousarray(np.broadcast_to(a.numpy(), out))]


def _f_tile(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    a = _need(args, 0)
    reps = _ints(_need(args, 1).numpy())
    if len(reps) != len(a.shape) or any(r < 0 for r in reps):
        raise _Refuse
    _check([d * r for d, r in zip(a.shape, reps)], mx)
    return [np.tile(a.numpy(), reps)]


def _f_transpose(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    a = _need(args, 0)
    perm = node.attr("perm", None)
    rank = len(a.shape)
    p = list(range(rank))[::-1] if perm is None else [int(x) for x in perm]
    if sorted(p) != list(range(rank)):
        raise _Refuse
    return [np.ascontiguousarray(np.transpose(a.numpy(), p))]


def _reduce(fn: Any, axes_input_since: int) -> Any:
    def f(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
        a = _need(args, 0)
        if a.dtype not in _NP_INTS:
            raise _Refuse
        rank = len(a.shape)
        axes = _axes_of(node, args, opset, axes_input_since, 1)
        keep = bool(int(node.attr("keepdims", 1)))
        x = a.numpy()
        if not axes:
            if opset >= axes_input_since and int(node.attr("noop_with_empty_axes", 0)):
                return [x]
            ax: tuple[int, ...] = tuple(range(rank))
        else:
            ax = tuple(sorted({_norm_axis(i, rank) for i in axes}))
        if fn in (np.min, np.max) and any(a.shape[i] == 0 for i in ax):
            raise _Refuse  # empty reductions: leave to the runtime
        return [np.asarray(fn(x, axis=ax, keepdims=keep), dtype=x.dtype)]
    return f


def _f_reduce_sum(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    return _reduce(lambda x, axis, keepdims: np.sum(x, axis=axis, keepdims=keepdims, dtype=x.dtype), 13)(
        node, args, opset, mx)


def _f_reduce_prod(node: Node, args: list[Arg | None], opset: int, mx: int) -> list[np.ndarray]:
    return _reduce(lambda x, axis, keepdims: np.prod(x, axis=axis, keepdims=keepdims, dtype=x.dtype), 18)(
        node, args, opset, mx)


_FAST: dict[str, Any] = {
    "Identity": _f_identity, "Shape": _f_shape, "Size": _f_size, "Cast": _f_cast, "Reshape": _f_reshape,
    "Unsqueeze": _f_unsqueeze, "Squeeze": _f_squeeze, "Concat": _f_concat, "Gather": _f_gather,
    "Slice": _f_slice, "Add": _f_add, "Sub": _f_sub, "Mul": _f_mul, "Div": _f_div, "Neg": _f_neg,
    "Min": _f_min, "Max": _f_max, "Equal": _compare(np.equal), "Less": _compare(np.less),
    "Greater": _compare(np.greater), "LessOrEqual": _compare(np.less_equal),
    "GreaterOrEqual": _compare(np.greater_equal), "Not": _f_not, "And": _logical(np.logical_and),
    "Or": _logical(np.logical_or), "Xor": _logical(np.logical_xor), "Where": _f_where, "Range": _f_range,
    "ConstantOfShape": _f_constant_of_shape, "Expand": _f_expand, "Tile": _f_tile, "Transpose": _f_transpose,
    "ReduceSum": _f_reduce_sum, "ReduceProd": _f_reduce_prod, "ReduceMin": _reduce(np.min, 18),
    "ReduceMax": _reduce(np.max, 18),
}


# ================================================================================================================
# onnxruntime batch evaluation
# ================================================================================================================
# Constants go into the evaluation model as initializers, except big ones, which are fed (no copy into the
# serialized model). Feeds must stay few: onnxruntime checks feed names against its input list, which is
# quadratic in the number of feeds (16k feeds: 9 s to create, 9 s to run; as initializers: 4 s and 0.5 s).
_FEED_MIN_BYTES = 1 << 16

# dtypes onnxruntime's Python binding accepts as numpy feeds; others always go in as initializers
_FEEDABLE = frozenset({DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.INT8, DataType.INT16,
                       DataType.INT32, DataType.INT64, DataType.UINT8, DataType.UINT16, DataType.UINT32,
                       DataType.UINT64, DataType.BOOL, DataType.STRING})


class BatchEvaluator:
    """Evaluates batches of nodes with onnxruntime, one session per batch (halving on failure).

    ``sessions`` counts the sessions created over the evaluator's life.
    """

    def __init__(self, model: Model, *, threads: int = 1, max_sessions: int = 64):
        self.opset_imports = dict(model.opset_imports)
        # onnxruntime reads any IR version from 3 on; 4+ lets initializers stay out of the graph inputs
        self.ir_version = max(int(model.ir_version), 4)
        self.threads = threads
        # halving finds k bad nodes among n in about 2k*log2(n) sessions; when everything fails (an opset the
        # runtime lacks) it would take 2n: the budget stops that, and what is left unevaluated counts as failed
        self.max_sessions = max_sessions
        self.sessions = 0
        self.failures = 0
        self.gave_up = False

    def run(self, nodes: Sequence[Node], inputs: dict[Value, Arg], wanted: Sequence[Value]
            ) -> tuple[dict[Value, np.ndarray], list[Node]]:
        """Evaluate `nodes` (topological order; every input is in `inputs` or is made by an earlier node).

        Returns the arrays of the `wanted` values that could be computed (plus any other value a split batch had
        to pass from one half to the other), and the nodes that onnxruntime could not run (their dependents are
        not evaluated either and their outputs are missing from the result). Outputs that are not plain tensors
        (sequences, maps) are left out of the result.
        """
        results: dict[Value, np.ndarray] = {}
        failed: list[Node] = []
        want = dict.fromkeys(wanted)
        batch = list(nodes)
        self._run(batch, set(batch), dict(inputs), want, results, failed)
        return results, failed

    def _run(self, nodes: list[Node], scope: set[Node], inputs: dict[Value, Arg], want: dict[Value, None],
             results: dict[Value, np.ndarray], failed: list[Node]) -> None:
        # drop nodes that read a value nobody can provide (made by a failed node)
        produced: dict[Value, None] = {}
        live: list[Node] = []
        for n in nodes:
            if all(v is None or v in inputs or v in produced for v in n.inputs):
                live.append(n)
                for o in n.outputs:
                    produced[o] = None
        if not live:
            return
        members = set(live)
        outs: list[Value] = []
        for n in live:
            for o in n.outputs:
                # wanted values, and values the rest of the batch reads (when this is one half of a split)
                if o in want or any(u in scope and u not in members for u, _ in o.uses()):
                    outs.append(o)
        if not outs:
            return
        if self.sessions >= self.max_sessions:
            if not self.gave_up:
                log.warning("constant folding: %d onnxruntime sessions failed; the nodes not evaluated yet are "
                            "left alone", self.failures)
            self.gave_up = True
            failed.extend(live)
            return
        got = self._session_run(live, inputs, outs)
        if got is not None:
            for v, arr in got.items():
                results[v] = arr
                inputs[v] = Arg(array=arr)
            return
        if len(live) == 1:
            failed.append(live[0])
            log.debug("onnxruntime could not evaluate %r", live[0])
            return
        half = len(live) // 2
        self._run(live[:half], scope, inputs, want, results, failed)
        self._run(live[half:], scope, inputs, want, results, failed)

    def _session_run(self, nodes: list[Node], inputs: dict[Value, Arg], outs: list[Value]
                     ) -> dict[Value, np.ndarray] | None:
        import onnx
        import onnxruntime as ort

        names: dict[Value, str] = {}

        def nm(v: Value) -> str:
            s = names.get(v)
            if s is None:
                s = names[v] = f"v{len(names)}"
            return s

        g = onnx.GraphProto()
        g.name = "graphopt_fold"
        feeds: dict[str, np.ndarray] = {}
        produced = {o for n in nodes for o in n.outputs}
        for n in nodes:
            for v in n.inputs:
                if v is None or v in produced or v in names:
                    continue
                a = inputs[v]
                name = nm(v)
                t = a._tensor
                external = t is not None and t.is_external
                if a.dtype in _FEEDABLE and (a.nbytes >= _FEED_MIN_BYTES or external):
                    vi = g.input.add()
                    vi.name = name
                    tt = vi.type.tensor_type
                    tt.elem_type = a.dtype
                    tt.shape.SetInParent()
                    for d in a.shape:
                        tt.shape.dim.add().dim_value = d
                    arr = a.numpy()
                    if a.dtype == DataType.STRING:
                        arr = np.asarray([s.decode() if isinstance(s, bytes) else s for s in arr.reshape(-1)],
                                         dtype=object).reshape(arr.shape)
                    feeds[name] = arr
                elif external:  # the evaluation model is loaded from bytes: inline the numbers
                    g.initializer.append(tensor_to_proto(Tensor.from_numpy(a.numpy(), a.dtype), name))
                else:
                    g.initializer.append(tensor_to_proto(a.tensor(), name))
        try:
            for n in nodes:
                p = g.node.add()
                p.op_type = n.op_type
                p.domain = n.domain
                p.input.extend("" if v is None else nm(v) for v in n.inputs)
                p.output.extend(nm(o) for o in n.outputs)
                for a in n.attrs.values():
                    p.attribute.append(attr_to_proto(a))
            for o in outs:
                g.output.add().name = nm(o)
            mp = onnx.ModelProto()
            mp.ir_version = self.ir_version
            for d, ver in self.opset_imports.items():
                op = mp.opset_import.add()
                op.domain = d
                op.version = ver
            mp.graph.CopyFrom(g)
            so = ort.SessionOptions()
            so.log_severity_level = 4
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            so.intra_op_num_threads = self.threads
            self.sessions += 1
            sess = ort.InferenceSession(mp.SerializeToString(), so, providers=["CPUExecutionProvider"])
            res = sess.run([names[o] for o in outs], feeds)
        except Exception as e:  # noqa: BLE001 - any onnxruntime failure means "split and retry", never fatal
            self.failures += 1
            log.debug("onnxruntime batch of %d nodes failed: %s", len(nodes), str(e).splitlines()[0][:200])
            return None
        out: dict[Value, np.ndarray] = {}
        for o, r in zip(outs, res):
            if isinstance(r, np.ndarray):
                out[o] = r
        return out
