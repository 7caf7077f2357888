"""Patterns over the IR, and the matcher that binds them.

A pattern is a small tree that describes a value by how it is computed:

* :class:`Pat` ``(op, *inputs)`` matches a value produced (as output 0) by a node of that op type in the same
  graph as the root, whose inputs match the input patterns. Two-input commutative ops (Add, Mul, ...) also match
  with their inputs swapped. ``name=`` binds the node, ``attrs=`` constrains attributes,
  ``allow_extra_inputs=`` lets the node have inputs beyond the patterns (e.g. Conv's optional bias).
* :class:`Var` ``("x")`` matches any present value and binds it; a second occurrence of the same name must be the
  same value.
* :class:`Const` ``("w")`` matches a constant: an initializer the caller cannot override
  (:meth:`Value.is_constant`) or the output of a ``Constant`` node. Optionally its value must be (close to) a
  given scalar.
* :class:`AnyOf` ``(p1, p2, ...)`` matches when one alternative does; :class:`Opt` ``(p)`` also matches an
  absent optional input.

Matching never raises for a graph that does not fit: it returns a :class:`Fail` whose reason says where the
pattern stopped fitting (the failure that got furthest into the pattern). The matcher backtracks over
alternatives and commutative orders, so a Var bound on one branch constrains the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from ..ir.constants import constant_value
from ..ir.core import Node, Value
from ..ir.tensors import Tensor

# Ops whose two inputs may be swapped without changing the result (and the output type).
COMMUTATIVE = frozenset({"Add", "Mul", "Max", "Min", "Sum", "Mean", "And", "Or", "Xor", "Equal", "BitwiseAnd",
                         "BitwiseOr", "BitwiseXor"})


class Fail:
    """Why a rule did not fire: a reason for a person, and the node it concerns when there is one."""

    __slots__ = ("reason", "node")

    def __init__(self, reason: str, node: Node | None = None):
        self.reason = reason
        self.node = node

    def __repr__(self) -> str:
        return f"Fail({self.reason!r})"

    def __str__(self) -> str:
        return self.reason


def describe(node: Node) -> str:
    """`Op 'name'` (or `Op -> output` for an unnamed node), for Fail reasons."""
    if node.name:
        return f"{node.op_type} {node.name!r}"
    outs = node.outputs
    return f"{node.op_type} -> {outs[0].name!r}" if outs else node.op_type


def describe_value(v: Value) -> str:
    return repr(v.name) if v.name else "<unnamed>"


# ----------------------------------------------------------------------------------------------------------------
# Constants
# ----------------------------------------------------------------------------------------------------------------
const_tensor = constant_value  # the tensor a value always holds (see graphopt.ir.constants)


# ----------------------------------------------------------------------------------------------------------------
# Match
# ----------------------------------------------------------------------------------------------------------------
class Match:
    """The bindings of a successful match: named nodes, named values (Var/Const), constant tensors.

    ``matched`` lists every node the pattern covered, root first, without duplicates. ``data`` is scratch space
    where a rule's :meth:`check` leaves what it computed for :meth:`rewrite` (check stays read-only on the graph).
    """

    __slots__ = ("root", "nodes", "values", "tensors", "matched", "data")

    def __init__(self, root: Node):
        self.root = root
        self.nodes: dict[str, Node] = {}
        self.values: dict[str, Value] = {}
        self.tensors: dict[str, Tensor] = {}
        self.matched: dict[Node, None] = {}
        self.data: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Value:
        return self.values[name]

    def __contains__(self, name: object) -> bool:
        return name in self.values or name in self.nodes

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def node(self, name: str) -> Node:
        return self.nodes[name]

    def has_node(self, name: str) -> bool:
        return name in self.nodes

    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]

    def array(self, name: str) -> np.ndarray:
        """The numbers of the constant bound to `name` (decoded on first use; do not modify)."""
        return self.tensors[name].numpy()

    @property
    def intermediates(self) -> list[Node]:
        """Matched nodes other than the root."""
        return [n for n in self.matched if n is not self.root]

    def __repr__(self) -> str:
        return f"Match(root={self.root!r}, nodes={list(self.nodes)}, values={list(self.values)})"


class _State:
    """Matching state: the match being built (bindings are undone on backtrack) and the best failure so far."""

    __slots__ = ("m", "graph", "best", "best_depth")

    def __init__(self, m: Match):
        self.m = m
        self.graph = m.root.graph
        self.best: tuple[Callable[[], str], Node | None] | Fail | None = None
        self.best_depth = -1

    def fail(self, reason: Callable[[], str], node: Node | None = None) -> None:
        """Record a failure. The reason is a callable, formatted only for the failure that is reported (matching
        fails at many places while it backtracks; formatting every message would dominate its cost)."""
        # keep the failure that got furthest (most nodes matched); the first one on ties
        d = len(self.m.matched) * 4 + len(self.m.values)
        if d > self.best_depth:
            self.best_depth = d
            self.best = (reason, node)

    def result(self) -> Fail | None:
        b = self.best
        if b is None or isinstance(b, Fail):
            return b
        return Fail(b[0](), b[1])


class _Where:
    """'input i of Op name', formatted on demand."""

    __slots__ = ("node", "i")

    def __init__(self, node: Node, i: int):
        self.node = node
        self.i = i

    def __str__(self) -> str:
        return f"input {self.i} of {describe(self.node)}"


class _Ops:
    __slots__ = ("ops",)

    def __init__(self, ops: tuple[str, ...]):
        self.ops = ops

    def __str__(self) -> str:
        return "/".join(self.ops)


# ----------------------------------------------------------------------------------------------------------------
# Patterns
# ----------------------------------------------------------------------------------------------------------------
class Pattern:
    """Base class: something that matches a value (or an absent input, for :class:`Opt`)."""

    def _match(self, v: Value | None, st: _State, where: Any) -> Iterator[None]:
        raise NotImplementedError

    def root_ops(self) -> tuple[str, ...]:
        """Op types a node must have to be this pattern's root (empty when it cannot be a root)."""
        return ()

    def _quick(self, node: Node) -> bool:
        """A cheap test that `node` may be the root (no bindings, no backtracking)."""
        return False


