"""The only bridge between the IR and onnx protobuf: load, save, from_proto, to_proto.

Speed comes from laziness. Loading parses the file once (protobuf's C code), then walks the nodes reading only
op type, domain, input and output names; attributes, tensors and types stay serialized until a pass asks. Saving
writes every node and tensor that no pass touched back as the very message that was loaded, so the cost of a
round trip follows what changed, not the size of the model.

Lossless: every field the IR does not model (metadata, doc strings, quantization annotations, training info,
fields newer than this code) lives on in the loaded messages: the model and graph messages are kept as templates
with their lists taken out.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from ..errors import (
    GraphoptError,
    ExternalDataError,
    InvalidModelError,
    ModelDecodeError,
    NotOnnxError,
    OutputError,
    UnsupportedModelError,
    os_error,
)
from .core import _UNSET, Attr, AttrType, Graph, IRError, Model, Node, Value
from .shapes import MapType, OpaqueType, OptionalType, SequenceType, SparseTensorType, TensorType, Type
from .tensors import DataType, ExternalRef, Tensor

_SUBGRAPH_OPS = frozenset({"If", "Loop", "Scan", "SequenceMap"})
_NO_GRAPH_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training"})
_EXTERNAL = onnx.TensorProto.EXTERNAL
TWO_GB = 2**31
# Protobuf refuses messages of 2 GiB; stay clear of the limit when deciding what goes to external data.
_PROTO_SOFT_LIMIT = TWO_GB - 64 * 2**20


# ================================================================================================================
# Loading
# ================================================================================================================
def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """Read a model file, turning OS errors into graphopt errors that name the file."""
    p = os.fspath(path)
    try:
        with open(p, "rb") as f:
            return f.read()
    except MemoryError as e:
        from ..errors import ResourceError

        raise ResourceError(f"{p}: out of memory while reading the model", path=p) from e
    except OSError as e:
        raise os_error(e, p, writing=False) from e


def load(path: str | os.PathLike[str]) -> Model:
    """Load a model file into the IR. External data stays on disk until a pass needs the numbers."""
    p = os.fspath(path)
    data = read_bytes(p)
    return loads(data, base_dir=os.path.dirname(os.path.abspath(p)), path=p)


def parse_model_proto(data: bytes, path: str | None = None) -> onnx.ModelProto:
    """Parse serialized bytes into a ModelProto, with errors that say what is wrong."""
    where = path or "<input>"
    if not data:
        raise ModelDecodeError(f"{where}: the file is empty", path=path)
    mp = onnx.ModelProto()
    try:
        mp.ParseFromString(data)
    except DecodeError as e:
        raise ModelDecodeError(f"{where}: not a valid ONNX model (protobuf decoding failed: truncated or "
                               f"corrupted file?)", path=path) from e
    except (ValueError, RuntimeError) as e:
        raise ModelDecodeError(f"{where}: not a valid ONNX model ({e})", path=path) from e
    if not mp.HasField("graph") or mp.ir_version <= 0:
        raise NotOnnxError(f"{where}: not an ONNX model (no graph or no ir_version in the file)", path=path)
    if mp.ir_version > onnx.IR_VERSION:
        raise UnsupportedModelError(
            f"{where}: ir_version {mp.ir_version} is newer than this onnx package supports "
            f"({onnx.IR_VERSION})", path=path)
    newest = onnx.defs.onnx_opset_version()
    for o in mp.opset_import:
        if o.domain in ("", "ai.onnx") and o.version > newest:
            raise UnsupportedModelError(
                f"{where}: opset {o.version} of the default domain is newer than this onnx package knows "
                f"({newest})", path=path)
    return mp


def loads(data: bytes, *, base_dir: str | None = None, path: str | None = None) -> Model:
    """Load a model from its serialized bytes."""
    mp = parse_model_proto(data, path)
    # External data entries always carry the key "location"; a model whose bytes never spell it has none, and
    # the writer need not look for it.
    has_ext = b"\n\x08location" in data
    model = from_proto(mp, base_dir=base_dir, copy=False, _scan_external=has_ext)
    model.source_path = path
    model.meta["source_bytes"] = len(data)
    model.meta["has_external"] = has_ext
    return model


def from_proto(mp: onnx.ModelProto, *, base_dir: str | None = None, copy: bool = True,
               _scan_external: bool = True) -> Model:
    """Build the IR from a ModelProto. With `copy` False the message is taken over (and emptied)."""
    gc_was = gc.isenabled()
    gc.disable()  # the loader makes ~3 objects per node, none of them garbage: don't let the GC rescan them
    try:
        return _from_proto(mp, base_dir, copy, _scan_external)
    finally:
        if gc_was:
            gc.enable()


def _from_proto(mp: onnx.ModelProto, base_dir: str | None, copy: bool, scan_external: bool) -> Model:
    if copy:
        c = onnx.ModelProto()
        c.CopyFrom(mp)
        mp = c
    gp = mp.graph
    opsets: dict[str, int] = {}
    opset_protos: dict[str, Any] = {}
    for o in mp.opset_import:
        opsets[o.domain] = o.version
        opset_protos[o.domain] = o
    functions = list(mp.functions)
    mp.ClearField("graph")
    mp.ClearField("opset_import")
    mp.ClearField("functions")
    model = Model.__new__(Model)
    Model.__init__(model, Graph("main_graph"), ir_version=mp.ir_version, opset_imports=opsets)
    model._template = mp
    model.meta["opset_protos"] = opset_protos
    model.functions = functions
    model.producer_name = mp.producer_name
    model.producer_version = mp.producer_version
    model.domain = mp.domain
    model.model_version = mp.model_version
    model.doc_string = mp.doc_string
    model.metadata_props = {p.key: p.value for p in mp.metadata_props}
    model._orig_fields = _model_fields(model)
    model.base_dir = base_dir
    loader = _GraphLoader(model, base_dir)
    g = loader.load(gp, None)
    model.graph = g
    g.model = model
    if scan_external:
        _mark_external_attr_nodes(model)
    return model


def _model_fields(m: Model) -> tuple:
    return (m.producer_name, m.producer_version, m.domain, m.model_version, m.doc_string,
            tuple(m.metadata_props.items()))


def _new_value(name: str) -> Value:
    v = Value.__new__(Value)
    v._name = name
    v.producer = None
    v.index = 0
    v._uses = {}
    v._graph = None
    v._const = None
    v._type = None
    v._type_src = None
    v._vi = None
    v._type_changed = False
    v._out_graphs = None
    v.meta = None
    return v


def _set_decl(v: Value, vi: Any) -> None:
    """Record the declared type of a value from a ValueInfoProto, the first declaration winning."""
    if v._type_src is None and v._type is None and vi.HasField("type"):
        v._type_src = vi.type
        v._type = _UNSET


class _GraphLoader:
    def __init__(self, model: Model, base_dir: str | None):
        self.model = model
        self.base_dir = base_dir
        self.scopes: list[dict[str, Value]] = []
        self.pendings: list[dict[str, Value]] = []

    def _lookup(self, name: str) -> Value:
        scopes = self.scopes
        for i in range(len(scopes) - 1, -1, -1):
            v = scopes[i].get(name)
            if v is not None:
                return v
        pend = self.pendings[-1]
        v = pend.get(name)
        if v is None:
            v = pend[name] = _new_value(name)
        return v

    def load(self, gp: Any, owner: Node | None) -> Graph:
        model = self.model
        g = Graph.__new__(Graph)
        Graph.__init__(g, gp.name, model=model)
        g.owner = owner
        g.doc_string = gp.doc_string
        g._dirty = False
        inputs = list(gp.input)
        outputs = list(gp.output)
        inits = list(gp.initializer)
        sparse = list(gp.sparse_initializer)
        vis = list(gp.value_info)
        nodes = list(gp.node)
        for f in ("node", "input", "output", "initializer", "sparse_initializer", "value_info"):
            gp.ClearField(f)
        g._template = gp
        scope: dict[str, Value] = {}
        pending: dict[str, Value] = {}
        self.scopes.append(scope)
        self.pendings.append(pending)

        for vi in inputs:
            name = vi.name
            v = scope.get(name)
            if v is None:
                v = _new_value(name)
                v._graph = g
                scope[name] = v
            _set_decl(v, vi)
            g._inputs.append(v)
            g._in_vi.setdefault(v, vi)
        base_dir = self.base_dir
        for tp in inits:
            name = tp.name
            v = scope.get(name)
            if v is None:
                v = _new_value(name)
                v._graph = g
                scope[name] = v
            t = Tensor.__new__(Tensor)
            t._proto = tp
            t._array = None
            t._dtype = -1  # header decoded lazily
            t._shape = ()
            t._ext = None
            t._digest = None
            t._sparse = False
            t._base = base_dir
            v._const = t
            g._initializers[name] = v
        for sp in sparse:
            name = sp.values.name
            v = scope.get(name)
            if v is None:
                v = _new_value(name)
                v._graph = g
                scope[name] = v
            v._const = tensor_from_proto(sp, base_dir, sparse=True)
            g._initializers[name] = v

        head = g._head
        prev: Any = head
        count = 0
        lookup = self._lookup
        new_node = Node.__new__
        for np_ in nodes:
            node = new_node(Node)
            op = np_.op_type
            dom = np_.domain
            node.op_type = op
            node.domain = dom
            node._overload = _UNSET
            node._name = _UNSET
            node._doc = _UNSET
            node.graph = g
            node._erased = False
            node._proto = np_
            node._dirty = False
            node._attrs = None
            node._subgraphs = None
            node._registered = True
            node.meta = None
            node._base_dir = base_dir
            ins: list[Value | None] = np_.input[:]  # slicing is the fastest way to get the names out of upb
            i = 0
            for name in ins:
                if name:
                    v = scope.get(name)
                    if v is None:
                        v = lookup(name)
                    v._uses[(node, i)] = None
                    ins[i] = v
                else:
                    ins[i] = None
                i += 1
            node._inputs = ins
            if op in _SUBGRAPH_OPS or dom not in _NO_GRAPH_DOMAINS:
                self._load_attrs_with_graphs(node, np_)
            outs: list[Value] = np_.output[:]
            i = 0
            for name in outs:
                v = pending.pop(name, None) if pending else None
                if v is None:
                    v = _new_value(name)
                v.producer = node
                v.index = i
                if name:
                    if name in scope:
                        raise InvalidModelError(f"value {name!r} is defined twice (the graph is not in SSA form)")
                    scope[name] = v
                outs[i] = v
                i += 1
            node._outputs = outs
            node._prev = prev
            prev._next = node
            prev = node
            count += 1
        prev._next = head
        head._prev = prev
        g._count = count

        for vi in vis:
            v = scope.get(vi.name)
            if v is None or v in g._value_info:
                g._orphan_vi.append(vi)
                continue
            if v._vi is None:
                v._vi = vi
            _set_decl(v, vi)
            g._value_info[v] = None
        for vi in outputs:
            name = vi.name
            v = scope.get(name)
            if v is None:
                v = lookup(name)
            _set_decl(v, vi)
            g._outputs.append(v)
            g._out_vi.append(vi)
            if v._out_graphs is None:
                v._out_graphs = [g]
            else:
                v._out_graphs.append(g)

        self.scopes.pop()
        self.pendings.pop()
        if pending:
            # Names read before any definition in this graph: resolve them in the enclosing scopes (values
            # defined later in an outer graph stay pending there), or leave them dangling at the top.
            if self.pendings:
                outer = self.pendings[-1]
                for name, ph in pending.items():
                    real = None
                    for s in reversed(self.scopes):
                        real = s.get(name)
                        if real is not None:
                            break
                    if real is not None:
                        _merge_placeholder(ph, real)
                    elif name in outer:
                        _merge_placeholder(ph, outer[name])
                    else:
                        outer[name] = ph
            else:
                g.meta["dangling"] = list(pending.values())
                for ph in pending.values():
                    ph._graph = g
        return g

    def _load_attrs_with_graphs(self, node: Node, np_: Any) -> None:
        attrs: dict[str, Attr] = {}
        subs: list[Graph] = []
        for ap in np_.attribute:
            t = ap.type
            a = Attr(ap.name, t)
            a._proto = ap
            a._base_dir = self.base_dir
            a.ref_attr_name = ap.ref_attr_name
            if t == AttrType.GRAPH:
                sg = self.load(ap.g, node)
                a._value = sg
                subs.append(sg)
            elif t == AttrType.GRAPHS:
                gs = [self.load(x, node) for x in ap.graphs]
                a._value = gs
                subs.extend(gs)
            attrs[ap.name] = a
        if subs:
            node._attrs = attrs
            node._subgraphs = subs


def _merge_placeholder(ph: Value, real: Value) -> None:
    """Point the readers of a forward-reference placeholder at the real value (load time: nothing is dirtied)."""
    for (n, i) in ph._uses:
        n._inputs[i] = real
        real._uses[(n, i)] = None
    ph._uses = {}
    if ph._out_graphs:
        for og in ph._out_graphs:
            og._outputs = [real if v is ph else v for v in og._outputs]
            if real._out_graphs is None:
                real._out_graphs = []
            real._out_graphs.append(og)
        ph._out_graphs = None


# ================================================================================================================
# Tensors
# ================================================================================================================
def tensor_from_proto(tp: Any, base_dir: str | None, sparse: bool = False) -> Tensor:
    t = Tensor.__new__(Tensor)
    t._proto = tp
    t._array = None
    t._digest = None
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
        from .tensors import _NP_OF

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
    return _Writer().attr_proto(a)


# ================================================================================================================
# Saving
# ================================================================================================================
# The writer builds the serialized model by concatenating serialized pieces: every node, tensor and value_info
# that no pass touched is serialized straight from the message that was loaded, and the graph and model are
# framed around them by hand (protobuf accepts fields in any order). This costs one serialization of the model,
# where building a new ModelProto would copy every message once more before serializing it.

def _varint(n: int) -> bytes:
    if n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_ONE_BYTE = [bytes((i,)) for i in range(128)]


def _field(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


# wire tags (field number << 3 | 2 for length-delimited)
_T_NODE = b"\x0a"            # GraphProto.node = 1
_T_INIT = b"\x2a"            # GraphProto.initializer = 5
_T_INPUT = b"\x5a"           # GraphProto.input = 11
_T_OUTPUT = b"\x62"          # GraphProto.output = 12
_T_VALUE_INFO = b"\x6a"      # GraphProto.value_info = 13
_T_SPARSE_INIT = b"\x7a"     # GraphProto.sparse_initializer = 15
_T_GRAPH = b"\x3a"           # ModelProto.graph = 7
_T_OPSET = b"\x42"           # ModelProto.opset_import = 8
_T_FUNCTION = b"\xca\x01"    # ModelProto.functions = 25

# What to do with a tensor's data at write time, keyed by id(Tensor): ("external", location, offset, length,
# extra) or ("inline",) to pull external data into the file.
ExtPlan = dict


class _Writer:
    def __init__(self, plan: ExtPlan | None = None, ext_nodes: set[Node] | None = None):
        self.plan = plan or {}
        self.ext_nodes = ext_nodes or set()

    # -- tensors -------------------------------------------------------------------------------------------------
    def tensor_proto(self, t: Tensor, name: str) -> Any:
        act = self.plan.get(id(t))
        if act is None:
            return tensor_to_proto(t, name)
        c = onnx.TensorProto()
        if t._proto is not None:
            c.CopyFrom(t._proto)
            c.name = name
            for f in ("raw_data", "float_data", "int32_data", "string_data", "int64_data", "double_data",
                      "uint64_data"):
                c.ClearField(f)
        else:  # a tensor made by a pass: header only, its data goes to the external file
            c.name = name
            c.data_type = t.dtype
            c.dims.extend(t.shape)
        if act[0] == "inline":
            arr_raw = _read_external_raw(t)
            c.ClearField("external_data")
            c.data_location = onnx.TensorProto.DEFAULT
            c.raw_data = arr_raw
        else:
            _, loc, off, ln, extra = act
            _set_ext(c, loc, off, ln, extra)
        return c

    # -- nodes -------------------------------------------------------------------------------------------------
    def node_bytes(self, n: Node) -> bytes:
        p = n._proto
        # A node with subgraphs never writes its loaded message: loading moved the subgraphs' lists out of it.
        if not n._dirty and p is not None and not n._subgraphs and n not in self.ext_nodes:
            return p.SerializeToString()
        return self.node_proto(n).SerializeToString()

    def node_proto(self, n: Node) -> Any:
        p = n._proto
        out = onnx.NodeProto()
        if p is not None:
            out.CopyFrom(p)
            out.ClearField("input")
            out.ClearField("output")
            out.ClearField("attribute")
        if out.op_type != n.op_type:
            out.op_type = n.op_type
        if out.domain != n.domain:
            out.domain = n.domain
        name = n.name
        if out.name != name:
            out.name = name
        ov = n.overload
        if out.overload != ov:
            out.overload = ov
        doc = n.doc_string
        if out.doc_string != doc:
            out.doc_string = doc
        out.input.extend("" if v is None else (v._name or "") for v in n._inputs)
        out.output.extend(v._name or "" for v in n._outputs)
        if n._attrs is None:
            if p is not None:
                out.attribute.extend(p.attribute)
        else:
            out.attribute.extend(self.attr_proto(a) for a in n._attrs.values())
        return out

    def attr_proto(self, a: Attr) -> Any:
        t = a.type
        if a._proto is not None and t not in (AttrType.GRAPH, AttrType.GRAPHS) and not (
                self.plan and t in (AttrType.TENSOR, AttrType.TENSORS)):
            return a._proto
        ap = onnx.AttributeProto()
        if a._proto is not None:
            ap.CopyFrom(a._proto)
            for f in ("g", "graphs", "t", "tensors"):
                ap.ClearField(f)
        ap.name = a.name
        ap.type = t
        if a.ref_attr_name:
            ap.ref_attr_name = a.ref_attr_name
            return ap
        v = a.value
        if t == AttrType.INT:
            ap.i = int(v)
        elif t == AttrType.FLOAT:
            ap.f = float(v)
        elif t == AttrType.STRING:
            ap.s = _b(v)
        elif t == AttrType.INTS:
            ap.ints.extend(int(x) for x in v)
        elif t == AttrType.FLOATS:
            ap.floats.extend(float(x) for x in v)
        elif t == AttrType.STRINGS:
            ap.strings.extend(_b(x) for x in v)
        elif t == AttrType.TENSOR:
            ap.t.CopyFrom(self.tensor_proto(v, v._proto.name if v._proto is not None else ""))
        elif t == AttrType.TENSORS:
            ap.tensors.extend(self.tensor_proto(x, x._proto.name if x._proto is not None else "") for x in v)
        elif t == AttrType.SPARSE_TENSOR:
            ap.sparse_tensor.CopyFrom(v._proto)
        elif t == AttrType.SPARSE_TENSORS:
            ap.sparse_tensors.extend(x._proto for x in v)
        elif t == AttrType.TYPE_PROTO:
            type_to_proto(v, ap.tp)
        elif t == AttrType.TYPE_PROTOS:
            for x in v:
                type_to_proto(x, ap.type_protos.add())
        elif t == AttrType.GRAPH:
            ap.g.ParseFromString(self.graph_bytes(v))
        elif t == AttrType.GRAPHS:
            for sg in v:
                ap.graphs.add().ParseFromString(self.graph_bytes(sg))
        return ap

    # -- graphs ------------------------------------------------------------------------------------------------
    def graph_bytes(self, g: Graph) -> bytes:
        parts: list[bytes] = []
        add = parts.append
        tmpl = g._template
        if tmpl is not None and tmpl.name == g.name and tmpl.doc_string == g.doc_string:
            add(tmpl.SerializeToString())
        else:
            gp = onnx.GraphProto()
            if tmpl is not None:
                gp.CopyFrom(tmpl)
            if gp.name != g.name:
                gp.name = g.name
            if gp.doc_string != g.doc_string:
                gp.doc_string = g.doc_string
            add(gp.SerializeToString())
        node_bytes = self.node_bytes
        for n in g:
            b = node_bytes(n)
            add(_T_NODE + _varint(len(b)) + b)
        for name, v in g._initializers.items():
            t = v._const
            assert t is not None
            if t._sparse:
                sp = t._proto
                if sp.values.name != name:
                    c = onnx.SparseTensorProto()
                    c.CopyFrom(sp)
                    c.values.name = name
                    sp = c
                add(_field(_T_SPARSE_INIT, sp.SerializeToString()))
            else:
                add(_field(_T_INIT, self.tensor_proto(t, name).SerializeToString()))
        in_vi = g._in_vi
        for v in g._inputs:
            add(_field(_T_INPUT, _vi_proto(v, in_vi.get(v), True).SerializeToString()))
        for v, vi in zip(g._outputs, g._out_vi):
            add(_field(_T_OUTPUT, _vi_proto(v, vi, True).SerializeToString()))
        for v in g._value_info:
            if v.type is None and v._vi is None:
                continue
            add(_field(_T_VALUE_INFO, _vi_proto(v, v._vi, False).SerializeToString()))
        for vi in g._orphan_vi:
            add(_field(_T_VALUE_INFO, vi.SerializeToString()))
        return b"".join(parts)

    def model_bytes(self, model: Model) -> bytes:
        mp = onnx.ModelProto()
        if model._template is not None:
            mp.CopyFrom(model._template)
        if mp.ir_version != model.ir_version:
            mp.ir_version = model.ir_version
        if model._orig_fields != _model_fields(model):
            mp.producer_name = model.producer_name
            mp.producer_version = model.producer_version
            mp.domain = model.domain
            mp.model_version = model.model_version
            mp.doc_string = model.doc_string
            mp.ClearField("metadata_props")
            for k, v in model.metadata_props.items():
                e = mp.metadata_props.add()
                e.key = k
                e.value = v
        parts = [mp.SerializeToString()]
        orig = model.meta.get("opset_protos") or {}
        for d, ver in model.opset_imports.items():
            o = orig.get(d)
            if o is None or o.version != ver:
                o = onnx.OperatorSetIdProto()
                o.domain = d
                o.version = ver
            parts.append(_field(_T_OPSET, o.SerializeToString()))
        parts.append(_field(_T_GRAPH, self.graph_bytes(model.graph)))
        for f in model.functions:
            parts.append(_field(_T_FUNCTION, f.SerializeToString()))
        return b"".join(parts)


def _vi_proto(v: Value, orig: Any, keep_type: bool) -> Any:
    """A ValueInfoProto for `v`: `orig` as loaded when it still fits, else rebuilt (keeping its doc)."""
    name = v._name or ""
    if orig is not None and (keep_type or not v._type_changed):
        if orig.name == name:
            return orig
        c = onnx.ValueInfoProto()
        c.CopyFrom(orig)
        c.name = name
        return c
    c = onnx.ValueInfoProto()
    if orig is not None:
        c.CopyFrom(orig)
        c.ClearField("type")
    c.name = name
    t = v.type
    if t is not None:
        type_to_proto(t, c.type)
    return c


def serialize(model: Model, plan: ExtPlan | None = None) -> bytes:
    """The serialized model. External tensors keep their references unless `plan` says otherwise."""
    ext_nodes = model.meta.get("ext_attr_nodes") if plan else None
    gc_was = gc.isenabled()
    gc.disable()  # nothing here makes cyclic garbage; spare the big model's objects from GC rescans
    try:
        return _Writer(plan, set(ext_nodes) if ext_nodes else None).model_bytes(model)
    finally:
        if gc_was:
            gc.enable()


def to_proto(model: Model) -> onnx.ModelProto:
    """The ModelProto of `model`. External tensors keep their references (relative to ``model.base_dir``)."""
    mp = onnx.ModelProto()
    mp.ParseFromString(serialize(model))
    return mp


# -- external data -----------------------------------------------------------------------------------------------
def _set_ext(tp: Any, location: str, offset: int, length: int, extra: dict[str, str]) -> None:
    tp.ClearField("external_data")
    tp.data_location = _EXTERNAL
    tp.ClearField("raw_data")
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(length)), *extra.items()):
        e = tp.external_data.add()
        e.key = k
        e.value = v


def _align_of(offset: int) -> int:
    if offset <= 0:
        return 1
    a = offset & -offset
    return min(a, 65536)


def _read_external_raw(t: Tensor) -> bytes:
    ref = t.external
    assert ref is not None
    with open(ref.path(), "rb") as f:
        f.seek(ref.offset)
        return f.read(ref.length) if ref.length is not None else f.read()


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


def external_tensors(model: Model) -> list[Tensor]:
    """Every tensor of the model whose data lives in an external file (initializers and attributes)."""
    out: list[Tensor] = []
    for g in model.graph.all_graphs():
        for v in g._initializers.values():
            t = v._const
            if t is not None and not t._sparse and t.is_external:
                out.append(t)
    for n in model.meta.get("ext_attr_nodes", ()):
        if not n.is_alive:
            continue
        for a in n.attrs.values():
            if a.type == AttrType.TENSOR and a.value.is_external:
                out.append(a.value)
            elif a.type == AttrType.TENSORS:
                out.extend(x for x in a.value if x.is_external)
    return out


@dataclass
class SaveInfo:
    """What :func:`save` wrote."""

    path: str
    bytes_written: int = 0
    external_files: list[str] = field(default_factory=list)


def _copy_range(src: str, offset: int, length: int, dst: BinaryIO) -> None:
    """Append `length` bytes of `src` from `offset` to `dst`: in the kernel where it can (no user-space buffer, and
    holes stay cheap), else in 16 MiB chunks."""
    with open(src, "rb") as f:
        left = length
        copy = getattr(os, "copy_file_range", None)
        if copy is not None and left > 0:
            dst.flush()
            try:
                while left > 0:
                    n = copy(f.fileno(), dst.fileno(), min(left, 2**30), offset + (length - left))
                    if n == 0:
                        raise ExternalDataError(f"external data file {src!r} ends before the tensor does")
                    left -= n
            except OSError:
                pass  # not supported here (another file system, an old kernel): copy by hand from where it stopped
        f.seek(offset + (length - left))
        while left > 0:
            chunk = f.read(min(left, 16 * 2**20))
            if not chunk:
                raise ExternalDataError(f"external data file {src!r} ends before the tensor does")
            dst.write(chunk)
            left -= len(chunk)


def _inline_size_estimate(model: Model) -> int:
    """An upper-bound-ish estimate of the serialized size, cheap when the model came from bytes."""
    src = model.meta.get("source_bytes")
    if src is not None:
        # the loaded bytes, plus the tensors passes made since (loaded tensors only ever get dropped or renamed)
        total = src
        for g in model.graph.all_graphs():
            for v in g._initializers.values():
                t = v._const
                if t is not None and t._proto is None:
                    total += t.nbytes
        return total
    total = 0
    for g in model.graph.all_graphs():
        for v in g._initializers.values():
            t = v._const
            if t is not None and not t._sparse and not t.is_external:
                total += t.nbytes
        total += 64 * len(g)
    return total


def save(model: Model, path: str | os.PathLike[str], *, in_place_ok: bool = False,
         external_location: str | None = None, external_threshold: int = 1024) -> SaveInfo:
    """Write `model` to `path` atomically (temporary file in the target folder, fsync, then rename).

    Tensors stored externally stay external: their data files are rewritten beside `path` with the same names and,
    when nothing moved, the same offsets. When that would overwrite a data file the source model still needs (same
    folder, not `in_place_ok`), the data goes to ``<file name>.data`` instead. A model whose inline tensors would
    pass protobuf's 2 GiB limit has its largest tensors moved to external data; `external_location` moves every
    tensor of at least `external_threshold` bytes there.
    """
    path = os.fspath(path)
    target_dir = os.path.dirname(os.path.abspath(path)) or "."
    info = SaveInfo(path=path)
    tmp_files: list[tuple[str, str]] = []
    try:
        ext = external_tensors(model) if model.meta.get("has_external", True) else []
        big: list[Tensor] = []
        if external_location is not None or _inline_size_estimate(model) > _PROTO_SOFT_LIMIT:
            cands = []
            for g in model.graph.all_graphs():
                for v in g._initializers.values():
                    t = v._const
                    if t is not None and not t._sparse and not t.is_external and t.nbytes >= external_threshold:
                        cands.append(t)
            cands.sort(key=lambda t: -t.nbytes)
            if external_location is None:
                total = _inline_size_estimate(model)
                for t in cands:
                    if total <= _PROTO_SOFT_LIMIT:
                        break
                    total -= t.nbytes
                    big.append(t)
            else:
                big = cands
        plan: ExtPlan = {}
        if ext or big:
            plan = _write_external(model, ext, big, path, target_dir, in_place_ok, external_location, info,
                                   tmp_files)
        data = serialize(model, plan)
        fd, tmp = tempfile.mkstemp(prefix=".graphopt-", suffix=".tmp", dir=target_dir)
        tmp_files.append((tmp, path))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        info.bytes_written += len(data)
        _commit(tmp_files, 0o666 & ~_umask())
    except OSError as e:
        raise _output_error(e, path) from e
    finally:
        for tmp_path, _ in tmp_files:
            with contextlib.suppress(OSError):
                os.unlink(tmp_path)
    return info


def _commit(tmp_files: list[tuple[str, str]], mode: int) -> None:
    """Move each temporary file over its target, data files first and the model last (a reader never sees a model
    whose data is not there yet), all or nothing: when a rename fails, the targets already replaced get their
    previous content back (kept through a hard link) and new ones are deleted, so that a failed save never leaves
    new data files beside the old model. Empties `tmp_files` of what it moved."""
    done: list[tuple[str, str | None, bool]] = []  # (target, hard link to its previous content, existed before)
    links: list[str] = []
    try:
        while tmp_files:
            tmp_path, final = tmp_files[0]
            with contextlib.suppress(OSError):
                os.chmod(tmp_path, mode)
            bak: str | None = None
            existed = os.path.lexists(final)
            if len(tmp_files) > 1 and existed:  # the last rename needs no way back
                bak = f"{final}.{os.getpid()}.graphopt-bak"
                try:
                    os.link(final, bak)
                    links.append(bak)
                except OSError:  # no hard links here: this target cannot be restored
                    bak = None
            os.replace(tmp_path, final)
            tmp_files.pop(0)
            done.append((final, bak, existed))
    except OSError:
        for final, bak, existed in reversed(done):
            with contextlib.suppress(OSError):
                if bak is not None:
                    os.replace(bak, final)
                elif not existed:
                    os.unlink(final)
        raise
    finally:
        for bak in links:
            with contextlib.suppress(OSError):
                os.unlink(bak)


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def _output_error(e: OSError, path: str) -> GraphoptError:
    return os_error(e, path, writing=True)


def _write_external(model: Model, ext: list[Tensor], big: list[Tensor], path: str, target_dir: str,
                    in_place_ok: bool, forced_location: str | None, info: SaveInfo,
                    tmp_files: list[tuple[str, str]]) -> ExtPlan:
    default_loc = forced_location or (os.path.basename(path) + ".data")
    groups: dict[str, list[tuple[Tensor, dict[str, str], str | None, int, int]]] = {}
    for t in dict.fromkeys(ext):
        ref = t.external
        assert ref is not None
        src_path = ref.path()
        ln = ref.length if ref.length is not None else os.path.getsize(src_path) - ref.offset
        new_loc = ref.location if forced_location is None else forced_location
        if os.path.realpath(os.path.join(target_dir, new_loc)) == src_path and not in_place_ok:
            new_loc = default_loc
        groups.setdefault(new_loc, []).append((t, dict(ref.extra), src_path, ref.offset, ln))
    for t in big:
        groups.setdefault(default_loc, []).append((t, {}, None, 0, t.nbytes))
    plan: ExtPlan = {}
    for loc, items in groups.items():
        final = os.path.join(target_dir, loc)
        if os.path.dirname(loc):
            os.makedirs(os.path.dirname(final), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".graphopt-", suffix=".data.tmp", dir=os.path.dirname(final))
        tmp_files.append((tmp, final))
        # external tensors in their original file order, new ones after
        items.sort(key=lambda it: (it[2] is None, it[2] or "", it[3]))
        written: dict[tuple[str, int, int], int] = {}
        with os.fdopen(fd, "wb") as f:
            pos = 0
            for t, extra, src, off, _ln in items:
                if src is not None:
                    key = (src, off, _ln)
                    if key in written:
                        plan[id(t)] = ("external", loc, written[key], _ln, extra)
                        continue
                    align = _align_of(off)
                else:
                    align = 4096 if _ln >= 2**20 else 64
                new_off = -(-pos // align) * align
                if new_off > pos:
                    f.write(b"\0" * (new_off - pos))
                if src is not None:
                    _copy_range(src, off, _ln, f)
                    written[(src, off, _ln)] = new_off
                    ln = _ln
                else:
                    ln = _write_raw(t, f)
                pos = new_off + ln
                plan[id(t)] = ("external", loc, new_off, ln, extra)
            f.flush()
            os.fsync(f.fileno())
            info.bytes_written += pos
        info.external_files.append(final)
    return plan


def _write_raw(t: Tensor, f: BinaryIO) -> int:
    """Write a tensor's little-endian raw bytes (as raw_data would hold them) to `f`; returns the length."""
    arr = t.numpy()
    from .tensors import _NP_OF

    if t.dtype in _NP_OF and t.dtype != DataType.STRING:
        a = np.ascontiguousarray(arr, dtype=np.dtype(_NP_OF[DataType(t.dtype)]).newbyteorder("<"))
        mv = memoryview(a.reshape(-1).view(np.uint8))
        step = 64 * 2**20
        for i in range(0, len(mv), step):
            f.write(mv[i:i + step])
        return len(mv)
    raw = tensor_to_proto(t, "").raw_data
    f.write(raw)
    return len(raw)


def dumps(model: Model) -> bytes:
    """The serialized model with external data pulled inline (for stdout); refuses models past protobuf's limit."""
    ext = external_tensors(model) if model.meta.get("has_external", True) else []
    if ext:
        if sum(t.nbytes for t in ext) + _inline_size_estimate(model) > _PROTO_SOFT_LIMIT:
            raise OutputError("the model is over 2 GB and cannot be written as one stream",
                              hint="write it to a file (-o model.onnx): its weights then go to external data")
        return serialize(model, {id(t): ("inline",) for t in ext})
    return serialize(model)
