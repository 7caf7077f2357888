"""What the pipeline changed in a model's main graph, as plain data that pictures are drawn from.

:func:`graph_diff` compares the original model (reloaded from its source: the passes changed the other one in
place) with the optimized one, in time linear in the two graphs:

* A node is identified by the names of its outputs (values keep their names unless a pass renames them). A node of
  the original whose outputs no longer exist was *removed*; a node of the result with new output names was *added*;
  a node with the same outputs but another op type, domain, inputs or attributes was *rewritten*. A node that no
  pass touched is recognized without reading its attributes (it is still as loaded).
* Changed nodes that read one another's outputs (on either side), and the two sides of a rewritten node, are joined
  by a union-find into connected *regions*. A region is drawn with its nearest unchanged neighbours (the producers
  of what it reads, the readers of what it writes), the same neighbours before and after.
* Regions that make the same change (the same op types, statuses and fusion rules in the same order, like the
  twelve layers of a transformer) are drawn once and counted.
* Bounded: at most `max_regions` regions are drawn, each with at most `max_nodes` op nodes and `max_terminals`
  inputs and outputs per side; what is left out is counted. A 100k-node model never becomes a 100k-node picture.

Only the main graph is compared: a change inside an If/Loop body shows as that node, rewritten. A node built by a
fusion rule names the rule (the rewrite driver records it as ``node.meta["rule"]``).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .ir.core import AttrType, Graph, Model, Node, Value
from .ir.shapes import TensorType, format_shape
from .ir.tensors import Tensor, dtype_name

log = logging.getLogger(__name__)

DEFAULT_MAX_REGIONS = 12
DEFAULT_MAX_NODES = 40
DEFAULT_MAX_TERMINALS = 16
MAX_REPEAT_NAMES = 8      # anchors of the regions that repeat a drawn change, listed by name
MAX_SUMMARY_OPS = 6       # op types named in a region's one-line summary

REMOVED, ADDED, REWRITTEN, CONTEXT = "removed", "added", "rewritten", "context"


# ================================================================================================================
# Data
# ================================================================================================================
@dataclass
class PicNode:
    """A box of a picture. `kind` "op" is a node (`status` removed/added/rewritten/context); the other kinds are
    values at the picture's edge: "input" (a graph input), "initializer", "output" (a graph output), "value" (made
    or read by a node that is not drawn). For those, `label` is the value's name; for ops it is the op type."""

    id: str
    kind: str
    label: str
    name: str = ""
    status: str = ""
    domain: str = ""
    rule: str | None = None
    type: str | None = None   # terminals: the value's type, e.g. "float[1, 64, 56, 56]"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "label": self.label, "name": self.name, "status": self.status,
                "domain": self.domain, "rule": self.rule, "type": self.type}


@dataclass
class PicEdge:
    """A value flowing from one box to another; `type` is the value's type when known."""

    src: str
    dst: str
    value: str
    type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "value": self.value, "type": self.type}


@dataclass
class Picture:
    """One side (before or after) of a region."""

    nodes: list[PicNode] = field(default_factory=list)
    edges: list[PicEdge] = field(default_factory=list)
    omitted_nodes: int = 0        # changed nodes of the region not drawn (over max_nodes)
    omitted_terminals: int = 0    # inputs and outputs not drawn (over max_terminals)

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": [n.to_dict() for n in self.nodes], "edges": [e.to_dict() for e in self.edges],
                "omitted_nodes": self.omitted_nodes, "omitted_terminals": self.omitted_terminals}


@dataclass
class Region:
    """A connected change: what it was, what it became, and how often the same change recurs."""

    index: int                    # 1-based, in graph order over all regions
    anchor: str                   # the first changed node's name (or first output name), to find it in a viewer
    summary: str                  # "Conv, BatchNormalization -> Conv"
    removed: int = 0
    added: int = 0
    rewritten: int = 0
    rules: list[str] = field(default_factory=list)   # fusion rules that built nodes of the result
    before: Picture = field(default_factory=Picture)
    after: Picture = field(default_factory=Picture)
    repeats: int = 0              # other regions that make the same change (not drawn)
    repeat_anchors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "anchor": self.anchor, "summary": self.summary, "removed": self.removed,
                "added": self.added, "rewritten": self.rewritten, "rules": list(self.rules),
                "before": self.before.to_dict(), "after": self.after.to_dict(), "repeats": self.repeats,
                "repeat_anchors": list(self.repeat_anchors)}


