"""The whole -O2 pipeline over the ONNX corpus: every model under onnx's backend test data and every case of the
node test suite. Each optimized model must pass the checker whenever the original does, load in onnxruntime
whenever the original does, and compute outputs matching the case's reference outputs (or, where onnxruntime's
own result for the original deviates from the reference, matching onnxruntime's result for the original).

A pass failure is a test failure (the pipeline runs with strict=True).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest

import graphopt
from graphopt.ir import serde
from graphopt.testing import (
    RANDOM_OPS,
    CorpusCase,
    corpus_cases,
    corpus_data_sets,
    corpus_model_bytes,
    random_inputs,
    real_inputs,
    session,
)

CASES = corpus_cases()


def _close(a: Any, b: Any, rtol: float, atol: float) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], rtol, atol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, rtol, atol) for x, y in zip(a, b))
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        return bool(np.allclose(a.astype(np.complex128 if a.dtype.kind == "c" else np.float64),
                                b.astype(np.complex128 if b.dtype.kind == "c" else np.float64),
                                rtol=rtol, atol=atol, equal_nan=True))
    return bool(np.array_equal(a, b))


def _same_kind(a: Any, b: Any) -> bool:
    """For random ops: same structure, dtypes and shapes."""
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same_kind(x, y) for x, y in zip(a, b))
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype


def _run(data: bytes, feeds: dict[str, Any]) -> list[Any] | None:
    try:
        s = session(data)
        names = [i.name for i in s.get_inputs()]
        return s.run(None, {k: v for k, v in feeds.items() if k in names})
    except Exception:  # noqa: BLE001 - onnxruntime cannot run this model (the original decides what is expected)
        return None


def _ops(mp: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in mp.graph.node}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_pipeline_keeps_outputs(case: CorpusCase) -> None:
    original = corpus_model_bytes(case)
    mp = onnx.ModelProto()
    mp.ParseFromString(original)
    model = serde.loads(original)
    result = graphopt.run(model, preset="O2", strict=True)
    assert not result.record.failed
    optimized = serde.dumps(model)
    opt_mp = onnx.ModelProto()
    opt_mp.ParseFromString(optimized)
    # the interface never changes
    assert [o.name for o in opt_mp.graph.output] == [o.name for o in mp.graph.output]
    assert [i.name for i in real_inputs(opt_mp)] == [i.name for i in real_inputs(mp)]
    try:
        onnx.checker.check_model(mp)
        original_ok = True
    except Exception:  # noqa: BLE001
        original_ok = False
    if original_ok:
        onnx.checker.check_model(opt_mp)
    random_model = bool(_ops(mp) & RANDOM_OPS)
    in_names = [i.name for i in real_inputs(mp)]
    data_sets = corpus_data_sets(case)
    if not data_sets:
        feeds = random_inputs(mp, seed=0)
        data_sets = [([feeds[n] for n in in_names], None)]  # type: ignore[list-item]
    ran = 0
    for inputs, expected in data_sets:
        feeds = dict(zip(in_names, inputs))
        got_orig = _run(original, feeds)
        if got_orig is None:
            continue
        got_opt = _run(optimized, feeds)
        assert got_opt is not None, "onnxruntime runs the original but not the optimized model"
        ran += 1
        assert len(got_opt) == len(got_orig)
        for i, (o, x) in enumerate(zip(got_orig, got_opt)):
            name = mp.graph.output[i].name
            if random_model:
                assert _same_kind(o, x), name
                continue
            ref = expected[i] if expected is not None and i < len(expected) else None
            if ref is not None and _close(o, ref, case.rtol, case.atol):
                assert _close(x, ref, case.rtol * 10, max(case.atol * 10, 1e-6)), \
                    f"output {name!r} no longer matches the reference"
            else:
                assert _close(x, o, 1e-4, 1e-6), f"output {name!r} differs from the original's"
    if ran == 0:
        pytest.skip("onnxruntime cannot run the original model")
