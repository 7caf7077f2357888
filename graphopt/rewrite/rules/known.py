"""Compact known constants: values a graph computes from constants without storing them in full.

A ``ConstantOfShape`` whose shape input is a constant is a *fill*: every element equals its ``value`` attribute (a
float32 0 when the attribute is absent). Passed through Identity, Unsqueeze, Squeeze, Reshape or Expand with
constant operands it stays known. Exporters that make weights at load time (Caffe2's ConstantFill) leave such
chains, and fold-constants keeps them unfolded when storing them would grow the file. Rules may compute with them
numerically, transiently, as long as what they store is small.

A :class:`Known` is ``base`` broadcast to ``shape``: ``base`` has the same rank and each of its dims is 1 or equal
to the dim of ``shape``. A fill has a one-element base; ``Expand`` of a ``[C, 1, 1]`` constant keeps that
``[C, 1, 1]`` base. The representation therefore holds no more numbers than the constants it came from, except
after a Reshape that moves a varying axis, which materializes the value, at most ``max_elements`` elements (an
option of the rules that read known values), so memory stays bounded.

Nothing here changes the graph.
"""

from __future__ import annotations

import numpy as np

from ...ir.core import Node, Value
from ...ir.tensors import DataType, Tensor
from ..pattern import Fail, const_tensor, describe, describe_value

# Elements a known value may be materialized to while a rule computes with it (transient memory, not file size).
DEFAULT_MAX_ELEMENTS = 1 << 24
# How many producers a known value may be traced back through.
MAX_DEPTH = 32

_STD = ("", "ai.onnx")
_FLOATS = (DataType.FLOAT, DataType.FLOAT16, DataType.DOUBLE)


class Known:
    """A constant value: ``base`` broadcast to ``shape``, of ONNX element type ``dtype``.

    ``stored`` is True when the value itself is a stored constant (an initializer the caller cannot override, or
    a Constant node's output): a rewrite that replaces it frees its bytes. A stored value is decoded only when a
    rule reads ``base`` (shape, type and the stored flag come from the tensor's header). ``base`` must not be
    modified.
    """

    __slots__ = ("shape", "dtype", "stored", "_base", "_tensor")

    def __init__(self, base: np.ndarray | None, shape: tuple[int, ...], dtype: int, stored: bool = False, *,
                 tensor: Tensor | None = None):
        assert base is not None or tensor is not None
        self.shape = shape
        self.dtype = dtype
        self.stored = stored
        self._base = base
        self._tensor = tensor

    @property
    def base(self) -> np.ndarray:
        if self._base is None:
            assert self._tensor is not None
            self._base = np.asarray(self._tensor.numpy())
        return self._base

    def __repr__(self) -> str:
        return f"Known(shape={list(self.shape)}, dtype={self.dtype}, stored={self.stored})"

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def is_fill(self) -> bool:
        """Every element is the same number (the base has one element)."""
        if self._base is None and self._tensor is not None:
            return self._tensor.size == 1
        return self.base.size == 1

    @property
    def is_float(self) -> bool:
        return self.dtype in _FLOATS

    def along(self, axis: int) -> np.ndarray | None:
        """The ``shape[axis]`` numbers (float64) when the value varies along `axis` at most, else None."""
        b = self.base
        for i, d in enumerate(b.shape):
            if i != axis and d != 1:
                return None
        vec = np.asarray(b, dtype=np.float64).reshape(-1)
        return np.broadcast_to(vec, (self.shape[axis],)).copy()

    def array(self) -> np.ndarray:
        """The value as a read-only numpy array (a broadcast view: nothing is copied)."""
        return np.broadcast_to(self.base, self.shape)


def known_value(v: Value | None, opset: int, max_elements: int = DEFAULT_MAX_ELEMENTS) -> Known | Fail:
    """The value `v` always holds, when it is a stored constant (at most `max_elements` elements) or a fill chain
    (see the module docstring); otherwise a Fail that says where the chain stops being known."""
    if v is None:
        return Fail("the value is absent")
    return _known(v, opset, max_elements, 0)


