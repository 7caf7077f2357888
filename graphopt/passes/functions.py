"""optimize-functions: model-local function bodies optimized like graphs, and inlined where that is safe.

Bodies. Each model-local function's body is loaded as a graph of its own (:func:`graphopt.ir.serde.functions.body_model`:
the function's inputs and outputs, its own opset imports) and the pipeline's other passes run on it to a fixed point
(dead code, duplicates, folding, no-ops, shapes, control flow, fusion: whatever the pipeline holds, with its
options), in a context of its own so that the model's symbol table is left alone. Nodes with attribute references
(``@alpha``) are hidden from every pass: their attribute values are known only at a call. A body that changed is
written back (constants a pass made become Constant nodes at the top); a body the pipeline leaves as it is keeps its
original message. Each body is optimized once per run of the pipeline: the bodies this pass wrote or found
unchanged are remembered in the context, so later rounds cost nothing.

Inlining (``inline``, on by default). A function is inlined where it is called when it is called exactly once in
the whole model (calls from function bodies count) or when its body is a single node: into the model's graphs (main
graph and subgraphs), and into the bodies of other functions, before they are optimized. At each call site the
body's values get names that are fresh there, attribute references take the call's attributes (else the function's
defaults; else the attribute is left out), and the call's outputs are replaced by the body's (a model output keeps
its name). A call inside a body that passes on one of that body's attribute references is hidden like every node
with attribute references, and stays a call. Refused, with the reason counted in the stats and logged:

* a call with more inputs or outputs than the function declares;
* a body whose opset imports conflict with the model's (:func:`graphopt.ir.serde.functions.opset_conflict`: a domain the
  model lacks is added; a domain at two versions is fine only where every op means the same in both);
* an attribute reference to a graph attribute, or to an attribute of another type;
* a function of a domain a runtime may implement natively (``com.microsoft``, onnx's own domains): the function is
  a fallback there, and the consumer's kernel is better;
* a model with training_info graphs, which may call functions too.

The work is linear: one walk of the model indexes the call sites, bodies are counted once, and a function fully
inlined is dropped from the counts of what its body calls (DCE removes the function itself). Stats: functions
optimized, their nodes removed or added, calls inlined (``_in_functions``: into bodies), functions inlined, and one
count per refusal kind.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..ir.core import Model, Node, Value
from .base import Pass, PassManager, PassResult, option

if TYPE_CHECKING:
    from ..jit.context import JitContext

log = logging.getLogger(__name__)

#: Domains whose ops a runtime may implement natively: a model-local function there is a fallback, never inlined.
NATIVE_DOMAINS = frozenset({"", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training", "com.microsoft",
                            "com.microsoft.nchwc", "com.microsoft.experimental", "org.pytorch.aten"})

_DONE = "optimize-functions.done"  # ctx.meta key: id(FunctionProto) -> the proto, for bodies already optimized



class _Bridge:
    """graphopt.ir.serde.functions, imported on first use: it imports onnx, which `graphopt passes` (listing this
    pass) must not pay for."""

    def __getattr__(self, name: str) -> Any:
        from ..ir.serde import functions

        return getattr(functions, name)


fns: Any = _Bridge()

@dataclass(frozen=True)
class OptimizeFunctions(Pass):
    """Optimizes model-local function bodies with the pipeline's passes; inlines functions called once or made of
    one node."""

    name: ClassVar[str] = "optimize-functions"
    kind: ClassVar[str] = "cleanup"
    summary: ClassVar[str] = ("optimize model-local function bodies like graphs; inline functions called once or "
                              "whose body is a single node")
    presets: ClassVar[frozenset[str]] = frozenset({"O1", "O2", "O3"})

    inline: bool = option(True, "inline functions called once, or whose body is a single node, where safe")
    passes: tuple[str, ...] = option((), "the passes run on each body; empty: the pipeline's own passes")

    def run(self, model: Model, ctx: JitContext) -> PassResult:
        if not model.functions:
            return PassResult.of()
        stats: collections.Counter[str] = collections.Counter()
        ctx.current_node = None
        template = getattr(model, "_template", None)
        # training_info graphs (kept verbatim) may call functions too: the call counts would be wrong
        can_inline = self.inline and not (template is not None and len(getattr(template, "training_info", ())))
        self._optimize_bodies(model, ctx, stats, can_inline)
        if can_inline:
            stats.update(_Inliner(model, _Calls(model), ctx).run())
        ctx.current_step = None
        return PassResult.of(**stats)

    # -- bodies ------------------------------------------------------------------------------------------------
    def _sub_pipeline(self, ctx: JitContext) -> list[Pass]:
        if self.passes:
            return [ctx.passes.create(n) for n in self.passes if n != self.name]
        return [p for p in ctx.pipeline if p.name != self.name]

    def _optimize_bodies(self, model: Model, ctx: JitContext, stats: collections.Counter[str],
                         can_inline: bool) -> None:
        done: dict[int, Any] = ctx.meta.setdefault(_DONE, {})
        todo = [i for i, fp in enumerate(model.functions) if done.get(id(fp)) is not fp]
        if not todo:
            return
        passes = self._sub_pipeline(ctx)
        calls = _Calls(model) if can_inline else None
        if not passes and (calls is None or not calls.any_inlinable()):
            return
        functions = list(model.functions)
        by_key: dict[Key, Any] = {}
        for fp in functions:
            by_key.setdefault(fns.key_of(fp), fp)
        changed = False
        for i in todo:
            fp = functions[i]
            ctx.current_step = f"function {fp.domain}::{fp.name}"
            new = self._optimize_body(fp, model, ctx, passes, stats, calls, fns.called_by(fp, by_key))
            if new is None or new.SerializeToString() == fp.SerializeToString():
                done[id(fp)] = fp
                continue
            stats["functions_optimized"] += 1
            stats["function_nodes_removed"] += max(0, fns.count_nodes(fp) - fns.count_nodes(new))
            stats["function_nodes_added"] += max(0, fns.count_nodes(new) - fns.count_nodes(fp))
            functions[i] = new
            done[id(new)] = new
            changed = True
        if changed:
            model.set_functions(functions)

    @staticmethod
    def _optimize_body(fp: Any, model: Model, ctx: JitContext, passes: list[Pass],
                       stats: collections.Counter[str], calls: _Calls | None, callees: list[Any]) -> Any | None:
        """`fp` with the functions it calls inlined where they qualify (`calls`) and its body optimized by
        `passes`, or None when nothing changes (or nothing that fits).

        onnx's checker wants every op of a body to mean the same under the function's and the model's opset
        imports; a rewrite may bring in an op that does not (Gelu in an opset-20 function of an opset-18 model).
        Such a body is optimized again without fusion, and kept as it was if it still does not fit."""
        attempts = [passes]
        unfused = [p for p in passes if p.kind != "fusion"]
        if len(unfused) != len(passes):
            attempts.append(unfused)
        for attempt in attempts:
            fm = fns.body_model(fp, model, callees)
            inlined: collections.Counter[str] = collections.Counter()
            if calls is not None:
                inlined = _Inliner(fm, calls, ctx, within=fns.key_of(fp)).run()
                ctx.current_step = f"function {fp.domain}::{fp.name}"
            changed = bool(inlined)
            if attempt:
                rec = PassManager(_child_context(ctx, attempt), attempt, max_rounds=ctx.config.max_rounds,
                                  strict=ctx.config.strict, verify_each=ctx.config.verify_each).run(fm)
                for w in rec.warnings:
                    log.warning("function %s::%s: %s", fp.domain, fp.name, w)
                stats["function_passes_rolled_back"] += len(rec.failed)
                changed = changed or any(r.changed for r in rec.passes)
            if not changed:
                return None
            new = fns.body_proto(fm, fp)
            if new is None:
                return None
            _, why = fns.opset_conflict(new, model.opset_imports, inlining=False)
            if why is None:
                stats.update({f"{k}_in_functions": v for k, v in inlined.items()})
                return new
            log.info("optimize-functions: %s::%s: the optimized body does not fit the model's opsets (%s)",
                     fp.domain, fp.name, why)
        stats["function_bodies_refused_opset"] += 1
        return None


def _child_context(ctx: JitContext, passes: list[Pass]) -> JitContext:
    """A context for function bodies: the same registries, translators and configuration, a symbol table of its own
    (the model's stays valid), and `passes` as its pipeline."""
    from ..jit.context import JitContext

    child = JitContext()
    child.passes = ctx.passes
    child.rules = ctx.rules
    child.translators = ctx.translators
    child.config = ctx.config
    child.pipeline = list(passes)
    return child


# ----------------------------------------------------------------------------------------------------------------
# inlining
# ----------------------------------------------------------------------------------------------------------------
Key = tuple[str, str, str]


class _Calls:
    """Where a model's functions are called: the call sites in the model's graphs (one walk), and the calls that
    each function's body makes to the others (counted once)."""

    def __init__(self, model: Model):
        self.by_key: dict[Key, Any] = {}
        for fp in model.functions:
            self.by_key.setdefault(fns.key_of(fp), fp)
        self.local_domains = frozenset(k[0] for k in self.by_key)
        self.sites: dict[Key, list[Node]] = collections.defaultdict(list)
        self.index(model.graph.all_nodes())
        self.calls_in: dict[Key, collections.Counter[Key]] = {}
        self.body_calls: collections.Counter[Key] = collections.Counter()
        for k, fp in self.by_key.items():
            c: collections.Counter[Key] = collections.Counter()
            for np_ in fns.walk_nodes(fp.node):
                kk = fns.function_key(np_.domain, np_.op_type, getattr(np_, "overload", ""))
                if kk in self.by_key and kk != k:
                    c[kk] += 1
            self.calls_in[k] = c
            self.body_calls.update(c)

    def index(self, nodes: Any, into: dict[Key, list[Node]] | None = None) -> None:
        sites = self.sites if into is None else into
        by_key = self.by_key
        for n in nodes:
            k = fns.function_key(n.domain, n.op_type, n.overload)
            if k in by_key:
                sites[k].append(n)

    def single_node(self, k: Key) -> bool:
        """Whether function `k`'s body is one node (that does not call `k` itself)."""
        fp = self.by_key[k]
        return len(fp.node) == 1 and not any(
            fns.function_key(np_.domain, np_.op_type, getattr(np_, "overload", "")) == k for np_ in fp.node)

    def called_once(self, k: Key) -> bool:
        """Whether the model calls function `k` exactly once, counting calls from function bodies."""
        return sum(1 for n in self.sites.get(k, ()) if n.is_alive) + self.body_calls[k] == 1

    def any_inlinable(self) -> bool:
        return any(self.single_node(k) or self.called_once(k) for k in self.by_key)


class _Inliner:
    """Inlines the functions that qualify at their call sites in `target`: the model's graphs (`within` None), or
    the body of function `within` being optimized (a graph of its own)."""

    def __init__(self, target: Model, calls: _Calls, ctx: JitContext, *, within: Key | None = None):
        self.model = target
        self.calls = calls
        self.ctx = ctx
        self.within = within
        self.stats: collections.Counter[str] = collections.Counter()
        if within is None:
            self.sites = calls.sites
        else:
            self.sites = collections.defaultdict(list)
            calls.index(target.graph.all_nodes(), self.sites)
        self.dead: set[Key] = set()
        self.opsets: dict[Key, tuple[dict[str, int], str | None]] = {}

    def run(self) -> collections.Counter[str]:
        by_key = self.calls.by_key
        work = collections.deque(k for k, s in self.sites.items() if s)  # only what is called here
        queued = set(work)
        # a function is tried again only after a function whose body calls it was inlined somewhere; ONNX functions
        # cannot recurse, but a malformed model could make them: the cap keeps this bounded anyway
        cap = budget = 4 * len(by_key) + 16
        while work:
            budget -= 1
            if budget < 0:
                self.stats["inline_cap_hit"] = 1
                log.warning("optimize-functions: stopped inlining after %d tries (recursive functions?)", cap)
                break
            k = work.popleft()
            queued.discard(k)
            for kk in self._try(k):
                if kk not in queued:
                    queued.add(kk)
                    work.append(kk)
        return self.stats

    def _try(self, k: Key) -> list[Key]:
        """Inline function `k` where it qualifies; returns the functions that may have new call sites."""
        calls = self.calls
        if k in self.dead or k == self.within:
            return []
        fp = calls.by_key[k]
        sites = [n for n in self.sites.get(k, ()) if n.is_alive]
        self.sites[k] = sites
        if not sites:
            return []
        if not (calls.single_node(k) or calls.called_once(k)):
            return []
        if k[0] in NATIVE_DOMAINS:
            self._refuse(fp, "native_domain", f"domain {k[0] or 'ai.onnx'!r} may have a native kernel")
            return []
        add, why = self._opsets(k, fp)
        if why is not None:
            self._refuse(fp, "opset", why)
            return []
        inlined = 0
        for n in sites:
            self.ctx.current_node = n
            self.ctx.current_step = f"inline {fp.domain}::{fp.name}"
            why = self._inline(n, fp, add)
            if why is not None:
                self._refuse(fp, "call", why)
                continue
            inlined += 1
            add = {}  # added once
        if not inlined:
            return []
        self.stats["calls_inlined"] += inlined
        self.sites[k] = [n for n in sites if n.is_alive]
        if self.within is None and not self.sites[k] and not calls.body_calls[k]:
            # every call is gone: the function is dead (DCE drops it), and so are the calls its body makes
            self.stats["functions_inlined"] += 1
            self.dead.add(k)
            for kk, c in calls.calls_in[k].items():
                calls.body_calls[kk] -= c
        # what the body calls has new call sites here now
        return list(calls.calls_in[k])

    def _refuse(self, fp: Any, kind: str, why: str) -> None:
        self.stats[f"inline_refused_{kind}"] += 1
        log.info("optimize-functions: %s::%s not inlined: %s", fp.domain, fp.name, why)

    def _opsets(self, k: Key, fp: Any) -> tuple[dict[str, int], str | None]:
        r = self.opsets.get(k)
        if r is None:
            r = self.opsets[k] = fns.opset_conflict(fp, self.model.opset_imports, self.calls.local_domains)
        return r

    def _inline(self, n: Node, fp: Any, add: dict[str, int]) -> str | None:
        """Replace call node `n` by the body of `fp`; returns why not (nothing changed) or None when done."""
        if n.num_inputs > len(fp.input) or len(n.outputs) > len(fp.output):
            return "the call has more inputs or outputs than the function"
        g = n.graph
        assert g is not None
        model = self.model
        call_attrs = {}
        for name, a in n.attrs.items():
            call_attrs[name] = fns.attr_proto(a)
        prefix = f"{n.name or fp.name}/"
        gp = fns.inline_graph(fp, call_attrs, lambda s: model.fresh_name(prefix + s, bound=True), prefix)
        if isinstance(gp, str):
            return gp
        tmp = fns.graph_model(gp, fp, model)  # a model of its own: building it changes nothing here
        body = tmp.graph
        actual: list[Value | None] = list(n.inputs) + [None] * (len(body.inputs) - n.num_inputs)
        formal = dict(zip(body.inputs, actual))
        for fin, act in formal.items():
            if act is None and fin.output_graphs():
                return f"a graph output of the body is input {fp.input[body.inputs.index(fin)]!r}, absent at the call"
        # -- from here on, only edits ------------------------------------------------------------------------
        if add:
            model.set_opset_imports({**model.opset_imports, **add})
        outs = [formal.get(v, v) for v in body.outputs]
        for i in range(len(outs)):
            body.set_output(i, Value(None))  # the body lets go of its outputs: moved values may take over names
        for fin, act in formal.items():
            for node, i in fin.uses():
                node.replace_input_with(i, act)
            for og in dict.fromkeys(fin.output_graphs()):  # a subgraph of the body that outputs a formal input
                for i, v in enumerate(og.outputs):
                    if v is fin:
                        assert act is not None
                        og.set_output(i, act)
        nodes = list(body)
        if nodes:
            body.remove(nodes, check=False)
            g.insert_before(n, *nodes)
        for old, new in zip(n.outputs, outs):
            if new is not None:
                old.replace_all_uses_with(new)
        g.remove(n)
        self.calls.index(_nodes_and_inner(nodes), self.sites)
        return None


def _nodes_and_inner(nodes: list[Node]) -> list[Node]:
    out: list[Node] = []
    for n in nodes:
        out.append(n)
        for sg in n.subgraphs():
            out.extend(sg.all_nodes())
    return out


__all__ = ["OptimizeFunctions"]
