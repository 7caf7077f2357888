"""The report of a graphopt run: plain data first, rendered second.

:class:`Report` holds one :class:`ModelReport` per model. ``Report.to_dict()`` is the JSON that ``--report-json``
writes; its layout is versioned (:data:`SCHEMA_VERSION`) and documented field by field in
``graphopt/schemas/report.schema.json`` (see :func:`load_schema`). :func:`render` draws the same content with rich
for a terminal, :func:`to_markdown` as a markdown summary for CI job pages.

Exit codes of a run over several models: the worst one wins, by :data:`SEVERITY` (least to most severe).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from .diff import GraphDiff
from .errors import (
    EXIT_INTERNAL,
    EXIT_INVALID_MODEL,
    EXIT_MISMATCH,
    EXIT_OK,
    EXIT_OOM,
    EXIT_OPTIMIZABLE,
    EXIT_OUTPUT,
    EXIT_PASS_FAILED,
    EXIT_USAGE,
)
from .validate import BisectResult, ValidationResult

SCHEMA_VERSION = 1

# Least to most severe. Findings about one model (would still change, mismatch, a pass failed, invalid input)
# rank below failures of the run itself (cannot write, bad usage, out of memory, a bug in graphopt).
SEVERITY: tuple[int, ...] = (EXIT_OK, EXIT_OPTIMIZABLE, EXIT_MISMATCH, EXIT_PASS_FAILED, EXIT_INVALID_MODEL,
                             EXIT_OUTPUT, EXIT_USAGE, EXIT_OOM, EXIT_INTERNAL)

STATUS: dict[int, str] = {
    EXIT_OK: "ok", EXIT_MISMATCH: "mismatch", EXIT_USAGE: "usage-error", EXIT_INVALID_MODEL: "invalid",
    EXIT_PASS_FAILED: "pass-failed", EXIT_INTERNAL: "internal-error", EXIT_OUTPUT: "output-error",
    EXIT_OOM: "out-of-memory", EXIT_OPTIMIZABLE: "optimizable",
}


def worst_exit_code(codes: Iterable[int]) -> int:
    """The most severe of `codes` by :data:`SEVERITY` (0 for none; unknown codes rank as internal errors)."""
    rank = {c: i for i, c in enumerate(SEVERITY)}
    worst = EXIT_OK
    for c in codes:
        if rank.get(c, len(SEVERITY)) > rank.get(worst, len(SEVERITY)):
            worst = c
    return worst


# ================================================================================================================
# Data
# ================================================================================================================
@dataclass
class PassRow:
    """One pass over the whole pipeline run: its runs summed."""

    name: str
    runs: int = 0
    seconds: float = 0.0
    removed: int = 0
    added: int = 0
    rewritten: int = 0
    rolled_back: bool = False
    error: dict[str, Any] | None = None
    stats: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "runs": self.runs, "seconds": float(self.seconds), "removed": self.removed,
                "added": self.added, "rewritten": self.rewritten, "rolled_back": self.rolled_back,
                "error": self.error, "stats": dict(self.stats)}


@dataclass
class OpDiff:
    """How many nodes of one op type before and after."""

    op_type: str
    before: int
    after: int

    @property
    def change(self) -> int:
        return self.after - self.before

    def to_dict(self) -> dict[str, Any]:
        return {"op_type": self.op_type, "before": self.before, "after": self.after, "change": self.change}


def op_diff(before: Mapping[str, int], after: Mapping[str, int]) -> list[OpDiff]:
    """Every op type of either model, most frequent (before) first, then by name."""
    ops = set(before) | set(after)
    rows = [OpDiff(op, int(before.get(op, 0)), int(after.get(op, 0))) for op in ops]
    rows.sort(key=lambda r: (-r.before, -r.after, r.op_type))
    return rows


def pass_rows(record: Any) -> list[PassRow]:
    """Per-pass rows from a PipelineRecord, in the order the passes first ran."""
    if record is None:
        return []
    out = []
    for name, d in record.summary_by_pass().items():
        out.append(PassRow(name, d["runs"], d["seconds"], d["removed"], d["added"], d["rewritten"],
                           d["rolled_back"], d["error"], dict(d["stats"])))
    return out


@dataclass
class ModelReport:
    """Everything graphopt knows about one model's run. Times are seconds; sizes are bytes."""

    input: str
    output: str | None = None
    written: bool = False
    exit_code: int = EXIT_OK
    error: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    file_bytes_before: int | None = None
    file_bytes_after: int | None = None
    nodes_before: int | None = None
    nodes_after: int | None = None
    changed: bool = False
    preset: str | None = None
    pipeline: list[str] = field(default_factory=list)
    rounds: int = 0
    converged: bool = True
    disabled: list[str] = field(default_factory=list)
    timings_optimize: dict[str, float] = field(default_factory=dict)
    timings_validate: dict[str, float] = field(default_factory=dict)
    passes: list[PassRow] = field(default_factory=list)
    op_types: list[OpDiff] = field(default_factory=list)
    symbols: dict[str, Any] = field(default_factory=dict)
    init_steps: list[dict[str, Any]] = field(default_factory=list)
    validation: ValidationResult | None = None
    bisection: BisectResult | None = None
    graph_diff: GraphDiff | None = field(default=None, repr=False)  # with Job.graph_diff (--report-html) only
    traceback: str | None = field(default=None, repr=False)   # --debug only; never in the JSON

    @property
    def status(self) -> str:
        return STATUS.get(self.exit_code, "error")

    @property
    def recovered(self) -> bool:
        """A mismatch was found and fixed by disabling the culprit pass(es)."""
        return bool(self.bisection and self.bisection.culprits and self.bisection.resolved)

    def to_dict(self) -> dict[str, Any]:
        removed = (self.nodes_before - self.nodes_after
                   if self.nodes_before is not None and self.nodes_after is not None else None)
        return {
            "input": self.input,
            "output": self.output,
            "written": self.written,
            "status": self.status,
            "exit_code": self.exit_code,
            "recovered": self.recovered,
            "error": self.error,
            "warnings": list(self.warnings),
            "file_bytes": {"before": self.file_bytes_before, "after": self.file_bytes_after},
            "nodes": {"before": self.nodes_before, "after": self.nodes_after, "removed": removed},
            "changed": self.changed,
            "pipeline": {"preset": self.preset, "passes": list(self.pipeline), "rounds": self.rounds,
                         "converged": self.converged, "disabled": list(self.disabled)},
            "timings": {"optimize": {k: float(v) for k, v in self.timings_optimize.items()},
                        "validate": {k: float(v) for k, v in self.timings_validate.items()}},
            "passes": [p.to_dict() for p in self.passes],
            "op_types": [o.to_dict() for o in self.op_types],
            "symbols": _jsonable(self.symbols),
            "init_steps": [{"index": s.get("index"), "name": s.get("name"), "summary": s.get("summary"),
                            "seconds": float(s.get("seconds") or 0.0)} for s in self.init_steps],
            "validation": None if self.validation is None else self.validation.to_dict(),
            "bisection": None if self.bisection is None else self.bisection.to_dict(),
            "graph_diff": None if self.graph_diff is None else self.graph_diff.to_dict(),
        }


