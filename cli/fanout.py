"""Running many models: in this process or in worker processes (-j N), with a progress display; printing the
report and writing --report-json / --report-md; the exit code."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import signal
from typing import Any

import click
from rich.console import Console

from graphopt.errors import (
    EXIT_OUTPUT,
    GraphoptError,
    Interrupted,
    OutputError,
)
from graphopt.report import ModelReport, Report, render, render_model, to_markdown
from graphopt.runner import Job, run_job, set_error

from .common import State, escape, print_error, setup_logging


class _Worker:
    """A worker process's state: whether a job is running. SIGINT/SIGTERM stop a running job the way they stop the
    main process (rollback, temporary files deleted); an idle worker just exits."""

    running = False

    @classmethod
    def on_signal(cls, signum: int, _frame: Any) -> None:
        if cls.running:
            raise Interrupted(signum)
        os._exit(128 + signum)


def _worker_init(verbose: int, quiet: bool, validate: bool = False) -> None:
    setup_logging(verbose, quiet)
    signal.signal(signal.SIGTERM, _Worker.on_signal)
    signal.signal(signal.SIGINT, _Worker.on_signal)
    _preload(validate)


def _preload(validate: bool) -> None:
    """Import onnxruntime before the first model when validation will need it: a cost of the process, paid once,
    that no model's timings (nor the first pass that evaluates a node) should carry."""
    if validate:
        import onnxruntime  # noqa: F401


def _worker_run(job: Job) -> ModelReport:
    _Worker.running = True
    try:
        return run_job(job)
    finally:
        _Worker.running = False


class Steps:
    """A transient rich spinner naming the current step; silent unless enabled (a terminal, not -q)."""

    def __init__(self, console: Console, enabled: bool):
        self.console = console
        self.enabled = enabled
        self._p: Any = None
        self._task: Any = None

    def __enter__(self) -> Steps:
        if self.enabled:
            from rich.progress import (
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

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
    validate = any(j.validate for j in jobs)
    if n_workers <= 1 or len(jobs) <= 1:
        _preload(validate)
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
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       console=st.err, transient=True)
        bar.start()
        task = bar.add_task(f"{jobs[0].command} ({n_workers} workers)", total=len(jobs))
    try:
        with cf.ProcessPoolExecutor(max_workers=min(n_workers, len(jobs)), mp_context=mp,
                                    initializer=_worker_init, initargs=(st.verbose, st.quiet, validate)) as ex:
            futs = {ex.submit(_worker_run, job): i for i, job in enumerate(jobs)}
            try:
                for fut in cf.as_completed(futs):
                    i = futs[fut]
                    try:
                        reports[i] = fut.result()
                    except cf.process.BrokenProcessPool as e:
                        rep = ModelReport(input=jobs[i].input, output=jobs[i].output)
                        set_error(rep, GraphoptError(
                            f"{jobs[i].input}: the worker process died (killed for lack of memory?)",
                            hint="rerun this model alone, with -j 1"), jobs[i].debug, cause=e)
                        reports[i] = rep
                    if bar is not None:
                        bar.advance(task)
            except KeyboardInterrupt:
                # stop the workers the way this process was stopped (each rolls back and deletes its temporary
                # files), before the pool's exit waits for them
                for f in futs:
                    f.cancel()
                for proc in list((getattr(ex, "_processes", None) or {}).values()):
                    with contextlib.suppress(OSError, ValueError):
                        proc.terminate()
                raise
    finally:
        if bar is not None:
            bar.stop()
    return [r for r in reports if r is not None]


def finish(report: Report, st: State, *, human: Console | None, report_json: str | None, report_md: str | None,
           verbose: int, report_html: str | None = None) -> int:
    """Print the human report and errors, write --report-json / --report-md / --report-html; returns the exit
    code."""
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
        if report_html is not None:
            from graphopt.html_report import write_html

            write_html(report, report_html)
    except OSError as e:
        err = OutputError(f"{e.filename or 'report'}: cannot write the report: {e.strerror or e}")
        print_error(err)
        from graphopt.report import worst_exit_code

        code = worst_exit_code([code, EXIT_OUTPUT])
    return code


def write_report_file(path: str, text: str, code: int) -> int:
    """Write a report file (--junit-xml); on failure print the error and return the worse exit code."""
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        print_error(OutputError(f"{e.filename or path}: cannot write the report: {e.strerror or e}"))
        from graphopt.report import worst_exit_code

        return worst_exit_code([code, EXIT_OUTPUT])
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
