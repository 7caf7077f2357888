"""The fuzzer's findings stay fixed, and the fuzzer itself works (benchmarks/fuzz.py).

- Every minimized model benchmarks/fuzz.py saved under tests/fuzz_regressions/ passes the oracle
  (:func:`graphopt.testing.check_pipeline`).
- The generator: seeded cases are reproducible, nearly all valid, and pass the oracle.
- The oracle catches a broken pass, and the minimizer shrinks the case while the same class of problem reproduces.
"""

from __future__ import annotations

import glob
import os
import sys
import time
from typing import Any

import onnx
import pytest

from graphopt.testing import check_pipeline, from_text, snapshot

HERE = os.path.dirname(os.path.abspath(__file__))
REGRESSIONS = sorted(glob.glob(os.path.join(HERE, "fuzz_regressions", "*.onnx")))


def _fuzz() -> Any:
    """benchmarks/fuzz.py as the module ``fuzz`` (importable by name, as its worker process needs)."""
    bench = os.path.normpath(os.path.join(HERE, "..", "benchmarks"))
    if bench not in sys.path:
        sys.path.insert(0, bench)
    import fuzz

    assert os.path.dirname(os.path.abspath(fuzz.__file__)) == bench
    return fuzz


@pytest.mark.parametrize("path", REGRESSIONS, ids=[os.path.basename(p)[: -len(".onnx")] for p in REGRESSIONS])
def test_fuzz_regression(path: str) -> None:
    with open(path, "rb") as f:
        data = f.read()
    assert len(data) < 16 * 1024, "a saved finding should be minimized to a few KB"
    assert os.path.exists(path[: -len(".onnx")] + ".txt"), "each finding keeps its problem text beside it"
    assert check_pipeline(data) == []


def test_the_generator_is_reproducible() -> None:
    fuzz = _fuzz()
    for i in range(5):
        a, b = fuzz.generate(7, i), fuzz.generate(7, i)
        assert a.model.SerializeToString() == b.model.SerializeToString()
    assert fuzz.generate(7, 0).model.SerializeToString() != fuzz.generate(8, 0).model.SerializeToString()


def test_generated_cases_are_valid_and_pass_the_oracle() -> None:
    fuzz = _fuzz()
    t0 = time.monotonic()
    discarded, checked, features, nodes = [], 0, set(), 0
    for i in range(30):
        case = fuzz.generate(20261207, i)
        data = case.model.SerializeToString()
        why = fuzz.invalid_reason(data)
        if why is not None:
            discarded.append(f"{case.id}: {why}")
            continue
        checked += 1
        features |= set(case.features)
        nodes += len(case.model.graph.node)
        assert check_pipeline(data) == [], f"case {case.id} ({case.features})"
    assert len(discarded) <= 3, discarded  # the generator makes valid models
    assert checked >= 27 and nodes >= 200
    assert len(features) >= 20, sorted(features)  # and covers its menu
    assert time.monotonic() - t0 < 40


def test_the_oracle_passes_a_correct_model_and_catches_a_wrong_result(monkeypatch: pytest.MonkeyPatch) -> None:
    data = snapshot(from_text(BROKEN_TEXT))
    assert check_pipeline(data) == []
    _break_sigmoid(monkeypatch)
    problems = check_pipeline(data)
    assert problems and problems[0].startswith("[mismatch] output 'y'"), problems


BROKEN_TEXT = """
<ir_version: 8, opset_import: ["" : 18]>
g (float[N, 4] x, float[N, 4] x2) => (float[N, 4] y, float[N, 4] z) <float[4] w = {1.0, 2.0, 3.0, 4.0}> {
  a = Add(x, w)
  b = Relu(a)
  c = Mul(b, x2)
  d = Tanh(c)
  e = Sigmoid(d)
  f = Abs(e)
  y = Sub(f, w)
  g1 = Neg(x2)
  z = Exp(g1)
}
"""


