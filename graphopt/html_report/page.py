"""The HTML page: one self-contained file (styles inline, pictures and charts as inline SVG, no script, nothing
fetched at view time: a Content-Security-Policy forbids it) that shows a whole :class:`~graphopt.report.Report`.

Per model, in this order and each only when there is something to show: the summary (sizes, nodes, times,
pipeline), the error, what changed in the graph (pictures of each changed region, before and after), the passes,
the op types before and after (a chart), the shape symbols, validation (the per-output table and the onnxruntime
timings), bisection, warnings. A page of several models (or of ``check``) starts with a table of the models
linking to their sections.

Every piece of user text (paths, node and value names, error messages) is escaped. The same report gives the same
page, byte for byte.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from ..diff import GraphDiff, Picture, Region
from ..errors import EXIT_OK
from ..report import STATUS, ModelReport, Report, fmt_bytes, fmt_num, fmt_seconds
from ..validate import BisectResult, ValidationResult
from ..version import __version__
from . import charts, pictures

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

CSS = """
:root { --fg: #1f2937; --muted: #6b7280; --line: #e5e7eb; --bg: #ffffff; --panel: #f9fafb;
  --ok: #15803d; --bad: #b91c1c; --warn: #b45309; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header, main, footer { max-width: 1240px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 18px; border-bottom: 1px solid var(--line); }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 0; word-break: break-all; }
h3 { font-size: 15px; margin: 22px 0 8px; }
code, .mono, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace;
  font-size: 12.5px; }
