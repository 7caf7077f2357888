"""The rewrite driver: applies rules over a worklist until none fires (or a cap is reached).

Guarantees:

* The worklist is seeded once with every node (of every graph, subgraphs included) whose op type roots some
  active rule, in graph order; after a rewrite it receives the new nodes, the readers of the replaced values,
  and the readers of the values the removed nodes used to read (a node whose pattern was blocked by a shared
  intermediate may match now). No whole-graph sweep happens after a change.
* A match is rewritten only when it is checked first, all read-only: the pattern, then the driver's own checks
  (no intermediate value of the match is read outside it or is a graph output), then the rule's ``check``.
  Only then does the graph change: the replacement is built before the root, the root's outputs are redirected
  (graph outputs keep their names), the matched nodes that became dead are removed.
* Rules outside the model's opset range are skipped as a whole; the reason is kept for ``explain``.
* Every rewrite is counted; at ``max_rewrites`` the driver stops, logs a warning and says so in its stats.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..ir.builder import Builder
from ..ir.core import Model, Node, Value
from .pattern import AnyOf, Const, Fail, Match, Opt, Pat, Var, describe, describe_value
from .rule import RewriteContext, Rule

if TYPE_CHECKING:
    from ..jit.context import JitContext

log = logging.getLogger(__name__)

DEFAULT_MAX_REWRITES = 1_000_000
# a value with more readers than this never becomes a matchable intermediate by losing one (see apply_match)
MAX_REQUEUE_FANOUT = 4

# observer(rule, node, outcome): outcome is the Match that was rewritten or the Fail that stopped it
Observer = Callable[[Rule, Node, "Match | Fail"], None]


@dataclass
class DriverStats:
    """What one driver run did."""

    rewrites: int = 0
    fired: dict[str, int] = field(default_factory=dict)
    attempts: int = 0
    visited: int = 0
    requeued: int = 0  # nodes offered to the worklist after rewrites (duplicates included): the requeue work
    cap_hit: bool = False
    skipped_rules: dict[str, str] = field(default_factory=dict)  # rule name -> why it cannot apply to the model


def escape_fail(m: Match) -> Fail | None:
    """The driver's own precondition: no intermediate value of the match is read outside it or is a graph output.

    Intermediates are the outputs of matched nodes other than the root; the root's outputs are replaced.
    """
    members = m.matched
    for n in members:
        if n is m.root:
            continue
        for v in n.outputs:
            if v.is_graph_output():
                return Fail(f"intermediate {describe_value(v)} ({describe(n)}) is a graph output", n)
            for u, _ in v.uses():
                if u not in members:
                    return Fail(f"intermediate {describe_value(v)} ({describe(n)}) is also read by {describe(u)}",
                                u)
    return None


def try_rule(rule: Rule, node: Node, ctx: RewriteContext) -> Match | Fail:
    """Everything before the first mutation: pattern, escape check, the rule's check. Read-only."""
    def accept(m: Match) -> Fail | None:
        f = escape_fail(m)
        if f is not None:
            return f
        return rule.check(m, ctx)

    try:
        ctx_jit = ctx.jit
        if ctx_jit is not None:
            ctx_jit.current_node = node
            ctx_jit.current_step = f"matching rule {rule.name}"
        return rule.match(node, ctx, accept)
    finally:
        if ctx.jit is not None:
            ctx.jit.current_step = None


