"""`graphopt inspect`: a model's summary."""

from __future__ import annotations

import json
from typing import Any

import click

from graphopt.errors import GraphoptError, InvalidModelError

from .common import State, common_options, escape, handle_errors, setup_logging


@click.command("inspect")
@click.argument("input", metavar="IN")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--no-symbols", is_flag=True, help="Skip symbolic shape inference.")
@click.option("--no-check", "no_check", is_flag=True,
              help="Skip onnx's checker in the validity checks (graphopt's structural checks always run).")
@common_options
@handle_errors
def inspect_cmd(input: str, as_json: bool, no_symbols: bool, no_check: bool, verbose: int, quiet: bool,
                debug: bool) -> None:
    """Summarize a model: versions, interface, op histogram, parameters, external data, symbols.

    \b
    Examples:
      graphopt inspect model.onnx
      graphopt inspect model.onnx --json > summary.json
      cat model.onnx | graphopt inspect -
    """
    # imported here, not at module level: `graphopt --help` must not import onnx (see cli/main.py)
    from graphopt.files import read_model
    from graphopt.jit import init
    from graphopt.pipeline import PipelineConfig
    from graphopt.provenance import read_record
    from graphopt.summary import summarize
    from graphopt.validate.gate import check_input

    st = State(verbose, quiet, debug)
    setup_logging(verbose, quiet)
    model = read_model(input)
    name = "<stdin>" if input == "-" else input
    info: dict[str, Any] = summarize(model, path=None if input == "-" else input)
    if input == "-":
        info["file_bytes"] = model.meta.get("source_bytes")
    info["graphopt"] = read_record(model.metadata_props)  # how graphopt made it (None: not made by graphopt)
    # the same validity gate as optimize and check: an invalid model is summarized as far as possible, then refused
    invalid: GraphoptError | None = None
    try:
        gate = check_input(model, data=model.meta.get("source_data") if input == "-" else None,
                           path=None if input == "-" else input, checker=not no_check, name=name)
        info["valid"], info["warnings"] = True, list(gate.warnings)
    except InvalidModelError as e:
        invalid = e
        info["valid"], info["problems"] = False, list(e.details.get("problems", [e.message]))
    sym: dict[str, Any] = {}
    if invalid is None:
        ctx = init(model, PipelineConfig(passes=[]), infer_symbols=not no_symbols)
        sym = ctx.symbols.summary() if hasattr(ctx.symbols, "summary") else {}
    info["symbols"] = sym
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        if invalid is not None:
            raise invalid
        return
    _render(st, input, info, sym)
    if invalid is not None:
        raise invalid


def _render(st: State, input: str, info: dict[str, Any], sym: dict[str, Any]) -> None:
    # every name here comes from the model or the command line: escaped, so that `[batch, seq]` or a node named
    # `[bold]` is shown as written instead of being taken as rich markup
    from rich.table import Table

    from graphopt.provenance import describe
    from graphopt.report import fmt_bytes

    e = escape
    c = st.out
    c.print(f"[bold]{e('<stdin>' if input == '-' else input)}[/]  {fmt_bytes(info['file_bytes'])}")
    c.print(e(f"ir_version {info['ir_version']}  opsets "
              + ", ".join(f"{d} {v}" for d, v in info["opsets"].items())
              + (f"  producer {info['producer']}" if info["producer"] else "")))
    c.print(f"nodes {info['nodes']} ({info['nodes_top_level']} top level, {info['subgraphs']} subgraphs)  "
            f"functions {info['functions']}  initializers {info['initializers']}  "
            f"parameters {info['parameters']:,} ({fmt_bytes(info['parameter_bytes'])})")
    ext = info["external_data"]
    if ext["tensors"]:
        c.print(f"external data: {ext['tensors']} tensors in " +
                ", ".join(f"{e(str(f))} ({fmt_bytes(b)})" for f, b in ext["files"].items()))
    if info.get("graphopt"):
        c.print(f"made by {e(describe(info['graphopt']))}")
    io = Table(title="interface", show_header=True)
    io.add_column("")
    io.add_column("name")
    io.add_column("dtype")
    io.add_column("shape")
    for kind in ("inputs", "outputs"):
        for v in info[kind]:
            io.add_row(kind[:-1], e(str(v["name"])), e(str(v["dtype"])), e(str(v["shape_str"])))
    c.print(io)
    ops = Table(title="op types")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for op, n in info["op_types"].items():
        ops.add_row(e(op), str(n))
    c.print(ops)
    syms = sym.get("symbols") if isinstance(sym, dict) else None
    if syms:
        max_rows = 40
        notes = []
        if len(syms) > max_rows:
            notes.append(f"{len(syms) - max_rows} more in --json")
        hidden = sym.get("fresh_symbols_not_shown", 0)
        if hidden:
            notes.append(f"{hidden} fresh unk_N symbols of unknown dims not shown")
        t = Table(title="shape symbols", caption="; ".join(notes) or None)
        t.add_column("symbol")
        t.add_column("origin")
        t.add_column("unified with")
        for s in syms[:max_rows]:
            t.add_row(e(str(s.get("name"))), e(str(s.get("origin", ""))),
                      e(", ".join(map(str, s.get("unified_with", [])))))
        c.print(t)
        if sym.get("conflicts"):
            c.print(f"[yellow]shape conflicts:[/] {len(sym['conflicts'])} (first: {e(str(sym['conflicts'][0]))})")
