"""graphopt's default run next to onnxsim's, as a new user runs them: whole processes, nothing but defaults.

    python benchmarks/export_models.py                         # once: the exported models (needs torch)
    python benchmarks/default_run.py                           # every comparison model; markdown on stdout
    python benchmarks/default_run.py --models whisper,convnext,light/resnet50,light/vgg19 --repeat 3
    python benchmarks/default_run.py --startup-only            # start-up figures only

What runs, per model (each a fresh process, in turn, so that machine load hits both alike):

- ``graphopt optimize MODEL -o OUT --report-json R``: graphopt's default run: -O2, then the proof with
  onnxruntime (both models on random inputs, every output compared) and a latency benchmark with a time budget.
  The report's timings split the process into its parts: optimize (load, passes, save), validation (sessions and
  correctness runs) and the benchmark (its own sessions and timed runs);
- ``graphopt optimize MODEL -o OUT --no-validate``: the same without onnxruntime (the floor of the run);
- ``onnxsim MODEL OUT``: onnxsim's default CLI run (``python -m onnxsim``). It simplifies (its constant folding
  evaluates nodes with onnxruntime) and checks the result with ``onnx.checker``; it compares outputs with
  onnxruntime only when asked (``onnxsim in out N`` with N > 0 random inputs), which the default run does not.

Start-up, in the same run: ``graphopt --version``, ``graphopt --help``, ``graphopt passes``, and the default run of
a 25-node model (samples/cnn.onnx) against ``python -c "import onnx, onnxruntime"``, the floor of any command that
reads a model and evaluates it; then where the time of that run goes, from ``python -X importtime`` and the
report's timings.

Figures are medians over --repeat runs; ratios are taken from figures measured in the same run. On a shared
machine absolute seconds move with the load; the ratios move less.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

# The models of the table (`--models table`): what "no slower than onnxsim" is measured on.
TABLE = ["models/whisper_tiny_encoder_ts", "models/convnext_tiny_ts", "light/resnet50", "light/vgg19"]
FLOOR = 'python -c "import onnx, onnxruntime"'
RUN25 = "graphopt optimize cnn.onnx (25 nodes, default run)"


@dataclass
class Proc:
    """One whole process: wall seconds, CPU seconds (user + system, its children included), exit code, and the
    tail of its stderr on failure. On a busy machine wall time grows with the load; CPU time much less."""

    seconds: float
    code: int
    err: str = ""
    cpu: float = float("nan")


def run(cmd: list[str], timeout: float, cwd: Path | None = None) -> Proc:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return Proc(time.perf_counter() - t, -1, f"timeout after {timeout:g} s")
    dt = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return Proc(dt, p.returncode, "" if p.returncode == 0 else p.stderr.decode(errors="replace")[-400:], cpu)


def graphopt_cmd(*args: str) -> list[str]:
    # the installed console script is what a user types; fall back to the module in this checkout
    exe = shutil.which("graphopt", path=os.path.dirname(sys.executable))
    return ([exe] if exe else [sys.executable, "-m", "graphopt.cli.main"]) + list(args)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


# ----------------------------------------------------------------------------------------------------------------
# start-up
# ----------------------------------------------------------------------------------------------------------------
def startup(repeat: int, work: Path, timeout: float) -> dict[str, Any]:
    cnn = ROOT / "samples" / "cnn.onnx"
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        FLOOR: [sys.executable, "-c", "import onnx, onnxruntime"],
        "graphopt --version": graphopt_cmd("--version"),
        "graphopt --help": graphopt_cmd("--help"),
        "graphopt passes": graphopt_cmd("passes"),
        RUN25: graphopt_cmd(
            "optimize", str(cnn), "-o", str(work / "cnn.opt.onnx"), "-q", "--report-json", str(work / "cnn.json")),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeat):
        for name, cmd in cases.items():  # interleaved: load drift hits every case alike
            p = run(cmd, timeout)
            if p.code != 0:
                raise SystemExit(f"{name} failed ({p.code}): {p.err}")
            times[name].append(p.seconds)
            cpu[name].append(p.cpu)
    out: dict[str, Any] = {k: median(v) for k, v in times.items()}
    out["_cpu"] = {k: median(v) for k, v in cpu.items()}
    rep = json.loads((work / "cnn.json").read_text())["models"][0]
    out["_cnn_report"] = {"optimize": rep["timings"]["optimize"], "validate": rep["timings"]["validate"]}
    out["_importtime"] = importtime(graphopt_cmd_module("optimize", str(cnn), "-o", str(work / "cnn2.onnx"), "-q"))
    out["_importtime_version"] = importtime(graphopt_cmd_module("--version"))
    return out


def graphopt_cmd_module(*args: str) -> list[str]:
    return [sys.executable, "-X", "importtime", "-m", "graphopt.cli.main", *args]


def importtime(cmd: list[str]) -> dict[str, float]:
    """Where a process's import time goes (python -X importtime), by each module's own time (nested imports
    counted in their own group): onnx (with ml_dtypes and protobuf, which it imports), onnxruntime, numpy,
    graphopt's subpackages, click and rich, and the rest (the standard library, site)."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    groups: dict[str, float] = {}
    for line in p.stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        own, _, name = line.split("|")
        try:
            us = int(own.split(":")[-1])
        except ValueError:
            continue
        parts = name.strip().split(".")
        top = parts[0]
        if top in ("onnx", "ml_dtypes", "google"):
            key = "onnx+ml_dtypes+protobuf"
        elif top == "graphopt":
            key = ".".join(parts[:2]) if len(parts) > 1 else "graphopt"
        elif top in ("onnxruntime", "numpy", "click", "rich"):
            key = top
        else:
            key = "other"
        groups[key] = groups.get(key, 0.0) + us / 1e6
    return dict(sorted(groups.items(), key=lambda kv: -kv[1]))


