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


# ----------------------------------------------------------------------------------------------------------------
# The pipeline oracle (benchmarks/fuzz.py, tests/test_fuzz_regressions.py)
# ----------------------------------------------------------------------------------------------------------------
# Tolerances per output dtype when the optimized model's outputs are compared with the original's: (rtol, atol).
# (float16: a finite value where the original overflowed to inf or nan counts as equal.)
# atol is relative to the output's scale (its largest finite magnitude, at least 1): a fused kernel may round
# differently, and onnxruntime's LayerNormalization computes the variance as E[x^2] - E[x]^2, which loses digits on
# rows of nearly equal values that the spelled-out form keeps; such a row's error is small next to the tensor's
# scale, not next to its own tiny values.
ORACLE_TOLERANCE = {np.dtype(np.float32): (1e-4, 1e-5), np.dtype(np.float16): (1e-2, 1e-2),
                    np.dtype(np.float64): (1e-7, 1e-9)}


def default_bindings(model: ModelLike) -> list[dict[str, int]]:
    """Two bindings of a model's symbolic input dims: every dim 1 (broadcasting edge cases), then 3, 4, 5, ... (a
    different size per name, so that dims merely named alike in the optimizer's mind show up)."""
    names: list[str] = []
    for vi in real_inputs(to_proto(model)):
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param not in names:
                names.append(d.dim_param)
    if not names:
        return [{}]
    return [{n: 1 for n in names}, {n: 3 + i % 3 for i, n in enumerate(names)}]


def _oracle_run(sess: Any, feeds: Mapping[str, np.ndarray]) -> list[Any]:
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feeds.items() if k in names})


def _first_line(e: BaseException, limit: int = 300) -> str:
    text = f"{type(e).__name__}: {e}".strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line if len(line) <= limit else line[:limit] + "..."


def _reference_agrees(original: ModelLike, result: ModelLike, feeds: Mapping[str, Any],
                      names: Sequence[str]) -> bool:
    """Whether onnx's reference evaluator, which rounds every float16 op's result as the ONNX semantics say,
    computes the same outputs for both models. onnxruntime runs chains of float16 ops in float32 where some op
    lacks a float16 kernel (the casts it inserts), so removing a no-op between them (a Squeeze, a Cast) moves
    where it rounds: its outputs of an exact rewrite may then differ by more than float16's tolerance, for
    example where a normalization over two near-equal values amplifies the rounding. False when the evaluator
    cannot run either model."""
    try:
        from onnx.reference import ReferenceEvaluator

        a = ReferenceEvaluator(to_proto(original)).run(None, dict(feeds))
        b = ReferenceEvaluator(to_proto(result)).run(None, dict(feeds))
    except Exception:  # noqa: BLE001 - an op the evaluator lacks: no second opinion
        return False
    return not _compare_outputs(names, a, b, "reference")


def _compare_outputs(names: Sequence[str], ra: Sequence[Any], rb: Sequence[Any], where: str) -> list[str]:
    out: list[str] = []
    if len(ra) != len(rb):
        return [f"[mismatch] {len(rb)} outputs instead of {len(ra)} ({where})"]
    for name, x, y in zip(names, ra, rb):
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype != y.dtype:
            out.append(f"[mismatch] output {name!r}: dtype {y.dtype} instead of {x.dtype} ({where})")
        elif x.size == 0 and y.size == 0 and x.ndim == y.ndim:
            continue  # empty either way: onnxruntime picks the other dims of a Loop's zero-iteration scan output
        elif x.shape != y.shape:
            out.append(f"[mismatch] output {name!r}: shape {list(y.shape)} instead of {list(x.shape)} ({where})")
        elif x.dtype.kind in "fc":
            rtol, atol = ORACLE_TOLERANCE.get(x.dtype, (1e-4, 1e-5))
            xf, yf = x.astype(np.float64), y.astype(np.float64)
            finite = np.abs(xf[np.isfinite(xf)])
            scale = max(1.0, float(finite.max())) if finite.size else 1.0
            ok = np.isclose(yf, xf, rtol=rtol, atol=atol * scale, equal_nan=True)
            if x.dtype == np.float16:
                # a fused op computing in float32 (LayerNormalization's stash_type) does not overflow where the
                # spelled-out float16 form does: a finite result where the original overflowed is not a mismatch
                ok |= ~np.isfinite(xf) & np.isfinite(yf)
            if not ok.all():
                i = int(np.argmin(ok.reshape(-1)))
                out.append(f"[mismatch] output {name!r}: {int((~ok).sum())} of {ok.size} values differ, e.g. "
                           f"{yf.reshape(-1)[i]!r} instead of {xf.reshape(-1)[i]!r} ({where})")
        elif not np.array_equal(x, y):
            out.append(f"[mismatch] output {name!r}: values differ ({where})")
    return out


