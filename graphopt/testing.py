"""Helpers for graphopt's tests (and for anyone testing a pass of their own).

Tiny graphs are written in ONNX text (``onnx.parser``) with seeded numpy initializers; outputs are compared with
the real onnxruntime, never a mock.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import onnx.parser

from .ir import serde
from .ir.core import Model
from .ir.verify import verify

ModelLike = Any  # Model | onnx.ModelProto | bytes


def from_text(text: str, inits: Mapping[str, Any] | None = None, *, ir_version: int | None = None) -> Model:
    """A Model from ONNX text; `inits` adds initializers (numpy arrays) by name."""
    mp = onnx.parser.parse_model(text)
    if ir_version is not None:
        mp.ir_version = ir_version
    for name, arr in (inits or {}).items():
        mp.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(arr), name))
    return serde.from_proto(mp)


def snapshot(model: ModelLike) -> bytes:
    """Serialized bytes of a model (take one before running a pass that mutates in place)."""
    if isinstance(model, Model):
        return serde.dumps(model)
    if isinstance(model, onnx.ModelProto):
        return model.SerializeToString()
    return bytes(model)


def to_proto(model: ModelLike) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    mp = onnx.ModelProto()
    mp.ParseFromString(snapshot(model))
    return mp


def op_types(model: ModelLike, recursive: bool = True) -> list[str]:
    """Op types in graph order (subgraph nodes follow their owner when `recursive`)."""
    if isinstance(model, Model):
        nodes = model.graph.all_nodes() if recursive else iter(model.graph)
        return [n.op_type for n in nodes]
    mp = to_proto(model)
    out: list[str] = []

    def walk(g: onnx.GraphProto) -> None:
        for n in g.node:
            out.append(n.op_type)
            if recursive:
                for a in n.attribute:
                    if a.type == onnx.AttributeProto.GRAPH:
                        walk(a.g)
                    elif a.type == onnx.AttributeProto.GRAPHS:
                        for sg in a.graphs:
                            walk(sg)

    walk(mp.graph)
    return out


def count_ops(model: ModelLike, recursive: bool = True) -> collections.Counter[str]:
    return collections.Counter(op_types(model, recursive))


def assert_valid(model: ModelLike, *, full_check: bool = True) -> None:
    """IR invariants (for a Model) plus onnx.checker (full check: with shape inference) plus an onnxruntime load."""
    if isinstance(model, Model):
        verify(model)
    mp = to_proto(model)
    onnx.checker.check_model(mp, full_check=full_check)
    session(mp)


def real_inputs(mp: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs a caller must feed (initializer-backed inputs excluded)."""
    inits = {t.name for t in mp.graph.initializer} | {t.values.name for t in mp.graph.sparse_initializer}
    return [i for i in mp.graph.input if i.name not in inits]


def session(model: ModelLike, *, optimize: bool = False) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    return ort.InferenceSession(snapshot(model), so, providers=["CPUExecutionProvider"])


_NP = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64, 9: np.bool_,
       10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}


def random_inputs(model: ModelLike, dims: Mapping[str, int] | None = None, *, seed: int = 0,
                  default_dim: int = 3, int_high: int = 4) -> dict[str, np.ndarray]:
    """Random feeds for a model's real inputs: symbolic dims bound from `dims` (else `default_dim`)."""
    mp = to_proto(model)
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for vi in real_inputs(mp):
        tt = vi.type.tensor_type
        shape = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                shape.append(d.dim_value)
            elif d.HasField("dim_param") and dims and d.dim_param in dims:
                shape.append(dims[d.dim_param])
            else:
                shape.append(default_dim)
        dt = np.dtype(_NP.get(tt.elem_type, np.float32))
        if dt.kind == "f":
            arr = np.asarray(rng.standard_normal(shape)).astype(dt)
        elif dt.kind in "iu":
            arr = np.asarray(rng.integers(0, int_high, size=shape)).astype(dt)
        elif dt.kind == "b":
            arr = np.asarray(rng.random(shape) > 0.5)
        else:
            arr = np.zeros(shape, dt)
        feeds[vi.name] = arr  # always an ndarray, 0-d included (onnxruntime refuses numpy scalars)
    return feeds