# ----------------------------------------------------------------------------------------------------------------
# the default run of each model
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class ModelRow:
    id: str
    nodes: int | None = None
    graphopt: list[float] = field(default_factory=list)
    no_validate: list[float] = field(default_factory=list)
    onnxsim: list[float] = field(default_factory=list)
    graphopt_cpu: list[float] = field(default_factory=list)
    onnxsim_cpu: list[float] = field(default_factory=list)
    parts: list[dict[str, float]] = field(default_factory=list)
    status: str = ""
    errors: list[str] = field(default_factory=list)


def _parts(report: Path) -> tuple[dict[str, float], str, int | None]:
    m = json.loads(report.read_text())["models"][0]
    t_opt, t_val = m["timings"]["optimize"], m["timings"]["validate"]
    v = m.get("validation") or {}
    lat = v.get("latency_ms") or {}
    parts = {"optimize": float(t_opt.get("total", 0.0)),
             "validation": float(t_val.get("total", 0.0)) - float(t_val.get("bench", 0.0)),
             "sessions": float(t_val.get("sessions", 0.0)), "runs": float(t_val.get("runs", 0.0)),
             "bench": float(t_val.get("bench", 0.0)), "bench_runs": float(lat.get("runs") or 0),
             "trials": float(len(v.get("trials") or []))}
    status = v.get("status", "no validation")
    if m.get("error"):
        status = f"error: {m['error'].get('message', '')[:60]}"
    return parts, status, (m.get("nodes") or {}).get("before")


def run_models(ids: list[str], repeat: int, work: Path, timeout: float, with_onnxsim: bool) -> list[ModelRow]:
    import compare  # the comparison models (samples, onnx's light models and test models, benchmarks/models)

    specs = {s.id: s for s in compare.discover_models()}
    rows = []
    for mid in ids:
        spec = specs[mid]
        row = ModelRow(mid)
        rows.append(row)
        print(f"... {mid}", file=sys.stderr, flush=True)
        for _ in range(repeat):
            out = work / "out.onnx"
            rep = work / "r.json"
            p = run(graphopt_cmd("optimize", str(spec.path), "-o", str(out), "-q", "--report-json", str(rep)),
                    timeout)
            if p.code not in (0, 1):  # 1: a mismatch found and reported; the run itself still counts
                row.errors.append(f"graphopt: exit {p.code}: {p.err.strip().splitlines()[-1:] if p.err else ''}")
            row.graphopt.append(p.seconds)
            row.graphopt_cpu.append(p.cpu)
            if rep.exists():
                parts, row.status, row.nodes = _parts(rep)
                row.parts.append(parts)
                rep.unlink()
            p = run(graphopt_cmd("optimize", str(spec.path), "-o", str(out), "-q", "--no-validate"), timeout)
            row.no_validate.append(p.seconds)
            if with_onnxsim:
                p = run([sys.executable, "-m", "onnxsim", str(spec.path), str(work / "sim.onnx")], timeout)
                if p.code != 0:
                    row.errors.append(f"onnxsim: exit {p.code}: {p.err.strip().splitlines()[-1:] if p.err else ''}")
                    row.onnxsim.append(float("nan"))
                else:
                    row.onnxsim.append(p.seconds)
                    row.onnxsim_cpu.append(p.cpu)
            for f in work.glob("*.onnx*"):
                f.unlink()
    return rows


# ----------------------------------------------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------------------------------------------
def fmt(x: float | None, digits: int = 1) -> str:
    if x is None or x != x:
        return "-"
    return f"{x:.{digits}f}"


