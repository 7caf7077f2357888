"""`graphopt optimize`."""

from __future__ import annotations

import time

import click

from graphopt.jit import init
from graphopt.pipeline import build_config

from .common import State, common_options, handle_errors, setup_logging
from .io import check_output_path, default_output, read_model, write_model


def _split(values: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for v in values:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


@click.command("optimize")
@click.argument("input", metavar="IN")
@click.option("-o", "--output", metavar="OUT", help="Output path ('-' = stdout). Default: <stem>.opt.onnx beside IN.")
@click.option("--in-place", is_flag=True, help="Allow overwriting IN with the result.")
@click.option("-O0", "preset", flag_value="O0", help="Round trip only.")
@click.option("-O1", "preset", flag_value="O1", help="Safe cleanups.")
@click.option("-O2", "preset", flag_value="O2", help="Default: cleanups, constant folding, shape simplification, "
              "portable fusions.")
@click.option("-O3", "preset", flag_value="O3", help="Adds aggressive and runtime-specific rewrites.")
@click.option("--passes", "passes", multiple=True, metavar="A,B,C", help="Run exactly these passes, in this order.")
@click.option("--skip", multiple=True, metavar="X,Y", help="Remove passes from the preset.")
@click.option("--set", "sets", multiple=True, metavar="PASS.OPTION=VALUE", help="Set a pass option.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="A graphopt.toml config file "
              "(default: [tool.graphopt] in the nearest pyproject.toml).")
@click.option("--max-rounds", type=click.IntRange(1, 1000), help="Bound on fixed-point rounds (default 8).")
@click.option("--strict", is_flag=True, default=None, help="A failing pass is fatal (exit 4) instead of rolled back.")
@click.option("--verify-each", is_flag=True, help="Check IR invariants after every pass (slower; for debugging).")
@common_options
@handle_errors
def optimize_cmd(input: str, output: str | None, in_place: bool, preset: str | None, passes: tuple[str, ...],
                 skip: tuple[str, ...], sets: tuple[str, ...], config_path: str | None, max_rounds: int | None,
                 strict: bool | None, verify_each: bool, verbose: int, quiet: bool, debug: bool) -> None:
    """Optimize an ONNX model.

    \b
    Examples:
      graphopt optimize model.onnx                       # -> model.opt.onnx
      graphopt optimize model.onnx -o small.onnx -O3
      graphopt optimize model.onnx --passes dce,cse      # exactly these passes
      graphopt optimize model.onnx --skip fuse --set fold-constants.max-output-bytes=4M
      cat model.onnx | graphopt optimize - -o - > out.onnx
    """
    out_path = output or (input if in_place else default_output(input))
    st = State(verbose, quiet, debug, model_to_stdout=(out_path == "-"))
    setup_logging(verbose, quiet)
    check_output_path(input, out_path, in_place=in_place)
    cfg = build_config(preset=preset, passes=_split(passes) if passes else None, skip=_split(skip),
                       sets=list(sets), max_rounds=max_rounds, strict=strict, config_path=config_path)
    cfg.verify_each = verify_each
    t0 = time.perf_counter()
    model = read_model(input)
    t_load = time.perf_counter() - t0
    nodes_before = model.num_nodes()
    ctx = init(model, cfg)
    for w in ctx.warnings:
        st.err.print(f"[yellow]warning:[/] {w}")
    record = ctx.run_pipeline(model)
    if hasattr(ctx.symbols, "annotate"):
        with ctx.translators.guard("infer"):
            ctx.symbols.annotate(model)
    for w in record.warnings:
        st.err.print(f"[yellow]warning:[/] {w}")
    t1 = time.perf_counter()
    with ctx.translators.guard("save", path=None if out_path == "-" else out_path):
        nbytes = write_model(model, out_path, in_place=in_place)
    t_save = time.perf_counter() - t1
    nodes_after = model.num_nodes()
    if not quiet:
        where = "<stdout>" if out_path == "-" else out_path
        pct = (100.0 * (nodes_after - nodes_before) / nodes_before) if nodes_before else 0.0
        st.err.print(f"{input if input != '-' else '<stdin>'}: {nodes_before} -> {nodes_after} nodes ({pct:+.1f}%), "
                     f"{nbytes} bytes written to {where} in {time.perf_counter() - t0:.2f} s "
                     f"(load {t_load:.2f} s, passes {record.seconds:.2f} s, save {t_save:.2f} s)")
