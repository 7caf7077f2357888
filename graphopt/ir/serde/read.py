"""Reading: bytes or a file -> protobuf (once, in protobuf's C code) -> the IR, lazily.

The loader walks the nodes reading only op type, domain, input and output names; attributes, tensors and types
stay serialized until a pass asks. The model and graph messages are kept as templates with their lists taken out,
so every field the IR does not model lives on."""

from __future__ import annotations

import gc
import os
from typing import Any

import onnx
from google.protobuf.message import DecodeError

from ...errors import (
    InvalidModelError,
    ModelDecodeError,
    NotOnnxError,
    UnsupportedModelError,
    os_error,
)
from ..core import _UNSET, Attr, AttrType, Graph, Model, Node, Value
from ..tensors import Tensor
from .convert import (
    _EXTERNAL,
    _NO_GRAPH_DOMAINS,
    _SUBGRAPH_OPS,
    _mark_external_attr_nodes,
    _model_fields,
    tensor_from_proto,
)


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
        from ...errors import ResourceError

        raise ResourceError(f"{p}: out of memory while reading the model", path=p) from e
    except OSError as e:
        raise os_error(e, p, writing=False) from e


def load(path: str | os.PathLike[str]) -> Model:
    """Load a model file into the IR. External data stays on disk until a pass needs the numbers."""
    p = os.fspath(path)
    try:
        st: os.stat_result | None = os.stat(p)
    except OSError:
        st = None
    data = read_bytes(p)
    model = loads(data, base_dir=os.path.dirname(os.path.abspath(p)), path=p)
    if st is not None and st.st_size == len(data):
        # lets a save of the unchanged model write the file back as it is (see write.save)
        model.meta["source_stat"] = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
    return model


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
    try:
        model = from_proto(mp, base_dir=base_dir, copy=False, _scan_external=has_ext)
    except InvalidModelError as e:
        if e.path is None:
            e.path = path  # the loader knows the graph, not the file: errors name the file
        raise
    model.source_path = path
    model.meta["source_bytes"] = len(data)
    model.meta["has_external"] = has_ext
    return model


def check_external_data(model: Model) -> None:
    """Resolve every external data reference now: a location that is absolute, leaves the model's folder (after
    resolving ``..`` and symlinks) or names a missing file is an ExternalDataError. Reads no data; stats each file
    once. Loading itself stays lazy (a model whose data is missing can still be loaded and inspected); a run
    calls this right after loading, before any work is done."""
    from ..tensors import Tensor as _T

    seen: set[str] = set()

    def check(t: _T) -> None:
        ext = t.external
        if ext is not None and ext.location not in seen:
            ext.path()  # raises with the reason
            seen.add(ext.location)

    for g in model.graph.all_graphs():
        for v in g._initializers.values():
            if v._const is not None and not v._const.is_sparse and v._const._proto is not None and \
                    v._const._proto.data_location == _EXTERNAL:
                check(v._const)
    for n in model.meta.get("ext_attr_nodes", ()):
        for a in (n.attrs or {}).values():
            vals = a.value if isinstance(a.value, list) else [a.value]
            for t in vals:
                if isinstance(t, _T):
                    check(t)


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
    # the graphs are in topological order as long as the model is not changed (see Model.mutations)
    model.meta["in_order_at"] = None if loader.forward else model.mutations
    if scan_external:
        _mark_external_attr_nodes(model)
    return model




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
        # a value defined after a node that reads it (in any graph): without one, every graph's node order is
        # already topological, so no cycle can exist either
        self.forward = False

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
                else:
                    self.forward = True
                v.producer = node
                v.index = i
                if name:
                    if name in scope:
                        raise InvalidModelError(f"value {name!r} is defined twice (the graph is not in SSA form)",
                                                hint="the model's graph is broken; re-export it")
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