def run(model: ModelLike, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    sess = session(model)
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feeds.items() if k in names})


def assert_same_outputs(original: ModelLike, optimized: ModelLike, *,
                        bindings: Sequence[Mapping[str, int]] | None = None, seeds: Iterable[int] = (0, 1),
                        rtol: float = 1e-4, atol: float = 1e-5, int_high: int = 4) -> None:
    """Run both models in onnxruntime on the same random inputs (for each dim binding and seed) and compare
    every output: names, count, dtypes, shapes and values."""
    a = to_proto(original)
    b = to_proto(optimized)
    assert [o.name for o in a.graph.output] == [o.name for o in b.graph.output], "output names differ"
    assert [i.name for i in real_inputs(a)] == [i.name for i in real_inputs(b)], "input names differ"
    sa, sb = session(a), session(b)
    for binding in bindings or [{}]:
        for seed in seeds:
            feeds = random_inputs(a, binding, seed=seed, int_high=int_high)
            ra = sa.run(None, feeds)
            rb = sb.run(None, {k: v for k, v in feeds.items() if k in {i.name for i in sb.get_inputs()}})
            assert len(ra) == len(rb)
            for name, x, y in zip([o.name for o in a.graph.output], ra, rb):
                x, y = np.asarray(x), np.asarray(y)
                assert x.dtype == y.dtype, f"{name}: dtype {x.dtype} != {y.dtype}"
                assert x.shape == y.shape, f"{name}: shape {x.shape} != {y.shape} (binding {binding})"
                if x.dtype.kind in "fc":
                    np.testing.assert_allclose(y, x, rtol=rtol, atol=atol, err_msg=f"output {name!r}",
                                               equal_nan=True)
                else:
                    np.testing.assert_array_equal(y, x, err_msg=f"output {name!r}")


def run_pass(model: Model, name: str, ctx: Any = None, **options: Any) -> Any:
    """Run one registered pass (with options) on `model` through a PassManager; returns the PipelineRecord.

    The pass runs once (max one round), strictly: a failure raises instead of rolling back.
    """
    from .jit import init
    from .pipeline import PipelineConfig

    if ctx is None:
        ctx = init(model, PipelineConfig(passes=[]), plugins=False)
    p = ctx.passes.create(name, **options)
    from .passes.base import PassManager

    return PassManager(ctx, [p], strict=True, verify_each=True, fixed_point=False).run(model)


# ----------------------------------------------------------------------------------------------------------------
# The ONNX corpus: models shipped in the onnx package's backend test data and the node test suite
# ----------------------------------------------------------------------------------------------------------------
RANDOM_OPS = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                        "Bernoulli"})


@dataclasses.dataclass(frozen=True)
class CorpusCase:
    """One corpus model: a file under onnx/backend/test/data, or a node-suite case by name."""

    id: str
    path: str | None = None
    node_name: str | None = None
    rtol: float = 1e-3
    atol: float = 1e-7


def _data_dir() -> str:
    import os

    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")


@functools.cache
def _node_suite() -> dict[str, Any]:
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the case generators divide by zero on purpose
        return {c.name: c for c in collect_testcases(None)}


def corpus_cases(*, files: bool = True, nodes: bool = True) -> list[CorpusCase]:
    """Every model file of onnx's backend test data, and every node-suite case (1,884 with onnx 1.23)."""
    import glob
    import os

    out: list[CorpusCase] = []
    if files:
        root = _data_dir()
        for p in sorted(glob.glob(os.path.join(root, "**", "*.onnx"), recursive=True)):
            rel = os.path.relpath(p, root)
            cid = rel[: -len("/model.onnx")] if rel.endswith("/model.onnx") else rel[: -len(".onnx")]
            out.append(CorpusCase(id=cid, path=p))
    if nodes:
        for name, c in _node_suite().items():
            out.append(CorpusCase(id=f"node/{name}", node_name=name, rtol=c.rtol, atol=c.atol))
    return out


