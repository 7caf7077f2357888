"""Simplify control flow: If and Loop nodes whose outcome is known before run time.

* An ``If`` whose condition is a constant (a non-overridable initializer, or the output of a ``Constant`` node) is
  replaced by the branch it takes: the branch's nodes move into the enclosing graph just before the If, its
  initializers become initializers of the main graph, each If output is replaced by the matching branch output
  (which may be an outer value), and the If goes. A branch value whose name is used elsewhere in the model is
  renamed on the way out, so that names stay unique once it joins the enclosing scope.
* An ``If`` one of whose branches always makes the run fail is replaced by the other branch
  (``decide-by-rank``): the failing branch gives an output of a rank that a later op of the same graph cannot take
  (LSTM/GRU/RNN inputs, Gemm, Conv and its weight, Transpose's perm, the other inputs of a Concat), following the
  value through ops whose output rank follows from it (same-rank ops, Unsqueeze/Squeeze of constant axes,
  broadcasting). The op must run whenever the If runs: it is in the same graph and the graph's outputs depend on
  it. Ranks come only from what the graph forces (:class:`graphopt.passes._ranks.ForcedRanks`: model inputs,
  constants, op rules), never from declared intermediate types, which exporters write from one traced run. The
  condition then has one value in every run that does not fail: every If that reads it, or a copy of it (Identity,
  Cast to bool of a boolean), and runs whenever the decided If's graph runs gets the constant as its condition.
  This is what decides the rank tests that exporters emit around RNNs (the silero-vad models).
* An ``If`` whose two branches are structurally identical (:meth:`KeyMaker.graph_key`, as CSE compares subgraphs)
  is replaced by its then branch, whatever the condition. Branches holding a random op are not compared.
* A ``Loop`` that runs zero times (a constant trip count of 0, or a constant initial condition of false) is
  replaced by its initial loop-carried values, when it has no scan outputs (those would be empty tensors whose
  shape we would have to build).

Every graph is visited (If and Loop nodes nested in any subgraph), and nodes moved out of a branch are visited too.
An overridable condition (an IR>=4 initializer listed as a graph input) is not a constant and is left alone.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..ir.builder import Builder, add_constant
from ..ir.constants import constant_value
from ..ir.core import Graph, Model, Node, Value
from ._ranks import ForcedRanks, live_nodes, rank_through, required_rank
from .base import Pass, PassResult, option
from .cse import FunctionPurity, KeyMaker
from .dce import attached

log = logging.getLogger(__name__)

_MAX_RANK_STEPS = 256  # values followed from one If output while looking for an op that cannot take its rank


def const_scalar(v: Value | None) -> Any:
    """The single element of a constant value (initializer that cannot be overridden, or Constant node output),
    as a Python scalar; None when `v` is not such a constant of exactly one element."""
    t = constant_value(v)
    if t is None or t.is_sparse or t.size != 1:
        return None
    return t.numpy().reshape(-1)[0].item()


_BOOL = 9
# ops whose output is a boolean tensor
_BOOL_OPS = frozenset({"Not", "And", "Or", "Xor", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
                       "IsNaN", "IsInf"})


def _is_bool_copy(n: Node) -> bool:
    """Whether standard node `n` returns its boolean input unchanged: Identity, or a Cast to bool of a boolean."""
    if n.domain not in ("", "ai.onnx"):
        return False
    if n.op_type == "Identity":
        return True
    if n.op_type != "Cast" or n.attr("to") != _BOOL or n.attrs["to"].ref_attr_name:
        return False
    x = n.input(0)
    if x is None:
        return False
    p = x.producer
    if p is None:
        return x.dtype == _BOOL  # a graph input or an initializer: its type is the interface's or the tensor's
    return p.domain in ("", "ai.onnx") and (p.op_type in _BOOL_OPS or p.op_type == "Cast" and p.attr("to") == _BOOL)


def _within(n: Node, g: Graph) -> bool:
    """Whether node `n` is in `g` or in a subgraph nested in it (it runs only when `g` runs)."""
    h = n.graph
    while h is not None:
        if h is g:
            return True
        o = h.owner
        h = o.graph if o is not None else None
    return False


def _bool_source(c: Value) -> Value:
    """The value that `c` copies (through Identity and Cast-to-bool of booleans); `c` itself when none."""
    seen = 0
    while seen < 64:
        p = c.producer
        if p is None or not _is_bool_copy(p) or p.input(0) is None:
            break
        c = p.input(0)  # type: ignore[assignment]
        seen += 1
    return c


def _ifs_reading_copies_of(src: Value) -> list[Node]:
    """Every standard If whose condition is `src` or a copy of it (see :func:`_is_bool_copy`), at any depth."""
    out: list[Node] = []
    stack, seen = [src], {src}
    while stack:
        v = stack.pop()
        for u, j in v.uses():
            if u.domain not in ("", "ai.onnx"):
                continue
            if u.op_type == "If" and j == 0:
                out.append(u)
            elif j == 0 and _is_bool_copy(u) and u.outputs and u.outputs[0] not in seen:
                seen.add(u.outputs[0])
                stack.append(u.outputs[0])
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class SimplifyControlFlow(Pass):
    """Inlines If nodes with a constant condition, identical branches or a branch that always fails; removes Loops
    that run zero times."""

    name: ClassVar[str] = "simplify-control-flow"
    kind: ClassVar[str] = "folding"
    summary: ClassVar[str] = ("inline If nodes with a constant condition, identical branches or a branch that "
                              "always fails; drop loops that run zero times")
    presets: ClassVar[frozenset[str]] = frozenset({"O2", "O3"})

    max_tensor_bytes: int = option(64 << 20, "when comparing two If branches, tensors larger than this are not "
                                             "hashed (the branches count as different); -1: no limit")
    decide_by_rank: bool = option(True, "take the only branch of an If whose output rank a later op can take "
                                        "(the other one always fails)")

    def run(self, model: Model, ctx: Any) -> PassResult:
        return _Simplifier(model, ctx, KeyMaker(FunctionPurity(model), int(self.max_tensor_bytes)),
                           bool(self.decide_by_rank)).run()


class _Simplifier:
    def __init__(self, model: Model, ctx: Any, keys: KeyMaker, decide_by_rank: bool = True):
        self.model = model
        self.ctx = ctx
        self.keys = keys
        self._names: collections.Counter[str] | None = None
        self.decide_by_rank = decide_by_rank
        self._ranks: ForcedRanks | None = None  # built on first use, once per run
        self._live: dict[Graph, set[Node]] = {}
        self.stats = {"ifs_constant_cond": 0, "ifs_identical_branches": 0, "loops_zero_trip": 0,
                      "nodes_moved": 0, "values_renamed": 0, "if_conditions_pinned": 0}

    def run(self) -> PassResult:
        ctx = self.ctx
        # All candidates, outer before inner, collected once: nodes moved out of a branch are already listed, and
        # nodes of a discarded branch are skipped (no longer attached).
        todo = [n for n in self.model.graph.all_nodes()
                if n.op_type in ("If", "Loop") and n.domain in ("", "ai.onnx")]
        for n in todo:
            if not attached(n):
                continue
            ctx.current_node = n
            if n.op_type == "If":
                ctx.current_step = "if"
                self._if(n)
            else:
                ctx.current_step = "loop"
                self._loop(n)
        ctx.current_node = None
        ctx.current_step = None
        return PassResult.of(**self.stats)

    # -- If ----------------------------------------------------------------------------------------------------
    def _if(self, n: Node) -> None:
        then_g = n.attr("then_branch")
        else_g = n.attr("else_branch")
        if not isinstance(then_g, Graph) or not isinstance(else_g, Graph):
            return
        cond = const_scalar(n.input(0))
        if cond is None and self.decide_by_rank:
            cond = self._decide_by_rank(n, then_g, else_g)
        if cond is not None:
            branch, stat = (then_g if cond else else_g), "ifs_constant_cond"
        else:
            k = self.keys.graph_key(then_g)
            if k is None or k != self.keys.graph_key(else_g):
                return  # the condition decides at run time, and the branches differ
            branch, stat = then_g, "ifs_identical_branches"
        # A branch has no inputs and one output per If output; anything else is not a valid If: leave it.
        if branch.inputs or len(branch.outputs) != len(n.outputs):
            return
        self._inline(n, branch)
        self.stats[stat] += 1

    def _decide_by_rank(self, n: Node, then_g: Graph, else_g: Graph) -> bool | None:
        """The condition's value in every run that does not fail, when one branch always makes the run fail: its
        output has a rank (that the graph forces) that a later op of the same graph cannot take. The If's
        condition value is then pinned to a constant for every If that reads it (they all take the same branch)."""
        g = n.graph
        assert g is not None
        if self._ranks is None:
            self._ranks = ForcedRanks(self.model)
        ranks = self._ranks
        live = self._live.get(g)
        if live is None:
            live = self._live[g] = live_nodes(g)
        if n not in live:
            return None
        fails = []
        for b in (then_g, else_g):
            if len(b.outputs) != len(n.outputs):
                return None
            fails.append(any(self._fails(o, r, g, live, set()) for o, r in zip(n.outputs, map(ranks.of, b.outputs))
                             if r is not None))
        if fails[0] == fails[1]:
            return None  # both may run (or neither can: the model always fails, leave it)
        value = fails[1]  # the then branch fails: the condition is false
        c = n.input(0)
        assert c is not None
        const = Builder(g).const(np.array(value, dtype=np.bool_), prefix=f"{c.name or 'cond'}_pinned")
        for u in _ifs_reading_copies_of(_bool_source(c)):
            # what we know holds whenever `g` runs: an If elsewhere may run when `g` does not (g is a branch, or a
            # Loop body that may run zero times) and see the other value
            if _within(u, g):
                u.replace_input_with(0, const)
                self.stats["if_conditions_pinned"] += 1
        return value

    def _fails(self, v: Value, rank: int, g: Graph, live: set[Node], seen: set[tuple[Value, int]]) -> bool:
        """Whether a value of `rank` at `v` makes some op of `g` that always runs fail (a rank it cannot take),
        following ops whose output rank follows from that input's."""
        if (v, rank) in seen or len(seen) > _MAX_RANK_STEPS:
            return False
        seen.add((v, rank))
        ranks = self._ranks
        assert ranks is not None
        for u, j in v.uses():
            if u.graph is not g or u not in live:
                continue  # a reader inside a subgraph, or one that may not run
            need = required_rank(u, j, ranks)
            if need is not None and need != rank:
                return True
            nxt = rank_through(u, j, rank, ranks)
            if nxt is not None and (nxt < 0 or self._fails(u.outputs[0], nxt, g, live, seen)):
                return True
        return False

    def _name_counts(self) -> collections.Counter[str]:
        """How many values of the model carry each name (built once, on the first inlining)."""
        if self._names is None:
            c: collections.Counter[str] = collections.Counter()
            for g in self.model.graph.all_graphs():
                for v in g.inputs:
                    if v.name:
                        c[v.name] += 1
                inputs = set(g.inputs)
                for name, v in g.initializers.items():
                    if v not in inputs:
                        c[name] += 1
                for node in g:
                    for v in node.outputs:
                        if v.name:
                            c[v.name] += 1
            self._names = c
        return self._names

    def _inline(self, n: Node, branch: Graph) -> None:
        """Replace If node `n` by the nodes of `branch` (checked by the caller: no inputs, matching outputs)."""
        g = n.graph
        assert g is not None
        model = self.model
        names = self._name_counts()
        # 1. branch initializers become main-graph constants (fresh names); readers follow
        repl: dict[Value, Value] = {}
        for v in list(branch.initializers.values()):
            t = v.const
            assert t is not None
            new = add_constant(g, t, prefix=v.name or "const")
            names[new.name or ""] += 1
            v.replace_all_uses_with(new, outputs=False)
            repl[v] = new
        # 2. move the nodes (uses re-registered by the IR), keeping their value_info, renaming clashing names
        nodes = list(branch)
        declared = [v for v in branch.value_info if v.producer is not None and v.producer.graph is branch]
        if nodes:
            branch.remove(nodes, check=False)
            g.insert_before(n, *nodes)
            self.stats["nodes_moved"] += len(nodes)
        for node in nodes:
            for v in node.outputs:
                name = v.name
                if name and names[name] > 1:
                    fresh = model.fresh_name(name)
                    names[name] -= 1
                    names[fresh] += 1
                    v.rename(fresh, _reserved=True)  # fresh_name reserved it for this very rename
                    self.stats["values_renamed"] += 1
        for v in declared:
            g.declare(v)
        # 3. the If's outputs become the branch's outputs; the If goes (its other branch with it). The branch,
        # about to be dropped, first lets go of its outputs (placeholders take their slots), so that a moved value
        # can take over the name of an If output that is a graph output instead of needing an Identity.
        outs = [repl.get(v, v) for v in branch.outputs]
        for i in range(len(outs)):
            branch.set_output(i, Value(None))
        for old, new in zip(n.outputs, outs):
            old.replace_all_uses_with(new)
        g.remove(n)

    # -- Loop --------------------------------------------------------------------------------------------------
    def _loop(self, n: Node) -> None:
        subs = n.subgraphs()
        if len(subs) != 1:
            return
        body = subs[0]
        trip = n.input(0)
        cond = n.input(1)
        if trip is None and cond is None:
            return  # runs until the body says stop
        m = const_scalar(trip) if trip is not None else None
        c = const_scalar(cond) if cond is not None else None
        if not (m == 0 and isinstance(m, int) or c is not None and not c):
            return  # it may run: only a loop known to run zero times is dropped
        carried = list(n.inputs[2:])
        if len(body.outputs) != 1 + len(carried) or len(n.outputs) != len(carried):
            return  # scan outputs would be empty tensors of a shape we would have to build
        if any(v is None for v in carried):
            return
        g = n.graph
        assert g is not None
        for old, new in zip(n.outputs, carried):
            assert new is not None
            old.replace_all_uses_with(new)
        g.remove(n)
        self.stats["loops_zero_trip"] += 1
