"""Cost that should follow nodes, not weight bytes: graphopt -O0 and -O2 (no validation) on a small model with 1 GiB
of inline float weights, against the floor (load + save with onnx), as whole processes, with peak RSS.

    python benchmarks/big_weights.py                  # 1 GiB, 16 layers (65 nodes)
    python benchmarks/big_weights.py --mib 256 --repeat 3

The model comes from benchmarks/_gen.py (``inline_weights``: an MLP of MatMul + Add + Relu layers with square
float32 weights, and an exporter's Shape/Gather/Concat/Reshape chain every fourth layer), seeded, written once
under benchmarks/_work/big/ (git-ignored; never commit it). Every command runs in its own process, started through
scale.py's launcher (wall time, CPU time, peak RSS from wait4); ratios are to the floor of the same run. An
in-process -O2 run prints graphopt's own timings (load, init, each pass, save).

Targets: -O2 at most 1.5x the floor's time, peak RSS at most the floor's plus 10%. Shape work must never serialize,
copy or hash the weights; CSE compares cheap keys (dtype, shape, a sampled hash) before bytes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scale  # noqa: E402

WORK = HERE / "_work" / "big"

_INPROC = """
import json, sys, time
from graphopt.api import optimize_file
t0 = time.perf_counter()
rep = optimize_file(sys.argv[1], sys.argv[2], preset="O2", validate=False)
out = {"wall": time.perf_counter() - t0, "timings": rep.timings_optimize, "exit_code": rep.exit_code,
       "passes": {p.name: p.seconds for p in rep.passes}, "nodes": [rep.nodes_before, rep.nodes_after]}
print(json.dumps(out))
"""


def _model(mib: int, layers: int) -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"mlp_{mib}m_{layers}l.onnx"
    if not path.exists():
        import _gen
        import onnx

        m = _gen.inline_weights(mib * 2**20, layers=layers)
        tmp = path.with_suffix(".tmp")
        onnx.save(m, str(tmp))
        del m
        os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=1024, help="weight MiB in all (default 1024)")
    ap.add_argument("--layers", type=int, default=16, help="layers (default 16: 65 nodes)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per figure; the fastest counts")
    ap.add_argument("--timeout", type=float, default=1800.0)
    args = ap.parse_args(argv)
    src = _model(args.mib, args.layers)
    py = sys.executable
    go = scale._graphopt_cmd()
    size = src.stat().st_size
    print(f"== {src.name}: {size / 2**20:.0f} MiB", flush=True)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="graphopt-big-", dir=str(WORK)) as tmp:
        dst = Path(tmp) / "out.onnx"
        cmds = {
            "floor": [py, "-c", "import onnx, sys; onnx.save(onnx.load(sys.argv[1]), sys.argv[2])", str(src),
                      str(dst)],
            "O0": go + ["optimize", str(src), "-o", str(dst), "-O0", "--no-validate", "-q"],
            "O2": go + ["optimize", str(src), "-o", str(dst), "-O2", "--no-validate", "-q"],
        }
        for name, cmd in cmds.items():
            runs = []
            for _ in range(args.repeat):
                dst.unlink(missing_ok=True)
                runs.append(scale.run_measured(cmd, args.timeout))
            r = scale.best(runs)
            rows[name] = r
            extra = f", output {dst.stat().st_size / 2**20:.0f} MiB" if r.ok and dst.exists() else ""
            print(f"   {name:<6} {r.wall:7.2f} s wall {r.cpu:7.2f} s cpu {r.rss_mb:7.0f} MB peak RSS{extra}"
                  + ("" if r.ok else f"  FAILED: {r.error}"), flush=True)
        dst.unlink(missing_ok=True)
        ip = scale.run_measured([py, "-c", _INPROC, str(src), str(dst)], args.timeout)
    f, o0, o2 = rows["floor"], rows["O0"], rows["O2"]
    print()
    print("| run | wall s | x floor | cpu s | x floor | peak RSS MB | x floor |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r.wall:.2f} | {r.wall / f.wall:.2f} | {r.cpu:.2f} | {r.cpu / f.cpu:.2f} | "
              f"{r.rss_mb:.0f} | {r.rss_mb / f.rss_mb:.2f} |")
    print()
    print(f"Targets: -O2 {o2.wall / f.wall:.2f}x the floor's time (cpu {o2.cpu / f.cpu:.2f}x; target 1.5x), peak "
          f"RSS {o2.rss_mb / f.rss_mb:.2f}x the floor's (target 1.10x); -O0 {o0.wall / f.wall:.2f}x, "
          f"RSS {o0.rss_mb / f.rss_mb:.2f}x")
    if ip.ok and ip.out:
        t = ip.out["timings"]
        passes = ", ".join(f"{k} {v:.2f}" for k, v in sorted(ip.out["passes"].items(), key=lambda kv: -kv[1]))
        print(f"-O2 in-process: load {t.get('load', 0):.2f}, init {t.get('init', 0):.2f}, passes "
              f"{t.get('passes', 0):.2f} ({passes}), save {t.get('save', 0):.2f} s; nodes {ip.out['nodes'][0]} -> "
              f"{ip.out['nodes'][1]}")
    elif not ip.ok:
        print(f"-O2 in-process failed: {ip.error}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
