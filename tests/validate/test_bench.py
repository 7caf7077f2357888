"""The interleaved latency benchmark of the original and the optimized model: its own sessions (level and threads
apart from the proof's), a time budget with a floor and a ceiling on runs, or an exact run count."""

from __future__ import annotations

import numpy as np
import pytest

from graphopt.validate import (
    ValidateOptions,
    Validator,
)
from graphopt.validate.results import BENCH_MAX_RUNS, BENCH_MIN_RUNS

from ._helpers import TWO_OUT, src


def _bench(**opts: object):
    v = Validator(src(TWO_OUT), ValidateOptions(**opts))  # type: ignore[arg-type]
    res = v.compare(src(TWO_OUT))
    v.benchmark(res)
    return v, res


def test_exact_run_count_with_its_own_level_and_threads() -> None:
    v = Validator(src(TWO_OUT), ValidateOptions(bench_runs=5, threads=2, ort_level="basic", bench_level="extended",
                                                check_threads=3))
    res = v.compare(src(TWO_OUT))
    seconds, total = v.seconds, res.timings["total"]
    v.benchmark(res)
    d = res.to_dict()
    assert res.bench_runs == 5 and res.latency_ms_original and res.latency_ms_optimized
    lat = d["latency_ms"]
    assert lat["speedup"] == pytest.approx(res.latency_ms_original / res.latency_ms_optimized)
    # the proof ran at its level and thread count; the benchmark at its own
    assert d["onnxruntime"] == {"version": d["onnxruntime"]["version"], "optimization_level": "basic",
                                "threads": 3}
    assert (lat["optimization_level"], lat["threads"], lat["budget_seconds"], lat["note"]) == ("extended", 2, None,
                                                                                               None)
    assert lat["session_seconds"]["original"] > 0 and lat["session_seconds"]["optimized"] > 0
    assert v.sessions_created == 4  # two for the proof, two for the benchmark
    assert res.timings["bench"] == pytest.approx(lat["seconds"]) and res.timings["bench"] > 0
    # the benchmark is counted in everything the validator did, and in the result's total
    assert v.seconds - seconds == pytest.approx(res.timings["bench"])
    assert res.timings["total"] - total == pytest.approx(res.timings["bench"])


def test_a_budget_runs_fast_models_up_to_the_ceiling() -> None:
    _, res = _bench(bench_time=60.0)
    # a two-node model runs in microseconds: the ceiling stops it long before the budget
    assert res.bench_runs == BENCH_MAX_RUNS
    assert res.bench_budget == 60.0 and res.bench_seconds is not None and res.bench_seconds < 60.0


def test_a_budget_the_proof_sessions_already_exceed_skips_the_benchmark_and_says_why() -> None:
    _, res = _bench(bench_time=1e-6)
    # proof sessions took longer than 1 us: the benchmark is skipped, saying why
    assert res.bench_runs == 0 and res.latency_ms_original is None
    assert "--bench-time" in (res.bench_note or "") and "--bench-runs" in (res.bench_note or "")
    assert res.to_dict()["latency_ms"]["note"] == res.bench_note


def test_floor_of_runs_when_each_run_outlasts_the_budget() -> None:
    # a budget the proof's sessions fit in, but that one run pair already spends
    v = Validator(src(TWO_OUT), ValidateOptions(bench_time=1e-6))
    res = v.compare(src(TWO_OUT))
    res.session_seconds_original = res.session_seconds_optimized = 0.0  # pretend the proof was free
    v.benchmark(res)
    assert res.bench_runs == BENCH_MIN_RUNS and res.latency_ms_original is not None


@pytest.mark.parametrize("opts", [{"bench_runs": 0}, {"bench_time": 0.0}], ids=["runs-0", "time-0"])
def test_benchmark_can_be_turned_off(opts: dict) -> None:
    v, res = _bench(**opts)
    assert res.latency_ms_original is None and res.to_dict()["latency_ms"]["speedup"] is None
    assert res.bench_note is None and res.bench_seconds is None and v.sessions_created == 2


def test_no_benchmark_after_a_failed_proof() -> None:
    v = Validator(src(TWO_OUT), ValidateOptions(bench_runs=3))
    res = v.compare(src(TWO_OUT.replace("Relu", "Neg")))
    v.benchmark(res)
    assert res.failed and res.latency_ms_original is None and v.sessions_created == 2


def test_latency_on_one_input_or_the_first_trials_when_the_model_rejects_it() -> None:
    _, res = _bench(bench_runs=2)
    assert res.bench_dims == {"N": 1} and res.to_dict()["latency_ms"]["dims"] == {"N": 1}
    _, res = _bench(bench_runs=2, dims={"N": 5})
    assert res.bench_dims == {"N": 5}  # a bound dim stays as given
    # N = 1 cannot be split in two rows: the benchmark falls back to the first trial's input (N = 2)
    text = "g (float[N] x) => (float[2,M] y) {\n y = Reshape(x, shape)\n}"
    shape = {"shape": np.array([2, -1], np.int64)}
    v = Validator(src(text, shape), ValidateOptions(trials=1, bench_runs=2))
    res = v.compare(src(text, shape))
    v.benchmark(res)
    assert res.passed and res.bench_dims == {"N": 2} and res.bench_runs == 2 and not res.warnings


def test_proof_threads_are_the_idle_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    cores = os.cpu_count() or 1
    assert ValidateOptions(check_threads=3).proof_threads() == 3  # as asked
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    assert ValidateOptions().proof_threads() == 0  # idle: onnxruntime's default, one per core
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 3.0, 0.0, 0.0))
    assert ValidateOptions().proof_threads() == 1  # every core busy elsewhere: one thread
    if cores >= 4:
        monkeypatch.setattr(os, "getloadavg", lambda: (2.0, 0.0, 0.0))
        assert ValidateOptions().proof_threads() == cores - 1


def test_default_trials_follow_the_free_dims() -> None:
    o = ValidateOptions()
    assert [o.trial_count(n) for n in (0, 1, 2, 5)] == [1, 2, 3, 3]
    assert ValidateOptions(trials=5).trial_count(0) == 5
