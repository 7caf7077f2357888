"""The graph IR: Value, Node, Graph, Model.

Guarantees kept by every method here (passes rely on them and never edit internals behind the IR's back):

* Use-def is owned by the IR. A :class:`Value` knows its producer (node, output index) and its uses, each a
  ``(node, input_index)`` pair; ``uses()`` returns a snapshot so that a loop may mutate safely. A node inside a
  subgraph that reads an outer-scope value is a real use of that value.
* Edges change only through :meth:`Node.replace_input_with` and :meth:`Value.replace_all_uses_with`.
* :meth:`Graph.remove` refuses to remove a node whose outputs are still read or are graph outputs, and then
  leaves the graph unchanged.
* Identity, not equality: Value and Node never override ``__eq__``/``__hash__``; key dicts by object.
* Nodes live in an ordered linked list that tolerates insertion and removal during iteration.
* Every mutator records its inverse in the model's :class:`Journal` when one is open, so a failed pass can be
  rolled back without cloning the graph, and bumps ``Model.mutations`` so that a pass's "changed" flag can be
  cross-checked.
* Lossless and cheap serialization: a node that nothing touched keeps its original serialized form, which
  :mod:`graphopt.ir.serde` writes back as is.
"""

from __future__ import annotations

import types
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from .shapes import MapType, OpaqueType, OptionalType, SequenceType, Shape, SparseTensorType, TensorType, Type
from .tensors import Tensor, _serde

Use = tuple  # (node: Node, input_index: int)



class IRError(Exception):
    """Misuse of the IR API (a bug in a pass, not bad input)."""


_UNSET: Any = object()
_TYPES = (TensorType, SparseTensorType, SequenceType, OptionalType, MapType, OpaqueType)


# ----------------------------------------------------------------------------------------------------------------
# Journal
# ----------------------------------------------------------------------------------------------------------------
class ChangeTracker:
    """Counts what a pass did: nodes added, removed, and touched (rewritten in place)."""

    __slots__ = ("added", "removed", "touched")

    def __init__(self) -> None:
        self.added: dict[Node, None] = {}
        self.removed = 0
        self.touched: dict[Node, None] = {}

    def rewritten(self) -> int:
        return sum(1 for n in self.touched if n.is_alive and n not in self.added)


class ChangeLog:
    """The nodes changed since the log was last taken: touched (inputs, attributes, names), added or removed, and
    the owners of subgraphs whose interface changed, and the readers of an initializer whose tensor was replaced.

    An observer that keeps facts derived from the graph (the JIT context's shape symbols) holds one (see
    :meth:`Model.watch`) and brings its facts up to date from what the log names, instead of from the whole graph.
    The model holds the log weakly: dropping the observer stops the recording."""

    __slots__ = ("nodes", "nearby", "values", "__weakref__")

    def __init__(self) -> None:
        self.nodes: dict[Node, None] = {}
        # nodes whose neighbourhood changed without an edit of their own: the producer of a value that lost a
        # reader (it may be dead now), and the few readers left of such a value (one may be its only reader now)
        self.nearby: dict[Node, None] = {}
        # initializers added, given another tensor, or left with a reader less
        self.values: dict[Value, None] = {}

    def take(self) -> list[Node]:
        """The nodes recorded since the last call (`nodes`), in first-change order; the log starts empty again
        (`nearby` included)."""
        out = list(self.nodes)
        self.nodes.clear()
        self.nearby.clear()
        self.values.clear()
        return out

    def __len__(self) -> int:
        return len(self.nodes)


def _log_node(m: Model, node: Node) -> None:
    for r in m._logs:
        lg = r()
        if lg is not None:
            lg.nodes[node] = None


def _log_value(m: Model, v: Value) -> None:
    for r in m._logs:
        lg = r()
        if lg is not None:
            lg.values[v] = None


# a value left with more readers than this does not log them when it loses one (a shared constant read by every
# layer): no pattern over its readers depends on how many there are beyond a handful
_NEARBY_FANOUT = 4


def _lost_use(m: Model, v: Value) -> None:
    """Log the neighbourhood of `v`, which just lost a reader (see ChangeLog.nearby)."""
    p = v.producer
    few = len(v._uses) <= _NEARBY_FANOUT
    for r in m._logs:
        lg = r()
        if lg is not None:
            if p is not None:
                lg.nearby[p] = None
            elif v._const is not None:
                lg.values[v] = None
            if few:
                for u, _ in v._uses:
                    lg.nearby[u] = None


class Journal:
    """Undo records for the mutations made while it is open (see :meth:`Model.journal`)."""

    __slots__ = ("entries", "__weakref__")

    def __init__(self) -> None:
        self.entries: list[Callable[[], None]] = []

    def __len__(self) -> int:
        return len(self.entries)