@dataclass
class Report:
    """A whole run: the command and one ModelReport per model, in the order given."""

    command: str
    models: list[ModelReport] = field(default_factory=list)
    shard: tuple[int, int] | None = None   # (K, N) of --shard K/N
    shard_of: int | None = None            # with a shard: the distinct models given, over all shards

    @property
    def exit_code(self) -> int:
        return worst_exit_code(m.exit_code for m in self.models)

    @property
    def shard_text(self) -> str:
        """``"shard 2/4: 3 of 10 model(s)"``, or "" without --shard."""
        return shard_text(self.shard, len(self.models), self.shard_of)

    def to_dict(self) -> dict[str, Any]:
        from .version import __version__

        by_status: dict[str, int] = {}
        for m in self.models:
            by_status[m.status] = by_status.get(m.status, 0) + 1
        nb = [m.nodes_before for m in self.models if m.nodes_before is not None]
        na = [m.nodes_after for m in self.models if m.nodes_after is not None]
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "graphopt", "version": __version__},
            "command": self.command,
            "exit_code": self.exit_code,
            "summary": {"models": len(self.models), "by_status": by_status,
                        "recovered": sum(1 for m in self.models if m.recovered),
                        "nodes_before": sum(nb), "nodes_after": sum(na)},
            "shard": None if self.shard is None else {"index": self.shard[0], "count": self.shard[1],
                                                      "models": len(self.models), "of": self.shard_of},
            "models": [m.to_dict() for m in self.models],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)


