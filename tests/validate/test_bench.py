"""The interleaved latency benchmark of the original and the optimized model."""

from __future__ import annotations


import pytest

from graphopt.validate import (
    ValidateOptions,
    Validator,
)

from ._helpers import TWO_OUT, src


def test_benchmark_measures_both_models_and_can_be_turned_off() -> None:
    v = Validator(src(TWO_OUT), ValidateOptions(bench_runs=5, threads=2, ort_level="basic"))
    res = v.compare(src(TWO_OUT))
    v.benchmark(res)
    d = res.to_dict()
    assert res.bench_runs == 5 and res.latency_ms_original and res.latency_ms_optimized
    assert d["latency_ms"]["speedup"] == pytest.approx(res.latency_ms_original / res.latency_ms_optimized)
    assert d["onnxruntime"] == {"version": d["onnxruntime"]["version"], "optimization_level": "basic",
                                "threads": 2}
    assert res.timings["bench"] > 0
    assert v.seconds == pytest.approx(res.timings["total"], abs=1e-3)  # everything the validator did, counted
    v0 = Validator(src(TWO_OUT), ValidateOptions(bench_runs=0))
    r0 = v0.compare(src(TWO_OUT))
    v0.benchmark(r0)
    assert r0.latency_ms_original is None and r0.to_dict()["latency_ms"]["speedup"] is None
