"""Speed at scale: graphopt -O0 and -O2 (no validation) against the floor, load + save with onnx, on big generated
transformer graphs; whole processes and in-process calls, peak RSS, and how the time grows with the graph.

    python benchmarks/scale.py                                  # 20k, 100k and 300k nodes
    python benchmarks/scale.py --nodes 20000,100000 --repeat 3  # best of 3 per figure
    python benchmarks/scale.py --nodes 20000 --peers onnxsim,ort-basic --timeout 600

The graphs come from benchmarks/_gen.py (``transformer(n, hidden=4, exporter=True)``, seeded): encoder blocks as a
PyTorch export leaves them (Shape/Gather/Concat/Reshape chains on the dynamic batch dim, Identity), plus the
leftovers optimizers remove (a duplicated Shape/Gather, a dead branch, a constant subgraph, a Cast round trip),
with small weights, so that the graph, not the weights, is what costs. They are written once under
benchmarks/_work/scale/ (git-ignored) and reused.

What is measured, all in the same run so that the ratios hold on a loaded machine:

* whole processes: ``python -c "import onnx; onnx.save(onnx.load(a), b)"`` (the floor, imports included),
  ``graphopt optimize a -o b -O0 --no-validate -q`` and ``... -O2 ...``; wall time, CPU time (user + system) and
  peak RSS of each process (``wait4``), and ``python -c "import onnx; onnx.load(a)"``'s peak RSS (what loading the
  file needs);
* in-process calls, in a fresh worker process that has imported everything first (imports not timed, onnxruntime
  included):
  ``onnx.load`` + ``onnx.save``, and ``graphopt.optimize_file(a, b, preset=..., validate=False)``; wall and CPU
  time, the worker's peak RSS, and for -O2 graphopt's own breakdown (load, symbols, each round of passes, save) from
  a second in-process run;
* the growth exponent of each figure between consecutive sizes and between the first and the last
  (``log(t2/t1) / log(n2/n1)``: 1.0 is linear).

Ratios are to the floor measured in the same run (whole process to whole process, in-process to in-process). CPU
time is shown beside wall time because the wall time of a shared machine mostly measures the other processes. With
``--peers`` the peer tools also run on each graph (their own load + optimize + save, in-process, see peers.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "_work" / "scale"


# ---------------------------------------------------------------------------------------------------------------
# running a process and measuring it
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Proc:
    wall: float = 0.0
    cpu: float = 0.0
    rss_mb: float = 0.0
    ok: bool = True
    error: str = ""
    out: dict[str, Any] = field(default_factory=dict)


# A small launcher process starts each measured command: Linux carries a process's peak RSS across fork and exec,
# so a child forked from this (big) process would report at least this process's RSS.
_LAUNCH = """
import json, os, sys, time
cmd = json.loads(sys.argv[1])
acts = [(os.POSIX_SPAWN_OPEN, 1, sys.argv[3], os.O_WRONLY, 0), (os.POSIX_SPAWN_OPEN, 2, sys.argv[4], os.O_WRONLY, 0)]
t0 = time.perf_counter()
pid = os.posix_spawn(cmd[0], cmd, os.environ, file_actions=acts)
deadline = t0 + float(sys.argv[2])
while True:
    p, status, ru = os.wait4(pid, os.WNOHANG)
    if p:
        break
    if time.perf_counter() > deadline:
        os.kill(pid, 9)
        p, status, ru = os.wait4(pid, 0)
        status = -1
        break
    time.sleep(0.002)
print(json.dumps({"wall": time.perf_counter() - t0, "cpu": ru.ru_utime + ru.ru_stime,
                  "rss_mb": ru.ru_maxrss / 1024, "code": os.waitstatus_to_exitcode(status) if status != -1 else -9}))
