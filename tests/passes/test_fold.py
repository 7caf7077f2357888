"""Tests of fold-constants (graphopt/passes/fold.py) and its evaluator (graphopt/passes/_evaluate.py)."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest

from graphopt.ir import serde
from graphopt.ir.core import Model, Node, Value
from graphopt.ir.tensors import DataType, Tensor
from graphopt.passes._evaluate import Arg, BatchEvaluator, fast_eval
from graphopt.testing import (assert_same_outputs, assert_valid, count_ops, from_text, op_types, run, run_pass,
                              snapshot, to_proto)

BINDINGS = [{"N": 1}, {"N": 3}, {"N": 6}]
TEXT_TYPES = {np.float32: "float", np.float16: "float16", np.float64: "double", np.int8: "int8", np.int32: "int32",
              np.int64: "int64", np.uint8: "uint8"}


def _fold(m: Model, **options: object) -> dict[str, int]:
    rec = run_pass(m, "fold-constants", **options)
    (r,) = rec.passes
    assert r.changed == bool(r.stats.get("folded") or r.stats.get("hoisted")), r
    return r.stats


def _idempotent(m: Model, **options: object) -> None:
    before = snapshot(m)
    rec = run_pass(m, "fold-constants", **options)
    assert not rec.passes[0].changed, rec.passes[0].stats
    assert snapshot(m) == before


def _check(m: Model, snap: bytes, bindings: list[dict[str, int]] | None = None) -> None:
    assert_valid(m)
    assert_same_outputs(snap, m, bindings=bindings or [{}])


# ----------------------------------------------------------------------------------------------------------------
# positive: folding through onnxruntime and through the numpy fast path
# ----------------------------------------------------------------------------------------------------------------
def test_weight_transform_chain_folds_in_one_session(rng: np.random.Generator) -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 4] x) => (float[N, 3] y) {
      wt = Transpose<perm = [1, 0]>(w)
      ws = Mul(wt, scale)
      wq = Sqrt(ws)
      y0 = MatMul(x, wq)
      y = Add(y0, b)
    }
    """, {"w": rng.random((3, 4), dtype=np.float32) + 0.5, "scale": np.float32(2.0),
          "b": rng.standard_normal(3).astype(np.float32)})
    snap = snapshot(m)
    stats = _fold(m)
    assert op_types(m) == ["MatMul", "Add"]
    assert stats["folded"] == 3 and stats["ort_sessions"] == 1
    # the folded value keeps its name; the weight and the scale are gone with the nodes that read them
    assert sorted(m.graph.initializers) == ["b", "wq"]
    assert stats["initializers_freed"] == 2
    _check(m, snap, BINDINGS)
    _idempotent(m)


def test_shape_arithmetic_folds_with_the_fast_path_without_onnxruntime(rng: np.random.Generator) -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 12] x) => (float[N, 3, 4] y) {
      s = Shape(w)
      d0 = Gather<axis = 0>(s, i0)
      d1 = Gather<axis = 0>(s, i1)
      u0 = Unsqueeze(d0, ax0)
      u1 = Unsqueeze(d1, ax0)
      tgt = Concat<axis = 0>(m1, u0, u1)
      y = Reshape(x, tgt)
    }
    """, {"w": rng.random((3, 4), dtype=np.float32), "i0": np.array(0, np.int64), "i1": np.array(1, np.int64),
          "ax0": np.array([0], np.int64), "m1": np.array([-1], np.int64)})
    snap = snapshot(m)
    stats = _fold(m)
    assert op_types(m) == ["Reshape"]
    assert "ort_sessions" not in stats  # everything went through the exact numpy fast path
    (tgt,) = [v for v in m.graph.initializers.values() if v.name == "tgt"]
    assert tgt.const is not None and tgt.const.numpy().tolist() == [-1, 3, 4]
    _check(m, snap, BINDINGS)
    _idempotent(m)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, np.int8, np.int32, np.int64, np.uint8])
def test_folds_every_dtype_exactly(dtype: type, rng: np.random.Generator) -> None:
    name = TEXT_TYPES[dtype]
    m = from_text(f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g ({name}[N, 3] x) => ({name}[N, 3] y, {name}[3] z) {{
      ab = Add(a, b)
      abm = Mul(ab, a)
      mx = Max(abm, b)
      y = Add(x, mx)
      z = Sub(mx, a)
    }}
    """, {"a": (rng.integers(1, 5, size=3)).astype(dtype), "b": (rng.integers(1, 5, size=3)).astype(dtype)})
    snap = snapshot(m)
    stats = _fold(m)
    assert op_types(m) == ["Add"]
    assert stats["folded"] == 4
    # a folded graph output becomes the initializer itself (IR >= 4), under its own name
    assert m.graph.outputs[1].name == "z" and m.graph.outputs[1].const is not None
    _check(m, snap, BINDINGS)
    _idempotent(m)


