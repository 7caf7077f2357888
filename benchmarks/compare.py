"""graphopt -O2 side by side with peer ONNX optimizers, on real models.

    python benchmarks/compare.py                              # every model, every tool
    python benchmarks/compare.py --tools graphopt,onnxsim --models bert,light/resnet50 --runs 20 --json out.json

For each model and tool: nodes before/after (subgraph nodes included), the tool's wall time, output size, whether
the output passes onnx.checker (full_check=True) and loads in onnxruntime, whether its outputs still match the
ORIGINAL model's in onnxruntime (seeded random inputs, two bindings of the symbolic dims, rtol 1e-3 / atol 1e-4),
its onnxruntime latency as a ratio to the original's (1 thread, ORT's default optimizations on), its speedup over the
original under ORT_DISABLE_ALL (what the static rewrite alone buys) and ORT_ENABLE_ALL (each timed interleaved with
the original in the same process), and its onnxruntime session-creation time. Every tool gets a fresh copy of the
model file and runs in its own subprocess with a timeout (see peers.py). Plain markdown out.

A model may come with `<name>.hints.json` beside it (export_models.py writes them), for inputs that random values
do not fit: {"shapes": {"input": ["batch", 576]}, "values": {"sr": 16000}} fixes an input's shape (strings are
symbolic dims, bound like the model's own) or its value.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RTOL, ATOL = 1e-3, 1e-4
SCHEMA_VERSION = 1


# ----------------------------------------------------------------------------------------------------------------
# which models
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSpec:
    id: str      # "<group>/<name>", what --models matches and the tables show
    path: Path


def _onnx_data_dir() -> Path:
    return Path(onnx.__file__).parent / "backend" / "test" / "data"


def discover_models(min_pytorch_nodes: int = 3) -> list[ModelSpec]:
    """samples/*.onnx, onnx's light/*.onnx, the pytorch-converted/-operator tests with >= `min_pytorch_nodes`
    nodes, and benchmarks/models/*.onnx (when export_models.py has been run)."""
    out = [ModelSpec(f"samples/{p.stem}", p) for p in sorted((ROOT / "samples").glob("*.onnx"))]
    data = _onnx_data_dir()
    out += [ModelSpec(f"light/{p.stem.removeprefix('light_')}", p) for p in sorted((data / "light").glob("*.onnx"))]
    for group in ("pytorch-converted", "pytorch-operator"):
        for p in sorted((data / group).glob("*/model.onnx")):
            if len(onnx.load(str(p), load_external_data=False).graph.node) >= min_pytorch_nodes:
                out.append(ModelSpec(f"{group}/{p.parent.name.removeprefix('test_')}", p))
    out += [ModelSpec(f"models/{p.stem}", p) for p in sorted((HERE / "models").glob("*.onnx"))]
    return out


def select(specs: list[ModelSpec], patterns: list[str]) -> list[ModelSpec]:
    """Keep the models whose id contains a pattern or matches it as a glob."""
    if not patterns:
        return specs
    return [s for s in specs if any(p in s.id or fnmatch.fnmatch(s.id, p) for p in patterns)]


# ----------------------------------------------------------------------------------------------------------------
# static figures
# ----------------------------------------------------------------------------------------------------------------

def _walk_nodes(g: onnx.GraphProto):
    for n in g.node:
        yield n
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _walk_nodes(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for sg in a.graphs:
                    yield from _walk_nodes(sg)


def op_counts(m: onnx.ModelProto) -> Counter[str]:
    """Op types of every node in the main graph and its subgraphs (domain-qualified outside the default domain)."""
    return Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}"
                   for n in _walk_nodes(m.graph))


def file_size(path: Path, m: onnx.ModelProto) -> int:
    """The model file plus the external data files it names."""
    locs: set[str] = set()
    for t in _all_tensors(m):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            locs.update(e.value for e in t.external_data if e.key == "location")
    return path.stat().st_size + sum((path.parent / loc).stat().st_size for loc in sorted(locs)
                                     if (path.parent / loc).exists())