def apply_match(rule: Rule, m: Match, ctx: RewriteContext) -> tuple[list[Node], list[Value]]:
    """Splice the rule's replacement in for a checked match. Returns (new nodes, values whose readers changed)."""
    model = ctx.model
    root = m.root
    graph = root.graph
    assert graph is not None
    if ctx.jit is not None:
        ctx.jit.current_node = root
        ctx.jit.current_step = f"rewriting with rule {rule.name}"
    # opset imports the replacement needs (e.g. com.microsoft), added once
    if rule.emits:
        need = {d: v for d, v in rule.emits.items() if model.opset(d) is None}
        if need:
            model.set_opset_imports({**model.opset_imports, **need})
    b = Builder(graph, before=root, name_hint=rule.name)
    new_outs = rule.rewrite(m, b)
    olds = root.outputs
    if len(new_outs) > len(olds):
        raise RuntimeError(f"rule {rule.name!r} returned {len(new_outs)} values for {len(olds)} root outputs")
    # inputs of the matched nodes, before they go: their other readers may match now
    leaves: dict[Value, None] = {}
    for n in m.matched:
        for v in n.inputs:
            if v is not None:
                leaves[v] = None
    for old, new in zip(olds, new_outs):
        if new is old:
            continue
        if new.type is None and old.type is not None:
            new.type = old.type
        old.replace_all_uses_with(new)
    # remove what became dead: matched nodes whose outputs are read only by other dead matched nodes
    dead = dict(m.matched)
    changed = True
    while changed:
        changed = False
        for n in list(dead):
            if any(v.is_graph_output() or any(u not in dead for u, _ in v.uses()) for v in n.outputs):
                del dead[n]
                changed = True
    if dead:
        graph.remove(list(dead))
    # Readers of a leaf that lost a reader may match now, but only if the leaf has few readers left: a pattern
    # covers every reader of its intermediates, and no pattern covers more than a handful. Skipping wide fan-outs
    # (a shared constant read by every layer) keeps the work per rewrite bounded instead of O(readers).
    touched = list(new_outs) + [v for v in leaves if 0 < v.num_uses() <= MAX_REQUEUE_FANOUT]
    if ctx.jit is not None:
        ctx.jit.current_step = None
    return list(b.created), touched


def active_rules(model: Model, rules: Sequence[Rule], stats: DriverStats | None = None) -> list[Rule]:
    """The rules whose opset range covers the model (the others are recorded in `stats.skipped_rules`)."""
    out = []
    for r in rules:
        f = r.opset_fail(model)
        if f is None:
            out.append(r)
        elif stats is not None:
            stats.skipped_rules[r.name] = f.reason
    return out


def pattern_depth(p: Any) -> int | None:
    """How many node levels above the root a pattern reaches (a constant may be a Constant node: one level), or
    None for a pattern kind this does not know."""
    if isinstance(p, Pat):
        return 1 + max((pattern_depth(x) or 0 for x in p.inputs if x is not None), default=0) if all(
            x is None or pattern_depth(x) is not None for x in p.inputs) else None
    if isinstance(p, Const):
        return 1
    if isinstance(p, Var):
        return 0
    if isinstance(p, Opt):
        return pattern_depth(p.pattern)
    if isinstance(p, AnyOf):
        ds = [pattern_depth(a) for a in p.alternatives]
        return None if any(d is None for d in ds) else max(ds)  # type: ignore[type-var]
    return None


def rule_depth(rule: Rule) -> int | None:
    """How many levels above its root a rule looks: its pattern's depth, or the ``depth`` a rule with its own
    matcher declares; None when unknown."""
    d = getattr(rule, "depth", None)
    if d is not None:
        return int(d)
    if type(rule).match is not Rule.match or rule.pattern is None:
        return None
    return pattern_depth(rule.pattern)


# checks may also read the producers of a pattern's leaves (a weight's ConstantOfShape, a shape's source)
_CHECK_MARGIN = 2


def change_seeds(changes: Any, rules: Sequence[Rule]) -> dict[Node, None] | None:
    """The nodes a rule may newly match at after `changes` (a :class:`~graphopt.jit.manager.Changes` that is not
    full): every changed node and the nodes below it, as many levels down as the deepest rule looks up (plus a
    margin for checks). None when some rule's depth is unknown (then every node is a candidate)."""
    depth = 0
    for r in rules:
        d = rule_depth(r)
        if d is None:
            return None
        depth = max(depth, d)
    depth += _CHECK_MARGIN
    out: dict[Node, None] = {}
    level: list[Node] = []
    for n in changes.alive():
        if n not in out:
            out[n] = None
            level.append(n)
    for _ in range(depth):
        nxt: list[Node] = []
        for n in level:
            for v in n._outputs:
                for u, _ in v._uses:
                    if u not in out:
                        out[u] = None
                        nxt.append(u)
        if not nxt:
            break
        level = nxt
    return out


