"""Common-subexpression elimination: compute each thing once.

Two nodes are merged (the first kept, the later one's readers moved to the first's outputs, the later one removed)
when they have the same op type, domain and overload, read the same values (the same Value objects, at the same
positions; a trailing absent optional input is the same as no input there; for a few two-input commutative ops the
order does not matter), have the same output arity (and the same absent optional outputs) and equal attributes.

Attributes are compared through a canonical encoding of their values, so that a loaded attribute and one a pass
made compare equal: integers and strings as themselves, floats as the float32 bytes the model stores, tensors by
dtype, shape and content digest, subgraphs structurally (see :func:`graph_key`: inputs matched by position, nodes
compared one by one in order, values defined inside numbered by where they are defined, values of enclosing scopes
by identity). Equal tensors found by digest are compared byte for byte before anything is merged (top-level
tensor attributes and initializers; inside subgraph keys the 128-bit digest is trusted).

Initializers that are constants (:meth:`Value.is_constant`: IR>=4 initializers listed as inputs are overridable and
never merged) with the same dtype, shape and bytes are merged too. An initializer is read only when another one
in scope shares its dtype and shape, and then first through a sample digest (a few KiB of a big tensor, see
:meth:`Tensor.sample_digest`); all its bytes are compared only against a tensor with the same sample, and never
kept decoded (tensor attributes, as of Constant nodes, are hashed when another node shares the node's op and
inputs). A tensor larger than `max-tensor-bytes` is never read for this: on a model with external data, reading
means memory-mapping the data files.

Never merged: non-deterministic ops (RandomNormal, RandomUniform, their *Like forms, Multinomial, Bernoulli, and
anything named *Dropout* or *Random*), nodes whose subgraphs contain one, and nodes of domains whose ops we do not
know (they may be random or stateful), unless the node calls a model-local function whose body is deterministic.

Scopes: the walk is topological and enters a node's subgraphs when it reaches the node; the hash table is scoped,
so an expression inside a subgraph can reuse a value computed before the owning node in an enclosing graph, while
what is entered inside a subgraph is forgotten on leaving it. Only values defined before the owning node are ever in
the table, so a reuse is always legal.

The interface stays: when the later node's output is a graph output, the kept value must be able to take over its
name (a node output of that same graph that is no graph output yet); otherwise the duplicate is left alone rather
than adding an Identity.

One walk, one hash-table lookup per node. Keys are two-level: a cheap key (op, inputs, arity) first, and the
attribute encoding only when two nodes share the cheap key, so most nodes never have their attributes decoded.
Merging rewires the readers before they are visited, so chains of duplicates collapse in the same walk.

In a later run of the pipeline (``ctx.changes`` says what changed since this pass last ran) only the changed nodes
and the nodes that could equal them are keyed: a node equal to a changed one reads the same values, so it is a
reader of the changed node's least-read input. The walk stays in graph order (the earlier node is kept); only the
new or changed initializers are compared with the others. Models with subgraphs are walked whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..ir.core import Attr, AttrType, Graph, Model, Node, Value
from ..ir.tensors import Tensor
from .base import Pass, PassResult, option

log = logging.getLogger(__name__)

#: Ops whose every run draws new random numbers: never merged, never folded.
NONDETERMINISTIC_OPS = frozenset({
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
})

#: Domains whose ops we know to be pure functions of their inputs (save the random ones above).
KNOWN_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})

# Two-input ops whose result does not depend on the input order, bit for bit (IEEE addition and multiplication
# are commutative; Max/Min are left out: runtimes differ in which NaN they return).
_COMMUTATIVE = frozenset({"Add", "Mul", "And", "Or", "Xor", "Equal", "BitwiseAnd", "BitwiseOr", "BitwiseXor"})

_ATTR_GRAPH = 5
_ATTR_GRAPHS = 10


def is_random_op(op_type: str) -> bool:
    """Whether an op (by name, in any domain) may draw random numbers (Dropout may, in training mode)."""
    return op_type in NONDETERMINISTIC_OPS or "Random" in op_type or "Dropout" in op_type


def _domain(d: str) -> str:
    return "" if d == "ai.onnx" else d


# ----------------------------------------------------------------------------------------------------------------
# Model-local functions: which are deterministic
# ----------------------------------------------------------------------------------------------------------------
class FunctionPurity:
    """Answers whether a node of an unknown domain calls a deterministic model-local function (memoized)."""

    def __init__(self, model: Model | None):
        self._by_key: dict[tuple[str, str, str], Any] = {}
        for f in (model.functions if model is not None else ()):
            self._by_key.setdefault((_domain(f.domain), f.name, getattr(f, "overload", "")), f)
        self._memo: dict[tuple[str, str, str], bool] = {}

    def op_is_pure(self, domain: str, op_type: str, overload: str) -> bool:
        """Whether an op always gives the same outputs for the same inputs and attributes."""
        key = (domain, op_type, overload)
        memo = self._memo
        r = memo.get(key)
        if r is not None:
            return r
        memo[key] = False  # also while in progress: a recursive call is not assumed pure
        if is_random_op(op_type):
            return False
        d = _domain(domain)
        if d in KNOWN_DOMAINS:
            r = True
        else:
            f = self._by_key.get((d, op_type, overload))
            r = f is not None and self._body_is_pure(f)
        memo[key] = r
        return r

    def _body_is_pure(self, f: Any) -> bool:
        stack = [f.node]
        while stack:
            for np_ in stack.pop():
                if not self.op_is_pure(np_.domain, np_.op_type, getattr(np_, "overload", "")):
                    return False
                for a in np_.attribute:
                    if a.type == _ATTR_GRAPH:
                        stack.append(a.g.node)
                    elif a.type == _ATTR_GRAPHS:
                        stack.extend(sg.node for sg in a.graphs)
        return True


# ----------------------------------------------------------------------------------------------------------------
# Keys
# ----------------------------------------------------------------------------------------------------------------
def tensor_key(t: Tensor, max_bytes: int) -> tuple | None:
    """A content key for a tensor (dtype, shape, digest), or None when it is larger than `max_bytes` (< 0: no
    limit)."""
    if max_bytes >= 0 and t.nbytes > max_bytes:
        return None
    return ("T", t.dtype, t.shape, t.is_sparse, t.digest())


def same_tensor_bytes(a: Tensor, b: Tensor) -> bool:
    """Byte-for-byte equality of two tensors' contents (NaNs with the same bits are equal). Cheap keys first
    (dtype, shape, the sample digest); the bytes are read for this comparison only, never kept decoded."""
    if a is b:
        return True
    if a.dtype != b.dtype or a.shape != b.shape or a.is_sparse != b.is_sparse:
        return False
    if a.sample_digest() != b.sample_digest():
        return False
    x, y = a.content(), b.content()
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        x, y = np.asarray(x), np.asarray(y)
        return x.shape == y.shape and all(p == q for p, q in zip(x.flat, y.flat))
    return len(x) == len(y) and x == y


class KeyMaker:
    """Canonical, hashable keys for nodes, attributes and graphs (None: never merge this)."""

    def __init__(self, purity: FunctionPurity, max_tensor_bytes: int):
        self.purity = purity
        self.max_tensor_bytes = max_tensor_bytes

    # -- inputs ------------------------------------------------------------------------------------------------
    @staticmethod
    def inputs_key(n: Node, local: dict[Value, int] | None) -> Hashable:
        refs: tuple[Any, ...] = n.inputs
        if refs and refs[-1] is None:
            trimmed = list(refs)
            while trimmed and trimmed[-1] is None:
                trimmed.pop()  # a trailing absent optional input is the same as none
            refs = tuple(trimmed)
        if local is not None:
            refs = tuple([None if v is None else local.get(v, v) for v in refs])
        if len(refs) == 2 and n.op_type in _COMMUTATIVE and _domain(n.domain) == "" and None not in refs:
            return frozenset(refs)  # {a, b} == {b, a}; Add(a, a) gives {a}, which only Add(a, a) matches
        return refs

    @staticmethod
    def outputs_key(n: Node) -> Hashable:
        """Output arity and which optional outputs are absent (a bool for the common single output)."""
        outs = n.outputs
        if len(outs) == 1:
            return bool(outs[0].name)
        return tuple(bool(v.name) for v in outs)

    # -- attributes --------------------------------------------------------------------------------------------
    def attrs_key(self, n: Node, local: dict[Value, int] | None = None) -> tuple | None:
        """The attributes' canonical encoding, by name; subgraphs structurally (numbering in `local`)."""
        attrs = n.attrs
        if not attrs:
            return ()
        if local is None:
            local = {}
        out = []
        for name in sorted(attrs):
            k = self.attr_key(attrs[name], local)
            if k is None:
                return None
            out.append(k)
        return tuple(out)

    def attr_key(self, a: Attr, local: dict[Value, int]) -> Hashable | None:
        t = a.type
        if a.ref_attr_name:
            return (a.name, t, "ref", a.ref_attr_name)
        if t == AttrType.INT:
            return (a.name, t, int(a.value))
        if t == AttrType.FLOAT:
            # stored as float32: compare what the model holds (bits, so that -0.0 and NaNs are told apart)
            return (a.name, t, np.float32(a.value).tobytes())
        if t == AttrType.STRING:
            return (a.name, t, _bytes(a.value))
        if t == AttrType.INTS:
            return (a.name, t, tuple(int(x) for x in a.value))
        if t == AttrType.FLOATS:
            return (a.name, t, np.asarray(a.value, dtype=np.float32).tobytes())
        if t == AttrType.STRINGS:
            return (a.name, t, tuple(_bytes(x) for x in a.value))
        if t in (AttrType.TENSOR, AttrType.SPARSE_TENSOR):
            k = tensor_key(a.value, self.max_tensor_bytes)
            return None if k is None else (a.name, t, k)
        if t in (AttrType.TENSORS, AttrType.SPARSE_TENSORS):
            ks = [tensor_key(x, self.max_tensor_bytes) for x in a.value]
            return None if any(k is None for k in ks) else (a.name, t, tuple(ks))
        if t == AttrType.GRAPH:
            k = self._graph_key(a.value, local)
            return None if k is None else (a.name, t, k)
        if t == AttrType.GRAPHS:
            gs = []
            for sg in a.value:
                k = self._graph_key(sg, local)
                if k is None:
                    return None
                gs.append(k)
            return (a.name, t, tuple(gs))
        proto = a.proto
        if proto is not None:  # type protos and anything rarer: as serialized
            return (a.name, t, "proto", proto.SerializeToString())
        return None

    # -- graphs ------------------------------------------------------------------------------------------------
    def graph_key(self, g: Graph) -> tuple | None:
        """A structural key of a subgraph: equal keys mean the graphs compute the same outputs from the same
        positional inputs and the same outer values. None when the graph holds an op that must not be merged."""
        return self._graph_key(g, {})

    def _graph_key(self, g: Graph, local: dict[Value, int]) -> tuple | None:
        for v in g.inputs:
            local[v] = len(local)
        inits = []
        for v in g.initializers.values():
            tk = tensor_key(v.const, self.max_tensor_bytes)  # type: ignore[arg-type]
            if tk is None:
                return None
            inits.append((local.get(v), tk))  # an initializer that is also an input keeps its input number
            if v not in local:
                local[v] = len(local)
        nodes = []
        for n in g:
            k = self.node_key(n, local)
            if k is None:
                return None
            nodes.append(k)
            for v in n.outputs:
                local[v] = len(local)
        outs = tuple(local.get(v, v) for v in g.outputs)
        return ("G", len(g.inputs), tuple(inits), tuple(nodes), outs)

    def node_key(self, n: Node, local: dict[Value, int]) -> tuple | None:
        """The full key of a node inside a graph being keyed structurally."""
        if not self.purity.op_is_pure(n.domain, n.op_type, n.overload):
            return None
        ak = self.attrs_key(n, local)
        if ak is None:
            return None
        return (n.op_type, _domain(n.domain), n.overload, self.inputs_key(n, local), self.outputs_key(n), ak)


