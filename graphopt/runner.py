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
    InternalError,
    ModelError,
    OptimizableError,
    ValidationMismatch,
)
from .files import check_output_path, write_model
from .ir import serde
from .ir.core import Model
from .pipeline import PipelineConfig
from .report import ModelReport, op_diff, pass_rows
from .validate import ModelSource, ValidateOptions, Validator, bisect, index_ranges, optimize_with
from .validate.gate import (
    Interface,
    OnnxCheck,
    check_input,
    check_output,
    interface_of,
    onnx_problems,
    output_problems,
    start_file_check,
    start_output_check,
)

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
    check: bool = True                # onnx's checker in the validity gate (--no-check); structure always
    fail_if_optimizable: bool = False
    metadata: bool = True             # the result gets the reproducibility record (graphopt.provenance)
    debug: bool = False
    graph_diff: bool = False          # record what changed, for the HTML report's pictures (--report-html)
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
    types_before: dict[str, Any] | None = field(default=None, repr=False)  # Job.graph_diff: the original's types
    source: ModelSource | None = field(default=None, repr=False)           # the original, as loaded


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
        return job.model, (ModelSource.of_model(job.model) if job.validate or job.check or job.graph_diff
                           else ModelSource(data=b""))
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
    """Load, check, optimize, verify, validate (bisecting on a mismatch), summarize, write; fills `out` as it
    goes. Nothing is written unless every check before it passed."""
    from .summary import summarize

    rep = out.report
    if job.output is not None and job.path is not None:
        check_output_path(job.path, job.output, in_place=job.in_place)
    step(f"loading {rep.input}")
    t0 = time.perf_counter()
    # a big file has onnx's checker started on it before it is loaded: loading and checking overlap
    early = (start_file_check(job.input) if job.check and job.model is None and job.data is None
             and job.input != "-" and _size(job.input) >= BACKGROUND_CHECK_BYTES else None)
    try:
        model, source = _load(job)
        out.source = source
        rep.timings_optimize = {"load": time.perf_counter() - t0}
        before = summarize(model)
        rep.file_bytes_before = _file_bytes(model, before)
        rep.nodes_before = before["nodes"]

        step(f"checking {rep.input}")
        t0 = time.perf_counter()
        # on a big model onnx's checker runs in a child process while the passes run (it holds the GIL: a thread
        # would not overlap); its verdict is awaited before anything else is checked, validated or written
        background = rep.nodes_before >= BACKGROUND_CHECK_NODES
        gate = check_input(model, data=source.data, path=source.path, checker=job.check,
                           name=job.path or rep.input, background=background, started=early)
    except BaseException:
        if early is not None:
            early.cancel()
        raise
    interface = interface_of(model)
    rep.timings_optimize["check"] = time.perf_counter() - t0
    pending: OnnxCheck | None = None
    try:
        # integer inputs that index a table, read from the original before the passes change it
        bounds = index_ranges(model) if job.validate else {}
        try:
            _optimize(job, out, model, step)
        except Exception:
            gate.finish()  # an invalid input explains a failure better than the failure itself
            raise
        t0 = time.perf_counter()
        gate.finish()
        rep.timings_optimize["check"] += time.perf_counter() - t0
        rep.warnings.extend(gate.warnings)
        data, pending = _verify(job, out, interface, step, background=background)
        problem = None
        if job.validate:
            problem = _validate(job, out, source, step, data, bounds)
        _verify_finish(job, out, interface, step, pending)
        if job.validate and rep.bisection is not None and out.model is not None and rep.disabled:
            # bisection rebuilt the model: check it again
            data, pending = _verify(job, out, interface, step)
            _verify_finish(job, out, interface, step, pending)
    finally:
        gate.cancel()
        if pending is not None:
            pending.cancel()
    _summarize(out, before)
    if job.graph_diff:
        _graph_diff(out, source, step)
    if problem is not None:
        raise problem
    _write(job, out, step, data)
    if job.command == "check" and job.fail_if_optimizable and rep.changed:
        removed = (rep.nodes_before or 0) - (rep.nodes_after or 0)
        raise OptimizableError(
            "graphopt would still change the model"
            + (f" (remove {removed} of {rep.nodes_before} nodes)" if removed > 0 else ""),
            path=job.path)


# Models from this size on have onnx's checker run in a child process, in parallel with graphopt's own work (below
# it the check takes milliseconds and a process would cost more than it saves).
BACKGROUND_CHECK_NODES = 5000
# ... and files from this size on have it started before they are loaded (about 5000 nodes of an exporter's graph)
BACKGROUND_CHECK_BYTES = 1 << 19


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0  # the load says what is wrong with the path


