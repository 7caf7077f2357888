"""graphopt's protobuf-free graph IR. See :mod:`graphopt.ir.core` for the guarantees it keeps."""

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
from .verify import verify

__all__ = [
    "Attr", "AttrType", "Builder", "DataType", "Dim", "Graph", "IRError", "Journal", "MapType", "Model", "Node",
    "OpaqueType", "OptionalType", "SequenceType", "Shape", "SparseTensorType", "Tensor", "TensorType", "Type",
    "Use", "Value", "add_constant", "dtype_name", "dumps", "format_shape", "from_proto", "load", "loads",
    "make_attr", "save", "to_proto", "verify",
]
