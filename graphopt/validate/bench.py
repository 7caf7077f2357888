"""Latency of the original and the optimized model in onnxruntime, measured interleaved on the same inputs."""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

from .results import ValidationResult

if TYPE_CHECKING:
    from .compare import Validator


def benchmark(v: Validator, res: ValidationResult) -> None:
    """Median latency of the original and of the last compared model on the first trial's inputs: one
    warm-up run each, then `bench_runs` runs alternating between the two (so drift hits both alike)."""
    n = v.options.bench_runs
    if n <= 0 or not res.passed or v._sess is None or v._last_sess is None or not v._feeds:
        return
    t0 = time.perf_counter()
    feeds = v._feeds[0]
    a, b = v._sess, v._last_sess
    v._step(f"timing both models ({n} runs each)")
    try:
        a.run(None, feeds)
        b.run(None, feeds)
        ta: list[float] = []
        tb: list[float] = []
        for _ in range(n):
            t = time.perf_counter()
            a.run(None, feeds)
            ta.append(time.perf_counter() - t)
            t = time.perf_counter()
            b.run(None, feeds)
            tb.append(time.perf_counter() - t)
    except Exception as e:  # noqa: BLE001 - both ran moments ago; a failure now is worth a warning only
        res.warnings.append(v._ort_error(e, "benchmark failed"))
        return
    finally:
        dt = time.perf_counter() - t0
        v.seconds += dt
        res.timings["bench"] = dt
        res.timings["total"] = res.timings.get("total", 0.0) + dt
    res.latency_ms_original = statistics.median(ta) * 1e3
    res.latency_ms_optimized = statistics.median(tb) * 1e3
    res.bench_runs = n