def test_bool_and_comparison_chain(rng: np.random.Generator) -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 4] x) => (float[N, 4] y) {
      gt = Greater(a, b)
      nb = Not(gt)
      both = And(nb, mask)
      y = Where(both, x, a)
    }
    """, {"a": rng.standard_normal(4).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32),
          "mask": np.array([True, False, True, True])})
    snap = snapshot(m)
    _fold(m)
    assert op_types(m) == ["Where"]
    _check(m, snap, BINDINGS)
    _idempotent(m)


def test_constant_nodes_become_initializers_with_their_names() -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 2] x) => (float[N, 2] y, int64[2] k) {
      c = Constant<value = float[2] {1.5, -2.0}>()
      k = Constant<value_ints = [3, 4]>()
      f = Constant<value_float = 0.5>()
      y0 = Mul(x, c)
      y = Add(y0, f)
    }
    """)
    snap = snapshot(m)
    stats = _fold(m)
    assert op_types(m) == ["Mul", "Add"]
    assert stats["hoisted"] == 3
    assert list(m.graph.initializers) == ["c", "k", "f"]
    assert [o.name for o in m.graph.outputs] == ["y", "k"]
    _check(m, snap, BINDINGS)
    _idempotent(m)


# ----------------------------------------------------------------------------------------------------------------
# the interface: graph outputs, IR versions
# ----------------------------------------------------------------------------------------------------------------
IR3_MODEL = """
<ir_version: 3, opset_import: ["" : 9]>
g (float[N, 2] x, float[2] w) => (float[N, 2] y, float[2] z) {
  c = Constant<value = float[2] {1.0, 2.0}>()
  wc = Mul(w, c)
  z = Neg(wc)
  y = Add(x, wc)
}
"""


def test_ir3_new_initializers_are_graph_inputs_and_outputs_keep_an_identity(rng: np.random.Generator) -> None:
    # IR 3: every initializer is also a graph input (and a constant: the caller cannot override it then)
    m = from_text(IR3_MODEL, {"w": rng.standard_normal(2).astype(np.float32)})
    assert m.ir_version == 3
    snap = snapshot(m)
    stats = _fold(m)
    mp = to_proto(m)
    inits = {t.name for t in mp.graph.initializer}
    assert inits <= {i.name for i in mp.graph.input}
    # z is a graph output: under IR 3 it cannot be an initializer (it would be an input too): an Identity keeps it
    assert op_types(m) == ["Add", "Identity"]
    assert [o.name for o in mp.graph.output] == ["y", "z"]
    assert "w" not in inits and stats["initializers_freed"] == 1
    onnx.checker.check_model(mp, full_check=True)
    _check(m, snap, BINDINGS)
    _idempotent(m)


def test_ir4_overridable_initializer_is_not_folded(rng: np.random.Generator) -> None:
    # from IR 4 on, an initializer listed as a graph input is a default the caller may replace
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 2] x, float[2] w) => (float[N, 2] y) {
      w2 = Mul(w, two)
      y = Add(x, w2)
    }
    """, {"w": rng.standard_normal(2).astype(np.float32), "two": np.float32(2)})
    assert not m.graph.initializers["w"].is_constant()
    stats = _fold(m)
    assert op_types(m) == ["Mul", "Add"] and not stats.get("folded")


def test_folded_value_that_is_a_main_output_and_is_read_keeps_its_name() -> None:
    m = from_text("""
    <ir_version: 9, opset_import: ["" : 18]>
    g (float[N] x) => (float[3] c, float[N] y) {
      c = Range(zero, three, one)
      s = ReduceSum<keepdims = 0>(c, axes)
      y = Add(x, s)
    }
    """, {"zero": np.float32(0), "three": np.float32(3), "one": np.float32(1), "axes": np.array([0], np.int64)})
    snap = snapshot(m)
    _fold(m)
    assert op_types(m) == ["Add"]
    assert [o.name for o in m.graph.outputs] == ["c", "y"]
    assert m.graph.outputs[0].const is not None
    _check(m, snap, BINDINGS)
    _idempotent(m)


# ----------------------------------------------------------------------------------------------------------------
# subgraphs: If branches and Loop bodies
# ----------------------------------------------------------------------------------------------------------------
def test_folds_inside_if_branches_with_constants_hoisted(rng: np.random.Generator) -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 2] x, bool c) => (float[N, 2] y) {
      y = If(c) <
        then_branch = t () => (float[N, 2] a) {
          k = Constant<value = float[2] {2.0, 3.0}>()
          kw = Mul(k, w)
          a = Add(x, kw)
        },
        else_branch = e () => (float[2] b) {
          k2 = Constant<value = float[2] {5.0, 7.0}>()
          b = Sub(k2, w)
        }>
    }
    """, {"w": rng.standard_normal(2).astype(np.float32)})
    snap = snapshot(m)
    stats = _fold(m)
    # the branch constants moved to the main graph, and the branches' constant arithmetic folded
    assert count_ops(m) == {"If": 1, "Add": 1, "Identity": 1}
    assert not stats.get("hoisted") and stats["folded"] == 2  # the Constants died with their readers
    assert "w" not in m.graph.initializers and len(m.graph.initializers) == 2
    (if_node,) = m.graph
    then_g, else_g = if_node.subgraphs()
    assert not then_g.initializers and not else_g.initializers
    # the else branch outputs a constant: an Identity keeps the branch output's name
    assert [n.op_type for n in else_g] == ["Identity"] and else_g.outputs[0].name == "b"
    assert_valid(m)
    for cond in (True, False):  # both branches, explicitly
        xs = rng.standard_normal((3, 2)).astype(np.float32)
        np.testing.assert_allclose(run(m, {"x": xs, "c": np.array(cond)})[0],
                                   run(snap, {"x": xs, "c": np.array(cond)})[0], rtol=1e-6)
    _idempotent(m)


