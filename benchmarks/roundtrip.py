"""Load + save wall time of big transformer-like models: graphopt's IR next to the floor (onnx.load + onnx.save) and
onnx-ir, measured in the same run.

    python benchmarks/roundtrip.py                         # 20k and 100k nodes, best of 3
    python benchmarks/roundtrip.py --nodes 20000,100000 --repeat 3 --hidden 16

Models come from benchmarks/_gen.py (seeded, deterministic) and are saved under a temporary folder. Each tool runs
in its own subprocess (so that one tool's garbage does not slow the next) and reports its best of --repeat round
trips; a round trip is load then save to a new file. graphopt's save is atomic and fsyncs (the others do neither),
which is part of what it costs. A second table times IR operations on the loaded graphopt model: sort() of an
already sorted graph, verify(), a full walk, serialize() with nothing changed and with every node touched, and
verify/sort of a graph of the same size with an If every 10 nodes; the microseconds per node at both sizes show
whether anything grows faster than linearly.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------------------------------------
# worker side: one tool, one model, N round trips
# ---------------------------------------------------------------------------------------------------------------
def _roundtrip_fns(tool: str) -> tuple[Any, Any]:
    if tool == "onnx":
        import onnx

        return onnx.load, lambda m, p: onnx.save(m, p)
    if tool == "graphopt":
        import graphopt.ir as gir

        return gir.load, lambda m, p: gir.save(m, p)
    if tool == "onnx-ir":
        import onnx_ir

        return onnx_ir.load, lambda m, p: onnx_ir.save(m, p)
    raise SystemExit(f"unknown tool {tool}")


def _worker_roundtrip(tool: str, path: str, out: str, repeat: int) -> dict[str, Any]:
    load, save = _roundtrip_fns(tool)
    runs = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        m = load(path)
        t1 = time.perf_counter()
        save(m, out)
        t2 = time.perf_counter()
        runs.append((t1 - t0, t2 - t1))
        del m
    import resource

    return {"runs": runs, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _worker_gen(path: str, nodes: int, hidden: int) -> dict[str, int]:
    sys.path.insert(0, str(HERE))
    import _gen
    import onnx

    model = _gen.transformer(nodes, hidden=hidden)
    onnx.save(model, path)
    return {"nodes": len(model.graph.node), "onnx": onnx.__version__}


def _best(fn: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _worker_ops(path: str, repeat: int) -> dict[str, float]:
    import graphopt.ir as gir
    from graphopt.ir import serde

    m = gir.load(path)
    g = m.graph
    n_total = m.num_nodes()
    out: dict[str, float] = {}
    out["sort (sorted)"] = _best(lambda: g.sort(), repeat)
    out["verify"] = _best(lambda: gir.verify(m), repeat)
    out["walk nodes+uses"] = _best(lambda: sum(len(v.uses()) for n in g for v in n.outputs), repeat)
    out["serialize (untouched)"] = _best(lambda: serde.serialize(m), repeat)
    for n in g:
        n.name = n.name + "_"  # every node is now re-encoded by the writer
    out["serialize (all touched)"] = _best(lambda: serde.serialize(m), repeat)
    nodes = list(g)
    out["reverse + sort"] = _best(lambda: (g._reorder(nodes[::-1]), g.sort()), 1)
    # the same number of nodes (subgraph nodes included) with an If every 10 nodes
    sys.path.insert(0, str(HERE))
    import _gen

    del m, g, nodes
    mi = serde.loads(_gen.chain_with_ifs(n_total).SerializeToString())
    out["If-heavy: verify"] = _best(lambda: gir.verify(mi), repeat)
    out["If-heavy: sort (sorted)"] = _best(lambda: mi.graph.sort(), repeat)
    return out


# ---------------------------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------------------------
def _run_worker(args: list[str]) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", *args], capture_output=True,
                       text=True, env=env)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="20000,100000", help="comma-separated node counts")
    ap.add_argument("--repeat", type=int, default=3, help="round trips per tool; the best is reported")
    ap.add_argument("--hidden", type=int, default=16, help="hidden size of the generated transformer")
    ap.add_argument("--tools", default="onnx,graphopt,onnx-ir")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        kind = a.worker[0]
        if kind == "gen":
            res: Any = _worker_gen(a.worker[1], int(a.worker[2]), int(a.worker[3]))
        elif kind == "ops":
            res = _worker_ops(a.worker[1], int(a.worker[2]))
        else:
            res = _worker_roundtrip(kind, a.worker[1], a.worker[2], int(a.worker[3]))
        print(json.dumps(res))
        return

    tools = [t for t in a.tools.split(",") if t]
    if "onnx-ir" in tools:
        import importlib.util

        if importlib.util.find_spec("onnx_ir") is None:
            print("onnx-ir is not installed: skipped")
            tools.remove("onnx-ir")
    sizes = [int(x) for x in a.nodes.split(",") if x]
    rows = []
    ops: dict[int, dict[str, float]] = {}
    onnx_version = "?"
    with tempfile.TemporaryDirectory(prefix="graphopt-bench-") as tmp:
        for n in sizes:
            path = os.path.join(tmp, f"model_{n}.onnx")
            # made in a subprocess: a child inherits its parent's peak RSS on Linux, so the driver stays small
            gen = _run_worker(["gen", path, str(n), str(a.hidden)])
            real_nodes, onnx_version = gen["nodes"], gen["onnx"]
            size_mb = os.path.getsize(path) / 2**20
            results = {}
            for tool in tools:
                out = os.path.join(tmp, f"out_{tool}_{n}.onnx")
                results[tool] = _run_worker([tool, path, out, str(a.repeat)])
                if os.path.exists(out):
                    os.unlink(out)
            ops[real_nodes] = _run_worker(["ops", path, str(a.repeat)])
            floor = min(sum(r) for r in results["onnx"]["runs"]) if "runs" in results.get("onnx", {}) else None
            for tool, r in results.items():
                if "error" in r:
                    rows.append((real_nodes, size_mb, tool, None, None, None, None, None, r["error"]))
                    continue
                best = min(r["runs"], key=sum)
                total = sum(best)
                rows.append((real_nodes, size_mb, tool, best[0], best[1], total,
                             total / floor if floor else None, r["rss_mb"], ""))

    print(f"# load + save round trip, best of {a.repeat} (python {sys.version.split()[0]}, onnx {onnx_version})")
    print()
    print("| nodes | file MB | tool | load s | save s | total s | x floor | peak RSS MB |")
    print("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for nodes, mb, tool, ld, sv, tot, ratio, rss, err in rows:
        if err:
            print(f"| {nodes} | {mb:.1f} | {tool} | failed: {err} | | | | |")
            continue
        print(f"| {nodes} | {mb:.1f} | {tool} | {ld:.3f} | {sv:.3f} | {tot:.3f} | {ratio:.2f} | {rss:.0f} |")
    print()
    print("# graphopt IR operations on the loaded model (best of repeats; us/node in brackets)")
    print()
    names = list(next(iter(ops.values())).keys()) if ops else []
    print("| operation | " + " | ".join(f"{n} nodes" for n in ops) + " |")
    print("| --- | " + " | ".join("---:" for _ in ops) + " |")
    for op in names:
        cells = []
        for n, r in ops.items():
            if "error" in r:
                cells.append("failed")
            else:
                cells.append(f"{r[op]:.3f} s ({r[op] / n * 1e6:.2f})")
        print(f"| {op} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
