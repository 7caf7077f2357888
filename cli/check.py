"""`graphopt check`: a one-line CI step over many models. Nothing is written."""

from __future__ import annotations

import sys

import click

from graphopt.errors import EXIT_OK

from .common import State, common_options, handle_errors, setup_logging
from .options import (
    apply_shard,
    make_config,
    make_validate_options,
    pipeline_options,
    report_options,
    shard_option,
    validation_options,
)


@click.command("check")
@click.argument("models", metavar="MODEL...", nargs=-1, required=True)
@click.option("--fail-if-optimizable", is_flag=True,
              help="Exit 8 when a model is valid but graphopt would still change it.")
@click.option("--junit-xml", metavar="FILE", help="Write JUnit XML: one test case per model (for CI systems that "
              "show test results).")
@shard_option
@pipeline_options
@validation_options
@report_options
@common_options
@handle_errors
def check_cmd(models: tuple[str, ...], fail_if_optimizable: bool, junit_xml: str | None, shard: str | None,
              preset: str | None, passes: tuple[str, ...],
              skip: tuple[str, ...], sets: tuple[str, ...], config_path: str | None, max_rounds: int | None,
              strict: bool | None, verify_each: bool, no_check: bool, annotate_shapes: bool | None,
              validate: bool, seed: int,
              dims: tuple[str, ...], trials: int | None, inputs_npz: str | None, rtol: float | None,
              atol: float | None, bench_time: float, bench_runs: int | None, threads: int, bench_level: str,
              ort_level: str, do_bisect: bool, report_json: str | None, report_md: str | None,
              report_html: str | None, jobs: int, verbose: int, quiet: bool, debug: bool) -> None:
    """Check models for CI: onnx.checker, onnxruntime, and an in-memory -O2 run that must validate.

    For each model: the ONNX checker's full check, a load in onnxruntime, the pipeline (-O2 unless told otherwise)
    run in memory, and validation of the result against the original. Prints one line per model and a summary
    table; nothing is written. Exit codes: 3 when a model is invalid, 1 when validation fails, 8 with
    --fail-if-optimizable when graphopt would still change a model; over several models the worst one wins.

    \b
    Examples:
      graphopt check models/*.onnx
      graphopt check model.onnx --fail-if-optimizable --report-json check.json
      graphopt check a.onnx b.onnx -j 2 --report-md "$GITHUB_STEP_SUMMARY"
      graphopt check models/*.onnx --junit-xml graphopt.xml
      graphopt check models/*.onnx --shard 2/4          # CI job 2 of 4
      graphopt check models/*.onnx --report-html check.html   # one page, pictures of what would change
    """
    # imported here, not at module level: `graphopt --help` must not import onnx (see cli/main.py)
    from graphopt.report import Report
    from graphopt.runner import Job

    from .fanout import finish, human_console, run_jobs, write_report_file

    setup_logging(verbose, quiet)
    if "-" in models and len(models) > 1:
        raise click.UsageError("stdin ('-') can only be read as the only model")
    selected, shard_kn, shard_of = apply_shard(models, shard)
    st = State(verbose, quiet, debug, model_to_stdout=report_json == "-")
    cfg = make_config(preset=preset, passes=passes, skip=skip, sets=sets, max_rounds=max_rounds, strict=strict,
                      config_path=config_path, verify_each=verify_each, annotate_shapes=annotate_shapes)
    vopts = make_validate_options(seed=seed, dims=dims, trials=trials, inputs_npz=inputs_npz, rtol=rtol, atol=atol,
                                  bench_runs=bench_runs, bench_time=bench_time, threads=threads,
                                  ort_level=ort_level, bench_level=bench_level, jobs=jobs)
    stdin_data = sys.stdin.buffer.read() if models == ("-",) else None
    job_list = [Job("check", m, cfg, output=None, validate=validate, vopts=vopts, bisect=do_bisect,
                    fail_if_optimizable=fail_if_optimizable, check=not no_check, debug=debug, data=stdin_data,
                    graph_diff=report_html is not None)
                for m in selected]
    reports = run_jobs(job_list, jobs, st, progress=(not quiet) and st.err.is_terminal)
    report = Report("check", reports, shard=shard_kn, shard_of=shard_of)
    code = finish(report, st, human=human_console(st, quiet=quiet, to_stderr=report_json == "-"),
                  report_json=report_json, report_md=report_md, verbose=verbose,
                  report_html=report_html)
    if junit_xml is not None:
        from graphopt.report import to_junit_xml

        code = write_report_file(junit_xml, to_junit_xml(report), code)
    if code != EXIT_OK:
        sys.exit(code)
