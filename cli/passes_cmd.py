"""`graphopt passes`: list every registered pass."""

from __future__ import annotations

import json
from typing import Any

import click

from .common import State, common_options, escape, handle_errors, setup_logging


def pass_catalog(ctx: Any) -> list[dict[str, Any]]:
    """Plain data describing every registered pass."""
    from graphopt.pipeline import PRESETS, preset_passes

    in_preset = {p: set(preset_passes(p, ctx.passes)) for p in PRESETS}
    out = []
    for name in ctx.passes.names():
        cls = ctx.passes.get(name)
        out.append({
            "name": name,
            "kind": getattr(cls, "kind", ""),
            "summary": getattr(cls, "summary", "") or (cls.__doc__ or "").strip().split("\n")[0],
            "presets": [p for p in PRESETS if name in in_preset[p]],
            "origin": ctx.passes.origin(name),
            "options": [{"name": o.name.replace("_", "-"), "type": o.type, "default": o.default, "help": o.help}
                        for o in cls.option_infos()],
        })
    return out


@click.command("passes")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@common_options
@handle_errors
def passes_cmd(as_json: bool, verbose: int, quiet: bool, debug: bool) -> None:
    """List the registered passes: name, kind, description, presets, options.

    \b
    Examples:
      graphopt passes
      graphopt passes --json | jq '.passes[].name'
    """
    # imported here, not at module level: `graphopt --help` must not import onnx (see cli/main.py)
    from rich.table import Table

    from graphopt.jit import init
    from graphopt.pipeline import PipelineConfig

    st = State(verbose, quiet, debug)
    setup_logging(verbose, quiet)
    ctx = init(None, PipelineConfig(passes=[]))
    cat = pass_catalog(ctx)
    if as_json:
        click.echo(json.dumps({"passes": cat, "warnings": ctx.warnings}, indent=2, default=str))
        return
    for w in ctx.warnings:
        st.err.print(f"[yellow]warning:[/] {escape(str(w))}")
    t = Table(title="graphopt passes", show_lines=False)
    for col in ("pass", "kind", "presets", "description", "options (default)"):
        t.add_column(col, overflow="fold")
    for p in cat:
        # plugin passes bring their own names, summaries and defaults: escaped, never taken as rich markup
        opts = "\n".join(f"{o['name']}={o['default']!r}" for o in p["options"]) or "-"
        origin = "" if p["origin"] == "builtin" else f" [dim]({escape(str(p['origin']))})[/]"
        t.add_row(escape(p["name"]) + origin, escape(str(p["kind"])),
                  escape(" ".join("-" + x for x in p["presets"]) or "-"), escape(str(p["summary"])), escape(opts))
    st.out.print(t)
