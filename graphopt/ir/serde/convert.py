"""Conversions between IR objects and protobuf messages shared by reading and writing: tensors (lazy headers,
decoding, sparse), types, attributes; and the constants both directions use."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from ...errors import (
    ExternalDataError,
    InvalidModelError,
)
from ..core import Attr, AttrType, IRError, Model, Node
from ..shapes import MapType, OpaqueType, OptionalType, SequenceType, SparseTensorType, TensorType, Type
from ..tensors import DataType, ExternalRef, Tensor


_SUBGRAPH_OPS = frozenset({"If", "Loop", "Scan", "SequenceMap"})
_NO_GRAPH_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training"})
_EXTERNAL = onnx.TensorProto.EXTERNAL
TWO_GB = 2**31
# Protobuf refuses messages of 2 GiB; stay clear of the limit when deciding what goes to external data.
_PROTO_SOFT_LIMIT = TWO_GB - 64 * 2**20


# ================================================================================================================
# Tensors
# ================================================================================================================
def tensor_from_proto(tp: Any, base_dir: str | None, sparse: bool = False) -> Tensor:
    t = Tensor.__new__(Tensor)
    t._proto = tp
    t._array = None
    t._digest = None
    t._sample = None
    t._sparse = sparse
    t._ext = None
    t._dtype = -1
    t._shape = ()
    t._base = base_dir
    _decode_header(t)
    return t


def _decode_header(t: Tensor) -> None:
    tp = t._proto
    if t._sparse:
        t._dtype = tp.values.data_type
        t._shape = tuple(tp.dims)
        return
    t._dtype = tp.data_type
    t._shape = tuple(tp.dims)
    if tp.data_location == _EXTERNAL:
        info = {e.key: e.value for e in tp.external_data}
        loc = info.pop("location", "")
        off = int(info.pop("offset", "0") or 0)
        ln = info.pop("length", None)
        t._ext = ExternalRef(loc, off, int(ln) if ln else None, t._base or "", info)


def _ensure_header(t: Tensor) -> None:
    if t._dtype == -1:
        _decode_header(t)


def numpy_dtype_of(dtype: int) -> np.dtype:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(dtype))
    except Exception as e:  # noqa: BLE001 - unknown dtype numbers
        raise IRError(f"no numpy dtype for ONNX data type {dtype}") from e


def dtype_of_numpy_extended(dt: np.dtype) -> int:
    try:
        return int(onnx.helper.np_dtype_to_tensor_dtype(dt))
    except Exception as e:  # noqa: BLE001
        raise IRError(f"no ONNX data type for numpy dtype {dt}") from e


def decode_tensor(t: Tensor) -> np.ndarray:
    """Decode a loaded tensor's numbers (external data is memory-mapped where the layout allows)."""
    _ensure_header(t)
    tp = t._proto
    if tp is None:
        raise IRError("tensor has neither data nor a serialized form")
    if t._sparse:
        return _densify(tp)
    if t._ext is not None:
        ref = t._ext
        path = ref.path()
        dt = t._dtype
        shape = t._shape
        size = math.prod(shape)
        from ..tensors import _NP_OF

        if dt in _NP_OF and dt != DataType.STRING and size > 0:
            npdt = np.dtype(_NP_OF[DataType(dt)]).newbyteorder("<")
            need = size * npdt.itemsize
            if ref.length is not None and ref.length < need:
                raise ExternalDataError(f"external data for a tensor is {ref.length} bytes, {need} expected")
            fsize = os.path.getsize(path)
            if ref.offset + need > fsize:
                raise ExternalDataError(
                    f"external data file {ref.location!r} is too short ({fsize} bytes, need "
                    f"{ref.offset + need})")
            return np.memmap(path, dtype=npdt, mode="r", offset=ref.offset, shape=shape)
        with open(path, "rb") as f:
            f.seek(ref.offset)
            raw = f.read(ref.length) if ref.length is not None else f.read()
        c = onnx.TensorProto()
        c.CopyFrom(tp)
        c.ClearField("external_data")
        c.data_location = onnx.TensorProto.DEFAULT
        c.raw_data = raw
        return numpy_helper.to_array(c)
    try:
        return numpy_helper.to_array(tp)
    except Exception as e:  # noqa: BLE001 - malformed tensor payloads
        raise InvalidModelError(f"tensor {tp.name!r} cannot be decoded: {e}") from e