def _eval_dim(text: str, binding: Mapping[str, int]) -> int | None:
    """The size a rendered symbolic dim ("N", "2*N", "(N+1)//2") has under `binding`; None when it names a symbol
    the binding does not give."""
    import re

    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_.:]*", text))
    if not names <= set(binding) or not re.fullmatch(r"[A-Za-z0-9_+\-*/%() ]*", text):
        return None
    try:
        return int(eval(text, {"__builtins__": {}}, dict(binding)))  # only digits, names, + - * // % ( )
    except Exception:  # noqa: BLE001
        return None


def _symbol_problems(mp: onnx.ModelProto, model_bytes: bytes, bindings: Sequence[Mapping[str, int]],
                     seed: int) -> list[str]:
    """The shape symbols graphopt infers for the main graph's values against the shapes onnxruntime computes: each
    static dim exact, each dim over the input's dim names exact, and any other symbol one size per run."""
    from . import api

    m = serde.loads(model_bytes)
    try:
        api.run(m, preset="O0", strict=True, annotate_shapes=True)
    except Exception as e:  # noqa: BLE001
        return [f"[symbols] inferring shape symbols failed: {_first_line(e)}"]
    ann = to_proto(m)
    outputs = {o.name for o in mp.graph.output}
    produced = {o for n in mp.graph.node for o in n.output if o}
    declared: dict[str, tuple[int, list[Any]]] = {}
    for vi in ann.graph.value_info:
        if vi.name in produced and vi.name not in outputs and vi.type.HasField("tensor_type"):
            tt = vi.type.tensor_type
            if not tt.HasField("shape"):
                continue
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]
            declared[vi.name] = (tt.elem_type, dims)
    if not declared:
        return []
    probe = onnx.ModelProto()
    probe.CopyFrom(mp)
    names = sorted(declared)
    for name in names:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, declared[name][0], None))
    try:
        sess = session(probe)
    except Exception as e:  # noqa: BLE001
        return [(f"[symbols] onnxruntime refuses the model with the inferred types of its values as outputs "
                 f"(a wrong dtype?): {_first_line(e)}")]
    problems: list[str] = []
    k = len(mp.graph.output)
    for binding in bindings:
        feeds = random_inputs(mp, binding, seed=seed)
        try:
            got = _oracle_run(sess, feeds)[k:]
        except Exception:  # noqa: BLE001 - the original does not run with this binding
            continue
        sizes: dict[str, tuple[int, str]] = {}
        for name, arr in zip(names, got):
            arr = np.asarray(arr)
            dims = declared[name][1]
            if len(dims) != arr.ndim:
                problems.append(f"[symbols] {name!r}: rank {len(dims)} inferred, {arr.ndim} computed")
                continue
            if arr.size == 0:
                # an empty tensor's other dims are the runtime's choice where ONNX leaves them open (onnxruntime
                # gives a Loop's scan output of zero iterations the dims it can infer, 0 for a symbolic one)
                continue
            for i, (d, n) in enumerate(zip(dims, arr.shape)):
                if d is None:
                    continue
                if isinstance(d, int):
                    if d != n:
                        problems.append(f"[symbols] {name!r}: dim {i} inferred {d}, computed {n} "
                                        f"(shape {list(arr.shape)}, binding {dict(binding)})")
                    continue
                want = _eval_dim(d, binding)
                if want is not None and want != n:
                    problems.append(f"[symbols] {name!r}: dim {i} inferred {d} = {want}, computed {n} "
                                    f"(binding {dict(binding)})")
                elif want is None:
                    seen = sizes.setdefault(d, (n, name))
                    if seen[0] != n:
                        problems.append(f"[symbols] symbol {d!r} is {seen[0]} in {seen[1]!r} but {n} in {name!r} "
                                        f"(binding {dict(binding)})")
        if problems:
            break
    return problems[:5]


