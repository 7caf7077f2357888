"""`graphopt inspect`: a model's summary."""

from __future__ import annotations

import json
from typing import Any

import click

from .common import State, common_options, handle_errors, setup_logging


@click.command("inspect")
@click.argument("input", metavar="IN")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--no-symbols", is_flag=True, help="Skip symbolic shape inference.")
@common_options
@handle_errors
def inspect_cmd(input: str, as_json: bool, no_symbols: bool, verbose: int, quiet: bool, debug: bool) -> None:
    """Summarize a model: versions, interface, op histogram, parameters, external data, symbols.

    \b
    Examples:
      graphopt inspect model.onnx
      graphopt inspect model.onnx --json > summary.json
      cat model.onnx | graphopt inspect -
    """
    # imported here, not at module level: `graphopt --help` must not import onnx (see cli/main.py)
    from rich.table import Table

    from graphopt.files import read_model
    from graphopt.jit import init
    from graphopt.pipeline import PipelineConfig
    from graphopt.report import fmt_bytes
    from graphopt.summary import summarize

    st = State(verbose, quiet, debug)
    setup_logging(verbose, quiet)
    model = read_model(input)
    info: dict[str, Any] = summarize(model, path=None if input == "-" else input)
    if input == "-":
        info["file_bytes"] = model.meta.get("source_bytes")
    ctx = init(model, PipelineConfig(passes=[]), infer_symbols=not no_symbols)
    sym = ctx.symbols.summary() if hasattr(ctx.symbols, "summary") else {}
    info["symbols"] = sym
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    c = st.out
    c.print(f"[bold]{'<stdin>' if input == '-' else input}[/]  {fmt_bytes(info['file_bytes'])}")
    c.print(f"ir_version {info['ir_version']}  opsets "
            + ", ".join(f"{d} {v}" for d, v in info["opsets"].items())
            + (f"  producer {info['producer']}" if info["producer"] else ""))
    c.print(f"nodes {info['nodes']} ({info['nodes_top_level']} top level, {info['subgraphs']} subgraphs)  "
            f"functions {info['functions']}  initializers {info['initializers']}  "
            f"parameters {info['parameters']:,} ({fmt_bytes(info['parameter_bytes'])})")
    ext = info["external_data"]
    if ext["tensors"]:
        c.print(f"external data: {ext['tensors']} tensors in " +
                ", ".join(f"{f} ({fmt_bytes(b)})" for f, b in ext["files"].items()))
    io = Table(title="interface", show_header=True)
    io.add_column("")
    io.add_column("name")
    io.add_column("dtype")
    io.add_column("shape")
    for kind in ("inputs", "outputs"):
        for v in info[kind]:
            io.add_row(kind[:-1], v["name"], v["dtype"], v["shape_str"])
    c.print(io)
    ops = Table(title="op types")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for op, n in info["op_types"].items():
        ops.add_row(op, str(n))
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
            t.add_row(str(s.get("name")), str(s.get("origin", "")), ", ".join(map(str, s.get("unified_with", []))))
        c.print(t)
        if sym.get("conflicts"):
            c.print(f"[yellow]shape conflicts:[/] {len(sym['conflicts'])} (first: {sym['conflicts'][0]})")