def test_folds_inside_a_loop_body(rng: np.random.Generator) -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x, int64 n) => (float[2] y) {
      t = Constant<value = bool {1}>()
      y = Loop(n, t, x) <body = b (int64 i, bool cin, float[2] acc) => (bool cout, float[2] acc2) {
        one = Constant<value = float[2] {1.0, 2.0}>()
        step = Mul(one, w)
        step2 = Add(step, one)
        acc2 = Add(acc, step2)
        cout = Identity(cin)
      }>
    }
    """, {"w": rng.standard_normal(2).astype(np.float32)})
    snap = snapshot(m)
    stats = _fold(m)
    (loop,) = [n for n in m.graph if n.op_type == "Loop"]
    (body,) = loop.subgraphs()
    assert [n.op_type for n in body] == ["Add", "Identity"]
    assert stats["folded"] == 2 and "step2" in m.graph.initializers
    assert_valid(m)
    for n in (0, 1, 4):
        xs = rng.standard_normal(2).astype(np.float32)
        np.testing.assert_allclose(run(m, {"x": xs, "n": np.array(n)})[0],
                                   run(snap, {"x": xs, "n": np.array(n)})[0], rtol=1e-6)
    _idempotent(m)


def test_identity_of_a_constant_for_a_branch_output_is_left_alone() -> None:
    # an initializer cannot be a branch output: replacing the Identity would only re-create it
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (bool[1] c) => (float[2] y) {
      y = If(c) <then_branch = t () => (float[2] a) { a = Identity(w) },
                 else_branch = e () => (float[2] b) { b = Neg(w) }>
    }
    """, {"w": np.array([1.0, -2.0], np.float32)})
    snap = snapshot(m)
    stats = _fold(m)
    assert stats["folded"] == 1  # the Neg
    (if_node,) = m.graph
    assert [[n.op_type for n in g] for g in if_node.subgraphs()] == [["Identity"], ["Identity"]]
    _check(m, snap)
    _idempotent(m)


# ----------------------------------------------------------------------------------------------------------------
# negative: what must not fold
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("node", [
    "r = RandomNormalLike(w)", "r = RandomUniformLike(w)", "r = RandomNormal<shape = [2]>()",
    "r = RandomUniform<shape = [2]>()", "r = Bernoulli(p)",
])
def test_non_deterministic_ops_are_never_folded(node: str) -> None:
    m = from_text(f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) {{
      {node}
      y = Add(x, r)
    }}
    """, {"w": np.zeros(2, np.float32), "p": np.full(2, 0.5, np.float32)})
    op = node.split("=")[1].strip().split("(")[0].split("<")[0]
    stats = _fold(m)
    assert op in op_types(m) and not stats.get("folded")


def test_multinomial_is_never_folded() -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (int32[1, 3] x) => (int32[1, 3] y) {
      r = Multinomial<sample_size = 3>(logits)
      y = Add(x, r)
    }
    """, {"logits": np.zeros((1, 2), np.float32)})
    stats = _fold(m)
    assert "Multinomial" in op_types(m) and not stats.get("folded")


def test_dropout_folds_in_inference_and_not_in_training_mode(rng: np.random.Generator) -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4] x) => (float[4] y) {{
      d = Dropout({args})
      y = Add(x, d)
    }}
    """
    inits = {"w": rng.standard_normal(4).astype(np.float32), "r": np.float32(0.5), "off": np.array(False),
             "on": np.array(True)}
    for args, folds in (("w", True), ("w, r, off", True), ("w, r, on", False)):
        m = from_text(text.format(args=args), inits)
        snap = snapshot(m)
        stats = _fold(m)
        assert ("Dropout" not in op_types(m)) == folds, args
        assert bool(stats.get("folded")) == folds
        if folds:
            _check(m, snap)


def test_custom_domain_ops_are_never_folded() -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>
    g (float[2] x) => (float[2] y) {
      d = com.example.Double(w)
      y = Add(x, d)
    }
    """, {"w": np.ones(2, np.float32)})
    stats = _fold(m)
    assert op_types(m) == ["Double", "Add"] and not stats.get("folded")


