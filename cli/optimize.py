"""`graphopt optimize`: optimize, prove the result with onnxruntime, report; one model or many (-j N).

The per-model work is the library's :func:`graphopt.runner.run_job`, which never raises: every failure becomes the
model's exit code and error in its :class:`~graphopt.report.ModelReport`, so that one bad model does not stop the
others. `graphopt check` (cli/check.py) runs the same jobs without writing anything.
"""

from __future__ import annotations

import os
import sys

import click

from graphopt.errors import EXIT_OK, OutputError, UsageError
from graphopt.files import check_output_path, default_output
from graphopt.report import Report
from graphopt.runner import Job, run_job

from .common import State, common_options, handle_errors, setup_logging
from .fanout import Steps, finish, human_console, run_jobs
from .options import (
    make_config,
    make_validate_options,
    pipeline_options,
    report_options,
    validation_options,
)


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
                 annotate_shapes: bool | None,
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
    outs = plan_outputs(inputs, output, out_dir, in_place)
    if outs == ["-"] and report_json == "-":
        raise UsageError("stdout carries the model (-o -): write the JSON report to a file",
                         hint="use --report-json FILE")
    st = State(verbose, quiet, debug, model_to_stdout=outs == ["-"] or report_json == "-")
    cfg = make_config(preset=preset, passes=passes, skip=skip, sets=sets, max_rounds=max_rounds, strict=strict,
                      config_path=config_path, verify_each=verify_each, annotate_shapes=annotate_shapes)
    vopts = make_validate_options(seed=seed, dims=dims, trials=trials, inputs_npz=inputs_npz, rtol=rtol, atol=atol,
                                  bench_runs=bench_runs, threads=threads, ort_level=ort_level)
    stdin_data = sys.stdin.buffer.read() if inputs == ("-",) else None
    job_list = [Job("optimize", inp, cfg, output=out, in_place=in_place, validate=validate, vopts=vopts,
                    bisect=do_bisect, debug=debug, data=stdin_data) for inp, out in zip(inputs, outs)]
    reports = run_jobs(job_list, jobs, st, progress=(not quiet) and st.err.is_terminal)
    code = finish(Report("optimize", reports), st, human=human_console(st, quiet=quiet, to_stderr=st.model_to_stdout),
                  report_json=report_json, report_md=report_md, verbose=verbose)
    if code != EXIT_OK:
        sys.exit(code)


def plan_outputs(inputs: tuple[str, ...], output: str | None, out_dir: str | None, in_place: bool) -> list[str]:
    """The output path of each input (-o, --out-dir, --in-place or the default beside it), checked up front so
    that a bad combination is one usage error before any model is read; creates --out-dir."""
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
    if out_dir is not None:
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{out_dir}: cannot create the output folder: {e.strerror or e}") from e
    for inp, out in zip(inputs, outs):
        check_output_path(inp, out, in_place=in_place)
    return outs


__all__ = ["Job", "Steps", "finish", "human_console", "make_config", "make_validate_options", "optimize_cmd",
           "pipeline_options", "plan_outputs", "report_options", "run_job", "run_jobs", "validation_options"]