def _known(v: Value, opset: int, cap: int, depth: int) -> Known | Fail:
    t = const_tensor(v)
    if t is not None:
        if t.is_sparse:
            return Fail(f"{describe_value(v)} is a sparse constant")
        if t.size > cap:
            return Fail(f"{describe_value(v)} has {t.size} elements, more than the {cap} a rule may read")
        return Known(None, tuple(int(d) for d in t.shape), t.dtype, stored=True, tensor=t)
    p = v.producer
    if p is None:
        return Fail(f"{describe_value(v)} is a graph input, not a known constant")
    if depth >= MAX_DEPTH:
        return Fail(f"{describe_value(v)}: the chain of producers is longer than {MAX_DEPTH}")
    op = p.op_type
    if p.domain not in _STD or v.index != 0 or op not in _STEPS:
        return Fail(f"{describe_value(v)} comes from {describe(p)}, which is not ConstantOfShape of a constant shape "
                    "(or a reshape of one)")
    if op == "ConstantOfShape":
        return _fill(v, p, cap)
    src = p.input(0)
    if src is None:
        return Fail(f"{describe(p)} has no data input")
    k = _known(src, opset, cap, depth + 1)
    if isinstance(k, Fail):
        return k
    return _STEPS[op](k, p, opset, cap)


def _ints(v: Value | None) -> list[int] | None:
    t = const_tensor(v)
    if t is None or t.dtype not in (DataType.INT64, DataType.INT32):
        return None
    return [int(x) for x in np.asarray(t.numpy()).reshape(-1)]


def _fill(v: Value, p: Node, cap: int) -> Known | Fail:
    shape = _ints(p.input(0))
    if shape is None:
        return Fail(f"the shape input of {describe(p)} is not an integer constant")
    if any(d < 0 for d in shape):
        return Fail(f"{describe(p)} has a negative dim in its shape {shape}")
    a = p.attr("value", None)
    if a is None:
        base = np.zeros(1, np.float32)  # ONNX: a float32 zero when `value` is absent
        dtype = int(DataType.FLOAT)
    else:
        if not isinstance(a, Tensor) or a.is_sparse or a.size != 1:
            return Fail(f"the value attribute of {describe(p)} is not a one-element tensor")
        base = np.asarray(a.numpy()).reshape(-1)
        dtype = a.dtype
    return Known(base.reshape((1,) * len(shape)), tuple(shape), dtype)


def _identity(k: Known, p: Node, opset: int, cap: int) -> Known | Fail:
    return Known(k.base, k.shape, k.dtype)


def _axes(p: Node, opset: int, since: int) -> list[int] | None | Fail:
    """Axes from the attribute (before opset `since`) or the constant input 1; None when absent."""
    if opset < since:
        a = p.attr("axes", None)
        return None if a is None else [int(x) for x in a]
    if p.input(1) is None:
        return None
    ax = _ints(p.input(1))
    if ax is None:
        return Fail(f"the axes of {describe(p)} are not a constant")
    return ax


def _unsqueeze(k: Known, p: Node, opset: int, cap: int) -> Known | Fail:
    axes = _axes(p, opset, 13)
    if isinstance(axes, Fail):
        return axes
    if not axes:
        return Fail(f"{describe(p)} has no axes")
    r = len(k.shape) + len(axes)
    norm = sorted(a + r if a < 0 else a for a in axes)
    if len(set(norm)) != len(norm) or any(a < 0 or a >= r for a in norm):
        return Fail(f"{describe(p)} has invalid axes {axes}")
    shape, base = list(k.shape), list(k.base.shape)
    for a in norm:
        shape.insert(a, 1)
        base.insert(a, 1)
    return Known(k.base.reshape(base), tuple(shape), k.dtype)


def _squeeze(k: Known, p: Node, opset: int, cap: int) -> Known | Fail:
    axes = _axes(p, opset, 13)
    if isinstance(axes, Fail):
        return axes
    r = len(k.shape)
    if axes is None:
        drop = {i for i, d in enumerate(k.shape) if d == 1}
    else:
        drop = {a + r if a < 0 else a for a in axes}
        if any(a < 0 or a >= r or k.shape[a] != 1 for a in drop):
            return Fail(f"{describe(p)} squeezes axes {axes} of shape {list(k.shape)}")
    keep = [i for i in range(r) if i not in drop]
    return Known(k.base.reshape([k.base.shape[i] for i in keep]), tuple(k.shape[i] for i in keep), k.dtype)


