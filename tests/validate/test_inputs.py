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


# ---------------------------------------------------------------------------------------------------------------
# Integer inputs that index a table: their range, from the graph
# ---------------------------------------------------------------------------------------------------------------
def _ranges(body: str, inits: dict[str, np.ndarray] | None = None, opsets: str = '"": 17') -> dict[str, int]:
    from graphopt.testing import from_text
    from graphopt.validate import index_ranges

    return index_ranges(from_text(f"<ir_version: 8, opset_import: [{opsets}]>\n" + body, inits))


def _table(rows: int, cols: int = 4) -> np.ndarray:
    return np.zeros((rows, cols), np.float32)


BERT_LIKE = """
g (int64[B,S] input_ids, int64[B,S] token_type_ids, int64[B,S] attention_mask) => (float[B,S,4] y) {
    w = Gather(words, input_ids)
    t = Gather(types, token_type_ids)
    s = Add(w, t)
    m = Cast<to = 1>(attention_mask)
    mu = Unsqueeze(m, axes)
    y = Mul(s, mu)
}
"""
BERT_INITS = {"words": _table(300), "types": _table(2), "axes": np.array([-1], np.int64)}


def test_embedding_ids_and_type_ids_get_their_tables_ranges() -> None:
    # the attention mask is cast to float: arithmetic, not an index, so it keeps the default draw
    assert _ranges(BERT_LIKE, BERT_INITS) == {"input_ids": 300, "token_type_ids": 2}


def test_ids_through_value_preserving_ops_and_the_smallest_table_wins() -> None:
    body = """
g (int64[N] ids) => (float[N,4] a, float[1,N,4] b, float[M,4] c) {
    i32 = Cast<to = 6>(ids)
    a = Gather(big, i32)
    u = Unsqueeze(ids, zero)
    b = Gather(small, u)
    cat = Concat<axis = 0>(ids, ids)
    c = Gather(big, cat)
}
"""
    inits = {"big": _table(50), "small": _table(7), "zero": np.array([0], np.int64)}
    assert _ranges(body, inits) == {"ids": 7}


def test_gather_axis_picks_the_dim_and_negative_axes_count_from_the_end() -> None:
    body = "g (int64[N] i, int64[N] j) => (float[4,N] y, float[4,N] z) {\n y = Gather<axis = 1>(t, i)\n" \
           " z = Gather<axis = -1>(t, j)\n}"
    assert _ranges(body, {"t": np.zeros((4, 9), np.float32)}) == {"i": 9, "j": 9}


@pytest.mark.parametrize("body, inits", [
    # arithmetic on the ids: an offset would make the bound wrong (keep it exact)
    ("g (int64[N] i) => (float[N,4] y) {\n j = Add(i, one)\n y = Gather(t, j)\n}",
     {"t": _table(10), "one": np.array(1, np.int64)}),
    # cast to float: from there on a number, not an index
    ("g (int64[N] i) => (float[N] y) {\n f = Cast<to = 1>(i)\n y = Relu(f)\n}", {}),
    # the table's rows are not static (a graph input)
    ("g (int64[N] i, float[V,4] t) => (float[N,4] y) {\n y = Gather(t, i)\n}", {}),
    # the ids are the data, not the indices
    ("g (int64[N] i) => (int64[2] y) {\n y = Gather(i, k)\n}", {"k": np.array([0, 1], np.int64)}),
    # a float input is never an index
    ("g (float[N] x) => (float[N] y) {\n y = Relu(x)\n}", {}),
], ids=["add-offset", "cast-to-float", "dynamic-table", "ids-as-data", "float-input"])
def test_no_range_where_the_graph_does_not_give_an_exact_one(body: str, inits: dict) -> None:
    assert _ranges(body, inits) == {}


def test_onehot_depth_and_gather_elements() -> None:
    body = """
g (int64[N] i, int64[N] j, int64[N] k, int64[N] d) => (float[N,5] y, float[N] z, float[N,M] w) {
    y = OneHot(i, depth, values)
    z = GatherElements(t, j)
    w = OneHot(k, d, values)
}
"""
    inits = {"depth": np.array(5, np.int64), "values": np.array([0, 1], np.float32),
             "t": np.zeros(6, np.float32)}
    # the depth of the last OneHot is an input: unknown
    assert _ranges(body, inits) == {"i": 5, "j": 6}


def test_ort_embed_layer_normalization_ranges() -> None:
    body = """
g (int32[B,S] ids, int32[B,S] seg) => (float[B,S,4] y, float[B] mask) {
    y, mask = com.microsoft.EmbedLayerNormalization(ids, seg, words, pos, types, gamma, beta)
}
"""
    inits = {"words": _table(120), "pos": _table(16), "types": _table(2), "gamma": np.ones(4, np.float32),
             "beta": np.zeros(4, np.float32)}
    assert _ranges(body, inits, opsets='"": 17, "com.microsoft": 1') == {"ids": 120, "seg": 2}


def test_bounded_inputs_are_drawn_from_the_whole_table_at_the_first_try() -> None:
    from graphopt.validate import InputSpec

    specs = [InputSpec("ids", "tensor(int64)", ("N",)), InputSpec("n", "tensor(int32)", ("N",)),
             InputSpec("u8", "tensor(uint8)", ("N",))]
    f = random_feeds(specs, {"N": 500}, 0, int_bounds={"ids": 300, "u8": 1000})
    assert f["ids"].min() >= 0 and f["ids"].max() < 300 and f["ids"].max() >= 250  # the whole table is used
    assert f["n"].max() < 4                                                        # no bound: the default range
    assert f["u8"].max() <= 255 and f["u8"].max() >= 200                           # clamped to the dtype
    g = random_feeds(specs, {"N": 500}, 0, int_high=2, int_bounds={"ids": 300}, bounded_high=2)
    assert g["ids"].max() < 2 and g["n"].max() < 2                                  # the fallback shrinks both


def test_validator_draws_table_ids_in_range_and_needs_no_fallback() -> None:
    from graphopt.validate import ValidateOptions, Validator

    from ._helpers import src

    text, inits = BERT_LIKE, BERT_INITS
    opts = ValidateOptions(trials=2, bench_runs=0, dims={"S": 16})  # 32+ type ids a trial: some are >= 2
    # without the ranges, type ids drawn in [0, 4) are out of range and the ladder falls back to [0, 2)
    plain = Validator(src(text, inits), opts)
    res = plain.compare(src(text, inits))
    assert res.passed and all("[0, 2)" in (t.note or "") for t in res.trials)
    ranged = Validator(src(text, inits), opts, int_bounds=_ranges(text, inits))
    res = ranged.compare(src(text, inits))
    assert res.passed and all(t.note is None for t in res.trials)
    assert max(int(f["input_ids"].max()) for f in ranged._feeds) >= 4  # ids beyond the default [0, 4)
