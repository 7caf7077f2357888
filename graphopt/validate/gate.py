"""The validity gate: every model is checked before the first pass, and every result before it is written.

Before optimizing (:func:`check_input`), in this order, each check refusing with an :class:`InvalidModelError`
(exit 3) that says in words what is wrong:

1. the structure, from the IR: every value a node reads is produced by a node or is a graph input, an initializer
   or a value of an enclosing graph; every graph output is produced; the nodes form no cycle (nodes that are merely
   out of order are sorted, with a warning: onnxruntime runs such models, so refusing them would be wrong); then
   the IR's own invariants (:func:`graphopt.ir.verify`);
2. the stored tensors: the bytes (or values) each initializer and tensor attribute stores match its declared type
   and shape, checked from sizes without decoding any number;
3. unless ``checker=False`` (``--no-check``): onnx's checker with strict shape inference (types and shapes that
   contradict each other), run on the bytes as loaded. Finding classes where strict inference is known to be wrong
   about models onnxruntime runs are warnings instead (see :data:`LENIENT`).

After optimizing (:func:`check_output`), the same checks run on the result, plus the interface guard
(:func:`interface_problems`): the same graph inputs and outputs, in order, with the same names, dtypes, ranks and dim
names (a dim may become more specific, never renamed or dropped). A failure there is a bug in graphopt.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidModelError
from ..ir.core import Graph, IRError, Model, Node, Value
from ..ir.shapes import TensorType
from ..ir.tensors import DataType, Tensor, bits_of, dtype_name
from ..ir.verify import verify

log = logging.getLogger("graphopt.validate")

# Strict shape inference findings that are wrong about models onnxruntime runs correctly, found by running the
# gate over onnx's node test suite and its models (tests/test_pipeline_corpus.py keeps this true) and the benchmark
# models. Not one: a tensor that shape inference must read (Reshape's shape) stored as external data, which onnx
# cannot read and onnxruntime refuses to load too. Each entry: (what it is, a regex on the checker's message). A matching finding is a warning.
LENIENT: tuple[tuple[str, str], ...] = (
    # onnx expands a function op (MeanVarianceNormalization, ...) into its body to infer it, and strict mode then
    # trips over the body's own Constant nodes (attribute references it cannot resolve): node/test_mvn
    ("an error inside the body of a function op", r"\(op_type:\w+[^)]*\): \[ShapeInferenceError\] Inference "
     r"error\(s\): \(op_type:"),
)


@dataclass
class GateResult:
    """What the gate found: `warnings` for findings that do not make the model invalid, and whether the node
    order had to be sorted. With onnx's checker still running in the background, :meth:`finish` completes it."""

    warnings: list[str] = field(default_factory=list)
    sorted_nodes: bool = False
    checker: str = "not run"   # "ok", "skipped" (--no-check), "lenient" (a known-wrong finding downgraded)
    _pending: OnnxCheck | None = field(default=None, repr=False)
    _where: str | None = field(default=None, repr=False)

    def finish(self) -> GateResult:
        """Wait for onnx's checker (if it still runs) and apply its verdict: raises InvalidModelError for a
        finding, adds a warning for a known false alarm."""
        pending, self._pending = self._pending, None
        if pending is None:
            return self
        found, inference = pending.result()
        if found is None:
            self.checker = "ok"
        elif self.sorted_nodes and "topologically sorted" in found:
            self.checker = "lenient"
        elif inference and _lenient(found) is not None:
            self.checker = "lenient"
            self.warnings.append(f"onnx's strict shape inference reports {_lenient(found)}, a known false alarm "
                                 f"(onnxruntime runs such models): {_checker_words(found, True)}")
        else:
            raise _refuse(self._where, [_checker_words(found, inference)],
                          "re-export the model, or run `python -m onnx.checker MODEL` for details; --no-check "
                          "skips onnx's checker (never graphopt's own structural checks)")
        return self

    def cancel(self) -> None:
        """Stop a checker still running in the background (the run ended another way)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None


# ================================================================================================================
# Structure
# ================================================================================================================
def _graphs(model: Model) -> Iterator[Graph]:
    yield from model.graph.all_graphs()


def _describe_node(n: Node) -> str:
    name = n.name
    what = f"{n.op_type} node {name!r}" if name else f"{n.op_type} node"
    if not name and n.outputs and n.outputs[0].name:
        what += f" (output {n.outputs[0].name!r})"
    return what


def structure_problems(model: Model, *, result: bool = False) -> tuple[list[str], bool]:
    """(problems in words, whether the nodes were re-sorted). Sorting is the only change made: on a model whose
    nodes are out of order but acyclic.

    A loaded model: the loader already holds the model to SSA and to consistent use-def, and leaves the names read
    before any definition in a list; so the walk looks at those, the graph outputs, and the order (a linear sort).
    A `result` of the passes: the IR's own full verify (use-def, order, outputs, names), since a pass could have
    broken any invariant."""
    if result:
        return verify(model, strict=False)[:5], False
    problems: list[str] = []
    dangling = set(model.graph.meta.get("dangling", ()))  # every unresolved name ends up in the main graph's list
    for ph in dangling:
        readers = [u for u, _ in ph.uses()]
        if readers:
            problems.append(f"{_describe_node(readers[0])}{_inside(readers[0].graph)} reads {ph.name!r}, which no "
                            "node produces and which is neither a graph input nor an initializer")
    for g in _graphs(model):
        for v in g._outputs:
            if v in dangling:
                problems.append(f"graph output {v.name!r}{_inside(g)} is not produced by any node")
    if problems:
        return problems, False
    if model.meta.get("in_order_at", -1) == model.mutations:
        return [], False  # the loader saw every value defined before it was read: sorted, hence acyclic
    try:
        changed = model.graph.sort(recursive=True)
    except IRError as e:
        return [_cycle_words(model, e)], False
    return [], changed


def _inside(g: Graph | None) -> str:
    return f" (in a subgraph of {_describe_node(g.owner)})" if g is not None and g.owner is not None else ""


def _cycle_words(model: Model, e: IRError) -> str:
    node = getattr(e, "node", None)
    where = f" through {_describe_node(node)}{_inside(node.graph)}" if node is not None else ""
    return f"the nodes form a cycle{where}: a value is computed from itself"


# ================================================================================================================
# Tensors: stored sizes against declared types and shapes
# ================================================================================================================
_FIELD = {  # the typed field a dtype's values live in (onnx.helper.tensor_dtype_to_field)
    DataType.FLOAT: "float_data", DataType.COMPLEX64: "float_data", DataType.DOUBLE: "double_data",
    DataType.COMPLEX128: "double_data", DataType.INT64: "int64_data", DataType.UINT32: "uint64_data",
    DataType.UINT64: "uint64_data", DataType.STRING: "string_data",
}
_INT32_FIELD = frozenset(int(d) for d in DataType) - {int(d) for d in _FIELD} - {int(DataType.UNDEFINED)}


def _typed_count(dtype: int, size: int) -> int:
    """How many entries of its typed field a tensor of `size` elements stores."""
    if dtype in (DataType.COMPLEX64, DataType.COMPLEX128):
        return 2 * size
    b = bits_of(dtype)
    if 0 < b < 8:  # packed sub-byte types: several values per int32 entry, one byte's worth each
        per = 8 // b
        return (size + per - 1) // per
    return size


def tensor_problem(t: Tensor, what: str, base_dir: str | None) -> str | None:
    """Why `t`'s stored data does not fit its declared dtype and shape, or None. Reads sizes only."""
    tp = t._proto
    if tp is None or t.is_sparse or t.is_loaded:
        return None  # made by graphopt from numpy, or sparse (the checker validates sparse tensors)
    dtype, shape = t.dtype, t.shape
    if any(d < 0 for d in shape):
        return f"{what} has a negative dim in its shape {list(shape)}"
    size = 1
    for d in shape:
        size *= d
    decl = f"{dtype_name(dtype)}{list(shape)}"
    if dtype == DataType.UNDEFINED:
        return f"{what} has no data type"
    ext = t.external
    if ext is not None:
        bits = bits_of(dtype)
        if bits == 0:
            return None
        want = (size * bits + 7) // 8
        if ext.length is not None and ext.length != want:
            return f"{what} is declared {decl} ({want} bytes) but its external data entry says {ext.length} bytes"
        try:
            have = os.path.getsize(ext.path()) - ext.offset
        except OSError:
            return None  # missing files are refused at load, with the right words
        if have < want:
            return (f"{what} is declared {decl} ({want} bytes) but its external data file "
                    f"{ext.location!r} holds only {max(have, 0)} bytes from offset {ext.offset}")
        return None
    raw = tp.raw_data
    if raw:
        bits = bits_of(dtype)
        if bits == 0:
            return f"{what} stores {dtype_name(dtype)} values as raw bytes, which ONNX does not allow"
        want = (size * bits + 7) // 8
        if len(raw) != want:
            return f"{what} is declared {decl}, which takes {want} bytes, but it stores {len(raw)} bytes"
        return None
    fld = _FIELD.get(dtype, "int32_data" if dtype in _INT32_FIELD else None)
    if fld is None:
        return None
    have = len(getattr(tp, fld))
    want = _typed_count(dtype, size)
    if have != want:
        if have == 0 and size > 0:
            return f"{what} is declared {decl} but stores no data"
        return f"{what} is declared {decl}, {want} value(s), but it stores {have}"
    return None


