"""Bar charts as inline SVG, drawn here (no script, no library): op types before and after, and onnxruntime's
session and latency times of the original and the optimized model."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from ..report import OpDiff

BEFORE, AFTER = "#9ca3af", "#2563eb"
MAX_OPS = 24   # op types drawn; the rest are counted under the chart


def _num(x: float) -> str:
    """Coordinates with at most one decimal: the same data gives the same bytes."""
    return f"{x:.1f}".rstrip("0").rstrip(".")


def op_chart(rows: Sequence[OpDiff], *, width: int = 720) -> tuple[str, int]:
    """Two bars per op type (before grey, after blue), the op types of either model, most frequent first. Returns
    the SVG and how many op types were left out (over :data:`MAX_OPS`)."""
    shown = sorted(rows, key=lambda r: (-max(r.before, r.after), r.op_type))[:MAX_OPS]
    left_out = len(rows) - len(shown)
    top = max((max(r.before, r.after) for r in shown), default=1) or 1
    label_w, num_w, bar_h, gap = 170, 130, 9, 8
    row_h = 2 * bar_h + gap
    span = width - label_w - num_w
    height = 28 + row_h * len(shown)
    out = [f'<svg class="chart ops" role="img" aria-label="op types before and after" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
           f'<rect x="{label_w}" y="4" width="10" height="10" fill="{BEFORE}"/>'
           f'<text x="{label_w + 14}" y="13" class="legend">before</text>'
           f'<rect x="{label_w + 70}" y="4" width="10" height="10" fill="{AFTER}"/>'
           f'<text x="{label_w + 84}" y="13" class="legend">after</text>']
    for i, r in enumerate(shown):
        y = 24 + i * row_h
        wb, wa = span * r.before / top, span * r.after / top
        ch = r.change
        delta = f"{ch:+d}" if ch else "="
        cls = "down" if ch < 0 else ("up" if ch > 0 else "same")
        out.append(f'<g class="op-row" data-op="{escape(r.op_type)}">'
                   f'<title>{escape(r.op_type)}: {r.before} before, {r.after} after</title>'
                   f'<text x="{label_w - 6}" y="{_num(y + bar_h + 3)}" text-anchor="end" class="op">'
                   f'{escape(r.op_type)}</text>'
                   f'<rect x="{label_w}" y="{y}" width="{_num(max(wb, 0.5 if r.before else 0))}" height="{bar_h}" '
                   f'fill="{BEFORE}"/>'
                   f'<rect x="{label_w}" y="{y + bar_h}" width="{_num(max(wa, 0.5 if r.after else 0))}" '
                   f'height="{bar_h}" fill="{AFTER}"/>'
                   f'<text x="{_num(label_w + max(wb, wa) + 4)}" y="{_num(y + bar_h + 3)}" class="count">'
                   f'{r.before} → {r.after} <tspan class="delta {cls}">({delta})</tspan></text></g>')
    out.append("</svg>")
    return "".join(out), left_out


def pair_chart(rows: Sequence[tuple[str, float | None, float | None, str]], *, width: int = 720) -> str:
    """One pair of bars (original grey, optimized blue) per row of (label, original, optimized, unit); a row
    whose values are missing is left out. Each row is scaled on its own: the rows have different units."""
    rows = [r for r in rows if r[1] is not None and r[2] is not None]
    label_w, num_w, bar_h, gap = 170, 200, 11, 10
    span = width - label_w - num_w
    row_h = 2 * bar_h + gap
    height = 28 + row_h * len(rows)
    out = [f'<svg class="chart timing" role="img" aria-label="original and optimized" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
           f'<rect x="{label_w}" y="4" width="10" height="10" fill="{BEFORE}"/>'
           f'<text x="{label_w + 14}" y="13" class="legend">original</text>'
           f'<rect x="{label_w + 80}" y="4" width="10" height="10" fill="{AFTER}"/>'
           f'<text x="{label_w + 94}" y="13" class="legend">optimized</text>']
    for i, (label, a, b, unit) in enumerate(rows):
        assert a is not None and b is not None
        y = 24 + i * row_h
        top = max(a, b) or 1.0
        wa, wb = span * a / top, span * b / top
        ratio = f" ({a / b:.2f}x)" if a and b else ""
        out.append(f'<g class="pair-row"><text x="{label_w - 6}" y="{_num(y + bar_h + 4)}" text-anchor="end" '
                   f'class="op">{escape(label)}</text>'
                   f'<rect x="{label_w}" y="{y}" width="{_num(max(wa, 0.5))}" height="{bar_h}" fill="{BEFORE}"/>'
                   f'<rect x="{label_w}" y="{y + bar_h}" width="{_num(max(wb, 0.5))}" height="{bar_h}" '
                   f'fill="{AFTER}"/>'
                   f'<text x="{_num(label_w + max(wa, wb) + 4)}" y="{_num(y + bar_h + 4)}" class="count">'
                   f'{escape(_fmt(a, unit))} → {escape(_fmt(b, unit))}{ratio}</text></g>')
    out.append("</svg>")
    return "".join(out)


def _fmt(x: float, unit: str) -> str:
    if unit == "s":
        return f"{x * 1e3:.1f} ms" if x < 0.01 else f"{x:.2f} s"
    return f"{x:.3f} {unit}"