def _densify(sp: Any) -> np.ndarray:
    vals = numpy_helper.to_array(sp.values)
    idx = numpy_helper.to_array(sp.indices).astype(np.int64)
    shape = tuple(sp.dims)
    out = np.zeros(shape, dtype=vals.dtype)
    flat = out.reshape(-1)
    if idx.ndim == 2:
        idx = np.ravel_multi_index(tuple(idx.T), shape)
    flat[idx.reshape(-1)] = vals.reshape(-1)
    return out


def tensor_to_proto(t: Tensor, name: str) -> Any:
    """A TensorProto for `t` named `name`: the loaded message when untouched (copied only to rename)."""
    tp = t._proto
    if tp is not None and not t._sparse:
        if tp.name == name:
            return tp
        c = onnx.TensorProto()
        c.CopyFrom(tp)
        c.name = name
        return c
    arr = t.numpy()
    if t._dtype == DataType.STRING:
        out = onnx.helper.make_tensor(name, onnx.TensorProto.STRING, arr.shape,
                                      [s if isinstance(s, bytes) else str(s).encode() for s in arr.flat])
        return out
    out = numpy_helper.from_array(np.asarray(arr), name)
    if out.data_type != t._dtype:
        # e.g. a float32 array holding bool or float16 payload types: convert explicitly
        out = numpy_helper.from_array(np.asarray(arr).astype(numpy_dtype_of(t._dtype)), name)
    return out


# ================================================================================================================
# Types
# ================================================================================================================
def _dim(d: Any) -> Any:
    w = d.WhichOneof("value")
    if w == "dim_value":
        return int(d.dim_value)
    if w == "dim_param":
        return d.dim_param
    return None


def _shape_of(tt: Any) -> Any:
    if not tt.HasField("shape"):
        return None
    return tuple(_dim(d) for d in tt.shape.dim)


def type_from_proto(tp: Any) -> Type | None:
    if tp is None:
        return None
    w = tp.WhichOneof("value")
    if w == "tensor_type":
        tt = tp.tensor_type
        return TensorType(tt.elem_type, _shape_of(tt))
    if w == "sparse_tensor_type":
        tt = tp.sparse_tensor_type
        return SparseTensorType(tt.elem_type, _shape_of(tt))
    if w == "sequence_type":
        st = tp.sequence_type
        return SequenceType(type_from_proto(st.elem_type) if st.HasField("elem_type") else None)
    if w == "optional_type":
        ot = tp.optional_type
        return OptionalType(type_from_proto(ot.elem_type) if ot.HasField("elem_type") else None)
    if w == "map_type":
        mt = tp.map_type
        return MapType(mt.key_type, type_from_proto(mt.value_type) if mt.HasField("value_type") else None)
    if w == "opaque_type":
        return OpaqueType(tp.opaque_type.domain, tp.opaque_type.name)
    return None


def _fill_shape(tt: Any, shape: Any) -> None:
    if shape is None:
        return
    sp = tt.shape
    sp.SetInParent()
    for d in shape:
        dim = sp.dim.add()
        if isinstance(d, (int, np.integer)):
            dim.dim_value = int(d)
        elif isinstance(d, str):
            dim.dim_param = d


