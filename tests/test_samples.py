"""The samples, end to end: optimizing each is deterministic (byte-identical twice), keeps the outputs, and matches
its golden text snapshot in tests/golden/ (regenerate with `pytest tests/test_samples.py --update-golden`)."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnx.printer
import pytest

import graphopt
from graphopt.ir import serde
from graphopt.testing import assert_same_outputs, assert_valid, op_types

ROOT = Path(__file__).resolve().parents[1]
# the samples make_samples.py writes; not what a user's run leaves beside them (the README's first command writes
# samples/transformer.opt.onnx before the tests run)
SAMPLES = sorted(p for p in (ROOT / "samples").glob("*.onnx") if not p.name.endswith(".opt.onnx"))
GOLDEN = ROOT / "tests" / "golden"
BINDINGS = {"cnn.onnx": [{"batch": 1}, {"batch": 3}], "transformer.onnx": [{"batch": 1, "seq": 7},
                                                                          {"batch": 2, "seq": 3}],
            "if_model.onnx": [{"n": 1}, {"n": 5}]}


def _optimize(path: Path) -> bytes:
    model = serde.load(path)
    res = graphopt.run(model, preset="O2", strict=True)
    assert not res.record.failed
    return serde.dumps(model)


def test_samples_exist_and_are_small() -> None:
    names = {p.name for p in SAMPLES}
    assert {"cnn.onnx", "transformer.onnx", "if_model.onnx"} <= names
    for p in SAMPLES:
        assert p.stat().st_size < 1 << 20


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_sample_optimizes_deterministically(path: Path) -> None:
    a = _optimize(path)
    b = _optimize(path)
    assert a == b, "optimizing the same file twice gave different bytes"


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_sample_keeps_outputs_and_shrinks(path: Path) -> None:
    original = path.read_bytes()
    optimized = _optimize(path)
    assert_valid(optimized)
    assert_same_outputs(original, optimized, bindings=BINDINGS.get(path.name))
    assert len(op_types(optimized)) < len(op_types(original))  # subgraph nodes counted too


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_sample_golden(path: Path, update_golden: bool) -> None:
    text = onnx.printer.to_text(onnx.load_from_string(_optimize(path)))
    golden = GOLDEN / (path.stem + ".txt")
    if update_golden or not golden.exists():
        golden.write_text(text)
        if not update_golden:
            pytest.fail(f"{golden} did not exist; written now (rerun to compare)")
        return
    assert text == golden.read_text(), (
        f"{path.name}: the optimized model differs from {golden.name}; if the change is intended, rerun with "
        f"--update-golden and review the diff")
