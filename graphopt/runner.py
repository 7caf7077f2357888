"""The whole run of one model as a library call: load, init, optimize, validate, bisect, summarize, write.

:func:`run_job` turns a :class:`Job` into a :class:`~graphopt.report.ModelReport` and never raises for a bad model:
every failure becomes the report's exit code and error, so that one bad model does not stop the others. This is
what ``graphopt optimize`` and ``graphopt check`` run per model (in worker processes with ``-j``), and what
:func:`graphopt.optimize_file`, :func:`graphopt.check_file` and :func:`graphopt.optimize` call.
"""

from __future__ import annotations

import gc
import os
import sys
import time
import traceback as tb
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import (
    EXIT_INTERNAL,
    GraphoptError,
    ModelError,
    OptimizableError,
    ValidationMismatch,
)
from .files import check_output_path, write_model
from .ir import serde
from .ir.core import Model
from .pipeline import PipelineConfig
from .report import ModelReport, op_diff, pass_rows
from .validate import ModelSource, ValidateOptions, Validator, bisect, optimize_with

if TYPE_CHECKING:
    from .jit.context import JitContext
    from .jit.manager import PipelineRecord

StepFn = Callable[[str], None]


@dataclass
class Job:
    """One model's work; picklable (it crosses into worker processes), unless it carries an in-memory model."""

    command: str                      # "optimize" or "check"
    input: str                        # a path, "-" for stdin, or a display name for an in-memory model
    config: PipelineConfig
    output: str | None = None         # None: do not write (check, in-memory runs)
    in_place: bool = False
    validate: bool = True
    vopts: ValidateOptions = field(default_factory=ValidateOptions)
    bisect: bool = True
    fail_if_optimizable: bool = False
    debug: bool = False
    data: bytes | None = field(default=None, repr=False)   # the input's bytes (stdin, read up front; in-memory)
    model: Model | None = field(default=None, repr=False)  # an in-memory model (graphopt.optimize)

    @property
    def path(self) -> str | None:
        """The input file, or None for stdin and in-memory models (errors then name no file)."""
        return None if self.input == "-" or self.model is not None or self.data is not None else self.input

    @property
    def display_name(self) -> str:
        return "<stdin>" if self.input == "-" else self.input


@dataclass
class Outcome:
    """What :func:`execute` gives back: the report, and for runs that got that far the final model (after
    bisection, the model without the culprit passes), its pipeline record and context."""

    report: ModelReport
    model: Model | None = None
    record: PipelineRecord | None = None
    ctx: JitContext | None = None
    error: GraphoptError | None = None


def run_job(job: Job, on_step: StepFn | None = None) -> ModelReport:
    """Run one job to a ModelReport. Never raises (but for KeyboardInterrupt): errors become the report's exit
    code and error."""
    out = execute(job, on_step)
    if out.model is not None and out.model is not job.model:
        out.model.release()  # freed now by reference counting, not later by a full pass of the cyclic GC
    return out.report


def execute(job: Job, on_step: StepFn | None = None, *, raise_on_error: bool = False) -> Outcome:
    """Run one job. Errors become the report's exit code and error (and ``Outcome.error``); with
    `raise_on_error` the GraphoptError is raised instead (foreign errors translated first)."""
    out_name = None if job.output is None else ("<stdout>" if job.output == "-" else job.output)
    out = Outcome(ModelReport(input=job.display_name, output=out_name))
    # the cyclic collector would rescan the big, long-lived model again and again during the run (see jit.manager)
    gc_was = gc.isenabled()
    gc.disable()
    try:
        _run(job, out, on_step or (lambda _m: None))
    except KeyboardInterrupt:
        raise
    except GraphoptError as e:
        out.error = e
        set_error(out.report, e, job.debug)
    except BaseException as e:  # noqa: BLE001 - the per-model boundary: one bad model must not stop the others
        from .jit.translators import TranslatorRegistry, install_defaults

        reg = TranslatorRegistry()
        install_defaults(reg)
        err = reg.translate(e, stage="cli", path=job.path)
        if err.exit_code == EXIT_INTERNAL and not job.debug:
            err.hint = (err.hint + "; " if err.hint else "") + "rerun with --debug for the traceback"
        err.__cause__ = e
        out.error = err
        set_error(out.report, err, job.debug, cause=e)
    finally:
        if gc_was:
            gc.enable()
    if raise_on_error and out.error is not None:
        raise out.error
    return out


