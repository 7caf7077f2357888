"""The symbol table: symbols seeded from the model, unification, symbolic shape inference and annotation.

:class:`SymbolTable` (one per :class:`~graphopt.jit.context.JitContext`) seeds symbols from the model's inputs and
then infers on demand: asking for the shape, shape value or dtype of a value runs the per-op rules of :mod:`.ops`
over what that value depends on (each node once), propagating shapes and the values of small integer "shape
tensors" through the shape-arithmetic ops and unifying symbols the graph forces equal (a union-find, recorded for
``graphopt inspect``). :meth:`SymbolTable.infer` does the same for every node at once.

The table keeps its facts current as passes edit the model: the model's :class:`~graphopt.ir.core.ChangeLog` names
the nodes that changed, and before the next answer the table recomputes those nodes and, only where a result
differs, their readers. Nothing is recomputed for the rest of the graph, and nothing is serialized: for an op
without a rule, or where a rule leaves a dim open, the model's declared type fills in, then onnx's inference of
that one node (its schema, or the model-local function it calls) from the input types the table knows; weights
are never copied, hashed or serialized for it.

What the table claims holds for every binding of the symbols under which the model runs without error; the
inference never assumes that a dim that could be 1 broadcasts like a dim that is not, nor that two unknown dims are
equal. One knowing approximation, shared with onnx's own data propagation: a Reshape target entry read from a
shape tensor is taken as the output dim (at runtime an entry of 0 would copy the input dim instead). Passes keep
each surviving value's meaning, so a fact about a value stays true after an edit elsewhere; recomputation only
makes it more precise.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ...ir.core import ChangeLog, Graph, Model, Node, Value
from ...ir.shapes import TensorType
from .expr import ONE, ShapeSymbol, SymbolicShape, SymExpr, UNKNOWN_RANK
from .ops._util import _BOOL, _INT64, _VALUE_DT

log = logging.getLogger("graphopt.jit.symbols")

# ================================================================================================================
# The symbol table
# ================================================================================================================
_ANON = re.compile(r"unk__\d+$")
_OURS = re.compile(r"unk_\d+$")
# Exceptions a rule may raise on a malformed node; the node's outputs then fall back to the declared types.
_RULE_ERRORS = (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, OverflowError, AttributeError)
# Constant inputs up to this many elements are handed to onnx's per-node inference as data (Reshape targets,
# Resize sizes...); bigger ones (weights) never are.
_ONNX_DATA_ELEMENTS = 1024
_MISSING: Any = object()

Out = tuple  # (dims: list[SymExpr | None] | None, value: tuple[SymExpr, ...] | None, dtype: int | None)


class SymbolTable:
    """Per-context shape symbols and what symbolic inference knows about the values of one model.

    ``seed(model)`` binds the table to `model` and makes the symbols of its inputs; from then on queries are
    answered on demand (``shape_of``, ``value_of`` (the symbolic contents of a small integer shape tensor),
    ``dtype_of``, keyed by :class:`Value` object), each computing only what the asked value depends on, and
    current after any edit of the model. ``infer(model)`` seeds and infers every value at once (for reports);
    ``ensure(model)`` seeds when the table is bound to another model, else brings it up to date. Results are in
    canonical form under the symbols unified so far.
    """

    def __init__(self, *, max_value_len: int = 1024,
                 rules: Mapping[str, Callable[[SymbolTable, Node], list[Out] | None]] | None = None) -> None:
        from .ops import builtin_shape_rules

        self.max_value_len = max_value_len
        # op type -> shape rule (see .ops); a table owns its mapping, so a caller may add or replace rules
        self.rules: dict[str, Callable[[SymbolTable, Node], list[Out] | None]] = (
            dict(rules) if rules is not None else builtin_shape_rules())
        self._model: Model | None = None
        self._log: ChangeLog | None = None
        # while True, answers do not first catch up with the model's edits: what the table says stays true of every
        # value passes keep, only not as precise as it could be (the pass manager defers while a pass runs, and
        # catches up once after it)
        self.defer_sync = False
        self._reset()

    def _reset(self) -> None:
        self._symbols: dict[str, ShapeSymbol] = {}
        self._order: dict[str, int] = {}
        self._reserved: set[str] = set()
        self._anon: dict[str, SymExpr] = {}
        self._fresh = 0
        self._input_syms: list[str] = []
        self._input_syms_set: set[str] = set()
        self._parent: dict[str, str] = {}
        self._const_of: dict[str, int] = {}
        self._redirected: set[str] = set()
        self._canon_cache: dict[SymExpr, SymExpr] = {}
        self._canon_token = object()  # changes with every unification: canonical forms cached on shapes expire
        self._unions: list[tuple[str, str, str]] = []
        self._conflicts: list[str] = []
        self._shape: dict[Value, SymbolicShape] = {}
        self._val: dict[Value, tuple[SymExpr, ...]] = {}
        self._cval: dict[Value, tuple[Any, tuple[SymExpr, ...] | None]] = {}  # initializer -> (tensor, value)
        self._csrc: dict[Value, Any] = {}  # initializer -> the tensor its entries were read from
        self._dtype: dict[Value, int] = {}
        self._shapes: dict[tuple, SymbolicShape] = {}  # one object per distinct shape (values share most shapes)
        self._const_shapes: dict[tuple[int, ...], SymbolicShape] = {}
        self._fresh_names: set[str] = set()
        self._fresh_at: dict[tuple[Value, int], SymExpr] = {}  # (value, dim) -> its fresh symbol, kept on recompute
        self._done: set[Node] = set()  # main-graph nodes whose outputs (and subgraphs' values) are current
        self._gray: set[Node] = set()  # nodes being computed (their inputs first): a cycle stops here
        self._stale: list[Node] = []  # done nodes whose inputs changed, to recompute before the next answer
        self._changed_facts: dict[Node, None] = {}  # nodes whose outputs' facts changed when inferred again
        self._onnx_cache: dict[Node, Any] = {}
        self._onnx_nodes = 0
        self._functions: dict[tuple[str, str], Any] | None = None
        self._computed = 0
        self._recomputed = 0
        self._eager = False
        self._opset = 21
        self._stats: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------------------------
    # public API
    # ------------------------------------------------------------------------------------------------------------
    def seed(self, model: Model) -> None:
        """Forget everything and bind the table to `model`; make symbols for the main graph's inputs: dim_params
        become symbols (one per name), unknown dims get fresh ``unk_N`` symbols in input order. Nothing else is
        inferred until asked for."""
        self._reset()
        self._attach(model)
        self._opset = model.opset("") or 21
        for g in model.graph.all_graphs():
            for v in (*g._inputs, *g._outputs):
                t = v.type
                if isinstance(t, TensorType) and t.shape:
                    for d in t.shape:
                        if isinstance(d, str):
                            self._reserved.add(d)
        for v in model.graph._inputs:
            self._seed_value(v, f"input {v.name!r}", "input", parse=False)
        self._input_syms = list(self._symbols)
        self._input_syms_set = set(self._input_syms)

    def infer(self, model: Model) -> dict[str, Any]:
        """Seed, then infer every value of the model (subgraphs included) at once; returns details for the
        report (counts, timings). Never raises for an op it does not know."""
        t0 = time.perf_counter()
        self.seed(model)
        t1 = time.perf_counter()
        for n in model.graph:
            if n not in self._done:
                self._pull(n)
        t2 = time.perf_counter()
        self._eager = True
        targets = self._shape_targets(model)
        total = len(targets)
        shaped = sum(1 for v in targets if self._shape.get(v, UNKNOWN_RANK).dims is not None)
        nvals = sum(1 for v in self._val if v.producer is not None)
        self._stats = {"values": total, "shaped": shaped, "shape_values": nvals}
        fresh = sum(1 for s in self._symbols.values() if s.kind == "fresh")
        return {"symbols": len(self._symbols), "input_symbols": list(self._input_syms), "fresh_symbols": fresh,
                "unifications": len(self._unions), "conflicts": list(self._conflicts), "values": total,
                "shaped": shaped, "shape_values": nvals, "onnx_inference": "per node",
                "onnx_nodes": self._onnx_nodes, "seconds": {"seed": round(t1 - t0, 6), "walk": round(t2 - t1, 6)}}

    def ensure(self, model: Model) -> None:
        """Bind to `model` (seeding) when the table holds another model or none; else bring what it knows up to
        date with the model's edits (only the changed nodes and, where results differ, their readers)."""
        if self._model is not model:
            self.seed(model)
        else:
            deferred, self.defer_sync = self.defer_sync, False
            try:
                self._sync()
            finally:
                self.defer_sync = deferred

    def complete(self, model: Model) -> None:
        """:meth:`ensure`, then infer every value not inferred yet, so that every answer holds the closure of all
        the unifications the graph forces (as after :meth:`infer`), not only of those met so far."""
        self.ensure(model)
        done = self._done
        for n in model.graph:
            if n not in done:
                self._pull(n)

    @property
    def epoch(self) -> int:
        """Grows with every unification: an answer given before may be more precise now anywhere (canonical forms
        changed), not only around the nodes that changed."""
        return len(self._unions)

    def take_changed(self) -> list[Node]:
        """The nodes whose inferred facts changed (inferred again after an edit, with another result) since the
        last call."""
        out = list(self._changed_facts)
        self._changed_facts.clear()
        return out

    def shape_of(self, value: Value) -> SymbolicShape | None:
        """The symbolic shape of `value`, or None when the table knows nothing of it (a value of another model)."""
        self._sync()
        self._need(value)
        sh = self._shape.get(value)
        if sh is None or (value._const is not None and self._csrc.get(value) is not value._const):
            if value._const is None:
                return None
            sh = self._shape_unwalked(value)
        if sh.dims is None or not self._redirected:
            return sh
        return self._canonical(sh)[1]

    def value_of(self, value: Value) -> list[SymExpr] | None:
        """The symbolic contents of a scalar or 1-D integer tensor (a shape tensor), or None when unknown."""
        self._sync()
        self._need(value)
        r = self._v(value)
        return None if r is None else list(r)

    def has_value(self, value: Value) -> bool:
        """Cheap: whether :meth:`value_of` may know `value`'s contents (a node output whose value was inferred, or
        an initializer). For loops over many values after :meth:`ensure`; False is definite only then."""
        return value in self._val or value.producer is None

    def dtype_of(self, value: Value) -> int | None:
        self._sync()
        self._need(value)
        return self._dt(value)

    def symbol(self, name: str) -> ShapeSymbol | None:
        return self._symbols.get(name)

    def symbols(self) -> list[ShapeSymbol]:
        """Every symbol, in creation order."""
        return list(self._symbols.values())

    def canon(self, e: SymExpr) -> SymExpr:
        """`e` with every symbol replaced by its class representative (or the constant its class equals)."""
        if not self._redirected or e.c is not None:
            return e
        r = self._canon_cache.get(e)
        if r is None:
            r = e if e.free_symbols.isdisjoint(self._redirected) else e.subs(self._repl)
            self._canon_cache[e] = r
        return r

    def equal(self, a: SymExpr, b: SymExpr) -> bool:
        """True when `a` and `b` are equal for every binding (under the unifications made)."""
        return self.canon(a) == self.canon(b)

    def unify(self, a: SymExpr, b: SymExpr, reason: str = "") -> bool:
        """Record that the graph forces `a == b` (symbol~symbol, symbol~constant, or c*s~c*t / c*s~k forms).
        Returns False when the pair has another form (nothing recorded) or contradicts what is known."""
        return self._unify(a, b, reason)

    def unifications(self) -> list[tuple[str, str, str]]:
        """(a, b, reason) for every unification, in the order made."""
        return list(self._unions)

    def describe(self) -> str:
        """One line for the init log."""
        names = self._input_syms
        shown = ", ".join(names[:8]) + (f", ... {len(names) - 8} more" if len(names) > 8 else "")
        s = f"{len(names)} symbol{'s' if len(names) != 1 else ''} from inputs" + (f" ({shown})" if names else "")
        st = self._stats
        if st:
            s += f"; {st['shaped']} of {st['values']} values shaped, {st['shape_values']} shape values known"
        elif self._model is not None:
            s += "; shapes inferred on demand"
        if self._unions:
            s += f", {len(self._unions)} unification{'s' if len(self._unions) != 1 else ''}"
        return s

    def summary(self) -> dict[str, Any]:
        """Plain data for ``graphopt inspect`` and the report: the symbols (model and input symbols, and fresh
        ones only when they unified with something), with their origin and the names they unified with, and what
        was inferred (every value after :meth:`infer`; what was asked for otherwise)."""
        self._sync()
        classes: dict[str, list[str]] = {}
        for name in self._symbols:
            classes.setdefault(self._find(name), []).append(name)
        out = []
        hidden = 0
        for name, sym in self._symbols.items():
            root = self._find(name)
            others = [o for o in classes[root] if o != name]
            c = self._const_of.get(root)
            if c is not None:
                others.append(str(c))
            if sym.kind == "fresh" and not others and name not in self._input_syms:
                hidden += 1
                continue
            out.append({"name": name, "origin": sym.origin, "kind": sym.kind, "unified_with": others})
        return {"symbols": out, "fresh_symbols_not_shown": hidden,
                "unifications": [{"a": a, "b": b, "reason": r} for a, b, r in self._unions],
                "conflicts": list(self._conflicts), **self._stats, "inference": "eager" if self._eager else
                "on demand", "nodes_inferred": self._computed, "nodes_reinferred": self._recomputed,
                "onnx_inference": "per node", "onnx_nodes": self._onnx_nodes}

    def annotate(self, model: Model) -> int:
        """Write the inferred types into the model's value_info (every graph), symbolic dims named by their
        canonical rendering (``batch*seq``, ``(seq+1)//2``). Graph inputs, outputs and initializers keep their
        declarations. Infers every value first. Returns how many values it declared or retyped."""
        self.ensure(model)
        for n in model.graph:
            if n not in self._done:
                self._pull(n)
        n = 0
        for g in model.graph.all_graphs():
            for node in g:
                for v in node._outputs:
                    if not v._name or v._out_graphs:
                        continue
                    dt = self._dtype.get(v)
                    sh = self._shape.get(v)
                    if dt is None or sh is None or not dt:
                        continue
                    if sh.dims is None:
                        shape = None
                    else:
                        dl: list[Any] = []
                        for d in sh.dims:
                            d = self.canon(d)
                            if d.c is not None:
                                dl.append(d.c if d.c >= 0 else None)
                            else:
                                dl.append(str(d))
                        shape = tuple(dl)
                    t = TensorType(dt, shape)
                    touched = False
                    if v.type != t:
                        v.type = t
                        touched = True
                    if v not in g._value_info:
                        g.declare(v)
                        touched = True
                    n += touched
        # declaring what the table knows changes no value's meaning: nothing to recompute for it
        if self._log is not None:
            self._log.nodes.clear()
        return n

    # ------------------------------------------------------------------------------------------------------------
    # symbols and union-find
    # ------------------------------------------------------------------------------------------------------------
    def _register(self, name: str, origin: str, kind: str) -> SymExpr:
        if name not in self._symbols:
            self._symbols[name] = ShapeSymbol(name, None, origin, kind)
            self._order[name] = len(self._order)
        return SymExpr.symbol(name)

    def _fresh_sym(self, origin: str) -> SymExpr:
        while True:
            name = f"unk_{self._fresh}"
            self._fresh += 1
            if name not in self._symbols and name not in self._reserved:
                self._fresh_names.add(name)
                return self._register(name, origin, "fresh")

    def _from_param(self, s: str, origin: str, parse: bool = True) -> SymExpr:
        sym = self._symbols.get(s)
        if sym is not None and (sym.kind != "fresh" or s in self._input_syms_set):
            return SymExpr.symbol(s)
        if (_ANON.match(s) or _OURS.match(s)) and s not in self._reserved:
            # A name onnx's inference made up for an unknown dim (unk__N), or one of our fresh names written by
            # an earlier run's annotate() (unk_N) that may now stand for another dim: one new fresh symbol per
            # name, so that equal names stay equal without aliasing this run's symbols. (The fresh names of
            # input dims are the same in every run, since seeding comes first: those keep their meaning.)
            e = self._anon.get(s)
            if e is None:
                e = self._anon[s] = self._fresh_sym(origin)
            return e
        if parse and any(ch in s for ch in "+-*/%()"):
            try:
                e = SymExpr.parse(s)
            except ValueError:
                e = None
            if e is not None and str(e) == s:  # our own rendering (a model graphopt annotated before)
                for name in sorted(e.free_symbols):
                    self._register(name, origin, "named")
                return e
        return self._register(s, origin, "named")

    def _find(self, name: str) -> str:
        p = self._parent
        root = name
        while root in p:
            root = p[root]
        while name != root:
            nxt = p[name]
            p[name] = root
            name = nxt
        return root

    def _repl(self, name: str) -> SymExpr | None:
        root = self._find(name)
        c = self._const_of.get(root)
        if c is not None:
            return SymExpr.const(c)
        return SymExpr.symbol(root) if root != name else None

    def _unify(self, a: SymExpr, b: SymExpr, reason: str) -> bool:
        a = self.canon(a)
        b = self.canon(b)
        if a == b:
            return True
        if a.c is not None and b.c is not None:
            self._conflict(f"{reason}: {a} != {b}")
            return False
        if a.c is not None:
            a, b = b, a
        ta = a.terms
        if len(ta) != 1 or len(ta[0][0]) != 1 or ta[0][0][0].__class__ is not str:
            return False
        ca, sa = ta[0][1], ta[0][0][0]
        if b.c is not None:
            if b.c % ca or b.c // ca < 0:
                self._conflict(f"{reason}: {a} cannot equal {b}")
                return False
            return self._bind(sa, b.c // ca, reason)
        tb = b.terms
        if len(tb) != 1 or len(tb[0][0]) != 1 or tb[0][0][0].__class__ is not str or tb[0][1] != ca:
            return False
        return self._union(sa, tb[0][0][0], reason)

    def _conflict(self, msg: str) -> None:
        if len(self._conflicts) < 100:
            self._conflicts.append(msg)
        log.debug("shape conflict: %s", msg)

    def _changed_classes(self) -> None:
        self._canon_cache.clear()
        self._canon_token = object()

    def _bind(self, s: str, val: int, reason: str) -> bool:
        r = self._find(s)
        c = self._const_of.get(r)
        if c is not None:
            if c != val:
                self._conflict(f"{reason}: {s} = {c} and {val}")
                return False
            return True
        self._const_of[r] = val
        self._redirected.add(r)
        self._unions.append((s, str(val), reason))
        self._changed_classes()
        return True

    def _union(self, x: str, y: str, reason: str) -> bool:
        rx, ry = self._find(x), self._find(y)
        if rx == ry:
            return True
        cx, cy = self._const_of.get(rx), self._const_of.get(ry)
        if cx is not None and cy is not None and cx != cy:
            self._conflict(f"{reason}: {x} = {cx} and {y} = {cy}")
            return False
        big = 1 << 62
        # the earliest symbol (model inputs first) represents the class
        if self._order.get(ry, big) < self._order.get(rx, big) or (
                self._order.get(ry, big) == self._order.get(rx, big) and ry < rx):
            rx, ry = ry, rx
        self._parent[ry] = rx
        self._redirected.add(ry)
        c = cx if cx is not None else cy
        if c is not None:
            self._const_of[rx] = c
            self._redirected.add(rx)
        self._const_of.pop(ry, None)
        self._unions.append((x, y, reason))
        self._changed_classes()
        return True

    # ------------------------------------------------------------------------------------------------------------
    # on-demand inference
    # ------------------------------------------------------------------------------------------------------------
    def _attach(self, model: Model) -> None:
        if self._model is not model or self._log is None:
            if self._model is not None and self._log is not None:
                self._model.unwatch(self._log)
            self._model = model
            self._log = model.watch()
        self._log.nodes.clear()

    def _root(self, n: Node) -> Node | None:
        """The main-graph node that is `n` or holds `n` in a subgraph, or None when `n` is not in the bound
        model (removed, or another model's)."""
        m = self._model
        if m is None:
            return None
        main = m.graph
        g = n.graph
        while g is not main:
            if g is None or n._erased:
                return None
            o = g.owner
            if o is None:
                return None
            n = o
            g = o.graph
        return None if n._erased else n

    def _need(self, v: Value) -> None:
        """Make `v`'s entries current, inferring what it depends on first (a value of another model: nothing)."""
        p = v.producer
        if p is None:
            g = v._graph
            if g is None or g.owner is None:
                return  # an input or initializer of the main graph: seeded, or read from its tensor
            p = g.owner
        elif p in self._done:
            return
        r = self._root(p)
        if r is not None and r not in self._done and r not in self._gray:
            self._pull(r)

    def _deps(self, n: Node) -> Iterator[Node]:
        """The main-graph nodes whose outputs `n` (a main-graph node) reads, its subgraphs' reads included."""
        for v in n._inputs:
            if v is not None:
                p = v.producer
                if p is not None:
                    yield p
        if n._subgraphs:
            main = n.graph
            for v in n.implicit_inputs():
                p = v.producer
                if p is not None and p.graph is main:
                    yield p

    def _pull(self, root: Node) -> None:
        """Compute `root` (a main-graph node) after every node it depends on that is not current: an explicit
        depth-first walk (graphs are deep), each node once. A cycle (an invalid graph) is cut where it closes: the
        node there is computed with what is known of its inputs."""
        done = self._done
        if not root._subgraphs:
            for v in root._inputs:
                if v is not None:
                    p = v.producer
                    if p is not None and p not in done:
                        break
            else:  # the common case (a walk in graph order, an edit of one node): its inputs are current
                shape = self._shape
                for v in root._outputs:
                    if v in shape:
                        self._compute(root)  # inferred before: compare, and tell the readers
                        break
                else:
                    self._eval(root)
                done.add(root)
                return
        gray = self._gray
        stack: list[tuple[Node, bool]] = [(root, False)]
        while stack:
            n, expanded = stack.pop()
            if n in done:
                continue
            if expanded:
                self._compute(n)
                done.add(n)
                gray.discard(n)
                continue
            if n in gray:
                continue
            gray.add(n)
            stack.append((n, True))
            for v in n._inputs:
                if v is not None:
                    p = v.producer
                    if p is not None and p not in done and p not in gray:
                        stack.append((p, False))
            if n._subgraphs:
                for p in self._deps(n):
                    if p not in done and p not in gray:
                        stack.append((p, False))

    def _compute(self, n: Node) -> None:
        """Infer the outputs of main-graph node `n` (and every value of its subgraphs). When a result differs
        from what was known before, the readers that were current become stale."""
        outs = n._outputs
        shape = self._shape
        old = None
        for v in outs:
            if v in shape:
                val, dtm = self._val, self._dtype
                old = [(shape.get(v), val.get(v), dtm.get(v)) for v in outs]
                self._recomputed += 1
                break
        self._onnx_cache.pop(n, None)
        self._eval(n)
        if old is None:
            return
        done = self._done
        for v, (sh, val, dt) in zip(outs, old):
            if sh == shape.get(v) and val == self._val.get(v) and dt == self._dtype.get(v):
                continue
            self._changed_facts[n] = None
            for u, _ in v._uses:
                r = u if u.graph is n.graph else self._root(u)
                if r is not None and r in done:
                    done.discard(r)
                    self._stale.append(r)

    def _eval(self, n: Node) -> None:
        self._computed += 1
        if n._subgraphs:
            self._seed_subgraphs(n)
        outs = None
        dom = n.domain
        if not dom or dom == "ai.onnx":
            fn = self.rules.get(n.op_type)
            if fn is not None:
                try:
                    outs = fn(self, n)
                except _RULE_ERRORS as e:
                    log.debug("shape rule for %s failed: %s", n.op_type, e)
                    outs = None
        self._finish(n, outs)

    def _walk(self, g: Graph) -> None:
        """Infer every node of subgraph `g` in order (its outer reads are current)."""
        for n in g:
            self._onnx_cache.pop(n, None)
            self._eval(n)

    def _sync(self) -> None:
        """Bring the facts up to date with the model's edits since the last answer: recompute the changed nodes
        that were current, then (only where a result differs) their readers."""
        lg = self._log
        if lg is None or (not lg.nodes and not self._stale) or self.defer_sync:
            return
        done = self._done
        stale = self._stale
        for d in lg.take():
            if d.graph is None or d._erased:  # removed: forget it (a rollback re-adds it as a new node)
                done.discard(d)
                self._onnx_cache.pop(d, None)
                for v in d._outputs:
                    self._shape.pop(v, None)
                    self._val.pop(v, None)
                    self._dtype.pop(v, None)
                continue
            for v in d._inputs:  # an initializer whose tensor was replaced (see Graph.set_const)
                if v is not None and v in self._csrc and self._csrc[v] is not v._const:
                    self._forget_const(v)
            r = self._root(d)
            if r is not None and r in done:
                done.discard(r)
                stale.append(r)
        while stale:
            r = stale.pop()
            if r not in done and r.graph is not None and not r._erased:
                self._pull(r)

    def _forget_const(self, v: Value) -> None:
        self._csrc.pop(v, None)
        self._cval.pop(v, None)
        self._shape.pop(v, None)
        self._dtype.pop(v, None)

    def _fresh_dim(self, v: Value, i: int, origin: str) -> SymExpr:
        """The fresh symbol of dim `i` of `v`: made once, the same when `v` is inferred again."""
        key = (v, i)
        e = self._fresh_at.get(key)
        if e is None:
            e = self._fresh_at[key] = self._fresh_sym(origin)
        return e

    # ------------------------------------------------------------------------------------------------------------
    # declared types and onnx's per-node inference
    # ------------------------------------------------------------------------------------------------------------
    @staticmethod
    def _declared(v: Value) -> tuple[int | None, list | None]:
        """(dtype, dims as int/str/None) the model declares for `v` (value_info, inputs, outputs, tensors)."""
        t = v.type
        if isinstance(t, TensorType):
            return (t.dtype or None), (list(t.shape) if t.shape is not None else None)
        c = v._const
        if c is not None and not c.is_sparse:
            return c.dtype, list(c.shape)
        return None, None

    def _onnx_info(self, v: Value) -> tuple[int | None, list | None]:
        """(dtype, dims as int/str/None) for a value the rules left (partly) open: the declared type where it
        says something (as onnx's own inference keeps it), filled in by onnx's inference of the producer alone."""
        dt, dims = self._declared(v)
        if dt is not None and dims is not None and all(
                (d.__class__ is int and d >= 0) or (d.__class__ is str and d) for d in dims):
            return dt, dims
        p = v.producer
        if p is None:
            return dt, dims
        got = self._node_onnx(p)
        if not got:
            return dt, dims
        odt, odims = got.get(v._name, (None, None))
        if dt is None:
            dt = odt
        if dims is None:
            dims = odims
        elif odims is not None and len(odims) == len(dims):
            dims = [d if (d.__class__ is int and d >= 0) or (d.__class__ is str and d) else o
                    for d, o in zip(dims, odims)]
        return dt, dims

    def _node_onnx(self, n: Node) -> dict[str, tuple[int | None, list | None]] | None:
        r = self._onnx_cache.get(n, _MISSING)
        if r is _MISSING:
            try:
                r = self._infer_node(n)
            except Exception as e:  # noqa: BLE001 - onnx raises many types; its answer is optional here
                log.debug("onnx inference of %s failed: %s", n.op_type, e)
                r = None
            self._onnx_cache[n] = r
        return r

    def _infer_node(self, n: Node) -> dict[str, tuple[int | None, list | None]] | None:
        """onnx's inference of node `n` alone, from the input types (and small constant inputs) the table knows.
        Symbolic dims travel as opaque names and come back as the same expressions."""
        if n._subgraphs:
            return None  # If/Loop/Scan have rules; onnx would need their bodies serialized
        m = self._model
        if m is None:
            return None
        dom = n.domain
        std = not dom or dom == "ai.onnx"
        fn_proto = None
        schema = None
        import onnx
        import onnx.defs

        if std or dom in m.opset_imports:
            try:
                schema = onnx.defs.get_schema(n.op_type, m.opset(dom) or 1, "" if std else dom)
            except Exception:  # noqa: BLE001 - no schema for this op here
                schema = None
        if schema is None:
            fn_proto = self._function(dom, n.op_type)
            if fn_proto is None:
                return None
        from ...ir.serde import node_to_proto, tensor_to_proto, type_to_proto

        names: dict[str, SymExpr] = {}  # opaque dim name -> our expression
        params: dict[SymExpr, str] = {}

        def type_bytes(v: Value) -> Any:
            tp = onnx.TypeProto()
            dt = self._dt(v)
            if dt is None:
                decl = v.type
                if decl is not None and not isinstance(decl, TensorType):
                    type_to_proto(decl, tp)  # a sequence, optional or map: as declared
                    return tp
            tt = tp.tensor_type
            tt.elem_type = int(dt or 0)
            dims = self._s(v)
            if dims is not None:
                shp = tt.shape
                shp.SetInParent()
                for d in dims:
                    dp = shp.dim.add()
                    if d.c is not None:
                        if d.c >= 0:
                            dp.dim_value = d.c
                    else:
                        nm = params.get(d)
                        if nm is None:
                            nm = params[d] = f"graphopt_dim_{len(params)}"
                            names[nm] = d
                        dp.dim_param = nm
            return tp

        types: dict[str, Any] = {}
        data: dict[str, bytes] = {}
        in_types = []
        for v in n._inputs:
            if v is None or not v._name:
                in_types.append(None)
                continue
            tp = type_bytes(v)
            in_types.append(tp)
            types[v._name] = tp.SerializeToString()
            c = v._const
            if c is not None and not c.is_sparse and c.size <= _ONNX_DATA_ELEMENTS and v.is_constant():
                data[v._name] = tensor_to_proto(c, v._name).SerializeToString()
            else:
                ints = self._ints(v) if self._dt(v) in _VALUE_DT else None
                if ints is not None:
                    arr = np.asarray(ints, dtype=np.int64 if self._dt(v) == _INT64 else np.int32)
                    sh = self._s(v)
                    if sh is not None and len(sh) == 0 and len(ints) == 1:
                        arr = arr.reshape(())
                    from ...ir.tensors import Tensor, numpy_dtype

                    arr = arr.astype(numpy_dtype(self._dt(v)))  # type: ignore[arg-type]
                    data[v._name] = tensor_to_proto(Tensor.from_numpy(arr), v._name).SerializeToString()
        self._onnx_nodes += 1
        if schema is not None:
            opsets = {d or "": ver for d, ver in m.opset_imports.items()}
            raw = schema._infer_node_outputs(node_to_proto(n).SerializeToString(), types, data, {}, opsets,
                                             m.ir_version)
            outs = {k: onnx.TypeProto.FromString(b) for k, b in raw.items()}
        else:
            import onnx.shape_inference

            np_ = node_to_proto(n)
            res = onnx.shape_inference.infer_function_output_types(
                fn_proto, [t if t is not None else onnx.TypeProto() for t in in_types], list(np_.attribute))
            outs = {v._name: t for v, t in zip(n._outputs, res) if v._name}
        result: dict[str, tuple[int | None, list | None]] = {}
        for k, tp in outs.items():
            if tp.WhichOneof("value") != "tensor_type":
                continue
            tt = tp.tensor_type
            dt = tt.elem_type or None
            if not tt.HasField("shape"):
                result[k] = (dt, None)
                continue
            dims: list[Any] = []
            for d in tt.shape.dim:
                w = d.WhichOneof("value")
                if w == "dim_value":
                    dims.append(d.dim_value)
                elif w == "dim_param":
                    e = names.get(d.dim_param)
                    dims.append(e if e is not None else d.dim_param)
                else:
                    dims.append(None)
            result[k] = (dt, dims)
        return result

    def _function(self, domain: str, op: str) -> Any:
        fns = self._functions
        if fns is None:
            m = self._model
            fns = self._functions = {(f.domain, f.name): f for f in (m.functions if m is not None else ())}
        return fns.get((domain, op))

    # ------------------------------------------------------------------------------------------------------------
    # per-node results
    # ------------------------------------------------------------------------------------------------------------
    def _seed_value(self, v: Value, origin: str, kind: str, parse: bool = True,
                    rank_hint: int | None = None, dtype_hint: int | None = None) -> None:
        dt, dims = self._declared(v)
        if dims is None and rank_hint is not None:
            dims = [None] * rank_hint
        if dt is None:
            dt = dtype_hint
        if dims is None:
            sh = UNKNOWN_RANK
        else:
            out = []
            for i, d in enumerate(dims):
                if d.__class__ is int and d >= 0:
                    out.append(SymExpr.const(d))
                elif d.__class__ is str and d:
                    if kind == "input" and d not in self._symbols:
                        out.append(self._register(d, f"{origin} dim {i}", "input"))
                    else:
                        out.append(self._from_param(d, f"{origin} dim {i}", parse))
                else:
                    out.append(self._fresh_dim(v, i, f"{origin} dim {i}"))
            sh = SymbolicShape(tuple(out))
        self._shape[v] = sh
        if dt is not None:
            self._dtype[v] = dt
        else:
            self._dtype.pop(v, None)

    def _seed_subgraphs(self, n: Node) -> None:
        op = n.op_type
        std = not n.domain or n.domain == "ai.onnx"
        where = f"{op} {n.name!r}" if n.name else op
        for sg in n._subgraphs or ():
            ins = sg._inputs
            for j, v in enumerate(ins):
                origin = f"{where} body input {v.name!r}"
                if std and op == "Loop":
                    if j == 0:
                        self._shape[v] = SymbolicShape(())
                        self._dtype[v] = _INT64
                        continue
                    if j == 1:
                        self._shape[v] = SymbolicShape(())
                        self._dtype[v] = _BOOL
                        continue
                    outer = n.input(j)
                    os_ = self._s(outer) if outer is not None else None
                    self._seed_value(v, origin, "fresh", rank_hint=None if os_ is None else len(os_),
                                     dtype_hint=self._dt(outer))
                elif std and op == "Scan" and self._opset >= 9:
                    m = int(n.attr("num_scan_inputs", 0))
                    nstate = len(n._inputs) - m
                    outer = n.input(j)
                    if j >= nstate and outer is not None:
                        os_ = self._s(outer)
                        axes = list(n.attr("scan_input_axes", None) or [0] * m)
                        k = j - nstate
                        if os_ is not None and k < len(axes):
                            ax = axes[k] + len(os_) if axes[k] < 0 else axes[k]
                            dt, _dims = self._declared(v)
                            self._shape[v] = SymbolicShape(tuple(os_[:ax]) + tuple(os_[ax + 1:]))
                            dt = dt or self._dt(outer)
                            if dt is not None:
                                self._dtype[v] = dt
                            continue
                    os_ = self._s(outer) if outer is not None else None
                    self._seed_value(v, origin, "fresh", rank_hint=None if os_ is None else len(os_),
                                     dtype_hint=self._dt(outer) if outer is not None else None)
                else:
                    self._seed_value(v, origin, "fresh")
            self._walk(sg)

    def _finish(self, n: Node, outs: list[Out] | None) -> None:
        shape_map = self._shape
        val_map = self._val
        dt_map = self._dtype
        shapes = self._shapes
        i = -1
        for v in n._outputs:
            i += 1
            if not v._name:
                continue
            o = outs[i] if outs is not None and i < len(outs) else None
            if o is None:
                dims, val, dt = None, None, None
            else:
                dims, val, dt = o
            # the declared type, then onnx's answer, fill what our rule left open
            ask = dt is None or dims is None
            if not ask:
                for d in dims:  # type: ignore[union-attr]
                    if d is None:
                        ask = True
                        break
            if ask:
                odt, odims = self._onnx_info(v)
                if dt is None:
                    dt = odt
                dims = self._merge(dims, odims, v, n)
            if dims is None:
                shape_map[v] = UNKNOWN_RANK
                if val_map:
                    val_map.pop(v, None)
            else:
                key = tuple(dims)
                sh = shapes.get(key)
                if sh is None:
                    sh = shapes[key] = SymbolicShape(key)
                shape_map[v] = sh
                if val is not None and len(val) <= self.max_value_len and (
                        (not key and len(val) == 1) or (len(key) == 1 and key[0].c == len(val))):
                    val_map[v] = val
                elif val_map:
                    val_map.pop(v, None)
            if dt is not None:
                dt_map[v] = dt
            else:
                dt_map.pop(v, None)

    def _merge(self, dims: list | None, odims: list | None, v: Value, n: Node) -> list | None:
        if dims is None:
            if odims is None:
                return None
            return [self._conv_dim(d, v, i, n) for i, d in enumerate(odims)]
        out = list(dims)
        same = odims is not None and len(odims) == len(dims)
        for i, d in enumerate(out):
            # the declared type only fills what our rules could not derive: it may be stale (a static dim traced
            # at export), and a wrong static dim would let a Shape fold to a constant that holds for one binding
            if d is None:
                out[i] = self._conv_dim(odims[i] if same else None, v, i, n)  # type: ignore[index]
        return out

    def _conv_dim(self, d: Any, v: Value, i: int, n: Node) -> SymExpr:
        if d.__class__ is SymExpr:
            return d
        if d.__class__ is int and d >= 0:
            return SymExpr.const(d)
        origin = f"dim {i} of {v.name!r} ({n.op_type})"
        if d.__class__ is str and d:
            return self._from_param(d, origin)
        return self._fresh_dim(v, i, origin)

    # -- accessors used by the rules ---------------------------------------------------------------------------
    def _shape_unwalked(self, v: Value) -> SymbolicShape:
        c = v._const
        if c is not None:
            cs = c.shape
            sh = self._const_shapes.get(cs)  # type: ignore[assignment]
            if sh is None:
                sh = self._const_shapes[cs] = SymbolicShape(tuple(SymExpr.const(d) for d in cs))
            self._dtype[v] = c.dtype
            self._csrc[v] = c
        else:
            dt, dims = self._declared(v)
            if dims is None:
                sh = UNKNOWN_RANK
            else:
                sh = SymbolicShape(tuple(SymExpr.const(d) if d.__class__ is int and d >= 0 else (
                    self._from_param(d, f"dim {i} of {v.name!r}") if d.__class__ is str and d else
                    self._fresh_dim(v, i, f"dim {i} of {v.name!r}")) for i, d in enumerate(dims)))
            if dt is not None:
                self._dtype.setdefault(v, dt)
        self._shape[v] = sh
        return sh

    def _s(self, v: Value | None) -> tuple[SymExpr, ...] | None:
        if v is None:
            return None
        sh = self._shape.get(v)
        if sh is None or (v._const is not None and self._csrc.get(v) is not v._const):
            if v.producer is not None or (v._graph is not None and v._graph.owner is not None):
                self._need(v)
                sh = self._shape.get(v)
            if sh is None or (v._const is not None and self._csrc.get(v) is not v._const):
                sh = self._shape_unwalked(v)
        dims = sh.dims
        if dims is None or not self._redirected:
            return dims
        return self._canonical(sh)[0]

    def _canonical(self, sh: SymbolicShape) -> tuple[tuple[SymExpr, ...], SymbolicShape]:
        """`sh`'s dims in canonical form, and as a shape; remembered on `sh` until the next unification."""
        cc = sh._cc
        if cc is not None and cc[0] is self._canon_token:
            return cc[1], cc[2]
        canon = self.canon
        dims = tuple(canon(d) for d in sh.dims)  # type: ignore[union-attr]
        shape = sh if dims == sh.dims else SymbolicShape(dims)
        sh._cc = (self._canon_token, dims, shape)
        return dims, shape

    def _v(self, v: Value | None) -> tuple[SymExpr, ...] | None:
        if v is None:
            return None
        r = self._val.get(v)
        if r is None:
            p = v.producer
            if p is not None:
                if p not in self._done:
                    self._need(v)
                    r = self._val.get(v)
                if r is None:
                    return None
            else:
                c = v._const
                if c is None:
                    return None
                got = self._cval.get(v)
                if got is not None and got[0] is c:
                    r = got[1]
                else:
                    r = self._const_value(v)
                    self._cval[v] = (c, r)
                if r is None:
                    return None
        if not self._redirected:
            return r
        canon = self.canon
        return tuple(canon(e) for e in r)

    def _const_value(self, v: Value) -> tuple[SymExpr, ...] | None:
        if not v.is_constant():
            return None
        t = v._const
        assert t is not None
        if t.is_sparse or t.dtype not in _VALUE_DT or len(t.shape) > 1 or t.size > self.max_value_len:
            return None
        try:
            arr = t.numpy()
        except Exception:  # noqa: BLE001 - unreadable data: the value is simply unknown
            return None
        return tuple(SymExpr.const(int(x)) for x in np.asarray(arr).reshape(-1).tolist())

    def _dt(self, v: Value | None) -> int | None:
        if v is None:
            return None
        dt = self._dtype.get(v)
        if dt is None:
            c = v._const
            if c is not None:
                return c.dtype
            if v.producer is not None and v.producer not in self._done:
                self._need(v)
                dt = self._dtype.get(v)
        return dt

    def _ints(self, v: Value | None) -> list[int] | None:
        r = self._v(v)
        if r is None or any(e.c is None for e in r):
            return None
        return [e.c for e in r]  # type: ignore[misc]

    def _prod(self, dims: Sequence[SymExpr | None] | None) -> SymExpr | None:
        if dims is None:
            return None
        p = ONE
        for d in dims:
            if d is None:
                return None
            p = p * d
        return p

    def _bcast_dim(self, a: SymExpr | None, b: SymExpr | None, reason: str) -> SymExpr | None:
        if a is None or b is None:
            k = b if a is None else a
            # the unknown side must be 1 or k: when k cannot be 1 the result is k
            if k is not None and not k.can_be(1):
                return k
            return None
        if a is b:
            return a
        a = self.canon(a)
        b = self.canon(b)
        if a == b:
            return a
        if a.c == 1:
            return b
        if b.c == 1:
            return a
        a1 = a.can_be(1)
        b1 = b.can_be(1)
        if not a1 and not b1:
            # neither side can be 1: the graph forces them equal
            return a if self._unify(a, b, reason) or a.c is None else (b if b.c is None else None)
        if not a1:
            return a
        if not b1:
            return b
        return None

    def _bcast(self, shapes: Sequence[Sequence[SymExpr | None] | None], reason: str) -> list | None:
        first = shapes[0]
        if first is None:
            return None
        same = True
        for s in shapes:
            if s is None:
                return None
            if same and s != first:  # tuples compare element identity first: cheap for shared SymExprs
                same = False
        if same:
            return list(first)
        r = max(len(s) for s in shapes)  # type: ignore[arg-type]
        out: list[SymExpr | None] = []
        bd = self._bcast_dim
        for i in range(r):
            cur: Any = _ABSENT
            for s in shapes:
                j = i - (r - len(s))  # type: ignore[arg-type]
                if j < 0:
                    continue
                x = s[j]  # type: ignore[index]
                cur = x if cur is _ABSENT else bd(cur, x, reason)
            out.append(cur)
        return out

    def _unify_products(self, a: SymExpr, b: SymExpr, reason: str) -> None:
        """a == b for products of dims: unify only what holds even when some dim is 0 (constants cancel)."""
        a, b = self.canon(a), self.canon(b)
        if a == b or len(a.terms) != 1 or len(b.terms) != 1:
            return
        (ma, ca), (mb, cb) = a.terms[0], b.terms[0]
        g = math.gcd(ca, cb)
        if g == 0:
            return
        ca //= g
        cb //= g
        if len(ma) == 1 and len(mb) == 1 and ca == cb == 1 and ma[0].__class__ is str and \
                mb[0].__class__ is str:
            self._unify(SymExpr.symbol(ma[0]), SymExpr.symbol(mb[0]), reason)
        elif len(ma) == 1 and not mb and ma[0].__class__ is str and cb % ca == 0:
            self._unify(SymExpr.symbol(ma[0]), SymExpr.const(cb // ca), reason)
        elif len(mb) == 1 and not ma and mb[0].__class__ is str and ca % cb == 0:
            self._unify(SymExpr.symbol(mb[0]), SymExpr.const(ca // cb), reason)

    def _shape_targets(self, model: Model) -> list[Value]:
        return [v for g in model.graph.all_graphs() for n in g for v in n._outputs if v._name]


_ABSENT = object()