def _break_sigmoid(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test-only bug: eliminate-noops also drops every Sigmoid (its readers read its input instead)."""
    from graphopt.passes import noop

    original = noop.EliminateNoops.run

    def run(self: Any, model: Any, ctx: Any) -> Any:
        res = original(self, model, ctx)
        dropped = 0
        for n in list(model.graph):
            if n.op_type == "Sigmoid" and not n.outputs[0].is_graph_output():
                n.outputs[0].replace_all_uses_with(n.inputs[0])
                model.graph.remove([n])
                dropped += 1
        if dropped:
            stats = dict(res.stats)
            stats["sigmoid"] = dropped
            return type(res)(True, stats)
        return res

    monkeypatch.setattr(noop.EliminateNoops, "run", run)


def test_the_minimizer_shrinks_a_case_the_broken_pass_gets_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    fuzz = _fuzz()
    _break_sigmoid(monkeypatch)
    model = onnx.load_from_string(snapshot(from_text(BROKEN_TEXT)))
    problems = check_pipeline(model.SerializeToString())
    assert problems and fuzz.problem_class(problems[0]) == "mismatch"
    small, sp = fuzz.minimize(model, check_pipeline, problems[0], valid=fuzz.invalid_reason, budget_s=60)
    ops = [n.op_type for n in small.graph.node]
    assert "Sigmoid" in ops and len(ops) <= 2, ops  # the culprit and at most one neighbour stay
    assert len(small.graph.initializer) == 0 and len(small.graph.output) == 1
    assert fuzz.problem_class(sp[0]) == "mismatch"
    assert fuzz.invalid_reason(small.SerializeToString()) is None
    monkeypatch.undo()
    assert check_pipeline(small.SerializeToString()) == []  # the problem was the broken pass, not the model


def test_the_minimizer_keeps_the_class_of_problem() -> None:
    """With a fake oracle: Softmax nodes make a "[pipeline]" problem, Relu nodes a "[mismatch]" one; shrinking a
    pipeline finding must keep a Softmax and may drop every Relu."""
    fuzz = _fuzz()
    text = """
    <ir_version: 8, opset_import: ["" : 18]>
    g (float[N, 4] x) => (float[N, 4] y, float[N, 4] r) {
      a = Relu(x)
      b = Softmax<axis=-1>(a)
      c = Tanh(b)
      y = Relu(c)
      r = Relu(x)
    }
    """
    model = onnx.load_from_string(snapshot(from_text(text)))

    def oracle(data: bytes) -> list[str]:
        m = onnx.ModelProto()
        m.ParseFromString(data)
        ops = {n.op_type for n in m.graph.node}
        return ([f"[pipeline] PassError: pass 'fuse' failed: {o}" for o in ops & {"Softmax"}]
                + [f"[mismatch] {o}" for o in ops & {"Relu"}])

    small, sp = fuzz.minimize(model, oracle, oracle(model.SerializeToString())[0], valid=fuzz.invalid_reason)
    assert [n.op_type for n in small.graph.node] == ["Softmax"]
    assert sp == ["[pipeline] PassError: pass 'fuse' failed: Softmax"]
    assert fuzz.slug(sp[0]) == "pipeline-fuse-passerror"
    # a mismatch finding keeps a Relu instead
    small, sp = fuzz.minimize(model, oracle, "[mismatch] Relu", valid=fuzz.invalid_reason)
    assert [n.op_type for n in small.graph.node] == ["Relu"]


def test_a_crash_in_the_worker_is_a_finding_and_the_worker_restarts() -> None:
    fuzz = _fuzz()
    box = fuzz.Sandbox(timeout=60)
    try:
        ok = snapshot(from_text(BROKEN_TEXT))
        assert box.check(ok) == []
        box.proc.kill()  # as if onnxruntime had crashed the process
        box.proc.join(5)
        assert box.check(ok) == []  # a dead worker is restarted
        crash = box._call("crash", b"")
        assert crash == ["[crash] the process checking the model died (exit code 70)"], crash
        assert fuzz.problem_class(crash[0]) == "crash"
        assert box.check(ok) == []
        garbage = box.check(b"not a model")  # the oracle itself raising is reported, not fatal
        assert garbage and garbage[0].startswith("[oracle]"), garbage
    finally:
        box.close()


F16_CHAIN = """
<ir_version: 8, opset_import: ["" : 17]>
g (float16[2, 2, 8] x) => (float16[2, 2, 8] y) {
  a = Add(x, k)
  u = Unsqueeze(a, two)
  s = Squeeze(u, two)
  m = ReduceMean <axes = [-2]> (s)
  y = Sub(s, m)
}
"""


def test_reference_second_opinion_on_float16_mismatches() -> None:
    # onnxruntime's float16 precision depends on where a chain has no-ops; onnx's reference evaluator rounds per
    # op, so it decides whether a float16 difference is the rewrite's (a different result) or onnxruntime's
    import numpy as np

    from graphopt.testing import _reference_agrees

    inits = {"k": np.arange(8, dtype=np.float16), "two": np.array([2], np.int64)}
    original = snapshot(from_text(F16_CHAIN, inits))
    same = snapshot(from_text(F16_CHAIN.replace("s = Squeeze(u, two)", "s = Identity(a)"), inits))
    other = snapshot(from_text(F16_CHAIN.replace("y = Sub(s, m)", "y = Add(s, m)"), inits))
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 2, 8)).astype(np.float16)}
    assert _reference_agrees(original, same, feeds, ["y"])
    assert not _reference_agrees(original, other, feeds, ["y"])
