"""Validation inputs: the input specs onnxruntime reports, dim bindings per trial, deterministic random feeds
per dtype, and real inputs from an ``.npz`` file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UsageError

_NP_OF_ORT: dict[str, Any] = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int8)": np.int8, "tensor(int16)": np.int16, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16, "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_, "tensor(string)": np.object_,
}

# Integer inputs are often ids, indices or sizes: draw them from a small range, and when the original model
# rejects them (an index out of range), retry with a smaller one before giving up.
INT_RANGES = (4, 2, 1)


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
                 int_high: int = INT_RANGES[0]) -> dict[str, np.ndarray]:
    """Deterministic random inputs: floats uniform in [-1, 1), integers in [0, int_high), booleans, short
    strings. Raises UsageError for input types that cannot be drawn (sequences, maps, bfloat16, ...)."""
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
            arr = rng.integers(0, max(1, int_high), size=shape).astype(dt)
        elif dt.kind == "b":
            arr = rng.random(shape) < 0.5
        else:  # strings
            arr = np.array(rng.choice(["a", "b", "c"], size=shape), dtype=object)
        feeds[s.name] = arr
    return feeds


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