def _reshape(k: Known, p: Node, opset: int, cap: int) -> Known | Fail:
    target = _ints(p.input(1))
    if target is None:
        return Fail(f"the shape input of {describe(p)} is not an integer constant")
    allowzero = int(p.attr("allowzero", 0) or 0) if opset >= 14 else 0
    new: list[int] = []
    infer = -1
    for i, d in enumerate(target):
        if d == 0 and not allowzero:
            if i >= len(k.shape):
                return Fail(f"{describe(p)} copies dim {i} of a rank-{len(k.shape)} value")
            d = k.shape[i]
        elif d == -1:
            if infer >= 0:
                return Fail(f"{describe(p)} has two -1 dims")
            infer = i
            d = 1
        elif d < 0:
            return Fail(f"{describe(p)} has a negative dim {d}")
        new.append(d)
    total = k.size
    known_part = int(np.prod(new, dtype=np.int64))
    if infer >= 0:
        if known_part == 0 or total % known_part:
            return Fail(f"{describe(p)} cannot infer its -1 dim")
        new[infer] = total // known_part
    elif known_part != total:
        return Fail(f"{describe(p)} reshapes {total} elements to {new}")
    # Adding or removing size-1 axes keeps the varying axes in order: the base follows without being expanded.
    old_big = [i for i, d in enumerate(k.shape) if d != 1]
    new_big = [i for i, d in enumerate(new) if d != 1]
    if [k.shape[i] for i in old_big] == [new[i] for i in new_big]:
        base_shape = [1] * len(new)
        for i_old, i_new in zip(old_big, new_big):
            base_shape[i_new] = k.base.shape[i_old]
        return Known(k.base.reshape(base_shape), tuple(new), k.dtype)
    if k.is_fill:
        return Known(k.base.reshape((1,) * len(new)), tuple(new), k.dtype)
    if total > cap:
        return Fail(f"{describe(p)} would make a known value of {total} elements materialize (cap {cap})")
    return Known(np.ascontiguousarray(k.array()).reshape(new), tuple(new), k.dtype)


def _expand(k: Known, p: Node, opset: int, cap: int) -> Known | Fail:
    target = _ints(p.input(1))
    if target is None:
        return Fail(f"the shape input of {describe(p)} is not an integer constant")
    r = max(len(target), len(k.shape))
    a = [1] * (r - len(k.shape)) + list(k.shape)
    b = [1] * (r - len(target)) + list(target)
    out = []
    for x, y in zip(a, b):
        if x != y and x != 1 and y != 1:
            return Fail(f"{describe(p)} cannot broadcast {list(k.shape)} to {target}")
        out.append(y if x == 1 else x)
    base = k.base.reshape([1] * (r - k.base.ndim) + list(k.base.shape))
    return Known(base, tuple(out), k.dtype)


_STEPS = {"ConstantOfShape": None, "Identity": _identity, "Unsqueeze": _unsqueeze, "Squeeze": _squeeze,
          "Reshape": _reshape, "Expand": _expand}


def channel_vector(k: Known, out_rank: int | None, channels: int, what: str) -> np.ndarray | Fail:
    """The per-channel vector (length `channels`, float64) that `k`, broadcast against an [N, C, ...] tensor of
    rank `out_rank` (None: unknown), amounts to; or why it is not one (it varies along another axis, or would
    enlarge the result)."""
    shape = k.shape
    if out_rank is None:
        # without the rank only a value that cannot change the result's shape or pick an axis is safe: every dim is
        # 1 and the rank is at most 2 (BatchNormalization and Conv outputs have rank >= 2)
        if len(shape) > 2 or any(d != 1 for d in shape):
            return Fail(f"{what} has shape {list(shape)} and the rank of the result is unknown")
        vec = np.asarray(k.base, dtype=np.float64).reshape(-1)
        return np.full(channels, vec[0]) if vec.size else Fail(f"{what} is empty")
    if len(shape) > out_rank:
        return Fail(f"{what} has rank {len(shape)} > {out_rank}: broadcasting would change the result's rank")
    pad = out_rank - len(shape)
    full = (1,) * pad + shape
    for i, d in enumerate(full):
        if i == 1:
            if d not in (1, channels):
                return Fail(f"{what} has {d} values along the channel axis, the result has {channels} channels")
        elif d != 1:
            return Fail(f"{what} has shape {list(shape)}: it varies along axis {i}, not only along the channels")
    if pad >= 2 or shape[1 - pad] == 1:
        vec = np.asarray(k.base, dtype=np.float64).reshape(-1)
        return np.full(channels, vec[0])
    got = k.along(1 - pad)
    assert got is not None  # every other dim of the shape is 1, so the base varies along the channel axis at most
    return got