# ----------------------------------------------------------------------------------------------------------------
# Value
# ----------------------------------------------------------------------------------------------------------------
class Value:
    """A named SSA value: a graph input, an initializer (``const`` is set), or a node output."""

    __slots__ = ("_name", "producer", "index", "_uses", "_graph", "_const", "_type", "_type_src", "_vi",
                 "_type_changed", "_out_graphs", "meta", "__weakref__")

    def __init__(self, name: str | None = None, *, type: Type | None = None, const: Tensor | None = None):
        self._name = name
        self.producer: Node | None = None
        self.index = 0
        self._uses: dict[tuple, None] = {}
        self._graph: Graph | None = None
        self._const = const
        self._type: Any = type
        self._type_src: Any = None
        self._vi: Any = None
        self._type_changed = type is not None
        self._out_graphs: list[Graph] | None = None
        self.meta: dict[str, Any] | None = None

    # -- identity and naming ---------------------------------------------------------------------------------
    @property
    def name(self) -> str | None:
        return self._name

    @name.setter
    def name(self, new: str) -> None:
        self.rename(new)

    def rename(self, new: str, *, _reserved: bool = False) -> None:
        """Rename the value; the name must be free in the model. Producer and readers are re-serialized."""
        old = self._name
        if new == old:
            return
        model = self._model()
        if model is not None:
            names = model._name_set()
            if new in names and not _reserved and new not in model._fresh:
                raise IRError(f"cannot rename {old!r} to {new!r}: the name is taken")
            model._fresh.discard(new)
            if old:
                names.discard(old)
            names.add(new)
        g = self.graph
        if g is not None and self._const is not None and g._initializers.get(old) is self:
            inits = g._initializers
            g._initializers = {(new if k == old else k): v for k, v in inits.items()}
        self._name = new
        self._touch_all()
        if model is not None:
            model._mutated()
            j = model._journal
            if j is not None:
                j.entries.append(lambda: self.rename(old, _reserved=True))  # type: ignore[arg-type]

    def _touch_all(self) -> None:
        if self.producer is not None:
            self.producer._touch()
        for node, _ in self._uses:
            node._touch()
        if self._out_graphs:
            for g in self._out_graphs:
                g._touch()
        g = self.graph
        if g is not None and (self._const is not None or self in g._input_set()):
            g._touch()

    # -- where it comes from -----------------------------------------------------------------------------------
    @property
    def graph(self) -> Graph | None:
        """The graph that defines this value."""
        p = self.producer
        if p is not None:
            return p.graph
        return self._graph

    def _model(self) -> Model | None:
        g = self.graph
        return g.model if g is not None else None

    @property
    def const(self) -> Tensor | None:
        """The initializer tensor, or None. See :meth:`is_constant` for whether it may be folded."""
        return self._const

    def is_initializer(self) -> bool:
        return self._const is not None

    def is_graph_input(self) -> bool:
        g = self._graph
        return self.producer is None and g is not None and self in g._input_set()

    def is_constant(self) -> bool:
        """True when the value is an initializer that the user cannot override.

        From IR version 4 on, an initializer that is also listed as a graph input is a default that a caller may
        replace, so it is not a constant. Before IR version 4 every initializer had to be listed as an input
        and all of them are constants.
        """
        if self._const is None:
            return False
        g = self._graph
        if g is None:
            return True
        if g.owner is None and self in g._input_set():
            m = g.model
            return m is not None and m.ir_version < 4
        return True

    # -- type ------------------------------------------------------------------------------------------------
    @property
    def type(self) -> Type | None:
        if self._type is _UNSET:
            serde = _serde()

            self._type = serde.type_from_proto(self._type_src)
        return self._type

    @type.setter
    def type(self, t: Type | None) -> None:
        old = self.type
        if t == old:
            return
        old_changed = self._type_changed
        self._type = t
        self._type_changed = True
        self._type_src = None
        self._touch_decl()
        model = self._model()
        if model is not None:
            model._mutated()
            j = model._journal
            if j is not None:
                def undo() -> None:
                    self._type = old
                    self._type_changed = old_changed
                j.entries.append(undo)

    def _touch_decl(self) -> None:
        """Mark the graph that declares this value's type (input, output or value_info) as changed."""
        g = self.graph
        if g is not None:
            g._touch()
        if self._out_graphs:
            for og in self._out_graphs:
                og._touch()

    @property
    def dtype(self) -> int | None:
        t = self.type
        return getattr(t, "dtype", None) if t is not None else None

    @property
    def shape(self) -> Shape | None:
        t = self.type
        if isinstance(t, TensorType):
            return t.shape
        c = self._const
        if c is not None:
            return c.shape
        return None

    def set_tensor_type(self, dtype: int | None, shape: Shape | None) -> None:
        """Set a tensor type; `dtype` None keeps the current dtype."""
        if dtype is None:
            dtype = self.dtype or 0
        self.type = TensorType(int(dtype), None if shape is None else tuple(shape))

    # -- uses --------------------------------------------------------------------------------------------------
    def uses(self) -> tuple[Use, ...]:
        """A snapshot of ``(node, input_index)`` pairs reading this value, subgraph readers included."""
        return tuple(self._uses)

    def num_uses(self) -> int:
        return len(self._uses)

    def consumers(self) -> list[Node]:
        """The distinct nodes reading this value, in first-use order."""
        return list(dict.fromkeys(n for n, _ in self._uses))

    def is_graph_output(self, graph: Graph | None = None) -> bool:
        """Whether the value is an output of `graph` (of any graph when None)."""
        og = self._out_graphs
        if not og:
            return False
        return graph is None or graph in og

    def is_model_output(self) -> bool:
        og = self._out_graphs
        return bool(og) and any(g.owner is None for g in og)

    def output_graphs(self) -> tuple[Graph, ...]:
        return tuple(self._out_graphs or ())

    def is_used(self) -> bool:
        return bool(self._uses) or bool(self._out_graphs)

    def replace_all_uses_with(self, new: Value, *, outputs: bool = True) -> None:
        """Make every reader of this value read `new` instead.

        With `outputs` (the default) graph outputs follow too. The model's interface never changes: when this
        value is a graph output, `new` takes over its name if it can (a node output of that graph that is no
        graph output yet); otherwise an Identity node keeps the output's name.
        """
        if new is self:
            return
        for node, i in tuple(self._uses):
            node.replace_input_with(i, new)
        if outputs and self._out_graphs:
            for g in tuple(dict.fromkeys(self._out_graphs)):
                g._redirect_output(self, new)

    def __repr__(self) -> str:
        return f"Value({self._name!r})"


# ----------------------------------------------------------------------------------------------------------------
# Attributes
# ----------------------------------------------------------------------------------------------------------------
class AttrType:
    UNDEFINED = 0
    FLOAT = 1
    INT = 2
    STRING = 3
    TENSOR = 4
    GRAPH = 5
    FLOATS = 6
    INTS = 7
    STRINGS = 8
    TENSORS = 9
    GRAPHS = 10
    SPARSE_TENSOR = 11
    SPARSE_TENSORS = 12
    TYPE_PROTO = 13
    TYPE_PROTOS = 14


class Attr:
    """A node attribute. Loaded attributes stay serialized until a pass reads their value."""

    __slots__ = ("name", "type", "_value", "_proto", "ref_attr_name", "_base_dir")

    def __init__(self, name: str, type: int, value: Any = _UNSET, *, ref_attr_name: str = ""):
        self.name = name
        self.type = type
        self._value = value
        self._proto: Any = None
        self.ref_attr_name = ref_attr_name
        self._base_dir: str | None = None

    @property
    def value(self) -> Any:
        if self._value is _UNSET:
            serde = _serde()

            self._value = serde.attr_value(self._proto, self._base_dir)
        return self._value

    @property
    def proto(self) -> Any:
        """The attribute as loaded, or None for an attribute a pass made."""
        return self._proto

    def __repr__(self) -> str:
        return f"Attr({self.name}={self.value!r})"


def make_attr(name: str, value: Any) -> Attr:
    """An attribute from a Python value: int, float, str/bytes, Tensor/ndarray, Graph, or a list of these."""
    import numpy as np

    if isinstance(value, Attr):
        return value
    if isinstance(value, bool):
        return Attr(name, AttrType.INT, int(value))
    if isinstance(value, (int, np.integer)):
        return Attr(name, AttrType.INT, int(value))
    if isinstance(value, (float, np.floating)):
        return Attr(name, AttrType.FLOAT, float(value))
    if isinstance(value, (str, bytes)):
        return Attr(name, AttrType.STRING, value)
    if isinstance(value, Tensor):
        return Attr(name, AttrType.TENSOR, value)
    if isinstance(value, np.ndarray):
        return Attr(name, AttrType.TENSOR, Tensor.from_numpy(value))
    if isinstance(value, Graph):
        return Attr(name, AttrType.GRAPH, value)
    if isinstance(value, _TYPES):
        return Attr(name, AttrType.TYPE_PROTO, value)
    if isinstance(value, (list, tuple)):
        vals = list(value)
        if not vals:
            return Attr(name, AttrType.INTS, [])
        v0 = vals[0]
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) or isinstance(v, bool) for v in vals):
            return Attr(name, AttrType.INTS, [int(v) for v in vals])
        if all(isinstance(v, (int, float, np.integer, np.floating)) for v in vals):
            return Attr(name, AttrType.FLOATS, [float(v) for v in vals])
        if isinstance(v0, (str, bytes)):
            return Attr(name, AttrType.STRINGS, vals)
        if isinstance(v0, Tensor):
            return Attr(name, AttrType.TENSORS, vals)
        if isinstance(v0, Graph):
            return Attr(name, AttrType.GRAPHS, vals)
        if isinstance(v0, _TYPES):
            return Attr(name, AttrType.TYPE_PROTOS, vals)
    raise IRError(f"cannot make attribute {name!r} from {type(value).__name__}")