def rewrite_model(model: Model, rules: Sequence[Rule], *, jit: JitContext | None = None,
                  max_rewrites: int = DEFAULT_MAX_REWRITES, observer: Observer | None = None,
                  dry_run: bool = False, seeds: dict[Node, None] | None = None) -> DriverStats:
    """Apply `rules` to the whole model (subgraphs included) with a worklist, until nothing fires.

    With `dry_run`, every candidate is matched and checked (and reported to `observer`) but nothing changes. With
    `seeds`, the worklist starts from those nodes only (in graph order), not from every node.
    """
    stats = DriverStats()
    ctx = RewriteContext(model, jit, want_reasons=observer is not None)
    index: dict[str, list[Rule]] = {}
    for r in active_rules(model, rules, stats):
        for op in r.root_ops():
            index.setdefault(op, []).append(r)
    if not index:
        return stats
    queue: deque[Node] = deque()
    queued: dict[Node, None] = {}

    def push(n: Node) -> None:
        if n not in queued and n.op_type in index:
            queued[n] = None
            queue.append(n)

    for g in model.graph.all_graphs():
        for n in g:
            if seeds is None or n in seeds:
                push(n)
    while queue:
        node = queue.popleft()
        del queued[node]
        if not node.is_alive:
            continue
        stats.visited += 1
        for rule in index.get(node.op_type, ()):
            stats.attempts += 1
            res = try_rule(rule, node, ctx)
            if isinstance(res, Fail):
                if observer is not None:
                    observer(rule, node, res)
                continue
            if dry_run:
                if observer is not None:
                    observer(rule, node, res)
                continue
            if stats.rewrites >= max_rewrites:
                stats.cap_hit = True
                log.warning("fuse: stopped after %d rewrites (max_rewrites); raise fuse.max-rewrites to go on",
                            stats.rewrites)
                queue.clear()
                break
            if observer is not None:
                observer(rule, node, res)  # before the node leaves the graph
            log.debug("rule %s fires at %s", rule.name, describe(node))
            created, touched = apply_match(rule, res, ctx)
            stats.rewrites += 1
            stats.fired[rule.name] = stats.fired.get(rule.name, 0) + 1
            for n in created:
                push(n)
            for v in touched:
                for u in v.consumers():
                    stats.requeued += 1
                    push(u)
            break  # the node is gone (or replaced); its new form is queued
    return stats


# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Explanation:
    """For one candidate root node: whether the rule fired there, or why not."""

    node: str
    op_type: str
    graph: str
    fired: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "op_type": self.op_type, "graph": self.graph, "fired": self.fired,
                "reason": self.reason}


@dataclass
class ExplainReport:
    rule: str
    opset_reason: str | None  # set when the rule cannot apply to this model at all
    candidates: list[Explanation]
    stats: DriverStats

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "skipped": self.opset_reason, "fired": sum(c.fired for c in self.candidates),
                "candidates": [c.to_dict() for c in self.candidates],
                "rewrites": self.stats.rewrites, "fired_by_rule": dict(self.stats.fired)}


def explain(model: Model, rule: Rule, others: Sequence[Rule] = (), *, jit: JitContext | None = None,
            max_rewrites: int = DEFAULT_MAX_REWRITES) -> ExplainReport:
    """Run `rule` (with `others`, as the fuse pass would) on `model`, which is changed, and record, for every node
    the rule was tried at, whether it fired there or the reason it did not (the last attempt counts)."""
    outcomes: dict[Node, Explanation] = {}

    def obs(r: Rule, n: Node, res: Match | Fail) -> None:
        if r is not rule:
            return
        g = n.graph
        gname = (g.name if g is not None else "") or "?"
        name = n.name or (n.outputs[0].name if n.outputs else "") or "?"
        # first-attempt order, last outcome (a node may be retried after a neighbouring rewrite)
        if isinstance(res, Fail):
            outcomes[n] = Explanation(name, n.op_type, gname, False, res.reason)
        else:
            outcomes[n] = Explanation(name, n.op_type, gname, True, "fired")

    # the fuse pass's order (a rule earlier in the registry wins at a node); the rule joins at the end if absent
    rules = list(others) if any(r is rule for r in others) else [*others, rule]
    stats = rewrite_model(model, rules, jit=jit, max_rewrites=max_rewrites, observer=obs)
    f = rule.opset_fail(model)
    return ExplainReport(rule.name, f.reason if f is not None else None, list(outcomes.values()), stats)
