"""optimize-functions at scale: time per model-local function body as the number of functions grows.

    python benchmarks/functions_scale.py                      # 100, 200, 400 and 800 functions
    python benchmarks/functions_scale.py --functions 200,1600

Each generated model has N model-local functions (each called twice, so none is inlined), each body with a dead
node, a duplicate node, a foldable constant product and an Identity, as exported modules often are. Printed: the
whole -O2 run, the optimize-functions pass's own time, the time per function, and that time's ratio to the smallest
model's, measured in the same run (about 1 when the pass is linear in the number of functions).
"""

from __future__ import annotations

import argparse
import logging
import time

import onnx.parser

import graphopt


def make(n: int) -> graphopt.ir.core.Model:
    lines = ['<ir_version: 9, opset_import: ["" : 18, "local" : 1]>', "g (float[N] x) => (float[N] y) {",
             "  a0 = Identity(x)"]
    for i in range(n):
        lines.append(f"  b{i} = local.f{i}(a{i})")
        lines.append(f"  a{i + 1} = local.f{i}(b{i})")
    lines += [f"  y = Identity(a{n})", "}"]
    for i in range(n):
        lines.append('<domain: "local", opset_import: ["" : 18]>')
        lines.append(f"f{i} (p) => (q) {{ dead = Exp(p)  k = Constant<value = float[1] {{{i}.0}}>()  k2 = Mul(k, k)  "
                     "s1 = Sin(p)  s2 = Sin(p)  t = Add(s1, s2)  i1 = Identity(t)  q = Add(i1, k2) }")
    return graphopt.load(onnx.parser.parse_model("\n".join(lines)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--functions", default="100,200,400,800", help="comma-separated function counts")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    base = None
    print("| functions | -O2 run | optimize-functions | per function | ratio |")
    print("|---:|---:|---:|---:|---:|")
    for n in [int(x) for x in args.functions.split(",") if x]:
        m = make(n)
        t = time.perf_counter()
        res = graphopt.run(m, preset="O2")
        total = time.perf_counter() - t
        own = sum(r.seconds for r in res.record.passes if r.name == "optimize-functions")
        per = own / n
        base = base or per
        print(f"| {n} | {total:.2f} s | {own:.2f} s | {per * 1e3:.1f} ms | {per / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