@dataclass
class GraphDiff:
    """The changes of one model's main graph, grouped into regions; only a bounded number is drawn."""

    removed: int = 0
    added: int = 0
    rewritten: int = 0
    regions_total: int = 0
    regions: list[Region] = field(default_factory=list)
    repeated: int = 0             # regions not drawn because a drawn region makes the same change
    left_out: int = 0             # distinct regions not drawn (over max_regions)
    left_out_nodes: int = 0       # changed nodes in those regions
    limits: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def changed(self) -> int:
        return self.removed + self.added + self.rewritten

    def to_dict(self) -> dict[str, Any]:
        return {"removed": self.removed, "added": self.added, "rewritten": self.rewritten,
                "regions_total": self.regions_total, "regions": [r.to_dict() for r in self.regions],
                "repeated": self.repeated, "left_out": self.left_out, "left_out_nodes": self.left_out_nodes,
                "limits": dict(self.limits), "seconds": float(self.seconds)}


# ================================================================================================================
# Comparing two graphs
# ================================================================================================================
TypeSnapshot = dict[str, tuple[Any, Any]]   # value name -> (dtype, SymbolicShape), see value_types


def value_types(model: Model, table: Any) -> TypeSnapshot:
    """What a symbol table knows of the types of the main graph's node outputs, by value name: taken right after
    the context's init, before the passes change the model, it labels the original's edges later without a second
    inference. Cheap: two lookups per value; nothing is rendered until a picture needs it."""
    out: TypeSnapshot = {}
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for n in model.graph:
            for v in n.outputs:
                if v.name:
                    out[v.name] = (table.dtype_of(v), table.shape_of(v))
    finally:
        if gc_was:
            gc.enable()
    return out


def graph_diff(before: Model, after: Model, *, types_before: TypeSnapshot | None = None, symbols_after: Any = None,
               max_regions: int = DEFAULT_MAX_REGIONS, max_nodes: int = DEFAULT_MAX_NODES,
               max_terminals: int = DEFAULT_MAX_TERMINALS) -> GraphDiff:
    """Compare `before` (the original, a model of its own) with `after` (the optimized model, read only) and group
    the changes into regions, the first `max_regions` drawn.

    Edges are labelled with value types: for the result, what `symbols_after` (the run's symbol table, which knows
    the result) says of each value drawn, else the types the result declares; for the original `types_before`
    (see :func:`value_types`), else its types inferred here with graphopt's shape symbols (a whole inference of the
    original: pass `types_before` when a context has it)."""
    gc_was = gc.isenabled()
    gc.disable()  # a few dicts over two whole models, none of them garbage: spare the models from GC rescans
    try:
        return _graph_diff(before, after, types_before, max_regions, max_nodes, max_terminals, symbols_after)
    finally:
        if gc_was:
            gc.enable()