def set_error(rep: ModelReport, err: GraphoptError, debug: bool, cause: BaseException | None = None) -> None:
    """Record `err` in the report (its exit code, the error as data, and with `debug` the traceback)."""
    rep.exit_code = err.exit_code
    rep.error = err.to_dict()
    if debug:
        c = cause or err.__cause__ or err
        rep.traceback = "".join(tb.format_exception(type(c), c, c.__traceback__))


def _load(job: Job) -> tuple[Model, ModelSource]:
    if job.model is not None:
        # the original, for onnxruntime and bisection, must be kept before the passes mutate the model
        return job.model, (ModelSource.of_model(job.model) if job.validate else ModelSource(data=b""))
    if job.data is not None or job.input == "-":
        data = job.data if job.data is not None else sys.stdin.buffer.read()
        model = serde.loads(data, base_dir=os.getcwd(), path=job.display_name)
        return model, ModelSource(data=data, base_dir=os.getcwd())
    # the original for onnxruntime and for bisection is the file itself: nothing to copy before the passes
    # mutate the model in place (the output, even --in-place, is only written at the very end)
    return serde.load(job.input), ModelSource(path=job.input)


def _file_bytes(model: Model, info: dict[str, Any] | None = None) -> int | None:
    n = model.meta.get("source_bytes")
    if n is None:
        return None
    ext = (info or {}).get("external_data", {}).get("files", {})
    return int(n) + int(sum(ext.values()))


def _run(job: Job, out: Outcome, step: StepFn) -> None:
    """Load, check, optimize, validate (bisecting on a mismatch), summarize, write; fills `out` as it goes."""
    from .summary import summarize

    rep = out.report
    if job.output is not None and job.path is not None:
        check_output_path(job.path, job.output, in_place=job.in_place)
    step(f"loading {rep.input}")
    t0 = time.perf_counter()
    model, source = _load(job)
    t_load = time.perf_counter() - t0
    before = summarize(model)
    rep.file_bytes_before = _file_bytes(model, before)
    rep.nodes_before = before["nodes"]
    if job.command == "check":
        step(f"checking {rep.input} with onnx.checker")
        from .validate import check_model

        check_model(source)

    rep.timings_optimize = {"load": t_load}
    _optimize(job, out, model, step)
    problem = _validate(job, out, source, step) if job.validate else None
    _summarize(out, before)
    if problem is not None:
        raise problem
    _write(job, out, step)
    if job.command == "check" and job.fail_if_optimizable and rep.changed:
        removed = (rep.nodes_before or 0) - (rep.nodes_after or 0)
        raise OptimizableError(
            "graphopt would still change the model"
            + (f" (remove {removed} of {rep.nodes_before} nodes)" if removed > 0 else ""),
            path=job.path)


def _optimize(job: Job, out: Outcome, model: Model, step: StepFn) -> None:
    from .jit import init

    rep = out.report
    t0 = time.perf_counter()
    ctx = init(model, job.config)
    t_init = time.perf_counter() - t0
    rep.warnings.extend(ctx.warnings)
    rep.init_steps = [s.to_dict() for s in ctx.init_steps]
    rep.preset = None if job.config.passes is not None else job.config.preset.upper().lstrip("-")
    t0 = time.perf_counter()
    record = optimize_with(ctx, model, on_pass=lambda p, r: step(f"pass {p} (round {r})"))
    rep.timings_optimize.update(init=t_init, passes=time.perf_counter() - t0)
    out.model, out.record, out.ctx = model, record, ctx


