"""`graphopt explain MODEL RULE`: where a fusion rule fired, and why it did not elsewhere."""

from __future__ import annotations

import json

import click

from .common import State, common_options, escape, handle_errors, setup_logging


@click.command("explain")
@click.argument("input", metavar="MODEL")
@click.argument("rule", required=False)
@click.option("--alone", is_flag=True, help="Run the rule by itself (default: with the other rules of its level, "
              "as the fuse pass would, so that fusions that feed it happen first).")
@click.option("-O3", "aggressive", is_flag=True, help="Run alongside the -O3 (aggressive) rules.")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
@click.option("--list", "list_rules", is_flag=True, help="List the fusion rules and exit.")
@common_options
@handle_errors
def explain_cmd(input: str, rule: str | None, alone: bool, aggressive: bool, as_json: bool, list_rules: bool,
                verbose: int, quiet: bool, debug: bool) -> None:
    """Explain a fusion rule on a model: for every node where the rule was tried, whether it fired or why not.

    The fuse pass runs on the model as loaded (nothing is written), without the other passes of the pipeline.

    \b
    Examples:
      graphopt explain model.onnx fuse-conv-bn
      graphopt explain model.onnx fuse-layer-norm --json
      graphopt explain model.onnx --list
    """
    # imported here, not at module level: `graphopt --help` must not import onnx (see cli/main.py)
    from rich.table import Table

    from graphopt.files import read_model
    from graphopt.jit import init
    from graphopt.pipeline import PipelineConfig
    from graphopt.rewrite.driver import explain

    st = State(verbose, quiet, debug)
    setup_logging(verbose, quiet)
    if list_rules or rule is None:
        ctx = init(None, PipelineConfig(passes=[]))
        rows = [{"name": r.name, "level": r.level, "summary": r.summary,
                 "opsets": [r.opsets[0], r.opsets[1]]} for r in ctx.rules.all()]
        if as_json:
            click.echo(json.dumps({"rules": rows}, indent=2))
            return
        t = Table(title="fusion rules")
        for col in ("rule", "level", "opsets", "what it does"):
            t.add_column(col, overflow="fold")
        for r in rows:
            lo, hi = r["opsets"]
            t.add_row(escape(r["name"]), escape(r["level"]), f"{lo}.." + ("" if hi is None else str(hi)),
                      escape(r["summary"]))
        st.out.print(t)
        return
    model = read_model(input)
    ctx = init(model, PipelineConfig(passes=[]))
    target = ctx.rules.get(rule)  # ConfigError with a did-you-mean hint for an unknown name
    levels = ("portable", "aggressive") if aggressive or target.level == "aggressive" else ("portable",)
    others = [] if alone else [r for r in ctx.rules.all() if r.level in levels]
    rep = explain(model, target, others, jit=ctx)
    if as_json:
        click.echo(json.dumps(rep.to_dict(), indent=2))
        return
    out = st.out
    out.print(f"[bold]{escape(rule)}[/]: {escape(target.summary)}")
    if rep.opset_reason:
        out.print(f"not applicable: {escape(rep.opset_reason)}")
        return
    if not rep.candidates:
        ops = ", ".join(target.root_ops())
        out.print(f"no candidate: the model has no {escape(ops)} node")
        return
    fired = sum(c.fired for c in rep.candidates)
    out.print(f"{fired} of {len(rep.candidates)} candidate node(s) fused")
    for c in rep.candidates:
        where = f"{c.op_type} {c.node!r}" + (f" (in {c.graph!r})" if c.graph != model.graph.name else "")
        if c.fired:
            out.print(f"  [green]fired[/]    {escape(where)}")
        else:
            out.print(f"  [yellow]no[/]       {escape(where)}: {escape(c.reason)}")
    if not alone and rep.stats.fired:
        others_fired = {k: v for k, v in rep.stats.fired.items() if k != rule}
        if others_fired:
            out.print("[dim]other rules that fired: " +
                      escape(", ".join(f"{k} x{v}" for k, v in sorted(others_fired.items()))) + "[/]")