def test_sequence_ops_are_never_folded() -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[4] y) {
      s = SequenceConstruct(w, w)
      c = ConcatFromSequence<axis = 0>(s)
      y = Concat<axis = 0>(x, x)
    }
    """, {"w": np.ones(1, np.float32)})
    stats = _fold(m)
    assert "SequenceConstruct" in op_types(m) and "ConcatFromSequence" in op_types(m)
    assert not stats.get("folded")


BIG_CONSTANT_OF_SHAPE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 512] x) => (float[N, 512] y) {
  w = ConstantOfShape<value = float[1] {0.25}>(shape)
  y = MatMul(x, w)
}
"""


def test_size_limit_keeps_a_big_constant_of_shape_unevaluated() -> None:
    m = from_text(BIG_CONSTANT_OF_SHAPE, {"shape": np.array([512, 512], np.int64)})
    stats = _fold(m)
    assert op_types(m) == ["ConstantOfShape", "MatMul"]
    assert not stats.get("folded") and "ort_sessions" not in stats  # decided before evaluating anything


def test_raising_the_allowance_folds_the_big_constant_of_shape() -> None:
    m = from_text(BIG_CONSTANT_OF_SHAPE, {"shape": np.array([512, 512], np.int64)})
    snap = snapshot(m)
    stats = _fold(m, free_output_bytes=2 << 20)
    assert op_types(m) == ["MatMul"] and stats["folded"] == 1
    _check(m, snap, BINDINGS)
    # ... unless the hard cap is lower
    m = from_text(BIG_CONSTANT_OF_SHAPE, {"shape": np.array([512, 512], np.int64)})
    stats = _fold(m, free_output_bytes=2 << 20, max_output_bytes=512 * 1024)
    assert op_types(m) == ["ConstantOfShape", "MatMul"] and not stats.get("folded")


def test_a_weight_read_elsewhere_is_not_duplicated_by_default(rng: np.random.Generator) -> None:
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 64] x) => (float[N, 64] y, float[N, 64] z) {
      wt = Transpose<perm = [1, 0]>(w)
      y = MatMul(x, wt)
      z = MatMul(x, w)
    }
    """
    inits = {"w": rng.standard_normal((64, 64)).astype(np.float32)}
    m = from_text(text, inits)
    stats = _fold(m)
    # folding would store the 16 KiB weight twice
    assert op_types(m) == ["Transpose", "MatMul", "MatMul"] and not stats.get("folded")
    m = from_text(text, inits)
    snap = snapshot(m)
    stats = _fold(m, free_output_bytes=1 << 20)
    assert op_types(m) == ["MatMul", "MatMul"] and stats["folded"] == 1
    _check(m, snap, BINDINGS)


def test_cast_that_doubles_a_weight_is_not_folded_by_default(rng: np.random.Generator) -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 64] x) => (float[N, 64] y) {
      w32 = Cast<to = 1>(w)
      y = MatMul(x, w32)
    }
    """, {"w": rng.standard_normal((64, 64)).astype(np.float16)})
    stats = _fold(m)
    assert op_types(m) == ["Cast", "MatMul"] and not stats.get("folded")


def _light_resnet50() -> str:
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", "light_resnet50.onnx")


@pytest.mark.skipif(not os.path.exists(_light_resnet50()), reason="onnx's light models are not installed")
def test_light_resnet50_file_stays_small() -> None:
    # its conv weights are made at load time by ConstantOfShape: folding them all would make a 100 MB file
    path = _light_resnet50()
    size0 = os.path.getsize(path)
    m = serde.load(path)
    stats = _fold(m)
    size1 = len(snapshot(m))
    assert size1 < 2 * size0 and size1 < 256 * 1024, (size0, size1, stats)
    assert count_ops(m)["ConstantOfShape"] > 100  # the big ones stayed
    assert_valid(m)
    # the limit is what keeps it small: without it the file grows a thousandfold
    m = serde.load(path)
    _fold(m, free_output_bytes=1 << 30)
    assert len(snapshot(m)) > 50 * 1024 * 1024


