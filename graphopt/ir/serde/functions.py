"""Model-local functions as graphs of their own: the bridge between a FunctionProto and the IR.

The IR keeps a model's functions as the FunctionProtos it loaded (:attr:`Model.functions`). To optimize a body like a
graph, :func:`body_model` loads it as a small :class:`Model` of its own (the function's inputs and outputs become the
graph's, its opset imports the model's, so that every pass sees the function's own opset versions), and
:func:`body_proto` writes the result back as a FunctionProto. :func:`inline_graph` prepares a body for inlining at
one call site: attribute references replaced by the call's attributes (or the function's defaults), every value
renamed to a name that is fresh in the calling model, scope by scope. :func:`opset_conflict` says whether a body
means the same under the model's opset imports.

Attribute references. A node of a body may take an attribute from the call (``<alpha: float = @alpha>``); its value
is unknown until the function is called. No pass may read such a node as if the attribute had a value: the node is
given a private domain (:data:`REF_DOMAIN` + its own domain) while the body is a graph, so that every pass treats it
as an op it does not know (never folded, rewritten nor matched; it stays unless nothing reads it), and gets its
domain back when the body is written.

Part of :mod:`graphopt.ir.serde`, the IR's only bridge to onnx's protobuf messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import onnx
import onnx.defs

from .. import serde
from ..core import Model

#: Prefix of the private domain that hides a node with attribute references from the passes.
REF_DOMAIN = "graphopt.attr-ref/"

_GRAPH = onnx.AttributeProto.GRAPH
_GRAPHS = onnx.AttributeProto.GRAPHS


def canon_domain(d: str) -> str:
    """The canonical spelling of a domain ("ai.onnx" is the default domain "")."""
    return "" if d == "ai.onnx" else d


def function_key(domain: str, name: str, overload: str = "") -> tuple[str, str, str]:
    """How a node names the function it calls: (domain, op type, overload)."""
    return (canon_domain(domain), name, overload)


def key_of(fp: Any) -> tuple[str, str, str]:
    return function_key(fp.domain, fp.name, getattr(fp, "overload", ""))


def walk_nodes(nodes: Any) -> Iterator[Any]:
    """Every NodeProto of a node list, the nodes of graph attributes included (outer before inner)."""
    stack = [iter(nodes)]
    while stack:
        for np_ in stack[-1]:
            yield np_
            subs = []
            for a in np_.attribute:
                if a.type == _GRAPH:
                    subs.append(a.g.node)
                elif a.type == _GRAPHS:
                    subs.extend(g.node for g in a.graphs)
            if subs:
                stack.extend(iter(s) for s in reversed(subs))
                break
        else:
            stack.pop()


def count_nodes(fp: Any) -> int:
    """Nodes of a function body, the nodes of its graph attributes included."""
    return sum(1 for _ in walk_nodes(fp.node))


def _has_ref(np_: Any) -> bool:
    return any(a.ref_attr_name for a in np_.attribute)


# ----------------------------------------------------------------------------------------------------------------
# body <-> Model
# ----------------------------------------------------------------------------------------------------------------
def body_model(fp: Any, model: Model, functions: list[Any] | None = None) -> Model:
    """The body of function `fp` as a Model of its own: inputs and outputs named as the function's (without types,
    as functions declare none), the function's value_info, opset imports and IR version (at least 8, the first that
    has functions). `functions` (default: all of the model's) stay visible, read-only, to passes that look at what
    a call does; give only those the body calls, directly or not (:func:`called_by`), to keep the body model small.
    Nodes with attribute references are hidden behind :data:`REF_DOMAIN`."""
    mp = onnx.ModelProto()
    mp.ir_version = max(int(model.ir_version), 8)
    mp.opset_import.extend(fp.opset_import)
    g = mp.graph
    g.name = f"{fp.domain}.{fp.name}" if fp.domain else fp.name
    g.node.extend(fp.node)
    hidden: set[str] = set()
    for np_ in walk_nodes(g.node):
        if _has_ref(np_):
            np_.domain = REF_DOMAIN + np_.domain
            hidden.add(np_.domain)
    for d in sorted(hidden):  # imported, so that onnx's shape inference passes over these nodes quietly
        o = mp.opset_import.add()
        o.domain = d
        o.version = 1
    for name in fp.input:
        g.input.add().name = name
    for name in fp.output:
        g.output.add().name = name
    g.value_info.extend(getattr(fp, "value_info", ()))
    fm = serde.from_proto(mp, base_dir=model.base_dir, copy=False)
    fm.functions = list(model.functions if functions is None else functions)
    fm.meta["function_body"] = f"{fp.domain}::{fp.name}"  # its inputs' types, if any, are not checked at a call
    return fm


def called_by(fp: Any, by_key: Mapping[tuple[str, str, str], Any]) -> list[Any]:
    """The functions of `by_key` that the body of `fp` calls, directly or through one another."""
    out: dict[int, Any] = {}
    stack = [fp]
    while stack:
        f = stack.pop()
        for np_ in walk_nodes(f.node):
            g = by_key.get(function_key(np_.domain, np_.op_type, getattr(np_, "overload", "")))
            if g is not None and g is not fp and id(g) not in out:
                out[id(g)] = g
                stack.append(g)
    return list(out.values())


def body_proto(fm: Model, fp: Any) -> Any | None:
    """Function `fp` with the body that `fm` (made by :func:`body_model`) now holds, or None when the body no
    longer fits a function (its interface changed, or it holds a sparse constant). Constants a pass stored as
    initializers become Constant nodes at the top; opset imports are the function's, plus any domain a pass
    started to use; value_info entries of values that are gone are dropped."""
    mp = serde.to_proto(fm)
    g = mp.graph
    if [vi.name for vi in g.input] != list(fp.input) or [vi.name for vi in g.output] != list(fp.output):
        return None
    if len(g.sparse_initializer):
        return None
    out = onnx.FunctionProto()
    out.CopyFrom(fp)
    del out.node[:]
    for t in g.initializer:
        c = out.node.add()
        c.op_type = "Constant"
        c.output.append(t.name)
        a = c.attribute.add()
        a.name = "value"
        a.type = onnx.AttributeProto.TENSOR
        a.t.CopyFrom(t)
    out.node.extend(g.node)
    for np_ in walk_nodes(out.node):
        if np_.domain.startswith(REF_DOMAIN):
            np_.domain = np_.domain.removeprefix(REF_DOMAIN)
    have = {canon_domain(o.domain) for o in out.opset_import}
    for o in mp.opset_import:
        if canon_domain(o.domain) not in have and not o.domain.startswith(REF_DOMAIN):
            out.opset_import.add().CopyFrom(o)
    if len(getattr(out, "value_info", ())):
        defined = set(out.input)
        for np_ in out.node:
            defined.update(np_.output)
        kept = [vi for vi in out.value_info if vi.name in defined]
        del out.value_info[:]
        out.value_info.extend(kept)
    return out


# ----------------------------------------------------------------------------------------------------------------
# inlining
# ----------------------------------------------------------------------------------------------------------------
def opset_conflict(fp: Any, model_imports: Mapping[str, int], local_domains: frozenset[str] = frozenset(), *,
                   inlining: bool = True) -> tuple[dict[str, int], str | None]:
    """Whether the body of `fp` means the same under a model's opset imports `model_imports`.

    onnx's checker asks this of every function of a model (``inlining`` False): a node of a domain that both import
    at different versions must resolve to the same schema under both (ops of domains onnx has no schemas for pass).
    Inlining (the default) asks more, since the body's nodes are then read at the model's versions: a domain the
    model does not import must be added (returned, at the function's version), and a domain imported at two
    versions is fine only for calls of model-local functions (`local_domains`: they do not depend on versions) and
    for ops onnx knows that resolve to the same schema under both.

    Returns (imports the model must add, None), or ({}, the reason) when the body would mean something else."""
    model = {canon_domain(d): v for d, v in model_imports.items()}
    used: dict[str, set[str]] = {}
    for np_ in walk_nodes(fp.node):
        used.setdefault(canon_domain(np_.domain), set()).add(np_.op_type)
    mine = {canon_domain(o.domain): int(o.version) for o in fp.opset_import}
    add: dict[str, int] = {}
    for d, ops in sorted(used.items()):
        fv = mine.get(d)
        if fv is None:
            return {}, f"the body uses domain {d or 'ai.onnx'!r}, which the function does not import"
        mv = model.get(d)
        if mv is None:
            if inlining:
                add[d] = fv
            continue
        if mv == fv or d in local_domains:
            continue
        for op in sorted(ops):
            sf, sm = _since(op, fv, d), _since(op, mv, d)
            if sf is None and sm is None and not inlining:
                continue  # no schema to compare (a custom domain): the checker lets it pass
            if sf is None or sf != sm:
                return {}, (f"{op} means something else in {d or 'ai.onnx'} {fv} (the function's) than in "
                            f"{mv} (the model's)")
    return add, None


def _since(op: str, version: int, domain: str) -> int | None:
    try:
        return int(onnx.defs.get_schema(op, version, domain).since_version)
    except onnx.defs.SchemaError:
        return None
    except Exception:  # noqa: BLE001 - some onnx builds raise other types for unknown domains
        return None


def attr_proto(a: Any) -> Any:
    """The AttributeProto of an IR attribute (see :func:`graphopt.ir.serde.attr_to_proto`)."""
    return serde.attr_to_proto(a)


def inline_graph(fp: Any, call_attrs: Mapping[str, Any], fresh: Callable[[str], str],
                 node_prefix: str) -> Any:
    """A GraphProto of `fp`'s body ready to be inlined at one call site, or a string saying why not.

    `call_attrs` are the call's attributes (AttributeProtos by name). Every attribute reference takes the call's
    attribute of that name, else the function's default (``attribute_proto``), else the attribute is left out (an
    absent optional attribute). Every value the body defines, its formal inputs and outputs included, is renamed
    with `fresh` (one fresh name per definition, scope by scope: sibling subgraphs may reuse a name); node names
    get `node_prefix`. The graph's inputs and outputs are the renamed formal inputs and outputs."""
    defaults = {a.name: a for a in getattr(fp, "attribute_proto", ())}
    gp = onnx.GraphProto()
    gp.name = fp.name
    gp.node.extend(fp.node)
    for np_ in walk_nodes(gp.node):
        if not _has_ref(np_):
            continue
        attrs = list(np_.attribute)
        del np_.attribute[:]
        for a in attrs:
            if not a.ref_attr_name:
                np_.attribute.append(a)
                continue
            actual = call_attrs.get(a.ref_attr_name)
            if actual is None:
                actual = defaults.get(a.ref_attr_name)
            if actual is None:
                continue  # neither given nor defaulted: the attribute is absent
            if actual.type in (_GRAPH, _GRAPHS):
                return f"attribute {a.ref_attr_name!r} is a graph"
            if a.type and actual.type != a.type:
                return f"attribute {a.ref_attr_name!r} has another type at the call than in the body"
            b = np_.attribute.add()
            b.CopyFrom(actual)
            b.name = a.name
            b.ClearField("ref_attr_name")
            b.ClearField("doc_string")
    scope: dict[str, str] = {}
    for name in fp.input:
        scope[name] = fresh(name)
        gp.input.add().name = scope[name]
    _rename_nodes(gp.node, [scope], fresh, node_prefix)
    for name in fp.output:
        gp.output.add().name = _lookup(name, [scope])
    vis = {vi.name: vi for vi in getattr(fp, "value_info", ())}
    for old, new in scope.items():
        vi = vis.get(old)
        if vi is not None:
            c = gp.value_info.add()
            c.CopyFrom(vi)
            c.name = new
    return gp


def _lookup(name: str, chain: list[dict[str, str]]) -> str:
    for scope in reversed(chain):
        new = scope.get(name)
        if new is not None:
            return new
    return name


def _rename_nodes(nodes: Any, chain: list[dict[str, str]], fresh: Callable[[str], str], prefix: str) -> None:
    scope = chain[-1]
    for np_ in nodes:
        for i, name in enumerate(np_.input):
            if name:
                np_.input[i] = _lookup(name, chain)
        for a in np_.attribute:
            if a.type == _GRAPH:
                _rename_graph(a.g, chain, fresh, prefix)
            elif a.type == _GRAPHS:
                for sg in a.graphs:
                    _rename_graph(sg, chain, fresh, prefix)
        for i, name in enumerate(np_.output):
            if name:
                scope[name] = np_.output[i] = fresh(name)
        if np_.name:
            np_.name = f"{prefix}{np_.name}"


def _rename_graph(gp: Any, chain: list[dict[str, str]], fresh: Callable[[str], str], prefix: str) -> None:
    scope: dict[str, str] = {}
    inner = chain + [scope]
    for vi in gp.input:
        scope[vi.name] = vi.name = fresh(vi.name)
    for t in gp.initializer:
        scope[t.name] = t.name = fresh(t.name)
    for sp in gp.sparse_initializer:
        scope[sp.values.name] = sp.values.name = fresh(sp.values.name)
    _rename_nodes(gp.node, inner, fresh, prefix)
    for vi in gp.output:
        vi.name = _lookup(vi.name, inner)
    for vi in gp.value_info:
        vi.name = _lookup(vi.name, inner)


def graph_model(gp: Any, fp: Any, model: Model) -> Model:
    """A throwaway Model holding graph `gp` (from :func:`inline_graph`), to move its nodes into `model`."""
    mp = onnx.ModelProto()
    mp.ir_version = max(int(model.ir_version), 8)
    mp.opset_import.extend(fp.opset_import)
    mp.graph.CopyFrom(gp)
    return serde.from_proto(mp, base_dir=model.base_dir, copy=False)
