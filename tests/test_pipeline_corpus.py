"""Conformance: the whole -O2 pipeline over the ONNX corpus, with no validation or bisection behind it (a broken pass
fails here instead of being rolled back).

The corpus is every model under the onnx package's ``backend/test/data`` and every case of its node test suite.
For each case the pipeline runs strictly (a pass that raises fails the test), and then:

* the input gate (graphopt's structural checks and onnx's checker with strict inference) refuses none of the cases
  onnxruntime runs;
* the result passes graphopt's output gate: the IR's structure (SSA, acyclic, every read produced, every output
  produced) and the interface guard (same inputs and outputs, in order, same names, dtypes, ranks, dim names);
* the result passes onnx's checker (with strict shape inference) whenever the original does;
* whenever onnxruntime runs the original on the case's data, it runs the result too, and every output matches the
  case's reference output (or, where onnxruntime's own result for the original deviates from the reference, that
  result). Outputs of random ops are compared by kind (dtype, shape) only.

A case onnxruntime cannot run in its original form is excluded from the output comparison (the structural checks
above still apply). Each exclusion is listed with its reason in ``tests/corpus_exclusions.txt``; a case that
starts or stops running in onnxruntime fails its test until the table says so (with the onnx and onnxruntime
versions the table was made with; under other versions the table is only reported on). Rewrite the table with::

    python tests/test_pipeline_corpus.py --write-exclusions
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
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
from graphopt.errors import InvalidModelError
from graphopt.validate.gate import check_input, interface_of, output_problems

CASES = corpus_cases()
EXCLUSIONS_FILE = os.path.join(os.path.dirname(__file__), "corpus_exclusions.txt")

# element types numpy has no dtype of its own for (onnx uses ml_dtypes): fed and fetched by their bytes
_PACKED = {onnx.TensorProto.UINT4: 4, onnx.TensorProto.INT4: 4, onnx.TensorProto.FLOAT4E2M1: 4}
for _name in ("UINT2", "INT2"):
    if hasattr(onnx.TensorProto, _name):
        _PACKED[getattr(onnx.TensorProto, _name)] = 2
_CUSTOM = {onnx.TensorProto.BFLOAT16, *(getattr(onnx.TensorProto, n) for n in (
    "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT8E8M0") if hasattr(onnx.TensorProto, n)),
    *_PACKED}


# ------------------------------------------------------------------------------------------------------------------
# Running a corpus model in onnxruntime: feeds of every kind the suite uses, outputs of every element type
# ------------------------------------------------------------------------------------------------------------------
def _elem_type(type_proto: onnx.TypeProto) -> int | None:
    return type_proto.tensor_type.elem_type if type_proto.HasField("tensor_type") else None


def _feed(value: Any, elem_type: int | None) -> Any:
    import onnxruntime as ort

    if value is None or isinstance(value, (list, dict)):
        return value
    arr = np.asarray(value)  # a numpy scalar becomes a 0-d array (onnxruntime refuses scalars)
    if elem_type in _CUSTOM:
        bits = _PACKED.get(elem_type)
        if bits is None:
            raw = arr.view(np.uint16 if arr.dtype.itemsize == 2 else np.uint8)
        else:  # sub-byte types are stored packed, the first element in the low bits
            per = 8 // bits
            flat = arr.reshape(-1).view(np.uint8) & ((1 << bits) - 1)
            flat = np.concatenate([flat, np.zeros((-len(flat)) % per, np.uint8)]).reshape(-1, per)
            packed = np.bitwise_or.reduce(flat << (np.arange(per, dtype=np.uint8) * bits), axis=1).astype(np.uint8)
            # onnxruntime takes the shape from the array and copies the packed size from the start of its buffer
            raw = np.zeros(arr.size, np.uint8)
            raw[: len(packed)] = packed
            raw = raw.reshape(arr.shape)
        return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(np.ascontiguousarray(raw), elem_type)
    return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr))


def _fetch(value: Any, elem_type: int | None) -> Any:
    """An output OrtValue as numpy (ml_dtypes arrays for the types numpy lacks), a list, or None."""
    if isinstance(value, list):
        return [_fetch(v, elem_type) for v in value]
    if not hasattr(value, "is_tensor"):
        return value
    if not value.has_value():
        return None
    if value.is_tensor_sequence():
        return value.numpy()
    if elem_type not in _CUSTOM:
        return value.numpy()
    shape = value.shape()
    raw = np.frombuffer(ctypes.string_at(value.data_ptr(), value.tensor_size_in_bytes()), np.uint8)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type)
    n = int(np.prod(shape))
    bits = _PACKED.get(elem_type)
    if bits is None:
        return raw.view(dtype)[:n].reshape(shape)
    per = 8 // bits
    vals = (raw[:, None] >> (np.arange(per, dtype=np.uint8) * bits)) & ((1 << bits) - 1)
    return vals.reshape(-1)[:n].astype(np.uint8).view(dtype).reshape(shape)


class _Session:
    def __init__(self, data: bytes) -> None:
        mp = onnx.ModelProto()
        mp.ParseFromString(data)
        self.sess = session(data)
        self.in_types = {i.name: _elem_type(i.type) for i in mp.graph.input}
        self.out_types = [_elem_type(o.type) for o in mp.graph.output]

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        names = {i.name for i in self.sess.get_inputs()}
        feeds = {k: v for k, v in feeds.items() if k in names}
        if not (_CUSTOM & ({self.in_types.get(k) for k in feeds} | set(self.out_types))):
            # the plain API takes and returns everything else (strings, sequences, maps, optionals)
            return list(self.sess.run(None, {k: v if v is None or isinstance(v, (list, dict)) else np.asarray(v)
                                             for k, v in feeds.items()}))
        out = self.sess.run_with_ort_values(None, {k: _feed(v, self.in_types.get(k)) for k, v in feeds.items()})
        return [_fetch(v, t) for v, t in zip(out, self.out_types)]


def _reason(e: BaseException, stage: str) -> str:
    """Why onnxruntime cannot run a model, in one line that stays the same from run to run."""
    msg = str(e).replace("\n", " ")
    msg = re.sub(r"\[ONNXRuntimeError\] : \d+ : ", "", msg)
    msg = re.sub(r"/onnxruntime_src/\S+:\d+ ", "", msg)
    msg = re.sub(r"\bonnxruntime::[\w:<>&, ]*\(const [^)]*\)(::<lambda\(\)>)? ", "", msg)
    msg = re.sub(r"virtual [\w:]+ [\w:]+\([^)]*\)( const)? ", "", msg)
    msg = re.sub(r"\[with [^\]]*\] ", "", msg)
    msg = re.sub(r"Name:'[^']*' ", "", msg)
    msg = re.sub(r"\s+", " ", msg).strip()
    return f"{stage}: {msg[:160]}"


def _data_sets(case: CorpusCase, mp: onnx.ModelProto) -> list[tuple[list[Any], list[Any] | None]]:
    sets: list[tuple[list[Any], list[Any] | None]] = list(corpus_data_sets(case))
    if not sets:
        feeds = random_inputs(mp, seed=0)
        sets = [([feeds[i.name] for i in real_inputs(mp)], None)]
    return sets


def original_results(case: CorpusCase) -> tuple[list[tuple[dict[str, Any], list[Any], list[Any] | None]], str]:
    """onnxruntime's results for the original: [(feeds, outputs, reference)], or ([], why it cannot run it)."""
    data = corpus_model_bytes(case)
    mp = onnx.ModelProto()
    mp.ParseFromString(data)
    try:
        sess = _Session(data)
    except Exception as e:  # noqa: BLE001 - any refusal is the reason recorded for the exclusion
        return [], _reason(e, "onnxruntime cannot load it")
    names = [i.name for i in real_inputs(mp)]
    out = []
    for inputs, expected in _data_sets(case, mp):
        feeds = dict(zip(names, inputs))
        try:
            out.append((feeds, sess.run(feeds), expected))
        except Exception as e:  # noqa: BLE001
            return [], _reason(e, "onnxruntime cannot run it")
    return out, ""