def shard_text(shard: tuple[int, int] | None, models: int, of: int | None) -> str:
    """``"shard 2/4: 3 of 10 model(s)"`` (this shard's models of all), or "" for no shard."""
    if shard is None:
        return ""
    return f"shard {shard[0]}/{shard[1]}: {models} of {of} model(s)"


def _jsonable(v: Any) -> Any:
    """Symbol summaries come from another module: make sure they serialize (unknown objects become strings)."""
    return json.loads(json.dumps(v, default=str))


def load_schema() -> dict[str, Any]:
    """The JSON schema of :meth:`Report.to_dict` (draft 2020-12)."""
    text = resources.files("graphopt").joinpath("schemas/report.schema.json").read_text()
    return json.loads(text)


# ================================================================================================================
# Formatting helpers
# ================================================================================================================
def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    x = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if x < 1024 or unit == "GB":
            return f"{int(x)} B" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return str(n)  # pragma: no cover


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 0.01:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def fmt_num(x: float | None) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    return f"{x:.3g}"


def _pct(before: int | None, after: int | None) -> str:
    if not before or after is None:
        return ""
    return f" ({100.0 * (after - before) / before:+.1f}%)"


def _speedup(a: float | None, b: float | None) -> str:
    if not a or not b:
        return ""
    return f" ({a / b:.2f}x)"


def one_line(m: ModelReport, command: str = "optimize") -> str:
    """A one-line summary of a model's result (rich markup)."""
    from rich.markup import escape

    name = escape(m.input)
    if m.error is not None:
        hint = m.error.get("hint") or ""
        return (f"[red]✗[/] {name}: [red]{m.status}[/]: {escape(str(m.error.get('message', '')))}"
                + (f"\n  [dim]hint: {escape(hint)}[/]" if hint else ""))
    v = m.validation
    if v is None:
        vtxt = "not validated"
    elif v.passed:
        worst = max((o.max_abs for o in v.outputs if o.max_abs is not None), default=0.0)
        vtxt = f"validated ({len(v.trials)} trial{'s' if len(v.trials) != 1 else ''}, max abs diff {fmt_num(worst)})"
    elif v.skipped:
        vtxt = "[yellow]validation skipped[/]"
    else:
        vtxt = f"[red]mismatch[/] in {escape(str(v.first_mismatch))}"
    removed = (m.nodes_before or 0) - (m.nodes_after or 0)
    if command == "check":
        would = (f"graphopt would remove {removed} of {m.nodes_before} nodes" if removed > 0 else
                 "graphopt would change it" if m.changed else "already optimized")
        mark = "[green]✓[/]" if m.exit_code == EXIT_OK else "[red]✗[/]"
        return f"{mark} {name}: valid, {vtxt}, {would}"
    mark = "[green]✓[/]" if m.exit_code == EXIT_OK else "[red]✗[/]"
    rec = " [yellow](culprit disabled: " + ", ".join(escape(c) for c in m.disabled) + ")[/]" if m.disabled else ""
    out = escape(m.output or "-") if m.written else "[dim]not written[/]"
    return (f"{mark} {name} -> {out}: {m.nodes_before} -> {m.nodes_after} nodes{_pct(m.nodes_before, m.nodes_after)},"
            f" {vtxt}{rec}")


# ================================================================================================================
# Rich rendering
# ================================================================================================================
def render(report: Report, console: Any, *, verbose: int = 0) -> None:
    """Draw the report on a rich Console: a full report for one optimized model; one line per model plus a
    summary table for several models or for `check` (full reports too with verbose)."""
    if report.command == "optimize" and len(report.models) == 1:
        render_model(report.models[0], console, verbose=verbose)
        return
    for m in report.models:
        console.print(one_line(m, report.command), soft_wrap=True)  # one line per model, for grep
        if verbose and m.error is None:
            render_model(m, console, verbose=verbose)
    render_summary(report, console)


