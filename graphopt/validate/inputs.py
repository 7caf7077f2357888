"""Validation inputs: the input specs onnxruntime reports, dim bindings per trial, deterministic random feeds
per dtype, the ranges of integer inputs that index a table (:func:`index_ranges`), and real inputs from an ``.npz``
file."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UsageError

if TYPE_CHECKING:
    from ..ir.core import Model, Node, Value

log = logging.getLogger("graphopt.validate")

_NP_OF_ORT: dict[str, Any] = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int8)": np.int8, "tensor(int16)": np.int16, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16, "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_, "tensor(string)": np.object_,
}

# Integer inputs are often ids, indices or sizes: draw them from a small range, and when the original model
# rejects them (an index out of range), retry with a smaller one before giving up. Inputs known to index a table
# (see index_ranges) are drawn from the table's whole range instead, at the first try.
INT_RANGES = (4, 2, 1)

_INT_DTYPES = frozenset({2, 3, 4, 5, 6, 7, 12, 13})  # onnx uint8, int8, uint16, int16, int32, int64, uint32, uint64
# Ops through which an integer value reaches a consumer unchanged element by element (moved, copied, selected,
# retyped between integer types): a bound on what the consumer accepts is a bound on the value. The data input only.
_VALUE_PRESERVING = {"Identity": (0,), "Cast": (0,), "Unsqueeze": (0,), "Squeeze": (0,), "Reshape": (0,),
                     "Flatten": (0,), "Transpose": (0,), "Expand": (0,), "Slice": (0,), "Tile": (0,)}


# ================================================================================================================
# Inputs
# ================================================================================================================
@dataclass(frozen=True)
class InputSpec:
    name: str
    type: str                           # onnxruntime type string, e.g. "tensor(float)"
    shape: tuple[int | str | None, ...] | None


def symbols_of(specs: Sequence[InputSpec]) -> list[str]:
    """The symbolic dims of the inputs, in order of first appearance; an unnamed dynamic dim is named
    ``<input>:<axis>``."""
    out: dict[str, None] = {}
    for s in specs:
        for i, d in enumerate(s.shape or ()):
            if isinstance(d, str) and d:
                out[d] = None
            elif d is None or (isinstance(d, int) and d < 0) or d == "":
                out[f"{s.name}:{i}"] = None
    return list(out)


def trial_bindings(symbols: Sequence[str], dims: Mapping[str, int], trials: int) -> list[dict[str, int]]:
    """Dim bindings for `trials` trials. Symbols in `dims` keep their size; the others get, in trial t: all the
    same size 2 + t when t is even, distinct sizes 2 + t, 3 + t, ... when t is odd, so that a rewrite that is only
    right for one shape, or that confuses two dims, is caught."""
    out = []
    free = [s for s in symbols if s not in dims]
    for t in range(max(1, trials)):
        b = {s: int(dims[s]) for s in symbols if s in dims}
        for k, s in enumerate(free):
            b[s] = 2 + t + (k if t % 2 == 1 else 0)
        out.append(b)
    return out


def _shape_for(spec: InputSpec, binding: Mapping[str, int]) -> list[int]:
    shape = []
    for i, d in enumerate(spec.shape or ()):
        if isinstance(d, int) and d >= 0:
            shape.append(d)
        elif isinstance(d, str) and d:
            shape.append(int(binding.get(d, 2)))
        else:
            shape.append(int(binding.get(f"{spec.name}:{i}", 2)))
    return shape


def random_feeds(specs: Sequence[InputSpec], binding: Mapping[str, int], seed: int, *,
                 int_high: int = INT_RANGES[0], int_bounds: Mapping[str, int] | None = None,
                 bounded_high: int | None = None) -> dict[str, np.ndarray]:
    """Deterministic random inputs: floats uniform in [-1, 1), integers in [0, int_high), booleans, short
    strings. Integer inputs named in `int_bounds` (ids that index a table, see :func:`index_ranges`) are drawn
    from [0, bound) instead, or [0, min(bound, bounded_high)) when `bounded_high` is given (the fallback when
    the model still rejects them). Raises UsageError for input types that cannot be drawn (sequences, maps,
    bfloat16, ...)."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for s in specs:
        np_t = _NP_OF_ORT.get(s.type)
        if np_t is None:
            raise UsageError(f"input {s.name!r} has type {s.type}, for which graphopt cannot draw random values",
                             hint="give real inputs with --inputs FILE.npz, or --no-validate")
        shape = _shape_for(s, binding)
        dt = np.dtype(np_t)
        if dt.kind == "f":
            arr = rng.uniform(-1.0, 1.0, size=shape).astype(dt)
        elif dt.kind in "iu":
            high = int_high
            if int_bounds and s.name in int_bounds:
                high = int_bounds[s.name] if bounded_high is None else min(int_bounds[s.name], bounded_high)
            high = min(max(1, high), int(np.iinfo(dt).max) + 1, 1 << 62)
            arr = rng.integers(0, high, size=shape).astype(dt)
        elif dt.kind == "b":
            arr = rng.random(shape) < 0.5
        else:  # strings
            arr = np.array(rng.choice(["a", "b", "c"], size=shape), dtype=object)
        feeds[s.name] = arr
    return feeds