# ----------------------------------------------------------------------------------------------------------------
# batching: one onnxruntime session per run; failures split the batch
# ----------------------------------------------------------------------------------------------------------------
def test_one_onnxruntime_session_for_many_independent_folds(rng: np.random.Generator) -> None:
    lines = []
    inits = {}
    outs = []
    for i in range(12):
        inits[f"w{i}"] = rng.random(4, dtype=np.float32) + 0.1
        lines.append(f"s{i} = Sqrt(w{i})")
        lines.append(f"e{i} = Exp(s{i})")
        lines.append(f"y{i} = Add(x, e{i})")
        outs.append(f"float[N, 4] y{i}")
    body = "\n      ".join(lines)
    m = from_text(f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 4] x) => ({", ".join(outs)}) {{
      {body}
    }}
    """, inits)
    snap = snapshot(m)
    stats = _fold(m)
    assert stats["folded"] == 24 and stats["ort_sessions"] == 1
    _check(m, snap, BINDINGS)


def test_a_node_onnxruntime_cannot_run_is_left_alone_and_the_rest_folds(rng: np.random.Generator) -> None:
    # the Reshape asks for 4 elements of 6: onnxruntime fails on it (so would the model at run time)
    lines = [f"s{i} = Sqrt(w{i})\n      y{i} = Add(x, s{i})" for i in range(8)]
    inits = {f"w{i}": rng.random(6, dtype=np.float32) for i in range(8)}
    inits["bad_shape"] = np.array([4], np.int64)
    m = from_text(f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[6] x) => ({", ".join(f"float[6] y{i}" for i in range(8))}, float[4] z) {{
      {chr(10).join(lines)}
      e = Exp(w0)
      r = Reshape(e, bad_shape)
      z = Neg(r)
    }}
    """, inits)
    stats = _fold(m)
    assert count_ops(m) == {"Add": 8, "Reshape": 1, "Neg": 1}
    assert stats["folded"] == 9 and stats["ort_failed_nodes"] == 1
    # halving: a handful of sessions, not one per node
    assert 1 < stats["ort_sessions"] <= 10
    _idempotent_or_retry = run_pass(m, "fold-constants").passes[0]
    assert not _idempotent_or_retry.changed


