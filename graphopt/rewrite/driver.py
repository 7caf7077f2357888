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
    for n in b.created:  # which rule built a node: the HTML report's pictures name it
        n.meta = {**n.meta, "rule": rule.name} if n.meta else {"rule": rule.name}
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
        ds = [pattern_depth(x) for x in p.inputs if x is not None]
        return None if any(d is None for d in ds) else 1 + max(ds, default=0)  # type: ignore[type-var]
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


def pattern_ops(p: Any) -> set[str] | None:
    """The op types of the nodes a pattern can match (Constant for a constant), or None when unknown."""
    if isinstance(p, Pat):
        out = set(p.ops)
        for x in p.inputs:
            if x is not None:
                sub = pattern_ops(x)
                if sub is None:
                    return None
                out |= sub
        return out
    if isinstance(p, Const):
        return {"Constant"}
    if isinstance(p, Var):
        return set()
    if isinstance(p, Opt):
        return pattern_ops(p.pattern)
    if isinstance(p, AnyOf):
        out = set()
        for a in p.alternatives:
            sub = pattern_ops(a)
            if sub is None:
                return None
            out |= sub
        return out
    return None


def _producer_needs(rule: Rule) -> set[str] | None:
    """Op types of which the root of a match needs at least one among its inputs' producers (the union over the
    root's input positions that must be a node's output), or None when a match may need none."""
    pats = rule.pattern.alternatives if isinstance(rule.pattern, AnyOf) else (rule.pattern,)
    out: set[str] = set()
    for p in pats:
        if not isinstance(p, Pat):
            return None
        ops: set[str] = set()
        for x in p.inputs:
            if isinstance(x, Pat):
                ops |= set(x.ops)
            elif isinstance(x, AnyOf) and all(isinstance(a, Pat) for a in x.alternatives):
                for a in x.alternatives:
                    ops |= set(a.ops)  # type: ignore[union-attr]
        if not ops:
            return None
        out |= ops
    return out


def rule_depth(rule: Rule) -> int | None:
    """How many levels above its root a rule looks: its pattern's depth, or the ``depth`` a rule with its own
    matcher declares; None when unknown."""
    d = getattr(rule, "depth", None)
    if d is not None:
        return int(d)
    if type(rule).match is not Rule.match or rule.pattern is None:
        return None
    return pattern_depth(rule.pattern)


# Checks read more than their pattern: the producer of a leaf (its inferred shape, its constness) and the chains
# a constant can be computed through without being stored (ConstantOfShape, then Expand, Identity, Unsqueeze,
# Squeeze, Reshape: rewrite/rules/known.py). A change there reaches the readers of the chain's end.
_TRACED_OPS = frozenset({"ConstantOfShape", "Expand", "Identity", "Unsqueeze", "Squeeze", "Reshape"})
_TRACED_DEPTH = 32


def change_seeds(changes: Any, rules: Sequence[Rule]) -> dict[int, dict[Node, None] | None]:
    """Per rule (by position in `rules`), the nodes it may newly match at after `changes` (a
    :class:`~graphopt.jit.manager.Changes` that is not full), or None for a rule to try everywhere (a matcher of
    unknown reach).

    A rule rooted at a node matches nodes of its pattern's op types at most its pattern's depth above it, and its
    checks read one level beyond (a leaf's producer) and along constant chains (see ``_TRACED_OPS``). So from every
    changed node: down the constant chains it starts, one more level down, and then down through nodes of the
    rule's op types, as deep as its pattern goes; the rule's root op types found on the way are its seeds. All rules
    walk at once (a bit per rule)."""
    out: dict[int, dict[Node, None] | None] = {}
    op_mask: dict[str, int] = {}
    root_mask: dict[str, int] = {}
    by_depth: dict[int, int] = {}  # depth -> rules of that depth
    for i, r in enumerate(rules):
        depth = rule_depth(r)
        ops = pattern_ops(r.pattern) if depth is not None and r.pattern is not None and \
            type(r).match is Rule.match else None
        if depth is None or ops is None:
            out[i] = None
            continue
        out[i] = {}
        bit = 1 << i
        for op in ops:
            op_mask[op] = op_mask.get(op, 0) | bit
        for op in r.root_ops():
            root_mask[op] = root_mask.get(op, 0) | bit
        d = max(depth, 1)
        by_depth[d] = by_depth.get(d, 0) | bit
    if not by_depth:
        return out
    changed = changes.alive()
    near: dict[Node, None] = dict.fromkeys(changed)
    work = [(n, 0) for n in changed if n.op_type in _TRACED_OPS]
    while work:
        n, d = work.pop()
        for v in n._outputs:
            for u, _ in v._uses:
                if u not in near:
                    near[u] = None
                    if u.op_type in _TRACED_OPS and d + 1 < _TRACED_DEPTH:
                        work.append((u, d + 1))
    frontier: dict[Node, int] = {}
    get = op_mask.get
    for n in near:
        m = get(n.op_type, 0)
        if m:
            frontier[n] = frontier.get(n, 0) | m
        for v in n._outputs:
            for u, _ in v._uses:
                mu = get(u.op_type, 0)
                if mu:
                    frontier[u] = frontier.get(u, 0) | mu
    seen: dict[Node, int] = {}
    for k in range(max(by_depth)):
        active = 0
        for d, bits in by_depth.items():
            if d > k:
                active |= bits
        nxt: dict[Node, int] = {}
        for n, m in frontier.items():
            prev = seen.get(n, 0)
            m &= active & ~prev
            if not m:
                continue
            seen[n] = prev | m
            hit = m & root_mask.get(n.op_type, 0)
            while hit:
                low = hit & -hit
                out[low.bit_length() - 1][n] = None  # type: ignore[index]
                hit ^= low
            for v in n._outputs:
                for u, _ in v._uses:
                    mu = m & get(u.op_type, 0)
                    if mu:
                        nxt[u] = nxt.get(u, 0) | mu
        if not nxt:
            break
        frontier = nxt
    return out


