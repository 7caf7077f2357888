"""Exception translators: each foreign error becomes a graphopt error with a message, a hint and an exit code.

Wherever the library can really raise it, the foreign error is produced for real (a truncated file, a model the
checker rejects, an onnxruntime failure); the few onnxruntime classes that cannot be provoked on a CPU build are
instantiated directly.
"""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import onnx
import onnx.checker
import onnx.parser
import onnx.shape_inference
import onnxruntime as ort
import pytest

from graphopt import errors as E
from graphopt.ir import serde
from graphopt.jit import init
from graphopt.jit.translators import TranslatorRegistry, install_defaults, ort_error_classes
from graphopt.pipeline import PipelineConfig


@pytest.fixture(scope="module")
def reg() -> TranslatorRegistry:
    return init(None, PipelineConfig(passes=[]), plugins=False).translators


def _capture(fn) -> BaseException:  # type: ignore[no-untyped-def]
    try:
        fn()
    except BaseException as e:  # noqa: BLE001
        return e
    raise AssertionError("expected an exception")


GOOD = onnx.parser.parse_model("""
<ir_version: 8, opset_import: ["" : 17]>
g (float[2, 3] x) => (float[2, 3] y) { y = Relu(x) }
""")


def test_truncated_file_is_a_decode_error(tmp_path: Path, reg: TranslatorRegistry) -> None:
    p = tmp_path / "t.onnx"
    data = GOOD.SerializeToString()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(E.ModelDecodeError) as ei:
        with reg.guard("load", path=str(p)):
            serde.load(p)
    assert ei.value.exit_code == 3 and str(p) in ei.value.one_line() and ei.value.hint


def test_protobuf_decode_error_raw(reg: TranslatorRegistry) -> None:
    e = _capture(lambda: onnx.ModelProto().ParseFromString(b"\x0a\xff\xff\xff"))
    err = reg.translate(e, stage="load", path="m.onnx")
    assert isinstance(err, E.ModelDecodeError) and err.exit_code == 3 and err.path == "m.onnx"


@pytest.mark.parametrize("data", [b"", b"hello, this is not a model at all \x00\x01", bytes(range(256)) * 4])
def test_not_an_onnx_model(data: bytes, tmp_path: Path) -> None:
    p = tmp_path / "x.onnx"
    p.write_bytes(data)
    with pytest.raises(E.ModelDecodeError) as ei:
        serde.load(p)
    assert ei.value.exit_code == 3 and "\n" not in ei.value.one_line()


def test_checker_error(reg: TranslatorRegistry) -> None:
    bad = onnx.ModelProto()
    bad.CopyFrom(GOOD)
    bad.graph.node[0].input[0] = "nowhere"
    e = _capture(lambda: onnx.checker.check_model(bad))
    assert isinstance(e, onnx.checker.ValidationError)
    err = reg.translate(e, stage="check")
    assert isinstance(err, E.InvalidModelError) and err.exit_code == 3 and "checker" in err.message


def test_unsupported_opset_and_ir_version(reg: TranslatorRegistry, tmp_path: Path) -> None:
    m = onnx.ModelProto()
    m.CopyFrom(GOOD)
    m.opset_import[0].version = 999
    p = tmp_path / "new_opset.onnx"
    p.write_bytes(m.SerializeToString())
    with pytest.raises(E.UnsupportedModelError, match="opset 999") as ei:
        serde.load(p)
    assert ei.value.exit_code == 3
    e = _capture(lambda: _session(m.SerializeToString()))  # onnxruntime refuses it too
    assert reg.translate(e, stage="validate").kind != "internal"
    m.opset_import[0].version = 17
    m.ir_version = onnx.IR_VERSION + 5
    p.write_bytes(m.SerializeToString())
    with pytest.raises(E.UnsupportedModelError, match="ir_version"):
        serde.load(p)
    e = _capture(lambda: onnx.checker.check_model(m))
    assert isinstance(reg.translate(e, stage="check"), E.ModelError)


