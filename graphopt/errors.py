"""graphopt's own errors. Every error carries a message for a person, a hint, and a stable exit code.

The exit codes are part of the command-line contract (README.md documents them in one table):

====  ===========================================================================================
code  meaning
====  ===========================================================================================
0     success
1     validation mismatch: the optimized model computes different outputs
2     usage error: bad flags, unknown pass or option, bad config file
3     invalid input model: missing, unreadable, not ONNX, rejected by the checker, unsupported
      IR version or opset, missing external data
4     a pass failed and ``--strict`` was given
5     internal error (a bug in graphopt; please report it)
6     output error: the result could not be written (permission denied, disk full, ...)
7     out of memory
8     ``check --fail-if-optimizable``: the model is valid but graphopt would still change it
130   interrupted (SIGINT): no partial output, no temporary file left
143   terminated (SIGTERM): the same
====  ===========================================================================================
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_USAGE = 2
EXIT_INVALID_MODEL = 3
EXIT_PASS_FAILED = 4
EXIT_INTERNAL = 5
EXIT_OUTPUT = 6
EXIT_OOM = 7
EXIT_OPTIMIZABLE = 8
EXIT_INTERRUPTED = 130   # SIGINT (Ctrl-C): 128 + the signal number, as shells report it
EXIT_TERMINATED = 143    # SIGTERM

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_MISMATCH: "validation mismatch: the optimized model computes different outputs",
    EXIT_USAGE: "usage error: bad flags, unknown pass or option, bad config file",
    EXIT_INVALID_MODEL: "invalid input model: missing, unreadable, not ONNX, rejected by the checker, "
                        "unsupported IR version or opset, missing external data",
    EXIT_PASS_FAILED: "a pass failed and --strict was given",
    EXIT_INTERNAL: "internal error (a bug in graphopt)",
    EXIT_OUTPUT: "the result could not be written (permission denied, disk full, ...)",
    EXIT_OOM: "out of memory",
    EXIT_OPTIMIZABLE: "check --fail-if-optimizable: graphopt would still change the model",
    EXIT_INTERRUPTED: "interrupted (SIGINT, Ctrl-C): no partial output or temporary file is left",
    EXIT_TERMINATED: "terminated (SIGTERM): no partial output or temporary file is left",
}


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived. A KeyboardInterrupt, so that every layer that lets Ctrl-C through (rolling a
    pass back, deleting temporary files) handles a termination request the same way."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class GraphoptError(Exception):
    """Base of graphopt's errors: `message` for a person, `hint` on what to do, `exit_code` for the shell."""

    exit_code: int = EXIT_INTERNAL
    default_hint: str = ""
    kind: str = "error"

    def __init__(self, message: str, *, hint: str | None = None, path: str | None = None,
                 details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.path = path
        self.details = details or {}

    def one_line(self) -> str:
        """`path: message` (the path only when known and not already in the message)."""
        msg = " ".join(self.message.split())
        if self.path and self.path not in msg:
            return f"{self.path}: {msg}"
        return msg

    def to_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "kind": self.kind, "message": self.message, "hint": self.hint,
                "exit_code": self.exit_code, "path": self.path, **({"details": self.details} if self.details else {})}


class UsageError(GraphoptError):
    exit_code = EXIT_USAGE
    kind = "usage"


class ConfigError(UsageError):
    kind = "config"
    default_hint = "check the pass names and options with `graphopt passes`"


# -- input model ------------------------------------------------------------------------------------------------
class ModelError(GraphoptError):
    """The input model cannot be used."""

    exit_code = EXIT_INVALID_MODEL
    kind = "model"


class ModelNotFoundError(ModelError):
    default_hint = "check the path"


class ModelReadError(ModelError):
    """The file exists but cannot be read (permission, directory, I/O error)."""

    default_hint = "check that the path is a readable file"


class ModelDecodeError(ModelError):
    """The bytes are not a valid serialized ONNX model (truncated, corrupted, or another format)."""

    default_hint = "the file is truncated, corrupted, or not an ONNX model; re-export or re-download it"


class NotOnnxError(ModelDecodeError):
    default_hint = "graphopt reads ONNX model files (.onnx), as written by torch.onnx.export, tf2onnx and others"