def _graph_diff(before: Model, after: Model, types_before: TypeSnapshot | None, max_regions: int, max_nodes: int,
                max_terminals: int, symbols_after: Any = None) -> GraphDiff:
    t0 = time.perf_counter()
    out = GraphDiff(limits={"max_regions": max_regions, "max_nodes": max_nodes, "max_terminals": max_terminals})
    bnodes, anodes = list(before.graph), list(after.graph)
    pos_b = {n: i for i, n in enumerate(bnodes)}
    pos_a = {n: i for i, n in enumerate(anodes)}

    # -- identity by output names --------------------------------------------------------------------------------
    prod_a: dict[str, Node] = {}
    for n in anodes:
        for v in n.outputs:
            if v.name:
                prod_a[v.name] = n
    pair_b: dict[Node, Node] = {}
    pair_a: dict[Node, Node] = {}
    for b in bnodes:
        for v in b.outputs:
            a = prod_a.get(v.name) if v.name else None
            if a is not None and a not in pair_a:
                pair_b[b], pair_a[a] = a, b
                break
    status: dict[Node, str] = {}
    for b in bnodes:
        a = pair_b.get(b)
        if a is None:
            status[b] = REMOVED
            out.removed += 1
        elif _differs(b, a):
            status[b] = status[a] = REWRITTEN
            out.rewritten += 1
    for a in anodes:
        if a not in pair_a:
            status[a] = ADDED
            out.added += 1
    if not status:
        out.seconds = time.perf_counter() - t0
        return out

    # -- regions: union-find over changed nodes ------------------------------------------------------------------
    parent: dict[Node, Node] = {n: n for n in status}

    def find(n: Node) -> Node:
        root = n
        while parent[root] is not root:
            root = parent[root]
        while parent[n] is not root:
            parent[n], n = root, parent[n]
        return root

    def union(x: Node, y: Node) -> None:
        rx, ry = find(x), find(y)
        if rx is not ry:
            parent[ry] = rx

    for n in status:
        other = pair_b.get(n) if n in pos_b else pair_a.get(n)
        if other is not None and other in status:
            union(n, other)
        for v in n.inputs:
            p = v.producer if v is not None else None
            if p is not None and p in status:
                union(n, p)
    groups: dict[Node, tuple[list[Node], list[Node]]] = {}
    for n in bnodes:
        if n in status:
            groups.setdefault(find(n), ([], []))[0].append(n)
    for n in anodes:
        if n in status:
            groups.setdefault(find(n), ([], []))[1].append(n)

    # graph order: a region sits where its first node sits (removed nodes in the original's order, the others
    # in the result's; a region with only added nodes by its first node's position in the result)
    def where(g: tuple[list[Node], list[Node]]) -> tuple[int, int]:
        bs, as_ = g
        return (pos_b[bs[0]], 0) if bs else (pos_b.get(_nearest_b(as_[0], pair_a), 0), 1)

    ordered = sorted(groups.values(), key=where)
    out.regions_total = len(ordered)

    # -- the same change elsewhere is drawn once -----------------------------------------------------------------
    drawn: dict[tuple[Any, ...], Region] = {}
    todo: list[tuple[Region, list[Node], list[Node]]] = []
    for i, (bs, as_) in enumerate(ordered, 1):
        sig = (tuple((n.op_type, n.domain, status[n]) for n in bs),
               tuple((n.op_type, n.domain, status[n], _rule(n)) for n in as_))
        anchor = _anchor(bs[0] if bs else as_[0])
        r = drawn.get(sig)
        if r is not None:
            r.repeats += 1
            out.repeated += 1
            if len(r.repeat_anchors) < MAX_REPEAT_NAMES:
                r.repeat_anchors.append(anchor)
            continue
        if len(drawn) >= max_regions:
            out.left_out += 1
            out.left_out_nodes += len({*bs, *(pair_a.get(a, a) for a in as_)})
            continue
        rules = list(dict.fromkeys(x for x in (_rule(n) for n in as_) if x))
        r = Region(i, anchor, _summary(bs, as_), removed=sum(1 for n in bs if status[n] == REMOVED),
                   added=sum(1 for n in as_ if status[n] == ADDED),
                   rewritten=sum(1 for n in bs if status[n] == REWRITTEN), rules=rules)
        drawn[sig] = r
        todo.append((r, bs, as_))

    # -- pictures, only for the regions drawn ------------------------------------------------------------------
    if todo and types_before is None:
        _annotate(before)
    tb = _typer(types_before)
    ta = _table_typer(symbols_after)
    for r, bs, as_ in todo:
        keep_b, keep_a = bs[:max_nodes], as_[:max_nodes]
        budget = max(0, max_nodes - max(len(keep_b), len(keep_a)))
        ctx_b: dict[Node, None] = {}
        for n in keep_b:
            for m in _neighbours(n, before.graph):
                if m not in status:
                    ctx_b[m] = None
        for n in keep_a:
            for m in _neighbours(n, after.graph):
                if m not in status and m in pair_a:
                    ctx_b[pair_a[m]] = None
        context = sorted(ctx_b, key=pos_b.__getitem__)[:budget]
        touched: set[str] = set()
        for n in (*bs, *as_):
            touched.update(v.name for v in (*n.inputs, *n.outputs) if v is not None and v.name)
        r.before = _picture(before.graph, keep_b, context, status, touched, "b", pos_b, max_terminals, tb)
        r.after = _picture(after.graph, keep_a, [pair_b[c] for c in context], status, touched, "a", pos_a,
                           max_terminals, ta)
        r.before.omitted_nodes = len(bs) - len(keep_b)
        r.after.omitted_nodes = len(as_) - len(keep_a)
    out.regions = [r for r, _, _ in todo]
    out.seconds = time.perf_counter() - t0
    return out