def _verify(job: Job, out: Outcome, interface: Interface, step: StepFn, *,
            background: bool = False) -> tuple[bytes | None, OnnxCheck | None]:
    """The output gate, first half: the optimized model must pass the checks its input passed and keep its
    interface. Returns the result's serialized bytes (which validation and the writer reuse; None when not needed)
    and onnx's checker on them, running in the background with `background` (see :func:`_verify_finish`).
    A model no pass changed is the input, which passed the input gate: it is written back as it came, unchecked.
    A failure is graphopt's bug: the culprit pass is found, and the run ends with an internal error."""
    from .ir.serde.write import unchanged

    assert out.model is not None and out.record is not None
    rep = out.report
    _stamp_record(job, out)
    if not any(r.changed for r in out.record.passes) and unchanged(out.model):
        return None, None
    step("verifying the optimized model")
    t0 = time.perf_counter()
    data = None
    if job.check or job.validate or job.output is not None:
        data = _serialize_for_check(out.model)
    pending = None
    if job.check and data is not None:
        # in the background, onnx's checker runs while graphopt's own checks below (and validation) run
        pending = start_output_check(out.model, data, background=background)
    problems = output_problems(out.model, interface)
    if problems and pending is not None:
        pending.cancel()
        pending = None
    elif pending is not None and not pending.running:  # done: its verdict counts before anything runs the result
        problems, pending = onnx_problems(pending), None
    rep.timings_optimize["verify"] = rep.timings_optimize.get("verify", 0.0) + time.perf_counter() - t0
    if problems:
        _broken(job, out, interface, step, problems)
    return data, pending


def _verify_finish(job: Job, out: Outcome, interface: Interface, step: StepFn, pending: OnnxCheck | None) -> None:
    """The output gate, second half: onnx's checker's verdict on the result."""
    if pending is None:
        return
    t0 = time.perf_counter()
    problems = onnx_problems(pending)
    rep = out.report
    rep.timings_optimize["verify"] = rep.timings_optimize.get("verify", 0.0) + time.perf_counter() - t0
    if problems:
        _broken(job, out, interface, step, problems)


def _broken(job: Job, out: Outcome, interface: Interface, step: StepFn, problems: list[str]) -> None:
    assert out.source is not None
    # what ran on the broken result (validation, in parallel with a background check) is not a report of it
    out.report.validation = out.report.bisection = None
    out.report.timings_validate = {}
    culprit = _find_culprit(job, out.source, interface, step)
    who = f"pass {culprit[0]!r} made it" if culprit else "no single pass made it (the round trip?)"
    raise InternalError(
        f"graphopt produced an invalid model ({who}): {problems[0]}"
        + (f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""),
        path=job.path,
        hint="nothing was written; this is a bug in graphopt: please report the model"
        + (f"; --skip {culprit[0]} avoids it" if culprit else ""),
        details={"problems": problems, "culprit": culprit[0] if culprit else None})


def _stamp_record(job: Job, out: Outcome) -> None:
    """The result of `optimize` gets its reproducibility record (before the output gate serializes it; again after
    bisection rebuilt the model), or without `job.metadata` none, not even the input's. `check` writes nothing and
    stamps nothing."""
    from .provenance import RECORD_KEY, make_record, stamp

    if job.command != "optimize" or out.model is None or out.record is None or out.ctx is None:
        return
    if not job.metadata:
        out.model.metadata_props.pop(RECORD_KEY, None)
        return
    changed = [r.name for r in out.record.passes if r.changed and not r.rolled_back]
    stamp(out.model, make_record(config=job.config, pipeline=out.ctx.pipeline, passes_changed=changed,
                                 disabled=out.report.disabled), changed=bool(changed))


def _serialize_for_check(model: Model) -> bytes | None:
    """The model's bytes as the writer would make them, or None for a model over protobuf's limit (the writer
    then moves its tensors to external data, and onnx's checker sees only the file)."""
    from .ir.serde.write import _PROTO_SOFT_LIMIT, _inline_size_estimate

    if _inline_size_estimate(model) > _PROTO_SOFT_LIMIT:
        return None
    return serde.serialize(model)


