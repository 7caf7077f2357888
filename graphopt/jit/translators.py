"""Exception translators: foreign errors in, graphopt errors out.

A :class:`TranslatorRegistry` maps exception types (protobuf, onnx checker and shape inference, every onnxruntime
error class, the OS, memory) to functions that build a :class:`~graphopt.errors.GraphoptError` with a message for
a person, a hint and a stable exit code. The most specific registered type along the exception's MRO wins. The
registry is per context: a plugin or a test may add or override translators without touching anyone else's.

``guard(stage, path=...)`` applies the table around a block: at load and save, around each pass, around
validation, and at the CLI boundary. The `stage` picks the right error where the same foreign error means different
things (a missing file at load is a bad input; at save it is an output problem).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import (
    ExternalDataError,
    GraphoptError,
    InternalError,
    InvalidModelError,
    ModelDecodeError,
    OutputError,
    ResourceError,
    RuntimeUnavailable,
    ShapeInferenceError,
    UnsupportedModelError,
    os_error,
)

STAGES = ("load", "save", "check", "pass", "validate", "cli", "infer")


@dataclass
class TranslateContext:
    stage: str
    path: str | None = None


Translator = Callable[[BaseException, TranslateContext], "GraphoptError | None"]


@dataclass
class _Entry:
    exc_type: type
    fn: Translator
    name: str


class TranslatorRegistry:
    """Per-context table of exception translators."""

    def __init__(self) -> None:
        self._by_type: dict[type, _Entry] = {}
        self._deferred: list[tuple[str, list[str], Callable[[TranslatorRegistry], None]]] = []

    def register(self, exc_type: type, fn: Translator, *, name: str | None = None) -> None:
        self._by_type[exc_type] = _Entry(exc_type, fn, name or exc_type.__name__)

    def defer(self, module: str, names: Sequence[str], loader: Callable[[TranslatorRegistry], None]) -> None:
        """Translators for the exception classes of `module` (onnx, onnxruntime), registered by `loader(self)`
        only once `module` has been imported by someone else: an exception of its classes cannot exist before,
        and importing it here would cost every command its start-up time. `names` are the names `loader`
        registers (listed by :meth:`names` meanwhile)."""
        self._deferred.append((module, list(names), loader))

    def _load_deferred(self) -> None:
        pending = self._deferred
        if not pending:
            return
        self._deferred = [d for d in pending if d[0] not in sys.modules]
        for module, _names, loader in pending:
            if module in sys.modules:
                loader(self)

    def __len__(self) -> int:
        return len(self._by_type) + sum(len(d[1]) for d in self._deferred)

    def names(self) -> list[str]:
        return [e.name for e in self._by_type.values()] + [n for d in self._deferred for n in d[1]]

    def translate(self, exc: BaseException, *, stage: str = "cli", path: str | None = None) -> GraphoptError:
        """The graphopt error for `exc` (graphopt errors pass through, with the path filled in)."""
        if isinstance(exc, GraphoptError):
            if path and not exc.path:
                exc.path = path
            return exc
        self._load_deferred()
        tctx = TranslateContext(stage, path)
        for t in type(exc).__mro__:
            e = self._by_type.get(t)
            if e is None:
                continue
            out = e.fn(exc, tctx)
            if out is not None:
                if path and not out.path:
                    out.path = path
                out.__cause__ = exc
                return out
        err = InternalError(f"unexpected {type(exc).__name__}: {_first_line(exc)}", path=path)
        err.__cause__ = exc
        return err

    @contextlib.contextmanager
    def guard(self, stage: str, *, path: str | None = None) -> Iterator[None]:
        """Translate any foreign exception raised in the block (KeyboardInterrupt and SystemExit pass)."""
        try:
            yield
        except GraphoptError as e:
            if path and not e.path:
                e.path = path
            raise
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as e:  # noqa: BLE001 - that is the point of a translator
            raise self.translate(e, stage=stage, path=path) from e


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    # onnxruntime and onnx messages can run to pages; the first meaningful line is what a person needs
    lines = [ln.strip() for ln in s.splitlines() if ln.strip()]
    s = lines[0] if lines else type(e).__name__
    return s if len(s) <= 400 else s[:397] + "..."


def _where(t: TranslateContext) -> str:
    return f"{t.path}: " if t.path else ""


# ---------------------------------------------------------------------------------------------------------------
# The default table
# ---------------------------------------------------------------------------------------------------------------
def _os_error(e: BaseException, t: TranslateContext) -> GraphoptError:
    assert isinstance(e, OSError)
    return os_error(e, getattr(e, "filename", None) or t.path, writing=t.stage == "save")


def _decode_error(e: BaseException, t: TranslateContext) -> GraphoptError:
    return ModelDecodeError(f"{_where(t)}not a valid ONNX model (protobuf decoding failed: truncated or "
                            f"corrupted file?)")


def _checker_error(e: BaseException, t: TranslateContext) -> GraphoptError:
    msg = _first_line(e)
    low = msg.lower()
    if "ir_version" in low and ("unsupported" in low or "higher" in low or "newer" in low):
        return UnsupportedModelError(f"{_where(t)}unsupported IR version: {msg}")
    if "opset" in low and ("unsupported" in low or "higher" in low or "not supported" in low
                           or "newer" in low):
        return UnsupportedModelError(f"{_where(t)}unsupported opset: {msg}")
    if "external" in low and ("data" in low or "file" in low):
        return ExternalDataError(f"{_where(t)}external data problem: {msg}")
    return InvalidModelError(f"{_where(t)}the ONNX checker rejects the model: {msg}")


def _inference_error(e: BaseException, t: TranslateContext) -> GraphoptError:
    return ShapeInferenceError(f"{_where(t)}shape inference failed: {_first_line(e)}")


def _memory_error(e: BaseException, t: TranslateContext) -> GraphoptError:
    return ResourceError(f"{_where(t)}out of memory during {t.stage}")


def _recursion_error(e: BaseException, t: TranslateContext) -> GraphoptError:
    return InternalError(f"{_where(t)}the model is nested too deeply to process (recursion limit)",
                         hint="this is a limit of graphopt; please report the model")


_ORT_KINDS = {
    # onnxruntime error class -> (what it means, hint)
    "Fail": ("onnxruntime failed", "onnxruntime cannot handle this model"),
    "InvalidArgument": ("onnxruntime rejected an argument", "check input names, dtypes and shapes"),
    "NoSuchFile": ("onnxruntime could not find a file", "check the model path and its external data files"),
    "NoModel": ("onnxruntime found no model", "the file is not a loadable ONNX model"),
    "EngineError": ("onnxruntime engine error", "onnxruntime cannot run this model"),
    "RuntimeException": ("onnxruntime runtime failure", "the model failed while running in onnxruntime"),
    "InvalidProtobuf": ("onnxruntime could not parse the model", "the model file is corrupted or truncated"),
    "ModelLoaded": ("onnxruntime: model already loaded", "this is a bug in graphopt"),
    "NotImplemented": ("onnxruntime does not implement an operator of this model",
                       "the model uses an operator or type onnxruntime lacks (custom op? too-new opset?)"),
    "InvalidGraph": ("onnxruntime rejects the graph", "the model breaks ONNX rules onnxruntime enforces"),
    "EPFail": ("an onnxruntime execution provider failed", "try the CPU execution provider"),
    "ModelLoadCanceled": ("onnxruntime model loading was cancelled", ""),
    "ModelRequiresCompilation": ("onnxruntime: the model requires compilation", ""),
    "NotFound": ("onnxruntime: not found", ""),
    "DeviceReset": ("onnxruntime: the device was reset", "retry on the CPU execution provider"),
}


# onnxruntime reports a model that breaks ONNX rules (types or shapes that contradict each other) with its generic
# FAIL class; these words in the message make it an invalid model rather than one onnxruntime cannot run
_ORT_INVALID = ("[ShapeInferenceError]", "[TypeInferenceError]", "This is an invalid model", "Type Error:",
                "Duplicate definition", "SSA form")
# ... unless the message is about what onnxruntime lacks: a custom op, a kernel, an opset it does not know yet
_ORT_UNSUPPORTED = ("is not a registered function/op", "No Op registered", "Could not find an implementation",
                    "NOT_IMPLEMENTED", "is under development", "not supported", "Unsupported")


def _ort_says_invalid(msg: str) -> bool:
    return any(w in msg for w in _ORT_INVALID)


def _ort_lacks_support(msg: str) -> bool:
    return any(w in msg for w in _ORT_UNSUPPORTED)


def _ort_translator(kind: str) -> Translator:
    what, hint = _ORT_KINDS.get(kind, ("onnxruntime error", ""))

    def fn(e: BaseException, t: TranslateContext) -> GraphoptError:
        msg = _first_line(e)
        # onnxruntime prefixes messages with "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : "; keep the substance
        if "] : " in msg:
            msg = msg.rsplit(" : ", 1)[-1]
        if t.stage in ("load", "check") and kind in ("InvalidProtobuf", "NoModel"):
            return ModelDecodeError(f"{_where(t)}{what}: {msg}", hint=hint or None)
        if t.stage in ("load", "check") and not _ort_lacks_support(msg):
            if kind == "InvalidGraph":
                return InvalidModelError(f"{_where(t)}{what}: {msg}", hint=hint or None)
            if _ort_says_invalid(msg):
                return InvalidModelError(f"{_where(t)}onnxruntime refuses the model: {msg}",
                                         hint="the model breaks ONNX rules that onnxruntime enforces; re-export it")
        err = RuntimeUnavailable(f"{_where(t)}{what}: {msg}", hint=hint or None)
        err.details["ort_error"] = kind
        return err

    return fn


def install_defaults(reg: TranslatorRegistry) -> None:
    """Fill `reg` with graphopt's standard translators."""
    reg.register(OSError, _os_error, name="OSError")
    reg.register(MemoryError, _memory_error, name="MemoryError")
    reg.register(RecursionError, _recursion_error, name="RecursionError")
    try:
        from google.protobuf.message import DecodeError, EncodeError

        reg.register(DecodeError, _decode_error, name="protobuf.DecodeError")
        reg.register(EncodeError, lambda e, t: OutputError(
            f"{_where(t)}the model cannot be serialized ({_first_line(e)}); it may be over protobuf's 2 GB limit",
            hint="write to a file so that large tensors go to external data"), name="protobuf.EncodeError")
    except ImportError:  # pragma: no cover - protobuf comes with onnx
        pass
    # onnx and onnxruntime take a second or more to import: their translators wait until they are imported
    reg.defer("onnx", ["onnx.checker.ValidationError", "onnx.shape_inference.InferenceError"], _install_onnx)
    reg.defer("onnxruntime", [f"onnxruntime.{kind}" for kind in _ORT_KINDS], _install_ort)


def _install_onnx(reg: TranslatorRegistry) -> None:
    try:
        import onnx.checker
        import onnx.shape_inference

        reg.register(onnx.checker.ValidationError, _checker_error, name="onnx.checker.ValidationError")
        reg.register(onnx.shape_inference.InferenceError, _inference_error, name="onnx.shape_inference.InferenceError")
    except (ImportError, AttributeError):  # pragma: no cover
        pass


def _install_ort(reg: TranslatorRegistry) -> None:
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

        for kind in _ORT_KINDS:
            cls = getattr(ort_state, kind, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                reg.register(cls, _ort_translator(kind), name=f"onnxruntime.{kind}")
    except ImportError:  # pragma: no cover
        pass


def ort_error_classes() -> dict[str, type]:
    """The onnxruntime error classes present in the installed onnxruntime (for tests and docs)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

    out: dict[str, Any] = {}
    for kind in _ORT_KINDS:
        cls = getattr(ort_state, kind, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            out[kind] = cls
    return out