# ----------------------------------------------------------------------------------------------------------------
# Node
# ----------------------------------------------------------------------------------------------------------------
class Node:
    """An operator application. Inputs are read-only; edit them with :meth:`replace_input_with`."""

    __slots__ = ("op_type", "domain", "_overload", "_name", "_inputs", "_outputs", "graph", "_prev", "_next",
                 "_erased", "_proto", "_dirty", "_attrs", "_subgraphs", "_registered", "meta", "_base_dir",
                 "_doc", "__weakref__")

    def __init__(
        self,
        op_type: str,
        inputs: Sequence[Value | None] = (),
        *,
        outputs: int | Sequence[str | None] = 1,
        attrs: Mapping[str, Any] | Iterable[Attr] | None = None,
        domain: str = "",
        name: str = "",
        overload: str = "",
    ):
        self.op_type = op_type
        self.domain = domain
        self._overload = overload
        self._name = name
        self._doc = ""
        self.graph: Graph | None = None
        self._prev: Any = None
        self._next: Any = None
        self._erased = False
        self._proto: Any = None
        self._dirty = True
        self._subgraphs: list[Graph] | None = None
        self.meta: dict[str, Any] | None = None
        self._base_dir: str | None = None
        self._attrs: dict[str, Attr] | None = {}
        if attrs:
            items = attrs.values() if isinstance(attrs, Mapping) and all(
                isinstance(a, Attr) for a in attrs.values()) else None
            if items is not None:
                for a in items:
                    self._attrs[a.name] = a
            elif isinstance(attrs, Mapping):
                for k, v in attrs.items():
                    if v is not None:
                        self._attrs[k] = make_attr(k, v)
            else:
                for a in attrs:
                    self._attrs[a.name] = a
            for a in self._attrs.values():
                self._adopt_attr(a)
        self._inputs: list[Value | None] = list(inputs)
        for v in self._inputs:
            if v is not None and not isinstance(v, Value):
                raise IRError(f"{op_type}: inputs must be Values or None, got {type(v).__name__}")
        if isinstance(outputs, int):
            outs = [Value(None) for _ in range(outputs)]
        else:
            outs = [Value(n) for n in outputs]
        for i, v in enumerate(outs):
            v.producer = self
            v.index = i
        self._outputs: list[Value] = outs
        # Reads become uses when the node is linked into a graph of the model, not before: a node that a rewrite
        # builds and then drops must not keep its inputs alive.
        self._registered = False

    # -- basic accessors ---------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        n = self._name
        if n is _UNSET:
            n = self._name = self._proto.name
        return n

    @name.setter
    def name(self, new: str) -> None:
        old = self.name
        if old == new:
            return
        self._name = new
        self._touch()
        self._journal_add(lambda: setattr(self, "name", old))

    @property
    def overload(self) -> str:
        o = self._overload
        if o is _UNSET:
            o = self._overload = self._proto.overload
        return o

    @property
    def doc_string(self) -> str:
        d = self._doc
        if d is _UNSET:
            d = self._doc = self._proto.doc_string
        return d

    @property
    def inputs(self) -> tuple[Value | None, ...]:
        return tuple(self._inputs)

    @property
    def outputs(self) -> tuple[Value, ...]:
        return tuple(self._outputs)

    def input(self, i: int) -> Value | None:
        """Input `i`, or None when absent (optional inputs past the end included)."""
        ins = self._inputs
        return ins[i] if i < len(ins) else None

    @property
    def output(self) -> Value:
        """The first output (most ops have one)."""
        return self._outputs[0]

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def is_alive(self) -> bool:
        return self.graph is not None and not self._erased

    @property
    def as_loaded(self) -> bool:
        """Whether the node is exactly as read from its file: nothing (its subgraphs included) changed it since."""
        return not self._dirty and self._proto is not None

    def _model(self) -> Model | None:
        g = self.graph
        return g.model if g is not None else None

    def _journal_add(self, undo: Callable[[], None]) -> None:
        g = self.graph
        m = g.model if g is not None else None
        if m is not None:
            m._mutated()
            j = m._journal
            if j is not None:
                j.entries.append(undo)

    def _touch(self) -> None:
        """Mark this node (and the nodes owning enclosing subgraphs) as changed, for re-serialization."""
        self._dirty = True
        g = self.graph
        if g is not None:
            g._touch()
            m = g.model
            if m is not None:
                if m._track is not None:
                    m._track.touched[self] = None
                if m._logs:
                    _log_node(m, self)

    # -- attributes ------------------------------------------------------------------------------------------
    @property
    def attrs(self) -> Mapping[str, Attr]:
        """Attributes by name, in their original order (read-only; use :meth:`set_attr`)."""
        if self._attrs is None:
            serde = _serde()

            self._attrs = serde.attrs_from_proto(self)
        return types.MappingProxyType(self._attrs)

    def attr(self, name: str, default: Any = None) -> Any:
        """The Python value of attribute `name`, or `default`."""
        a = self.attrs.get(name)
        return default if a is None else a.value

    def has_attr(self, name: str) -> bool:
        return name in self.attrs

    def set_attr(self, name: str, value: Any) -> None:
        """Set (or add, at the end) an attribute from a Python value or an :class:`Attr`."""
        self.attrs  # noqa: B018 - make sure the attributes are parsed
        assert self._attrs is not None
        old = self._attrs.get(name)
        a = make_attr(name, value)
        self._adopt_attr(a)
        self._attrs[name] = a
        self._refresh_subgraphs()
        self._touch()

        def undo() -> None:
            assert self._attrs is not None
            if old is None:
                self._attrs.pop(name, None)
            else:
                self._attrs[name] = old
            self._refresh_subgraphs()
            self._touch()

        self._journal_add(undo)

    def del_attr(self, name: str) -> None:
        self.attrs  # noqa: B018
        assert self._attrs is not None
        if name not in self._attrs:
            return
        old_items = list(self._attrs.items())
        del self._attrs[name]
        self._refresh_subgraphs()
        self._touch()

        def undo() -> None:
            self._attrs = dict(old_items)
            self._refresh_subgraphs()
            self._touch()

        self._journal_add(undo)

    def _adopt_attr(self, a: Attr) -> None:
        if a.type == AttrType.GRAPH and isinstance(a._value, Graph):
            a._value._adopt(self)
        elif a.type == AttrType.GRAPHS and a._value is not _UNSET:
            for g in a._value:
                g._adopt(self)

    def _refresh_subgraphs(self) -> None:
        old = self._subgraphs or []
        subs: list[Graph] = []
        assert self._attrs is not None
        for a in self._attrs.values():
            if a.type == AttrType.GRAPH:
                subs.append(a.value)
            elif a.type == AttrType.GRAPHS:
                subs.extend(a.value)
        self._subgraphs = subs or None
        g = self.graph
        if g is not None and not self._erased and g._attached():
            # a subgraph swapped out stops reading outer values; one swapped in starts
            for sg in old:
                if not any(sg is x for x in subs):
                    _graph_registration(sg, False)
            for sg in subs:
                if not any(sg is x for x in old):
                    _graph_registration(sg, True)

    def subgraphs(self) -> tuple[Graph, ...]:
        """Graph-valued attributes (If branches, Loop and Scan bodies...), in attribute order."""
        return tuple(self._subgraphs) if self._subgraphs else ()

    def implicit_inputs(self) -> list[Value]:
        """Values defined outside this node that its subgraphs read (deduplicated, in first-read order)."""
        if not self._subgraphs:
            return []
        inner: set[int] = set()
        seen: dict[Value, None] = {}
        stack = list(self._subgraphs)
        graphs: list[Graph] = []
        while stack:
            g = stack.pop()
            graphs.append(g)
            inner.add(id(g))
            for n in g:
                if n._subgraphs:
                    stack.extend(n._subgraphs)
        for g in graphs:
            for n in g:
                for v in n._inputs:
                    if v is not None and id(v.graph) not in inner:
                        seen[v] = None
            for v in g._outputs:
                if id(v.graph) not in inner:
                    seen[v] = None
        return list(seen)

    # -- edges -------------------------------------------------------------------------------------------------
    def _register_uses(self) -> None:
        if self._registered:
            return
        for i, v in enumerate(self._inputs):
            if v is not None:
                v._uses[(self, i)] = None
        self._registered = True

    def _unregister_uses(self) -> None:
        if not self._registered:
            return
        for i, v in enumerate(self._inputs):
            if v is not None:
                v._uses.pop((self, i), None)
        self._registered = False

    def replace_input_with(self, index: int, value: Value | None) -> None:
        """Make input `index` read `value` (None = absent optional input)."""
        ins = self._inputs
        old = ins[index]
        if old is value:
            return
        if self._registered:
            if old is not None:
                old._uses.pop((self, index), None)
            if value is not None:
                value._uses[(self, index)] = None
        ins[index] = value
        self._touch()
        if old is not None and self._registered:
            g = self.graph
            m = g.model if g is not None else None
            if m is not None and m._logs:
                _lost_use(m, old)
        self._journal_add(lambda: self.replace_input_with(index, old))

    def set_inputs(self, values: Sequence[Value | None]) -> None:
        """Replace the whole input list (its length may change)."""
        old = list(self._inputs)
        was = self._registered
        self._unregister_uses()
        self._inputs = list(values)
        if was:
            self._register_uses()
        self._touch()
        g = self.graph
        m = g.model if g is not None else None
        if was and m is not None and m._logs:
            for v in old:
                if v is not None:
                    _lost_use(m, v)

        def undo() -> None:
            self.set_inputs(old)

        self._journal_add(undo)

    def append_output(self, name: str | None = None) -> Value:
        v = Value(name)
        v.producer = self
        v.index = len(self._outputs)
        self._outputs.append(v)
        if self.graph is not None and self.graph.model is not None and v._name is None:
            v._name = self.graph.model.fresh_name(f"{self.op_type.lower()}_out")
        self._touch()
        self._journal_add(lambda: self._outputs.pop())
        return v

    def remove_output(self, index: int) -> None:
        """Drop output `index` (later outputs shift down). Refuses (IRError, nothing changed) when the output is
        still read or is a graph output; for ops with positional outputs (If, Loop) the caller keeps the
        subgraphs in step."""
        outs = self._outputs
        v = outs[index]
        if v._uses or v._out_graphs:
            raise IRError(f"cannot remove output {v.name!r} of {self!r}: it is still used")
        g = self.graph
        declared = g is not None and v in g._value_info
        if declared:
            assert g is not None
            g._snapshot_order("_value_info")
            del g._value_info[v]
        del outs[index]
        for i in range(index, len(outs)):
            outs[i].index = i
        self._touch()

        def undo() -> None:
            outs.insert(index, v)
            for i in range(index, len(outs)):
                outs[i].index = i
            if declared:
                assert g is not None
                g._value_info[v] = None
            self._touch()

        self._journal_add(undo)

    def _release(self) -> None:
        """Break the cycles a removed node still holds (its outputs point back at it), so that it is freed by
        reference counting once nothing else holds it. Only for a node removed for good (no journal can put it
        back): its outputs lose their producer."""
        if self.graph is not None and not self._erased:
            raise IRError(f"{self!r} is still in a graph")
        for v in self._outputs:
            v.producer = None
        self._outputs = []
        self._inputs = []
        self._prev = self._next = None

    def __repr__(self) -> str:
        dom = f"{self.domain}::" if self.domain else ""
        ins = ", ".join("" if v is None else str(v.name) for v in self._inputs)
        outs = ", ".join(str(v.name) for v in self._outputs)
        nm = self.name
        return f"Node({dom}{self.op_type}({ins}) -> {outs}{' ' + repr(nm) if nm else ''})"