def _bytes(s: str | bytes) -> bytes:
    return s if isinstance(s, bytes) else s.encode("utf-8", errors="surrogateescape")


# ----------------------------------------------------------------------------------------------------------------
# The scoped, two-level hash table
# ----------------------------------------------------------------------------------------------------------------
class _Bucket:
    """The objects sharing a cheap key, by full key."""

    __slots__ = ("full",)

    def __init__(self) -> None:
        self.full: dict[Hashable, Any] = {}


class ScopedTable:
    """Finds an earlier equal object by a cheap key, then (only on a cheap-key collision) by a full key.

    ``push``/``pop`` open and close a scope: what is added inside is forgotten on ``pop``; what was added outside
    stays visible inside. `full_key` is called at most once per object and may return None (never equal to
    anything).
    """

    def __init__(self, full_key: Callable[[Any], Hashable | None]):
        self._table: dict[Hashable, _Bucket] = {}
        self._log: list[list[tuple[Any, Hashable]]] = [[]]
        self._full_key = full_key

    def push(self) -> None:
        self._log.append([])

    def pop(self) -> None:
        for bucket, key in reversed(self._log.pop()):
            if bucket is None:
                del self._table[key]
            else:
                bucket.full.pop(key, None)

    def find_or_add(self, cheap: Hashable, obj: Any) -> Any:
        """An earlier object equal to `obj`, or None (and `obj` is remembered in the current scope)."""
        table = self._table
        b = table.get(cheap)
        if b is None:
            # the only object with this cheap key so far: stored as is, its full key not computed
            table[cheap] = obj
            self._log[-1].append((None, cheap))
            return None
        if type(b) is not _Bucket:
            # a second object: the first (whatever scope added it) moves to the full-key level, in a bucket that
            # goes with the first's table entry when its scope closes
            first = b
            b = table[cheap] = _Bucket()
            pk = self._full_key(first)
            if pk is not None:
                b.full[pk] = first
        fk = self._full_key(obj)
        if fk is None:
            return None
        hit = b.full.get(fk)
        if hit is not None:
            return hit
        b.full[fk] = obj
        self._log[-1].append((b, fk))
        return None


