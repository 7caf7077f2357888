"""Simplify control flow: If and Loop nodes whose outcome is known before run time.

* An ``If`` whose condition is a constant (a non-overridable initializer, or the output of a ``Constant`` node) is
  replaced by the branch it takes: the branch's nodes move into the enclosing graph just before the If, its
  initializers become initializers of the main graph, each If output is replaced by the matching branch output
  (which may be an outer value), and the If goes. A branch value whose name is used elsewhere in the model is
  renamed on the way out, so that names stay unique once it joins the enclosing scope.
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

from ..ir.builder import add_constant
from ..ir.constants import constant_value
from ..ir.core import Graph, Model, Node, Value
from .base import Pass, PassResult, option
from .cse import FunctionPurity, KeyMaker
from .dce import attached

log = logging.getLogger(__name__)


def const_scalar(v: Value | None) -> Any:
    """The single element of a constant value (initializer that cannot be overridden, or Constant node output),
    as a Python scalar; None when `v` is not such a constant of exactly one element."""
    t = constant_value(v)
    if t is None or t.is_sparse or t.size != 1:
        return None
    return t.numpy().reshape(-1)[0].item()


@dataclass(frozen=True)
class SimplifyControlFlow(Pass):
    """Inlines If nodes with a constant condition or identical branches; removes Loops that run zero times."""

    name: ClassVar[str] = "simplify-control-flow"
    kind: ClassVar[str] = "folding"
    summary: ClassVar[str] = ("inline If nodes with a constant condition or identical branches; drop loops that "
                              "run zero times")
    presets: ClassVar[frozenset[str]] = frozenset({"O2", "O3"})

    max_tensor_bytes: int = option(64 << 20, "when comparing two If branches, tensors larger than this are not "
                                             "hashed (the branches count as different); -1: no limit")

    def run(self, model: Model, ctx: Any) -> PassResult:
        return _Simplifier(model, ctx, KeyMaker(FunctionPurity(model), int(self.max_tensor_bytes))).run()


class _Simplifier:
    def __init__(self, model: Model, ctx: Any, keys: KeyMaker):
        self.model = model
        self.ctx = ctx
        self.keys = keys
        self._names: collections.Counter[str] | None = None
        self.stats = {"ifs_constant_cond": 0, "ifs_identical_branches": 0, "loops_zero_trip": 0,
                      "nodes_moved": 0, "values_renamed": 0}

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
