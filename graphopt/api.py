"""The library's front door: the whole run on a file or an in-memory model, and the building blocks below it.

- :func:`optimize_file` and :func:`check_file` do what ``graphopt optimize`` and ``graphopt check`` do for one model
  (load, optimize, prove with onnxruntime, bisect, write atomically) and return the same
  :class:`~graphopt.report.ModelReport` the CLI renders. They never raise for a bad model: the report carries the
  error and the exit code, unless ``raise_on_error=True``. Reports are picklable, so the calls map over worker
  processes or a cluster unchanged.
- :func:`optimize` takes what the caller has (an ``onnx.ModelProto``, a graphopt :class:`Model`, bytes or a path)
  and returns the same kind (a ModelProto for bytes and paths), so it drops into code that calls onnxsim or onnxslim;
  ``return_report=True`` gives an :class:`OptimizeResult` with the model and its report.
- :func:`load`, :func:`run`, :func:`save`: the pieces, for callers that drive the IR themselves.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .files import default_output
from .html_report import to_html, write_html  # noqa: F401 - re-exported by graphopt/__init__.py
from .ir import serde
from .ir.core import Model
from .jit.context import JitContext, init
from .jit.manager import PipelineRecord
from .pipeline import PipelineConfig, build_config
from .report import ModelReport
from .runner import Job, execute
from .validate import ValidateOptions

PathLike = str | os.PathLike[str]


def load(source: PathLike | bytes | Any) -> Model:
    """Load a model from a path, serialized bytes, or an onnx.ModelProto (copied)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return serde.loads(bytes(source), base_dir=os.getcwd())
    if isinstance(source, (str, os.PathLike)):
        return serde.load(source)
    import onnx

    if isinstance(source, onnx.ModelProto):
        return serde.from_proto(source)
    raise TypeError(f"cannot load a model from {type(source).__name__}")


def save(model: Model, path: PathLike, **kw: Any) -> serde.SaveInfo:
    """Write a model atomically (see :func:`graphopt.ir.serde.save`)."""
    return serde.save(model, path, **kw)


@dataclass
class OptimizeResult:
    """An optimized model with what made it: the pipeline record, the context, and (from :func:`optimize` with
    ``return_report=True``) the report. `model` is of the kind the caller gave."""

    model: Any
    record: PipelineRecord | None
    ctx: JitContext | None
    report: ModelReport | None = None


def run(model: Model, *, preset: str = "O2", passes: list[str] | None = None, skip: list[str] | None = None,
        options: dict[str, dict[str, Any]] | None = None, max_rounds: int | None = None, strict: bool = False,
        config: PipelineConfig | None = None, ctx: JitContext | None = None, use_pyproject: bool = False,
        annotate_shapes: bool | None = None) -> OptimizeResult:
    """Optimize `model` in place (no validation) and return it with the pipeline record and the context used.

    `annotate_shapes` writes the inferred shapes into value_info afterwards (default: the configuration's
    ``annotate_shapes``, off unless asked for)."""
    if config is None:
        config = build_config(preset=preset, passes=passes, skip=skip, options=options, max_rounds=max_rounds,
                              strict=strict, use_pyproject=use_pyproject, annotate_shapes=annotate_shapes)
    if ctx is None:
        ctx = init(model, config)
    record = ctx.run_pipeline(model)
    if annotate_shapes is None:
        annotate_shapes = bool(getattr(ctx.config, "annotate_shapes", False))
    if annotate_shapes and hasattr(ctx.symbols, "annotate"):
        with ctx.translators.guard("infer"):
            ctx.symbols.annotate(model)
    return OptimizeResult(model, record, ctx)


# ----------------------------------------------------------------------------------------------------------------
# The whole run
# ----------------------------------------------------------------------------------------------------------------
def _config(config: PipelineConfig | None, preset: str | None, passes: list[str] | None, skip: list[str] | None,
            options: Mapping[str, Mapping[str, Any]] | None, max_rounds: int | None,
            strict: bool | None) -> PipelineConfig:
    if config is not None:
        return config
    return build_config(preset=preset, passes=passes, skip=skip,
                        options={k: dict(v) for k, v in (options or {}).items()}, max_rounds=max_rounds,
                        strict=strict, use_pyproject=False)


def _vopts(validate_options: ValidateOptions | Mapping[str, Any] | None) -> ValidateOptions:
    if validate_options is None:
        return ValidateOptions()
    if isinstance(validate_options, ValidateOptions):
        return validate_options
    return ValidateOptions(**dict(validate_options))


