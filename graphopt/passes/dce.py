"""Dead-code elimination: drop what nothing reads.

What goes, in one run (a second run finds nothing):

* nodes none of whose outputs is read (a read inside a subgraph counts: the IR registers it as a use) and none of
  whose outputs is a graph output; in subgraphs too. Subgraph inputs and outputs are positional interface of
  If/Loop/Scan and always stay, and so do the main graph's inputs and outputs. A node with no outputs at all is
  kept: it can only exist for an effect we cannot see;
* outputs of a standard If or Loop that stays but whose outputs are not all read: an If output nothing reads goes
  from the node and from both branches (and so does what only it needed, in the same walk); a Loop scan output
  nothing reads goes from the node and the body; a loop-carried value whose final value nothing reads and whose
  copy in the body feeds only its own next value goes as a whole (node input and output, body input and output),
  unless the body holds a node without outputs (kept for an effect we cannot see, it may read anything);
* unused initializers. Before IR version 4 every initializer is also listed as a graph input, which is plumbing,
  not interface: the matching input goes with it. From IR version 4 on, an initializer that is also a graph input
  is an overridable default, part of the interface: both stay;
* value_info entries naming no value (declarations of removed values go with their nodes, in the IR);
* model-local functions that no node calls, directly or through another used function (including nodes nested in
  the functions' own subgraph attributes);
* opset imports of domains that no node of the graphs or of a used function needs. The default domain always
  stays, and so does every domain a used function imports.

Liveness is decided in one reverse walk per graph: a node is visited after every node of the same graph that could
read it, and a node that owns subgraphs is cleaned inside before it is decided on. When a removal leaves a producer
unread, the producer is removed at once through a worklist, so the result does not depend on the walk order and
nothing is ever swept twice: the work is linear in the size of the model.

In a later run of the pipeline (the pass manager says what changed since this pass last ran: ``ctx.changes``) only
the nodes and initializers next to a change are looked at: a node becomes dead only when its last reader goes, and
the IR names the producer of every value that loses a reader. Functions and opset imports are looked at again only
when nodes went and the model has functions or imports beyond the default domain.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from ..ir.core import Graph, Model, Node, Value
from .base import Pass, PassResult

log = logging.getLogger(__name__)

_ATTR_GRAPH = 5  # AttributeProto.GRAPH
_ATTR_GRAPHS = 10  # AttributeProto.GRAPHS


def _domain(d: str) -> str:
    """The canonical spelling of a domain ("ai.onnx" is the default domain "")."""
    return "" if d == "ai.onnx" else d


def attached(node: Node) -> bool:
    """Whether `node` is in a graph that is still part of its model (every owner up the chain is alive)."""
    n: Node | None = node
    while n is not None:
        if not n.is_alive:
            return False
        g = n.graph
        assert g is not None
        n = g.owner
    return True


@dataclass(frozen=True)
class DeadCodeElimination(Pass):
    """Removes unread nodes, unused initializers, orphan value_info, unused functions and opset imports."""

    name: ClassVar[str] = "dce"
    kind: ClassVar[str] = "cleanup"
    summary: ClassVar[str] = ("remove nodes nothing reads, If/Loop outputs nothing reads, unused initializers, "
                              "value_info, functions and opset imports")
    presets: ClassVar[frozenset[str]] = frozenset({"O1", "O2", "O3"})

    def run(self, model: Model, ctx: Any) -> PassResult:
        changes = getattr(ctx, "changes", None)
        if changes is not None and not changes.full:
            return self._run_changed(model, ctx, changes)
        ctx.current_step = "nodes"
        sweeper = _Sweeper(ctx)
        nodes = sweeper.sweep(model.graph)
        ctx.current_node = None
        ctx.current_step = "initializers"
        inits, inputs = _drop_initializers(model)
        ctx.current_step = "value_info"
        vis = sum(g.clear_orphan_value_info() for g in model.graph.all_graphs())
        ctx.current_step = "functions and opsets"
        funcs, opsets = _drop_functions_and_opsets(model)
        ctx.current_step = None
        return PassResult.of(nodes_removed=nodes, if_outputs_removed=sweeper.if_outputs,
                             loop_outputs_removed=sweeper.loop_outputs, initializers_removed=inits, inputs_removed=inputs,
                             value_info_removed=vis, functions_removed=funcs, opsets_removed=opsets)

    def _run_changed(self, model: Model, ctx: Any, changes: Any) -> PassResult:
        """Only what the changes since the last run can have made dead (see the module docs)."""
        ctx.current_step = "nodes"
        sw = _Sweeper(ctx)
        went = False
        for n in changes.nodes:
            if not attached(n):
                went = True  # removed since: its domain may be unused now
                continue
            if sw._try_remove(n):
                sw._drain()
        ctx.current_node = None
        ctx.current_step = "initializers"
        inits, inputs = _drop_initializers(model, [*changes.values, *sw.read_inits])
        funcs = opsets = 0
        if (went or sw.removed) and (model.functions or any(d not in ("", "ai.onnx") for d in model.opset_imports)):
            ctx.current_step = "functions and opsets"
            funcs, opsets = _drop_functions_and_opsets(model)
        ctx.current_step = None
        return PassResult.of(nodes_removed=sw.removed, initializers_removed=inits, inputs_removed=inputs,
                             functions_removed=funcs, opsets_removed=opsets)


class _Sweeper:
    """The node part of DCE: a reverse walk per graph plus a worklist of producers that removals left unread."""

    def __init__(self, ctx: Any):
        self.ctx = ctx
        self.removed = 0
        self.if_outputs = 0
        self.loop_outputs = 0
        self.work: list[Node] = []
        self.read_inits: list[Any] = []  # initializers the removed nodes read (they may be unused now)

    def sweep(self, graph: Graph) -> int:
        self._graph(graph)
        return self.removed

    def _graph(self, g: Graph) -> None:
        # A snapshot: the worklist may remove nodes we have not reached yet; they are skipped below.
        for n in list(g.reversed()):
            if n._erased:
                continue
            outs = n._outputs
            dead = bool(outs)  # a node with no outputs exists only for an effect we cannot see: it stays
            for v in outs:
                if v._uses or v._out_graphs:
                    dead = False  # read: it stays (the common case, decided without a call)
                    break
            if dead:
                self._try_remove(n)
                self._drain()
                continue
            subs = n.subgraphs()
            if subs:
                # The node stays: drop the outputs nothing reads (and what computes them in its bodies), then clean
                # its subgraphs now, before the walk reaches the producers they read.
                self._prune_outputs(n)
                for sg in subs:
                    self._graph(sg)

    def _prune_outputs(self, n: Node) -> None:
        """Unread outputs of a standard If or Loop that stays: If outputs (one per branch output slot), Loop scan
        outputs, and loop-carried values that neither the caller nor the body reads (each a node input, a body
        input, a body output and a node output, dropped together). Node inputs dropped this way may leave their
        producers unread: they go on the worklist."""
        if n.domain not in ("", "ai.onnx"):
            return
        if n.op_type == "If":
            self._prune_if(n)
        elif n.op_type == "Loop":
            self._prune_loop(n)

    def _prune_if(self, n: Node) -> None:
        branches = [n.attr("then_branch"), n.attr("else_branch")]
        if not all(isinstance(b, Graph) and len(b.outputs) == len(n.outputs) for b in branches):
            return  # not a well-formed If: leave it
        for i in range(len(n.outputs) - 1, -1, -1):
            if n.outputs[i].is_used():
                continue
            self.ctx.current_node = n
            for b in branches:
                b.remove_output(i)
            n.remove_output(i)
            self.if_outputs += 1

    def _prune_loop(self, n: Node) -> None:
        subs = n.subgraphs()
        if len(subs) != 1:
            return
        body = subs[0]
        carried = n.num_inputs - 2
        outs = n.outputs
        bins, bouts = body.inputs, body.outputs
        if carried < 0 or len(bins) != 2 + carried or len(bouts) != 1 + len(outs) or len(outs) < carried:
            return  # not a well-formed Loop: leave it
        self.ctx.current_node = n
        # scan outputs (after the carried values), last first so that indexes stay valid
        for j in range(len(outs) - 1, carried - 1, -1):
            if not outs[j].is_used():
                body.remove_output(1 + j)
                n.remove_output(j)
                self.loop_outputs += 1
        # loop-carried values whose final value nobody reads and whose copy in the body feeds nothing but the
        # computation of its own next value (nor the condition, nor another value that is kept)
        if carried and any(not x.outputs for x in body.all_nodes()):
            carried = 0  # a node kept for an unseen effect may read anything: keep every carried value
        keep = [body.outputs[0]]
        keep += [body.outputs[1 + k] for k in range(carried) if n.outputs[k].is_used()]
        keep += list(body.outputs[1 + carried:])
        live = _live_values(body, keep)
        dropped: list[Value] = []
        for k in range(carried - 1, -1, -1):
            bin_ = body.inputs[2 + k]
            if n.outputs[k].is_used() or bin_ in live:
                continue
            body.remove_output(1 + k)
            body.remove_input(bin_)
            n.remove_output(k)
            v = n.inputs[2 + k]
            ins = list(n.inputs)
            del ins[2 + k]
            n.set_inputs(ins)
            if v is not None:
                dropped.append(v)
            self.loop_outputs += 1
        for v in dropped:
            p = v.producer
            if p is not None and not v.is_used():
                self.work.append(p)
        self._drain()

    def _dead(self, n: Node) -> bool:
        outs = n.outputs
        if not outs:
            return False  # a node with no outputs exists only for an effect we cannot see
        return not any(v.is_used() for v in outs)

    def _try_remove(self, n: Node) -> bool:
        if not self._dead(n):
            return False
        self.ctx.current_node = n
        g = n.graph
        assert g is not None
        # Collect what the node reads (its subgraphs' reads of outer values included) before removing it: the
        # producers of these values may be left unread.
        read = [v for v in n.inputs if v is not None]
        if n.subgraphs():
            read.extend(n.implicit_inputs())
        g.remove(n)
        self.removed += 1
        for v in read:
            p = v.producer
            if p is not None:
                if not v.is_used():
                    self.work.append(p)
            elif v._const is not None:
                self.read_inits.append(v)
        return True

    def _drain(self) -> None:
        work = self.work
        while work:
            p = work.pop()
            if attached(p):
                self._try_remove(p)


def _live_values(body: Graph, outputs: list[Value]) -> set[Value]:
    """The values of `body` (its inputs included) that `outputs` are computed from, through nodes of `body` and the
    reads of their subgraphs; each node is visited once."""
    live: set[Value] = set()
    seen: set[Node] = set()
    stack = list(outputs)
    while stack:
        v = stack.pop()
        if v in live:
            continue
        live.add(v)
        p = v.producer
        if p is None or p.graph is not body or p in seen:
            continue
        seen.add(p)
        stack.extend(x for x in p.inputs if x is not None)
        if p.subgraphs():
            stack.extend(p.implicit_inputs())
    return live


def _drop_initializers(model: Model, only: Any = None) -> tuple[int, int]:
    """Remove unread initializers in every graph (or among `only`); returns (initializers removed, graph inputs
    removed)."""
    n_inits = n_inputs = 0
    if only is None:
        groups = [(g, [v for v in g.initializers.values() if not v.is_used()]) for g in model.graph.all_graphs()]
    else:
        by_graph: dict[Graph, dict[Any, None]] = {}
        for v in only:
            g = v._graph
            if g is None or v.is_used() or g._initializers.get(v._name) is not v:
                continue
            if g is not model.graph and (g.owner is None or not attached(g.owner)):
                continue  # a graph that left the model
            by_graph.setdefault(g, {})[v] = None
        groups = [(g, list(vs)) for g, vs in by_graph.items()]
    for g, dead in groups:
        if not dead:
            continue
        inputs = g.inputs
        input_set = set(inputs)
        for v in dead:
            if v in input_set:
                # IR>=4: an initializer listed as an input is an overridable default (interface). IR<4: every
                # initializer is listed as an input of the main graph, as plumbing. Subgraph inputs are positional.
                if g.owner is not None or model.ir_version >= 4:
                    continue
                g.remove_input(v)
                n_inputs += 1
            g.remove_initializer(v)
            n_inits += 1
    return n_inits, n_inputs


def _proto_graph_nodes(nodes: Any) -> Any:
    """Every NodeProto of a function body, nested graph attributes included (no onnx import needed)."""
    stack = [nodes]
    while stack:
        for np_ in stack.pop():
            yield np_
            for a in np_.attribute:
                if a.type == _ATTR_GRAPH:
                    stack.append(a.g.node)
                elif a.type == _ATTR_GRAPHS:
                    for sg in a.graphs:
                        stack.append(sg.node)


def _fkey(domain: str, name: str, overload: str) -> tuple[str, str, str]:
    return (_domain(domain), name, overload)


def _drop_functions_and_opsets(model: Model) -> tuple[int, int]:
    """Remove uncalled model-local functions, then opset imports no kept node needs."""
    template = getattr(model, "_template", None)
    if template is not None and len(getattr(template, "training_info", ())):
        # training_info graphs (kept verbatim in the template) may call functions and use domains we do not
        # walk: do not guess.
        return 0, 0
    functions = list(model.functions)
    by_key: dict[tuple[str, str, str], Any] = {}
    for f in functions:
        by_key.setdefault(_fkey(f.domain, f.name, getattr(f, "overload", "")), f)

    domains: dict[str, None] = {"": None}
    used: dict[int, Any] = {}  # id(FunctionProto) -> FunctionProto, in discovery order
    work: list[Any] = []
    for n in model.graph.all_nodes():
        d = _domain(n.domain)
        domains[d] = None
        if by_key:
            f = by_key.get((d, n.op_type, n.overload))
            if f is not None and id(f) not in used:
                used[id(f)] = f
                work.append(f)
    while work:
        f = work.pop()
        for o in f.opset_import:
            domains[_domain(o.domain)] = None
        for np_ in _proto_graph_nodes(f.node):
            d = _domain(np_.domain)
            domains[d] = None
            g = by_key.get((d, np_.op_type, getattr(np_, "overload", "")))
            if g is not None and id(g) not in used:
                used[id(g)] = g
                work.append(g)

    n_funcs = 0
    if len(used) != len(functions):
        kept = [f for f in functions if id(f) in used]
        n_funcs = len(functions) - len(kept)
        for f in functions:
            if id(f) not in used:
                log.debug("dce: dropping unused function %s::%s", f.domain, f.name)
        model.set_functions(kept)

    imports = model.opset_imports
    keep = {d: v for d, v in imports.items() if _domain(d) in domains}
    n_opsets = len(imports) - len(keep)
    if n_opsets:
        model.set_opset_imports(keep)
    return n_funcs, n_opsets
