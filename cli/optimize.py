"""`graphopt optimize`: optimize, prove the result with onnxruntime, report; one model or many (-j N).

The per-model work is the library's :func:`graphopt.runner.run_job`, which never raises: every failure becomes the
model's exit code and error in its :class:`~graphopt.report.ModelReport`, so that one bad model does not stop the
others. `graphopt check` (cli/check.py) runs the same jobs without writing anything.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from graphopt.errors import EXIT_OK, OutputError, UsageError

from .common import State, common_options, escape, handle_errors, setup_logging
from .options import (
    apply_shard,
    make_config,
    make_validate_options,
    pipeline_options,
    report_options,
    shard_option,
    validation_options,
)


@click.command("optimize")
@click.argument("inputs", metavar="IN...", nargs=-1, required=True)
@click.option("-o", "--output", metavar="OUT", help="Output path ('-' = stdout). Default: <stem>.opt.onnx beside IN.")
@click.option("--out-dir", metavar="DIR", help="Write each result as DIR/<name of its input> (created if needed).")
@click.option("--in-place", is_flag=True, help="Allow overwriting IN with the result.")
@click.option("--no-metadata", is_flag=True, help="Leave out the reproducibility record (the model's 'graphopt' "
              "metadata_props entry: version, preset, the passes that changed something, non-default options).")
@shard_option
@pipeline_options
@validation_options
@report_options
@common_options
@handle_errors
def optimize_cmd(inputs: tuple[str, ...], output: str | None, out_dir: str | None, in_place: bool,
                 no_metadata: bool, shard: str | None, preset: str | None, passes: tuple[str, ...],
                 skip: tuple[str, ...], sets: tuple[str, ...], config_path: str | None, max_rounds: int | None,
                 strict: bool | None, verify_each: bool, no_check: bool, annotate_shapes: bool | None,
                 validate: bool, seed: int, dims: tuple[str, ...], trials: int | None, inputs_npz: str | None,
                 rtol: float | None, atol: float | None, bench_time: float, bench_runs: int | None, threads: int,
                 bench_level: str, ort_level: str,
                 do_bisect: bool, report_json: str | None, report_md: str | None,
                 report_html: str | None, jobs: int,
                 verbose: int, quiet: bool, debug: bool) -> None:
    """Optimize ONNX models, prove each result computes what the original did (onnxruntime), and report.

    \b
    Examples:
      graphopt optimize model.onnx                       # -> model.opt.onnx, validated
      graphopt optimize model.onnx -o small.onnx -O3 --report-json report.json
      graphopt optimize model.onnx --report-html report.html   # with pictures of what changed
      graphopt optimize model.onnx --dim batch=8 --trials 5 --seed 1
      graphopt optimize model.onnx --inputs sample.npz --atol 1e-3
      graphopt optimize a.onnx b.onnx --out-dir opt/ -j 2
      graphopt optimize models/*.onnx --out-dir opt/ --shard 1/4   # CI job 1 of 4
      cat model.onnx | graphopt optimize - -o - > out.onnx
    """
    # imported here, not at module level: `graphopt --help` must not import onnx (see cli/main.py)
    from graphopt.report import Report, shard_text
    from graphopt.runner import Job

    from .fanout import finish, human_console, run_jobs

    setup_logging(verbose, quiet)
    if shard is not None and output is not None:
        raise UsageError("--shard splits several models: write them with --out-dir DIR (or beside their inputs), "
                         "not -o")
    selected, shard_kn, shard_of = apply_shard(inputs, shard)
    inputs = tuple(selected)
    outs = plan_outputs(inputs, output, out_dir, in_place)
    if outs == ["-"] and report_json == "-":
        raise UsageError("stdout carries the model (-o -): write the JSON report to a file",
                         hint="use --report-json FILE")
    st = State(verbose, quiet, debug, model_to_stdout=outs == ["-"] or report_json == "-")
    cfg = make_config(preset=preset, passes=passes, skip=skip, sets=sets, max_rounds=max_rounds, strict=strict,
                      config_path=config_path, verify_each=verify_each, annotate_shapes=annotate_shapes)
    vopts = make_validate_options(seed=seed, dims=dims, trials=trials, inputs_npz=inputs_npz, rtol=rtol, atol=atol,
                                  bench_runs=bench_runs, bench_time=bench_time, threads=threads,
                                  ort_level=ort_level, bench_level=bench_level, jobs=jobs)
    stdin_data = sys.stdin.buffer.read() if inputs == ("-",) else None
    job_list = [Job("optimize", inp, cfg, output=out, in_place=in_place, validate=validate, vopts=vopts,
                    bisect=do_bisect, check=not no_check, metadata=not no_metadata, debug=debug, data=stdin_data,
                    graph_diff=report_html is not None)
                for inp, out in zip(inputs, outs)]
    if shard_kn is not None:
        st.info(escape(shard_text(shard_kn, len(job_list), shard_of)))
    reports = run_jobs(job_list, jobs, st, progress=(not quiet) and st.err.is_terminal)
    code = finish(Report("optimize", reports, shard=shard_kn, shard_of=shard_of), st,
                  human=human_console(st, quiet=quiet, to_stderr=st.model_to_stdout), report_json=report_json,
                  report_md=report_md, verbose=verbose, report_html=report_html)
    if code != EXIT_OK:
        sys.exit(code)


def plan_outputs(inputs: tuple[str, ...], output: str | None, out_dir: str | None, in_place: bool) -> list[str]:
    """The output path of each input (-o, --out-dir, --in-place or the default beside it), checked up front so
    that a bad combination is one usage error before any model is read; creates --out-dir."""
    from graphopt.files import check_output_path, default_output

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


def __getattr__(name: str) -> Any:
    # names this module used to import at module level, re-exported lazily for callers that take them from here
    lazy = {"Job": "graphopt.runner", "run_job": "graphopt.runner", "Steps": "graphopt.cli.fanout",
            "finish": "graphopt.cli.fanout", "human_console": "graphopt.cli.fanout", "run_jobs": "graphopt.cli.fanout"}
    if name not in lazy:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(lazy[name]), name)


# Job, run_job, Steps, finish, human_console and run_jobs are still importable from here (see __getattr__)
__all__ = ["make_config", "make_validate_options", "optimize_cmd", "pipeline_options", "plan_outputs",
           "report_options", "validation_options"]
