"""`graphopt optimize`: optimize, prove the result with onnxruntime, report; one model or many (-j N).

The per-model work lives in :func:`run_job`, which never raises: every failure becomes the model's exit code and
error in its :class:`~graphopt.report.ModelReport`, so that one bad model does not stop the others. `graphopt
check` (cli/check.py) runs the same jobs without writing anything.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import sys
import time
import traceback as tb
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click
from rich.console import Console

from graphopt.errors import (
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_OUTPUT,
    GraphoptError,
    ModelError,
    OptimizableError,
    OutputError,
    UsageError,
    ValidationMismatch,
)
from graphopt.ir import serde
from graphopt.ir.core import Model
from graphopt.pipeline import PipelineConfig, build_config
from graphopt.report import ModelReport, Report, op_diff, pass_rows, render, render_model, to_markdown
from graphopt.validate import ORT_LEVELS, ModelSource, ValidateOptions, Validator, bisect, optimize_with

from .common import State, common_options, escape, handle_errors, print_error, setup_logging
from .io import check_output_path, default_output, write_model

F = TypeVar("F", bound=Callable[..., Any])
StepFn = Callable[[str], None]


def _split(values: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for v in values:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


# ================================================================================================================
# Shared options (optimize and check)
# ================================================================================================================
def pipeline_options(fn: F) -> F:
    """Preset and pass selection flags."""
    for deco in reversed([
        click.option("-O0", "preset", flag_value="O0", help="Round trip only."),
        click.option("-O1", "preset", flag_value="O1", help="Safe cleanups."),
        click.option("-O2", "preset", flag_value="O2", help="Default: cleanups, constant folding, shape "
                     "simplification, portable fusions."),
        click.option("-O3", "preset", flag_value="O3", help="Adds aggressive and runtime-specific rewrites."),
        click.option("--passes", "passes", multiple=True, metavar="A,B,C",
                     help="Run exactly these passes, in this order."),
        click.option("--skip", multiple=True, metavar="X,Y", help="Remove passes from the preset."),
        click.option("--set", "sets", multiple=True, metavar="PASS.OPTION=VALUE", help="Set a pass option."),
        click.option("--config", "config_path", type=click.Path(dir_okay=False),
                     help="A graphopt.toml config file (default: [tool.graphopt] in the nearest pyproject.toml)."),
        click.option("--max-rounds", type=click.IntRange(1, 1000), help="Bound on fixed-point rounds (default 8)."),
        click.option("--strict", is_flag=True, default=None,
                     help="A failing pass is fatal (exit 4), and so is a validation mismatch (exit 1, nothing "
                     "written), instead of being rolled back / bisected away."),
        click.option("--verify-each", is_flag=True,
                     help="Check IR invariants after every pass (slower; for debugging)."),
    ]):
        fn = deco(fn)
    return fn


def validation_options(fn: F) -> F:
    """onnxruntime validation flags."""
    for deco in reversed([
        click.option("--validate/--no-validate", "validate", default=True, show_default=True,
                     help="Compare the optimized model with the original in onnxruntime."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs."),
        click.option("--dim", "dims", multiple=True, metavar="NAME=SIZE",
                     help="Bind a symbolic input dim in every trial (repeatable). Unbound dims get small sizes "
                     "that change between trials."),
        click.option("--trials", type=click.IntRange(1, 100), default=3, show_default=True,
                     help="Random-input trials, each with other dim sizes."),
        click.option("--inputs", "inputs_npz", type=click.Path(dir_okay=False), metavar="FILE.npz",
                     help="Real inputs (numpy .npz, names matching the model's inputs) instead of random ones."),
        click.option("--rtol", type=click.FloatRange(min=0), help="Relative tolerance for float outputs "
                     "(default per dtype: float32 1e-3, float16 1e-2, float64 1e-6)."),
        click.option("--atol", type=click.FloatRange(min=0), help="Absolute tolerance for float outputs "
                     "(default per dtype: float32 1e-4, float16 1e-2, float64 1e-8)."),
        click.option("--bench-runs", type=click.IntRange(0, 100000), default=10, show_default=True,
                     help="Timed onnxruntime runs per model after a warm-up (0: no latency measurement)."),
        click.option("--threads", type=click.IntRange(1, 1024), default=1, show_default=True,
                     help="onnxruntime intra-op threads for validation and timing."),
        click.option("--ort-level", type=click.Choice(ORT_LEVELS), default="all", show_default=True,
                     help="onnxruntime's own graph optimization level in validation sessions."),
        click.option("--bisect/--no-bisect", "do_bisect", default=True, show_default=True,
                     help="On a mismatch, find the culprit pass by bisection and optimize without it."),
    ]):
        fn = deco(fn)
    return fn


def report_options(fn: F) -> F:
    fn = click.option("--report-md", metavar="FILE", help="Append a markdown summary to FILE (CI job summaries, "
                      "e.g. $GITHUB_STEP_SUMMARY).")(fn)
    fn = click.option("--report-json", metavar="FILE", help="Write the report as JSON ('-' = stdout; schema: "
                      "docs/report.md).")(fn)
    fn = click.option("-j", "--jobs", type=click.IntRange(1, 256), default=1, show_default=True,
                      help="Worker processes for several models.")(fn)
    return fn


def parse_dims(dims: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dims:
        name, sep, size = d.partition("=")
        try:
            n = int(size)
        except ValueError:
            n = -1
        if not sep or not name.strip() or n < 0:
            raise UsageError(f"--dim {d!r}: expected NAME=SIZE with a size >= 0", hint="e.g. --dim batch=4")
        out[name.strip()] = n
    return out


def make_validate_options(*, seed: int, dims: tuple[str, ...], trials: int, inputs_npz: str | None,
                          rtol: float | None, atol: float | None, bench_runs: int, threads: int,
                          ort_level: str) -> ValidateOptions:
    if inputs_npz is not None and not os.path.isfile(inputs_npz):
        raise UsageError(f"--inputs {inputs_npz}: no such file")
    return ValidateOptions(seed=seed, trials=trials, dims=parse_dims(dims), inputs=inputs_npz, rtol=rtol,
                           atol=atol, bench_runs=bench_runs, threads=threads, ort_level=ort_level)


# ================================================================================================================
# One model
# ================================================================================================================
@dataclass
class Job:
    """One model's work; picklable (it crosses into worker processes)."""

    command: str                      # "optimize" or "check"
    input: str                        # a path, or "-" for stdin
    config: PipelineConfig
    output: str | None = None         # None: do not write (check)
    in_place: bool = False
    validate: bool = True
    vopts: ValidateOptions = field(default_factory=ValidateOptions)
    bisect: bool = True
    fail_if_optimizable: bool = False
    debug: bool = False
    stdin_data: bytes | None = field(default=None, repr=False)


