"""Validation inputs: dim bindings per trial, deterministic random feeds, fallbacks for index inputs, .npz inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from graphopt.errors import UsageError
from graphopt.validate import (
    load_npz,
    random_feeds,
    symbols_of,
    trial_bindings,
)

from ._helpers import TWO_OUT, validate


def test_trial_bindings_vary_sizes_and_keep_given_dims() -> None:
    assert trial_bindings(["A", "B"], {}, 3) == [{"A": 2, "B": 2}, {"A": 3, "B": 4}, {"A": 4, "B": 4}]
    assert trial_bindings(["A", "B"], {"B": 7}, 2) == [{"B": 7, "A": 2}, {"B": 7, "A": 3}]


def test_dim_binding_applies_to_every_trial_and_unknown_names_warn() -> None:
    _, res = validate(TWO_OUT, TWO_OUT, dims={"N": 7, "batch": 2}, trials=2)
    assert res.passed
    assert [t.dims for t in res.trials] == [{"N": 7}, {"N": 7}]
    assert res.outputs[0].shape == [7, 3]
    assert any("--dim batch" in w for w in res.warnings)


def test_unnamed_dynamic_dims_get_names_and_sizes() -> None:
    from graphopt.validate import InputSpec

    specs = [InputSpec("x", "tensor(float)", (None, "T", 3))]
    assert symbols_of(specs) == ["x:0", "T"]
    feeds = random_feeds(specs, {"x:0": 5, "T": 2}, 0)
    assert feeds["x"].shape == (5, 2, 3)


def test_symbols_that_must_agree_fall_back_to_equal_sizes() -> None:
    # A and B name the same dim in practice: Add refuses A=3, B=4 (trial 2 binds distinct sizes)
    text = "g (float[A] a, float[B] b) => (float[A] y) {\n y = Add(a, b)\n}"
    _, res = validate(text, text, trials=2)
    assert res.passed
    assert res.trials[1].dims == {"A": 3, "B": 3}
    assert "equal sizes" in (res.trials[1].note or "")


def test_random_inputs_are_deterministic_per_seed_and_typed() -> None:
    from graphopt.validate import InputSpec

    specs = [InputSpec("f", "tensor(float)", ("N", 4)), InputSpec("i", "tensor(int64)", ("N",)),
             InputSpec("b", "tensor(bool)", (3,)), InputSpec("h", "tensor(float16)", (2,)),
             InputSpec("s", "tensor(string)", (2,))]
    a = random_feeds(specs, {"N": 5}, seed=3)
    b = random_feeds(specs, {"N": 5}, seed=3)
    c = random_feeds(specs, {"N": 5}, seed=4)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["f"], c["f"])
    assert a["f"].dtype == np.float32 and a["f"].shape == (5, 4) and np.all(np.abs(a["f"]) <= 1)
    assert a["i"].dtype == np.int64 and a["i"].min() >= 0 and a["i"].max() < 4
    assert a["b"].dtype == np.bool_ and a["h"].dtype == np.float16 and a["s"].dtype == object
    with pytest.raises(UsageError, match="cannot draw"):
        random_feeds([InputSpec("q", "seq(tensor(float))", None)], {}, 0)


def test_integer_index_inputs_fall_back_to_a_smaller_range() -> None:
    # indices into a 2-row table: [0, 4) is out of range for onnxruntime, [0, 2) is fine
    text = "g (int64[K] i) => (float[K,3] y) {\n y = Gather(table, i)\n}"
    table = {"table": np.arange(6, dtype=np.float32).reshape(2, 3)}
    _, res = validate(text, text, inits=table, dims={"K": 16})
    assert res.passed
    assert all("[0, 2)" in (t.note or "") for t in res.trials)


def test_inputs_the_original_rejects_skip_validation_with_a_hint() -> None:
    text = "g (float[N] x, int64[2] shape) => (float[A,B] y) {\n y = Reshape(x, shape)\n}"
    _, res = validate(text, text, dims={"N": 7})
    assert res.skipped
    assert "fails on random inputs" in (res.reason or "") and "--inputs" in (res.reason or "")


def test_npz_inputs_are_used_as_one_trial(tmp_path: Path) -> None:
    text = "g (float[N] x, int64[2] shape) => (float[A,B] y) {\n y = Reshape(x, shape)\n}"
    p = tmp_path / "in.npz"
    np.savez(p, x=np.arange(6, dtype=np.float64), shape=np.array([2, 3], np.int64))  # float64 -> float32: cast
    _, res = validate(text, text, inputs=str(p))
    assert res.passed and len(res.trials) == 1 and res.trials[0].seed is None
    assert res.outputs[0].shape == [2, 3] and res.input_source == f"npz:{p}"
    bad = text.replace("y = Reshape(x, shape)", "r = Reshape(x, shape)\n y = Neg(r)")
    _, res = validate(text, bad, inputs=str(p))
    assert res.failed


def test_npz_with_wrong_names_or_types_is_a_usage_error(tmp_path: Path) -> None:
    from graphopt.validate import InputSpec

    specs = [InputSpec("x", "tensor(int64)", ("N",))]
    np.savez(tmp_path / "a.npz", y=np.zeros(3, np.int64))
    np.savez(tmp_path / "b.npz", x=np.zeros(3, np.float32))
    np.savez(tmp_path / "c.npz", x=np.zeros(3, np.int64), extra=np.zeros(1))
    with pytest.raises(UsageError, match="lacks input 'x'"):
        load_npz(str(tmp_path / "a.npz"), specs)
    with pytest.raises(UsageError, match="float32.*int64"):
        load_npz(str(tmp_path / "b.npz"), specs)
    with pytest.raises(UsageError, match="'extra'"):
        load_npz(str(tmp_path / "c.npz"), specs)
    with pytest.raises(UsageError, match="no such file"):
        load_npz(str(tmp_path / "none.npz"), specs)
