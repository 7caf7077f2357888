"""Latency of the original and the optimized model in onnxruntime, measured interleaved on the same inputs.

The benchmark answers another question than the proof, so it has its own pair of sessions: at the optimization
level a user runs with (``all`` by default) and a fixed intra-op thread count (1 by default, for steadier figures
on a busy machine), created only once the proof has passed. It runs on one input: every free symbolic dim bound to
1 (batch 1), falling back to the first trial's inputs when the original rejects those.

It is bounded by a time budget: the two models run alternately (so that drift in machine load hits both alike)
until the budget is spent, at least :data:`~.results.BENCH_MIN_RUNS` and at most :data:`~.results.BENCH_MAX_RUNS`
times each. The first run of each is a warm-up (onnxruntime allocates on it): it is left out of the median
whenever more than the minimum ran, and with only the minimum it is the slowest of three, which the median
ignores. ``bench_runs`` N instead runs one warm-up and exactly N timed runs each.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

from .results import BENCH_MAX_RUNS, BENCH_MIN_RUNS, ValidationResult

if TYPE_CHECKING:
    from .compare import Validator


def benchmark(v: Validator, res: ValidationResult) -> None:
    """Median latency of the original and of the last compared model, into `res` (`latency_ms_*`, `bench_*`,
    ``timings["bench"]``). Does nothing unless the proof passed; a failure here is a warning, never a validation
    failure."""
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
        feeds, first = _first_accepted(v, a, res)
        if forced is not None:  # an exact count: one untimed warm-up run each first
            v._step("latency: warm-up run of each model")
            v.run(b, feeds)
        else:
            ta.append(first)  # the original's first run: its warm-up, timed
        t_start = time.perf_counter()
        while True:
            n = len(tb)
            if forced is not None:
                if n >= forced:
                    break
            elif n >= BENCH_MAX_RUNS + 1 or (n >= BENCH_MIN_RUNS and time.perf_counter() - t_start >= budget):
                break
            goal = f"{forced} runs" if forced is not None else f"{budget:g} s budget"
            v._step(f"latency: {threads}, run {n + 1} of each model ({goal})")
            if n > 0 or forced is not None:
                t = time.perf_counter()
                v.run(a, feeds)
                ta.append(time.perf_counter() - t)
            t = time.perf_counter()
            v.run(b, feeds)
            tb.append(time.perf_counter() - t)
    except Exception as e:  # noqa: BLE001 - both ran in the proof; a failure now is worth a warning only
        res.warnings.append(v._ort_error(e, "benchmark failed"))
        res.bench_note = "not measured: the benchmark failed"
        ta, tb = [], []
    finally:
        a = b = None  # noqa: F841 - the benchmark's sessions are not kept
        dt = time.perf_counter() - t0
        v.seconds += dt
        res.bench_seconds = dt
        res.timings["bench"] = dt
        res.timings["total"] = res.timings.get("total", 0.0) + dt
    if forced is None and len(ta) > BENCH_MIN_RUNS:
        ta, tb = ta[1:], tb[1:]  # the warm-ups, now that there are enough runs without them
    if ta and tb:
        res.latency_ms_original = statistics.median(ta) * 1e3
        res.latency_ms_optimized = statistics.median(tb) * 1e3
        res.bench_runs = len(ta)


def _first_accepted(v: Validator, sess: Any, res: ValidationResult) -> tuple[dict[str, Any], float]:
    """The first candidate input (:meth:`Validator.bench_feeds`) the original accepts, and the seconds of that
    first run of the original (its warm-up); the dims used go to ``res.bench_dims``."""
    candidates = v.bench_feeds()
    for i, (dims, feeds) in enumerate(candidates):
        v._step("latency: first run of the original" + (f" ({_fmt(dims)})" if dims else ""))
        t = time.perf_counter()
        try:
            v.run(sess, feeds)
        except Exception:
            if i == len(candidates) - 1:
                raise
            continue  # e.g. the model rejects size 1: the first trial's inputs ran in the proof
        res.bench_dims = dims
        return feeds, time.perf_counter() - t
    raise AssertionError("no benchmark inputs")  # pragma: no cover - bench_feeds always has the first trial's


def _fmt(dims: dict[str, int]) -> str:
    return ", ".join(f"{k}={x}" for k, x in dims.items())