def run_job(job: Job, on_step: StepFn | None = None) -> ModelReport:
    """Run one job to a ModelReport. Never raises (but for KeyboardInterrupt): errors become the report's exit
    code and error."""
    name = "<stdin>" if job.input == "-" else job.input
    out_name = None if job.output is None else ("<stdout>" if job.output == "-" else job.output)
    rep = ModelReport(input=name, output=out_name)
    try:
        _run(job, rep, on_step or (lambda _m: None))
    except KeyboardInterrupt:
        raise
    except GraphoptError as e:
        _set_error(rep, e, job.debug)
    except BaseException as e:  # noqa: BLE001 - the per-model boundary: one bad model must not stop the others
        from graphopt.jit.translators import TranslatorRegistry, install_defaults

        reg = TranslatorRegistry()
        install_defaults(reg)
        err = reg.translate(e, stage="cli", path=None if job.input == "-" else job.input)
        if err.exit_code == EXIT_INTERNAL and not job.debug:
            err.hint = (err.hint + "; " if err.hint else "") + "rerun with --debug for the traceback"
        _set_error(rep, err, job.debug, cause=e)
    return rep


def _set_error(rep: ModelReport, err: GraphoptError, debug: bool, cause: BaseException | None = None) -> None:
    rep.exit_code = err.exit_code
    rep.error = err.to_dict()
    if debug:
        c = cause or err.__cause__ or err
        rep.traceback = "".join(tb.format_exception(type(c), c, c.__traceback__))


