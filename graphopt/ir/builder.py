"""What rewrites and folding use to make nodes and constants.

A :class:`Builder` inserts at one place in one graph (before a node, after a node, or at the end), names the values
it creates freshly, and remembers what it made. Constants become initializers of the main graph, so that a
constant made inside a subgraph is hoisted to the outer scope (subgraphs may read outer values), and so that IR
version rules are met in one place: before IR version 4 every initializer is also listed as a graph input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .core import Graph, IRError, Node, Value
from .shapes import TensorType
from .tensors import Tensor


def add_constant(graph: Graph, tensor: Tensor, name: str | None = None, prefix: str = "const") -> Value:
    """A new initializer holding `tensor`, in the main graph of `graph`'s model; typed, and listed as an input when
    the model's IR version requires it."""
    main = graph
    while main.owner is not None:
        assert main.owner.graph is not None
        main = main.owner.graph
    m = main.model
    v = Value(name or (m.fresh_name(prefix) if m is not None else prefix))
    v._type = TensorType(tensor.dtype, tensor.shape)
    v._type_changed = True
    main.add_initializer(v, tensor)
    if m is not None and m.ir_version < 4:
        main.add_input(v)
    return v


class Builder:
    """Builds nodes at one insertion point: ``before`` a node, ``after`` a node, or (default) at the end."""

    def __init__(self, graph: Graph, *, before: Node | None = None, after: Node | None = None,
                 name_hint: str = ""):
        if before is not None and after is not None:
            raise IRError("give `before` or `after`, not both")
        self.graph = graph
        self._before = before
        self._after = after
        self.name_hint = name_hint
        self.created: list[Node] = []
        self.constants: list[Value] = []

    def _insert(self, node: Node) -> None:
        g = self.graph
        if self._before is not None:
            g.insert_before(self._before, node)
        elif self._after is not None:
            g.insert_after(self._after, node)
            self._after = node
        else:
            g.append(node)
        self.created.append(node)

    def node(self, op_type: str, inputs: Sequence[Value | None], attrs: Mapping[str, Any] | None = None, *,
             domain: str = "", outputs: int | Sequence[str | None] = 1, name: str | None = None) -> Node:
        """Insert a node and return it."""
        n = Node(op_type, inputs, outputs=outputs, attrs=attrs, domain=domain, name="")
        m = self.graph.model
        if name is None and m is not None:
            hint = self.name_hint or op_type
            name = m.fresh_node_name(f"graphopt/{hint}")
        n._name = name or ""
        self._insert(n)
        return n

    def op(self, op_type: str, *inputs: Value | None, domain: str = "", **attrs: Any) -> Value:
        """Insert a single-output node and return its output."""
        return self.node(op_type, list(inputs), attrs or None, domain=domain).output

    def const(self, value: Any, *, dtype: int | None = None, name: str | None = None,
              prefix: str = "const") -> Value:
        """A new constant (an initializer of the main graph) holding `value` (a Tensor, array or scalar)."""
        t = value if isinstance(value, Tensor) else Tensor.from_numpy(np.asarray(value), dtype)
        v = add_constant(self.graph, t, name, prefix)
        self.constants.append(v)
        return v
