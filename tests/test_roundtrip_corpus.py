"""Lossless round trip over the ONNX corpus: every model shipped in the onnx package's backend test data and every
case of the ONNX node test suite.

For each model: ``serde.loads`` then ``serde.serialize`` must give back a ModelProto equal, field by field, to the
original (a failure names the first differing field path), and the very same bytes when the original is in
protobuf's own field order. Then onnxruntime runs the original and the round-tripped
model on the case's inputs: the round trip must not change whether onnxruntime can run the model, and its outputs
must be bit-identical to the original's (and match the case's expected outputs within the case's tolerance
whenever the original does). Cases whose original onnxruntime cannot run are skipped, and the skip reason says so,
so that pytest's summary counts them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
import pytest
from google.protobuf.message import Message

from graphopt.ir import serde
from graphopt.testing import RANDOM_OPS as _RANDOM_OPS
from graphopt.testing import CorpusCase, corpus_cases, corpus_data_sets, corpus_model_bytes, real_inputs




# ---------------------------------------------------------------------------------------------------------------
# The corpus (shared with the pipeline corpus test: graphopt.testing)
# ---------------------------------------------------------------------------------------------------------------
Case = CorpusCase
CASES = corpus_cases()
_model_bytes = corpus_model_bytes
_feed_names = real_inputs


def _data_sets(case: Case, mp: onnx.ModelProto) -> Iterator[tuple[list[Any], list[Any]]]:
    yield from corpus_data_sets(case)


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------
def first_difference(a: Message, b: Message, path: str = "model") -> str | None:
    """The path of the first field where two protobuf messages differ (None when equal)."""
    if a == b:
        return None
    fa = {f.name: v for f, v in a.ListFields()}
    fb = {f.name: v for f, v in b.ListFields()}
    for f in a.DESCRIPTOR.fields:
        va, vb = fa.get(f.name), fb.get(f.name)
        if va == vb:
            continue
        where = f"{path}.{f.name}"
        if va is None or vb is None:
            return f"{where}: {'absent' if va is None else 'present'} before, " \
                   f"{'absent' if vb is None else 'present'} after"
        if f.is_repeated:
            if len(va) != len(vb):
                return f"{where}: {len(va)} entries before, {len(vb)} after"
            for i, (x, y) in enumerate(zip(va, vb)):
                if x != y:
                    if f.message_type is not None:
                        return first_difference(x, y, f"{where}[{i}]")
                    return f"{where}[{i}]: {x!r:.80} before, {y!r:.80} after"
        elif f.message_type is not None:
            return first_difference(va, vb, where)
        return f"{where}: {va!r:.80} before, {vb!r:.80} after"
    return f"{path}: unknown fields differ"


def _uses_random_ops(mp: onnx.ModelProto) -> bool:
    def walk(g: onnx.GraphProto) -> bool:
        for n in g.node:
            if n.op_type in _RANDOM_OPS:
                return True
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH and walk(a.g):
                    return True
                if a.type == onnx.AttributeProto.GRAPHS and any(walk(x) for x in a.graphs):
                    return True
        return False

    return walk(mp.graph) or any(n.op_type in _RANDOM_OPS for f in mp.functions for n in f.node)


def _run_ort(data: bytes, mp: onnx.ModelProto, sets: list[tuple[list[Any], list[Any]]]) -> list[list[Any]] | str:
    """Outputs of one onnxruntime session per data set, or the error text when onnxruntime cannot run the model."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 4
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    try:
        sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        names = [i.name for i in _feed_names(mp)]
        results = []
        for ins, _ in sets:
            # numpy scalars (0-d inputs of some node cases) must be arrays for onnxruntime
            feeds = {n: (np.asarray(x) if isinstance(x, np.generic) else x) for n, x in zip(names, ins)}
            results.append(sess.run(None, feeds))
        return results
    except Exception as e:  # noqa: BLE001 - any onnxruntime refusal means "cannot run"
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]


def _same(x: Any, y: Any, exact: bool) -> bool:
    """Bit-identical (NaNs equal) when `exact`, else same type, dtype and shape."""
    if x is None or y is None:
        return x is None and y is None
    if isinstance(x, list) or isinstance(y, list):
        return isinstance(x, list) and isinstance(y, list) and len(x) == len(y) and all(
            _same(a, b, exact) for a, b in zip(x, y))
    if isinstance(x, dict) or isinstance(y, dict):
        return x == y if exact else type(x) is type(y)
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype != y.dtype or x.shape != y.shape:
        return False
    if not exact:
        return True
    if x.dtype.kind in "fc":
        bx = np.ascontiguousarray(x).reshape(-1).view(np.uint8)
        by = np.ascontiguousarray(y).reshape(-1).view(np.uint8)
        return bool(np.array_equal(bx, by) or np.array_equal(x, y, equal_nan=True))
    return bool(np.array_equal(x, y))


def _close(expected: Any, got: Any, rtol: float, atol: float) -> bool:
    if expected is None or got is None:
        return expected is None and got is None
    if isinstance(expected, list):
        return isinstance(got, list) and len(expected) == len(got) and all(
            _close(a, b, rtol, atol) for a, b in zip(expected, got))
    e, g = np.asarray(expected), np.asarray(got)
    if e.shape != g.shape:
        return False
    if e.dtype.kind in "fc" and g.dtype.kind in "fc":
        return bool(np.allclose(g.astype(np.float64), e.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True))
    if e.dtype.kind in "OUS" or g.dtype.kind in "OUS":
        return [str(v) for v in e.flat] == [str(v) for v in g.flat]
    return bool(np.array_equal(e, g))


# ---------------------------------------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_roundtrip(case: Case) -> None:
    data = _model_bytes(case)
    base_dir = os.path.dirname(case.path) if case.path else None
    model = serde.loads(data, base_dir=base_dir)
    out = serde.serialize(model)

    before = onnx.ModelProto()
    before.ParseFromString(data)
    after = onnx.ModelProto()
    after.ParseFromString(out)
    if before != after:
        pytest.fail(f"the round trip changed the model: {first_difference(before, after)}")
    if before.SerializeToString() == data:
        # a file in protobuf's own field order comes back byte for byte (what -O0 promises)
        assert out == data, "the round trip wrote the same model with other bytes"

    sets = list(_data_sets(case, before))
    orig = _run_ort(data, before, sets)
    rt = _run_ort(out, after, sets)
    if isinstance(orig, str):
        assert isinstance(rt, str), f"onnxruntime runs the round-tripped model but not the original ({orig})"
        pytest.skip(f"onnxruntime cannot run the original: {orig}")
    assert not isinstance(rt, str), f"onnxruntime runs the original but not the round-tripped model: {rt}"

    exact = not _uses_random_ops(before)
    for k, ((_, expected), ro, rr) in enumerate(zip(sets, orig, rt)):
        assert len(ro) == len(rr)
        for i, (x, y) in enumerate(zip(ro, rr)):
            if exact and i < len(expected) and _close(expected[i], x, case.rtol, case.atol):
                assert _close(expected[i], y, case.rtol, case.atol), \
                    f"data set {k}, output {i}: the round-tripped model misses the expected outputs"
            assert _same(x, y, exact), f"data set {k}, output {i}: round-tripped outputs differ from the original's"
