"""A model with more than 2 GiB of weights in external data: graphopt loads and saves it without holding the weights.

    python benchmarks/large_model.py                  # 2.25 GiB of weights, temporary folder deleted at the end
    python benchmarks/large_model.py --gib 4 --keep   # keep the folder (its path is printed)

The weights file is written sparsely (``truncate`` plus a small seeded stripe per tensor, see _gen.big_weights), so
making it takes no memory and little disk. Each variant runs in its own subprocess, which times itself and reports
its peak RSS (``ru_maxrss``); the driver also prints ``RUSAGE_CHILDREN``'s figure (the largest child). Variants:

* ``load+save``: ``graphopt.ir.load`` then ``graphopt.ir.save`` to another folder (the data file is copied in
  chunks, tensors keep their locations and offsets);
* ``read slice``: a pass reads a few rows of one tensor through ``numpy()`` (a memory map: only those pages are
  read) before saving;
* ``read tensor``: a pass reads one whole tensor (its pages join the RSS while mapped, the other tensors do not).

After each save the child reloads the output and checks the seeded stripe of the first and last tensors.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _child(variant: str, src: str, out: str) -> dict[str, object]:
    import numpy as np

    import graphopt.ir as gir

    t0 = time.perf_counter()
    m = gir.load(src)
    t1 = time.perf_counter()
    weights = [v for v in m.graph.initializers.values() if v.name and v.name.startswith("W")]
    w0 = weights[0].const
    assert w0 is not None
    if variant == "read slice":
        arr = w0.numpy()
        assert isinstance(arr, np.memmap)
        float(arr[:4].sum())
    elif variant == "read tensor":
        arr = w0.numpy()
        float(arr.sum(dtype=np.float64))
    t2 = time.perf_counter()
    info = gir.save(m, out)
    t3 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # check: the stripes of the first and last weights survived the copy
    back = gir.load(out)
    ok = True
    for name in (weights[0].name, weights[-1].name):
        a = m.graph.initializers[name].const.numpy()  # type: ignore[union-attr]
        b = back.graph.initializers[name].const.numpy()  # type: ignore[union-attr]
        ok = ok and bool(np.array_equal(a.reshape(-1)[:4096], b.reshape(-1)[:4096]))
    return {"load": t1 - t0, "pass": t2 - t1, "save": t3 - t2, "rss": rss, "written": info.bytes_written,
            "files": [os.path.basename(f) for f in info.external_files], "ok": ok}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=2.25, help="GiB of weights (default 2.25)")
    ap.add_argument("--tensor-mib", type=int, default=256, help="MiB per weight tensor (default 256)")
    ap.add_argument("--variants", default="load+save,read slice,read tensor")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(_child(*a.child)))
        return

    sys.path.insert(0, str(HERE))
    import _gen

    tmp = tempfile.mkdtemp(prefix="graphopt-large-")
    try:
        src_dir = os.path.join(tmp, "src")
        os.makedirs(src_dir)
        t = time.perf_counter()
        path, total, count = _gen.big_weights(src_dir, int(a.gib * 2**30), tensor_bytes=a.tensor_mib * 2**20)
        gen_s = time.perf_counter() - t
        print(f"# graphopt load + save of a model with {total / 2**30:.2f} GiB of external weights "
              f"({count} tensors of {total / count / 2**20:.0f} MiB; made in {gen_s:.1f} s, sparse file)")
        print()
        print("| variant | load s | pass s | save s | total s | peak RSS MiB | RSS / weights | written GiB | check |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
        for i, variant in enumerate(v for v in a.variants.split(",") if v):
            out_dir = os.path.join(tmp, f"out{i}")
            os.makedirs(out_dir)
            r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", variant, path,
                                os.path.join(out_dir, "model.onnx")], capture_output=True, text=True, env=env)
            if r.returncode != 0:
                print(f"| {variant} | failed: {(r.stderr.strip().splitlines() or ['?'])[-1]} | | | | | | | |")
                continue
            res = json.loads(r.stdout.strip().splitlines()[-1])
            tot = res["load"] + res["pass"] + res["save"]
            print(f"| {variant} | {res['load']:.2f} | {res['pass']:.2f} | {res['save']:.2f} | {tot:.2f} | "
                  f"{res['rss'] / 2**20:.0f} | {res['rss'] / total:.3f} | {res['written'] / 2**30:.2f} | "
                  f"{'ok' if res['ok'] else 'MISMATCH'} ({', '.join(res['files'])}) |")
            shutil.rmtree(out_dir, ignore_errors=True)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        print()
        print(f"largest child's peak RSS (RUSAGE_CHILDREN): {kids / 2**20:.0f} MiB for {total / 2**30:.2f} GiB "
              f"of weights")
    finally:
        if a.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