def render_summary(report: Report, console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    title = f"graphopt {report.command}: " + (escape(report.shard_text) if report.shard else
                                               f"{len(report.models)} model(s)")
    t = Table(title=title, title_justify="left")
    for col, just in (("model", "left"), ("status", "left"), ("nodes", "right"), ("removed", "right"),
                      ("size", "right"), ("validation", "left"), ("time", "right")):
        t.add_column(col, justify=just, no_wrap=col != "model", overflow="fold")  # type: ignore[arg-type]
    for m in report.models:
        v = m.validation
        vtxt = "-" if v is None else v.status
        if v is not None and v.failed and v.first_mismatch:
            vtxt += f" ({v.first_mismatch})"
        removed = (m.nodes_before - m.nodes_after) if m.nodes_before is not None and m.nodes_after is not None \
            else None
        style = "green" if m.exit_code == EXIT_OK else "red"
        t.add_row(escape(m.input), f"[{style}]{m.status}[/]" + (" (recovered)" if m.recovered else ""),
                  f"{m.nodes_before if m.nodes_before is not None else '-'} -> "
                  f"{m.nodes_after if m.nodes_after is not None else '-'}",
                  "-" if removed is None else str(removed),
                  fmt_bytes(m.file_bytes_before) if m.file_bytes_after is None else
                  f"{fmt_bytes(m.file_bytes_before)} -> {fmt_bytes(m.file_bytes_after)}",
                  escape(vtxt),
                  fmt_seconds(m.timings_optimize.get("total", 0.0) + m.timings_validate.get("total", 0.0)))
    console.print(t)
    code = report.exit_code
    console.print(f"exit code {code} ({STATUS.get(code, '?')})" if code else "all models ok")


def render_model(m: ModelReport, console: Any, *, verbose: int = 0) -> None:
    """The full report of one model."""
    from rich.markup import escape
    from rich.table import Table

    # -- summary ---------------------------------------------------------------------------------------------
    head = f"[bold]{escape(m.input)}[/]"
    if m.output:
        head += f" -> [bold]{escape(m.output)}[/]" + ("" if m.written else " [red](not written)[/]")
    console.print(head)
    s = Table.grid(padding=(0, 2))
    s.add_column(style="dim")
    s.add_column()
    s.add_row("size", f"{fmt_bytes(m.file_bytes_before)} -> {fmt_bytes(m.file_bytes_after)}"
              + _pct(m.file_bytes_before, m.file_bytes_after))
    s.add_row("nodes", f"{m.nodes_before} -> {m.nodes_after}" + _pct(m.nodes_before, m.nodes_after))
    to = m.timings_optimize
    parts = ", ".join(f"{k} {fmt_seconds(to[k])}" for k in ("load", "check", "init", "passes", "verify", "save")
                      if k in to)
    s.add_row("optimize", f"{fmt_seconds(to.get('total'))} ({parts})" if parts else fmt_seconds(to.get("total")))
    tv = m.timings_validate
    if tv:
        vparts = ", ".join(f"{k.replace('_', ' ')} {fmt_seconds(tv[k])}" for k in ("sessions", "runs", "bench",
                                                                                 "bisection") if tv.get(k))
        s.add_row("validate", fmt_seconds(tv.get("total")) + (f" ({vparts})" if vparts else ""))
    pipe = ", ".join(m.pipeline) or "(no passes)"
    s.add_row("pipeline", f"{'-' + m.preset if m.preset else 'custom'}: {escape(pipe)}; {m.rounds} round(s)"
              + ("" if m.converged else " [yellow](no fixed point)[/]"))
    console.print(s)

    # -- init steps (-v) ---------------------------------------------------------------------------------------
    if verbose and m.init_steps:
        t = Table(title="JIT context init", title_justify="left")
        t.add_column("step")
        t.add_column("summary", overflow="fold")
        t.add_column("time", justify="right")
        for st in m.init_steps:
            t.add_row(escape(f"{st.get('index')}. {st.get('name')}"), escape(str(st.get("summary", ""))),
                      fmt_seconds(st.get("seconds")))
        console.print(t)

    # -- passes ------------------------------------------------------------------------------------------------
    if m.passes:
        t = Table(title="passes", title_justify="left")
        for col in ("pass", "runs", "time", "removed", "added", "rewritten", "rolled back"):
            t.add_column(col, justify="left" if col == "pass" else "right", no_wrap=True)
        if verbose:
            t.add_column("details", overflow="fold")
        for p in m.passes:
            row = [escape(p.name), str(p.runs), fmt_seconds(p.seconds), str(p.removed), str(p.added),
                   str(p.rewritten), "[red]yes[/]" if p.rolled_back else "no"]
            if verbose:
                det = ", ".join(f"{k}={v}" for k, v in p.stats.items())
                if p.error:
                    det = (det + "; " if det else "") + str(p.error.get("message", ""))
                row.append(escape(det))
            t.add_row(*row)
        console.print(t)

    # -- op types ------------------------------------------------------------------------------------------------
    rows = m.op_types if verbose else [o for o in m.op_types if o.change]
    if rows:
        t = Table(title="op types" + ("" if verbose else " (changed)"), title_justify="left")
        t.add_column("op type")
        t.add_column("before", justify="right")
        t.add_column("after", justify="right")
        t.add_column("change", justify="right")
        for o in rows:
            ch = f"{o.change:+d}" if o.change else "0"
            style = "green" if o.change < 0 else ("yellow" if o.change > 0 else "dim")
            t.add_row(escape(o.op_type), str(o.before), str(o.after), f"[{style}]{ch}[/]")
        console.print(t)
    elif m.op_types:
        console.print("[dim]op types: no change[/]")

    # -- symbols -----------------------------------------------------------------------------------------------
    render_symbols(m.symbols, console, verbose=verbose)

    # -- validation --------------------------------------------------------------------------------------------
    if m.validation is not None:
        render_validation(m.validation, console)
    if m.bisection is not None:
        render_bisection(m.bisection, console)
    for w in m.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}")