def _find_culprit(job: Job, source: ModelSource, interface: Interface, step: StepFn) -> tuple[str, str] | None:
    """Re-run the pipeline from the original, checking the model after every pass; the first pass after which the
    output gate fails is the culprit: (its name, the problem). Only runs when a result failed the gate."""
    from .jit import init
    from .jit.manager import PassManager

    step("finding the pass that broke the model")

    class Found(Exception):
        pass

    last: list[str] = []

    def check(_next: str, _rnd: int) -> None:
        if last:
            problems = check_output(model, interface, data=_serialize_for_check(model), checker=job.check)
            if problems:
                raise Found(last[-1], problems[0])
        last.append(_next)

    try:
        model = source.load() if job.model is None else serde.loads(source.data or b"", base_dir=source.base_dir)
        ctx = init(model, job.config)
        pm = PassManager(ctx, ctx.pipeline, max_rounds=job.config.max_rounds, on_pass=check)
        pm.run(model)
        check("(end)", 0)
    except Found as f:
        return str(f.args[0]), str(f.args[1])
    except Exception:  # noqa: BLE001 - a diagnosis that fails must not hide the original problem
        return None
    return None


def _optimize(job: Job, out: Outcome, model: Model, step: StepFn) -> None:
    from .jit import init

    rep = out.report
    t0 = time.perf_counter()
    ctx = init(model, job.config)
    t_init = time.perf_counter() - t0
    rep.warnings.extend(ctx.warnings)
    rep.init_steps = [s.to_dict() for s in ctx.init_steps]
    rep.preset = None if job.config.passes is not None else job.config.preset.upper().lstrip("-")
    if job.graph_diff:  # the original's value types, for the pictures, while the context still knows them
        from .diff import value_types

        out.types_before = value_types(model, ctx.symbols)
    t0 = time.perf_counter()
    record = optimize_with(ctx, model, on_pass=lambda p, r: step(f"pass {p} (round {r})"))
    rep.timings_optimize.update(init=t_init, passes=time.perf_counter() - t0)
    out.model, out.record, out.ctx = model, record, ctx


def _validate(job: Job, out: Outcome, source: ModelSource, step: StepFn, data: bytes | None,
              bounds: dict[str, int] | None = None) -> GraphoptError | None:
    """Compare the optimized model with the original; on a mismatch bisect (the outcome then holds the model
    without the culprits). Returns the error that must stop the run (a mismatch, an invalid model), or None.
    Timed apart: validation is never counted as optimization."""
    rep, ctx = out.report, out.ctx
    assert ctx is not None and out.model is not None
    problem: GraphoptError | None = None
    tv = time.perf_counter()
    validator = Validator(source, job.vopts, translators=ctx.translators, on_step=step, int_bounds=bounds)
    res = validator.compare(out.model if data is None else ModelSource(data=data, base_dir=out.model.base_dir))
    if res.skipped and validator.original_error is not None:
        # onnxruntime refusing the graph itself (not a missing custom op or a too-new opset) makes the model
        # invalid: a check that cannot run is not a pass
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
        "runs": res.timings.get("runs", 0.0) + res.timings.get("runs_original", 0.0),
        "bench": res.timings.get("bench", 0.0),
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
    after = summarize(out.model) if rep.changed else before  # no pass changed it: the input's own summary
    rep.nodes_after = after["nodes"]
    rep.op_types = op_diff(before["op_types"], after["op_types"])
    rep.symbols = dict(ctx.symbols.summary()) if hasattr(ctx.symbols, "summary") else {}


def _graph_diff(out: Outcome, source: ModelSource, step: StepFn) -> None:
    """What changed, for the HTML report's pictures: the original is read again from its source (the passes
    changed the loaded one in place), which costs a load, not a copy of the model before every run. Pictures are an
    extra: if they cannot be made, the report says so and the run goes on."""
    from .diff import graph_diff

    assert out.model is not None
    step("comparing the original and the optimized graph")
    try:
        out.report.graph_diff = graph_diff(source.load(), out.model, types_before=out.types_before,
                                           symbols_after=out.ctx.symbols if out.ctx is not None else None)
    except Exception as e:  # noqa: BLE001 - a picture that fails must not fail the optimization it shows
        out.report.warnings.append(f"no graph pictures: comparing the graphs failed ({type(e).__name__}: {e}); "
                                   "this is a bug in graphopt")


def _write(job: Job, out: Outcome, step: StepFn, data: bytes | None) -> None:
    """Write the result (the bytes the output gate checked, when the model needs no external data planning)."""
    rep = out.report
    t = rep.timings_optimize
    assert out.model is not None and out.ctx is not None
    if job.output is not None:
        step(f"writing {rep.output}")
        t0 = time.perf_counter()
        with out.ctx.translators.guard("save", path=None if job.output == "-" else job.output):
            rep.file_bytes_after = write_model(out.model, job.output, in_place=job.in_place, data=data)
        rep.written = True
        t["save"] = time.perf_counter() - t0
    t["total"] = sum(t.get(k, 0.0) for k in ("load", "check", "init", "passes", "verify", "save"))