class Var(Pattern):
    """Any present value, bound to `name` (None or "_" binds nothing)."""

    def __init__(self, name: str | None = None):
        self.name = None if name in (None, "_") else name

    def _match(self, v: Value | None, st: _State, where: Any) -> Iterator[None]:
        if v is None:
            st.fail(lambda: f"{where} is absent")
            return
        name = self.name
        if name is None:
            yield
            return
        vals = st.m.values
        old = vals.get(name)
        if old is not None:
            if old is v:
                yield
            else:
                st.fail(lambda: f"{where} should be {describe_value(old)} (bound as {name!r}), "
                        f"found {describe_value(v)}")
            return
        vals[name] = v
        try:
            yield
        finally:
            del vals[name]

    def __repr__(self) -> str:
        return f"Var({self.name!r})"


class Const(Var):
    """A constant value, bound to `name`; its tensor is in ``match.tensors[name]``.

    With `value`, every element must be within `rtol` (relative) of that number; with `scalar`, the constant must
    hold exactly one element.
    """

    def __init__(self, name: str | None = None, value: float | None = None, *, rtol: float = 1e-3,
                 scalar: bool = False):
        super().__init__(name)
        self.value = value
        self.rtol = rtol
        self.scalar = scalar or value is not None

    def _match(self, v: Value | None, st: _State, where: Any) -> Iterator[None]:
        if v is None:
            st.fail(lambda: f"{where} is absent")
            return
        t = const_tensor(v)
        if t is None:
            st.fail(lambda: f"{where} ({describe_value(v)}) is not a constant")
            return
        if self.scalar and t.size != 1:
            st.fail(lambda: f"{where} ({describe_value(v)}) has {t.size} elements, not 1")
            return
        if self.value is not None:
            arr = t.numpy()
            if arr.dtype.kind not in "fiub":
                st.fail(lambda: f"{where} ({describe_value(v)}) is not numeric")
                return
            x = float(np.asarray(arr, dtype=np.float64).reshape(-1)[0])
            if not abs(x - self.value) <= self.rtol * abs(self.value):
                st.fail(lambda: f"{where} ({describe_value(v)}) is {x:.6g}, not {self.value:.6g}")
                return
        name = self.name
        if name is None:
            yield
            return
        for _ in super()._match(v, st, where):
            st.m.tensors[name] = t
            try:
                yield
            finally:
                st.m.tensors.pop(name, None)

    def __repr__(self) -> str:
        return f"Const({self.name!r}" + (f", {self.value!r}" if self.value is not None else "") + ")"


class Opt(Pattern):
    """An optional input: absent, or matching `pattern`."""

    def __init__(self, pattern: Pattern):
        self.pattern = pattern

    def _match(self, v: Value | None, st: _State, where: Any) -> Iterator[None]:
        if v is None:
            yield
            return
        yield from self.pattern._match(v, st, where)


class AnyOf(Pattern):
    """The first alternative that matches (backtracking tries the next ones)."""

    def __init__(self, *alternatives: Pattern):
        if not alternatives:
            raise ValueError("AnyOf needs at least one alternative")
        self.alternatives = alternatives

    def _match(self, v: Value | None, st: _State, where: Any) -> Iterator[None]:
        for alt in self.alternatives:
            yield from alt._match(v, st, where)

    def _match_root(self, node: Node, st: _State) -> Iterator[None]:
        for alt in self.alternatives:
            if isinstance(alt, (Pat, AnyOf)):
                yield from alt._match_root(node, st)

    def root_ops(self) -> tuple[str, ...]:
        out: dict[str, None] = {}
        for a in self.alternatives:
            out.update(dict.fromkeys(a.root_ops()))
        return tuple(out)

    def _quick(self, node: Node) -> bool:
        return any(a._quick(node) for a in self.alternatives)