pre { background: var(--panel); border: 1px solid var(--line); padding: 8px; overflow: auto; }
.sub { color: var(--muted); margin: 0 0 12px; }
section.model { border: 1px solid var(--line); border-radius: 8px; margin: 22px 0; padding: 16px 18px; }
.model-head { display: flex; gap: 12px; align-items: baseline; flex-wrap: wrap; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
  color: #fff; background: var(--muted); }
.badge.ok { background: var(--ok); } .badge.bad { background: var(--bad); } .badge.warn { background: var(--warn); }
dl.summary { display: grid; grid-template-columns: max-content 1fr; gap: 2px 18px; margin: 10px 0 0; }
dl.summary dt { color: var(--muted); } dl.summary dd { margin: 0; }
table { border-collapse: collapse; margin: 4px 0; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 10px; text-align: left; vertical-align: top; }
th { background: var(--panel); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.down { color: var(--ok); fill: var(--ok); } .up { color: var(--warn); fill: var(--warn); }
.same { color: var(--muted); fill: var(--muted); }
.error { border-left: 4px solid var(--bad); background: #fef2f2; padding: 8px 12px; margin: 10px 0; }
.notice { border-left: 4px solid var(--warn); background: #fffbeb; padding: 8px 12px; margin: 10px 0; }
ul.warnings li { color: var(--warn); }
svg.chart text { font: 11px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: var(--fg); }
svg.chart text.count { fill: var(--muted); }
.legend-row { display: flex; gap: 14px; flex-wrap: wrap; margin: 6px 0 10px; font-size: 12.5px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 3px; border: 1.5px solid;
  vertical-align: -2px; margin-right: 4px; }
figure.region { margin: 14px 0 22px; border-top: 1px solid var(--line); padding-top: 10px; }
figure.region figcaption { margin-bottom: 8px; }
.sides { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; align-items: start; }
.side { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 6px 8px;
  overflow: hidden; text-align: center; }
.side h4 { margin: 0 0 4px; font-size: 12px; color: var(--muted); text-transform: uppercase;
  letter-spacing: .04em; text-align: left; }
.side .empty { color: var(--muted); padding: 18px 0; }
svg.graph { max-width: 100%; height: auto; }
.note { color: var(--muted); font-size: 12.5px; }
details summary { cursor: pointer; color: var(--muted); }
footer { color: var(--muted); font-size: 12px; padding: 8px 20px 24px; }
"""


def _e(x: Any) -> str:
    return escape(str(x), quote=True)


def _pct(before: int | None, after: int | None) -> str:
    if not before or after is None:
        return ""
    return f" ({100.0 * (after - before) / before:+.1f}%)"


def _badge(m: ModelReport) -> str:
    cls = "ok" if m.exit_code == EXIT_OK else ("warn" if m.status == "optimizable" else "bad")
    return f'<span class="badge {cls}">{_e(m.status)}{" (recovered)" if m.recovered else ""}</span>'


ReportLike = Report | ModelReport | Sequence[ModelReport]


def as_report(report: ReportLike, command: str = "optimize") -> Report:
    """A :class:`Report` from a Report, one ModelReport or a list of them (as the API returns them)."""
    if isinstance(report, Report):
        return report
    if isinstance(report, ModelReport):
        return Report(command, [report])
    return Report(command, list(report))


def to_html(report: ReportLike, *, pictures_on: bool = True, command: str = "optimize") -> str:
    """The page of `report` (a Report, or ModelReports of `command`). With `pictures_on` (and Graphviz installed)
    the changed regions recorded in each model's ``graph_diff`` are drawn; otherwise the page says how to get
    pictures and shows everything else."""
    report = as_report(report, command)
    why: str | None = None
    svgs: dict[str, str] = {}
    failed: str | None = None
    wanted = [(f"m{i}-r{r.index}-{side}", getattr(r, side)) for i, m in enumerate(report.models, 1)
              if m.graph_diff is not None for r in m.graph_diff.regions for side in ("before", "after")]
    if wanted:
        why = pictures.unavailable() if pictures_on else "Pictures were turned off."
        if why is None:
            svgs, failed = pictures.render([(pid, p) for pid, p in wanted if p.nodes])
    code = report.exit_code
    title = f"graphopt {report.command}: " + (report.models[0].input if len(report.models) == 1 else
                                              f"{len(report.models)} models")
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f'<meta name="generator" content="graphopt {_e(__version__)}">', f"<title>{_e(title)}</title>",
           f"<style>{CSS}</style>", "</head>", "<body>", "<header>",
           f"<h1>graphopt {_e(report.command)}</h1>",
           f'<p class="sub">{len(report.models)} model(s) · exit code {code} ({_e(STATUS.get(code, "?"))}) · '
           f"graphopt {_e(__version__)}</p>", "</header>", "<main>"]
    if len(report.models) > 1 or report.command == "check":
        out.append(_models_table(report))
    for i, m in enumerate(report.models, 1):
        out.append(_model(m, f"m{i}", svgs, why, failed))
    out += ["</main>", '<footer>Made by graphopt. Self-contained: this file loads nothing; the pictures are drawn by '
            "Graphviz.</footer>", "</body>", "</html>", ""]
    return "\n".join(out)


def write_html(report: ReportLike, path: str | os.PathLike[str], *, pictures_on: bool = True,
               command: str = "optimize") -> None:
    """Write the page of `report` to `path` (UTF-8; see :func:`to_html`)."""
    text = to_html(report, pictures_on=pictures_on, command=command)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


# ================================================================================================================
# Sections
# ================================================================================================================
def _models_table(report: Report) -> str:
    rows = []
    for i, m in enumerate(report.models, 1):
        v = m.validation
        vtxt = "-" if v is None else v.status + (f" ({v.first_mismatch})" if v.failed and v.first_mismatch else "")
        removed = (m.nodes_before - m.nodes_after) if m.nodes_before is not None and m.nodes_after is not None \
            else None
        d = m.graph_diff
        size = fmt_bytes(m.file_bytes_before) + ("" if m.file_bytes_after is None else
                                                  f" → {fmt_bytes(m.file_bytes_after)}")
        tot = m.timings_optimize.get("total", 0.0) + m.timings_validate.get("total", 0.0)
        rows.append(
            f'<tr data-model="m{i}"><td><a href="#m{i}">{_e(m.input)}</a></td><td>{_badge(m)}</td>'
            f'<td class="num">{_e(_or(m.nodes_before))} → {_e(_or(m.nodes_after))}</td>'
            f'<td class="num">{_e(_or(removed))}</td><td class="num">{_e(size)}</td><td>{_e(vtxt)}</td>'
            f'<td class="num">{"-" if d is None else d.regions_total}</td>'
            f'<td class="num">{_e(fmt_seconds(tot))}</td></tr>')
    return ('<section id="models" data-section="models"><h3>Models</h3><table class="models"><thead><tr>'
            '<th>model</th><th>status</th><th class="num">nodes</th><th class="num">removed</th>'
            '<th class="num">size</th><th>validation</th><th class="num">changed regions</th>'
            '<th class="num">time</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table></section>")


def _or(x: Any) -> str:
    return "-" if x is None else str(x)


def _model(m: ModelReport, mid: str, svgs: Mapping[str, str], why: str | None, failed: str | None) -> str:
    head = f"<h2>{_e(m.input)}"
    if m.output:
        head += f" → {_e(m.output)}" + ("" if m.written or m.error is None else " (not written)")
    head += "</h2>"
    parts = [f'<section class="model" id="{mid}" data-status="{_e(m.status)}">',
             f'<div class="model-head">{head}{_badge(m)}</div>']
    if m.nodes_before is not None:
        parts.append(_summary(m, mid))
    if m.error is not None:
        parts.append(_error(m, mid))
    if m.graph_diff is not None:  # first: people would rather look than read
        parts.append(_changes(m.graph_diff, mid, svgs, why, failed))
    if m.passes:
        parts.append(_passes(m, mid))
    if m.op_types:
        parts.append(_op_types(m, mid))
    if m.symbols:
        parts.append(_symbols(m.symbols, mid))
    if m.validation is not None:
        parts.append(_validation(m.validation, mid))
    if m.bisection is not None:
        parts.append(_bisection(m.bisection, mid))
    if m.warnings:
        parts.append(f'<section id="{mid}-warnings" data-section="warnings"><h3>Warnings</h3>'
                     '<ul class="warnings">' + "".join(f"<li>{_e(w)}</li>" for w in m.warnings) + "</ul></section>")
    parts.append("</section>")
    return "\n".join(parts)


def _summary(m: ModelReport, mid: str) -> str:
    size = fmt_bytes(m.file_bytes_before) if m.file_bytes_after is None else (  # check writes nothing
        f"{fmt_bytes(m.file_bytes_before)} → {fmt_bytes(m.file_bytes_after)}"
        + _pct(m.file_bytes_before, m.file_bytes_after))
    rows = [("size", size),
            ("nodes", f"{_or(m.nodes_before)} → {_or(m.nodes_after)}" + _pct(m.nodes_before, m.nodes_after))]
    to = m.timings_optimize
    parts = ", ".join(f"{k} {fmt_seconds(to[k])}" for k in ("load", "check", "init", "passes", "verify", "save")
                      if k in to)
    rows.append(("optimize", fmt_seconds(to.get("total")) + (f" ({parts})" if parts else "")))
    tv = m.timings_validate
    if tv:
        vparts = ", ".join(f"{k} {fmt_seconds(tv[k])}" for k in ("sessions", "runs", "bench", "bisection")
                           if tv.get(k))
        rows.append(("validate", fmt_seconds(tv.get("total")) + (f" ({vparts})" if vparts else "")))
    if m.pipeline or m.rounds:
        rows.append(("pipeline", f"{'-' + m.preset if m.preset else 'custom'}: {', '.join(m.pipeline) or '(none)'}; "
                     f"{m.rounds} round(s)" + ("" if m.converged else " (no fixed point)")))
    if m.disabled:
        rows.append(("disabled", ", ".join(m.disabled) + " (culprit of a mismatch)"))
    body = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    return f'<section id="{mid}-summary" data-section="summary"><dl class="summary">{body}</dl></section>'


def _error(m: ModelReport, mid: str) -> str:
    err = m.error or {}
    hint = err.get("hint")
    s = (f'<section id="{mid}-error" data-section="error"><div class="error"><strong>{_e(m.status)}:</strong> '
         f'{_e(err.get("message", ""))}' + (f'<br><span class="note">hint: {_e(hint)}</span>' if hint else "")
         + "</div>")
    if m.traceback:
        s += f"<details><summary>traceback</summary><pre>{_e(m.traceback)}</pre></details>"
    return s + "</section>"


def _passes(m: ModelReport, mid: str) -> str:
    rows = []
    for p in m.passes:
        det = ", ".join(f"{k}={v}" for k, v in p.stats.items())
        if p.error:
            det = (det + "; " if det else "") + str(p.error.get("message", ""))
        rows.append(f"<tr><td><code>{_e(p.name)}</code></td><td class=\"num\">{p.runs}</td>"
                    f'<td class="num">{_e(fmt_seconds(p.seconds))}</td><td class="num">{p.removed}</td>'
                    f'<td class="num">{p.added}</td><td class="num">{p.rewritten}</td>'
                    f'<td>{"<strong class=up>yes</strong>" if p.rolled_back else "no"}</td>'
                    f'<td class="note">{_e(det)}</td></tr>')
    return (f'<section id="{mid}-passes" data-section="passes"><h3>Passes</h3><table><thead><tr><th>pass</th>'
            '<th class="num">runs</th><th class="num">time</th><th class="num">removed</th><th class="num">added</th>'
            '<th class="num">rewritten</th><th>rolled back</th><th>details</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table></section>")


def _op_types(m: ModelReport, mid: str) -> str:
    svg, left_out = charts.op_chart(m.op_types)
    more = f'<p class="note">and {left_out} less frequent op type(s), in the table below</p>' if left_out else ""
    rows = "".join(f"<tr><td><code>{_e(o.op_type)}</code></td><td class=\"num\">{o.before}</td>"
                   f'<td class="num">{o.after}</td><td class="num {"down" if o.change < 0 else "up" if o.change > 0 else "same"}">'
                   f'{o.change:+d}</td></tr>' for o in m.op_types)
    changed = sum(1 for o in m.op_types if o.change)
    return (f'<section id="{mid}-ops" data-section="op-types"><h3>Op types</h3>'
            f'<p class="note">{changed} of {len(m.op_types)} op type(s) changed count</p>{svg}{more}'
            '<details><summary>all op types</summary><table><thead><tr><th>op type</th><th class="num">before</th>'
            '<th class="num">after</th><th class="num">change</th></tr></thead><tbody>' + rows
            + "</tbody></table></details></section>")


def _symbols(sym: Mapping[str, Any], mid: str) -> str:
    parts = [f'<section id="{mid}-symbols" data-section="symbols"><h3>Shape symbols</h3>']
    lst = sym.get("symbols")
    if isinstance(lst, list) and lst and all(isinstance(x, Mapping) for x in lst):
        keys: list[str] = []
        for x in lst:
            for k in x:
                if k not in keys:
                    keys.append(k)
        parts.append("<table><thead><tr>" + "".join(f"<th>{_e(k.replace('_', ' '))}</th>" for k in keys)
                     + "</tr></thead><tbody>")
        for x in lst:
            parts.append("<tr>" + "".join(
                f"<td>{_e(', '.join(map(str, x[k])) if isinstance(x.get(k), list) else x.get(k, ''))}</td>"
                for k in keys) + "</tr>")
        parts.append("</tbody></table>")
    rest = {k: v for k, v in sym.items() if k != "symbols"}
    conflicts = rest.pop("conflicts", None)
    if conflicts:
        parts.append(f'<p class="notice">shape conflicts: {_e("; ".join(map(str, conflicts)))}</p>')
    if rest:
        parts.append('<p class="note">' + _e(", ".join(
            f"{k.replace('_', ' ')}: {len(v) if isinstance(v, (list, dict)) else v}" for k, v in rest.items()))
            + "</p>")
    parts.append("</section>")
    return "".join(parts)


def _validation(v: ValidationResult, mid: str) -> str:
    parts = [f'<section id="{mid}-validation" data-section="validation"><h3>Validation</h3>']
    if v.skipped:
        parts.append(f'<p class="notice">validation skipped: {_e(v.reason or "")}</p></section>')
        return "".join(parts)
    trials = "; ".join(", ".join(f"{k}={x}" for k, x in t.dims.items()) or "fixed shapes" for t in v.trials)
    src = f"random inputs, seed {v.seed}" if v.input_source == "random" else v.input_source.replace(
        "npz:", "inputs from ")
    status = '<strong class="down">passed</strong>' if v.passed else '<strong class="up">FAILED</strong>'
    parts.append(f"<p>{status}: {len(v.trials)} trial(s) ({_e(trials)}), {_e(src)}</p>")
    rows = "".join(
        f"<tr><td><code>{_e(o.name)}</code></td><td>{_e(o.dtype)}</td><td>{_e('-' if o.shape is None else o.shape)}"
        f'</td><td class="num">{_e(fmt_num(o.max_abs))}</td><td class="num">{_e(fmt_num(o.max_rel))}</td>'
        f"<td>{'<span class=down>ok</span>' if o.ok else '<strong class=up>FAIL</strong> ' + _e(o.reason or '')}"
        "</td></tr>" for o in v.outputs)
    parts.append('<table><thead><tr><th>output</th><th>dtype</th><th>shape</th><th class="num">max abs diff</th>'
                 '<th class="num">max rel diff</th><th>result</th></tr></thead><tbody>' + rows + "</tbody></table>")
    if v.failed and v.reason:
        parts.append(f'<p class="error">mismatch: {_e(v.reason)}</p>')
    ort = v.to_dict()["onnxruntime"]
    parts.append(f'<p class="note">onnxruntime {_e(ort.get("version") or "?")}, {_e(v.ort_level)} optimizations, '
                 f"{v.threads} thread(s)" + (f"; latency: median of {v.bench_runs} runs" if v.bench_runs else "")
                 + "</p>")
    rows_t = [("session creation", v.session_seconds_original, v.session_seconds_optimized, "s"),
              ("latency", v.latency_ms_original, v.latency_ms_optimized, "ms")]
    if any(a is not None and b is not None for _, a, b, _ in rows_t):
        parts.append(charts.pair_chart(rows_t))
    for w in v.warnings:
        parts.append(f'<p class="notice">{_e(w)}</p>')
    parts.append("</section>")
    return "".join(parts)


def _bisection(b: BisectResult, mid: str) -> str:
    parts = [f'<section id="{mid}-bisection" data-section="bisection"><h3>Bisection</h3><ul>']
    for c in b.culprits:
        rw = ", ".join(f"{k}={v}" for k, v in c.rewrites.items())
        parts.append(f"<li>culprit: pass <code>{_e(c.name)}</code> changes output <code>{_e(c.first_output)}</code>"
                     + (f" (rewrites: {_e(rw)})" if rw else "") + "</li>")
    parts.append("</ul>")
    tail = (f"re-optimized without {', '.join(c.name for c in b.culprits)} and validated" if b.resolved
            else "no pipeline without the culprits validates")
    parts.append(f"<p>{len(b.steps)} step(s) in {_e(fmt_seconds(b.seconds))}; {_e(tail)}</p>")
    if b.steps:
        parts.append("<table><thead><tr><th>passes tried</th><th>result</th><th>first mismatch</th>"
                     '<th class="num">time</th></tr></thead><tbody>' + "".join(
                         f"<tr><td class=\"note\">{_e(', '.join(s.passes) or '(none)')}</td><td>{_e(s.status)}</td>"
                         f"<td>{_e(s.first_mismatch or '-')}</td><td class=\"num\">{_e(fmt_seconds(s.seconds))}</td>"
                         "</tr>" for s in b.steps) + "</tbody></table>")
    parts.append("</section>")
    return "".join(parts)


def _width(svg: str | None) -> float:
    m = re.search(r'<svg class="graph"[^>]* width="([\d.]+)pt"', svg or "")
    return float(m.group(1)) if m else 0.0


_LEGEND = "".join(
    f'<span><span class="swatch" style="background:{fill};border-color:{border}"></span>{label}</span>'
    for label, (fill, border) in (("removed", pictures.COLOURS["removed"]), ("added", pictures.COLOURS["added"]),
                                  ("rewritten", pictures.COLOURS["rewritten"]),
                                  ("unchanged neighbour", pictures.COLOURS["context"])))


def _changes(d: GraphDiff, mid: str, svgs: Mapping[str, str], why: str | None, failed: str | None) -> str:
    parts = [f'<section id="{mid}-changes" data-section="changes"><h3>What changed in the graph</h3>']
    if not d.changed:
        parts.append('<p>The pipeline changed no node of the main graph.</p></section>')
        return "".join(parts)
    shown = len(d.regions)
    parts.append(f"<p>{d.removed} node(s) removed, {d.added} added, {d.rewritten} rewritten, in {d.regions_total} "
                 f"connected region(s) of the main graph. " + (
                     f"{d.repeated} region(s) repeat a change drawn below (named under it). " if d.repeated else "")
                 + (f"{d.left_out} more region(s) with {d.left_out_nodes} changed node(s) are not drawn (at most "
                    f"{d.limits.get('max_regions', shown)} distinct regions per model). " if d.left_out else "")
                 + "</p>")
    if why is not None:
        parts.append(f'<div class="notice" data-notice="no-pictures">{why}</div>')
    elif failed is not None:
        parts.append(f'<div class="notice">Graphviz failed on some pictures: {_e(failed)}</div>')
    parts.append(f'<div class="legend-row">{_LEGEND}<span class="note">boxes show the op type and node name; '
                 "edges the value's shape; hover for names</span></div>")
    for r in d.regions:
        parts.append(_region(r, mid, svgs, why is None, d.limits))
    parts.append("</section>")
    return "".join(parts)


def _region(r: Region, mid: str, svgs: Mapping[str, str], drawing: bool, limits: Mapping[str, int]) -> str:
    rid = f"{mid}-r{r.index}"
    counts = ", ".join(f"{n} {what}" for n, what in ((r.removed, "removed"), (r.added, "added"),
                                                      (r.rewritten, "rewritten")) if n)
    cap = (f'<figcaption><strong>Region {r.index}</strong> at <code>{_e(r.anchor)}</code>: {_e(r.summary)} '
           f'<span class="note">({_e(counts)})</span>')
    if r.rules:
        cap += " · fused by " + ", ".join(f"<code>{_e(x)}</code>" for x in r.rules)
    if r.repeats:
        names = ", ".join(f"<code>{_e(a)}</code>" for a in r.repeat_anchors)
        more = r.repeats - len(r.repeat_anchors)
        cap += (f'<br><span class="note">the same change in {r.repeats} more place(s): {names}'
                + (f" and {more} more" if more > 0 else "") + "</span>")
    cap += "</figcaption>"
    parts = [f'<figure class="region" id="{rid}" data-region="{r.index}">', cap]
    if drawing:
        parts.append('<div class="sides">')
        widths = {side: _width(svgs.get(f"{rid}-{side}")) for side in ("before", "after")}
        widest = max(widths.values())
        for side in ("before", "after"):
            pic: Picture = getattr(r, side)
            parts.append(f'<div class="side {side}"><h4>{side}</h4>')
            svg = svgs.get(f"{rid}-{side}")
            if svg is not None and widest:
                # both sides at one scale: a picture shrinks to its column only as much as the wider one does
                w = widths[side]
                svg = svg.replace('<svg class="graph"', f'<svg class="graph" style="width:min({w:g}pt, '
                                  f'{100.0 * w / widest:.1f}%)"', 1)
            if not pic.nodes:
                parts.append('<div class="empty">(nothing: the nodes were removed)</div>' if side == "after"
                             else '<div class="empty">(nothing: the nodes are new)</div>')
            elif svg is not None:
                parts.append(svg)
            else:
                parts.append('<div class="empty">(no picture: Graphviz failed on it)</div>')
            notes = []
            if pic.omitted_nodes:
                notes.append(f"{pic.omitted_nodes} more changed node(s) of this region not drawn (at most "
                             f"{limits.get('max_nodes', '?')} per picture)")
            if pic.omitted_terminals:
                notes.append(f"{pic.omitted_terminals} more input(s)/output(s) not drawn")
            if notes:
                parts.append(f'<p class="note">{_e("; ".join(notes))}</p>')
            parts.append("</div>")
        parts.append("</div>")
    parts.append("</figure>")
    return "\n".join(parts)
