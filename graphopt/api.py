"""The library's front door: load, optimize, save, without the CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .ir import serde
from .ir.core import Model
from .jit.context import JitContext, init
from .passes.base import PipelineRecord
from .pipeline import PipelineConfig, build_config


def load(source: str | os.PathLike[str] | bytes | Any) -> Model:
    """Load a model from a path, serialized bytes, or an onnx.ModelProto (copied)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return serde.loads(bytes(source), base_dir=os.getcwd())
    if isinstance(source, (str, os.PathLike)):
        return serde.load(source)
    import onnx

    if isinstance(source, onnx.ModelProto):
        return serde.from_proto(source)
    raise TypeError(f"cannot load a model from {type(source).__name__}")


def save(model: Model, path: str | os.PathLike[str], **kw: Any) -> serde.SaveInfo:
    """Write a model atomically (see :func:`graphopt.ir.serde.save`)."""
    return serde.save(model, path, **kw)


@dataclass
class OptimizeResult:
    model: Model
    record: PipelineRecord
    ctx: JitContext


def run(model: Model, *, preset: str = "O2", passes: list[str] | None = None, skip: list[str] | None = None,
        options: dict[str, dict[str, Any]] | None = None, max_rounds: int | None = None, strict: bool = False,
        config: PipelineConfig | None = None, ctx: JitContext | None = None, use_pyproject: bool = False,
        annotate_shapes: bool = True) -> OptimizeResult:
    """Optimize `model` in place and return it with the pipeline record and the context used."""
    if config is None:
        config = build_config(preset=preset, passes=passes, skip=skip, options=options, max_rounds=max_rounds,
                              strict=strict, use_pyproject=use_pyproject)
    if ctx is None:
        ctx = init(model, config)
    record = ctx.run_pipeline(model)
    if annotate_shapes and hasattr(ctx.symbols, "annotate"):
        with ctx.translators.guard("infer"):
            ctx.symbols.annotate(model)
    return OptimizeResult(model, record, ctx)


def optimize(model: Model | str | os.PathLike[str] | bytes | Any, **kw: Any) -> Model:
    """Optimize a model (a Model is changed in place) and return it. Keywords as for :func:`run`."""
    m = model if isinstance(model, Model) else load(model)
    return run(m, **kw).model