# ================================================================================================================
# Ranges of integer inputs that index a table
# ================================================================================================================
def index_ranges(model: Model) -> dict[str, int]:
    """For each integer graph input that indexes a table, the exclusive upper bound of valid ids: a bound found
    from the graph, so that validation draws real token ids, type ids and positions at the first try.

    An input is bounded when it reaches, directly or through ops that keep its values (Identity, integer Cast,
    Unsqueeze, Squeeze, Reshape, Flatten, Transpose, Expand, Slice, Tile, Concat), the indices of:

    - ``Gather`` or ``GatherElements`` whose data has a static size on the gathered axis (an embedding table);
    - ``OneHot`` with a constant depth;
    - ``com.microsoft`` ``EmbedLayerNormalization`` (word ids and segment ids, from their tables' row counts).

    With several such consumers the smallest bound wins. Inputs not listed keep the default draw. Linear in the
    nodes reached from the integer inputs; nothing is loaded but the scalar depth of OneHot.
    """
    out: dict[str, int] = {}
    for v in model.graph.inputs:
        if v.const is not None or v.dtype not in _INT_DTYPES or not v.name:
            continue
        try:
            bound = _bound_of(v)
        except Exception:  # noqa: BLE001 - a hint for drawing inputs: on a surprise, draw as by default
            log.debug("index_ranges: no bound for %r", v.name, exc_info=True)
            continue
        if bound is not None and bound > 0:
            out[v.name] = bound
    return out


def _bound_of(start: Value) -> int | None:
    best: int | None = None
    seen = {id(start)}
    todo = [start]
    while todo:
        v = todo.pop()
        for node, idx in v.uses():
            b = _consumer_bound(node, idx)
            if b is not None:
                best = b if best is None else min(best, b)
                continue
            passes_through = _VALUE_PRESERVING.get(node.op_type) if node.domain in ("", "ai.onnx") else None
            if node.op_type == "Concat" and node.domain in ("", "ai.onnx"):
                passes_through = (idx,)
            if passes_through is None or idx not in passes_through or not node.outputs:
                continue
            if node.op_type == "Cast" and node.attr("to") not in _INT_DTYPES:
                continue  # ids cast to float are arithmetic from here on, not indices
            out = node.outputs[0]
            if id(out) not in seen:
                seen.add(id(out))
                todo.append(out)
    return best


def _consumer_bound(node: Node, idx: int) -> int | None:
    """The exclusive bound `node` puts on the values of its input `idx`, when static; else None."""
    op, dom = node.op_type, node.domain
    if dom in ("", "ai.onnx"):
        if op in ("Gather", "GatherElements") and idx == 1:
            return _static_dim(node.input(0), node.attr("axis", 0))
        if op == "OneHot" and idx == 0:
            depth = _small_constant(node.input(1))
            return int(depth) if depth is not None and depth >= 1 else None
        return None
    if dom == "com.microsoft" and op == "EmbedLayerNormalization":
        table = {0: 2, 1: 4}.get(idx)  # input_ids -> word_embedding, segment_ids -> segment_embedding
        return None if table is None else _static_dim(node.input(table), 0)
    return None


def _static_dim(v: Value | None, axis: Any) -> int | None:
    if v is None:
        return None
    shape = v.shape
    if shape is None:
        return None
    try:
        ax = int(axis)
    except (TypeError, ValueError):
        return None
    if ax < 0:
        ax += len(shape)
    if not 0 <= ax < len(shape):
        return None
    d = shape[ax]
    return d if isinstance(d, int) and d > 0 else None


def _small_constant(v: Value | None) -> float | None:
    """The value of a one-element constant (an initializer or a Constant node's output), else None."""
    if v is None:
        return None
    t = v.const
    if t is None and v.producer is not None and v.producer.op_type == "Constant" and \
            v.producer.domain in ("", "ai.onnx"):
        t = v.producer.attr("value")
    if t is None or not hasattr(t, "shape") or int(np.prod(t.shape, dtype=np.int64)) != 1:
        return None
    try:
        return float(np.asarray(t.numpy()).reshape(-1)[0])
    except Exception:  # noqa: BLE001 - an unreadable constant is simply not a known depth
        return None


def load_npz(path: str, specs: Sequence[InputSpec]) -> dict[str, np.ndarray]:
    """Real inputs from an .npz file; names must match the model's inputs. Values are cast to the input's dtype
    when that loses no kind (float64 -> float32 is fine, float -> int is not)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError as e:
        raise UsageError(f"--inputs {path}: no such file") from e
    except (OSError, ValueError) as e:
        raise UsageError(f"--inputs {path}: not a readable .npz file ({e})",
                         hint="write it with numpy.savez(path, input_name=array, ...)") from e
    names = [s.name for s in specs]
    missing = [n for n in names if n not in arrays]
    extra = [k for k in arrays if k not in names]
    if missing or extra:
        from ..jit.registry import did_you_mean

        what = f"lacks input {missing[0]!r}" if missing else f"has {extra[0]!r}, which is not a model input"
        raise UsageError(f"--inputs {path}: {what}",
                         hint=(did_you_mean(extra[0], names) if extra else "") or
                         f"the model's inputs are: {', '.join(names)}")
    out: dict[str, np.ndarray] = {}
    for s in specs:
        a = arrays[s.name]
        np_t = _NP_OF_ORT.get(s.type)
        if np_t is not None and a.dtype != np.dtype(np_t):
            if not np.can_cast(a.dtype, np_t, casting="same_kind"):
                raise UsageError(f"--inputs {path}: {s.name!r} is {a.dtype}, the model wants {s.type}")
            a = a.astype(np_t)
        out[s.name] = a
    return out
