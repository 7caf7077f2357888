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


# ----------------------------------------------------------------------------------------------------------------
# Shards: one CI matrix job's part of many models
# ----------------------------------------------------------------------------------------------------------------
def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N), with 1 <= K <= N (K is 1-based, as CI matrices count)."""
    k, sep, n = text.strip().partition("/")
    try:
        ki, ni = int(k), int(n)
    except ValueError:
        ki = ni = 0
    if not sep or ni < 1 or not 1 <= ki <= ni:
        raise UsageError(f"--shard {text!r}: expected K/N with 1 <= K <= N", hint="e.g. --shard 2/4 for the second "
                         "of four CI jobs")
    return ki, ni


def shard_key(path: str, cwd: str | None = None) -> str:
    """The name a model is sharded by: its path relative to `cwd` (default: the current folder) when it lies
    inside it, else its absolute path; normalized, with '/' separators, so that `./m.onnx`, `m.onnx` and its
    absolute path are one model on every machine and operating system."""
    base = os.path.abspath(cwd or os.getcwd())
    p = os.path.normpath(os.path.join(base, path))
    try:
        rel = os.path.relpath(p, base)
    except ValueError:  # another drive (Windows)
        rel = p
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        rel = p
    return rel.replace(os.sep, "/")


def select_shard(paths: list[str], k: int, n: int, cwd: str | None = None) -> list[str]:
    """The models of shard `k` of `n` (1-based), in the order given.

    The models are ordered by :func:`shard_key` (code-point order: the same on every machine, Python version and
    locale, and whatever order the shell listed them in) and dealt out in turn: model i of that order goes to
    shard ``i % n + 1``. So N jobs given the same list (the same glob over the same checkout) cover every model
    exactly once, and their shares differ by at most one model. A model named twice (``m.onnx`` and ``./m.onnx``)
    counts once, under its first name."""
    if "-" in paths:
        raise UsageError("--shard splits model files; stdin ('-') cannot be sharded")
    first: dict[str, int] = {}
    for i, p in enumerate(paths):
        first.setdefault(shard_key(p, cwd), i)
    mine = {i for pos, (_key, i) in enumerate(sorted(first.items())) if pos % n == k - 1}
    return [p for i, p in enumerate(paths) if i in mine]