def test_shape_inference_error(reg: TranslatorRegistry) -> None:
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2, 3] x, float[4, 5] z) => (float[2, 5] y) { y = MatMul(x, z) }
    """)
    e = _capture(lambda: onnx.shape_inference.infer_shapes(m, strict_mode=True))
    assert isinstance(e, onnx.shape_inference.InferenceError)
    err = reg.translate(e, stage="infer")
    assert isinstance(err, E.ShapeInferenceError) and err.exit_code == 3


def _session(data: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def test_ort_invalid_protobuf(reg: TranslatorRegistry) -> None:
    e = _capture(lambda: _session(b"garbage bytes"))
    err = reg.translate(e, stage="validate")
    assert isinstance(err, (E.RuntimeUnavailable, E.ModelDecodeError))
    assert "onnxruntime" in err.message


def test_ort_no_such_file(reg: TranslatorRegistry, tmp_path: Path) -> None:
    e = _capture(lambda: ort.InferenceSession(str(tmp_path / "missing.onnx"), providers=["CPUExecutionProvider"]))
    err = reg.translate(e, stage="validate")
    assert isinstance(err, E.GraphoptError) and err.kind != "internal"


def test_ort_invalid_graph(reg: TranslatorRegistry) -> None:
    m = onnx.ModelProto()
    m.CopyFrom(GOOD)
    m.graph.node[0].op_type = "NoSuchOperatorAnywhere"
    e = _capture(lambda: _session(m.SerializeToString()))
    err = reg.translate(e, stage="validate")
    assert isinstance(err, E.RuntimeUnavailable) and err.details["ort_error"] in ("InvalidGraph", "Fail",
                                                                                   "NotImplemented")
    err = reg.translate(e, stage="load")
    assert err.exit_code == 3


def test_ort_invalid_argument_and_runtime_failure(reg: TranslatorRegistry) -> None:
    s = _session(GOOD.SerializeToString())
    e = _capture(lambda: s.run(None, {"x": np.zeros((7, 7), np.float32)}))
    err = reg.translate(e, stage="validate")
    assert isinstance(err, E.RuntimeUnavailable) and err.details["ort_error"] == "InvalidArgument"
    rm = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N] x, int64[1] s) => (float[M] y) { y = Reshape(x, s) }
    """)
    s2 = _session(rm.SerializeToString())
    e = _capture(lambda: s2.run(None, {"x": np.zeros(6, np.float32), "s": np.array([4], np.int64)}))
    err = reg.translate(e, stage="validate")
    assert isinstance(err, E.RuntimeUnavailable) and err.details["ort_error"] in ("RuntimeException", "Fail")


def test_ort_not_implemented(reg: TranslatorRegistry) -> None:
    # a standard op with a type onnxruntime's CPU provider has no kernel for
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (string[2] x) => (string[2] y) { y = Neg(x) }
    """)
    e = _capture(lambda: _session(m.SerializeToString()))
    err = reg.translate(e, stage="validate")
    assert isinstance(err, E.RuntimeUnavailable)


@pytest.mark.parametrize("kind", sorted(ort_error_classes()))
def test_every_ort_error_class_is_translated(kind: str, reg: TranslatorRegistry) -> None:
    cls = ort_error_classes()[kind]
    err = reg.translate(cls(f"[ONNXRuntimeError] : 1 : FAIL : something about {kind}"), stage="validate")
    assert err.kind != "internal", kind
    assert isinstance(err, E.GraphoptError) and err.hint is not None and "something about" in err.message


@pytest.mark.parametrize("exc,stage,cls,code", [
    (FileNotFoundError(errno.ENOENT, "No such file", "m.onnx"), "load", E.ModelNotFoundError, 3),
    (PermissionError(errno.EACCES, "Permission denied", "m.onnx"), "load", E.ModelReadError, 3),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "m.onnx"), "load", E.ModelReadError, 3),
    (PermissionError(errno.EACCES, "Permission denied", "out.onnx"), "save", E.OutputError, 6),
    (OSError(errno.ENOSPC, "No space left on device", "out.onnx"), "save", E.OutputError, 6),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "out"), "save", E.OutputError, 6),
    (MemoryError(), "pass", E.ResourceError, 7),
    (RecursionError("maximum recursion depth exceeded"), "load", E.InternalError, 5),
    (KeyError("boom"), "pass", E.InternalError, 5),
])
def test_os_and_memory_errors(exc: BaseException, stage: str, cls: type, code: int, reg: TranslatorRegistry) -> None:
    err = reg.translate(exc, stage=stage)
    assert isinstance(err, cls) and err.exit_code == code and err.message and err.hint


def test_real_os_errors_at_load(tmp_path: Path) -> None:
    with pytest.raises(E.ModelNotFoundError):
        serde.load(tmp_path / "missing.onnx")
    with pytest.raises(E.ModelReadError, match="directory"):
        serde.load(tmp_path)


def test_missing_external_data(tmp_path: Path) -> None:
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4] x) => (float[4] y) { y = Add(x, w) }
    """)
    m.graph.initializer.append(onnx.numpy_helper.from_array(np.arange(4, dtype=np.float32), "w"))
    onnx.save(m, str(tmp_path / "m.onnx"), save_as_external_data=True, location="m.data",
              size_threshold=0)
    (tmp_path / "m.data").unlink()
    model = serde.load(tmp_path / "m.onnx")  # lazy: loading does not need the data
    with pytest.raises(E.ExternalDataError) as ei:
        model.graph.initializers["w"].const.numpy()
    assert "m.data" in ei.value.message and ei.value.exit_code == 3


def test_guard_passes_graphopt_errors_and_interrupts() -> None:
    reg = TranslatorRegistry()
    install_defaults(reg)
    with pytest.raises(E.UsageError):
        with reg.guard("cli"):
            raise E.UsageError("x")
    with pytest.raises(KeyboardInterrupt):
        with reg.guard("cli"):
            raise KeyboardInterrupt
    with pytest.raises(E.InternalError) as ei:
        with reg.guard("pass"):
            raise ValueError("bad")
    assert isinstance(ei.value.__cause__, ValueError)