def print_startup(s: dict[str, Any]) -> None:
    floor = s[FLOOR]
    print("## Start-up (whole processes, median)\n")
    print("| command | wall s | CPU s | target |")
    print("| --- | ---: | ---: | --- |")
    targets = {"graphopt --version": "< 0.3 s", "graphopt --help": "< 0.3 s",
               RUN25: f"< 2x import onnx, onnxruntime: {s[RUN25] / floor:.2f}x"}
    for k, v in s.items():
        if not k.startswith("_"):
            print(f"| `{k}` | {v:.3f} | {s['_cpu'][k]:.3f} | {targets.get(k, '')} |")
    c = s["_cpu"]
    print(f"\nIn CPU time the 25-node run is {c[RUN25] / c[FLOOR]:.2f}x the import of onnx and onnxruntime.")
    r = s["_cnn_report"]
    print(f"\nInside the 25-node run (its report): optimize {r['optimize'].get('total', 0):.3f} s "
          f"(init {r['optimize'].get('init', 0):.3f}, passes {r['optimize'].get('passes', 0):.3f}), validation "
          f"{r['validate'].get('total', 0):.3f} s (sessions {r['validate'].get('sessions', 0):.3f}, runs "
          f"{r['validate'].get('runs', 0):.3f}, bench {r['validate'].get('bench', 0):.3f}).")
    for key, title in (("_importtime", "graphopt optimize cnn.onnx"), ("_importtime_version", "graphopt --version")):
        it = s[key]
        own = sum(v for k, v in it.items() if k.startswith("graphopt"))
        print(f"Imports of `{title}` (python -X importtime, each module's own time, s): "
              + ", ".join(f"{k} {v:.3f}" for k, v in it.items() if v >= 0.005)
              + f"; total {sum(it.values()):.3f}, of which graphopt's own modules {own:.3f}.")
    print()


def print_models(rows: list[ModelRow], with_onnxsim: bool) -> None:
    print("## Default run per model (whole processes, median seconds)\n")
    head = ("| model | nodes | graphopt default | optimize | validation | bench (runs) | --no-validate |"
            + (" onnxsim default | graphopt / onnxsim | CPU s graphopt / onnxsim |" if with_onnxsim else "")
            + " validation |")
    print(head)
    print("|" + " --- |" * (head.count("|") - 1))
    tot_g = tot_s = 0.0
    for r in rows:
        g, nv = median(r.graphopt), median(r.no_validate)
        s = median([x for x in r.onnxsim if x == x]) if r.onnxsim else float("nan")
        p = {k: median([d[k] for d in r.parts]) for k in (r.parts[0] if r.parts else {})}
        cells = [r.id, str(r.nodes or "-"), fmt(g), fmt(p.get("optimize")), fmt(p.get("validation")),
                 f"{fmt(p.get('bench'))} ({int(p.get('bench_runs', 0))})", fmt(nv)]
        if with_onnxsim:
            gc, sc = median(r.graphopt_cpu), median(r.onnxsim_cpu) if r.onnxsim_cpu else float("nan")
            cells += [fmt(s), fmt(g / s, 2) if s == s and s > 0 else "-", f"{fmt(gc)} / {fmt(sc)}"]
            if s == s:
                tot_g += g
                tot_s += s
        cells.append(r.status + (f"; {'; '.join(r.errors[:1])}" if r.errors else ""))
        print("| " + " | ".join(cells) + " |")
    if with_onnxsim and tot_s:
        print(f"\nTotal over models both ran: graphopt {tot_g:.1f} s, onnxsim {tot_s:.1f} s "
              f"({tot_g / tot_s:.2f}x).")
    print("\ngraphopt default = the whole process of `graphopt optimize MODEL -o OUT`; optimize = load + passes + "
          "save; validation = the proof (onnxruntime sessions and correctness runs of both models); bench = the "
          "latency benchmark (its own sessions, a warm-up and the timed runs, of which `runs` per model); "
          "the rest of the process is start-up (imports).\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="", help="comma-separated ids or globs (as compare.py); 'table' for the "
                    "issue's four models; default: every comparison model")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each process (median); default 1")
    ap.add_argument("--startup-repeat", type=int, default=5, help="runs of each start-up command; default 5")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per process")
    ap.add_argument("--no-onnxsim", action="store_true", help="graphopt only")
    ap.add_argument("--startup-only", action="store_true")
    ap.add_argument("--json", metavar="FILE", help="every figure as JSON")
    args = ap.parse_args(argv)

    import compare

    ids = [s.id for s in compare.discover_models()]
    if args.models == "table":
        ids = [i for i in TABLE if i in ids]
        missing = [i for i in TABLE if i not in ids]
        if missing:
            print(f"missing (run benchmarks/export_models.py): {missing}", file=sys.stderr)
    elif args.models:
        ids = [s.id for s in compare.select(compare.discover_models(), args.models.split(","))]

    print(f"# graphopt default run vs onnxsim default run\n\n{platform.platform()}, Python "
          f"{platform.python_version()}, {os.cpu_count()} cores, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} at start\n")
    with tempfile.TemporaryDirectory(prefix="default_run_") as d:
        work = Path(d)
        s = startup(args.startup_repeat, work, args.timeout)
        print_startup(s)
        rows: list[ModelRow] = []
        if not args.startup_only:
            rows = run_models(ids, args.repeat, work, args.timeout, not args.no_onnxsim)
            print_models(rows, not args.no_onnxsim)
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.json:
        Path(args.json).write_text(json.dumps({"startup": s, "models": [r.__dict__ for r in rows]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
