"""One adapter per optimizer, each run in its own subprocess with a timeout.

Peers crash, hang, print, or leak memory on some models, so :func:`run_tool` never imports a tool into the
benchmark's process: it starts ``python benchmarks/peers.py worker TOOL SRC DST RESULT`` in a fresh process group,
kills the group on timeout, and reads the worker's JSON result file. The worker imports the tool first (import time
is not counted) and runs it once on a two-node model (lazy first-use imports are not counted either), then
times the tool's own work on the model: load + optimize + save, as a user calling it would pay.

    python benchmarks/peers.py list                          # tools and their versions
    python benchmarks/peers.py worker onnxsim in.onnx out.onnx result.json
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Adapter:
    """A tool: how to import it (untimed) and how to run it (timed)."""

    name: str
    package: str                                     # distribution name, for the version
    summary: str                                     # what exactly is run, for the README and --json
    prepare: Callable[[], Any]                       # imports; returns what `run` needs
    run: Callable[[Any, str, str], dict[str, Any]]   # (prepared, src, dst) -> extra info for the record


# ----------------------------------------------------------------------------------------------------------------
# adapters: each writes dst from src and returns a small info dict
# ----------------------------------------------------------------------------------------------------------------

def _prep_graphopt() -> Any:
    import graphopt

    return graphopt


def _run_graphopt(graphopt: Any, src: str, dst: str) -> dict[str, Any]:
    m = graphopt.load(src)
    res = graphopt.run(m, preset="O2")
    graphopt.save(m, dst)
    rec = res.record
    passes = sorted({r.name for r in rec.passes})
    failed = [f"{r.name}: {(r.error or {}).get('message', r.error)}" for r in rec.passes if r.rolled_back]
    return {"passes_run": passes, "rolled_back": failed or list(rec.failed), "rounds": rec.rounds,
            "converged": rec.converged, "warnings": list(rec.warnings)}


def _run_graphopt_noshapes(graphopt: Any, src: str, dst: str) -> dict[str, Any]:
    m = graphopt.load(src)
    graphopt.run(m, preset="O2", annotate_shapes=False)  # no inferred shapes written into value_info
    graphopt.save(m, dst)
    return {}


def _run_graphopt_opset23(graphopt: Any, src: str, dst: str) -> dict[str, Any]:
    m = graphopt.load(src)
    graphopt.run(m, preset="O2", options={"fuse": {"target-opset": 23}})  # RMSNormalization, Gelu, LayerNorm
    graphopt.save(m, dst)
    return {}


def _prep_onnx_tool(module: str) -> Callable[[], Any]:
    def prep() -> Any:
        import onnx

        return onnx, importlib.import_module(module)
    return prep


def _run_onnxsim(mods: Any, src: str, dst: str) -> dict[str, Any]:
    onnx, onnxsim = mods
    out, check_ok = onnxsim.simplify(onnx.load(src))  # check_n=0 by default: we validate outputs ourselves
    onnx.save(out, dst)
    return {"self_check": bool(check_ok)}


def _run_onnxslim(mods: Any, src: str, dst: str) -> dict[str, Any]:
    onnx, onnxslim = mods
    out = onnxslim.slim(onnx.load(src))
    onnx.save(out, dst)
    return {}


def _run_onnxoptimizer(mods: Any, src: str, dst: str) -> dict[str, Any]:
    onnx, onnxoptimizer = mods
    out = onnxoptimizer.optimize(onnx.load(src))  # its default pass list (fuse and elimination passes)
    onnx.save(out, dst)
    return {}


def _run_onnxoptimizer_fixed(mods: Any, src: str, dst: str) -> dict[str, Any]:
    onnx, onnxoptimizer = mods
    out = onnxoptimizer.optimize(onnx.load(src), fixed_point=True)  # the same passes, repeated until stable
    onnx.save(out, dst)
    return {}


def _run_onnxscript(mods: Any, src: str, dst: str) -> dict[str, Any]:
    onnx, opt = mods
    out = opt.optimize(onnx.load(src))  # ModelProto in -> ModelProto out, default settings
    onnx.save(out, dst)
    return {}


def _prep_ort() -> Any:
    import onnxruntime

    return onnxruntime


def _run_ort_basic(ort: Any, src: str, dst: str) -> dict[str, Any]:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = dst
    so.intra_op_num_threads = 1
    ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    return {}


def _prep_polygraphy() -> Any:
    # Import what `surgeon sanitize` loads lazily, so that the timed part is the tool's work, not imports.
    import onnx  # noqa: F401
    import onnx_graphsurgeon  # noqa: F401
    import onnxruntime  # noqa: F401
    from polygraphy.tools import main

    return main


def _run_polygraphy(main: Any, src: str, dst: str) -> dict[str, Any]:
    rc = main(["surgeon", "sanitize", src, "--fold-constants", "-o", dst])
    if rc:
        raise RuntimeError(f"polygraphy surgeon sanitize exited with {rc}")
    return {}


ADAPTERS: dict[str, Adapter] = {a.name: a for a in [
    Adapter("graphopt", "graphopt", "graphopt.load -> graphopt.run(preset='O2') -> graphopt.save (no validation)",
            _prep_graphopt, _run_graphopt),
    Adapter("graphopt-noshapes", "graphopt",
            "graphopt -O2 with graphopt.run(..., annotate_shapes=False): no inferred shapes in value_info",
            _prep_graphopt, _run_graphopt_noshapes),
    Adapter("graphopt-opset23", "graphopt",
            "graphopt -O2 --set fuse.target-opset=23: the opset raised where every op keeps its meaning",
            _prep_graphopt, _run_graphopt_opset23),
    Adapter("onnxsim", "onnxsim", "onnxsim.simplify(model) with defaults (check_n=0)",
            _prep_onnx_tool("onnxsim"), _run_onnxsim),
    Adapter("onnxslim", "onnxslim", "onnxslim.slim(model) with defaults", _prep_onnx_tool("onnxslim"), _run_onnxslim),
    Adapter("onnxoptimizer", "onnxoptimizer", "onnxoptimizer.optimize(model) with its default passes",
            _prep_onnx_tool("onnxoptimizer"), _run_onnxoptimizer),
    Adapter("onnxoptimizer-fp", "onnxoptimizer",
            "onnxoptimizer.optimize(model, fixed_point=True): its default passes until nothing changes",
            _prep_onnx_tool("onnxoptimizer"), _run_onnxoptimizer_fixed),
    Adapter("onnxscript", "onnxscript", "onnxscript.optimizer.optimize(model) with defaults",
            _prep_onnx_tool("onnxscript.optimizer"), _run_onnxscript),
    Adapter("ort-basic", "onnxruntime", "onnxruntime offline optimization, ORT_ENABLE_BASIC, optimized_model_filepath",
            _prep_ort, _run_ort_basic),
    Adapter("polygraphy", "polygraphy", "polygraphy surgeon sanitize --fold-constants (onnx-graphsurgeon)",
            _prep_polygraphy, _run_polygraphy),
]}

# the default tool list; graphopt's variants (graphopt-noshapes, graphopt-opset23) run only when named in --tools
TOOLS: list[str] = [t for t in ADAPTERS if not t.startswith("graphopt-")]


def tool_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(ADAPTERS[name].package)
    except PackageNotFoundError:
        return "not installed"


# ----------------------------------------------------------------------------------------------------------------
# the parent side
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class ToolRun:
    """What one tool did to one model file."""

    tool: str
    ok: bool                      # the tool finished and wrote its output file
    seconds: float | None = None  # the tool's own wall time (load + optimize + save), measured in the worker
    error: str | None = None      # one line: exception, exit code or timeout
    timed_out: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    stderr_tail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_tool(tool: str, src: Path, dst: Path, timeout: float, env: dict[str, str] | None = None) -> ToolRun:
    """Run one adapter on `src`, writing `dst`, in a subprocess whose whole process group dies on timeout."""
    if tool not in ADAPTERS:
        raise KeyError(f"unknown tool {tool!r}; known: {', '.join(TOOLS)}")
    result = dst.with_name(dst.name + ".result.json")
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "worker", tool, str(src), str(dst), str(result)]
    proc = subprocess.Popen(cmd, cwd=dst.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, env=env)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # our own child's group: a hung tool may have spawned helpers
        proc.communicate()
        return ToolRun(tool, ok=False, error=f"timeout after {timeout:.0f} s", timed_out=True)
    tail = err.decode(errors="replace")[-2000:]
    if result.exists():
        data = json.loads(result.read_text())
        ok = data["error"] is None and dst.exists()
        error = data["error"] if data["error"] else (None if ok else "tool wrote no output file")
        return ToolRun(tool, ok=ok, seconds=data.get("seconds"), error=error, info=data.get("info", {}),
                       stderr_tail=tail if not ok else "")
    # No result file: the worker died (segfault, OOM kill, os._exit).
    sig = -proc.returncode if proc.returncode < 0 else None
    what = f"killed by signal {signal.Signals(sig).name}" if sig else f"exit code {proc.returncode}"
    return ToolRun(tool, ok=False, error=f"worker died ({what})", stderr_tail=tail)


# ----------------------------------------------------------------------------------------------------------------
# the worker side
# ----------------------------------------------------------------------------------------------------------------

def _warm_up(adapter: Adapter, prepared: Any, where: Path) -> None:
    """Run the tool once on a two-node model, untimed: several tools import heavy modules lazily on first use
    (polygraphy's first sanitize costs ~6 s of imports here), which is start-up cost, not optimization work."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["t"]), helper.make_node("Neg", ["t"], ["y"])],
                          "warmup", [x], [y])
    src, dst = where / "_warmup_in.onnx", where / "_warmup_out.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), src)
    try:
        adapter.run(prepared, str(src), str(dst))
    except Exception:  # the real run will report whatever is wrong
        pass
    finally:
        src.unlink(missing_ok=True)
        dst.unlink(missing_ok=True)


def _worker(tool: str, src: str, dst: str, result: str) -> int:
    adapter = ADAPTERS[tool]
    out: dict[str, Any] = {"tool": tool, "seconds": None, "error": None, "info": {}}
    try:
        prepared = adapter.prepare()
        _warm_up(adapter, prepared, Path(dst).parent)
        t0 = time.perf_counter()
        out["info"] = adapter.run(prepared, src, dst) or {}
        out["seconds"] = time.perf_counter() - t0
    except BaseException as e:  # the worker reports everything; the parent decides
        msg = f"{type(e).__name__}: {e}".strip().splitlines()
        out["error"] = (msg[0] if msg else type(e).__name__)[:500]
        traceback.print_exc()
    Path(result).write_text(json.dumps(out, default=str))
    # Some tools leave non-daemon threads or slow atexit hooks behind; the result is written, so leave now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main(argv: list[str]) -> int:
    if len(argv) >= 1 and argv[0] == "list":
        for name, a in ADAPTERS.items():
            print(f"{name:14} {tool_version(name):14} {a.summary}")
        return 0
    if len(argv) == 5 and argv[0] == "worker":
        return _worker(*argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