def optimize_file(path: PathLike, output: PathLike | None = None, *, config: PipelineConfig | None = None,
                  preset: str | None = None, passes: list[str] | None = None, skip: list[str] | None = None,
                  options: Mapping[str, Mapping[str, Any]] | None = None, max_rounds: int | None = None,
                  strict: bool | None = None, validate: bool = True,
                  validate_options: ValidateOptions | Mapping[str, Any] | None = None, bisect: bool = True,
                  checker: bool = True, in_place: bool = False, metadata: bool = True, graph_diff: bool = False,
                  raise_on_error: bool = False, on_step: Callable[[str], None] | None = None) -> ModelReport:
    """Optimize the model at `path` and write it to `output` (default: ``<stem>.opt.onnx`` beside it), as
    ``graphopt optimize`` does: validated with onnxruntime unless ``validate=False``, bisected on a mismatch,
    written atomically, never over the input unless ``in_place=True``.

    The pipeline is `config` (a :class:`~graphopt.pipeline.PipelineConfig`), else built from `preset` (default
    O2), `passes`, `skip`, `options` (``{pass: {option: value}}``), `max_rounds` and `strict`; no pyproject.toml is
    read. `validate_options` is a :class:`~graphopt.validate.ValidateOptions` or a dict of its fields.
    ``checker=False`` (``--no-check``) leaves onnx's checker out of the validity checks of the input and the
    result; graphopt's own structural checks always run. ``metadata=False`` (``--no-metadata``) leaves out the
    reproducibility record (the ``graphopt`` entry of the model's ``metadata_props``, see
    :mod:`graphopt.provenance`). ``graph_diff=True`` records what changed in the graph (``report.graph_diff``),
    which :func:`write_html` draws.
    """
    src = os.fspath(path)
    out = os.fspath(output) if output is not None else (src if in_place else default_output(src))
    job = Job("optimize", src, _config(config, preset, passes, skip, options, max_rounds, strict), output=out,
              in_place=in_place, validate=validate, vopts=_vopts(validate_options), bisect=bisect, check=checker,
              metadata=metadata, graph_diff=graph_diff)
    return execute(job, on_step, raise_on_error=raise_on_error).report


def check_file(path: PathLike, *, config: PipelineConfig | None = None, preset: str | None = None,
               passes: list[str] | None = None, skip: list[str] | None = None,
               options: Mapping[str, Mapping[str, Any]] | None = None, max_rounds: int | None = None,
               strict: bool | None = None, validate: bool = True,
               validate_options: ValidateOptions | Mapping[str, Any] | None = None, bisect: bool = True,
               checker: bool = True, fail_if_optimizable: bool = False, graph_diff: bool = False,
               raise_on_error: bool = False, on_step: Callable[[str], None] | None = None) -> ModelReport:
    """Check the model at `path` as ``graphopt check`` does: the validity checks, onnxruntime, the pipeline in
    memory and validation of its result; nothing is written. With `fail_if_optimizable` a model graphopt would
    still change gets exit code 8. Options as for :func:`optimize_file`."""
    job = Job("check", os.fspath(path), _config(config, preset, passes, skip, options, max_rounds, strict),
              validate=validate, vopts=_vopts(validate_options), bisect=bisect, check=checker,
              fail_if_optimizable=fail_if_optimizable, graph_diff=graph_diff)
    return execute(job, on_step, raise_on_error=raise_on_error).report


def optimize(model: Model | PathLike | bytes | Any, *, config: PipelineConfig | None = None, preset: str = "O2",
             passes: list[str] | None = None, skip: list[str] | None = None,
             options: Mapping[str, Mapping[str, Any]] | None = None, max_rounds: int | None = None,
             strict: bool = False, validate: bool = False,
             validate_options: ValidateOptions | Mapping[str, Any] | None = None, bisect: bool = True,
             checker: bool = True, metadata: bool = True, graph_diff: bool = False, return_report: bool = False,
             raise_on_error: bool | None = None) -> Any:
    """Optimize a model and return it in the caller's terms: an ``onnx.ModelProto`` for a ModelProto, bytes or a
    path; a graphopt :class:`Model` (optimized in place, unless bisection had to rebuild it) for a Model.

    ``validate=True`` proves the result with onnxruntime against the original and bisects a mismatch away, as the
    CLI does. With ``return_report=True`` the result is an :class:`OptimizeResult` whose ``report`` is the
    :class:`~graphopt.report.ModelReport`; errors then stay in the report unless ``raise_on_error=True``. Without
    it there is nowhere to put an error, so it is raised (``raise_on_error`` defaults to ``not return_report``).
    The result carries the reproducibility record in its ``metadata_props`` unless ``metadata=False``.
    ``graph_diff=True`` records what changed in the report (for :func:`write_html`).
    """
    import onnx

    raise_on_error = (not return_report) if raise_on_error is None else raise_on_error
    cfg = _config(config, preset, passes, skip, options, max_rounds, strict)
    vopts = _vopts(validate_options)
    kw = {"validate": validate, "vopts": vopts, "bisect": bisect, "check": checker, "metadata": metadata,
          "graph_diff": graph_diff}
    if isinstance(model, Model):
        job = Job("optimize", "<model>", cfg, model=model, **kw)  # type: ignore[arg-type]
    elif isinstance(model, onnx.ModelProto):
        job = Job("optimize", "<model>", cfg, data=model.SerializeToString(), **kw)  # type: ignore[arg-type]
    elif isinstance(model, (bytes, bytearray, memoryview)):
        job = Job("optimize", "<bytes>", cfg, data=bytes(model), **kw)  # type: ignore[arg-type]
    elif isinstance(model, (str, os.PathLike)):
        job = Job("optimize", os.fspath(model), cfg, **kw)  # type: ignore[arg-type]
    else:
        raise TypeError(f"cannot optimize a {type(model).__name__}: give an onnx.ModelProto, a graphopt Model, "
                        "bytes or a path")
    out = execute(job, raise_on_error=raise_on_error)
    result: Any = out.model
    if out.model is not None and not isinstance(model, Model):
        result = serde.to_proto(out.model)
    if return_report:
        return OptimizeResult(result, out.record, out.ctx, out.report)
    return result