def tensor_problems(model: Model) -> list[str]:
    """Every initializer and tensor attribute whose stored data does not fit its declaration (in words)."""
    out: list[str] = []
    base = model.base_dir
    for g in _graphs(model):
        for name, v in g._initializers.items():
            if v.const is not None:
                p = tensor_problem(v.const, f"initializer {name!r}", base)
                if p:
                    out.append(p)
        for n in g:
            if n.op_type == "Constant" and not n.domain:
                a = n.attrs.get("value") if n.attrs else None
                t = getattr(a, "value", None)
                if isinstance(t, Tensor):
                    p = tensor_problem(t, f"the value of {_describe_node(n)}", base)
                    if p:
                        out.append(p)
    return out


# ================================================================================================================
# onnx's checker with strict shape inference
# ================================================================================================================
def onnx_check(data: bytes | None, path: str | None, *, locations: Iterable[str] = ()) -> tuple[str | None, bool]:
    """Run onnx's checker with strict shape inference on a model file (`path`) or its bytes (`data`). Returns
    (the first finding in words or None, whether it comes from shape inference rather than the checker proper).

    onnx resolves external data of a model given as bytes against the working directory; for bytes with external
    tensors (their `locations`), the check runs on a copy in a temporary folder beside empty stand-ins of those files
    (the checker wants them to exist and reads none of them; graphopt checks the real files itself).
    """
    from onnx.onnx_cpp2py_export import checker as c

    locs = sorted(set(locations))
    with contextlib.ExitStack() as stack:
        if path is None and locs:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="graphopt-check-"))
            for loc in locs:
                # the checker wants each data file to exist as a regular file (a link will not do) and reads none
                stub = os.path.join(tmp, loc)
                with contextlib.suppress(OSError):
                    os.makedirs(os.path.dirname(stub), exist_ok=True)
                    open(stub, "wb").close()
            path = os.path.join(tmp, "model.onnx")
            with open(path, "wb") as f:
                f.write(data or b"")

        def run(full: bool) -> str | None:
            try:
                if path is not None:
                    c.check_model_path(path, full, False, False)
                else:
                    c.check_model(data or b"", full, False, False)
            except Exception as e:  # noqa: BLE001 - every checker and inference error is a finding
                return " ".join(str(e).split())
            return None

        found = run(True)
        if found is None:
            return None, False
        # the full check adds strict shape inference to the checker: tell which one spoke
        return found, run(False) is None