def render_symbols(sym: Mapping[str, Any], console: Any, *, verbose: int = 0) -> None:
    from rich.markup import escape
    from rich.table import Table

    if not sym:
        return
    lst = sym.get("symbols") if isinstance(sym, Mapping) else None
    if isinstance(lst, list) and lst and all(isinstance(x, Mapping) for x in lst):
        keys: list[str] = []
        for x in lst:
            for k in x:
                if k not in keys:
                    keys.append(k)
        t = Table(title="shape symbols", title_justify="left")
        for k in keys:
            t.add_column(k.replace("_", " "), overflow="fold")
        for x in lst:
            t.add_row(*(escape(", ".join(map(str, x[k])) if isinstance(x.get(k), list) else str(x.get(k, "")))
                        for k in keys))
        console.print(t)
        rest = {k: v for k, v in sym.items() if k != "symbols"}
    else:
        rest = dict(sym)
    # the rest of the symbol summary (counters, unifications) is detail: -v only, conflicts always
    conflicts = rest.get("conflicts")
    if conflicts:
        console.print(f"[yellow]shape conflicts:[/] {escape('; '.join(map(str, conflicts)))}")
    if verbose and rest:
        console.print("[dim]symbols:[/] " + escape(", ".join(
            f"{k}: {len(v) if isinstance(v, (list, dict)) else v}" for k, v in rest.items() if k != "conflicts")))


def render_validation(v: ValidationResult, console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    if v.skipped:
        console.print(f"[yellow]validation skipped:[/] {escape(v.reason or '')}")
        return
    trials = "; ".join(", ".join(f"{k}={x}" for k, x in t.dims.items()) or "fixed shapes" for t in v.trials)
    src = "random inputs, seed " + str(v.seed) if v.input_source == "random" else v.input_source.replace(
        "npz:", "inputs from ")
    title = ("validation [green]passed[/]" if v.passed else "validation [red]FAILED[/]") + \
        f": {len(v.trials)} trial(s) ({escape(trials)}), {escape(src)}"
    console.print(title)  # a line of its own: as a table title it would wrap to the table's width
    t = Table()
    for col in ("output", "dtype", "shape", "max abs diff", "max rel diff", "result"):
        t.add_column(col, justify="right" if col.startswith("max") else "left")
    for o in v.outputs:
        res = "[green]ok[/]" if o.ok else f"[red]FAIL[/] {escape(o.reason or '')}"
        t.add_row(escape(o.name), escape(str(o.dtype)), "-" if o.shape is None else escape(str(o.shape)),
                  fmt_num(o.max_abs), fmt_num(o.max_rel), res)
    console.print(t)
    if v.failed and v.reason:
        console.print(f"[red]mismatch:[/] {escape(v.reason)}")
    so, sn = v.session_seconds_original, v.session_seconds_optimized
    threads = "default threads" if not v.threads else _threads(v.threads)
    console.print(f"proof: onnxruntime, {_level(v.ort_level)}, {threads}: session "
                  f"{fmt_seconds(so)} -> {fmt_seconds(sn)}{_speedup(so, sn)}")
    if v.latency_ms_original is not None and v.latency_ms_optimized is not None:
        bo, bn = v.bench_session_seconds_original, v.bench_session_seconds_optimized
        budget = f" ({v.bench_budget:g} s budget)" if v.bench_budget is not None else ""
        on = " on " + ", ".join(f"{k}={x}" for k, x in v.bench_dims.items()) if v.bench_dims else ""
        console.print(f"latency: onnxruntime, {_level(v.bench_level)}, {_threads(v.bench_threads)}, median of "
                      f"{v.bench_runs} runs{on}{budget}: {v.latency_ms_original:.3f} ms -> "
                      f"{v.latency_ms_optimized:.3f} ms{_speedup(v.latency_ms_original, v.latency_ms_optimized)}; "
                      f"session {fmt_seconds(bo)} -> {fmt_seconds(bn)}{_speedup(bo, bn)}")
    elif v.bench_note:
        console.print(f"latency {escape(v.bench_note)}")
    for w in v.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}")