class AttrIs:
    """An attribute constraint: the attribute equals `value`; an absent attribute counts as `default`."""

    _MISSING: Any = object()

    def __init__(self, value: Any, default: Any = _MISSING):
        self.value = _norm_attr(value)
        self.default = default

    def ok(self, node: Node, name: str) -> tuple[bool, Any]:
        got = node.attr(name, None)
        if got is None:
            if self.default is AttrIs._MISSING:
                return False, None
            got = self.default
        got = _norm_attr(got)
        return got == self.value, got


def _norm_attr(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, tuple):
        return list(v)
    return v


AttrConstraint = Any  # AttrIs | a literal (same as AttrIs(literal)) | Callable[[Any], bool] (gets None if absent)


class Pat(Pattern):
    """A node of op type `op` (or one of several) producing the value, with inputs matching `inputs`."""

    def __init__(self, op: str | tuple[str, ...], *inputs: Pattern | None, domain: str = "", name: str | None = None,
                 allow_extra_inputs: bool = False, attrs: Mapping[str, AttrConstraint] | None = None,
                 commute: bool | None = None, outputs: int = 1):
        self.ops = (op,) if isinstance(op, str) else tuple(op)
        self.inputs = tuple(inputs)
        self.domain = domain
        self.name = name
        self.allow_extra_inputs = allow_extra_inputs
        self.attrs = dict(attrs or {})
        if commute is None:
            commute = len(self.inputs) == 2 and all(o in COMMUTATIVE for o in self.ops)
        self.commute = commute
        self.outputs = outputs

    def root_ops(self) -> tuple[str, ...]:
        return self.ops

    def _quick(self, node: Node) -> bool:
        if node.op_type not in self.ops or node.domain not in _domains(self.domain):
            return False
        n = node.num_inputs
        if not self.allow_extra_inputs and n > len(self.inputs) and any(
                node.input(i) is not None for i in range(len(self.inputs), n)):
            return False
        # first level only: each input must be able to fit its sub-pattern (op type of its producer, constness)
        ins = self.inputs
        if self.commute and len(ins) == 2:
            v0, v1 = node.input(0), node.input(1)
            return (_fits(ins[0], v0) and _fits(ins[1], v1)) or (_fits(ins[0], v1) and _fits(ins[1], v0))
        return all(_fits(p, node.input(i)) for i, p in enumerate(ins))

    def _match(self, v: Value | None, st: _State, where: Any) -> Iterator[None]:
        want = _Ops(self.ops)
        if v is None:
            st.fail(lambda: f"{where} is absent (expected {want})")
            return
        p = v.producer
        if p is None:
            kind = "a constant" if v.const is not None else "a graph input"
            st.fail(lambda: f"{where} ({describe_value(v)}) is {kind}, not the output of {want}")
            return
        if p.op_type not in self.ops or p.domain not in _domains(self.domain):
            st.fail(lambda: f"{where} ({describe_value(v)}) comes from {describe(p)}, not {want}", p)
            return
        if p.graph is not st.graph:
            st.fail(lambda: f"{where}: {describe(p)} is in an enclosing graph", p)
            return
        if v.index != 0:
            st.fail(lambda: f"{where} is output {v.index} of {describe(p)}, not its output 0", p)
            return
        yield from self._match_node(p, st)

    def _match_root(self, node: Node, st: _State) -> Iterator[None]:
        if node.op_type not in self.ops or node.domain not in _domains(self.domain):
            st.fail(lambda: f"{describe(node)} is not {'/'.join(self.ops)}", node)
            return
        yield from self._match_node(node, st)

    def _match_node(self, node: Node, st: _State) -> Iterator[None]:
        m = st.m
        name = self.name
        if name is not None:
            old = m.nodes.get(name)
            if old is not None:
                if old is node:
                    yield
                else:
                    st.fail(lambda: f"{describe(node)} should be {describe(old)} (bound as {name!r})", node)
                return
        already = node in m.matched
        if already and name is None:
            # the same node reached twice through unnamed patterns: it matched once already
            yield
            return
        # (reached again under a name of its own, it is matched again, so that the name and the names inside
        # this pattern are bound too)
        # outputs beyond those the pattern accounts for must be unused (e.g. BatchNormalization's training outputs)
        outs = node.outputs
        for k in range(self.outputs, len(outs)):
            if outs[k].is_used():
                st.fail(lambda: f"{describe(node)} output {k} ({describe_value(outs[k])}) is used; the pattern "
                        f"expects "
                        f"only {self.outputs} output(s)", node)
                return
        for aname, c in self.attrs.items():
            okay, got = _check_attr(node, aname, c)
            if not okay:
                st.fail(lambda: f"{describe(node)} has {aname}={got!r}"
                        + (f", needs {_show(c)}" if _show(c) else ""),
                        node)
                return
        ins = node.inputs
        k = len(self.inputs)
        if len(ins) > k and not self.allow_extra_inputs:
            if any(x is not None for x in ins[k:]):
                st.fail(lambda: f"{describe(node)} has {len(ins)} inputs, the pattern expects {k}", node)
                return
        vals = [ins[i] if i < len(ins) else None for i in range(k)]
        if not already:
            m.matched[node] = None
        if name is not None:
            m.nodes[name] = node
        try:
            yield from _match_seq(self.inputs, vals, 0, st, node)
            if self.commute and k == 2 and vals[0] is not vals[1]:
                yield from _match_seq(self.inputs, [vals[1], vals[0]], 0, st, node, swapped=True)
        finally:
            if name is not None:
                m.nodes.pop(name, None)
            if not already:
                m.matched.pop(node, None)

    def __repr__(self) -> str:
        ins = ", ".join(repr(p) for p in self.inputs)
        return f"Pat({'/'.join(self.ops)}({ins}){' as ' + self.name if self.name else ''})"