class OnnxCheck:
    """:func:`onnx_check` run now, or (``background=True``, on Linux, from the main thread) in a forked child
    while the caller goes on: onnx's checker holds the GIL for its whole run (a second or two at 100k nodes), so a
    thread would not overlap; a child process does, on another core. :meth:`result` waits for it. A child that dies
    without an answer (killed for memory, say) is replaced by a check in this process: the answer is never lost."""

    def __init__(self, data: bytes | None, path: str | None, locations: Iterable[str] = (), *,
                 background: bool = False):
        self._args: tuple[Any, ...] = (data, path, tuple(locations))
        self._result: tuple[str | None, bool] | None = None
        self._pid: int | None = None
        self._fd: int | None = None
        if background and _can_fork():
            self._start()
        else:
            self._result = onnx_check(data, path, locations=locations)

    @property
    def running(self) -> bool:
        return self._pid is not None

    def _start(self) -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: check, answer through the pipe, and leave without running any cleanup
            status = 1
            try:
                os.close(r)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                data, path, locations = self._args
                view = memoryview(json.dumps(onnx_check(data, path, locations=locations)).encode())
                while view:
                    view = view[os.write(w, view):]
                status = 0
            finally:
                os._exit(status)
        os.close(w)
        self._pid, self._fd = pid, r

    def result(self) -> tuple[str | None, bool]:
        """(the first finding in words or None, whether shape inference made it), waiting for the child."""
        if self._result is None:
            assert self._fd is not None and self._pid is not None
            chunks = []
            while True:
                b = os.read(self._fd, 1 << 16)
                if not b:
                    break
                chunks.append(b)
            self._reap()
            try:
                found, inference = json.loads(b"".join(chunks))
                self._result = (found, bool(inference))
            except ValueError:
                data, path, locations = self._args
                self._result = onnx_check(data, path, locations=locations)
        return self._result

    def cancel(self) -> None:
        """Stop a running child (the run ended another way)."""
        if self._pid is not None:
            with contextlib.suppress(OSError):
                os.kill(self._pid, signal.SIGKILL)
            self._reap()

    def _reap(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self._pid is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
            self._pid = None


def _can_fork() -> bool:
    # fork copies the calling thread only: from the main thread, with nothing but C code to run in the child, that
    # is safe (onnx's checker takes no lock another thread could hold); elsewhere (a worker thread of a caller's
    # pool) or on other systems the check runs in place
    return (hasattr(os, "fork") and sys.platform.startswith("linux")
            and threading.current_thread() is threading.main_thread())


def _external_locations(model: Model) -> list[str]:
    out = []
    if model.meta.get("has_external", True):
        from ..ir.serde import external_tensors

        for t in external_tensors(model):
            ext = t.external
            if ext is not None:
                out.append(ext.location)
    return out


def _lenient(msg: str) -> str | None:
    for what, pattern in LENIENT:
        if re.search(pattern, msg):
            return what
    return None


def _checker_words(msg: str, inference: bool) -> str:
    """onnx's message, shortened to what a person needs: which node, what is wrong."""
    m = re.search(r"\(op_type:(\w+)(?:, node name: ([^)]*))?\): \[\w+\] (.*?)(?= \(op_type:|$)", msg)
    if m:
        op, node, what = m.group(1), (m.group(2) or "").strip(), m.group(3).strip()
        msg = f"{op} node{f' {node!r}' if node else ''}: {what[:1].lower() + what[1:]}"
    else:
        msg = re.sub(r"^\[[A-Za-z]+\]\s*", "", msg)
    msg = msg if len(msg) <= 300 else msg[:297] + "..."
    ext = re.search(r"cannot parse data from external tensors.*for tensor: (\S+)", msg, re.IGNORECASE)
    if ext:
        # not a contradiction: onnx (and onnxruntime, which refuses to load such a model) reads no shape from there
        return (f"tensor {ext.group(1)!r} sets a shape but is stored as external data, where neither onnx's shape "
                f"inference nor onnxruntime reads it ({msg.split(':')[0]}); store it inline")
    if inference:
        return f"its types and shapes contradict each other: {msg}"
    return f"the ONNX checker rejects it: {msg}"


# ================================================================================================================
# The gate
# ================================================================================================================
def check_input(model: Model, *, data: bytes | None = None, path: str | None = None, checker: bool = True,
                name: str | None = None, background: bool = False,
                started: OnnxCheck | None = None) -> GateResult:
    """Check a loaded model before any pass runs; raises InvalidModelError (exit 3) naming `name` (the input's
    path, or "<stdin>") with what is wrong, in words. `data`/`path` are the model's bytes or file, for onnx's
    checker (skipped with ``checker=False``; the structural checks always run).

    With `background`, onnx's checker runs in a child process while the caller optimizes (see :class:`OnnxCheck`):
    the result is then only final after :meth:`GateResult.finish`, which raises what the checker found. The
    outcome is the same either way; only the wall time differs. `started` is onnx's checker already running on
    `path` (started before the model was loaded, see :func:`start_file_check`); the gate takes it over, and
    cancels it when it refuses the model for another reason."""
    res = GateResult()
    res._pending = started   # cancelled by the caller's GateResult.cancel() or below on a refusal
    try:
        _check_structure(model, res, path or name)
    except BaseException:
        res.cancel()
        raise
    if not checker:
        res.cancel()
        res.checker = "skipped"
        return res
    res._where = path or name
    if res._pending is None:
        res._pending = OnnxCheck(data, path if data is None else None,
                                 _external_locations(model) if data is not None else (), background=background)
    if not res._pending.running:
        res.finish()
    return res


def _check_structure(model: Model, res: GateResult, where: str | None) -> None:
    if model.meta.get("has_external", True):
        from ..errors import ExternalDataError
        from ..ir.serde import check_external_data

        try:
            check_external_data(model)
        except ExternalDataError as e:
            e.path = e.path or where
            raise
    problems, res.sorted_nodes = structure_problems(model)
    if problems:
        raise _refuse(where, problems, "the model's graph is broken; re-export it (graphopt cannot repair it)")
    if res.sorted_nodes:
        res.warnings.append("the nodes were not in topological order; graphopt sorted them (onnx's checker "
                            "would refuse the original)")
    problems = tensor_problems(model)
    if problems:
        raise _refuse(where, problems, "a stored tensor is truncated or corrupted; re-export the model")


def start_file_check(path: str) -> OnnxCheck | None:
    """onnx's checker on a model file, started in a child process before the file is even loaded, so that loading
    and checking overlap (hand the result to :func:`check_input` as `started`); None where it cannot run in the
    background. The file is read by the child itself: external data is resolved by onnx against the file's
    folder, as graphopt resolves it."""
    return OnnxCheck(None, path, background=True) if _can_fork() else None


def _refuse(where: str | None, problems: list[str], hint: str) -> InvalidModelError:
    msg = problems[0] + (f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else "")
    err = InvalidModelError(msg, path=where, hint=hint)
    err.details = {"problems": problems}
    return err


@dataclass(frozen=True)
class Port:
    """One graph input or output as the interface guard sees it."""

    name: str
    kind: str                                  # "tensor", or the type's class name for other types
    dtype: int | None
    shape: tuple[Any, ...] | None             # dims: int, str (dim name) or None; None = rank unknown

    def describe(self) -> str:
        if self.kind != "tensor":
            return f"{self.name!r} ({self.kind})"
        dims = "?" if self.shape is None else "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"
        return f"{self.name!r} {dtype_name(self.dtype) if self.dtype is not None else '?'}{dims}"


@dataclass(frozen=True)
class Interface:
    """A model's interface: its graph inputs (not backed by initializers) and outputs, in order."""

    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]