class InvalidModelError(ModelError):
    """The model decodes but breaks ONNX rules (checker, shape inference, graph structure)."""

    default_hint = "run `python -m onnx.checker MODEL` or re-export the model; `--no-check` skips the check"


class ShapeInferenceError(InvalidModelError):
    default_hint = "the model's shapes are inconsistent; re-export it (--no-check skips onnx's checker)"


class UnsupportedModelError(ModelError):
    default_hint = "upgrade graphopt/onnx, or convert the model with onnx.version_converter"


class ExternalDataError(ModelError):
    default_hint = "keep the model's external data files beside it, with the names the model records"


# -- output -----------------------------------------------------------------------------------------------------
class OutputError(GraphoptError):
    exit_code = EXIT_OUTPUT
    kind = "output"
    default_hint = "check the output path, its folder's permissions and the free disk space"


# -- passes and validation --------------------------------------------------------------------------------------
class PassError(GraphoptError):
    """A pass raised. The pipeline rolls the pass back and goes on unless --strict."""

    exit_code = EXIT_PASS_FAILED
    kind = "pass"
    default_hint = "the pass was rolled back; skip it with --skip PASS, or report the model"

    def __init__(self, message: str, *, pass_name: str = "", node: str | None = None, step: str | None = None,
                 **kw: Any):
        super().__init__(message, **kw)
        self.pass_name = pass_name
        self.node = node
        self.step = step

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.update(pass_name=self.pass_name, node=self.node, step=self.step)
        return d


class ValidationMismatch(GraphoptError):
    exit_code = EXIT_MISMATCH
    kind = "mismatch"
    default_hint = "graphopt disabled the culprit pass; report the model, or skip that pass with --skip"


class RuntimeUnavailable(GraphoptError):
    """onnxruntime cannot load or run a model (so validation cannot happen)."""

    exit_code = EXIT_INVALID_MODEL
    kind = "runtime"
    default_hint = "onnxruntime cannot run this model (custom ops, too-new opset?); validation is skipped"


class ResourceError(GraphoptError):
    exit_code = EXIT_OOM
    kind = "resource"
    default_hint = "the model is too large for the available memory; close other programs or raise limits"


class OptimizableError(GraphoptError):
    exit_code = EXIT_OPTIMIZABLE
    kind = "optimizable"
    default_hint = "run `graphopt optimize` on the model and commit the result"


class InternalError(GraphoptError):
    exit_code = EXIT_INTERNAL
    kind = "internal"
    default_hint = "this is a bug in graphopt; rerun with --debug and report the traceback"


def os_error(e: OSError, path: str | None, *, writing: bool) -> GraphoptError:
    """The graphopt error for an OS error met while reading a model (`writing` False) or writing a result."""
    import errno

    where = f"{path}: " if path else ""
    code = e.errno
    if writing or code == errno.ENOSPC:
        if code == errno.ENOSPC:
            return OutputError(f"{where}no space left on the device", path=path,
                               hint="free some disk space (temporary files too) or write to another disk")
        if code in (errno.EACCES, errno.EPERM):
            return OutputError(f"{where}permission denied", path=path,
                               hint="choose an output folder you can write to")
        if code == errno.EROFS:
            return OutputError(f"{where}read-only file system", path=path)
        if code == errno.ENOENT:
            return OutputError(f"{where}the output folder does not exist", path=path,
                               hint="create the folder first")
        if code == errno.EISDIR:
            return OutputError(f"{where}is a directory", path=path, hint="give a file name for the output")
        return OutputError(f"{where}cannot write: {e.strerror or e}", path=path)
    if isinstance(e, FileNotFoundError) or code == errno.ENOENT:
        return ModelNotFoundError(f"{where}no such file", path=path)
    if isinstance(e, PermissionError) or code in (errno.EACCES, errno.EPERM):
        return ModelReadError(f"{where}permission denied", path=path, hint="check the file's permissions")
    if isinstance(e, IsADirectoryError) or code == errno.EISDIR:
        return ModelReadError(f"{where}is a directory, not a model file", path=path)
    return ModelReadError(f"{where}cannot read: {e.strerror or e}", path=path)
