"""Reading and writing model files for a run: files, stdin and stdout, never losing the input.

Writes are atomic (see :func:`graphopt.ir.serde.save`): a temporary file in the target folder, then a rename."""

from __future__ import annotations

import os
import sys

from .errors import ModelReadError, OutputError, UsageError
from .ir import serde
from .ir.core import Model


def read_model(path: str) -> Model:
    """Load `path` ('-' is stdin)."""
    if path == "-":
        try:
            data = sys.stdin.buffer.read()
        except OSError as e:
            raise ModelReadError(f"<stdin>: cannot read: {e.strerror or e}") from e
        model = serde.loads(data, base_dir=os.getcwd(), path="<stdin>")
        model.meta["source_data"] = data  # stdin cannot be read twice: checks that need the bytes find them here
        return model
    return serde.load(path)


def default_output(in_path: str) -> str:
    """`<stem>.opt.onnx` beside the input; stdout for stdin."""
    if in_path == "-":
        return "-"
    d, base = os.path.split(in_path)
    stem = base[:-5] if base.lower().endswith(".onnx") else base
    return os.path.join(d, stem + ".opt.onnx")


def check_output_path(in_path: str, out_path: str, *, in_place: bool) -> None:
    """Refuse to overwrite the input unless --in-place; refuse directories."""
    if out_path == "-":
        return
    if os.path.isdir(out_path):
        raise UsageError(f"{out_path}: is a directory", hint="give a file name with -o, or use --out-dir")
    if in_path != "-" and os.path.exists(out_path) and os.path.exists(in_path):
        if os.path.samefile(in_path, out_path) and not in_place:
            raise UsageError(f"{out_path}: refusing to overwrite the input model",
                             hint="pass --in-place to replace the input, or choose another -o")


def write_model(model: Model, out_path: str, *, in_place: bool = False, data: bytes | None = None) -> int:
    """Write the model (atomically for files); returns the bytes written. `data`: the model's serialized bytes,
    when the caller has them (checked, say), reused where the writer would make the same."""
    if out_path == "-":
        data = serde.dumps(model, data)
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise OutputError(f"<stdout>: cannot write: {e.strerror or e}") from e
        return len(data)
    info = serde.save(model, out_path, in_place_ok=in_place, serialized=data)
    return info.bytes_written
