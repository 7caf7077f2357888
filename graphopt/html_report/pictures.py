"""Pictures of changed regions: the report's :class:`~graphopt.diff.Picture` data as DOT, laid out by Graphviz's
``dot`` (through the ``graphviz`` Python package, the ``html`` extra) into inline SVG.

All pictures of a page go to one ``dot`` process (DOT takes several graphs in one input and writes one SVG document
per graph), so a page costs one process start, not two per region. Every id in the SVG is given here, prefixed
with the picture's id, so that many pictures can live in one HTML document; the XML prolog and comments that
``dot`` writes are dropped. Same data, same SVG (``dot`` is deterministic for the same input).
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Sequence
from html import escape

from ..diff import PicNode, Picture

log = logging.getLogger(__name__)

# status -> (fill, border); the page's legend uses the same colours
COLOURS: dict[str, tuple[str, str]] = {
    "removed": ("#fde0dc", "#c62828"),
    "added": ("#dcf5e3", "#2e7d32"),
    "rewritten": ("#fff1cc", "#b26a00"),
    "context": ("#f1f3f5", "#8a9199"),
}
TERMINAL = ("#ffffff", "#6b7280")
MAX_LABEL = 28   # characters of a name shown in a box (the tooltip has all of it)

INSTALL_HINT = ("Graph pictures need Graphviz: install its <code>dot</code> program (Debian/Ubuntu: "
                "<code>apt-get install graphviz</code>; macOS: <code>brew install graphviz</code>; conda: "
                "<code>conda install graphviz</code>) and the Python package "
                "(<code>pip install 'graphopt[html]'</code>), then run graphopt again.")


def unavailable() -> str | None:
    """Why pictures cannot be drawn here (HTML text), or None when they can: the ``graphviz`` package imports and
    ``dot`` is on PATH (looked up on every call: PATH may change)."""
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return "The Python package <code>graphviz</code> is not installed. " + INSTALL_HINT
    if shutil.which("dot") is None:
        return "Graphviz's <code>dot</code> program is not on PATH. " + INSTALL_HINT
    return None


def _short(s: str, n: int = MAX_LABEL) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


# ``dot`` expands backslash sequences (\N: the node's name, \G, \n ...) in labels and tooltips, even in
# HTML-like labels and through escaping (how many times it unescapes differs between Graphviz versions). User text
# goes to ``dot`` with this private-use character in place of every backslash, and comes back in the SVG.
_BACKSLASH = "\ue000"


def _plain(s: str) -> str:
    return s.replace(_BACKSLASH, "\ufffd").replace("\\", _BACKSLASH)


def _html(s: str) -> str:
    """Text for a Graphviz HTML-like label: markup escaped, no backslash."""
    return escape(_plain(s))


def _esc(s: str) -> str:
    """Text for a plain Graphviz attribute (an escString): no backslash, quotes are the graphviz package's job."""
    return _plain(s)


def compact_type(t: str | None) -> str:
    """"float[1, 64, 56, 56]" -> "1×64×56×56", "int64[3]" -> "[3]" (an edge label: the dtype is in the
    tooltip)."""
    if not t:
        return ""
    m = re.fullmatch(r"([^\[]*)\[(.*)\]", t)
    if m is None:
        return t
    dims = m.group(2)
    if dims == "*":
        return "?"
    if not dims:
        return "scalar"
    parts = [d.strip() for d in dims.split(",")]
    return "×".join(parts) if len(parts) > 1 else f"[{parts[0]}]"


def _op_label(n: PicNode) -> str:
    op = (n.domain + "." if n.domain and n.domain != "ai.onnx" else "") + n.label
    parts = [f"<B>{_html(op)}</B>"]
    if n.name:
        parts.append(f'<FONT POINT-SIZE="8" COLOR="#4b5563">{_html(_short(n.name))}</FONT>')
    if n.rule:
        parts.append(f'<FONT POINT-SIZE="8" COLOR="#1b5e20">fused: {_html(n.rule)}</FONT>')
    return "<" + "<BR/>".join(parts) + ">"


def _terminal_label(n: PicNode) -> str:
    parts = [_html(_short(n.label))]
    if n.type:
        parts.append(f'<FONT POINT-SIZE="7" COLOR="#6b7280">{_html(_short(n.type, 36))}</FONT>')
    return "<" + "<BR/>".join(parts) + ">"