def _level(level: str) -> str:
    return "graph optimizations disabled" if level == "disable" else f"{level} graph optimizations"


def _threads(n: int) -> str:
    return f"{n} thread{'s' if n != 1 else ''}"


def render_bisection(b: BisectResult, console: Any) -> None:
    from rich.markup import escape

    for c in b.culprits:
        rw = ", ".join(f"{k}={v}" for k, v in c.rewrites.items())
        console.print(f"[red]culprit:[/] pass [bold]{escape(c.name)}[/] changes output "
                      f"[bold]{escape(str(c.first_output))}[/]" + (f" (rewrites: {escape(rw)})" if rw else ""))
    tail = (f"re-optimized without {', '.join(c.name for c in b.culprits)} and validated"
            if b.resolved else "no pipeline without the culprits validates")
    console.print(f"bisection: {len(b.steps)} step(s) in {fmt_seconds(b.seconds)}; {escape(tail)}")


# ================================================================================================================
# Markdown (CI job summaries)
# ================================================================================================================
def to_markdown(report: Report) -> str:
    """A markdown summary: one table row per model, then culprits and errors."""
    lines = [f"### graphopt {report.command}" + (f" ({report.shard_text})" if report.shard else ""), "",
             "| model | status | nodes | size | validation | max abs diff | latency | time |",
             "|---|---|---:|---:|---|---:|---:|---:|"]
    notes: list[str] = []
    for m in report.models:
        v = m.validation
        if v is None:
            vtxt, diff, lat = "-", "-", "-"
        else:
            vtxt = v.status + (f" ({v.first_mismatch})" if v.failed and v.first_mismatch else "")
            worst = [o.max_abs for o in v.outputs if o.max_abs is not None]
            diff = fmt_num(max(worst)) if worst else "-"
            lat = (f"{v.latency_ms_original:.3f} → {v.latency_ms_optimized:.3f} ms"
                   if v.latency_ms_original is not None and v.latency_ms_optimized is not None else "-")
        status = m.status + (" (recovered)" if m.recovered else "")
        size = fmt_bytes(m.file_bytes_before) + (
            "" if m.file_bytes_after is None else f" → {fmt_bytes(m.file_bytes_after)}")
        tot = m.timings_optimize.get("total", 0.0) + m.timings_validate.get("total", 0.0)
        lines.append(f"| `{m.input}` | {status} | {m.nodes_before if m.nodes_before is not None else '-'} → "
                     f"{m.nodes_after if m.nodes_after is not None else '-'} | {size} | {vtxt} | {diff} | {lat} | "
                     f"{fmt_seconds(tot)} |")
        if m.bisection is not None:
            for c in m.bisection.culprits:
                notes.append(f"- `{m.input}`: pass `{c.name}` changes output `{c.first_output}`"
                             + ("; disabled" if m.bisection.resolved else ""))
        if m.error is not None:
            notes.append(f"- `{m.input}`: {m.status}: {m.error.get('message', '')}")
        elif v is not None and v.skipped:
            notes.append(f"- `{m.input}`: validation skipped: {v.reason}")
    lines.append("")
    if notes:
        lines.extend(notes)
        lines.append("")
    lines.append(f"exit code: {report.exit_code}")
    return "\n".join(lines) + "\n"


