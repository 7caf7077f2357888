"""Tool speed at scale: graphopt -O2 and the peers on big generated transformer graphs, side by side.

    python benchmarks/scale.py                         # 20k and 100k nodes, every tool, 15 min timeout each
    python benchmarks/scale.py --nodes 100000 --tools graphopt,onnxoptimizer --timeout 600

The graphs come from benchmarks/_gen.py (seeded; encoder blocks shaped like a PyTorch export, with the
Shape/Gather/Concat/Reshape chains exporters leave). Each tool runs in its own process with a timeout (peers.py):
wall time of load + optimize + save, peak RSS is not measured here (see roundtrip.py for graphopt's). Output nodes
are counted, and the ratio of each tool's time to graphopt's, measured in the same run, is printed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import onnx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _gen  # noqa: E402
import peers  # noqa: E402


def _nodes(path: Path) -> int:
    m = onnx.load(str(path), load_external_data=False)
    count = 0
    stack = [m.graph]
    while stack:
        g = stack.pop()
        count += len(g.node)
        for n in g.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    stack.append(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    stack.extend(a.graphs)
    return count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default="20000,100000", help="comma-separated graph sizes (default 20000,100000)")
    ap.add_argument("--tools", default=",".join(peers.TOOLS), help="comma-separated tools (default: all)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per tool per model (default 900)")
    args = ap.parse_args(argv)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="graphopt-scale-") as tmp:
        work = Path(tmp)
        for n in (int(x) for x in args.nodes.split(",")):
            src = work / f"transformer_{n}.onnx"
            onnx.save(_gen.transformer(n), str(src))
            before = _nodes(src)
            base = None
            for tool in tools:
                dst = work / f"{src.stem}.{tool}.onnx"
                r = peers.run_tool(tool, src, dst, args.timeout)
                after = _nodes(dst) if r.ok else None
                if tool == "graphopt" and r.ok:
                    base = r.seconds
                rows.append((n, before, tool, r, after, base))
                status = f"{r.seconds:8.1f} s  {after} nodes" if r.ok else f"failed: {r.error}"
                print(f"{n:>7} nodes  {tool:<14} {status}", flush=True)
                dst.unlink(missing_ok=True)
    print()
    print("| graph nodes | tool | time s | x graphopt | nodes after |")
    print("|---:|---|---:|---:|---:|")
    for n, before, tool, r, after, base in rows:
        t = f"{r.seconds:.1f}" if r.ok else ("timeout" if r.timed_out else "failed")
        ratio = f"{r.seconds / base:.1f}" if r.ok and base else (f"> {args.timeout / base:.0f}" if r.timed_out
                                                                  and base else "-")
        print(f"| {before} | {tool} | {t} | {ratio} | {after if after is not None else '-'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
