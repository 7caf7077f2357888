"""Writing: the IR -> bytes, atomically to a file with its external data.

Every node and tensor that no pass touched is written back as the very message that was loaded (the serialized
pieces are concatenated), so the cost of a round trip follows what changed, not the size of the model."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import onnx

from ...errors import (
    ExternalDataError,
    GraphoptError,
    OutputError,
    os_error,
)
from ..core import Attr, AttrType, Graph, Model, Node, Value
from ..tensors import DataType, Tensor
from .convert import (
    _EXTERNAL,
    _PROTO_SOFT_LIMIT,
    _b,
    _model_fields,
    tensor_to_proto,
    type_to_proto,
)

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
        return b"".join(self.graph_parts(g))

    def graph_parts(self, g: Graph) -> list[bytes]:
        """The serialized graph as pieces to concatenate (a big model is never joined into one more copy)."""
        parts: list[bytes] = []
        add = parts.append
        tmpl = g._template
        if tmpl is None or tmpl.name != g.name or tmpl.doc_string != g.doc_string:
            gp = onnx.GraphProto()
            if tmpl is not None:
                gp.CopyFrom(tmpl)
            if gp.name != g.name:
                gp.name = g.name
            if gp.doc_string != g.doc_string:
                gp.doc_string = g.doc_string
            tmpl = gp
        # fields in field-number order, as protobuf writes them: a graph nothing changed comes out byte for byte
        t_name, t_doc, t_quant, t_rest = _template_parts(tmpl, _GRAPH_RANGES)
        node_bytes = self.node_bytes
        for n in g:
            b = node_bytes(n)
            add(_T_NODE + _varint(len(b)) + b)
        add(t_name)
        sparse: list[bytes] = []
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
                sparse.append(_field(_T_SPARSE_INIT, sp.SerializeToString()))
            else:
                add(_field(_T_INIT, self.tensor_proto(t, name).SerializeToString()))
        add(t_doc)
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
        add(t_quant)
        parts.extend(sparse)
        add(t_rest)
        return parts

    def model_bytes(self, model: Model) -> bytes:
        return b"".join(self.model_parts(model))

    def model_parts(self, model: Model) -> list[bytes]:
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
        # fields in field-number order (ir_version..doc_string, graph, opset_import, metadata.., functions, the
        # rest), as protobuf writes them: a model nothing changed comes out byte for byte
        t_head, t_mid, t_rest = _template_parts(mp, _MODEL_RANGES)
        gparts = self.graph_parts(model.graph)
        parts = [t_head, _T_GRAPH, _varint(sum(len(x) for x in gparts)), *gparts]
        orig = model.meta.get("opset_protos") or {}
        for d, ver in model.opset_imports.items():
            o = orig.get(d)
            if o is None or o.version != ver:
                o = onnx.OperatorSetIdProto()
                o.domain = d
                o.version = ver
            parts.append(_field(_T_OPSET, o.SerializeToString()))
        parts.append(t_mid)
        for f in model.functions:
            parts.append(_field(_T_FUNCTION, f.SerializeToString()))
        parts.append(t_rest)
        return parts


# Field-number ranges of the fields a template keeps, between the lists the writer frames itself: GraphProto
# (node=1 | name | initializer=5 | ..doc_string | input=11, output=12, value_info=13 | quantization_annotation |
# sparse_initializer=15 | metadata_props.. and unknown fields) and ModelProto (ir_version..doc_string | graph=7,
# opset_import=8 | metadata_props, training_info | functions=25 | configuration.. and unknown fields).
_GRAPH_RANGES = ((2, 4), (6, 10), (14, 14), (16, 1 << 29))
_MODEL_RANGES = ((1, 6), (9, 24), (26, 1 << 29))


def _template_parts(msg: Any, ranges: tuple[tuple[int, int], ...]) -> list[bytes]:
    """`msg` serialized in pieces, one per field-number range (unknown fields with the last one)."""
    fields = msg.ListFields()
    last = len(ranges) - 1
    out: list[bytes] = []
    for k, (lo, hi) in enumerate(ranges):
        if k < last and not any(lo <= f.number <= hi for f, _ in fields):
            out.append(b"")
            continue
        if all(lo <= f.number <= hi for f, _ in fields) and k == last:
            out.append(msg.SerializeToString())
            continue
        c = type(msg)()
        c.CopyFrom(msg)
        for f, _ in fields:
            if not lo <= f.number <= hi:
                c.ClearField(f.name)
        if k < last:
            c.DiscardUnknownFields()
        out.append(c.SerializeToString())
    return out


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


def node_to_proto(n: Node) -> onnx.NodeProto:
    """The NodeProto of `n` as it would be written (its loaded message when nothing touched it; not a copy then:
    do not modify it)."""
    p = n._proto
    if not n._dirty and p is not None and not n._subgraphs:
        return p
    return _Writer().node_proto(n)


def serialize(model: Model, plan: ExtPlan | None = None) -> bytes:
    """The serialized model. External tensors keep their references unless `plan` says otherwise."""
    return b"".join(serialize_parts(model, plan))


def serialize_parts(model: Model, plan: ExtPlan | None = None) -> list[bytes]:
    """The serialized model in pieces to write one after the other (no copy of the whole)."""
    ext_nodes = model.meta.get("ext_attr_nodes") if plan else None
    gc_was = gc.isenabled()
    gc.disable()  # nothing here makes cyclic garbage; spare the big model's objects from GC rescans
    try:
        return _Writer(plan, set(ext_nodes) if ext_nodes else None).model_parts(model)
    finally:
        if gc_was:
            gc.enable()


def unchanged(model: Model) -> bool:
    """Whether nothing was edited since the model was loaded: no IR mutation (nodes, edges, names, types,
    initializers, value_info, opsets, functions), the model's and graphs' own fields as loaded, and no model-local
    functions (a list the IR does not watch)."""
    tmpl = model._template
    if not (model.mutations == 0 and tmpl is not None and not model.graph._dirty and not model.functions
            and tmpl.ir_version == model.ir_version and model._orig_fields == _model_fields(model)):
        return False
    orig = model.meta.get("opset_protos") or {}
    if [(d, o.version) for d, o in orig.items()] != list(model.opset_imports.items()):
        return False
    for g in model.graph.all_graphs():
        gt = g._template
        if gt is None or g._dirty or gt.name != g.name or gt.doc_string != g.doc_string:
            return False
    return True


def _source_bytes(model: Model) -> bytes | None:
    """The file the model was loaded from, when the model is unchanged since, has no external data, and the file
    is still what was loaded (same size, modification time and inode); else None."""
    src = model.source_path
    st0 = model.meta.get("source_stat")
    if src is None or st0 is None or model.meta.get("has_external", True) or not unchanged(model):
        return None
    try:
        st = os.stat(src)
        if (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev) != tuple(st0):
            return None
        with open(src, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data if len(data) == st0[0] else None


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
         external_location: str | None = None, external_threshold: int = 1024,
         serialized: bytes | None = None) -> SaveInfo:
    """Write `model` to `path` atomically (temporary file in the target folder, fsync, then rename).

    Tensors stored externally stay external: their data files are rewritten beside `path` with the same names and,
    when nothing moved, the same offsets. When that would overwrite a data file the source model still needs (same
    folder, not `in_place_ok`), the data goes to ``<file name>.data`` instead. A model whose inline tensors would
    pass protobuf's 2 GiB limit has its largest tensors moved to external data; `external_location` moves every
    tensor of at least `external_threshold` bytes there. `serialized` is the model's bytes as :func:`serialize`
    made them (a caller that checked them passes them on): written as they are when no tensor moves.
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
        # a model nothing changed is the file it came from, byte for byte, whatever order its fields were in
        src = None if plan else _source_bytes(model)
        if src is not None:
            parts = [src]
        elif serialized is not None and not plan and not big:
            parts = [serialized]  # the bytes the caller made (and checked) already
        else:
            parts = serialize_parts(model, plan)
        fd, tmp = tempfile.mkstemp(prefix=".graphopt-", suffix=".tmp", dir=target_dir)
        tmp_files.append((tmp, path))
        with os.fdopen(fd, "wb") as f:
            f.writelines(parts)
            f.flush()
            os.fsync(f.fileno())
        info.bytes_written += sum(len(x) for x in parts)
        del parts
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
    # SIGINT/SIGTERM wait until the renames are done: an interrupted commit would leave new data files beside the
    # old model
    deferred = _DeferSignals()
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
        deferred.release()