def _nested_registration(node: Node, on: bool) -> None:
    """Register (`on`) or unregister the uses and graph-output marks held by the nodes and outputs of `node`'s
    subgraphs, at any depth. Idempotent both ways; called when `node` is linked into or unlinked from a graph, so
    that removing (or moving) a node with subgraphs keeps the use-def of outer values exact."""
    for sg in node._subgraphs or ():
        _graph_registration(sg, on)


def _graph_registration(graph: Graph, on: bool) -> None:
    """Register (`on`) or unregister the uses and graph-output marks of `graph` and its subgraphs, at any depth
    (idempotent both ways). Registering also names the values that were made without a name while the graph was
    detached, and reserves the graph's names in the model."""
    m = graph.model
    names = m._names if m is not None else None
    stack = [graph]
    while stack:
        g = stack.pop()
        for n in g:
            if on:
                n._register_uses()
                if m is not None:
                    for v in n._outputs:
                        if v._name is None:
                            v._name = m.fresh_name(f"{n.op_type.lower()}_out")
                        elif names is not None and v._name:
                            names.add(v._name)
            else:
                n._unregister_uses()
            if n._subgraphs:
                stack.extend(n._subgraphs)
        if on and names is not None:
            names.update(v._name for v in g._inputs if v._name)
            names.update(g._initializers)
        for v in dict.fromkeys(g._outputs):
            og = v._out_graphs
            if on:
                if og is None or not any(x is g for x in og):
                    slots = sum(1 for x in g._outputs if x is v)
                    v._out_graphs = (og or []) + [g] * slots
            elif og is not None:
                rest = [x for x in og if x is not g]
                v._out_graphs = rest or None