def corpus_model_bytes(case: CorpusCase) -> bytes:
    if case.path is not None:
        with open(case.path, "rb") as f:
            return f.read()
    assert case.node_name is not None
    return _node_suite()[case.node_name].model.SerializeToString()


def corpus_data_sets(case: CorpusCase) -> list[tuple[list[Any], list[Any]]]:
    """(inputs, expected outputs) pairs; inputs in the order of the model's fed inputs (empty when none)."""
    import glob
    import os

    from onnx import numpy_helper

    def arr(x: Any) -> Any:
        return numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else x

    if case.node_name is not None:
        c = _node_suite()[case.node_name]
        return [([arr(x) for x in i], [arr(x) for x in o]) for i, o in (c.data_sets or [])]
    assert case.path is not None
    mp = onnx.ModelProto()
    mp.ParseFromString(corpus_model_bytes(case))
    if case.id.startswith("light/"):
        # light models ship an expected output for one fixed input, arange(n)/n in the input's shape, as onnx's
        # backend test runner feeds them
        x = real_inputs(mp)[0]
        shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in x.type.tensor_type.shape.dim)
        n = int(np.prod(shape))
        inp = (np.arange(n).reshape(shape) / n).astype(np.float32)
        stem = case.path[: -len(".onnx")]
        outs = [_read_pb(f"{stem}_output_{i}.pb", o.type) for i, o in enumerate(mp.graph.output)
                if os.path.exists(f"{stem}_output_{i}.pb")]
        return [([inp], outs)]
    out = []
    for d in sorted(glob.glob(os.path.join(os.path.dirname(case.path), "test_data_set_*"))):
        n_in = len(glob.glob(os.path.join(d, "input_*.pb")))
        n_out = len(glob.glob(os.path.join(d, "output_*.pb")))
        ins = [_read_pb(os.path.join(d, f"input_{i}.pb"), mp.graph.input[i].type) for i in range(n_in)]
        outs = [_read_pb(os.path.join(d, f"output_{i}.pb"), mp.graph.output[i].type) for i in range(n_out)]
        out.append((ins, outs))
    return out


def _read_pb(path: str, type_proto: Any) -> Any:
    """A tensor, sequence or optional stored as a .pb file in onnx's test data, by the declared type."""
    from onnx import numpy_helper

    with open(path, "rb") as f:
        data = f.read()
    if type_proto.HasField("sequence_type"):
        sp = onnx.SequenceProto()
        sp.ParseFromString(data)
        return numpy_helper.to_list(sp)
    if type_proto.HasField("optional_type"):
        op = onnx.OptionalProto()
        op.ParseFromString(data)
        return numpy_helper.to_optional(op)
    tp = onnx.TensorProto()
    tp.ParseFromString(data)
    return numpy_helper.to_array(tp)


# ----------------------------------------------------------------------------------------------------------------
# Pass-test helpers
# ----------------------------------------------------------------------------------------------------------------
def pass_stats(model: Model, name: str, **options: Any) -> dict[str, int]:
    """Run one pass once (strict, IR verified after) and return its stats, checking that `changed` is honest."""
    rec = run_pass(model, name, **options)
    (r,) = rec.passes
    assert r.changed == bool(r.stats), f"{name}: changed={r.changed} but stats={r.stats}"
    return r.stats


def assert_unchanged(model: Model, name: str, **options: Any) -> Model:
    """The pass changes nothing: no stats, same bytes (an idempotence check after a first run)."""
    before = snapshot(model)
    assert pass_stats(model, name, **options) == {}
    assert snapshot(model) == before, f"{name} reported no change but the model's bytes changed"
    return model