def _all_tensors(m: onnx.ModelProto):
    def graph_tensors(g: onnx.GraphProto):
        yield from g.initializer
        for n in g.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.TENSOR:
                    yield a.t
                elif a.type == onnx.AttributeProto.GRAPH:
                    yield from graph_tensors(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sg in a.graphs:
                        yield from graph_tensors(sg)
    yield from graph_tensors(m.graph)


def copy_model(src: Path, dst_dir: Path) -> Path:
    """A fresh copy of the model file and any external data files beside it."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / src.name
    shutil.copyfile(src, dst)
    m = onnx.load(str(src), load_external_data=False)
    for t in _all_tensors(m):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            for e in t.external_data:
                if e.key == "location" and not (dst_dir / e.value).exists():
                    (dst_dir / e.value).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src.parent / e.value, dst_dir / e.value)
    return dst


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# inputs and onnxruntime
# ----------------------------------------------------------------------------------------------------------------

def _first_line(e: BaseException) -> str:
    lines = f"{type(e).__name__}: {e}".strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:300]


def load_hints(path: Path) -> dict[str, Any]:
    """The model's input hints (`<stem>.hints.json` beside it), or {}."""
    h = path.with_name(path.stem + ".hints.json")
    return json.loads(h.read_text()) if h.exists() else {}


def _input_shape(i: onnx.ValueInfoProto, hints: dict[str, Any]) -> list[int | str]:
    """The input's dims: an int for a static dim, a symbol name otherwise (anonymous dims get their own)."""
    fixed = hints.get("shapes", {}).get(i.name)
    if fixed is not None:
        return list(fixed)
    out: list[int | str] = []
    for axis, d in enumerate(i.type.tensor_type.shape.dim):
        key = _dim_key(i.name, axis, d)
        out.append(d.dim_value if key is None else key)
    return out


def dim_bindings(m: onnx.ModelProto, hints: dict[str, Any] | None = None) -> list[dict[str, int]]:
    """Two bindings of the symbolic dims: every symbol = 4, then distinct values 5, 6, 7, ... in order of first
    appearance (so a rewrite that confuses two dims shows). Anonymous dims get their own symbol per input/axis."""
    syms: list[str] = []
    for i in _graph_inputs(m):
        if not (i.type.HasField("tensor_type") and i.type.tensor_type.HasField("shape")):
            continue
        for key in _input_shape(i, hints or {}):
            if isinstance(key, str) and key not in syms:
                syms.append(key)
    if not syms:
        return [{}]
    return [{s: 4 for s in syms}, {s: 5 + i for i, s in enumerate(syms)}]


def _graph_inputs(m: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inits = {t.name for t in m.graph.initializer}
    return [i for i in m.graph.input if i.name not in inits]  # IR<4 models list initializers as inputs


def _dim_key(name: str, axis: int, d: onnx.TensorShapeProto.Dimension) -> str | None:
    if d.HasField("dim_value"):
        return None
    return d.dim_param or f"?{name}:{axis}"


def make_feeds(m: onnx.ModelProto, binding: dict[str, int], rng: np.random.Generator,
               hints: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Random inputs: floats ~ N(0, 1), integers in [0, 4) (safe as indices and sizes), bools at p=0.5; the
    hints' fixed values where given. Raises ValueError for inputs that are not plain tensors of a
    numpy-representable dtype."""
    hints = hints or {}
    feeds: dict[str, np.ndarray] = {}
    for i in _graph_inputs(m):
        tt = i.type.tensor_type
        if not i.type.HasField("tensor_type") or not tt.HasField("shape"):
            raise ValueError(f"input {i.name!r} is not a tensor with a known rank")
        shape = [binding[d] if isinstance(d, str) else d for d in _input_shape(i, hints)]
        if tt.elem_type in (onnx.TensorProto.STRING, onnx.TensorProto.BFLOAT16) or tt.elem_type >= 17:
            raise ValueError(f"input {i.name!r} has dtype {onnx.TensorProto.DataType.Name(tt.elem_type)}")
        dt = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if i.name in hints.get("values", {}):
            feeds[i.name] = np.broadcast_to(np.asarray(hints["values"][i.name], dtype=dt), shape).copy()
        elif dt == np.bool_:
            feeds[i.name] = rng.random(shape) < 0.5
        elif np.issubdtype(dt, np.floating):
            feeds[i.name] = rng.standard_normal(shape).astype(dt)
        elif np.issubdtype(dt, np.complexfloating):
            feeds[i.name] = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dt)
        else:
            feeds[i.name] = rng.integers(0, 4, size=shape).astype(dt)
    return feeds


def session(path: Path, optimized: bool) -> ort.InferenceSession:
    """One thread. `optimized=False` (validation) runs the graph as written (ORT_DISABLE_ALL); True is what a user
    gets (ORT_ENABLE_ALL)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def session_seconds(original: Path, optimized: Path, repeats: int = 3) -> tuple[float, float]:
    """(original, optimized) median seconds to create an ORT_ENABLE_ALL session (what a user pays at start-up),
    the two created alternately."""
    ta, tb = [], []
    for _ in range(repeats):
        for path, acc in ((original, ta), (optimized, tb)):
            t0 = time.perf_counter()
            s = session(path, optimized=True)
            acc.append(time.perf_counter() - t0)
            del s
    return statistics.median(ta), statistics.median(tb)


def run_session(sess: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> list[Any]:
    names = {i.name for i in sess.get_inputs()}
    missing = names - feeds.keys()
    if missing:
        raise ValueError(f"the model wants inputs the original does not have: {sorted(missing)}")
    return sess.run(None, {k: v for k, v in feeds.items() if k in names})


def _timed_runs(sess: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> float:
    t0 = time.perf_counter()
    sess.run(None, feeds)
    return time.perf_counter() - t0


def _feeds_for(sess: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = {i.name for i in sess.get_inputs()}
    return {k: v for k, v in feeds.items() if k in names}


def latency(path: Path, feeds: dict[str, np.ndarray], runs: int, warmup: int) -> float:
    """Median seconds per run, after `warmup` runs, with ORT's default (all) graph optimizations."""
    sess = session(path, optimized=True)
    f = _feeds_for(sess, feeds)
    for _ in range(warmup):
        sess.run(None, f)
    return statistics.median(_timed_runs(sess, f) for _ in range(runs))


def paired_latency(original: Path, optimized: Path, feeds: dict[str, np.ndarray], runs: int,
                   warmup: int, budget: float = 0.25, optimized_level: bool = True,
                   sessions: int = 1) -> tuple[float, float]:
    """(original, optimized) median seconds per run, the two sessions timed alternately so that the load of a
    shared machine hits both alike. At least `runs` runs each; more for fast models, up to about `budget`
    seconds per session (capped at 2000 runs), since a median of 10 sub-millisecond runs is mostly noise.
    `optimized_level`: ORT_ENABLE_ALL (True) or ORT_DISABLE_ALL (False) for both sessions.

    With `sessions` > 1, that many fresh session pairs are timed (more, up to 3 * `sessions`, while a side's
    session medians differ by more than 30%) and each side keeps its fastest median: an onnxruntime session now
    and then runs a model several times slower than another session of the same file (resnet_ts under
    ORT_ENABLE_ALL on this machine: about one session in three, 3-10x slower), which would otherwise decide a
    ratio."""
    ta: list[float] = []
    tb: list[float] = []
    # more pairs (up to 3 * sessions) while a side's session medians still disagree by more than 30%
    while len(ta) < max(1, sessions) or (len(ta) < 3 * sessions and (max(ta) > 1.3 * min(ta)
                                                                     or max(tb) > 1.3 * min(tb))):
        a, b = _paired_once(original, optimized, feeds, runs, warmup, budget, optimized_level)
        ta.append(a)
        tb.append(b)
    return min(ta), min(tb)


def _paired_once(original: Path, optimized: Path, feeds: dict[str, np.ndarray], runs: int, warmup: int,
                 budget: float, optimized_level: bool) -> tuple[float, float]:
    sa, sb = session(original, optimized=optimized_level), session(optimized, optimized=optimized_level)
    fa, fb = _feeds_for(sa, feeds), _feeds_for(sb, feeds)
    est = 0.0
    for _ in range(max(warmup, 1)):
        est = _timed_runs(sa, fa)
        _timed_runs(sb, fb)
    n = max(runs, min(2000, int(budget / max(est, 1e-6))))
    ta, tb = [], []
    for _ in range(n):
        ta.append(_timed_runs(sa, fa))
        tb.append(_timed_runs(sb, fb))
    return statistics.median(ta), statistics.median(tb)


def compare_outputs(ref: list[Any], got: list[Any]) -> tuple[bool, float, str]:
    """(match, max abs error, reason) for two output lists, position by position."""
    if len(ref) != len(got):
        return False, math.inf, f"{len(got)} outputs instead of {len(ref)}"
    worst = 0.0
    for k, (a, b) in enumerate(zip(ref, got)):
        if isinstance(a, list) or isinstance(b, list):  # sequence outputs
            if not (isinstance(a, list) and isinstance(b, list)):
                return False, math.inf, f"output {k}: sequence vs tensor"
            ok, err, why = compare_outputs(a, b)
            if not ok:
                return False, err, f"output {k}: {why}"
            worst = max(worst, err)
            continue
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype != b.dtype:
            return False, math.inf, f"output {k}: dtype {b.dtype} instead of {a.dtype}"
        if a.shape != b.shape:
            return False, math.inf, f"output {k}: shape {b.shape} instead of {a.shape}"
        if a.size == 0:
            continue
        if np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.complexfloating):
            fin = np.isfinite(a) & np.isfinite(b)
            if not np.array_equal(np.isfinite(a), np.isfinite(b)) or not np.array_equal(a[~fin], b[~fin],
                                                                                         equal_nan=True):
                return False, math.inf, f"output {k}: inf/nan pattern differs"
            if fin.any():
                diff = np.abs(a[fin].astype(np.float64) - b[fin].astype(np.float64))
                worst = max(worst, float(diff.max()))
            if not np.allclose(b, a, rtol=RTOL, atol=ATOL, equal_nan=True):
                return False, worst, f"output {k}: max abs err {worst:.3g}"
        elif not np.array_equal(a, b):
            return False, math.inf, f"output {k}: values differ"
    return True, worst, ""


# ----------------------------------------------------------------------------------------------------------------
# one model, one tool
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class ToolResult:
    tool: str
    run: dict[str, Any]                       # peers.ToolRun as a dict (ok, seconds, error, timed_out, info)
    nodes_after: int | None = None
    ops_after: dict[str, int] = field(default_factory=dict)
    function_nodes: int = 0
    size: int | None = None
    checker: bool | None = None
    checker_error: str | None = None
    ort_load: bool | None = None
    ort_error: str | None = None
    match: bool | None = None                 # None: n/a (the original does not run, or the tool failed)
    match_detail: str = ""
    max_abs_err: float | None = None
    latency: float | None = None             # median s/run of the tool's output (ORT defaults, 1 thread)
    latency_original: float | None = None    # the original's, timed alternately with it
    latency_ratio: float | None = None
    # speedups over the original (original's median / output's median, > 1 is faster), timed interleaved
    speedup_off: float | None = None          # ORT_DISABLE_ALL: the graph run as written
    speedup_all: float | None = None          # ORT_ENABLE_ALL (the reciprocal of latency_ratio)
    latency_off: float | None = None          # median s/run under ORT_DISABLE_ALL ...
    latency_original_off: float | None = None  # ... and the original's
    session_s: float | None = None            # ORT_ENABLE_ALL session creation, median of 3 ...
    session_original_s: float | None = None   # ... and the original's, created alternately
    interface_changed: str = ""               # input/output names, order or dtypes differ from the original
    original_runs: bool = True                # False: ORT cannot run the original, so ORT figures are n/a

    @property
    def usable(self) -> bool:
        """Produced a model that onnxruntime loads and that does not compute something else (when ORT cannot run
        the original either, a written output that fails the same way counts: there is nothing to compare)."""
        loads = bool(self.ort_load) or not self.original_runs
        return bool(self.run.get("ok")) and loads and self.match is not False

    def status(self) -> str:
        if not self.run.get("ok"):
            return "timeout" if self.run.get("timed_out") else "crash"
        if not self.ort_load:
            return "ort-fail" if self.original_runs else ("n/a" if self.checker is not False else "invalid")
        if self.match is False:
            return "MISMATCH"
        if self.checker is False:
            return "invalid"
        return "ok"


@dataclass
class ModelResult:
    id: str
    path: str
    nodes_before: int
    ops_before: dict[str, int]
    size_before: int
    bindings: list[dict[str, int]]
    original_runs: bool
    original_error: str | None
    latency_before: float | None
    tools: dict[str, ToolResult] = field(default_factory=dict)


def _interface(m: onnx.ModelProto) -> tuple:
    def sig(vs: Any) -> tuple:
        return tuple((v.name, v.type.tensor_type.elem_type) for v in vs)
    return sig(_graph_inputs(m)), sig(m.graph.output)


def evaluate_tool(tool: str, spec: ModelSpec, original: onnx.ModelProto, work: Path, timeout: float,
                  feeds: list[dict[str, np.ndarray]], refs: list[list[Any]] | None, runs: int, warmup: int,
                  latency_before: float | None, keep: bool, sessions: int = 1) -> ToolResult:
    tdir = work / tool
    shutil.rmtree(tdir, ignore_errors=True)
    src = copy_model(spec.path, tdir / "in")         # a fresh copy per tool: no tool sees another's leftovers
    out_dir = tdir / "out"
    out_dir.mkdir(parents=True)
    dst = out_dir / "model.onnx"
    tr = peers.run_tool(tool, src, dst, timeout)
    res = ToolResult(tool, tr.to_dict(), original_runs=refs is not None)
    if not tr.ok:
        _cleanup(tdir, keep)
        return res
    try:
        m = onnx.load(str(dst), load_external_data=False)
    except Exception as e:
        res.run["ok"], res.run["error"] = False, f"output does not parse: {_first_line(e)}"
        _cleanup(tdir, keep)
        return res
    ops = op_counts(m)
    res.nodes_after, res.ops_after = sum(ops.values()), dict(sorted(ops.items()))
    res.function_nodes = sum(len(f.node) for f in m.functions)
    res.size = file_size(dst, m)
    if _interface(m) != _interface(original):
        res.interface_changed = "inputs" if _interface(m)[0] != _interface(original)[0] else "outputs"
    try:
        onnx.checker.check_model(str(dst), full_check=True)
        res.checker = True
    except Exception as e:
        res.checker, res.checker_error = False, _first_line(e)
    try:
        sess = session(dst, optimized=False)
        res.ort_load = True
    except Exception as e:
        res.ort_load, res.ort_error = False, _first_line(e)
        _cleanup(tdir, keep)
        return res
    if refs is not None:
        res.match, res.max_abs_err = True, 0.0
        for k, (f, ref) in enumerate(zip(feeds, refs)):
            try:
                got = run_session(sess, f)
            except Exception as e:
                res.match, res.match_detail, res.max_abs_err = False, f"binding {k}: run failed: {_first_line(e)}", None
                break
            ok, err, why = compare_outputs(ref, got)
            res.max_abs_err = max(res.max_abs_err or 0.0, err) if math.isfinite(err) else None
            if not ok:
                res.match, res.match_detail = False, f"binding {k}: {why}"
                break
    del sess
    if latency_before is not None and res.match is not False:
        try:
            res.latency_original, res.latency = paired_latency(spec.path, dst, feeds[0], runs, warmup,
                                                               sessions=sessions)
            res.latency_ratio = res.latency / res.latency_original if res.latency_original > 0 else None
            res.speedup_all = res.latency_original / res.latency if res.latency > 0 else None
            res.latency_original_off, res.latency_off = paired_latency(spec.path, dst, feeds[0], runs, warmup,
                                                                       optimized_level=False, sessions=sessions)
            res.speedup_off = res.latency_original_off / res.latency_off if res.latency_off > 0 else None
            res.session_original_s, res.session_s = session_seconds(spec.path, dst)
        except Exception as e:
            res.match_detail = (res.match_detail + f"; latency run failed: {_first_line(e)}").lstrip("; ")
    _cleanup(tdir, keep)
    return res


def _cleanup(tdir: Path, keep: bool) -> None:
    if not keep:  # folded light models reach hundreds of MB per tool
        shutil.rmtree(tdir, ignore_errors=True)


def evaluate_model(spec: ModelSpec, tools: list[str], args: argparse.Namespace) -> ModelResult:
    original = onnx.load(str(spec.path))
    ops = op_counts(original)
    digest = _sha256(spec.path)
    hints = load_hints(spec.path)
    bindings = dim_bindings(original, hints)
    rng = np.random.default_rng(zlib.crc32(spec.id.encode()))  # deterministic per model, independent of order
    feeds: list[dict[str, np.ndarray]] = []
    refs: list[list[Any]] | None = None
    err = None
    lat = None
    try:
        feeds = [make_feeds(original, b, rng, hints) for b in bindings]
        sess = session(spec.path, optimized=False)
        refs = [run_session(sess, f) for f in feeds]
        del sess
        lat = latency(spec.path, feeds[0], args.runs, args.warmup)
    except Exception as e:  # the original itself does not run: outputs are n/a for every tool
        refs, err = None, _first_line(e)
    mr = ModelResult(spec.id, str(spec.path), sum(ops.values()), dict(sorted(ops.items())),
                     file_size(spec.path, original), bindings, refs is not None, err, lat)
    work = args.work / spec.id.replace("/", "__")
    for tool in tools:
        mr.tools[tool] = evaluate_tool(tool, spec, original, work, args.timeout, feeds, refs, args.runs,
                                       args.warmup, lat, args.keep, getattr(args, "sessions", 1))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    if _sha256(spec.path) != digest:
        raise RuntimeError(f"{spec.path} changed during the benchmark: a tool wrote to the original")
    return mr


# ----------------------------------------------------------------------------------------------------------------
# rendering
# ----------------------------------------------------------------------------------------------------------------

def _md(rows: list[list[str]], header: list[str], right: set[int] = frozenset()) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def line(r: list[str]) -> str:
        return "| " + " | ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                                 for i, (c, w) in enumerate(zip(r, widths))) + " |"
    sep = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def _fmt_size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def render_model(mr: ModelResult) -> str:
    sess0 = [r.session_original_s for r in mr.tools.values() if r.session_original_s is not None]
    head = (f"### {mr.id}: {mr.nodes_before} nodes, {_fmt_size(mr.size_before)}"
            + (f", ORT {mr.latency_before * 1e3:.3f} ms" if mr.latency_before is not None else "")
            + (f", session {statistics.median(sess0) * 1e3:.1f} ms" if sess0 else "")
            + ("" if mr.original_runs else f"  (original does not run in ORT: {mr.original_error}; match n/a)"))
    rows = []
    for t, r in mr.tools.items():
        nodes = "-" if r.nodes_after is None else str(r.nodes_after)
        delta = "-" if r.nodes_after is None else f"{r.nodes_after - mr.nodes_before:+d}"
        secs = "-" if r.run.get("seconds") is None else f"{r.run['seconds']:.2f}"
        chk = "-" if r.checker is None else ("yes" if r.checker else "NO")
        load = "-" if r.ort_load is None else ("yes" if r.ort_load else ("NO" if mr.original_runs else "no (n/a)"))
        if r.match is None:
            match = "n/a" if r.ort_load or not mr.original_runs else "-"
        elif r.match:
            match = f"yes ({r.max_abs_err:.1e})" if r.max_abs_err else "yes"
        else:
            match = "NO"
        ratio = "-" if r.latency_ratio is None else f"{r.latency_ratio:.2f}"
        off = "-" if r.speedup_off is None else f"{r.speedup_off:.2f}"
        on = "-" if r.speedup_all is None else f"{r.speedup_all:.2f}"
        sess = "-" if r.session_s is None else f"{r.session_s * 1e3:.1f}"
        if mr.original_runs:
            note = r.run.get("error") or r.ort_error or r.match_detail or r.checker_error or ""
        else:  # ORT's refusal is the original's too; the checker is what can still tell
            note = r.run.get("error") or r.checker_error or ""
        if r.interface_changed:
            note = f"{r.interface_changed} renamed/retyped; " + note
        ro = r.run.get("info", {}).get("rolled_back")
        if ro:
            note = f"rolled back: {'; '.join(ro)}; " + note
        rows.append([t, r.status(), nodes, delta, secs, _fmt_size(r.size), chk, load, match, ratio, off, on, sess,
                     note.rstrip("; ")[:160]])
    table = _md(rows, ["tool", "status", "nodes", "Δ", "time s", "size", "checker", "ORT load", "match", "lat ×",
                       "speedup off", "speedup all", "session ms", "note"], right={2, 3, 4, 5, 9, 10, 11, 12})
    return head + "\n\n" + table


@dataclass
class ToolSummary:
    tool: str
    version: str
    models: int = 0
    usable: int = 0
    nodes_common: int = 0           # over the models where every tool is usable
    pair_models: int = 0            # models where this tool and graphopt are both usable ...
    pair_nodes: int = 0             # ... this tool's total nodes on them
    pair_graphopt_nodes: int = 0    # ... and graphopt's
    graphopt_fewer: int = 0         # graphopt's output has fewer nodes than this tool's
    ties: int = 0
    graphopt_more: int = 0          # this tool beats graphopt on node count
    mismatches: int = 0
    checker_fails: int = 0
    ort_fails: int = 0
    crashes: int = 0                # crash, timeout or unparsable output
    seconds: float = 0.0
    size: int = 0                   # total output bytes over the models where the tool wrote a model
    latency_geomean: float | None = None
    speedup_off_geomean: float | None = None   # geometric means of the per-model speedups (> 1 is faster)
    speedup_all_geomean: float | None = None
    speedup_all_min: float | None = None       # the worst model under ORT_ENABLE_ALL
    session_ratio_geomean: float | None = None  # session-creation time / the original's
    size_ratio_max: float | None = None        # the largest output size / original size


def summarize(results: list[ModelResult], tools: list[str]) -> tuple[list[ToolSummary], list[str], int]:
    common = [mr for mr in results if all(mr.tools[t].usable for t in tools)]
    before_common = sum(mr.nodes_before for mr in common)
    out = []
    for t in tools:
        s = ToolSummary(t, peers.tool_version(t))
        logs: list[float] = []
        offs: list[float] = []
        alls: list[float] = []
        sess: list[float] = []
        sizes: list[float] = []
        for mr in results:
            r = mr.tools[t]
            if r.speedup_off:
                offs.append(math.log(r.speedup_off))
            if r.speedup_all:
                alls.append(math.log(r.speedup_all))
            if r.session_s and r.session_original_s:
                sess.append(math.log(r.session_s / r.session_original_s))
            if r.usable and r.size and mr.size_before:
                sizes.append(r.size / mr.size_before)
            s.models += 1
            s.usable += r.usable
            s.mismatches += r.match is False
            s.checker_fails += r.checker is False
            s.ort_fails += r.ort_load is False and mr.original_runs
            s.crashes += not r.run.get("ok")
            s.seconds += r.run.get("seconds") or 0.0
            s.size += r.size or 0
            if r.latency_ratio:
                logs.append(math.log(r.latency_ratio))
            g = mr.tools.get("graphopt")
            if g is not None and g.usable and r.usable:
                s.pair_models += 1
                s.pair_nodes += r.nodes_after
                s.pair_graphopt_nodes += g.nodes_after
            if t != "graphopt" and g is not None and g.usable and r.usable:
                if g.nodes_after < r.nodes_after:
                    s.graphopt_fewer += 1
                elif g.nodes_after == r.nodes_after:
                    s.ties += 1
                else:
                    s.graphopt_more += 1
        s.nodes_common = sum(mr.tools[t].nodes_after for mr in common)
        s.latency_geomean = math.exp(sum(logs) / len(logs)) if logs else None
        s.speedup_off_geomean = math.exp(sum(offs) / len(offs)) if offs else None
        s.speedup_all_geomean = math.exp(sum(alls) / len(alls)) if alls else None
        s.speedup_all_min = math.exp(min(alls)) if alls else None
        s.session_ratio_geomean = math.exp(sum(sess) / len(sess)) if sess else None
        s.size_ratio_max = max(sizes) if sizes else None
        out.append(s)
    return out, [mr.id for mr in common], before_common


def _f3(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def render_summary(results: list[ModelResult], tools: list[str]) -> str:
    sums, common, before = summarize(results, tools)
    rows = []
    for s in sums:
        vs = "-" if s.tool == "graphopt" or "graphopt" not in tools else \
            f"{s.graphopt_fewer} / {s.ties} / {s.graphopt_more}"
        pair = "-" if "graphopt" not in tools else f"{s.pair_nodes} / {s.pair_graphopt_nodes} ({s.pair_models})"
        rows.append([s.tool, s.version, f"{s.usable}/{s.models}", str(s.nodes_common), pair, vs, str(s.mismatches),
                     str(s.checker_fails), str(s.ort_fails), str(s.crashes), f"{s.seconds:.1f}", _fmt_size(s.size),
                     _f3(s.size_ratio_max), _f3(s.latency_geomean), _f3(s.speedup_off_geomean),
                     _f3(s.speedup_all_geomean), _f3(s.speedup_all_min), _f3(s.session_ratio_geomean)])
    table = _md(rows, ["tool", "version", "usable", f"nodes ({len(common)} common)", "nodes / graphopt's (models)",
                       "graphopt fewer/tie/more", "mismatch", "checker fail", "ORT fail", "crash/timeout", "time s",
                       "size", "size × max", "lat × geomean", "speedup off geomean", "speedup all geomean",
                       "speedup all min", "session × geomean"], right=set(range(3, 18)) - {5})
    return (f"## Summary ({len(results)} models; nodes before on the {len(common)} models every tool handled: "
            f"{before})\n\n" + table)


def render_nodes(results: list[ModelResult], tools: list[str]) -> str:
    rows = []
    for mr in results:
        cells = []
        for t in tools:
            r = mr.tools[t]
            if r.nodes_after is None:
                cells.append(r.status())
            else:
                cells.append(str(r.nodes_after) + ("" if r.status() in ("ok", "n/a") else f" {r.status()}"))
        rows.append([mr.id, str(mr.nodes_before)] + cells)
    return "## Nodes after, per model\n\n" + _md(rows, ["model", "before"] + tools, right=set(range(1, len(tools) + 2)))


def render_speedups(results: list[ModelResult], tools: list[str]) -> str:
    """Per model and tool: speedup under ORT_DISABLE_ALL / ORT_ENABLE_ALL, and output size / original size."""
    rows = []
    for mr in results:
        cells = []
        for t in tools:
            r = mr.tools[t]
            if r.speedup_off is None or r.speedup_all is None:
                cells.append(r.status() if r.status() not in ("ok", "n/a") else "-")
                continue
            size = f" ({r.size / mr.size_before:.2f}x size)" if r.size and mr.size_before and \
                r.size > 1.05 * mr.size_before else ""
            cells.append(f"{r.speedup_off:.2f} / {r.speedup_all:.2f}{size}")
        rows.append([mr.id] + cells)
    return ("## Speedup per model (ORT_DISABLE_ALL / ORT_ENABLE_ALL; > 1 is faster)\n\n"
            + _md(rows, ["model"] + tools, right=set(range(1, len(tools) + 1))))


def render_beaten(results: list[ModelResult], tools: list[str]) -> str:
    """Where a usable peer ends with fewer nodes than usable graphopt, and which op types make the difference
    (graphopt's own variants, such as graphopt-opset23, are not peers)."""
    lines = []
    for mr in results:
        g = mr.tools.get("graphopt")
        if g is None or not g.usable:
            continue
        for t in tools:
            r = mr.tools[t]
            if t.startswith("graphopt") or not r.usable or r.nodes_after >= g.nodes_after:  # peers only
                continue
            extra = Counter(g.ops_after) - Counter(r.ops_after)   # in graphopt's output, not the peer's
            fewer = Counter(r.ops_after) - Counter(g.ops_after)   # the peer has these that graphopt does not
            lines.append(f"- {mr.id}: {t} {r.nodes_after} < graphopt {g.nodes_after} (before {mr.nodes_before}); "
                         f"graphopt keeps {dict(extra.most_common())}; {t} has instead {dict(fewer.most_common())}")
    return "## Where graphopt is beaten on node count\n\n" + ("\n".join(lines) if lines else "nowhere")


def render_broken(results: list[ModelResult], tools: list[str]) -> str:
    lines = []
    for mr in results:
        for t in tools:
            r = mr.tools[t]
            if r.status() not in ("ok", "n/a"):
                why = r.run.get("error") or (r.ort_error if mr.original_runs else None) or r.match_detail \
                    or r.checker_error
                lines.append(f"- {mr.id}: {t}: {r.status()}: {why}")
            for ro in r.run.get("info", {}).get("rolled_back", []) or []:
                lines.append(f"- {mr.id}: {t}: pass rolled back: {ro}")
    return "## Failures, mismatches, invalid outputs\n\n" + ("\n".join(lines) if lines else "none")


def graphopt_passes() -> str:
    """The registered built-in passes and their presets, as the run saw them (passes are still being added)."""
    try:
        from graphopt.passes import builtin_pass_classes

        return ", ".join(f"{c.name}[{'/'.join(sorted(c.presets))}]" for c in builtin_pass_classes())
    except Exception as e:  # a broken graphopt import shows in the graphopt rows too
        return f"unavailable ({_first_line(e)})"


def to_json(results: list[ModelResult], tools: list[str], args: argparse.Namespace) -> dict[str, Any]:
    sums, common, before = summarize(results, tools)
    models = []
    for mr in results:
        d = asdict(mr)
        for t, r in mr.tools.items():
            d["tools"][t]["status"] = r.status()
            d["tools"][t]["usable"] = r.usable
        models.append(d)
    return {
        "schema_version": SCHEMA_VERSION,
        "settings": {"runs": args.runs, "warmup": args.warmup, "sessions": getattr(args, "sessions", 1),
                     "timeout": args.timeout, "rtol": RTOL, "atol": ATOL,
                     "threads": 1, "python": platform.python_version(), "onnx": onnx.__version__,
                     "onnxruntime": ort.__version__, "graphopt_passes": graphopt_passes()},
        "tools": {t: {"version": peers.tool_version(t), "runs": peers.ADAPTERS[t].summary} for t in tools},
        "models": models,
        "summary": {"common_models": common, "nodes_before_common": before, "tools": [asdict(s) for s in sums]},
    }


# ----------------------------------------------------------------------------------------------------------------

def from_json(path: Path) -> tuple[list[ModelResult], list[str]]:
    """Results written by --json, back as objects (to re-render without re-running)."""
    d = json.loads(path.read_text())
    results = []
    for m in d["models"]:
        mr = ModelResult(**{k: v for k, v in m.items() if k != "tools"})
        mr.tools = {t: ToolResult(**{k: v for k, v in r.items() if k not in ("status", "usable")})
                    for t, r in m["tools"].items()}
        results.append(mr)
    return results, list(d["tools"])


def merge_json(paths: list[Path]) -> tuple[list[ModelResult], list[str]]:
    """Several --json runs as one: the first run's models (in its order) plus any new ones; each tool's figures
    from the last run that has that tool on that model (so a re-run of one tool, or of one model, can replace
    its cells; every figure is relative to the original measured within its own run). Models that end up
    without some tool are left out."""
    runs = [from_json(p) for p in paths]
    tools: list[str] = []
    for _, ts in runs:
        tools += [t for t in ts if t not in tools]
    merged: dict[str, ModelResult] = {}
    for res, _ in runs:
        for mr in res:
            if mr.id in merged:
                merged[mr.id].tools.update(mr.tools)
            else:
                merged[mr.id] = mr
    out = []
    for mr in merged.values():
        if all(t in mr.tools for t in tools):
            mr.tools = {t: mr.tools[t] for t in tools}
            out.append(mr)
    return out, tools


def render_all(results: list[ModelResult], tools: list[str], per_model: bool) -> str:
    parts = [render_model(mr) for mr in results] if per_model else []
    parts += [render_nodes(results, tools), render_speedups(results, tools), render_summary(results, tools),
              "nodes / graphopt's (models): the tool's total nodes and graphopt's, over the models where both outputs "
              "are usable.\ngraphopt fewer/tie/more: models where graphopt's output has fewer / as many / more nodes "
              "than the tool's (both usable).\nsize × max: the largest output size / original size (usable outputs). "
              "speedup off / all: the original's median latency / the output's, under ORT_DISABLE_ALL / "
              "ORT_ENABLE_ALL (1 thread, interleaved; > 1 is faster); min: the worst model. session ×: ORT_ENABLE_ALL "
              "session-creation time / the original's."]
    if "graphopt" in tools:
        parts.append(render_beaten(results, tools))
    parts.append(render_broken(results, tools))
    return "\n\n".join(parts)


def _write_json(path: Path, results: list[ModelResult], tools: list[str], args: argparse.Namespace) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_json(results, tools, args), indent=1, default=str))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tools", default=",".join(peers.TOOLS),
                    help=f"comma-separated tools (default all: {','.join(peers.TOOLS)})")
    ap.add_argument("--models", default="", help="comma-separated substrings or globs of model ids (default all)")
    ap.add_argument("--runs", type=int, default=20,
                    help="minimum timed ORT runs per latency figure (median; default 20; fast models get more, "
                         "up to ~0.25 s per session)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed ORT runs first (default 2)")
    ap.add_argument("--sessions", type=int, default=2,
                    help="fresh session pairs per latency figure, each side keeping its fastest (default 2)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per tool per model (default 300)")
    ap.add_argument("--json", type=Path, help="write every figure to this JSON file")
    ap.add_argument("--work", type=Path, default=HERE / "_work", help="scratch folder (default benchmarks/_work)")
    ap.add_argument("--keep", action="store_true", help="keep each tool's output under --work")
    ap.add_argument("--list", action="store_true", help="list the models and tools, run nothing")
    ap.add_argument("--from-json", metavar="FILE[,FILE...]",
                    help="re-render the tables of earlier --json runs (several: merged, later runs' tools win)")
    args = ap.parse_args(argv)
    if args.from_json:
        results, tools = merge_json([Path(p) for p in args.from_json.split(",") if p])
        print(render_all(results, tools, per_model=True))
        return 0
    tools = [t for t in args.tools.split(",") if t]
    unknown = [t for t in tools if t not in peers.ADAPTERS]
    if unknown:
        ap.error(f"unknown tool(s) {unknown}; known: {', '.join(peers.TOOLS)}")
    specs = select(discover_models(), [p for p in args.models.split(",") if p])
    if args.list:
        for s in specs:
            print(f"{s.id:45} {s.path}")
        print("tools:", ", ".join(f"{t} {peers.tool_version(t)}" for t in tools))
        return 0
    if not specs:
        print("no model matches --models", file=sys.stderr)
        return 2
    if not (HERE / "models").is_dir():
        print("note: benchmarks/models/ is missing; run `python benchmarks/export_models.py` (needs torch) to add "
              "the exported models\n", file=sys.stderr)
    if "graphopt" in tools:
        print(f"graphopt passes registered: {graphopt_passes()}\n", flush=True)
    results = []
    for spec in specs:
        print(f"... {spec.id}", file=sys.stderr, flush=True)
        mr = evaluate_model(spec, tools, args)
        results.append(mr)
        print(render_model(mr) + "\n", flush=True)
        if args.json:  # after every model, so that an interrupted run keeps what it measured
            _write_json(args.json, results, tools, args)
    print(render_all(results, tools, per_model=False))
    if args.json:
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
