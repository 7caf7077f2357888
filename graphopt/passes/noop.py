"""eliminate-noops: remove ops that compute their input unchanged, and shorten chains that collapse.

Each case is a helper ``_try_<case>(node, ctx) -> bool`` that checks everything first and mutates only when it
returns True. A no-op's readers are made to read its input (:meth:`Value.replace_all_uses_with`, which keeps graph
output names), then the node is removed once nothing reads it. Cases:

* Identity; Dropout in inference (no training_mode, or a constant false one; its mask unused);
* Cast (and CastLike) to the input's own type;
* Reshape, Expand, Squeeze, Unsqueeze whose output shape provably equals the input's (static shapes, constant
  shape operands, or equal symbolic shapes from ``ctx.symbols`` when it knows them);
* Transpose with the identity permutation; Transpose of a Transpose (composed into one, removed when identity);
* Squeeze of an Unsqueeze over the same axes, and Unsqueeze of a Squeeze over the same axes;
* Pad with all-zero pads; Slice over the full range of every sliced axis; Concat of one input; Split into one;
* x + 0, 0 + x, x - 0, x * 1, 1 * x, x / 1, x ^ 1, x and true, x or false, where the constant's broadcast provably leaves x's shape and
  dtype unchanged (for floats x + 0 turns -0.0 into +0.0: equal values, as every ONNX optimizer assumes);
* Reshape of a Reshape (the first used only by the second, and the second's target has no 0 that would copy an
  intermediate dim); Cast of a Cast whose intermediate type holds every value of the source type exactly;
* a chain of Reshape/Squeeze/Unsqueeze/Flatten that ends in the shape of a value higher up the chain (that value);
* RNN/GRU/LSTM initial states given as zeros (the default when absent).

An Identity whose output is a graph output that its input cannot take over (a graph input, an outer value, a value
that is already an output) is left alone: removing it would make the IR re-create it.

Every case decides from the node, its inputs and their producers (up to a chain of reshape-like ops) and inferred
shapes. In a later run of the pipeline (``ctx.changes``: what changed since this pass last ran) only the changed
nodes, the readers of their outputs, and the reshape-like chains below those are looked at, in graph order.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..ir.constants import constant_value
from ..ir.core import Node, Value
from ..ir.tensors import DataType, numpy_dtype
from .base import Pass, PassResult

if TYPE_CHECKING:
    from ..ir.core import Model
    from ..jit.context import JitContext

log = logging.getLogger(__name__)

_MAX_CONST = 4096  # elements of a constant operand read to prove a no-op (pads, axes, zeros, ones...)
_INT32_MAX = (1 << 31) - 1
_RETRIES = 4  # cases tried again on a node a case rewrote in place (Cast chain -> same-type Cast)


@dataclass(frozen=True)
class EliminateNoops(Pass):
    """Remove no-op nodes and collapse Transpose, Reshape, Cast and Squeeze/Unsqueeze chains (see module docs)."""

    name: ClassVar[str] = "eliminate-noops"
    kind: ClassVar[str] = "cleanup"
    summary: ClassVar[str] = "remove ops that return their input unchanged; collapse Transpose/Reshape/Cast chains"
    presets: ClassVar[frozenset[str]] = frozenset({"O1", "O2", "O3"})

    uses_symbols: ClassVar[bool] = True

    def run(self, model: Model, ctx: JitContext) -> PassResult:
        counts: collections.Counter[str] = collections.Counter()
        changes = getattr(ctx, "changes", None)
        only = None if changes is None or changes.full else _candidates(changes)
        if only is not None and not only:
            return PassResult.of()
        for g in list(model.graph.all_graphs()):
            for n in g:  # topological order: a chain's head is simplified before its tail looks at it
                if n.domain not in ("", "ai.onnx"):
                    continue
                cases = _CASES.get(n.op_type)
                if not cases or (only is not None and n not in only):
                    continue
                ctx.current_node = n
                for _ in range(_RETRIES):
                    hit = None
                    for case, fn in cases:
                        if fn(n, ctx):
                            hit = case
                            break
                    if hit is None:
                        break
                    counts[hit] += 1
                    if not n.is_alive:
                        break
        ctx.current_node = None
        return PassResult.of(**counts)


def _candidates(changes: Any) -> dict[Node, None]:
    """The nodes a case may newly apply to after `changes`: the changed nodes, the readers of their outputs, and
    the reshape-like readers below those, as deep as reshape_back looks."""
    out = changes.frontier()
    work = [(n, 0) for n in out if n.op_type in _RESHAPE_LIKE]
    while work:
        n, d = work.pop()
        if d >= _CHAIN_DEPTH:
            continue
        for v in n._outputs:
            for u, _ in v._uses:
                if u.op_type in _RESHAPE_LIKE and u not in out:
                    out[u] = None
                    work.append((u, d + 1))
    return out


# ----------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------
def _const(v: Value | None) -> np.ndarray | None:
    """The numbers of a small constant (a non-overridable initializer or a Constant node's output), else None."""
    t = constant_value(v)
    if t is None or t.is_sparse or t.size > _MAX_CONST:
        return None
    return np.asarray(t.numpy())


def _const_ints(v: Value | None) -> list[int] | None:
    a = _const(v)
    if a is None or a.dtype.kind not in "iu":
        return None
    return [int(x) for x in a.reshape(-1)]


def _dims(v: Value, ctx: JitContext) -> list[int | None] | None:
    """v's dims (int when static, None when not), or None when the rank is unknown. Declared types first, then
    the symbol table (which may not know the value: then it says None)."""
    shape = v.shape
    dims: list[int | None] | None = None
    if shape is not None:
        dims = [d if isinstance(d, int) else None for d in shape]
    ss = ctx.symbols.shape_of(v)
    sdims = getattr(ss, "dims", None) if ss is not None else None
    if sdims is not None:
        sym = [getattr(d, "c", None) for d in sdims]
        sym = [d if isinstance(d, int) else None for d in sym]
        if dims is None:
            dims = sym
        elif len(sym) == len(dims):
            dims = [a if a is not None else b for a, b in zip(dims, sym)]
    return dims


def _rank(v: Value, ctx: JitContext) -> int | None:
    d = _dims(v, ctx)
    return None if d is None else len(d)


def _same_shape(a: Value, b: Value, ctx: JitContext) -> bool:
    """Provably equal shapes: both fully static and equal, or equal symbolic shapes from the symbol table."""
    da, db = _dims(a, ctx), _dims(b, ctx)
    if da is not None and db is not None and None not in da and None not in db:
        return da == db
    sa, sb = ctx.symbols.shape_of(a), ctx.symbols.shape_of(b)
    if sa is None or sb is None or getattr(sa, "dims", None) is None:
        return False
    return bool(sa == sb)


def _dtype(v: Value | None, ctx: JitContext) -> int | None:
    """The element type: declared, the initializer's, or what the symbol table inferred."""
    if v is None:
        return None
    d = v.dtype
    if d:
        return d
    c = v.const
    if c is not None:
        return int(c.dtype)
    t = constant_value(v)
    if t is not None:
        return int(t.dtype)
    dtype_of = getattr(ctx.symbols, "dtype_of", None)
    d = dtype_of(v) if dtype_of is not None else None
    return int(d) if d else None


def _opset(node: Node) -> int:
    g = node.graph
    m = g.model if g is not None else None
    return (m.opset("") if m is not None else None) or 1


def _producer(v: Value | None, op_type: str) -> Node | None:
    p = v.producer if v is not None else None
    if p is None or p.op_type != op_type or p.domain not in ("", "ai.onnx"):
        return None
    return p


def _only_reader(v: Value, node: Node) -> bool:
    """`node` is the one reader of `v` (through one input), and no graph lists `v` as an output."""
    uses = v.uses()
    return len(uses) == 1 and uses[0][0] is node and not v.is_graph_output()


def _forward(node: Node, out: Value, x: Value) -> bool:
    """Make everything that reads `out` read `x`, then remove `node` if nothing reads it any more."""
    if out.is_graph_output() and node.op_type == "Identity" and not all(
            g.can_alias_output(x) for g in out.output_graphs()):
        return False  # the IR would keep the output's name with a new Identity: no progress, endless loop
    out.replace_all_uses_with(x)
    _remove_if_dead(node)
    return True


def _remove_if_dead(node: Node) -> None:
    if node.is_alive and not any(o.is_used() for o in node.outputs):
        assert node.graph is not None
        node.graph.remove(node)


def _axes(node: Node, index: int = 1) -> list[int] | None:
    """Axes of Squeeze/Unsqueeze: the attribute before opset 13, the constant input from 13 on (None: absent or
    not constant)."""
    if _opset(node) < 13:
        a = node.attr("axes", None)
        return None if a is None else [int(x) for x in a]
    if node.input(index) is None:
        return None
    return _const_ints(node.input(index))


def _norm(axes: list[int], rank: int | None) -> list[int] | None:
    """Axes made non-negative (needs `rank` only when some axis is negative); None when out of range."""
    out = []
    for a in axes:
        if a < 0:
            if rank is None:
                return None
            a += rank
        if a < 0 or (rank is not None and a >= rank):
            return None
        out.append(a)
    return out


def _broadcast_keeps(x: Value, cshape: tuple[int, ...], ctx: JitContext) -> bool:
    """Broadcasting x with a tensor of shape `cshape` provably yields x's shape."""
    if not cshape:
        return True  # a scalar never changes the shape (rank included)
    dims = _dims(x, ctx)
    if dims is None or len(dims) < len(cshape):
        return False
    for cd, xd in zip(reversed(cshape), reversed(dims)):
        if cd != 1 and xd != cd:  # xd None (unknown) never proves it
            return False
    return True


# ----------------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------------
def _try_identity(node: Node, ctx: JitContext) -> bool:
    x = node.input(0)
    # Keeps an Identity without input (invalid, not ours to judge).
    if x is None:
        return False
    return _forward(node, node.output, x)


def _try_dropout(node: Node, ctx: JitContext) -> bool:
    x = node.input(0)
    if x is None:
        return False
    opset = _opset(node)
    # Keeps Dropout in training mode: before opset 7 unless is_test=1; from 12 unless training_mode is absent or
    # a constant false.
    if opset < 7 and not int(node.attr("is_test", 0)):
        return False
    tm = node.input(2)
    if tm is not None:
        v = _const(tm)
        if v is None or v.size != 1 or bool(v.reshape(-1)[0]):
            return False
    # Keeps Dropout whose mask someone reads (it would need a constant of ones).
    if len(node.outputs) > 1 and node.outputs[1].is_used():
        return False
    return _forward(node, node.output, x)


def _try_cast_same(node: Node, ctx: JitContext) -> bool:
    x = node.input(0)
    # Keeps a Cast whose input type is unknown or different.
    if x is None or _dtype(x, ctx) is None or int(node.attr("to", 0)) != _dtype(x, ctx):
        return False
    return _forward(node, node.output, x)


def _try_castlike_same(node: Node, ctx: JitContext) -> bool:
    x, like = node.input(0), node.input(1)
    # Keeps a CastLike whose types are unknown or different.
    if x is None or like is None or _dtype(x, ctx) is None or _dtype(like, ctx) != _dtype(x, ctx):
        return False
    return _forward(node, node.output, x)


_INT_BITS = {DataType.INT8: 8, DataType.INT16: 16, DataType.INT32: 32, DataType.INT64: 64}
_UINT_BITS = {DataType.UINT8: 8, DataType.UINT16: 16, DataType.UINT32: 32, DataType.UINT64: 64}
_FLOAT_DIGITS = {DataType.FLOAT16: 11, DataType.BFLOAT16: 8, DataType.FLOAT: 24, DataType.DOUBLE: 53}
_FLOAT_WIDER = {DataType.FLOAT16: {DataType.FLOAT, DataType.DOUBLE},
                DataType.BFLOAT16: {DataType.FLOAT, DataType.DOUBLE}, DataType.FLOAT: {DataType.DOUBLE}}


def holds_exactly(src: int, mid: int) -> bool:
    """Whether type `mid` represents every value of type `src` exactly (so a cast through it loses nothing)."""
    if src == mid:
        return True
    if src == DataType.BOOL:
        return mid in _INT_BITS or mid in _UINT_BITS or mid in _FLOAT_DIGITS
    if src in _INT_BITS:
        n = _INT_BITS[src]
        if mid in _INT_BITS:
            return _INT_BITS[mid] >= n
        return mid in _FLOAT_DIGITS and _FLOAT_DIGITS[mid] >= n - 1  # |min| = 2^(n-1) is a power of two
    if src in _UINT_BITS:
        n = _UINT_BITS[src]
        if mid in _UINT_BITS:
            return _UINT_BITS[mid] >= n
        if mid in _INT_BITS:
            return _INT_BITS[mid] > n
        return mid in _FLOAT_DIGITS and _FLOAT_DIGITS[mid] >= n
    return mid in _FLOAT_WIDER.get(src, ())  # type: ignore[call-overload]


def _try_cast_chain(node: Node, ctx: JitContext) -> bool:
    first = _producer(node.input(0), "Cast")
    # Keeps a Cast whose input is not a Cast.
    if first is None or first.input(0) is None:
        return False
    x = first.input(0)
    assert x is not None
    src, mid = _dtype(x, ctx), int(first.attr("to", 0))
    # Keeps the chain when the source type is unknown or the intermediate type loses values
    # (float32 -> float16 -> float32 rounds; int32 -> int64 -> float64 does not).
    if src is None or not holds_exactly(src, mid):
        return False
    node.replace_input_with(0, x)
    _remove_if_dead(first)
    return True


def _reshape_target(node: Node) -> list[int] | None:
    if _opset(node) < 5:
        s = node.attr("shape", None)
        return None if s is None else [int(d) for d in s]
    return _const_ints(node.input(1))


def _try_reshape_chain(node: Node, ctx: JitContext) -> bool:
    first = _producer(node.input(0), "Reshape")
    # Keeps a Reshape whose input is not a Reshape read only by it.
    if first is None or first.input(0) is None or not _only_reader(first.output, node):
        return False
    target = _reshape_target(node)
    # Keeps the chain when the second target is not constant, or has a 0 that copies a dim of the intermediate
    # shape (with allowzero=1 a 0 is a literal size and depends on nothing).
    if target is None:
        return False
    allowzero = int(node.attr("allowzero", 0)) if _opset(node) >= 14 else 0
    if 0 in target and not allowzero:
        return False
    x = first.input(0)
    assert x is not None
    # the result depends only on the element count, which the first Reshape keeps
    node.replace_input_with(0, x)
    _remove_if_dead(first)
    return True


def _try_reshape_same(node: Node, ctx: JitContext) -> bool:
    x = node.input(0)
    if x is None:
        return False
    if _same_shape(x, node.output, ctx):
        return _forward(node, node.output, x)
    target = _reshape_target(node)
    dims = _dims(x, ctx)
    # Keeps a Reshape whose target or input rank is unknown, or whose target changes the rank.
    if target is None or dims is None or len(target) != len(dims):
        return False
    allowzero = int(node.attr("allowzero", 0)) if _opset(node) >= 14 else 0
    unmatched = []
    for i, (t, d) in enumerate(zip(target, dims)):
        if t == 0 and not allowzero:
            continue  # copies x's own dim
        if d is not None and t == d:
            continue
        unmatched.append(i)
    # Keeps a Reshape with a target dim that differs from (or is not provably) x's, except one -1 when every
    # other dim matches: then -1 is x's dim by the element count. (With a zero-sized dim a -1 is ambiguous and
    # the original op fails; the forwarded graph does not: the only inputs where behaviour differs are errors.)
    if len(unmatched) > 1 or (unmatched and target[unmatched[0]] != -1):
        return False
    if unmatched and any(d == 0 for d in dims):
        return False
    return _forward(node, node.output, x)


def _try_expand_same(node: Node, ctx: JitContext) -> bool:
    x = node.input(0)
    if x is None:
        return False
    if _same_shape(x, node.output, ctx):
        return _forward(node, node.output, x)
    shape = _const_ints(node.input(1))
    # Keeps an Expand whose target is not constant or may grow the shape (a 1 never does; an equal static dim
    # does not).
    if shape is None or any(s < 0 for s in shape) or not _broadcast_keeps(x, tuple(shape), ctx):
        return False
    return _forward(node, node.output, x)


def _try_same_shape(node: Node, ctx: JitContext) -> bool:
    """Squeeze/Unsqueeze whose output shape provably equals the input's."""
    x = node.input(0)
    if x is None:
        return False
    if _same_shape(x, node.output, ctx):
        return _forward(node, node.output, x)
    axes = _axes(node)
    if axes is None and _opset(node) >= 13 and node.input(1) is not None:
        return False  # axes given but not constant
    if node.op_type == "Unsqueeze":
        # Keeps an Unsqueeze that inserts at least one axis.
        if axes is None or axes:
            return False
        return _forward(node, node.output, x)
    # Squeeze: keeps one whose axes are given (they must name dims of size 1, so it changes the rank) unless
    # empty, and one without axes unless x's dims are all static and none is 1.
    if axes:
        return False
    dims = _dims(x, ctx)
    if dims is None or None in dims or 1 in dims:
        return False
    return _forward(node, node.output, x)


def _try_transpose_identity(node: Node, ctx: JitContext) -> bool:
    x = node.input(0)
    if x is None:
        return False
    perm = _perm(node, _rank(x, ctx))
    # Keeps a Transpose whose permutation is unknown (no perm and unknown rank) or moves an axis.
    if perm is None or perm != list(range(len(perm))):
        return False
    return _forward(node, node.output, x)


def _perm(node: Node, rank: int | None) -> list[int] | None:
    p = node.attr("perm", None)
    if p is not None:
        p = [int(i) for i in p]
        return p if sorted(p) == list(range(len(p))) else None
    return None if rank is None else list(range(rank))[::-1]


def _try_transpose_chain(node: Node, ctx: JitContext) -> bool:
    first = _producer(node.input(0), "Transpose")
    # Keeps a Transpose whose input is not a Transpose.
    if first is None or first.input(0) is None:
        return False
    x = first.input(0)
    assert x is not None
    p1 = _perm(first, _rank(x, ctx))
    p2 = _perm(node, None if p1 is None else len(p1))
    # Keeps the chain when either permutation is unknown or they disagree on the rank.
    if p1 is None or p2 is None or len(p1) != len(p2):
        return False
    composed = [p1[i] for i in p2]
    if composed == list(range(len(composed))):
        ok = _forward(node, node.output, x)
        if ok:
            _remove_if_dead(first)
        return ok
    # one Transpose instead of two (the first stays only if someone else reads it)
    node.replace_input_with(0, x)
    node.set_attr("perm", composed)
    _remove_if_dead(first)
    return True


def _try_squeeze_of_unsqueeze(node: Node, ctx: JitContext) -> bool:
    inner_op = "Unsqueeze" if node.op_type == "Squeeze" else "Squeeze"
    first = _producer(node.input(0), inner_op)
    # Keeps a Squeeze (Unsqueeze) whose input is not an Unsqueeze (Squeeze).
    if first is None or first.input(0) is None:
        return False
    x = first.input(0)
    assert x is not None
    a1, a2 = _axes(first), _axes(node)
    # Keeps the pair when either axes list is absent or not constant.
    if not a1 or not a2:
        return False
    r = _rank(x, ctx)
    # Unsqueeze then Squeeze: both lists index the rank after unsqueezing; Squeeze then Unsqueeze: both index
    # x's rank (a Squeeze over given axes only succeeds on dims of size 1, so the Unsqueeze restores them).
    rank = None if r is None else (r + len(a1) if inner_op == "Unsqueeze" else r)
    n1, n2 = _norm(a1, rank), _norm(a2, rank)
    if n1 is None or n2 is None or len(set(n1)) != len(n1) or sorted(n1) != sorted(set(n2)) or len(n2) != len(n1):
        return False
    ok = _forward(node, node.output, x)
    if ok:
        _remove_if_dead(first)
    return ok


def _try_pad_zero(node: Node, ctx: JitContext) -> bool:
    x = node.input(0)
    if x is None:
        return False
    opset = _opset(node)
    if opset < 11:
        p = node.attr("pads", None) if opset >= 2 else node.attr("paddings", None)
        pads = None if p is None else [int(v) for v in p]
    else:
        pads = _const_ints(node.input(1))
    # Keeps a Pad whose pads are unknown or not all zero (any mode pads nothing with zero pads).
    if pads is None or any(pads):
        return False
    return _forward(node, node.output, x)


def _try_slice_full(node: Node, ctx: JitContext) -> bool:
    x = node.input(0)
    if x is None:
        return False
    if _opset(node) < 10:
        starts = node.attr("starts", None)
        ends = node.attr("ends", None)
        if starts is None or ends is None:
            return False
        starts, ends = [int(v) for v in starts], [int(v) for v in ends]
        ax = node.attr("axes", None)
        axes = list(range(len(starts))) if ax is None else [int(v) for v in ax]
        steps = [1] * len(starts)
    else:
        starts, ends = _const_ints(node.input(1)), _const_ints(node.input(2))
        if starts is None or ends is None:
            return False
        axes = list(range(len(starts))) if node.input(3) is None else _const_ints(node.input(3))
        steps = [1] * len(starts) if node.input(4) is None else _const_ints(node.input(4))
    # Keeps a Slice whose operands are not constant or not aligned.
    if axes is None or steps is None or not (len(starts) == len(ends) == len(axes) == len(steps)):
        return False
    dims = _dims(x, ctx)
    norm = _norm(axes, None if dims is None else len(dims))
    if norm is None or len(set(norm)) != len(norm):
        return False
    for s, e, a, st in zip(starts, ends, norm, steps):
        d = dims[a] if dims is not None and a < len(dims) else None
        # Keeps a Slice with a step other than 1 or a start other than 0 (or -dim) on some axis.
        if st != 1 or not (s == 0 or (d is not None and s <= -d)):
            return False
        # Keeps a Slice whose end may cut: it must reach the static dim, or be INT32_MAX or more (the "to the
        # end" sentinels exporters use) when the dim is unknown.
        if not ((d is not None and e >= d) or e >= _INT32_MAX):
            return False
    return _forward(node, node.output, x)


def _try_concat_one(node: Node, ctx: JitContext) -> bool:
    # Keeps a Concat of several inputs.
    if len(node.inputs) != 1 or node.input(0) is None:
        return False
    x = node.input(0)
    assert x is not None
    return _forward(node, node.output, x)


def _try_split_one(node: Node, ctx: JitContext) -> bool:
    x = node.input(0)
    # Keeps a Split into several outputs.
    if x is None or len(node.outputs) != 1:
        return False
    if _opset(node) < 13:
        split = node.attr("split", None)
        split = None if split is None else [int(v) for v in split]
    elif node.input(1) is not None:
        split = _const_ints(node.input(1))
        if split is None:
            return False
    else:
        split = None
    # Keeps a Split whose one size is not provably the whole dim (the model would fail otherwise).
    if split is not None:
        dims = _dims(x, ctx)
        if dims is None:
            return False
        axis = _norm([int(node.attr("axis", 0))], len(dims))
        if axis is None or split != [dims[axis[0]]]:
            return False
    return _forward(node, node.output, x)


_NEUTRAL = {"Add": 0, "Sub": 0, "Mul": 1, "Div": 1, "Pow": 1, "And": True, "Or": False}


def _first_is(v: Value, k: int) -> bool:
    """A cheap necessary condition for `v` to be a small constant all equal to `k`: its first element is `k`
    (read from the stored bytes; the tensor is not decoded)."""
    t = constant_value(v)
    if t is None or t.is_sparse:
        return False
    size = t.size
    if size == 0 or size > _MAX_CONST:
        return False
    try:
        if not t.is_loaded:
            data = t.content()
            if isinstance(data, np.ndarray):
                return False
            pats = _NEUTRAL_BYTES.get((t.dtype, k))
            if pats is None:
                dt = numpy_dtype(t.dtype)
                if dt == object:
                    return False
                one = np.array(k, dtype=dt.newbyteorder("<"))
                # -0.0 is a neutral 0 too; booleans have no negation
                pats = _NEUTRAL_BYTES[(t.dtype, k)] = (
                    {one.tobytes()} if dt == np.bool_ else {one.tobytes(), (-one).tobytes()})
            w = len(next(iter(pats)))
            return bytes(data[:w]) in pats
        first = np.asarray(t.numpy()).reshape(-1)[0]
    except Exception:  # noqa: BLE001 - an unreadable tensor is not a neutral element
        return False
    return bool(first == k)


# (dtype, neutral value) -> the little-endian bytes of the value and of its negation (-0.0 is a neutral 0 too)
_NEUTRAL_BYTES: dict[tuple[int, int], set[bytes]] = {}
_COMMUTATIVE = frozenset({"Add", "Mul", "And", "Or"})


def _try_neutral(node: Node, ctx: JitContext) -> bool:
    """x + 0, 0 + x, x - 0, x * 1, 1 * x, x / 1, x ^ 1, x and true, x or false."""
    op = node.op_type
    a, b = node.input(0), node.input(1)
    if a is None or b is None:
        return False
    sides = [(a, b)] + ([(b, a)] if op in _COMMUTATIVE else [])
    for x, c in sides:
        if not _first_is(c, _NEUTRAL[op]):
            continue  # (most constant operands: a bias, a scale; decided from one element, nothing decoded)
        arr = _const(c)
        # Keeps an op whose other operand is not a small constant of the neutral value (0 - x, 1 / x included).
        if arr is None or arr.dtype == object or arr.size == 0 or not np.all(arr == _NEUTRAL[op]):
            continue
        # Keeps an op whose result dtype is not x's (Pow's result always has the base's type).
        if op != "Pow" and _dtype(x, ctx) is not None and _dtype(x, ctx) != _dtype(c, ctx):
            continue
        # Keeps an op where broadcasting with the constant may grow x's shape.
        if not _broadcast_keeps(x, tuple(arr.shape), ctx):
            continue
        return _forward(node, node.output, x)
    return False


_RESHAPE_LIKE = frozenset({"Reshape", "Squeeze", "Unsqueeze", "Flatten"})
_CHAIN_DEPTH = 8  # reshape-like ancestors looked through


def _try_reshape_back(node: Node, ctx: JitContext) -> bool:
    """A reshape-like op (Reshape, Squeeze, Unsqueeze, Flatten) whose output shape provably equals the shape of a
    value further up a chain of reshape-like ops: the chain only relabels the same row-major elements, so that
    value is the result (e.g. Reshape(Squeeze(Shape(x)[0:1]), [1]) is Shape(x)[0:1])."""
    out = node.output
    x = node.input(0)
    for _ in range(_CHAIN_DEPTH):
        p = x.producer if x is not None else None
        # Keeps the node when the chain above its input stops at something that is not a reshape-like op.
        if p is None or p.op_type not in _RESHAPE_LIKE or p.domain not in ("", "ai.onnx"):
            return False
        x = p.input(0)
        if x is None:
            return False
        # Keeps the node unless an ancestor's shape is provably the output's (static or equal symbolic shapes).
        if _same_shape(x, out, ctx):
            return _forward(node, out, x)
    return False


_RNN_STATE_INPUTS = {"RNN": (5,), "GRU": (5,), "LSTM": (5, 6)}


def _is_zero_fill(v: Value) -> bool:
    """`v` is provably all zeros: a ConstantOfShape without a value or with a zero value, or a zero constant."""
    p = v.producer
    if p is not None and p.op_type == "ConstantOfShape" and p.domain in ("", "ai.onnx"):
        t = p.attr("value", None)
        if t is None:
            return True
        if t.size > _MAX_CONST:
            return False
        a = np.asarray(t.numpy())
        return a.dtype != object and bool(np.all(a == 0))
    a = _const(v)
    return a is not None and a.dtype != object and a.size > 0 and bool(np.all(a == 0))


def _try_rnn_zero_state(node: Node, ctx: JitContext) -> bool:
    """RNN/GRU/LSTM initial_h (and LSTM's initial_c) given as zeros: the op's default when absent. Exporters build
    these zeros from the input's batch size (Shape, Gather, Concat, ConstantOfShape); dropping the input lets DCE
    remove that chain. Same result wherever the original runs (the state must be zeros of the right shape)."""
    hit = False
    for i in _RNN_STATE_INPUTS[node.op_type]:
        v = node.input(i)
        # Keeps a state input that is absent or not provably all zeros.
        if v is None or not _is_zero_fill(v):
            continue
        node.replace_input_with(i, None)
        if v.producer is not None and not v.is_used():
            _remove_if_dead(v.producer)
        hit = True
    return hit


_Case = tuple[str, Callable[[Node, Any], bool]]
_CASES: dict[str, list[_Case]] = {
    "Identity": [("identity", _try_identity)],
    "Dropout": [("dropout", _try_dropout)],
    "Cast": [("cast_same_type", _try_cast_same), ("cast_chain", _try_cast_chain)],
    "CastLike": [("cast_same_type", _try_castlike_same)],
    "Reshape": [("reshape_chain", _try_reshape_chain), ("reshape_same_shape", _try_reshape_same),
                ("reshape_back", _try_reshape_back)],
    "Flatten": [("reshape_back", _try_reshape_back)],
    "RNN": [("rnn_zero_state", _try_rnn_zero_state)],
    "GRU": [("rnn_zero_state", _try_rnn_zero_state)],
    "LSTM": [("rnn_zero_state", _try_rnn_zero_state)],
    "Expand": [("expand_same_shape", _try_expand_same)],
    "Squeeze": [("squeeze_unsqueeze", _try_squeeze_of_unsqueeze), ("squeeze_same_shape", _try_same_shape),
                ("reshape_back", _try_reshape_back)],
    "Unsqueeze": [("squeeze_unsqueeze", _try_squeeze_of_unsqueeze), ("unsqueeze_same_shape", _try_same_shape),
                  ("reshape_back", _try_reshape_back)],
    "Transpose": [("transpose_chain", _try_transpose_chain), ("transpose_identity", _try_transpose_identity)],
    "Pad": [("pad_zero", _try_pad_zero)],
    "Slice": [("slice_full", _try_slice_full)],
    "Concat": [("concat_one", _try_concat_one)],
    "Split": [("split_one", _try_split_one)],
    "Add": [("neutral_element", _try_neutral)],
    "Sub": [("neutral_element", _try_neutral)],
    "Mul": [("neutral_element", _try_neutral)],
    "Div": [("neutral_element", _try_neutral)],
    "Pow": [("neutral_element", _try_neutral)],
    "And": [("neutral_element", _try_neutral)],
    "Or": [("neutral_element", _try_neutral)],
}
