"""Latency of the original and the optimized model in onnxruntime, measured interleaved on the same inputs.

The benchmark answers another question than the proof, so it has its own pair of sessions: at the optimization
level a user runs with (``all`` by default) and a fixed intra-op thread count (1 by default, for steadier figures
on a busy machine), created only once the proof has passed. It is bounded by a time budget: after one warm-up run
of each model, the two run alternately (so that drift in machine load hits both alike) until the budget is spent,
at least :data:`~.results.BENCH_MIN_RUNS` and at most :data:`~.results.BENCH_MAX_RUNS` times each; the figure is
the median. ``bench_runs`` N runs exactly N times each instead.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

from .results import BENCH_MAX_RUNS, BENCH_MIN_RUNS, ValidationResult

if TYPE_CHECKING:
    from .compare import Validator


def benchmark(v: Validator, res: ValidationResult) -> None:
    """Median latency of the original and of the last compared model on the first trial's inputs, into `res`
    (`latency_ms_*`, `bench_*`, ``timings["bench"]``). Does nothing unless the proof passed; a failure here is a
    warning, never a validation failure."""
    opts = v.options
    if not opts.bench_enabled or not res.passed or v._last_src is None or not v._feeds:
        return
    forced = opts.bench_runs
    budget = None if forced is not None else float(opts.bench_time)
    res.bench_level, res.bench_threads, res.bench_budget = opts.bench_level, opts.threads, budget
    proof_sessions = (res.session_seconds_original or 0.0) + (res.session_seconds_optimized or 0.0)
    if budget is not None and proof_sessions > budget:
        # The two sessions of the benchmark would cost about as much again as the proof's: far over budget.
        res.bench_note = (f"not measured: the proof's sessions took {proof_sessions:.1f} s, more than the "
                          f"--bench-time budget of {budget:g} s; --bench-runs N measures anyway")
        return
    t0 = time.perf_counter()
    threads = f"{opts.threads} thread{'s' if opts.threads != 1 else ''}"
    feeds = v._feeds[0]
    ta: list[float] = []
    tb: list[float] = []
    try:
        v._step(f"latency: creating the sessions ({opts.bench_level} optimizations, {threads})")
        t = time.perf_counter()
        a = v._session(v.original, level=opts.bench_level, threads=opts.threads)
        res.bench_session_seconds_original = time.perf_counter() - t
        t = time.perf_counter()
        b = v._session(v._last_src, level=opts.bench_level, threads=opts.threads)
        res.bench_session_seconds_optimized = time.perf_counter() - t
        v._step("latency: warm-up run of each model")
        v.run(a, feeds)
        v.run(b, feeds)
        t_start = time.perf_counter()
        while True:
            n = len(ta)
            if forced is not None:
                if n >= forced:
                    break
            elif n >= BENCH_MAX_RUNS or (n >= BENCH_MIN_RUNS and time.perf_counter() - t_start >= (budget or 0.0)):
                break
            goal = f"{forced}" if forced is not None else f"{budget:g} s budget"
            v._step(f"latency: {threads}, run {n + 1} of each model ({goal})")
            t = time.perf_counter()
            v.run(a, feeds)
            ta.append(time.perf_counter() - t)
            t = time.perf_counter()
            v.run(b, feeds)
            tb.append(time.perf_counter() - t)
    except Exception as e:  # noqa: BLE001 - both ran in the proof; a failure now is worth a warning only
        res.warnings.append(v._ort_error(e, "benchmark failed"))
        res.bench_note = "not measured: the benchmark failed"
        ta = tb = []
    finally:
        a = b = None  # noqa: F841 - the benchmark's sessions are not kept
        dt = time.perf_counter() - t0
        v.seconds += dt
        res.bench_seconds = dt
        res.timings["bench"] = dt
        res.timings["total"] = res.timings.get("total", 0.0) + dt
    if ta and tb:
        res.latency_ms_original = statistics.median(ta) * 1e3
        res.latency_ms_optimized = statistics.median(tb) * 1e3
        res.bench_runs = len(ta)