def _port(v: Value) -> Port:
    t = v.type
    if t is None:
        return Port(v.name, "tensor", None, None)
    if isinstance(t, TensorType):
        return Port(v.name, "tensor", t.dtype, None if t.shape is None else tuple(t.shape))
    return Port(v.name, type(t).__name__, None, None)


def interface_of(model: Model) -> Interface:
    g = model.graph
    inits = set(g._initializers.values())
    return Interface(tuple(_port(v) for v in g._inputs if v not in inits), tuple(_port(v) for v in g._outputs))


def interface_problems(before: Interface, after: Interface) -> list[str]:
    """How `after` breaks `before`'s contract (empty when it keeps it)."""
    out: list[str] = []
    for kind, a, b in (("input", before.inputs, after.inputs), ("output", before.outputs, after.outputs)):
        if [p.name for p in a] != [p.name for p in b]:
            out.append(f"the graph {kind}s changed from {[p.name for p in a]} to {[p.name for p in b]}")
            continue
        for p, q in zip(a, b):
            if p.kind != q.kind or (p.dtype is not None and p.dtype != q.dtype):
                out.append(f"{kind} {p.describe()} became {q.describe()}")
            elif p.shape is not None:
                if q.shape is None or len(q.shape) != len(p.shape):
                    out.append(f"{kind} {p.describe()} became {q.describe()} (rank changed or dropped)")
                    continue
                for i, (d, e) in enumerate(zip(p.shape, q.shape)):
                    # more specific is fine (unknown -> anything, a name -> a size); renamed, dropped or a
                    # changed size is not
                    if d is None or d == e or (isinstance(d, str) and isinstance(e, int)):
                        continue
                    out.append(f"{kind} {p.describe()} became {q.describe()} (dim {i}: {d} -> "
                               f"{'?' if e is None else e})")
                    break
    return out