"""


def run_measured(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> Proc:
    """Run `cmd` (through a small launcher); its wall time, CPU time (user + system) and peak RSS (wait4)."""
    cmd = [shutil.which(cmd[0]) or cmd[0], *cmd[1:]]
    with tempfile.NamedTemporaryFile() as fo, tempfile.NamedTemporaryFile() as fe:
        got = subprocess.run([sys.executable, "-S", "-c", _LAUNCH, json.dumps(cmd), str(timeout), fo.name, fe.name],
                             capture_output=True, env=env, text=True)
        fo.seek(0)
        fe.seek(0)
        out_b, err_b = fo.read(), fe.read()
    try:
        m = json.loads(got.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return Proc(ok=False, error=f"launcher failed: {got.stderr.strip()[-200:]}")
    res = Proc(m["wall"], m["cpu"], m["rss_mb"])
    code = m["code"]
    if code != 0:
        res.ok = False
        res.error = "timeout" if code == -9 else (
            err_b.decode(errors="replace").strip().splitlines() or [f"exit {code}"])[-1][:200]
    text = out_b.decode(errors="replace").strip()
    if text.startswith("{"):
        res.out = json.loads(text.splitlines()[-1])
    return res


def best(runs: list[Proc]) -> Proc:
    ok = [r for r in runs if r.ok]
    return min(ok, key=lambda r: r.wall) if ok else runs[-1]


# ---------------------------------------------------------------------------------------------------------------
# in-process worker: python benchmarks/scale.py worker MODE SRC DST
# ---------------------------------------------------------------------------------------------------------------
def _worker(mode: str, src: str, dst: str) -> None:
    import gc
    import resource

    import onnx

    import graphopt
    from graphopt.jit import init as _init

    _init(None)  # imports every module a run uses (registries, translators: onnxruntime), untimed
    C = time.process_time
    W = time.perf_counter
    out: dict[str, Any] = {}
    gc.collect()
    if mode == "floor":
        t0, c0 = W(), C()
        onnx.save(onnx.load(src), dst)
        out.update(wall=W() - t0, cpu=C() - c0)
    else:
        from graphopt.api import optimize_file

        preset = mode.upper()
        t0, c0 = W(), C()
        rep = optimize_file(src, dst, preset=preset, validate=False)
        out.update(wall=W() - t0, cpu=C() - c0, exit_code=rep.exit_code, timings=rep.timings_optimize)
        out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if preset != "O0":
            # the same again, through the pieces, for the breakdown by round
            from graphopt.jit import init
            from graphopt.pipeline import build_config

            del rep
            gc.collect()
            t0 = W()
            m = graphopt.load(src)
            t1 = W()
            ctx = init(m, build_config(preset=preset, use_pyproject=False))
            t2 = W()
            rec = ctx.run_pipeline(m)
            t3 = W()
            rounds: dict[int, float] = {}
            for r in rec.passes:
                rounds[r.round] = rounds.get(r.round, 0.0) + r.seconds
            by_pass: dict[str, float] = {}
            for r in rec.passes:
                by_pass[r.name] = by_pass.get(r.name, 0.0) + r.seconds
            graphopt.save(m, dst)
            t4 = W()
            out["breakdown"] = {"load": t1 - t0, "init": t2 - t1, "symbols": rec.symbols_seconds,
                                "bookkeeping": rec.bookkeeping_seconds,
                                "rounds": [rounds[k] for k in sorted(rounds)], "pipeline": t3 - t2, "save": t4 - t3,
                                "passes": by_pass, "nodes_after": rec.nodes_after}
    out.setdefault("rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(out))


# ---------------------------------------------------------------------------------------------------------------
def _graphopt_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("graphopt")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from graphopt.cli.main import main; sys.argv[0] = 'graphopt'; main()"]


def _model(n: int, hidden: int) -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"transformer_{n}_h{hidden}.onnx"
    if not path.exists():
        sys.path.insert(0, str(HERE))
        import _gen

        tmp = path.with_suffix(".tmp")
        import onnx

        onnx.save(_gen.transformer(n, hidden=hidden, exporter=True), str(tmp))
        os.replace(tmp, path)
    return path


def _nodes(path: Path) -> int:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    count = 0
    stack = [m.graph]
    while stack:
        g = stack.pop()
        count += len(g.node)
        for nd in g.node:
            for a in nd.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    stack.append(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    stack.extend(a.graphs)
    return count


def _exp(a: float, b: float, na: int, nb: int) -> str:
    if a <= 0 or b <= 0 or na == nb:
        return "-"
    return f"{math.log(b / a) / math.log(nb / na):.2f}"


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "worker":
        _worker(*argv[1:4])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default="20000,100000,300000", help="comma-separated graph sizes")
    ap.add_argument("--hidden", type=int, default=4, help="hidden size of the generated blocks (default 4)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per figure; the fastest counts (default 1)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per process (default 900)")
    ap.add_argument("--peers", default="", help="also run these peer tools (names as in peers.py), e.g. onnxsim")
    ap.add_argument("--json", metavar="FILE", help="write every figure as JSON")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.nodes.split(",") if x.strip()]
    go = _graphopt_cmd()
    py = sys.executable
    results: dict[int, dict[str, Any]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="graphopt-scale-"))
    try:
        for n in sizes:
            src = _model(n, args.hidden)
            before = _nodes(src)
            size = src.stat().st_size
            print(f"== {before} nodes, {size / 1e6:.1f} MB ({src.name})", flush=True)
            row: dict[str, Any] = {"nodes": before, "bytes": size}
            dst = tmp / "out.onnx"
            whole = {
                "floor": [py, "-c", "import onnx, sys; onnx.save(onnx.load(sys.argv[1]), sys.argv[2])", str(src),
                          str(dst)],
                "O0": go + ["optimize", str(src), "-o", str(dst), "-O0", "--no-validate", "-q"],
                "O2": go + ["optimize", str(src), "-o", str(dst), "-O2", "--no-validate", "-q"],
                "onnx.load": [py, "-c", "import onnx, sys; onnx.load(sys.argv[1])", str(src)],
            }
            for name, cmd in whole.items():
                runs = []
                for _ in range(args.repeat):
                    dst.unlink(missing_ok=True)
                    runs.append(run_measured(cmd, args.timeout))
                r = best(runs)
                row[f"proc:{name}"] = r.__dict__
                if name in ("O0", "O2") and r.ok:
                    row[f"out_bytes:{name}"] = dst.stat().st_size
                    row[f"out_nodes:{name}"] = _nodes(dst)
                    row[f"identical:{name}"] = dst.read_bytes() == src.read_bytes()
                print(f"   process   {name:<9} {r.wall:7.2f} s wall {r.cpu:7.2f} s cpu {r.rss_mb:7.0f} MB"
                      + ("" if r.ok else f"  FAILED: {r.error}"), flush=True)
            for mode in ("floor", "O0", "O2"):
                runs = []
                for _ in range(args.repeat):
                    dst.unlink(missing_ok=True)
                    runs.append(run_measured([py, str(Path(__file__).resolve()), "worker", mode, str(src), str(dst)],
                                             args.timeout))
                r = best(runs)
                row[f"call:{mode}"] = r.__dict__
                o = r.out
                print(f"   in-proc   {mode:<9} {o.get('wall', float('nan')):7.2f} s wall "
                      f"{o.get('cpu', float('nan')):7.2f} s cpu {o.get('rss_mb', 0):7.0f} MB"
                      + ("" if r.ok else f"  FAILED: {r.error}"), flush=True)
            if args.peers:
                sys.path.insert(0, str(HERE))
                import peers

                for tool in [t.strip() for t in args.peers.split(",") if t.strip()]:
                    pr = peers.run_tool(tool, src, tmp / f"{tool}.onnx", args.timeout)
                    row[f"peer:{tool}"] = {"ok": pr.ok, "seconds": pr.seconds, "error": pr.error,
                                           "nodes": _nodes(tmp / f"{tool}.onnx") if pr.ok else None}
                    print(f"   peer      {tool:<9} " + (f"{pr.seconds:7.2f} s" if pr.ok else f"failed: {pr.error}"),
                          flush=True)
                    (tmp / f"{tool}.onnx").unlink(missing_ok=True)
            results[n] = row
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    _report(results, sizes, args)
    if args.json:
        Path(args.json).write_text(json.dumps({"sizes": sizes, "hidden": args.hidden, "results": results}, indent=1))
    return 0


def _report(results: dict[int, dict[str, Any]], sizes: list[int], args: Any) -> None:
    def f(x: Any, fmt: str = "{:.2f}") -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)

    print()
    print("| nodes | run | process wall s | x floor | process cpu s | x floor | peak RSS MB | in-process wall s "
          "| x floor | in-process cpu s | x floor | output MB | nodes after |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        row = results[n]
        pf, cf = row["proc:floor"], row["call:floor"]["out"]
        for name in ("floor", "O0", "O2"):
            p, c = row[f"proc:{name}"], row[f"call:{name}"]["out"]
            out_mb = row.get(f"out_bytes:{name}", row["bytes"] if name == "floor" else None)
            print(f"| {row['nodes']} | {name} | {f(p['wall'])} | {f(p['wall'] / pf['wall'])} | {f(p['cpu'])} | "
                  f"{f(p['cpu'] / pf['cpu'])} | {f(p['rss_mb'], '{:.0f}')} | {f(c.get('wall'))} | "
                  f"{f(c['wall'] / cf['wall'] if c.get('wall') else None)} | {f(c.get('cpu'))} | "
                  f"{f(c['cpu'] / cf['cpu'] if c.get('cpu') else None)} | "
                  f"{f(out_mb / 1e6 if out_mb else None, '{:.1f}')} | {row.get(f'out_nodes:{name}', row['nodes'])} |")
    print()
    print("Targets (ratios measured in the same run):")
    for n in sizes:
        row = results[n]
        pf, load = row["proc:floor"], row["proc:onnx.load"]
        o0, o2 = row["proc:O0"], row["proc:O2"]
        bd = row["call:O2"]["out"].get("breakdown", {})
        rounds = bd.get("rounds", [])
        r2 = (sum(rounds[1:]) / rounds[0]) if len(rounds) > 1 and rounds[0] else None
        print(f"- {row['nodes']} nodes: -O2 {o2['wall'] / pf['wall']:.2f}x the floor as processes (cpu "
              f"{o2['cpu'] / pf['cpu']:.2f}x; target 3x); -O0 {o0['wall'] / pf['wall']:.2f}x (cpu "
              f"{o0['cpu'] / pf['cpu']:.2f}x; target 1.3x), output {row.get('out_bytes:O0', 0) / row['bytes']:.3f}x "
              f"the input" + (", byte-identical" if row.get("identical:O0") else "")
              + f"; peak RSS of -O2 {o2['rss_mb'] / load['rss_mb']:.2f}x onnx.load's ({o2['rss_mb']:.0f} vs "
              f"{load['rss_mb']:.0f} MB; target 2x); rounds after the first "
              + (f"{r2:.0%} of the first" if r2 is not None else "-")
              + " (" + ", ".join(f"{x:.2f}" for x in rounds) + " s)")
        if bd:
            passes = ", ".join(f"{k} {v:.2f}" for k, v in sorted(bd.get("passes", {}).items(), key=lambda kv: -kv[1]))
            print(f"  -O2 in-process breakdown: load {bd['load']:.2f}, init {bd['init']:.2f}, symbols "
                  f"{bd['symbols']:.2f}, pipeline {bd['pipeline']:.2f} ({passes}; between passes "
                  f"{bd.get('bookkeeping', 0):.2f}), save {bd['save']:.2f} s")
    if len(sizes) > 1:
        print()
        print("Growth exponents (1.0 = linear):")
        print("| figure | " + " | ".join(f"{a}->{b}" for a, b in zip(sizes, sizes[1:]))
              + (f" | {sizes[0]}->{sizes[-1]}" if len(sizes) > 2 else "") + " |")
        print("|---|" + "---:|" * (len(sizes) - 1 + (len(sizes) > 2)))
        figs = [("floor, process wall", "proc:floor", "wall"), ("-O0, process wall", "proc:O0", "wall"),
                ("-O2, process wall", "proc:O2", "wall"), ("-O2, process cpu", "proc:O2", "cpu"),
                ("-O2, in-process wall", "call:O2", "wall"), ("-O2, in-process cpu", "call:O2", "cpu")]
        for label, key, what in figs:
            vals = []
            for n in sizes:
                d = results[n][key]
                vals.append(d["out"].get(what) if key.startswith("call:") else d.get(what))
            ns = [results[n]["nodes"] for n in sizes]
            cells = [_exp(vals[i], vals[i + 1], ns[i], ns[i + 1]) for i in range(len(sizes) - 1)]
            if len(sizes) > 2:
                cells.append(_exp(vals[0], vals[-1], ns[0], ns[-1]))
            print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