# ----------------------------------------------------------------------------------------------------------------
def _differs(b: Node, a: Node) -> bool:
    """Whether `a` (of the result) differs from `b` (the original node with the same outputs)."""
    if a.as_loaded:
        return False  # nothing touched it since it was read from the same source as `b`
    if (b.op_type, b.domain, b.overload) != (a.op_type, a.domain, a.overload):
        return True
    if _names(b.inputs) != _names(a.inputs) or _names(b.outputs) != _names(a.outputs):
        return True
    ab, aa = b.attrs, a.attrs
    if list(ab) != list(aa):
        return True
    return any(not _same_attr(ab[k], aa[k]) for k in ab)


def _names(values: Iterable[Value | None]) -> list[str]:
    return [(v.name or "") if v is not None else "" for v in values]


def _same_attr(x: Any, y: Any) -> bool:
    if x.type != y.type:
        return False
    px, py = x.proto, y.proto
    if px is not None and py is not None and x.type not in (AttrType.GRAPH, AttrType.GRAPHS):
        return bool(px == py)  # as loaded; a subgraph's message lost its lists to the IR at load: compare the IR
    return _same_value(x.value, y.value)


def _same_value(x: Any, y: Any) -> bool:
    if isinstance(x, Graph) or isinstance(y, Graph):
        return isinstance(x, Graph) and isinstance(y, Graph) and _same_graph(x, y)
    if isinstance(x, Tensor) or isinstance(y, Tensor):
        return isinstance(x, Tensor) and isinstance(y, Tensor) and x.digest() == y.digest()
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return len(x) == len(y) and all(_same_value(p, q) for p, q in zip(x, y))
    try:
        return bool(x == y)
    except (TypeError, ValueError):  # arrays and other values without a plain truth value
        return False


def _same_graph(x: Graph, y: Graph) -> bool:
    if _names(x.inputs) != _names(y.inputs) or _names(x.outputs) != _names(y.outputs):
        return False
    xs, ys = list(x), list(y)
    return len(xs) == len(ys) and not any(_differs(p, q) for p, q in zip(xs, ys))


def _rule(n: Node) -> str | None:
    meta = n.meta
    return meta.get("rule") if meta else None


def _anchor(n: Node) -> str:
    if n.name:
        return n.name
    for v in n.outputs:
        if v.name:
            return v.name
    return n.op_type


def _summary(bs: Sequence[Node], as_: Sequence[Node]) -> str:
    def ops(ns: Sequence[Node]) -> str:
        names = [n.op_type for n in ns[:MAX_SUMMARY_OPS]]
        more = len(ns) - len(names)
        return (", ".join(names) + (f" and {more} more" if more else "")) if names else "(nothing)"

    return f"{ops(bs)} -> {ops(as_)}"


def _nearest_b(a: Node, pair_a: dict[Node, Node]) -> Node | None:
    """An original node near an added node: the original of the first producer of its inputs that has one."""
    for v in a.inputs:
        p = v.producer if v is not None else None
        if p is not None and p in pair_a:
            return pair_a[p]
    for v in a.outputs:
        for c in v.consumers():
            if c in pair_a:
                return pair_a[c]
    return None


def _top(n: Node, g: Graph) -> Node | None:
    """The node of `g` that holds `n` (itself, or the If/Loop whose body reads a value of `g`)."""
    while n.graph is not g:
        sub = n.graph
        if sub is None or sub.owner is None:
            return None
        n = sub.owner
    return n


def _neighbours(n: Node, g: Graph) -> list[Node]:
    """The producers of what `n` reads and the readers of what it writes, in `g`."""
    out: list[Node] = []
    for v in n.inputs:
        if v is not None and v.producer is not None:
            out.append(v.producer)
    for v in n.outputs:
        for c in v.consumers():
            t = _top(c, g)
            if t is not None and t is not n:
                out.append(t)
    return out


