"""Value types and shapes as the IR sees them.

A shape is a tuple of dims; a dim is an ``int`` (static size), a ``str`` (a named symbolic size, the model's
dim_param) or ``None`` (unknown). A shape of ``None`` means the rank is unknown. Richer symbolic reasoning
(fresh symbols, unification, arithmetic) lives in :mod:`graphopt.jit.symbols`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .tensors import dtype_name

Dim = Union[int, str, None]
Shape = tuple  # tuple[Dim, ...]


def format_dim(d: Dim) -> str:
    return "?" if d is None else str(d)


def format_shape(shape: Shape | None) -> str:
    if shape is None:
        return "[*]"
    return "[" + ", ".join(format_dim(d) for d in shape) + "]"


def is_static(shape: Shape | None) -> bool:
    return shape is not None and all(isinstance(d, int) for d in shape)


@dataclass(frozen=True)
class TensorType:
    """A dense tensor of `dtype` (ONNX number) and `shape` (None = unknown rank)."""

    dtype: int
    shape: Shape | None = None

    def __str__(self) -> str:
        return f"{dtype_name(self.dtype)}{format_shape(self.shape)}"


@dataclass(frozen=True)
class SparseTensorType:
    dtype: int
    shape: Shape | None = None

    def __str__(self) -> str:
        return f"sparse({dtype_name(self.dtype)}{format_shape(self.shape)})"


@dataclass(frozen=True)
class SequenceType:
    elem: object  # a type, or None when unknown

    def __str__(self) -> str:
        return f"seq({self.elem})"


@dataclass(frozen=True)
class OptionalType:
    elem: object

    def __str__(self) -> str:
        return f"optional({self.elem})"


@dataclass(frozen=True)
class MapType:
    key: int
    value: object

    def __str__(self) -> str:
        return f"map({dtype_name(self.key)}, {self.value})"


@dataclass(frozen=True)
class OpaqueType:
    domain: str
    name: str

    def __str__(self) -> str:
        return f"opaque({self.domain}.{self.name})"


Type = Union[TensorType, SparseTensorType, SequenceType, OptionalType, MapType, OpaqueType]
