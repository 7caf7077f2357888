"""What --report-html costs on big models: the extra work next to the optimization it reports on.

    python benchmarks/html_report.py                      # 20k- and 100k-node transformers
    python benchmarks/html_report.py --nodes 5000,50000

For each generated transformer (benchmarks/_gen.py), in one process: the -O2 optimization (load, init, passes), and
the work only a run with --report-html does: the snapshot of the original's value types taken after init, reading
the original again, comparing the two graphs (graphopt.diff.graph_diff), and the page (Graphviz included). Printed:
each time, the extra work's share of the optimization, and the extra per 1000 nodes, whose ratio to the smallest
model's is about 1 when the comparison is linear in the model's size.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time

import onnx
from _gen import transformer

from graphopt.diff import graph_diff, value_types
from graphopt.html_report import to_html
from graphopt.ir import serde
from graphopt.jit import init
from graphopt.pipeline import PipelineConfig
from graphopt.report import ModelReport
from graphopt.validate.bisect import optimize_with


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default="20000,100000", help="comma-separated node counts")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    base = None
    print("| nodes | optimize | snapshot | reload | compare | page | extra / optimize | extra per 1k nodes | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(x) for x in args.nodes.split(",") if x]:
            path = os.path.join(tmp, f"t{n}.onnx")
            onnx.save(transformer(n), path)
            t0 = time.perf_counter()
            model = serde.load(path)
            ctx = init(model, PipelineConfig())
            t1 = time.perf_counter()
            snap = value_types(model, ctx.symbols)
            t2 = time.perf_counter()
            optimize_with(ctx, model)
            t3 = time.perf_counter()
            original = serde.load(path)
            t4 = time.perf_counter()
            diff = graph_diff(original, model, types_before=snap)
            t5 = time.perf_counter()
            rep = ModelReport(input=path, nodes_before=len(original.graph), nodes_after=len(model.graph))
            rep.graph_diff = diff
            to_html(rep)
            t6 = time.perf_counter()
            opt = (t1 - t0) + (t3 - t2)
            extra = (t2 - t1) + (t6 - t3)
            per = extra / n * 1000
            base = base or per
            print(f"| {n} | {opt:.2f} s | {t2 - t1:.2f} s | {t4 - t3:.2f} s | {t5 - t4:.2f} s | {t6 - t5:.2f} s | "
                  f"{extra / opt:.0%} | {per * 1e3:.1f} ms | {per / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