class _DeferSignals:
    """Hold SIGINT and SIGTERM from construction to :meth:`release`, then hand the first one that came to the
    handler that was installed before (the process's own: Ctrl-C's KeyboardInterrupt, the CLI's, or the default
    action). Python runs signal handlers in the main thread only; elsewhere this does nothing. (Masking the
    signal would not do: the kernel hands a process-directed signal to any thread that does not block it, and
    onnxruntime's threads do not.)"""

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.got: list[tuple[int, Any]] = []
        self.old: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for s in self._SIGNALS:
                self.old[s] = signal.signal(s, self._hold)

    def _hold(self, signum: int, frame: Any) -> None:
        self.got.append((signum, frame))

    def release(self) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)
        if not self.got:
            return
        signum, frame = self.got[0]
        h = self.old.get(signum)
        if callable(h):
            h(signum, frame)
        elif h == signal.SIG_DFL:
            os.kill(os.getpid(), signum)  # the default action, now that the files agree


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
    from ..tensors import _NP_OF

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


def dumps(model: Model, serialized: bytes | None = None) -> bytes:
    """The serialized model with external data pulled inline (for stdout); refuses models past protobuf's limit.
    `serialized`: the bytes :func:`serialize` made, reused when nothing is external."""
    ext = external_tensors(model) if model.meta.get("has_external", True) else []
    if ext:
        if sum(t.nbytes for t in ext) + _inline_size_estimate(model) > _PROTO_SOFT_LIMIT:
            raise OutputError("the model is over 2 GB and cannot be written as one stream",
                              hint="write it to a file (-o model.onnx): its weights then go to external data")
        return serialize(model, {id(t): ("inline",) for t in ext})
    return serialized if serialized is not None else serialize(model)