def _load(job: Job) -> tuple[Model, ModelSource]:
    if job.input == "-":
        data = job.stdin_data if job.stdin_data is not None else sys.stdin.buffer.read()
        model = serde.loads(data, base_dir=os.getcwd(), path="<stdin>")
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


def _run(job: Job, rep: ModelReport, step: StepFn) -> None:
    from graphopt.jit import init
    from graphopt.summary import summarize

    step(f"loading {rep.input}")
    t0 = time.perf_counter()
    model, source = _load(job)
    t_load = time.perf_counter() - t0
    before = summarize(model)
    rep.file_bytes_before = _file_bytes(model, before)
    rep.nodes_before = before["nodes"]

    if job.command == "check":
        step(f"checking {rep.input} with onnx.checker")
        from graphopt.validate import check_model

        check_model(source)

    t0 = time.perf_counter()
    ctx = init(model, job.config)
    t_init = time.perf_counter() - t0
    rep.warnings.extend(ctx.warnings)
    rep.init_steps = [s.to_dict() for s in ctx.init_steps]
    rep.preset = None if job.config.passes is not None else job.config.preset.upper().lstrip("-")
    t0 = time.perf_counter()
    record = optimize_with(ctx, model, on_pass=lambda p, r: step(f"pass {p} (round {r})"))
    t_passes = time.perf_counter() - t0
    rep.timings_optimize = {"load": t_load, "init": t_init, "passes": t_passes}

    # -- validation: timed apart, never counted as optimization ---------------------------------------------------
    mismatch: ValidationMismatch | None = None
    invalid: GraphoptError | None = None
    if job.validate:
        tv = time.perf_counter()
        validator = Validator(source, job.vopts, translators=ctx.translators, on_step=step)
        res = validator.compare(model)
        if job.command == "check" and res.skipped and validator.original_error is not None:
            # onnxruntime refusing the graph itself (not a missing custom op) makes the model invalid
            err = ctx.translators.translate(validator.original_error, stage="check",
                                            path=None if job.input == "-" else job.input)
            if isinstance(err, ModelError):
                invalid = err
        if res.failed:
            first = res
            if job.bisect:
                b = bisect(source, ctx, validator, failing=res, failing_record=record, on_step=step)
                rep.bisection = b
                if b.resolved and b.model is not None:
                    model, record, ctx = b.model, b.record, b.ctx
                    rep.disabled = [c.name for c in b.culprits]
                    rep.warnings.append(
                        f"validation found a mismatch in output {first.first_mismatch!r}; pass(es) "
                        f"{', '.join(rep.disabled)} caused it and were disabled")
                res = b.validation or res
            if job.command == "check" or job.config.strict or res.failed:
                culprit = (f"; culprit: pass {rep.bisection.culprits[0].name!r}"
                           if rep.bisection and rep.bisection.culprits else "")
                mismatch = ValidationMismatch(
                    f"the optimized model computes different outputs: {first.reason}{culprit}",
                    path=None if job.input == "-" else job.input,
                    hint=("nothing was written; " if job.output is not None else "")
                    + "skip the culprit with --skip PASS, or report the model")
        if res.passed:
            validator.benchmark(res)
        validator.close()
        rep.validation = res
        tvt = time.perf_counter() - tv
        rep.timings_validate = {
            "sessions": (res.session_seconds_original or 0.0) + (res.session_seconds_optimized or 0.0),
            "runs": res.timings.get("runs", 0.0), "bench": res.timings.get("bench", 0.0),
            "bisection": rep.bisection.seconds if rep.bisection else 0.0, "total": tvt}
        if res.skipped:
            rep.warnings.append(f"validation skipped: {res.reason}")

    # -- what the pipeline did ------------------------------------------------------------------------------------
    rep.changed = any(r.changed for r in record.passes)
    rep.passes = pass_rows(record)
    rep.pipeline = [p.name for p in ctx.pipeline if p.name not in rep.disabled]
    rep.rounds = record.rounds
    rep.converged = record.converged
    rep.warnings.extend(w for w in record.warnings if w not in rep.warnings)
    after = summarize(model)
    rep.nodes_after = after["nodes"]
    rep.op_types = op_diff(before["op_types"], after["op_types"])
    rep.symbols = dict(ctx.symbols.summary()) if hasattr(ctx.symbols, "summary") else {}

    if invalid is not None:
        raise invalid
    if mismatch is not None:
        raise mismatch

    # -- write ------------------------------------------------------------------------------------------------------
    if job.output is not None:
        step(f"writing {rep.output}")
        t0 = time.perf_counter()
        with ctx.translators.guard("save", path=None if job.output == "-" else job.output):
            rep.file_bytes_after = write_model(model, job.output, in_place=job.in_place)
        rep.written = True
        rep.timings_optimize["save"] = time.perf_counter() - t0
    else:
        rep.file_bytes_after = None
    rep.timings_optimize["total"] = (rep.timings_optimize["load"] + rep.timings_optimize["init"]
                                     + rep.timings_optimize["passes"] + rep.timings_optimize.get("save", 0.0))
    if job.command == "check" and job.fail_if_optimizable and rep.changed:
        removed = (rep.nodes_before or 0) - (rep.nodes_after or 0)
        raise OptimizableError(
            "graphopt would still change the model"
            + (f" (remove {removed} of {rep.nodes_before} nodes)" if removed > 0 else ""),
            path=None if job.input == "-" else job.input)