def test_batch_evaluator_halves_a_failing_batch() -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[6] x) => (float[6] a, float[6] b, float[4] c, float[4] d) {
      a = Sqrt(w)
      b = Exp(w)
      c = Reshape(b, bad)
      d = Neg(c)
    }
    """, {"w": np.arange(6, dtype=np.float32), "bad": np.array([4], np.int64)})
    nodes = list(m.graph)
    ev = BatchEvaluator(m)
    inputs = {v: Arg(tensor=v.const) for v in m.graph.initializers.values()}
    res, failed = ev.run(nodes, inputs, [n.output for n in nodes])
    assert failed == [nodes[2]]
    assert set(res) == {nodes[0].output, nodes[1].output}
    np.testing.assert_allclose(res[nodes[1].output], np.exp(np.arange(6, dtype=np.float32)), rtol=1e-6)
    assert ev.sessions == 4  # all, first half, second half, then each node of the second half


# ----------------------------------------------------------------------------------------------------------------
# the numpy fast path is exact: it agrees with onnxruntime, dtype and bits
# ----------------------------------------------------------------------------------------------------------------
I64 = np.int64
FAST_CASES: list[tuple[str, dict[str, object], list[np.ndarray | None]]] = [
    ("Shape", {}, [np.zeros((2, 3, 4), np.float32)]),
    ("Shape", {"start": 1}, [np.zeros((2, 3, 4), np.float32)]),
    ("Shape", {"start": -2, "end": -1}, [np.zeros((2, 3, 4), np.float32)]),
    ("Size", {}, [np.zeros((2, 3), np.float16)]),
    ("Cast", {"to": DataType.INT32}, [np.array([-3, 2 ** 40, 7], I64)]),
    ("Cast", {"to": DataType.FLOAT}, [np.array([-3, 2 ** 40 + 1, 7], I64)]),
    ("Cast", {"to": DataType.BOOL}, [np.array([-3, 0, 7], np.int32)]),
    ("Cast", {"to": DataType.INT64}, [np.array([True, False])]),
    ("Cast", {"to": DataType.FLOAT}, [np.array([1.0000001, 1e300, -0.1], np.float64)]),
    ("Reshape", {}, [np.arange(12, dtype=np.float32), np.array([3, -1], I64)]),
    ("Reshape", {}, [np.arange(12, dtype=np.int32).reshape(3, 4), np.array([0, 2, 2], I64)]),
    ("Unsqueeze", {}, [np.arange(3, dtype=I64), np.array([-1, 0], I64)]),
    ("Squeeze", {}, [np.zeros((1, 3, 1), np.float32), np.array([-1], I64)]),
    ("Squeeze", {}, [np.zeros((1, 3, 1), np.float32)]),
    ("Concat", {"axis": -1}, [np.ones((2, 1), I64), np.zeros((2, 3), I64)]),
    ("Gather", {"axis": 0}, [np.array([5, 6, 7], I64), np.array([-1, 0], I64)]),
    ("Gather", {"axis": 1}, [np.arange(6, dtype=np.float32).reshape(2, 3), np.array(2, np.int32)]),
    ("Slice", {}, [np.arange(10, dtype=I64), np.array([-3], I64), np.array([2 ** 62], I64)]),
    ("Slice", {}, [np.arange(10, dtype=I64), np.array([8], I64), np.array([-100], I64), np.array([0], I64),
                   np.array([-3], I64)]),
    ("Slice", {}, [np.arange(10, dtype=I64), np.array([-1], I64), np.array([-2 ** 62], I64), None,
                   np.array([-1], I64)]),
    ("Slice", {}, [np.arange(12, dtype=np.int32).reshape(3, 4), np.array([1, 0], I64), np.array([3, 4], I64),
                   np.array([1, 0], I64), np.array([1, 2], I64)]),
    ("Add", {}, [np.array([2 ** 62, -5], I64), np.array([2 ** 62], I64)]),
    ("Sub", {}, [np.array([[1], [2]], np.int32), np.array([5, 7, 9], np.int32)]),
    ("Mul", {}, [np.array([120, -3], np.int8), np.array([2, 50], np.int8)]),
    ("Div", {}, [np.array([7, -7, 7, -7, 6], I64), np.array([2, 2, -2, -2, 3], I64)]),
    ("Div", {}, [np.array([7, 200], np.uint8), np.array([2, 3], np.uint8)]),
    ("Neg", {}, [np.array([3, -4], np.int32)]),
    # float arithmetic: each op correctly rounded (IEEE 754), infinities, NaN, signed zeros, subnormals, overflow
    ("Add", {}, [np.array([0.1, 1e38, -0.0, np.inf, 1e-45], np.float32), np.array([0.2, 1e38, 0.0, -np.inf, 1e-45],
                                                                                 np.float32)]),
    ("Sub", {}, [np.array([[0.3], [np.nan]], np.float64), np.array([0.1, -2.5e-308], np.float64)]),
    ("Mul", {}, [np.array([3.4e38, 1.1, -0.0, 1e-30], np.float32), np.array([2.0, 3.3, 5.0, 1e-20], np.float32)]),
    ("Div", {}, [np.array([1.0, -1.0, 0.0, 7.0, 1e-40], np.float32), np.array([0.0, 0.0, 0.0, 3.0, 3.0],
                                                                             np.float32)]),
    ("Div", {}, [np.array([1.0, 2.0], np.float64), np.array(3.0, np.float64)]),
    ("Min", {}, [np.array([3, -4], I64), np.array([1], I64), np.array([[0], [5]], I64)]),
    ("Max", {}, [np.array([3, -4], I64), np.array([1], I64)]),
    ("Equal", {}, [np.array([1, 2, 3], I64), np.array([2], I64)]),
    ("Less", {}, [np.array([1.5, np.nan], np.float32), np.array([2.0, 1.0], np.float32)]),
    ("Greater", {}, [np.array([1, 2, 3], np.int32), np.array([2], np.int32)]),
    ("LessOrEqual", {}, [np.array([1, 2, 3], I64), np.array([2], I64)]),
    ("GreaterOrEqual", {}, [np.array([1, 2, 3], I64), np.array([2], I64)]),
    ("Not", {}, [np.array([True, False])]),
    ("And", {}, [np.array([True, False]), np.array([True])]),
    ("Or", {}, [np.array([True, False]), np.array([False])]),
    ("Xor", {}, [np.array([True, False]), np.array([True])]),
    ("Where", {}, [np.array([True, False]), np.array([1, 2], I64), np.array([[7], [8]], I64)]),
    ("Range", {}, [np.array(10, I64), np.array(-3, I64), np.array(-4, I64)]),
    ("Range", {}, [np.array(0, np.int32), np.array(5, np.int32), np.array(2, np.int32)]),
    ("ConstantOfShape", {"value": np.array([7], np.int32)}, [np.array([2, 3], I64)]),
    ("ConstantOfShape", {}, [np.array([0, 3], I64)]),
    ("Expand", {}, [np.array([[1], [2]], np.float32), np.array([3, 1, 4], I64)]),
    ("Tile", {}, [np.array([[1, 2]], I64), np.array([2, 3], I64)]),
    ("Transpose", {"perm": [1, 2, 0]}, [np.arange(24, dtype=np.float16).reshape(2, 3, 4)]),
    ("Transpose", {}, [np.arange(6, dtype=np.float32).reshape(2, 3)]),
    ("Identity", {}, [np.array(["a", "bc"], dtype=object)]),
    ("ReduceProd", {"keepdims": 0}, [np.array([2, 3, 4], I64)]),
    ("ReduceSum", {}, [np.array([[2, 3], [4, 5]], np.int32), np.array([1], I64)]),
    ("ReduceSum", {"noop_with_empty_axes": 1}, [np.array([2, 3], I64)]),
    ("ReduceMax", {"keepdims": 0}, [np.array([[2, 9], [4, 5]], I64), np.array([0], I64)]),
    ("ReduceMin", {}, [np.array([[2, 9], [4, 5]], I64)]),
]


def _single_node_model(op: str, attrs: dict[str, object], ins: list[np.ndarray | None]) -> tuple[Model, Node]:
    m = Model(opset_imports={"": 18}, ir_version=8)
    g = m.graph
    vals: list[Value | None] = []
    for i, a in enumerate(ins):
        if a is None:
            vals.append(None)
            continue
        v = Value(f"in{i}")
        dt = DataType.STRING if a.dtype == object else None
        g.add_initializer(v, Tensor.from_numpy(a, dt))
        vals.append(v)
    attrs = {k: (Tensor.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in attrs.items()}
    n = Node(op, vals, attrs=attrs, outputs=["out"])
    g.append(n)
    return m, n


@pytest.mark.parametrize("op,attrs,ins", FAST_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(FAST_CASES)])
def test_fast_path_agrees_with_onnxruntime(op: str, attrs: dict[str, object], ins: list[np.ndarray | None]
                                           ) -> None:
    m, n = _single_node_model(op, attrs, ins)
    args = [None if v is None else Arg(tensor=v.const) for v in n.inputs]
    fast = fast_eval(n, args, 18)
    assert fast is not None, "the fast path should handle this case"
    ev = BatchEvaluator(m)
    res, failed = ev.run([n], {v: a for v, a in zip(n.inputs, args) if v is not None and a is not None},
                         [n.output])
    assert not failed
    want = res[n.output]
    got = fast[0]
    assert got.dtype == want.dtype and got.shape == want.shape
    if got.dtype == object:
        assert [str(s) for s in got.reshape(-1)] == [str(s) for s in want.reshape(-1)]
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("op,attrs,ins", [
    ("Div", {}, [np.array([1, 2], I64), np.array([0, 1], I64)]),  # division by zero: left to the runtime
    ("Cast", {"to": DataType.FLOAT16}, [np.array([2049], I64)]),  # the runtime rounds twice (via float32)
    ("Add", {}, [np.array([1.5], np.float16), np.array([1.0], np.float16)]),  # float16 goes to onnxruntime
    ("Mul", {}, [np.array([1.5], np.float32), np.array([1.0], np.float64)]),  # mixed types: the runtime refuses
    ("Gather", {}, [np.array([1, 2], I64), np.array([5], I64)]),  # out of range: an error to keep
    ("Reshape", {}, [np.arange(6, dtype=I64), np.array([4], I64)]),  # wrong element count
    ("ConstantOfShape", {}, [np.array([1 << 20, 1 << 20], I64)]),  # too big: refused before building
    ("Range", {}, [np.array(0.0, np.float32), np.array(1.0, np.float32), np.array(0.1, np.float32)]),
])
def test_fast_path_refuses_what_it_cannot_do_exactly(op: str, attrs: dict[str, object],
                                                      ins: list[np.ndarray | None]) -> None:
    m, n = _single_node_model(op, attrs, ins)
    args = [None if v is None else Arg(tensor=v.const) for v in n.inputs]
    assert fast_eval(n, args, 18) is None


# ----------------------------------------------------------------------------------------------------------------
# opsets
# ----------------------------------------------------------------------------------------------------------------
def test_old_opset_model_evaluates_with_its_own_opset(rng: np.random.Generator) -> None:
    # opset 11: Unsqueeze takes axes as an attribute, Clip takes min/max as inputs
    m = from_text("""
    <ir_version: 6, opset_import: ["" : 11]>
    g (float[N, 1, 3] x) => (float[N, 1, 3] y) {
      u = Unsqueeze<axes = [0]>(w)
      c = Clip(u, lo, hi)
      y = Add(x, c)
    }
    """, {"w": rng.standard_normal(3).astype(np.float32) * 3, "lo": np.float32(-1), "hi": np.float32(1)})
    snap = snapshot(m)
    stats = _fold(m)
    assert op_types(m) == ["Add"] and stats["folded"] == 2
    _check(m, snap, BINDINGS)


def test_ir_removing_initializers_rolls_back_in_order_with_constant_memory_per_removal() -> None:
    # Regression (graphopt/ir/core.py): each removal copied the whole initializer dict into the journal, so a fold
    # freeing k of n initializers kept O(k * n) objects alive (minutes of GC, gigabytes at 20k initializers).
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1] x) => (float[1] y) { y = Identity(x) }
    """, {f"c{i}": np.float32(i) for i in range(50)})
    g = m.graph
    names = list(g.initializers)
    before = snapshot(m)
    j = m.begin_journal()
    for name in names[::3] + names[1::3]:
        g.remove_initializer(g.initializers[name])
    copies = 0
    for e in j.entries:  # one undo entry per journal (the order snapshot) holds a copy of the table, none per removal
        cells = [c.cell_contents for c in getattr(e, "__closure__", None) or ()]
        copies += any(isinstance(c, (list, dict)) and len(c) >= 10 for c in cells)
    assert copies <= 1
    assert list(g.initializers) == names[2::3]
    m.rollback(j)
    assert list(g.initializers) == names and snapshot(m) == before


