"""The options optimize and check share (pipeline, validation, reports) and their conversion to library objects."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from graphopt.errors import (
    UsageError,
)
from graphopt.validate.results import ORT_LEVELS, ValidateOptions  # plain data: no numpy, onnx or onnxruntime

if TYPE_CHECKING:
    from graphopt.pipeline import PipelineConfig

F = TypeVar("F", bound=Callable[..., Any])
StepFn = Callable[[str], None]


def _split(values: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for v in values:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


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
        click.option("--no-check", "no_check", is_flag=True,
                     help="Skip onnx's checker and strict shape inference in the validity checks of the input and "
                     "the result (for experts; graphopt's own structural checks always run)."),
        click.option("--annotate-shapes", is_flag=True, default=None,
                     help="Write the inferred shapes (symbolic dims named batch*seq, ...) into the output's "
                     "value_info (default: off, the output declares what the input declared)."),
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
        click.option("--trials", type=click.IntRange(1, 100), default=None,
                     help="Random-input trials, each with other dim sizes (default: 3 with two or more symbolic "
                     "input dims, 2 with one, 1 when every input shape is fixed)."),
        click.option("--inputs", "inputs_npz", type=click.Path(dir_okay=False), metavar="FILE.npz",
                     help="Real inputs (numpy .npz, names matching the model's inputs) instead of random ones."),
        click.option("--rtol", type=click.FloatRange(min=0), help="Relative tolerance for float outputs "
                     "(default per dtype: float32 1e-3, float16 1e-2, float64 1e-6)."),
        click.option("--atol", type=click.FloatRange(min=0), help="Absolute tolerance for float outputs "
                     "(default per dtype: float32 1e-4, float16 1e-2, float64 1e-8)."),
        click.option("--bench-time", type=click.FloatRange(min=0), default=2.0, show_default=True,
                     metavar="SECONDS", help="Time budget of the latency benchmark: the two models run "
                     "alternately until it is spent (at least 3, at most 50 runs each; 0: no benchmark)."),
        click.option("--bench-runs", type=click.IntRange(0, 100000), default=None,
                     help="Exactly N timed runs of each model after a warm-up, whatever the time (0: no "
                     "benchmark). Default: as --bench-time allows."),
        click.option("--threads", type=click.IntRange(1, 1024), default=1, show_default=True,
                     help="onnxruntime intra-op threads of the latency benchmark (the correctness runs use the "
                     "idle cores)."),
        click.option("--bench-level", type=click.Choice(ORT_LEVELS), default="all", show_default=True,
                     help="onnxruntime's own graph optimization level in the latency benchmark."),
        click.option("--ort-level", type=click.Choice(ORT_LEVELS), default="disable", show_default=True,
                     help="onnxruntime's own graph optimization level in the correctness runs (disable: both "
                     "models run as written)."),
        click.option("--bisect/--no-bisect", "do_bisect", default=True, show_default=True,
                     help="On a mismatch, find the culprit pass by bisection and optimize without it."),
    ]):
        fn = deco(fn)
    return fn


def _html_path(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value == "-":
        raise click.BadParameter("the HTML report goes to a file, not stdout")
    return value


def report_options(fn: F) -> F:
    fn = click.option("--report-html", metavar="FILE", callback=_html_path, help="Write a self-contained HTML report to FILE: summary, "
                      "passes, op-type chart, validation, and pictures of each region of the graph that changed, "
                      "before and after (pictures need Graphviz: the 'html' extra and the dot program).")(fn)
    fn = click.option("--report-md", metavar="FILE", help="Append a markdown summary to FILE (CI job summaries, "
                      "e.g. $GITHUB_STEP_SUMMARY).")(fn)
    fn = click.option("--report-json", metavar="FILE", help="Write the report as JSON ('-' = stdout; schema: "
                      "docs/report.md).")(fn)
    fn = click.option("-j", "--jobs", type=click.IntRange(1, 256), default=1, show_default=True,
                      help="Worker processes for several models.")(fn)
    return fn


def shard_option(fn: F) -> F:
    """--shard K/N: this CI job's part of the models (optimize and check)."""
    return click.option("--shard", metavar="K/N",
                        help="Process only shard K of N (1-based) of the models: a stable split by path, so that N "
                        "CI jobs given the same models cover each exactly once.")(fn)


def apply_shard(models: tuple[str, ...], shard: str | None) -> tuple[list[str], tuple[int, int] | None, int | None]:
    """The models of this shard, the shard (K, N) and the number of distinct models over all shards; the models
    unchanged without --shard."""
    if shard is None:
        return list(models), None, None
    from graphopt.files import parse_shard, select_shard, shard_key

    k, n = parse_shard(shard)
    return select_shard(list(models), k, n), (k, n), len({shard_key(m) for m in models})


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


def make_validate_options(*, seed: int, dims: tuple[str, ...], trials: int | None, inputs_npz: str | None,
                          rtol: float | None, atol: float | None, bench_runs: int | None, bench_time: float = 2.0,
                          threads: int, ort_level: str, bench_level: str = "all", jobs: int = 1) -> ValidateOptions:
    if inputs_npz is not None and not os.path.isfile(inputs_npz):
        raise UsageError(f"--inputs {inputs_npz}: no such file")
    # correctness runs take onnxruntime's default threads (one per core), shared out between -j workers
    check_threads = 0 if jobs <= 1 else max(1, (os.cpu_count() or 1) // jobs)
    return ValidateOptions(seed=seed, trials=trials, dims=parse_dims(dims), inputs=inputs_npz, rtol=rtol,
                           atol=atol, bench_runs=bench_runs, bench_time=bench_time, threads=threads,
                           ort_level=ort_level, bench_level=bench_level, check_threads=check_threads)


def make_config(*, preset: str | None, passes: tuple[str, ...], skip: tuple[str, ...], sets: tuple[str, ...],
                max_rounds: int | None, strict: bool | None, config_path: str | None,
                verify_each: bool, annotate_shapes: bool | None = None) -> PipelineConfig:
    """The pipeline configuration from the shared pipeline flags (config file and pyproject.toml included),
    checked against the registry up front so that a typo is a usage error before any model is read."""
    from graphopt.pipeline import build_config

    cfg = build_config(preset=preset, passes=_split(passes) if passes else None, skip=_split(skip),
                       sets=list(sets), max_rounds=max_rounds, strict=strict, config_path=config_path,
                       annotate_shapes=annotate_shapes)
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