# ================================================================================================================
# Many models
# ================================================================================================================
def _worker_init(verbose: int, quiet: bool) -> None:
    setup_logging(verbose, quiet)


class Steps:
    """A transient rich spinner naming the current step; silent unless enabled (a terminal, not -q)."""

    def __init__(self, console: Console, enabled: bool):
        self.console = console
        self.enabled = enabled
        self._p: Any = None
        self._task: Any = None

    def __enter__(self) -> Steps:
        if self.enabled:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._p = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                               console=self.console, transient=True)
            self._p.start()
            self._task = self._p.add_task("starting", total=None)
        return self

    def __call__(self, msg: str) -> None:
        if self._p is not None:
            self._p.update(self._task, description=escape(msg))

    def __exit__(self, *exc: Any) -> None:
        if self._p is not None:
            self._p.stop()
            self._p = None


def run_jobs(jobs: list[Job], n_workers: int, st: State, *, progress: bool) -> list[ModelReport]:
    """Run every job (in worker processes with n_workers > 1); reports come back in the jobs' order."""
    if n_workers <= 1 or len(jobs) <= 1:
        out = []
        for i, job in enumerate(jobs):
            with Steps(st.err, progress) as steps:
                prefix = f"[{i + 1}/{len(jobs)}] " if len(jobs) > 1 else ""
                out.append(run_job(job, lambda m, p=prefix: steps(p + m)))
        return out
    reports: list[ModelReport | None] = [None] * len(jobs)
    # spawn, not fork: a forked child would inherit onnxruntime's and rich's threads in an unknown state
    mp = multiprocessing.get_context("spawn")
    bar: Any = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       console=st.err, transient=True)
        bar.start()
        task = bar.add_task(f"{jobs[0].command} ({n_workers} workers)", total=len(jobs))
    try:
        with cf.ProcessPoolExecutor(max_workers=min(n_workers, len(jobs)), mp_context=mp,
                                    initializer=_worker_init, initargs=(st.verbose, st.quiet)) as ex:
            futs = {ex.submit(run_job, job): i for i, job in enumerate(jobs)}
            for fut in cf.as_completed(futs):
                i = futs[fut]
                try:
                    reports[i] = fut.result()
                except cf.process.BrokenProcessPool as e:
                    rep = ModelReport(input=jobs[i].input, output=jobs[i].output)
                    _set_error(rep, GraphoptError(
                        f"{jobs[i].input}: the worker process died (killed for lack of memory?)",
                        hint="rerun this model alone, with -j 1"), jobs[i].debug, cause=e)
                    reports[i] = rep
                if bar is not None:
                    bar.advance(task)
    finally:
        if bar is not None:
            bar.stop()
    return [r for r in reports if r is not None]