def test_batch_evaluator_stops_at_its_session_budget() -> None:
    # when everything fails (say an opset the runtime lacks), halving would take 2n sessions: a budget caps it
    body = "\n      ".join(f"r{i} = Reshape(w, bad)" for i in range(40))
    m = from_text(f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[6] x) => ({", ".join(f"float[4] r{i}" for i in range(40))}) {{
      {body}
    }}
    """, {"w": np.arange(6, dtype=np.float32), "bad": np.array([4], np.int64)})
    nodes = list(m.graph)
    ev = BatchEvaluator(m, max_sessions=7)
    inputs = {v: Arg(tensor=v.const) for v in m.graph.initializers.values()}
    res, failed = ev.run(nodes, inputs, [n.output for n in nodes])
    assert not res and failed == nodes and ev.sessions == 7 and ev.gave_up


def test_small_external_data_constants_fold(tmp_path: object, rng: np.random.Generator) -> None:
    import pathlib

    d = pathlib.Path(str(tmp_path))
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 4] x) => (float[N, 4] y) {
      e = Exp(w)
      big = Sqrt(v)
      s = ReduceSum<keepdims = 0>(big)
      es = Mul(e, s)
      y = Add(x, es)
    }
    """, {"w": rng.standard_normal(4).astype(np.float32), "v": rng.random(40000, dtype=np.float32)})
    mp = to_proto(m)
    onnx.save_model(mp, str(d / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.data", size_threshold=0)
    m = serde.load(str(d / "m.onnx"))
    assert m.graph.initializers["w"].const.is_external and m.graph.initializers["v"].const.is_external
    snap = snapshot(m)
    stats = _fold(m)
    assert op_types(m) == ["Add"] and stats["folded"] == 4 and stats["ort_sessions"] == 1
    assert_same_outputs(snap, m, bindings=BINDINGS)


def test_branch_constant_read_by_a_live_node_is_hoisted_to_the_main_graph() -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 2] x, bool[1] c) => (float[N, 2] y) {
      y = If(c) <then_branch = t () => (float[N, 2] a) { k = Constant<value = float[2] {2.0, 3.0}>()
                                                         a = Mul(x, k) },
                 else_branch = e () => (float[N, 2] b) { b = Neg(x) }>
    }
    """)
    snap = snapshot(m)
    stats = _fold(m)
    assert stats == {"hoisted": 1}
    (if_node,) = m.graph
    then_g, _ = if_node.subgraphs()
    assert [n.op_type for n in then_g] == ["Mul"] and list(m.graph.initializers) == ["k"]
    assert then_g.nodes[0].input(1) is m.graph.initializers["k"]
    _check(m, snap, BINDINGS)
    _idempotent(m)


BIAS_FILL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 96] x) => (float[N, 96] y) {
  b = ConstantOfShape<value = float[1] {0.02}>(shape)
  y = Add(x, b)
}
"""


def test_tiny_model_does_not_grow_by_storing_a_fill() -> None:
    # onnx's light CNNs: a 4 kB model whose biases are ConstantOfShape fills. Storing the [96] bias (384 bytes)
    # fits the default 1 kB allowance but is a tenth of the model: by default the allowance is also at most 1/32
    # of the model's size
    m = from_text(BIAS_FILL, {"shape": np.array([96], np.int64)})
    stats = _fold(m)
    assert op_types(m) == ["ConstantOfShape", "Add"] and not stats.get("folded")
    # the same fill in a model with 64 kB of weights is stored
    big = BIAS_FILL.replace("y = Add(x, b)", "z = Add(x, b)\n  y = MatMul(z, w)")
    m = from_text(big, {"shape": np.array([96], np.int64), "w": np.eye(96, dtype=np.float32)})
    snap = snapshot(m)
    stats = _fold(m)
    assert op_types(m) == ["Add", "MatMul"] and stats["folded"] == 1
    _check(m, snap, BINDINGS)
    # an allowance the user sets is taken as it is
    m = from_text(BIAS_FILL, {"shape": np.array([96], np.int64)})
    stats = _fold(m, free_output_bytes=2048)
    assert op_types(m) == ["Add"] and stats["folded"] == 1