def _fits(p: Pattern | None, v: Value | None) -> bool:
    """A cheap necessary condition for `p` to match `v` (no bindings, looks one node deep)."""
    if p is None:
        return v is None
    if isinstance(p, Pat):
        return v is not None and v.producer is not None and v.producer.op_type in p.ops
    if isinstance(p, Const):
        return v is not None and const_tensor(v) is not None
    if isinstance(p, AnyOf):
        return any(_fits(a, v) for a in p.alternatives)
    if isinstance(p, Opt):
        return v is None or _fits(p.pattern, v)
    return v is not None  # Var


def _domains(domain: str) -> tuple[str, ...]:
    return ("", "ai.onnx") if domain in ("", "ai.onnx") else (domain,)


def _check_attr(node: Node, name: str, c: AttrConstraint) -> tuple[bool, Any]:
    if isinstance(c, AttrIs):
        return c.ok(node, name)
    got = node.attr(name, None)
    if callable(c):
        return bool(c(_norm_attr(got))), _norm_attr(got)
    return _norm_attr(got) == _norm_attr(c), _norm_attr(got)


def _show(c: AttrConstraint) -> str:
    if isinstance(c, AttrIs):
        return repr(c.value)
    if callable(c):
        return getattr(c, "__doc__", None) or ""
    return repr(_norm_attr(c))


def _match_seq(pats: tuple[Pattern | None, ...], vals: list[Value | None], i: int, st: _State, node: Node,
               swapped: bool = False) -> Iterator[None]:
    if i == len(pats):
        yield
        return
    p = pats[i]
    if p is None:  # the input must be absent
        if vals[i] is not None:
            st.fail(lambda: f"input {i} of {describe(node)} should be absent", node)
            return
        yield from _match_seq(pats, vals, i + 1, st, node, swapped)
        return
    where = _Where(node, (1 - i) if swapped else i)
    for _ in p._match(vals[i], st, where):
        yield from _match_seq(pats, vals, i + 1, st, node, swapped)


# ----------------------------------------------------------------------------------------------------------------
def match_pattern(pattern: Pattern, node: Node, accept: Callable[[Match], Fail | None] | None = None) -> Match | Fail:
    """Match `pattern` rooted at `node`.

    Returns the first Match (in pattern order: alternatives, then commuted inputs) that `accept` (if given)
    does not reject, or the Fail that got furthest. The returned Match is a snapshot: later matching does not
    change it.
    """
    m = Match(node)
    st = _State(m)
    if isinstance(pattern, (Pat, AnyOf)):
        gen = pattern._match_root(node, st)
    else:
        raise TypeError(f"a root pattern must be Pat or AnyOf, not {type(pattern).__name__}")
    for _ in gen:
        m.data = {}  # what a rejected check computed must not leak into the next alternative
        if accept is not None:
            f = accept(m)
            if f is not None:
                d = 1 << 30  # a rejection by `accept` got further than any structural failure
                if d > st.best_depth:
                    st.best_depth = d
                    st.best = f
                continue
        snap = Match(node)
        snap.nodes = dict(m.nodes)
        snap.values = dict(m.values)
        snap.tensors = dict(m.tensors)
        snap.matched = dict(m.matched)  # the root was matched first, so it comes first
        snap.data = m.data
        gen.close()
        return snap
    return st.result() or Fail(f"{describe(node)} does not match the pattern", node)
