"""graphopt's protobuf-free graph IR. See :mod:`graphopt.ir.core` for the guarantees it keeps.

The names below load their modules on first use (PEP 562): importing :mod:`graphopt.ir.core` does not import
:mod:`graphopt.ir.serde`, and with it onnx, until a model is read or written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .builder import Builder, add_constant
    from .core import Attr, AttrType, Graph, IRError, Journal, Model, Node, Use, Value, make_attr
    from .serde import dumps, from_proto, load, loads, save, to_proto
    from .shapes import (
        Dim,
        MapType,
        OpaqueType,
        OptionalType,
        SequenceType,
        Shape,
        SparseTensorType,
        TensorType,
        Type,
        format_shape,
    )
    from .tensors import DataType, Tensor, dtype_name

# Eager, and light (the core, no onnx): the function `verify` must shadow the submodule of the same name whatever
# imported `graphopt.ir.verify` first.
from .verify import verify  # noqa: E402

_LAZY: dict[str, str] = {
    **dict.fromkeys(("Builder", "add_constant"), ".builder"),
    **dict.fromkeys(("Attr", "AttrType", "Graph", "IRError", "Journal", "Model", "Node", "Use", "Value",
                     "make_attr"), ".core"),
    **dict.fromkeys(("dumps", "from_proto", "load", "loads", "save", "to_proto"), ".serde"),
    **dict.fromkeys(("Dim", "MapType", "OpaqueType", "OptionalType", "SequenceType", "Shape", "SparseTensorType",
                     "TensorType", "Type", "format_shape"), ".shapes"),
    **dict.fromkeys(("DataType", "Tensor", "dtype_name"), ".tensors"),
}

__all__ = [
    "Attr", "AttrType", "Builder", "DataType", "Dim", "Graph", "IRError", "Journal", "MapType", "Model", "Node",
    "OpaqueType", "OptionalType", "SequenceType", "Shape", "SparseTensorType", "Tensor", "TensorType", "Type",
    "Use", "Value", "add_constant", "dtype_name", "dumps", "format_shape", "from_proto", "load", "loads",
    "make_attr", "save", "to_proto", "verify",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