# ------------------------------------------------------------------------------------------------------------------
# Comparing outputs
# ------------------------------------------------------------------------------------------------------------------
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
    if a.dtype.kind in "OUS" or b.dtype.kind in "OUS":
        return bool(np.array_equal(a, b))
    if a.dtype.kind == "c" or b.dtype.kind == "c":
        return bool(np.allclose(a.astype(np.complex128), b.astype(np.complex128), rtol=rtol, atol=atol,
                                equal_nan=True))
    if a.dtype.kind == "b" and b.dtype.kind == "b":
        return bool(np.array_equal(a, b))
    return bool(np.allclose(a.astype(np.float64), b.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True))


def _same_kind(a: Any, b: Any) -> bool:
    """For random ops: same structure, dtypes and shapes."""
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same_kind(x, y) for x, y in zip(a, b))
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype


def _ops(mp: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in mp.graph.node}


# ------------------------------------------------------------------------------------------------------------------
# The exclusion table
# ------------------------------------------------------------------------------------------------------------------
def _versions() -> str:
    import onnxruntime as ort

    return f"onnx {onnx.__version__}, onnxruntime {ort.__version__}"


def read_exclusions() -> tuple[str, dict[str, str]]:
    """(the versions the table was made with, {case id: reason})."""
    versions, table = "", {}
    with open(EXCLUSIONS_FILE, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("# made with "):
                versions = line[len("# made with "):]
            elif line and not line.startswith("#"):
                cid, _, why = line.partition("\t")
                table[cid] = why
    return versions, table


EXCLUDED_VERSIONS, EXCLUDED = read_exclusions()


def _disagree(message: str) -> None:
    if EXCLUDED_VERSIONS == _versions():
        pytest.fail(message + " (python tests/test_pipeline_corpus.py --write-exclusions)")


# ------------------------------------------------------------------------------------------------------------------
# The test
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_pipeline_keeps_outputs(case: CorpusCase) -> None:
    original = corpus_model_bytes(case)
    mp = onnx.ModelProto()
    mp.ParseFromString(original)
    model = serde.loads(original)
    try:  # the input gate, as a run passes it first
        check_input(model, data=original, name=case.id)
        refused = ""
    except InvalidModelError as e:
        refused = str(e)
    before = interface_of(model)
    result = graphopt.run(model, preset="O2", strict=True)
    assert not result.record.failed
    # graphopt's output gate: structure and interface
    assert output_problems(model, before) == []
    optimized = serde.dumps(model)
    opt_mp = onnx.ModelProto()
    opt_mp.ParseFromString(optimized)
    assert [o.name for o in opt_mp.graph.output] == [o.name for o in mp.graph.output]
    assert [i.name for i in real_inputs(opt_mp)] == [i.name for i in real_inputs(mp)]
    try:
        onnx.checker.check_model(mp, full_check=True)
        original_ok = True
    except Exception:  # noqa: BLE001 - the original decides what is expected of the result
        original_ok = False
    if original_ok:
        onnx.checker.check_model(opt_mp, full_check=True)

    runs, why = original_results(case)
    if not runs:
        if case.id not in EXCLUDED:
            _disagree(f"onnxruntime cannot run {case.id}'s original ({why}), and the exclusion table does not say so")
        pytest.skip(f"excluded from the output comparison: {why}")
    # the gate refuses no model onnxruntime runs
    assert not refused, f"the input gate refuses a model onnxruntime runs: {refused}"
    if case.id in EXCLUDED and "locale" not in EXCLUDED[case.id]:  # locales differ between machines
        _disagree(f"{case.id} is in the exclusion table ({EXCLUDED[case.id]}) but onnxruntime runs it now")
    opt = _Session(optimized)  # onnxruntime loads the result whenever it loads the original
    random_model = bool(_ops(mp) & RANDOM_OPS)
    for feeds, got_orig, expected in runs:
        got_opt = opt.run(feeds)
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


def test_exclusion_table_names_corpus_cases() -> None:
    """Every excluded case exists, and each has a reason."""
    ids = {c.id for c in CASES}
    assert set(EXCLUDED) <= ids, sorted(set(EXCLUDED) - ids)[:5]
    assert all(EXCLUDED.values())
    assert EXCLUDED_VERSIONS, "the table names the onnx and onnxruntime versions it was made with"


def write_exclusions() -> None:
    rows = []
    for case in CASES:
        runs, why = original_results(case)
        if not runs:
            rows.append(f"{case.id}\t{why}")
    header = [
        "# Corpus cases excluded from tests/test_pipeline_corpus.py's output comparison, with the reason: onnxruntime",
        "# cannot load or run the original model. The pipeline still runs on them, and the structural checks apply.",
        f"# {len(CASES)} cases, {len(rows)} excluded, {len(CASES) - len(rows)} compared.",
        f"# made with {_versions()}",
    ]
    with open(EXCLUSIONS_FILE, "w", encoding="utf-8") as f:
        f.write("\n".join(header + rows) + "\n")
    print(f"{len(rows)} of {len(CASES)} cases excluded; written to {EXCLUSIONS_FILE}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-exclusions"]:
        write_exclusions()
    else:
        sys.exit("usage: python tests/test_pipeline_corpus.py --write-exclusions")