# ================================================================================================================
# JUnit XML (CI systems that show test results)
# ================================================================================================================
# The model's fault (what a test failure means) vs. a run that could not judge the model (a JUnit error).
_JUNIT_FAILURES = frozenset({EXIT_MISMATCH, EXIT_INVALID_MODEL, EXIT_PASS_FAILED, EXIT_OPTIMIZABLE})


def _xml_text(s: str) -> str:
    """`s` without the characters XML 1.0 cannot hold (control characters other than tab and newlines), each
    written as \\xNN instead: a model path or an error message must not make the whole file unreadable."""
    import re

    return re.sub("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]", lambda m: f"\\x{ord(m.group()):02x}", s)


def _one_line(s: str) -> str:
    return " ".join(s.split())


def to_junit_xml(report: Report) -> str:
    """The report as JUnit XML, the format Jenkins, GitLab, Azure Pipelines and GitHub test-report actions read:
    one ``testsuite`` with one ``testcase`` per model (name: the model's path; classname: ``graphopt.<command>``;
    time: optimize plus validate seconds).

    A model graphopt found wrong (invalid, mismatch, a pass failed under --strict, optimizable under
    --fail-if-optimizable) is a ``failure``; a run that could not judge it (an internal error, out of memory, the
    result could not be written) is an ``error``. Both carry the one-line error as ``message`` and the error, its
    hint and the exit code as text. A valid model whose validation onnxruntime could not run is ``skipped`` (with
    the reason): it fails nothing, as the exit code does not, but it stands out. Everything else passes, with its
    one-line result as ``system-out``."""
    import xml.etree.ElementTree as ET

    from .version import __version__

    cases = []
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total = 0.0
    for m in report.models:
        seconds = m.timings_optimize.get("total", 0.0) + m.timings_validate.get("total", 0.0)
        total += seconds
        case = ET.Element("testcase", {"name": _xml_text(m.input), "classname": f"graphopt.{report.command}",
                                       "file": _xml_text(m.input), "time": f"{seconds:.3f}"})
        counts["tests"] += 1
        if m.error is not None:
            kind = "failure" if m.exit_code in _JUNIT_FAILURES else "error"
            counts["failures" if kind == "failure" else "errors"] += 1
            msg = _one_line(str(m.error.get("message", "")))
            body = [f"{m.status}: {msg}"]
            if m.error.get("hint"):
                body.append(f"hint: {_one_line(str(m.error['hint']))}")
            body.append(f"exit code {m.exit_code}")
            el = ET.SubElement(case, kind, {"message": _xml_text(msg), "type": _xml_text(str(m.error.get("type")
                                                                                             or m.status))})
            el.text = _xml_text("\n".join(body))
        elif m.validation is not None and m.validation.skipped:
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", {"message": _xml_text(_one_line(
                f"validation skipped: {m.validation.reason or ''}"))})
        if m.error is None:
            out = ET.SubElement(case, "system-out")
            out.text = _xml_text(_plain_line(m, report.command))
        if m.warnings:
            err = ET.SubElement(case, "system-err")
            err.text = _xml_text("\n".join(f"warning: {w}" for w in m.warnings))
        cases.append(case)
    name = f"graphopt {report.command}" + (f" (shard {report.shard[0]}/{report.shard[1]})" if report.shard else "")
    attrs = {k: str(v) for k, v in counts.items()}
    root = ET.Element("testsuites", {"name": name, **attrs, "time": f"{total:.3f}"})
    suite = ET.SubElement(root, "testsuite", {"name": name, **attrs, "time": f"{total:.3f}"})
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", {"name": "graphopt.version", "value": __version__})
    ET.SubElement(props, "property", {"name": "graphopt.exit_code", "value": str(report.exit_code)})
    if report.shard:
        ET.SubElement(props, "property", {"name": "graphopt.shard", "value": f"{report.shard[0]}/{report.shard[1]}"})
    suite.extend(cases)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _plain_line(m: ModelReport, command: str) -> str:
    """:func:`one_line` without rich markup (unescaped)."""
    from rich.text import Text

    return Text.from_markup(one_line(m, command)).plain