def _vtype(v: Value) -> str | None:
    t = v.type
    if isinstance(t, TensorType):
        return str(t)
    if t is not None:
        return str(t)
    c = v.const
    if c is not None:
        return f"{dtype_name(c.dtype)}{format_shape(c.shape)}"
    return None


def _fmt(dt: int | None, sh: Any) -> str | None:
    """Type text from a symbol table's answers (dtype, symbolic shape); None when the dtype is unknown."""
    if not dt:
        return None
    if sh is None or sh.dims is None:
        return f"{dtype_name(dt)}{format_shape(None)}"
    dims = [(d.c if d.c >= 0 else None) if d.c is not None else str(d) for d in sh.dims]
    return f"{dtype_name(dt)}{format_shape(tuple(dims))}"


def _typer(snap: TypeSnapshot | None) -> Any:
    """A value -> type text function for the original: the snapshot first, then the value's declared type."""
    if snap is None:
        return _vtype

    def vtype(v: Value) -> str | None:
        got = snap.get(v.name) if v.name else None
        return (_fmt(*got) if got is not None else None) or _vtype(v)

    return vtype


def _table_typer(table: Any) -> Any:
    """A value -> type text function for the result: the run's symbol table (asked only for the values drawn),
    then the value's declared type."""
    if table is None:
        return _vtype

    def vtype(v: Value) -> str | None:
        try:
            got = _fmt(table.dtype_of(v), table.shape_of(v))
        except Exception:  # noqa: BLE001 - a label is not worth failing a picture for
            got = None
        return got or _vtype(v)

    return vtype


def _annotate(model: Model) -> None:
    """Fill in the value types of the original with graphopt's shape symbols (as the pipeline does for its
    result). A model the inference cannot handle keeps the types it declares."""
    from .jit.symbols.table import SymbolTable

    table = SymbolTable()
    try:
        table.infer(model)
        table.annotate(model)
    except Exception as e:  # noqa: BLE001 - types only label the edges of a picture; without them it still draws
        log.debug("no types for the original's pictures: %s: %s", type(e).__name__, e)


def _picture(graph: Graph, ops: Sequence[Node], context: Sequence[Node], status: dict[Node, str],
             touched: set[str], prefix: str, pos: dict[Node, int], max_terminals: int, vtype: Any) -> Picture:
    """One side of a region: the changed nodes `ops`, their neighbours `context`, and the values at its edge that
    the change is about (inputs of changed nodes, graph outputs they make, and values any changed node touches)."""
    pic = Picture()
    ids: dict[Node, str] = {}
    for n in sorted((*ops, *context), key=pos.__getitem__):
        ids[n] = f"{prefix}{pos[n]}"
        pic.nodes.append(PicNode(ids[n], "op", n.op_type, name=n.name, status=status.get(n, CONTEXT),
                                 domain=n.domain, rule=_rule(n)))
    terms: dict[str, str] = {}

    def terminal(v: Value, kind: str) -> str | None:
        key = f"{kind}:{v.name}"
        t = terms.get(key)
        if t is None:
            if len(terms) >= max_terminals:
                pic.omitted_terminals += 1
                return None
            t = terms[key] = f"{prefix}t{len(terms)}"
            pic.nodes.append(PicNode(t, kind, v.name or "?", type=vtype(v)))
        return t

    changed = set(ops)
    for n in list(ids):
        for v in n.inputs:
            if v is None or not v.name:
                continue
            p = v.producer
            if p is not None and p in ids:
                pic.edges.append(PicEdge(ids[p], ids[n], v.name, vtype(v)))
                continue
            if n not in changed and v.name not in touched:
                continue  # a neighbour's other inputs are not what changed
            kind = "value" if p is not None else ("initializer" if v.const is not None else "input")
            t = terminal(v, kind)
            if t is not None:
                pic.edges.append(PicEdge(t, ids[n], v.name, vtype(v)))
        for v in n.outputs:
            if v.name and v.is_graph_output(graph) and (n in changed or v.name in touched):
                t = terminal(v, "output")
                if t is not None:
                    pic.edges.append(PicEdge(ids[n], t, v.name, vtype(v)))
    return pic