# ----------------------------------------------------------------------------------------------------------------
# The pass
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CommonSubexpressionElimination(Pass):
    """Merges equal nodes and equal constant initializers, in every graph and across scopes where legal."""

    name: ClassVar[str] = "cse"
    kind: ClassVar[str] = "cleanup"
    summary: ClassVar[str] = "merge nodes that compute the same thing, and equal constant initializers"
    presets: ClassVar[frozenset[str]] = frozenset({"O1", "O2", "O3"})

    max_tensor_bytes: int = option(64 << 20, "tensors larger than this are not hashed to find duplicates "
                                             "(hashing reads external data files); -1: no limit")

    def run(self, model: Model, ctx: Any) -> PassResult:
        w = _Walker(model, ctx, KeyMaker(FunctionPurity(model), int(self.max_tensor_bytes)))
        changes = getattr(ctx, "changes", None)
        try:
            if changes is None or changes.full or not w.walk_changed(changes):
                w.walk(model.graph)
        finally:
            w.close()
        ctx.current_node = None
        ctx.current_step = None
        return PassResult.of(nodes_merged=w.nodes_merged, initializers_merged=w.inits_merged)


class _Walker:
    def __init__(self, model: Model, ctx: Any, keys: KeyMaker):
        self.model = model
        self.ctx = ctx
        self.keys = keys
        self.purity = keys.purity
        self.nodes = ScopedTable(self._node_full_key)
        self.tensors = ScopedTable(self._tensor_full_key)
        self.nodes_merged = 0
        self.inits_merged = 0
        self._exact: dict[Hashable, Value] = {}
        self._pure: dict[tuple[str, str, str], bool] = {}

    def close(self) -> None:
        """Drop the tables (they refer back to the walker: without this only the cyclic GC would free them)."""
        self.nodes = self.tensors = None  # type: ignore[assignment]
        self._exact = {}

    def _node_full_key(self, n: Node) -> Hashable | None:
        return self.keys.attrs_key(n)

    def _tensor_full_key(self, v: Value) -> Hashable | None:
        t = v.const
        assert t is not None
        mb = self.keys.max_tensor_bytes
        if mb >= 0 and t.nbytes > mb:
            return None
        return t.sample_digest()

    def walk_changed(self, changes: Any) -> bool:
        """Look only at what `changes` can have made equal (see the module docs); False (nothing done) when the
        model has subgraphs or the changes are inside one: then the whole walk runs."""
        g = self.model.graph
        zero_input = False
        cand: dict[Node, None] = {}
        for n in changes.nodes:
            if n.graph is not g or n._erased:
                if n.graph is not None and not n._erased:
                    return False  # a change inside a subgraph
                continue
            if n._subgraphs:
                return False
            cand[n] = None
            best = None
            for v in n._inputs:
                if v is not None and (best is None or len(v._uses) < len(best._uses)):
                    best = v
            if best is None:
                zero_input = True
                continue
            for u, _ in best._uses:
                if u.graph is g:
                    cand[u] = None
        order = []
        for n in g:
            if n._subgraphs:
                return False
            if n in cand or (zero_input and not any(v is not None for v in n._inputs)):
                order.append(n)
        self.ctx.current_step = "initializers"
        self._initializers(g, only=[v for v in changes.values if v._graph is g and v.producer is None])
        self.ctx.current_step = "nodes"
        for n in order:
            if n.graph is g and not n._erased:
                self._visit(n)
        return True

    def walk(self, g: Graph, *, top: bool = True) -> None:
        if not top:
            self.nodes.push()
            self.tensors.push()
        self.ctx.current_step = "initializers"
        self._initializers(g)
        self.ctx.current_step = "nodes"
        for n in g:
            subs = n.subgraphs()
            if subs:
                for sg in subs:
                    self.walk(sg, top=False)
            self._visit(n)
        if not top:  # the main graph's entries just go with the tables
            self.tensors.pop()
            self.nodes.pop()

    # -- initializers ------------------------------------------------------------------------------------------
    def _initializers(self, g: Graph, only: list[Value] | None = None) -> None:
        inits = list(g.initializers.values())
        if not inits:
            return
        if only is not None:
            # later runs: the new or changed initializers against every one sharing their dtype and shape
            news = {v: None for v in only if g._initializers.get(v._name) is v}  # type: ignore[arg-type]
            if not news:
                return
            keys = {(v.const.dtype, v.const.shape, v.const.is_sparse) for v in news}  # type: ignore[union-attr]
            inits = [v for v in inits if v in news or (v.const.dtype, v.const.shape,  # type: ignore[union-attr]
                                                      v.const.is_sparse) in keys]  # type: ignore[union-attr]
        inputs = set(g._inputs)
        overridable = g.owner is None and (self.model.ir_version >= 4)
        for v in inits:
            t = v._const
            assert t is not None
            if v in inputs and (overridable or g.owner is not None):
                continue  # an overridable default (IR>=4 input) or positional subgraph plumbing
            cheap = (t.dtype, t.shape, t._sparse)
            hit = self.tensors.find_or_add(cheap, v)
            if hit is not None and not same_tensor_bytes(hit.const, t):
                # the same sample, other bytes: tell them apart by their full digests from now on
                hit = self._exact_match(g, cheap, hit, v)
            if hit is None:
                continue
            if v.is_graph_output():
                continue  # its name is interface; keeping it costs nothing an Identity would not
            v.replace_all_uses_with(hit)
            g.remove_initializer(v)
            if v in inputs:
                g.remove_input(v)  # IR<4 plumbing (checked above: a constant listed as an input)
            self.inits_merged += 1

    def _exact_match(self, g: Graph, cheap: Hashable, first: Value, v: Value) -> Value | None:
        """For tensors whose sample digests agree but bytes do not: an earlier equal tensor of the same graph by
        full digest (bytes compared), or None (and `v` is remembered)."""
        table = self._exact
        t = v.const
        assert t is not None and first.const is not None
        if first.graph is g:
            table.setdefault((g, cheap, first.const.digest()), first)
        key = (g, cheap, t.digest())
        hit = table.get(key)
        if hit is not None and same_tensor_bytes(hit.const, t):
            return hit
        table.setdefault(key, v)
        return None

    # -- nodes -------------------------------------------------------------------------------------------------
    def _visit(self, n: Node) -> None:
        outs = n._outputs
        if not outs:
            return  # a node with no outputs exists for an effect: keep every one
        op, dom, ov = n.op_type, n.domain, n.overload
        pure = self._pure.get((dom, op, ov))
        if pure is None:
            pure = self._pure[(dom, op, ov)] = self.purity.op_is_pure(dom, op, ov)
        if not pure:
            return
        ins = n._inputs
        if not ins or (ins[-1] is not None and (len(ins) != 2 or op not in _COMMUTATIVE)):
            ik: Hashable = tuple(ins)  # the common case of KeyMaker.inputs_key
        else:
            ik = self.keys.inputs_key(n, None)
        ok: Hashable = bool(outs[0]._name) if len(outs) == 1 else tuple(bool(v._name) for v in outs)
        cheap = (op, _domain(dom), ov, ik, ok)
        first = self.nodes.find_or_add(cheap, n)
        if first is None:
            return
        self.ctx.current_node = n
        if not self._can_replace(n, first) or not _same_top_tensors(n, first):
            return
        for old, new in zip(outs, first.outputs):
            old.replace_all_uses_with(new)
        g = n.graph
        assert g is not None
        g.remove(n)
        self.nodes_merged += 1

    @staticmethod
    def _can_replace(n: Node, first: Node) -> bool:
        """Whether every output of `n` can be replaced by the matching output of `first` without an Identity."""
        for old, new in zip(n.outputs, first.outputs):
            ogs = list(dict.fromkeys(old.output_graphs()))
            if not ogs:
                continue
            # the output's name must move to `new`: one graph only, and `new` must be able to take it
            if len(ogs) > 1 or not ogs[0].can_alias_output(new):
                return False
        return True


def _same_top_tensors(a: Node, b: Node) -> bool:
    """Byte equality of the tensor attributes of two nodes whose keys matched (digests can collide)."""
    if not a.attrs:
        return True
    for name, x in a.attrs.items():
        if x.type in (AttrType.TENSOR, AttrType.SPARSE_TENSOR):
            y = b.attrs[name]
            if not same_tensor_bytes(x.value, y.value):
                return False
        elif x.type in (AttrType.TENSORS, AttrType.SPARSE_TENSORS):
            ys = b.attrs[name].value
            if not all(same_tensor_bytes(p, q) for p, q in zip(x.value, ys)):
                return False
    return True