def to_dot(pic: Picture, pid: str) -> str:
    """The DOT source of one picture; `pid` prefixes every id (it must be unique in the page)."""
    import graphviz

    g = graphviz.Digraph(name=pid, graph_attr={
        "id": pid, "rankdir": "TB", "nodesep": "0.25", "ranksep": "0.35", "bgcolor": "transparent",
        "pad": "0.1", "fontname": "Helvetica"},
        node_attr={"fontname": "Helvetica", "fontsize": "10", "margin": "0.08,0.04", "height": "0.3"},
        edge_attr={"fontname": "Helvetica", "fontsize": "8", "color": "#6b7280", "arrowsize": "0.6",
                   "fontcolor": "#374151"})
    for n in pic.nodes:
        nid = f"{pid}-{n.id}"
        if n.kind == "op":
            fill, border = COLOURS.get(n.status, COLOURS["context"])
            tip = f"{n.status} {n.domain + '.' if n.domain else ''}{n.label}" + (f" {n.name}" if n.name else "") + (
                f" (fused by {n.rule})" if n.rule else "")
            g.node(n.id, label=_op_label(n), id=nid, shape="box", style="rounded,filled", fillcolor=fill,
                   color=border, penwidth="1.4" if n.status != "context" else "1", tooltip=_esc(tip),
                   **{"class": f"op {n.status}"})
        else:
            fill, border = TERMINAL
            shape = {"output": "house", "value": "plain"}.get(n.kind, "ellipse")
            tip = f"{n.kind} {n.label}" + (f": {n.type}" if n.type else "")
            g.node(n.id, label=_terminal_label(n), id=nid, shape=shape, style="filled,dashed"
                   if n.kind == "value" else "filled", fillcolor=fill, color=border, fontsize="8",
                   tooltip=_esc(tip), **{"class": f"terminal {n.kind}"})
    for i, e in enumerate(pic.edges):
        tip = e.value + (f": {e.type}" if e.type else "")
        g.edge(e.src, e.dst, label=_esc(compact_type(e.type)), id=f"{pid}-e{i}", tooltip=_esc(tip))
    return g.source


_PROLOG = re.compile(r"<\?xml.*?\?>|<!DOCTYPE.*?>|<!--.*?-->", re.S)
_SIZE = re.compile(r'<svg width="([\d.]+)pt" height="([\d.]+)pt"')


def _clean(svg: str, pid: str) -> str:
    svg = _PROLOG.sub("", svg).strip().replace(_BACKSLASH, "\\")
    # dot's wrapper of a node with a tooltip gets the id "a_" + the node's id: still unique, keep it; the page
    # sizes pictures with CSS (a picture never overflows its column), from the natural size dot gives
    svg = _SIZE.sub(lambda m: f'<svg class="graph" data-picture="{pid}" width="{m.group(1)}pt" '
                              f'height="{m.group(2)}pt"', svg, count=1)
    return re.sub(r"\n{2,}", "\n", svg)


def render(pictures: Sequence[tuple[str, Picture]]) -> tuple[dict[str, str], str | None]:
    """SVG for each (id, picture), drawn by one ``dot`` process; returns ({id: svg}, None) or, when ``dot``
    fails, the pictures it could draw one by one and the first error."""
    import graphviz

    if not pictures:
        return {}, None
    srcs = [(pid, to_dot(p, pid)) for pid, p in pictures]
    try:
        out = graphviz.pipe("dot", "svg", "\n".join(s for _, s in srcs).encode("utf-8"), quiet=True)
        docs = [d for d in re.split(r"(?=<\?xml )", out.decode("utf-8")) if d.strip()]
        if len(docs) == len(srcs):
            return {pid: _clean(d, pid) for (pid, _), d in zip(srcs, docs)}, None
    except Exception as e:  # noqa: BLE001 - one bad picture must not cost the others: retried one by one below
        log.debug("dot failed on the whole page (%s: %s); drawing the pictures one by one", type(e).__name__, e)
    done: dict[str, str] = {}
    first: str | None = None
    for pid, src in srcs:
        try:
            done[pid] = _clean(graphviz.pipe("dot", "svg", src.encode("utf-8"), quiet=True).decode("utf-8"), pid)
        except Exception as e:  # noqa: BLE001 - reported on the page, next to the picture that failed
            first = first or f"{type(e).__name__}: {e}"
    return done, first