class _Sentinel:
    __slots__ = ("_prev", "_next", "_erased")

    def __init__(self) -> None:
        self._prev: Any = self
        self._next: Any = self
        self._erased = False


# ----------------------------------------------------------------------------------------------------------------
# Graph
# ----------------------------------------------------------------------------------------------------------------
class Graph:
    """A list of nodes with inputs, outputs and initializers; the main graph or a subgraph of a node."""

    def __init__(self, name: str = "", *, model: Model | None = None):
        self.name = name
        self.doc_string = ""
        self.model = model
        self.owner: Node | None = None
        self._head = _Sentinel()
        self._count = 0
        self._inputs: list[Value] = []
        self._inputs_set: set[Value] | None = None
        self._outputs: list[Value] = []
        self._in_vi: dict[Value, Any] = {}  # graph input -> ValueInfoProto as loaded
        self._out_vi: list[Any] = []  # one per output slot: the ValueInfoProto as loaded (the declared type)
        self._initializers: dict[str, Value] = {}
        self._value_info: dict[Value, None] = {}
        self._orphan_vi: list[Any] = []
        self._template: Any = None  # the loaded GraphProto minus its lists, for the fields we do not model
        self._dirty = True
        self._order_snaps: dict[str, weakref.ref[Journal]] = {}  # see _snapshot_order
        self.meta: dict[str, Any] = {}

    # -- structure ---------------------------------------------------------------------------------------------
    @property
    def parent(self) -> Graph | None:
        """The graph holding the node that owns this subgraph (None for the main graph)."""
        return self.owner.graph if self.owner is not None else None

    def _adopt(self, owner: Node) -> None:
        self.owner = owner
        m = owner.graph.model if owner.graph is not None else None
        if m is not None:
            self._set_model(m)

    def _set_model(self, m: Model) -> None:
        self.model = m
        for n in self:
            if n._subgraphs:
                for sg in n._subgraphs:
                    sg._set_model(m)

    def _touch(self) -> None:
        self._dirty = True
        m = self.model
        if m is not None:
            m.mutations += 1
            if m._logs and self.owner is not None:
                _log_node(m, self.owner)
        o = self.owner
        while o is not None and not o._dirty:
            o._dirty = True
            g = o.graph
            if g is None:
                break
            g._dirty = True
            o = g.owner

    def _journal(self, undo: Callable[[], None]) -> None:
        m = self.model
        if m is not None:
            m._mutated()
            j = m._journal
            if j is not None:
                j.entries.append(undo)

    def _attached(self) -> bool:
        """Whether this graph is part of its model: the main graph, or a subgraph of a live node of an attached
        graph. Only the nodes of attached graphs register their reads as uses; a graph being built registers
        them when it is attached (as a node's attribute, or as a model's graph)."""
        g = self
        while True:
            o = g.owner
            if o is None:
                m = g.model
                return m is not None and m.graph is g
            if o._erased or o.graph is None:
                return False
            g = o.graph

    def _input_set(self) -> set[Value]:
        s = self._inputs_set
        if s is None:
            s = self._inputs_set = set(self._inputs)
        return s

    @property
    def inputs(self) -> tuple[Value, ...]:
        return tuple(self._inputs)

    @property
    def outputs(self) -> tuple[Value, ...]:
        return tuple(self._outputs)

    @property
    def initializers(self) -> Mapping[str, Value]:
        """Initializers by name, in order (read-only; use add_initializer/remove_initializer)."""
        return types.MappingProxyType(self._initializers)

    @property
    def value_info(self) -> tuple[Value, ...]:
        """Values whose types the model declares in value_info."""
        return tuple(self._value_info)

    def __iter__(self) -> Iterator[Node]:
        """Nodes in order; insertion and removal during iteration are safe."""
        n = self._head._next
        head = self._head
        while n is not head:
            if not n._erased:
                yield n
            n = n._next

    def reversed(self) -> Iterator[Node]:
        n = self._head._prev
        head = self._head
        while n is not head:
            if not n._erased:
                yield n
            n = n._prev

    def __len__(self) -> int:
        return self._count

    @property
    def nodes(self) -> list[Node]:
        """A snapshot list of the nodes in order."""
        return list(self)

    def first(self) -> Node | None:
        n = self._head._next
        return None if n is self._head else n

    def all_graphs(self) -> Iterator[Graph]:
        """This graph and every nested subgraph, outer before inner. (The main graph's list is remembered until
        the model changes: finding subgraphs means looking at every node.)"""
        m = self.model
        if m is not None and m.graph is self:
            c = m._graphs_cache
            if c is None or c[0] != m.mutations:
                c = m._graphs_cache = (m.mutations, list(self._all_graphs()))
            return iter(c[1])
        return self._all_graphs()

    def _all_graphs(self) -> Iterator[Graph]:
        stack = [self]
        while stack:
            g = stack.pop()
            yield g
            subs = []
            for n in g:
                if n._subgraphs:
                    subs.extend(n._subgraphs)
            stack.extend(reversed(subs))

    def all_nodes(self) -> Iterator[Node]:
        """Every node of this graph and its subgraphs (a node before the nodes of its subgraphs)."""
        for n in self:
            yield n
            if n._subgraphs:
                for sg in n._subgraphs:
                    yield from sg.all_nodes()

    def num_nodes(self, recursive: bool = True) -> int:
        if not recursive:
            return self._count
        return sum(len(g) for g in self.all_graphs())

    # -- insertion and removal ---------------------------------------------------------------------------------
    def _link_after(self, anchor: Any, node: Node) -> None:
        if node.graph is not None and not node._erased:
            raise IRError(f"{node!r} is already in a graph")
        nxt = anchor._next
        node._prev = anchor
        node._next = nxt
        anchor._next = node
        nxt._prev = node
        node._erased = False
        node.graph = self
        self._count += 1
        m = self.model
        if node._subgraphs:
            for sg in node._subgraphs:
                sg._adopt(node)
        if self._attached():
            node._register_uses()
            if node._subgraphs:
                _nested_registration(node, True)
        if m is not None:
            for v in node._outputs:
                if v._name is None:
                    v._name = m.fresh_name(f"{node.op_type.lower()}_out")
                elif m._names is not None and v._name:
                    m._names.add(v._name)
        node._dirty = True
        self._touch()
        if m is not None:
            if m._track is not None:
                m._track.added[node] = None
            if m._logs:
                _log_node(m, node)

        def undo() -> None:
            self._unlink(node)

        self._journal(undo)

    def _unlink(self, node: Node) -> None:
        p, n = node._prev, node._next
        p._next = n
        n._prev = p
        node._erased = True
        node.graph = None
        self._count -= 1
        node._unregister_uses()
        if node._subgraphs:
            # a removed node's subgraphs must not keep outer values alive (nor mark them as graph outputs)
            _nested_registration(node, False)
        for v in node._outputs:
            self._value_info.pop(v, None)
        self._touch()
        m = self.model
        if m is not None:
            if m._track is not None:
                t = m._track
                if node in t.added:
                    del t.added[node]
                else:
                    t.removed += 1
            if m._logs:
                _log_node(m, node)
                for v in node._inputs:
                    if v is not None:
                        _lost_use(m, v)
                if node._subgraphs:
                    for v in node.implicit_inputs():
                        _lost_use(m, v)

    def append(self, *nodes: Node) -> None:
        """Append nodes at the end."""
        for n in nodes:
            self._link_after(self._head._prev, n)

    def prepend(self, *nodes: Node) -> None:
        anchor: Any = self._head
        for n in nodes:
            self._link_after(anchor, n)
            anchor = n

    def insert_before(self, anchor: Node, *nodes: Node) -> None:
        """Insert nodes, in order, just before `anchor`."""
        if anchor.graph is not self:
            raise IRError(f"{anchor!r} is not in this graph")
        prev = anchor._prev
        for n in nodes:
            self._link_after(prev, n)
            prev = n

    def insert_after(self, anchor: Node, *nodes: Node) -> None:
        if anchor.graph is not self:
            raise IRError(f"{anchor!r} is not in this graph")
        prev: Any = anchor
        for n in nodes:
            self._link_after(prev, n)
            prev = n

    def remove(self, nodes: Node | Iterable[Node], *, check: bool = True) -> None:
        """Remove nodes. Refuses (IRError, graph unchanged) when an output is still read by a node outside the
        set, or is a graph output."""
        batch = [nodes] if isinstance(nodes, Node) else list(dict.fromkeys(nodes))
        members = set(batch)
        for n in batch:
            if n.graph is not self:
                raise IRError(f"cannot remove {n!r}: it is not in this graph")
            if check:
                for v in n._outputs:
                    if v._out_graphs:
                        raise IRError(f"cannot remove {n!r}: its output {v.name!r} is a graph output")
                    for u, _ in v._uses:
                        if u not in members:
                            raise IRError(f"cannot remove {n!r}: its output {v.name!r} is read by {u!r}")
        for n in batch:
            prev = n._prev
            vi = [v for v in n._outputs if v in self._value_info]
            if vi:
                self._snapshot_order("_value_info")
            self._unlink(n)

            def undo(n: Node = n, prev: Any = prev, vi: list[Value] = vi) -> None:
                self._link_after(prev, n)
                for v in vi:
                    self._value_info[v] = None

            self._journal(undo)

    def move_before(self, anchor: Node, node: Node) -> None:
        """Move `node` (of this graph) to just before `anchor`; edges are unchanged."""
        if node is anchor:
            return
        old_prev = node._prev
        self._detach_for_move(node)
        prev = anchor._prev
        self._relink(prev, node)
        self._journal(lambda: self._move_to_after(old_prev, node))

    def _detach_for_move(self, node: Node) -> None:
        p, n = node._prev, node._next
        p._next = n
        n._prev = p

    def _relink(self, anchor: Any, node: Node) -> None:
        nxt = anchor._next
        node._prev = anchor
        node._next = nxt
        anchor._next = node
        nxt._prev = node
        self._touch()

    def _move_to_after(self, anchor: Any, node: Node) -> None:
        self._detach_for_move(node)
        self._relink(anchor, node)

    # -- interface ---------------------------------------------------------------------------------------------
    def add_input(self, value: Value) -> None:
        if value.producer is not None:
            raise IRError(f"{value!r} is a node output and cannot be a graph input")
        value._graph = self
        self._inputs.append(value)
        self._inputs_set = None
        self._touch()
        m = self.model
        if m is not None and m._names is not None and value._name:
            m._names.add(value._name)
        self._journal(lambda: self._pop_input(value))

    def _pop_input(self, value: Value) -> None:
        self._inputs.remove(value)
        self._inputs_set = None
        self._touch()

    def remove_input(self, value: Value) -> None:
        """Remove a graph input (only for initializer-backed inputs of IR<4 models, or unused subgraph plumbing)."""
        idx = self._inputs.index(value)
        del self._inputs[idx]
        self._inputs_set = None
        self._touch()

        def undo() -> None:
            self._inputs.insert(idx, value)
            self._inputs_set = None
            self._touch()

        self._journal(undo)

    def set_output(self, index: int, value: Value) -> None:
        old = self._outputs[index]
        if old is value:
            return
        self._outputs[index] = value
        assert old._out_graphs is not None
        old._out_graphs.remove(self)
        if not old._out_graphs:
            old._out_graphs = None
        if value._out_graphs is None:
            value._out_graphs = []
        value._out_graphs.append(self)
        self._touch()
        m = self.model
        if m is not None and m._logs:
            _lost_use(m, old)
        self._journal(lambda: self.set_output(index, old))

    def append_output(self, value: Value) -> None:
        self._outputs.append(value)
        self._out_vi.append(None)
        if value._out_graphs is None:
            value._out_graphs = []
        value._out_graphs.append(self)
        self._touch()
        self._journal(lambda: self._pop_output(value))

    def remove_output(self, index: int) -> None:
        """Drop output slot `index` of this graph (later slots shift down), with its declared type. For a
        subgraph, the owning node's outputs or inputs must be kept in step by the caller."""
        v = self._outputs[index]
        vi = self._out_vi[index]
        del self._outputs[index]
        del self._out_vi[index]
        og = v._out_graphs
        assert og is not None
        og.remove(self)
        if not og:
            v._out_graphs = None
        self._touch()

        def undo() -> None:
            self._outputs.insert(index, v)
            self._out_vi.insert(index, vi)
            if v._out_graphs is None:
                v._out_graphs = []
            v._out_graphs.append(self)
            self._touch()

        self._journal(undo)

    def _pop_output(self, value: Value) -> None:
        i = len(self._outputs) - 1 - self._outputs[::-1].index(value)
        del self._outputs[i]
        del self._out_vi[i]
        assert value._out_graphs is not None
        value._out_graphs.remove(self)
        if not value._out_graphs:
            value._out_graphs = None
        self._touch()

    def can_alias_output(self, value: Value) -> bool:
        """Whether `value` may stand directly in this graph's outputs in place of another value, without an
        interface change: it must be a node output of this very graph and not already an output anywhere, so
        that it can take the output's name."""
        p = value.producer
        return p is not None and p.graph is self and not value._out_graphs

    def _redirect_output(self, old: Value, new: Value) -> None:
        """Point every output slot holding `old` at `new`, keeping the output's name (see replace_all_uses_with)."""
        slots = [i for i, v in enumerate(self._outputs) if v is old]
        if not slots:
            return
        if self.can_alias_output(new):
            name = old.name
            assert name is not None
            m = self.model
            old.rename(m.fresh_name(name + "_old") if m is not None else name + "_old", _reserved=True)
            new.rename(name)
            self._carry_decl(old, new)
            for i in slots:
                self.set_output(i, new)
            return
        # Keep the name with an Identity inside this graph.
        name = old.name
        assert name is not None
        m = self.model
        old.rename(m.fresh_name(name + "_old") if m is not None else name + "_old", _reserved=True)
        ident = Node("Identity", [new], outputs=[name])
        self.append(ident)
        out = ident.output
        self._carry_decl(old, out)
        for i in slots:
            self.set_output(i, out)

    @staticmethod
    def _carry_decl(old: Value, new: Value) -> None:
        """Give `new` the declared output type (and value_info doc) of `old`, which it now stands for."""
        if old._vi is not None and new._vi is None:
            new._vi = old._vi
        t = old.type
        if t is not None and (new.type is None or new.type != t):
            new.type = t

    # -- initializers ------------------------------------------------------------------------------------------
    def add_initializer(self, value: Value, tensor: Tensor | None = None) -> Value:
        """Register `value` (no producer) as an initializer holding `tensor` (or its current const)."""
        if value.producer is not None:
            raise IRError(f"{value!r} is a node output and cannot become an initializer")
        if tensor is not None:
            value._const = tensor
        if value._const is None:
            raise IRError("an initializer needs a tensor")
        m = self.model
        if value._name is None and m is not None:
            value._name = m.fresh_name("const")
        elif m is not None and m._names is not None and value._name:
            m._names.add(value._name)
        assert value._name is not None
        if value._name in self._initializers:
            raise IRError(f"initializer {value._name!r} already exists")
        value._graph = self
        self._initializers[value._name] = value
        self._touch()
        if m is not None and m._logs:
            _log_value(m, value)
        self._journal(lambda: self._drop_initializer(value))
        return value

    def _drop_initializer(self, value: Value) -> None:
        self._initializers.pop(value._name, None)  # type: ignore[arg-type]
        self._touch()

    def remove_initializer(self, value: Value) -> None:
        """Drop an initializer (its value must be unused, and not a graph input unless `value` is IR<4 plumbing)."""
        name = value._name
        if self._initializers.get(name) is not value:  # type: ignore[arg-type]
            raise IRError(f"{value!r} is not an initializer of this graph")
        if value._uses or value._out_graphs:
            raise IRError(f"cannot remove initializer {name!r}: it is still used")
        # O(1): the order comes back from one snapshot per journal (a copy or a position search per removal made
        # removing k of n initializers O(k * n))
        self._snapshot_order("_initializers")
        del self._initializers[name]  # type: ignore[arg-type]
        self._touch()

        def undo() -> None:
            self._initializers[name] = value  # type: ignore[index]
            self._touch()

        self._journal(undo)

    def set_const(self, value: Value, tensor: Tensor) -> None:
        """Replace the tensor of an initializer."""
        old = value._const
        value._const = tensor
        self._touch()
        m = self.model
        if m is not None and m._logs:
            _log_value(m, value)
            for u, _ in value._uses:  # their inputs' numbers changed under them
                _log_node(m, u)
        self._journal(lambda: self.set_const(value, old))  # type: ignore[arg-type]

    # -- value_info --------------------------------------------------------------------------------------------
    def declare(self, value: Value) -> None:
        """List `value` in this graph's value_info (its type is written to the model)."""
        if value in self._value_info:
            return
        self._value_info[value] = None
        self._touch()
        self._journal(lambda: (self._value_info.pop(value, None), self._touch()))

    def undeclare(self, value: Value) -> None:
        if value not in self._value_info:
            return
        self._snapshot_order("_value_info")
        del self._value_info[value]
        self._touch()

        def undo() -> None:
            self._value_info[value] = None
            self._touch()

        self._journal(undo)

    def _snapshot_order(self, table: str) -> None:
        """Before the first removal from the ordered dict `table` while a journal is open, journal one entry that
        puts back the whole dict as it was then. Rollback runs entries newest first, so that entry runs after the
        undos of every later removal (each re-adding its key in O(1), at the end) and restores the exact order:
        one O(n) copy per pass instead of one per removal."""
        m = self.model
        j = m._journal if m is not None else None
        if j is None:
            return
        seen = self._order_snaps.get(table)
        if seen is not None and seen() is j:
            return
        self._order_snaps[table] = weakref.ref(j)  # weak: a finished pass's journal must not be kept alive
        saved = dict(getattr(self, table))

        def undo() -> None:
            setattr(self, table, dict(saved))
            self._touch()

        j.entries.append(undo)

    @property
    def orphan_value_info(self) -> tuple[Any, ...]:
        """value_info entries naming no value of this graph (kept for the round trip; DCE drops them)."""
        return tuple(self._orphan_vi)

    def clear_orphan_value_info(self) -> int:
        n = len(self._orphan_vi)
        if n:
            old = self._orphan_vi
            self._orphan_vi = []
            self._touch()

            def undo() -> None:
                self._orphan_vi = old
                self._touch()

            self._journal(undo)
        return n

    # -- ordering ----------------------------------------------------------------------------------------------
    def sort(self, recursive: bool = True) -> bool:
        """Stable topological sort (nodes keep their order where it is already valid); linear in graph size.

        Returns True when the order changed. Raises IRError on a cycle.
        """
        nodes = list(self)
        pos = {n: i for i, n in enumerate(nodes)}
        deps: dict[Node, list[Node]] = {}
        for n in nodes:
            d = []
            for v in n._inputs:
                if v is not None:
                    p = v.producer
                    if p is not None and p.graph is self:
                        d.append(p)
            if n._subgraphs:
                for v in n.implicit_inputs():
                    p = v.producer
                    if p is not None and p.graph is self:
                        d.append(p)
                    else:
                        # a value of an enclosing graph defined in a node nested deeper in this graph's nodes
                        # cannot happen; outer values are ordered by the outer graph.
                        pass
            deps[n] = d
        state: dict[Node, int] = {}  # 1 = on stack, 2 = done
        order: list[Node] = []
        for root in nodes:
            if root in state:
                continue
            stack: list[tuple[Node, int]] = [(root, 0)]
            state[root] = 1
            while stack:
                n, i = stack[-1]
                d = deps[n]
                if i < len(d):
                    stack[-1] = (n, i + 1)
                    c = d[i]
                    s = state.get(c)
                    if s is None:
                        state[c] = 1
                        stack.append((c, 0))
                    elif s == 1:
                        err = IRError(f"the graph has a cycle through {c!r}")
                        err.node = c  # type: ignore[attr-defined]  # for callers that describe it in words
                        raise err
                else:
                    state[n] = 2
                    order.append(n)
                    stack.pop()
        changed = any(pos[n] != i for i, n in enumerate(order))
        if changed:
            old = nodes
            self._reorder(order)
            self._journal(lambda: self._reorder(old))
        if recursive:
            for n in order:
                if n._subgraphs:
                    for sg in n._subgraphs:
                        changed = sg.sort(True) or changed
        return changed

    def _reorder(self, order: list[Node]) -> None:
        head = self._head
        prev: Any = head
        for n in order:
            prev._next = n
            n._prev = prev
            prev = n
        prev._next = head
        head._prev = prev
        self._touch()

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {self._count} nodes)"