def rewrite_model(model: Model, rules: Sequence[Rule], *, jit: JitContext | None = None,
                  max_rewrites: int = DEFAULT_MAX_REWRITES, observer: Observer | None = None,
                  dry_run: bool = False, seeds: dict[int, dict[Node, None] | None] | None = None) -> DriverStats:
    """Apply `rules` to the whole model (subgraphs included) with a worklist, until nothing fires.

    With `dry_run`, every candidate is matched and checked (and reported to `observer`) but nothing changes. With
    `seeds` (see :func:`change_seeds`: per rule position, the nodes to try it at, or None for everywhere), the
    worklist starts from those nodes only (in graph order); what a rewrite creates or touches is tried with every
    rule, as always.
    """
    stats = DriverStats()
    ctx = RewriteContext(model, jit, want_reasons=observer is not None)
    index: dict[str, list[Rule]] = {}
    active = active_rules(model, rules, stats)
    for r in active:
        for op in r.root_ops():
            index.setdefault(op, []).append(r)
    if not index:
        return stats
    # per rule: where to try it first (None: everywhere); nodes a rewrite creates or touches get every rule
    only: dict[int, dict[Node, None]] = {}
    if seeds is not None:
        pos = {id(r): i for i, r in enumerate(rules)}
        for r in active:
            sd = seeds.get(pos.get(id(r), -1))
            if sd is not None:
                only[id(r)] = sd
    # a pattern's cheap root test, done here when no reason is wanted (a failed attempt then costs no Fail)
    quick = {id(r): r.pattern._quick for r in active
             if observer is None and r.pattern is not None and type(r).match is Rule.match}
    # per root op type: the producer op types one of its rules needs among the node's inputs (None: some rule
    # needs none), so that most nodes are passed over without trying any rule
    rule_needs: dict[int, frozenset[str]] = {}
    for r in active:
        nd = _producer_needs(r) if id(r) in quick else None
        if nd is not None:
            rule_needs[id(r)] = frozenset(nd)
    needs: dict[str, frozenset[str] | None] = {}
    for op, rs in index.items():
        acc: set[str] | None = set()
        for r in rs:
            nd = rule_needs.get(id(r))
            if nd is None:
                acc = None
                break
            acc |= nd
        needs[op] = None if acc is None else frozenset(acc)
    queue: deque[Node] = deque()
    queued: dict[Node, None] = {}
    fresh: set[Node] = set()

    def push(n: Node) -> None:
        if n not in queued and n.op_type in index:
            queued[n] = None
            queue.append(n)

    for g in model.graph.all_graphs():
        for n in g:
            if n.op_type not in index:
                continue
            if only and all(id(r) in only and n not in only[id(r)] for r in index[n.op_type]):
                continue
            push(n)
    while queue:
        node = queue.popleft()
        del queued[node]
        if not node.is_alive:
            continue
        stats.visited += 1
        prods = {v.producer.op_type for v in node._inputs if v is not None and v.producer is not None}
        nd = needs.get(node.op_type)
        if nd is not None and prods.isdisjoint(nd):
            continue  # no rule rooted here can match: none of the producers they need feeds this node
        anew = node in fresh
        for rule in index.get(node.op_type, ()):
            rid = id(rule)
            if not anew and rid in only and node not in only[rid]:
                continue
            rn = rule_needs.get(rid)
            if rn is not None and prods.isdisjoint(rn):
                stats.attempts += 1
                continue
            q = quick.get(rid)
            if q is not None and not q(node):
                stats.attempts += 1
                continue
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
                fresh.add(n)
                push(n)
            for v in touched:
                for u in v.consumers():
                    stats.requeued += 1
                    fresh.add(u)
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
