"""The symbol table: symbols seeded from the model, unification, symbolic shape inference and annotation.

:class:`SymbolTable` (one per :class:`~graphopt.jit.context.JitContext`) seeds symbols from the model's inputs,
runs onnx's shape inference for dtypes and static shapes, then walks the whole graph once (subgraphs included),
propagating shapes and the values of small integer "shape tensors" through the shape-arithmetic ops with the
per-op rules of :mod:`.rules`, and unifying symbols the graph forces equal (a union-find, recorded for
``graphopt inspect``).

What the table claims holds for every binding of the symbols under which the model runs without error; the
inference never assumes that a dim that could be 1 broadcasts like a dim that is not, nor that two unknown dims are
equal. One knowing approximation, shared with onnx's own data propagation: a Reshape target entry read from a
shape tensor is taken as the output dim (at runtime an entry of 0 would copy the input dim instead).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ...ir.core import Graph, Model, Node, Value
from ...ir.shapes import TensorType
from ...ir.tensors import bits_of
from .expr import ONE, ShapeSymbol, SymbolicShape, SymExpr, UNKNOWN_RANK
from .ops._util import _BOOL, _INT64, _VALUE_DT

log = logging.getLogger("graphopt.jit.symbols")

# ================================================================================================================
# The symbol table
# ================================================================================================================
_ANON = re.compile(r"unk__\d+$")
_OURS = re.compile(r"unk_\d+$")
# Initializers with more elements go to onnx's inference as header-only stubs (it never needs their numbers).
_STUB_ELEMENTS = 1024
_STUB_ABOVE_BYTES = 1 << 30
_STUB_LOCATION = "graphopt-shape-inference-stub.bin"
# Exceptions a rule may raise on a malformed node; the node's outputs then fall back to onnx's types.
_RULE_ERRORS = (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, OverflowError, AttributeError)

Out = tuple  # (dims: list[SymExpr | None] | None, value: tuple[SymExpr, ...] | None, dtype: int | None)


class SymbolTable:
    """Per-context shape symbols and what symbolic inference knows about every value of one model.

    ``seed(model)`` makes the symbols of the model's inputs; ``infer(model)`` (re)runs the inference;
    ``ensure(model)`` re-infers only when the model changed since. Queries are keyed by :class:`Value` object:
    ``shape_of``, ``value_of`` (the symbolic contents of a small integer shape tensor), ``dtype_of``. Results
    are in canonical form under the symbols unified so far.
    """

    def __init__(self, *, max_value_len: int = 1024,
                 rules: Mapping[str, Callable[[SymbolTable, Node], list[Out] | None]] | None = None) -> None:
        from .ops import builtin_shape_rules

        self.max_value_len = max_value_len
        # op type -> shape rule (see .ops); a table owns its mapping, so a caller may add or replace rules
        self.rules: dict[str, Callable[[SymbolTable, Node], list[Out] | None]] = (
            dict(rules) if rules is not None else builtin_shape_rules())
        self._version = -1
        self._model_id: int | None = None
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
        self._unions: list[tuple[str, str, str]] = []
        self._conflicts: list[str] = []
        self._shape: dict[Value, SymbolicShape] = {}
        self._val: dict[Value, tuple[SymExpr, ...]] = {}
        self._cval: dict[Value, tuple[SymExpr, ...] | None] = {}
        self._dtype: dict[Value, int] = {}
        self._gp: dict[Graph, Any] = {}
        self._vi: dict[Graph, dict[str, Any]] = {}
        self._fresh_names: set[str] = set()
        self._onnx_status = "not run"
        self._opset = 21
        self._stats: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------------------------
    # public API
    # ------------------------------------------------------------------------------------------------------------
    def seed(self, model: Model) -> None:
        """Forget everything, then make symbols for the main graph's inputs: dim_params become symbols (one per
        name), unknown dims get fresh ``unk_N`` symbols in input order."""
        self._reset()
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
        """Run symbolic shape inference over the whole model (subgraphs included); returns details for the
        report (counts, timings, onnx inference status). Never raises for an op it does not know."""
        import time

        t0 = time.perf_counter()
        self.seed(model)
        t1 = time.perf_counter()
        self._run_onnx(model)
        t2 = time.perf_counter()
        self._walk(model.graph)
        t3 = time.perf_counter()
        self._version = model.mutations
        self._model_id = id(model)
        targets = self._shape_targets(model)
        total = len(targets)
        shaped = sum(1 for v in targets if self._shape.get(v, UNKNOWN_RANK).dims is not None)
        nvals = sum(1 for v in self._val if v.producer is not None)
        self._stats = {"values": total, "shaped": shaped, "shape_values": nvals}
        fresh = sum(1 for s in self._symbols.values() if s.kind == "fresh")
        return {"symbols": len(self._symbols), "input_symbols": list(self._input_syms), "fresh_symbols": fresh,
                "unifications": len(self._unions), "conflicts": list(self._conflicts), "values": total,
                "shaped": shaped, "shape_values": nvals, "onnx_inference": self._onnx_status,
                "seconds": {"seed": round(t1 - t0, 6), "onnx": round(t2 - t1, 6), "walk": round(t3 - t2, 6)}}

    def ensure(self, model: Model) -> None:
        """Re-infer when `model` changed (its mutation counter moved) or is another model than last time."""
        if self._version != model.mutations or self._model_id != id(model):
            self.infer(model)

    def shape_of(self, value: Value) -> SymbolicShape | None:
        """The symbolic shape of `value`, or None when the table knows nothing of it."""
        sh = self._shape.get(value)
        if sh is None:
            if value._const is None:
                return None
            sh = self._shape_unwalked(value)
        if sh.dims is None or not self._redirected:
            return sh
        return SymbolicShape(tuple(self.canon(d) for d in sh.dims))

    def value_of(self, value: Value) -> list[SymExpr] | None:
        """The symbolic contents of a scalar or 1-D integer tensor (a shape tensor), or None when unknown."""
        r = self._v(value)
        return None if r is None else list(r)

    def dtype_of(self, value: Value) -> int | None:
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
        if self._unions:
            s += f", {len(self._unions)} unification{'s' if len(self._unions) != 1 else ''}"
        if self._onnx_status.startswith("failed"):
            s += " (onnx shape inference failed; own rules only)"
        return s

    def summary(self) -> dict[str, Any]:
        """Plain data for ``graphopt inspect`` and the report: the symbols (model and input symbols, and fresh
        ones only when they unified with something), with their origin and the names they unified with."""
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
                "conflicts": list(self._conflicts), **self._stats, "onnx_inference": self._onnx_status}

    def annotate(self, model: Model) -> int:
        """Write the inferred types into the model's value_info (every graph), symbolic dims named by their
        canonical rendering (``batch*seq``, ``(seq+1)//2``). Graph inputs, outputs and initializers keep their
        declarations. Returns how many values it declared or retyped."""
        self.ensure(model)
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
        # annotating changes the model but not what the table knows about it
        self._version = model.mutations
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
    # onnx's inference
    # ------------------------------------------------------------------------------------------------------------
    def _run_onnx(self, model: Model) -> None:
        """Types from onnx's shape inference (C++, with data propagation), keyed by our Values. Big initializers
        go as header-only stubs. Any failure leaves the table with the model's declared types only."""
        try:
            import onnx.shape_inference

            from ...ir import serde

            data = serde.serialize(model)
            if len(data) > _STUB_ABOVE_BYTES:
                # protobuf refuses 2 GiB: send big initializers as header-only stubs (inference never reads them)
                data = b""
                plan: dict[int, Any] = {}
                for g in model.graph.all_graphs():
                    for v in g._initializers.values():
                        t = v._const
                        if t is None or t.is_sparse:
                            continue
                        size = 1
                        for d in t.shape:
                            size *= d
                        if size > _STUB_ELEMENTS and not t.is_external:
                            plan[id(t)] = ("external", _STUB_LOCATION, 0, (size * bits_of(t.dtype) + 7) // 8, {})
                data = serde.serialize(model, plan)
            inferred = onnx.shape_inference.infer_shapes(data, check_type=False, strict_mode=False,
                                                         data_prop=True)
        except Exception as e:  # noqa: BLE001 - onnx raises many types; its results are optional here
            self._onnx_status = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            log.warning("onnx shape inference failed (%s); using declared types and graphopt's rules",
                        self._onnx_status)
            return
        self._onnx_status = "ok"
        self._map_onnx(model.graph, inferred.graph)

    def _map_onnx(self, g: Graph, gp: Any) -> None:
        """Pair our graphs with onnx's inferred GraphProtos (subgraphs by node position and attribute order);
        the name -> ValueInfoProto tables are built only when a graph's types are first asked for."""
        self._gp[g] = gp
        nodes = gp.node
        nn = len(nodes)
        i = 0
        for n in g:
            if n._subgraphs and i < nn and nodes[i].op_type == n.op_type:
                protos = []
                for a in nodes[i].attribute:
                    if a.type == 5:  # GRAPH
                        protos.append(a.g)
                    elif a.type == 10:  # GRAPHS
                        protos.extend(a.graphs)
                for sg, sgp in zip(n._subgraphs, protos):
                    self._map_onnx(sg, sgp)
            i += 1

    def _vi_table(self, g: Graph) -> dict[str, Any]:
        t = self._vi.get(g)
        if t is None:
            gp = self._gp.get(g)
            t = {}
            if gp is not None:
                t = {vi.name: vi for vi in gp.value_info}
                for vi in gp.output:
                    t[vi.name] = vi
                if g.owner is not None:
                    for vi in gp.input:
                        t[vi.name] = vi
            self._vi[g] = t
        return t

    def _onnx_info(self, v: Value) -> tuple[int | None, list | None]:
        """(dtype, dims as int/str/None) from onnx's inference, else from the model's declaration."""
        g = v.graph
        vi = self._vi_table(g).get(v._name) if g is not None and self._gp else None  # type: ignore[arg-type]
        if vi is not None:
            tp = vi.type
            if tp.WhichOneof("value") != "tensor_type":
                return None, None
            tt = tp.tensor_type
            dt = tt.elem_type or None
            if not tt.HasField("shape"):
                return dt, None
            dims: list[Any] = []
            for d in tt.shape.dim:
                w = d.WhichOneof("value")
                dims.append(d.dim_value if w == "dim_value" else (d.dim_param if w == "dim_param" else None))
            return dt, dims
        t = v.type
        if isinstance(t, TensorType):
            return (t.dtype or None), (list(t.shape) if t.shape is not None else None)
        return None, None

    # ------------------------------------------------------------------------------------------------------------
    # the walk
    # ------------------------------------------------------------------------------------------------------------
    def _seed_value(self, v: Value, origin: str, kind: str, parse: bool = True,
                    rank_hint: int | None = None, dtype_hint: int | None = None) -> None:
        dt, dims = self._onnx_info(v)
        if dims is None and v._const is not None:
            dims = list(v._const.shape)
        if dims is None and rank_hint is not None:
            dims = [None] * rank_hint
        if dt is None:
            dt = dtype_hint if dtype_hint is not None else (v._const.dtype if v._const is not None else None)
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
                    out.append(self._fresh_sym(f"{origin} dim {i}"))
            sh = SymbolicShape(tuple(out))
        self._shape[v] = sh
        if dt is not None:
            self._dtype[v] = dt

    def _walk(self, g: Graph) -> None:
        rules = self.rules
        for n in g:
            if n._subgraphs:
                self._seed_subgraphs(n)
            outs = None
            dom = n.domain
            if not dom or dom == "ai.onnx":
                fn = rules.get(n.op_type)
                if fn is not None:
                    try:
                        outs = fn(self, n)
                    except _RULE_ERRORS as e:
                        log.debug("shape rule for %s failed: %s", n.op_type, e)
                        outs = None
            self._finish(n, outs)

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
                            dt, dims = self._onnx_info(v)
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
            # onnx's answer fills what our rule left open
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
            else:
                shape_map[v] = SymbolicShape(tuple(dims))
                if val is not None and len(val) <= self.max_value_len and (
                        (not dims and len(val) == 1) or (len(dims) == 1 and dims[0].c == len(val))):
                    self._val[v] = val
            if dt is not None:
                self._dtype[v] = dt

    def _merge(self, dims: list | None, odims: list | None, v: Value, n: Node) -> list | None:
        if dims is None:
            if odims is None:
                return None
            return [self._conv_dim(d, v, i, n) for i, d in enumerate(odims)]
        out = list(dims)
        same = odims is not None and len(odims) == len(dims)
        for i, d in enumerate(out):
            # onnx's answer only fills what our rules could not derive: it may come from value_info the model
            # declares, which can be stale (a static dim traced at export), and a wrong static dim would let a
            # Shape fold to a constant that holds for one binding only
            if d is None:
                out[i] = self._conv_dim(odims[i] if same else None, v, i, n)  # type: ignore[index]
        return out

    def _conv_dim(self, d: Any, v: Value, i: int, n: Node) -> SymExpr:
        if d.__class__ is int and d >= 0:
            return SymExpr.const(d)
        origin = f"dim {i} of {v.name!r} ({n.op_type})"
        if d.__class__ is str and d:
            return self._from_param(d, origin)
        return self._fresh_sym(origin)

    # -- accessors used by the rules ---------------------------------------------------------------------------
    def _shape_unwalked(self, v: Value) -> SymbolicShape:
        c = v._const
        if c is not None:
            sh = SymbolicShape(tuple(SymExpr.const(d) for d in c.shape))
            self._dtype.setdefault(v, c.dtype)
        else:
            dt, dims = self._onnx_info(v)
            if dims is None:
                sh = UNKNOWN_RANK
            else:
                sh = SymbolicShape(tuple(SymExpr.const(d) if d.__class__ is int and d >= 0 else (
                    self._from_param(d, f"dim {i} of {v.name!r}") if d.__class__ is str and d else
                    self._fresh_sym(f"dim {i} of {v.name!r}")) for i, d in enumerate(dims)))
            if dt is not None:
                self._dtype.setdefault(v, dt)
        self._shape[v] = sh
        return sh

    def _s(self, v: Value | None) -> tuple[SymExpr, ...] | None:
        if v is None:
            return None
        sh = self._shape.get(v)
        if sh is None:
            sh = self._shape_unwalked(v)
        dims = sh.dims
        if dims is None or not self._redirected:
            return dims
        canon = self.canon
        return tuple(canon(d) for d in dims)

    def _v(self, v: Value | None) -> tuple[SymExpr, ...] | None:
        if v is None:
            return None
        r = self._val.get(v)
        if r is None:
            if v.producer is not None or v._const is None:
                return None
            if v in self._cval:
                r = self._cval[v]
            else:
                r = self._cval[v] = self._const_value(v)
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
        if dt is None and v._const is not None:
            dt = v._const.dtype
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