def type_to_proto(t: Type | None, out: Any = None) -> Any:
    tp = out if out is not None else onnx.TypeProto()
    if t is None:
        return tp
    if isinstance(t, TensorType):
        tp.tensor_type.elem_type = int(t.dtype)
        _fill_shape(tp.tensor_type, t.shape)
    elif isinstance(t, SparseTensorType):
        tp.sparse_tensor_type.elem_type = int(t.dtype)
        _fill_shape(tp.sparse_tensor_type, t.shape)
    elif isinstance(t, SequenceType):
        tp.sequence_type.SetInParent()
        if t.elem is not None:
            type_to_proto(t.elem, tp.sequence_type.elem_type)  # type: ignore[arg-type]
    elif isinstance(t, OptionalType):
        tp.optional_type.SetInParent()
        if t.elem is not None:
            type_to_proto(t.elem, tp.optional_type.elem_type)  # type: ignore[arg-type]
    elif isinstance(t, MapType):
        tp.map_type.key_type = int(t.key)
        if t.value is not None:
            type_to_proto(t.value, tp.map_type.value_type)  # type: ignore[arg-type]
    elif isinstance(t, OpaqueType):
        tp.opaque_type.domain = t.domain
        tp.opaque_type.name = t.name
    return tp


# ================================================================================================================
# Attributes
# ================================================================================================================
def _s(b: bytes) -> str:
    return b.decode("utf-8", errors="surrogateescape")


def _b(s: str | bytes) -> bytes:
    return s if isinstance(s, bytes) else s.encode("utf-8", errors="surrogateescape")


def attrs_from_proto(node: Node) -> dict[str, Attr]:
    out: dict[str, Attr] = {}
    np_ = node._proto
    if np_ is None:
        return out
    for ap in np_.attribute:
        a = Attr(ap.name, ap.type)
        a._proto = ap
        a._base_dir = node._base_dir
        a.ref_attr_name = ap.ref_attr_name
        out[ap.name] = a
    return out


def attr_value(ap: Any, base_dir: str | None) -> Any:
    t = ap.type
    if t == AttrType.INT:
        return int(ap.i)
    if t == AttrType.FLOAT:
        return float(ap.f)
    if t == AttrType.STRING:
        return _s(ap.s)
    if t == AttrType.INTS:
        return list(ap.ints)
    if t == AttrType.FLOATS:
        return list(ap.floats)
    if t == AttrType.STRINGS:
        return [_s(x) for x in ap.strings]
    if t == AttrType.TENSOR:
        return tensor_from_proto(ap.t, base_dir)
    if t == AttrType.TENSORS:
        return [tensor_from_proto(x, base_dir) for x in ap.tensors]
    if t == AttrType.SPARSE_TENSOR:
        return tensor_from_proto(ap.sparse_tensor, base_dir, sparse=True)
    if t == AttrType.SPARSE_TENSORS:
        return [tensor_from_proto(x, base_dir, sparse=True) for x in ap.sparse_tensors]
    if t == AttrType.TYPE_PROTO:
        return type_from_proto(ap.tp)
    if t == AttrType.TYPE_PROTOS:
        return [type_from_proto(x) for x in ap.type_protos]
    if t == AttrType.GRAPH or t == AttrType.GRAPHS:
        raise IRError("graph attributes are loaded with their node")
    return None


def attr_to_proto(a: Attr) -> Any:
    """The AttributeProto of `a` (the loaded message when untouched; graph attributes serialized)."""
    from .write import _Writer

    return _Writer().attr_proto(a)


def _model_fields(m: Model) -> tuple:
    return (m.producer_name, m.producer_version, m.domain, m.model_version, m.doc_string,
            tuple(m.metadata_props.items()))


def _mark_external_attr_nodes(model: Model) -> None:
    """Find nodes whose tensor attributes keep their data externally (rare; only scanned for models that have
    external data at all) and parse their attributes, so that the writer can relocate that data."""
    nodes = []
    for g in model.graph.all_graphs():
        for n in g:
            p = n._proto
            if p is None:
                continue
            for ap in p.attribute:
                if (ap.type == AttrType.TENSOR and ap.t.data_location == _EXTERNAL) or (
                        ap.type == AttrType.TENSORS and any(x.data_location == _EXTERNAL for x in ap.tensors)):
                    nodes.append(n)
                    break
    if nodes:
        model.meta["ext_attr_nodes"] = nodes