def check_pipeline(model_bytes: bytes, *, preset: str = "O2", seeds: Sequence[int] = (0, 1),
                   bindings: Sequence[Mapping[str, int]] | None = None, symbols: bool = True) -> list[str]:
    """Everything that must hold when graphopt's `preset` pipeline optimizes a valid model, as problems in words
    (empty when all hold). Each problem starts with its class in brackets:

    - ``[pipeline]`` a pass failed (the pipeline runs strictly, the IR verified after every pass, no validation);
    - ``[verify]`` / ``[gate]`` the result breaks the IR's invariants or graphopt's output gate (the interface: the
      same input and output names, dtypes, ranks and dim names);
    - ``[checker]`` onnx's checker (full check) rejects the result;
    - ``[load]`` onnxruntime cannot load the result; ``[run]`` it runs the original but not the result;
    - ``[mismatch]`` an output differs from the original's in onnxruntime (for each seed and each binding of the
      symbolic input dims: by default :func:`default_bindings`; tolerances :data:`ORACLE_TOLERANCE`, ints exact);
    - ``[rerun]`` a second run of the pipeline on the result fails;
    - ``[symbols]`` (with `symbols`) a shape symbol inferred for a main-graph value contradicts the shape
      onnxruntime computes for it.
    """
    from . import api
    from .pipeline import build_config
    from .validate.gate import interface_of, output_problems

    mp = onnx.ModelProto()
    mp.ParseFromString(model_bytes)
    bindings = list(bindings) if bindings is not None else default_bindings(mp)
    problems: list[str] = []
    model = serde.loads(model_bytes)
    before = interface_of(model)
    config = build_config(preset=preset, strict=True, use_pyproject=False)
    config.verify_each = True
    try:
        api.run(model, config=config)
    except Exception as e:  # noqa: BLE001
        return [f"[pipeline] {_first_line(e)}"]
    problems += [f"[verify] {p}" for p in verify(model, strict=False)[:3]]
    if not problems:
        problems += [f"[gate] {p}" for p in output_problems(model, before)]
    if problems:
        return problems
    data = serde.dumps(model)
    result = onnx.ModelProto()
    result.ParseFromString(data)
    try:
        onnx.checker.check_model(result, full_check=True)
    except Exception as e:  # noqa: BLE001
        problems.append(f"[checker] {_first_line(e)}")
    try:
        sb = session(data)
    except Exception as e:  # noqa: BLE001
        return problems + [f"[load] onnxruntime cannot load the result: {_first_line(e)}"]
    sa = session(model_bytes)
    out_names = [o.name for o in mp.graph.output]
    for binding in bindings:
        for seed in seeds:
            feeds = random_inputs(mp, binding, seed=seed)
            where = f"seed {seed}, binding {dict(binding)}"
            try:
                ra = _oracle_run(sa, feeds)
            except Exception:  # noqa: BLE001 - these inputs are not valid for the original: nothing to compare
                continue
            try:
                rb = _oracle_run(sb, feeds)
            except Exception as e:  # noqa: BLE001
                problems.append(f"[run] onnxruntime runs the original but not the result ({where}): {_first_line(e)}")
                continue
            found = _compare_outputs(out_names, ra, rb, where)
            if found and any(np.asarray(x).dtype == np.float16 for x in ra) and \
                    _reference_agrees(mp, result, feeds, out_names):
                found = []  # onnxruntime's float16 precision, not the rewrite (see _reference_agrees)
            problems += found
        if problems:
            break
    again = serde.loads(data)
    try:
        api.run(again, config=config)
    except Exception as e:  # noqa: BLE001
        problems.append(f"[rerun] a second run on the result failed: {_first_line(e)}")
    if symbols and not problems:
        problems += _symbol_problems(mp, model_bytes, bindings, seeds[0] if seeds else 0)
    return problems