def finish(report: Report, st: State, *, human: Console | None, report_json: str | None, report_md: str | None,
           verbose: int) -> int:
    """Print the human report and errors, write --report-json / --report-md; returns the exit code."""
    code = report.exit_code
    if human is not None:
        if report.command == "optimize" and len(report.models) == 1:
            m = report.models[0]
            if m.error is None or m.validation is not None or m.nodes_after is not None:
                render_model(m, human, verbose=verbose)
        else:
            render(report, human, verbose=verbose)
    # errors go to stderr even with -q; a multi-model report already showed them, one line per model
    shown = human is not None and not (report.command == "optimize" and len(report.models) == 1)
    for m in report.models:
        if m.error is not None:
            if not shown:
                err = GraphoptError(m.error.get("message", ""), hint=m.error.get("hint") or "",
                                    path=m.error.get("path"))
                print_error(err)
            if m.traceback:
                st.err.print(m.traceback, markup=False, highlight=False)
    try:
        if report_json is not None:
            text = report.to_json()
            if report_json == "-":
                click.echo(text)
            else:
                with open(report_json, "w", encoding="utf-8") as f:
                    f.write(text + "\n")
        if report_md is not None:
            with open(report_md, "a", encoding="utf-8") as f:
                f.write(to_markdown(report))
    except OSError as e:
        err = OutputError(f"{e.filename or 'report'}: cannot write the report: {e.strerror or e}")
        print_error(err)
        from graphopt.report import worst_exit_code

        code = worst_exit_code([code, EXIT_OUTPUT])
    return code


def human_console(st: State, *, quiet: bool, to_stderr: bool) -> Console | None:
    """The console for the human report: stdout, or stderr when stdout carries the model or the JSON; None
    with -q. Off a terminal (CI logs, files) lines are 120 columns wide instead of rich's 80."""
    if quiet:
        return None
    c = Console(stderr=to_stderr, highlight=False, soft_wrap=False)
    if not c.is_terminal and "COLUMNS" not in os.environ:
        c = Console(stderr=to_stderr, highlight=False, soft_wrap=False, width=120)
    return c