# ----------------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------------
class Model:
    """A model: the main graph plus ir_version, opset imports, functions and metadata."""

    def __init__(self, graph: Graph | None = None, *, ir_version: int = 10,
                 opset_imports: Mapping[str, int] | None = None):
        self.ir_version = ir_version
        self.opset_imports: dict[str, int] = dict(opset_imports or {"": 21})
        self.producer_name = ""
        self.producer_version = ""
        self.domain = ""
        self.model_version = 0
        self.doc_string = ""
        self.metadata_props: dict[str, str] = {}
        self.functions: list[Any] = []  # model-local FunctionProtos, kept as loaded
        self._template: Any = None  # loaded ModelProto minus graph: fields we do not model survive the round trip
        self._orig_fields: tuple | None = None
        self.base_dir: str | None = None  # folder of the file it was loaded from (external data is relative to it)
        self.source_path: str | None = None
        self.mutations = 0
        self._journal: Journal | None = None
        self._track: ChangeTracker | None = None
        self._logs: list[weakref.ref[ChangeLog]] = []
        self._graphs_cache: tuple[int, list[Graph]] | None = None
        self._names: set[str] | None = None
        self._name_counters: dict[str, int] = {}
        self._fresh: set[str] = set()
        self._node_names: set[str] | None = None
        self.graph = graph if graph is not None else Graph("main_graph")
        self.graph.model = self
        self.graph._set_model(self)
        if len(self.graph):
            _graph_registration(self.graph, True)  # a graph built before its model: its reads become uses now
        self.meta: dict[str, Any] = {}

    # -- opsets ------------------------------------------------------------------------------------------------
    def opset(self, domain: str = "") -> int | None:
        """The imported version of `domain` ("" and "ai.onnx" are the same domain)."""
        if domain in ("", "ai.onnx"):
            v = self.opset_imports.get("")
            return v if v is not None else self.opset_imports.get("ai.onnx")
        return self.opset_imports.get(domain)

    def set_opset_imports(self, imports: Mapping[str, int]) -> None:
        old = dict(self.opset_imports)
        self.opset_imports = dict(imports)
        self._mutated()
        j = self._journal
        if j is not None:
            j.entries.append(lambda: setattr(self, "opset_imports", old))

    def set_functions(self, functions: list[Any]) -> None:
        old = list(self.functions)
        self.functions = list(functions)
        self._mutated()
        j = self._journal
        if j is not None:
            j.entries.append(lambda: setattr(self, "functions", old))

    # -- mutation tracking -------------------------------------------------------------------------------------
    def watch(self) -> ChangeLog:
        """A new :class:`ChangeLog` that records every node change from now on, until it is garbage (the model
        holds it weakly) or passed to :meth:`unwatch`."""
        self._logs = [r for r in self._logs if r() is not None]
        lg = ChangeLog()
        self._logs.append(weakref.ref(lg))
        return lg

    def unwatch(self, log: ChangeLog) -> None:
        self._logs = [r for r in self._logs if r() is not None and r() is not log]

    def _mutated(self) -> None:
        self.mutations += 1

    def begin_journal(self) -> Journal:
        """Start recording undo entries (one journal at a time)."""
        if self._journal is not None:
            raise IRError("a journal is already open")
        self._journal = Journal()
        return self._journal

    def end_journal(self) -> None:
        self._journal = None

    def rollback(self, journal: Journal) -> int:
        """Undo every mutation recorded in `journal`, newest first. Returns how many were undone."""
        self._journal = None
        n = 0
        entries = journal.entries
        while entries:
            entries.pop()()
            n += 1
        return n

    # -- names -------------------------------------------------------------------------------------------------
    def _name_set(self) -> set[str]:
        if self._names is None:
            names: set[str] = set()
            for g in self.graph.all_graphs():
                for v in g._inputs:
                    if v._name:
                        names.add(v._name)
                names.update(g._initializers)
                for n in g:
                    for v in n._outputs:
                        if v._name:
                            names.add(v._name)
            self._names = names
        return self._names

    def fresh_name(self, prefix: str, *, bound: bool = False) -> str:
        """A value name not used anywhere in the model; deterministic for a given model and call sequence.

        The name is reserved for a later :meth:`Value.rename`; with `bound`, the caller names a value it brings
        into the model some other way (a node it builds from a message), and no rename may take the name."""
        names = self._name_set()
        k = self._name_counters.get(prefix, 0)
        while True:
            cand = f"{prefix}_{k}" if k or prefix in names else prefix
            k += 1
            if cand not in names:
                break
        self._name_counters[prefix] = k
        names.add(cand)
        if not bound:
            self._fresh.add(cand)  # handed out but not bound yet: rename() may take it
        return cand

    def fresh_node_name(self, prefix: str) -> str:
        names = self._node_names
        if names is None:
            names = self._node_names = {n.name for n in self.graph.all_nodes() if n.name}
        k = self._name_counters.get("\0node:" + prefix, 0)
        while True:
            cand = f"{prefix}_{k}"
            k += 1
            if cand not in names:
                break
        self._name_counters["\0node:" + prefix] = k
        names.add(cand)
        return cand

    def num_nodes(self) -> int:
        return self.graph.num_nodes(recursive=True)

    def release(self) -> None:
        """Break the references that tie the model's objects in cycles (producers and readers, the node lists,
        subgraph owners), so that dropping the model frees it at once by reference counting, not in a later full
        pass of the cyclic garbage collector (which, on a big model, costs about what loading it did). The model
        is empty afterwards: do not use it, nor values or nodes taken from it."""
        graphs = list(self.graph._all_graphs())
        for g in graphs:
            for n in list(g):
                for v in n._outputs:
                    v.producer = None
                    v._uses.clear()
                    v._out_graphs = None
                n._inputs = []
                n._outputs = []
                n.graph = None
                n._prev = n._next = None
                n._attrs = None
                n._subgraphs = None
                n._proto = None
            for v in (*g._inputs, *g._initializers.values(), *g._outputs):
                v._uses.clear()
                v._graph = None
                v._out_graphs = None
            head = g._head
            head._next = head._prev = head = None
            g._head = _Sentinel()
            g._count = 0
            g.owner = None
            g.model = None
            g._inputs = []
            g._outputs = []
            g._initializers = {}
            g._value_info = {}
            g._in_vi = {}
            g._out_vi = []
            g._inputs_set = None
        self._graphs_cache = None
        self._journal = None
        self._track = None
        self.graph = Graph("main_graph")
        self.graph.model = self

    def __repr__(self) -> str:
        return f"Model(ir_version={self.ir_version}, opsets={self.opset_imports}, {self.graph!r})"