def check_output(model: Model, before: Interface, *, data: bytes | None, checker: bool = True) -> list[str]:
    """The result's problems (empty when it may be written): structure, the interface and (with `checker`) onnx's
    checker on `data`, the result's bytes. Findings the input gate would downgrade to warnings are not problems
    here either."""
    problems = output_problems(model, before)
    if not problems and checker and data is not None:
        problems = onnx_problems(OnnxCheck(data, None, _external_locations(model)))
    return problems


def output_problems(model: Model, before: Interface) -> list[str]:
    """The result's problems that graphopt's own checks find: structure and the interface."""
    problems, _ = structure_problems(model, result=True)
    # stored tensors need no second look: the ones loaded passed the input gate and are written back as they came,
    # and the ones passes made come from numpy arrays, whose bytes match their dtype and shape by construction
    problems += interface_problems(before, interface_of(model))
    return problems


def start_output_check(model: Model, data: bytes, *, background: bool = False) -> OnnxCheck:
    """onnx's checker on the result's bytes, now or in the background (see :class:`OnnxCheck`)."""
    return OnnxCheck(data, None, _external_locations(model), background=background)


def onnx_problems(check: OnnxCheck) -> list[str]:
    """What onnx's checker found in a result, in words (a known false alarm is not a problem)."""
    found, inference = check.result()
    if found is None or (inference and _lenient(found)):
        return []
    return [_checker_words(found, inference)]


__all__ = ["GateResult", "Interface", "LENIENT", "OnnxCheck", "Port", "check_input", "check_output", "interface_of",
           "interface_problems", "onnx_check", "onnx_problems", "output_problems", "start_file_check",
           "start_output_check", "structure_problems", "tensor_problem", "tensor_problems"]