# ================================================================================================================
# The command
# ================================================================================================================
@click.command("optimize")
@click.argument("inputs", metavar="IN...", nargs=-1, required=True)
@click.option("-o", "--output", metavar="OUT", help="Output path ('-' = stdout). Default: <stem>.opt.onnx beside IN.")
@click.option("--out-dir", metavar="DIR", help="Write each result as DIR/<name of its input> (created if needed).")
@click.option("--in-place", is_flag=True, help="Allow overwriting IN with the result.")
@pipeline_options
@validation_options
@report_options
@common_options
@handle_errors
def optimize_cmd(inputs: tuple[str, ...], output: str | None, out_dir: str | None, in_place: bool,
                 preset: str | None, passes: tuple[str, ...], skip: tuple[str, ...], sets: tuple[str, ...],
                 config_path: str | None, max_rounds: int | None, strict: bool | None, verify_each: bool,
                 validate: bool, seed: int, dims: tuple[str, ...], trials: int, inputs_npz: str | None,
                 rtol: float | None, atol: float | None, bench_runs: int, threads: int, ort_level: str,
                 do_bisect: bool, report_json: str | None, report_md: str | None, jobs: int,
                 verbose: int, quiet: bool, debug: bool) -> None:
    """Optimize ONNX models, prove each result computes what the original did (onnxruntime), and report.

    \b
    Examples:
      graphopt optimize model.onnx                       # -> model.opt.onnx, validated
      graphopt optimize model.onnx -o small.onnx -O3 --report-json report.json
      graphopt optimize model.onnx --dim batch=8 --trials 5 --seed 1
      graphopt optimize model.onnx --inputs sample.npz --atol 1e-3
      graphopt optimize a.onnx b.onnx --out-dir opt/ -j 2
      cat model.onnx | graphopt optimize - -o - > out.onnx
    """
    setup_logging(verbose, quiet)
    if len(inputs) > 1:
        if output is not None:
            raise UsageError("-o names one output; with several inputs use --out-dir DIR")
        if "-" in inputs:
            raise UsageError("stdin ('-') can only be read as the only input")
    if output is not None and out_dir is not None:
        raise UsageError("give either -o or --out-dir, not both")
    outs: list[str] = []
    for inp in inputs:
        if out_dir is not None:
            if inp == "-":
                raise UsageError("--out-dir needs input files (stdin has no name); use -o")
            outs.append(os.path.join(out_dir, os.path.basename(inp)))
        else:
            outs.append(output or (inp if in_place else default_output(inp)))
    if len(set(map(os.path.abspath, outs))) != len(outs):
        raise UsageError("two inputs would be written to the same output", hint="give inputs distinct names")
    to_stdout = outs == ["-"]
    if to_stdout and report_json == "-":
        raise UsageError("stdout carries the model (-o -): write the JSON report to a file",
                         hint="use --report-json FILE")
    st = State(verbose, quiet, debug, model_to_stdout=to_stdout or report_json == "-")
    cfg = make_config(preset=preset, passes=passes, skip=skip, sets=sets, max_rounds=max_rounds, strict=strict,
                      config_path=config_path, verify_each=verify_each)
    vopts = make_validate_options(seed=seed, dims=dims, trials=trials, inputs_npz=inputs_npz, rtol=rtol, atol=atol,
                                  bench_runs=bench_runs, threads=threads, ort_level=ort_level)
    if out_dir is not None:
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{out_dir}: cannot create the output folder: {e.strerror or e}") from e
    for inp, out in zip(inputs, outs):
        check_output_path(inp, out, in_place=in_place)
    stdin_data = sys.stdin.buffer.read() if inputs == ("-",) else None
    job_list = [Job("optimize", inp, cfg, output=out, in_place=in_place, validate=validate, vopts=vopts,
                    bisect=do_bisect, debug=debug, stdin_data=stdin_data) for inp, out in zip(inputs, outs)]
    progress = (not quiet) and st.err.is_terminal
    reports = run_jobs(job_list, jobs, st, progress=progress)
    report = Report("optimize", reports)
    code = finish(report, st, human=human_console(st, quiet=quiet, to_stderr=st.model_to_stdout),
                  report_json=report_json, report_md=report_md, verbose=verbose)
    if code != EXIT_OK:
        sys.exit(code)


def make_config(*, preset: str | None, passes: tuple[str, ...], skip: tuple[str, ...], sets: tuple[str, ...],
                max_rounds: int | None, strict: bool | None, config_path: str | None,
                verify_each: bool) -> PipelineConfig:
    """The pipeline configuration from the shared pipeline flags (config file and pyproject.toml included),
    checked against the registry up front so that a typo is a usage error before any model is read."""
    cfg = build_config(preset=preset, passes=_split(passes) if passes else None, skip=_split(skip),
                       sets=list(sets), max_rounds=max_rounds, strict=strict, config_path=config_path)
    cfg.verify_each = verify_each
    _check_pipeline(cfg)
    return cfg


def _check_pipeline(cfg: PipelineConfig) -> None:
    """Resolve the pipeline once up front, so that a bad pass name or option is one usage error (exit 2), not an
    error per model."""
    import logging

    from graphopt.jit import init

    # this context is thrown away: keep its init steps out of the -v log (each model's own context logs them)
    lg = logging.getLogger("graphopt.jit")
    level = lg.level
    lg.setLevel(logging.WARNING)
    try:
        init(None, cfg)
    finally:
        lg.setLevel(level)


__all__ = ["Job", "finish", "human_console", "make_config", "make_validate_options",
           "optimize_cmd", "pipeline_options", "report_options", "run_job", "run_jobs", "validation_options"]