def _validate(job: Job, out: Outcome, source: ModelSource, step: StepFn) -> GraphoptError | None:
    """Compare the optimized model with the original; on a mismatch bisect (the outcome then holds the model
    without the culprits). Returns the error that must stop the run (a mismatch, an invalid model), or None.
    Timed apart: validation is never counted as optimization."""
    rep, ctx = out.report, out.ctx
    assert ctx is not None and out.model is not None
    problem: GraphoptError | None = None
    tv = time.perf_counter()
    validator = Validator(source, job.vopts, translators=ctx.translators, on_step=step)
    res = validator.compare(out.model)
    if job.command == "check" and res.skipped and validator.original_error is not None:
        # onnxruntime refusing the graph itself (not a missing custom op) makes the model invalid
        err = ctx.translators.translate(validator.original_error, stage="check", path=job.path)
        if isinstance(err, ModelError):
            problem = err
    if res.failed:
        first = res
        if job.bisect:
            b = bisect(source, ctx, validator, failing=res, failing_record=out.record, on_step=step)
            rep.bisection = b
            if b.resolved and b.model is not None:
                out.model, out.record, out.ctx = b.model, b.record, b.ctx
                rep.disabled = [c.name for c in b.culprits]
                rep.warnings.append(
                    f"validation found a mismatch in output {first.first_mismatch!r}; pass(es) "
                    f"{', '.join(rep.disabled)} caused it and were disabled")
            res = b.validation or res
        if job.command == "check" or job.config.strict or res.failed:
            culprit = (f"; culprit: pass {rep.bisection.culprits[0].name!r}"
                       if rep.bisection and rep.bisection.culprits else "")
            problem = ValidationMismatch(
                f"the optimized model computes different outputs: {first.reason}{culprit}",
                path=job.path,
                hint=("nothing was written; " if job.output is not None else "")
                + "skip the culprit with --skip PASS, or report the model")
    if res.passed:
        validator.benchmark(res)
    validator.close()
    rep.validation = res
    rep.timings_validate = {
        "sessions": (res.session_seconds_original or 0.0) + (res.session_seconds_optimized or 0.0),
        "runs": res.timings.get("runs", 0.0), "bench": res.timings.get("bench", 0.0),
        "bisection": rep.bisection.seconds if rep.bisection else 0.0, "total": time.perf_counter() - tv}
    if res.skipped:
        rep.warnings.append(f"validation skipped: {res.reason}")
    return problem


def _summarize(out: Outcome, before: dict[str, Any]) -> None:
    """What the pipeline did, into the report."""
    from .summary import summarize

    rep, record, ctx = out.report, out.record, out.ctx
    assert record is not None and ctx is not None and out.model is not None
    rep.changed = any(r.changed for r in record.passes)
    rep.passes = pass_rows(record)
    rep.pipeline = [p.name for p in ctx.pipeline if p.name not in rep.disabled]
    rep.rounds = record.rounds
    rep.converged = record.converged
    rep.warnings.extend(w for w in record.warnings if w not in rep.warnings)
    after = summarize(out.model)
    rep.nodes_after = after["nodes"]
    rep.op_types = op_diff(before["op_types"], after["op_types"])
    rep.symbols = dict(ctx.symbols.summary()) if hasattr(ctx.symbols, "summary") else {}


def _write(job: Job, out: Outcome, step: StepFn) -> None:
    rep = out.report
    t = rep.timings_optimize
    assert out.model is not None and out.ctx is not None
    if job.output is not None:
        step(f"writing {rep.output}")
        t0 = time.perf_counter()
        with out.ctx.translators.guard("save", path=None if job.output == "-" else job.output):
            rep.file_bytes_after = write_model(out.model, job.output, in_place=job.in_place)
        rep.written = True
        t["save"] = time.perf_counter() - t0
    t["total"] = t["load"] + t["init"] + t["passes"] + t.get("save", 0.0)
