"""simplify-shapes: fold and shorten the shape arithmetic exporters emit, using the context's symbol table.

What it does, reading ``ctx.symbols`` (every value inferred, and kept current as the model changes):

* **Static chains become constants.** A node of the shape-arithmetic family (Shape, Size, Gather, Slice, Concat,
  Unsqueeze, Squeeze, Cast, Add/Sub/Mul/Div/Mod, Min/Max, Neg/Abs, Range, Reshape, Expand, ConstantOfShape,
  Equal and the other comparisons, Not/And/Or/Xor, Where, Identity) whose output value is fully known (a scalar
  or 1-D integer/bool tensor of at most `max_const_elements`) is replaced by an initializer, where the value
  leaves the static part of the chain: only the last static node of a chain is folded, so no constant is made for
  a value that is itself only read by nodes being folded. This covers ``Equal(Shape-derived, const)`` when the
  symbol table can decide it for every binding, and the shape inputs of Expand, ConstantOfShape, Tile and Range.
* **Partly symbolic Reshape targets become constants with 0 and -1.** For ``Reshape(x, target)`` where `target`
  is computed (typically ``Shape -> Gather -> Unsqueeze -> Concat``) and its value is known symbolically, each
  entry becomes: the same constant when it is static; ``0`` (copy the input dim) when it is provably equal to the
  input's dim at that index and ``allowzero`` is 0 (or 1 with no literal 0 in the target, where it means nothing
  and is dropped); ``-1`` for at most one remaining entry, only when every other
  output dim is a static positive constant (then ``-1`` is exactly ``total / product``, also when some symbol is
  0). Otherwise the Reshape is left alone.
* The chains these rewrites disconnect are removed at once when nothing else reads them (pure shape ops only);
  other dead code is DCE's job.

Every rewrite is exact for every binding of the symbols under which the original model runs. Subgraphs (If
branches, Loop and Scan bodies) are simplified too; new constants are initializers of the main graph.
Work is linear: one walk over the nodes to decide, then the edits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..ir.builder import Builder
from ..ir.core import Model, Node, Value
from ..ir.tensors import DataType, numpy_dtype
from .base import Pass, PassResult, option

log = logging.getLogger(__name__)

# Ops whose output we may replace by a constant when its value is fully known: deterministic, side-effect free,
# and covered by the symbol table's value rules.
_FOLDABLE = frozenset({
    "Shape", "Size", "Gather", "Slice", "Concat", "Unsqueeze", "Squeeze", "Cast", "CastLike", "Add", "Sub", "Mul",
    "Div", "Mod", "Min", "Max", "Sum", "Neg", "Abs", "Range", "Reshape", "Expand", "ConstantOfShape", "Equal",
    "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor", "Where", "Identity",
})
# What the dead-chain cleanup may remove (pure ops only).
_REMOVABLE = _FOLDABLE | {"Constant", "Tile"}

_BOOL = int(DataType.BOOL)
_RANGES = {int(DataType.INT8): (-(1 << 7), (1 << 7) - 1), int(DataType.UINT8): (0, (1 << 8) - 1),
           int(DataType.INT16): (-(1 << 15), (1 << 15) - 1), int(DataType.UINT16): (0, (1 << 16) - 1),
           int(DataType.INT32): (-(1 << 31), (1 << 31) - 1), int(DataType.UINT32): (0, (1 << 32) - 1),
           int(DataType.INT64): (-(1 << 63), (1 << 63) - 1), int(DataType.UINT64): (0, (1 << 64) - 1),
           _BOOL: (0, 1)}


def _std(n: Node) -> bool:
    return not n.domain or n.domain == "ai.onnx"


@dataclass(frozen=True)
class SimplifyShapes(Pass):
    """Folds fully known shape computations to constants and shortens partly symbolic Reshape targets."""

    name: ClassVar[str] = "simplify-shapes"
    kind: ClassVar[str] = "folding"
    summary: ClassVar[str] = ("fold shape computations known from symbolic shapes; Reshape targets built from "
                              "Shape ops become constants with 0/-1 where exact")
    presets: ClassVar[frozenset[str]] = frozenset({"O2", "O3"})
    uses_symbols: ClassVar[bool] = True

    max_const_elements: int = option(1024, "largest shape value (elements) folded into a new constant")
    reshape: bool = option(True, "rewrite partly symbolic Reshape targets to constants with 0 and -1")

    def run(self, model: Model, ctx: Any) -> PassResult:
        ctx.current_step = "symbolic shape inference"
        table = ctx.symbols
        complete = getattr(table, "complete", None)
        if complete is not None:
            complete(model)  # every value inferred (done once: the pass manager completes it before the first pass)
        else:
            table.ensure(model)
        ctx.current_step = "decide"
        folds: list[tuple[Value, np.ndarray]] = []
        reshapes: list[tuple[Node, list[int]]] = []
        # one table over all graphs (outer graphs come first, and values flow only inward), so that a static
        # value read by a static node inside a subgraph is not folded at both levels
        static: dict[Node, np.ndarray] = {}
        has_value = getattr(table, "has_value", None)
        for g in list(model.graph.all_graphs()):
            for n in g:
                op = n.op_type
                if op not in _FOLDABLE:
                    continue
                if not _std(n):
                    continue
                ctx.current_node = n
                if op in _FOLDABLE and len(n._outputs) == 1 and (has_value is None or has_value(n._outputs[0])):
                    arr = self._static_value(n.output, table)
                    if arr is not None:
                        static[n] = arr
                        continue
                if self.reshape and n.op_type == "Reshape" and n.input(1) is not None and \
                        n.input(1).producer not in static:  # a static target is folded below instead
                    tgt = _reshape_target(n, table)
                    if tgt is not None:
                        reshapes.append((n, tgt))
        # fold where the value leaves the static part: some reader will not be folded, or it is a graph output
        # (which then reads the constant through an Identity; an Identity of a constant stays)
        for n, arr in static.items():
            v = n.output
            if any(u not in static for u, _ in v.uses()) or (v.is_graph_output() and not _is_const_copy(n)):
                folds.append((v, arr))
        ctx.current_node = None
        if not folds and not reshapes:
            ctx.current_step = None
            return PassResult.of()

        ctx.current_step = "rewrite"
        dead: list[Node] = []
        folded = 0
        for v, arr in folds:
            p = v.producer
            assert p is not None and p.graph is not None
            ctx.current_node = p
            c = Builder(p.graph).const(arr, prefix=f"{v.name}_folded" if v.name else "shape_const")
            # a graph output keeps its name: the IR puts an Identity of the constant in its place
            v.replace_all_uses_with(c)
            folded += 1
            dead.append(p)
        rewritten = 0
        for n, tgt in reshapes:
            ctx.current_node = n
            old = n.input(1)
            assert n.graph is not None and old is not None
            c = Builder(n.graph).const(np.asarray(tgt, dtype=np.int64), prefix=f"{n.output.name}_shape")
            n.replace_input_with(1, c)
            if int(n.attr("allowzero", 0)) and 0 in tgt:
                n.del_attr("allowzero")  # _reshape_target found no literal 0: the 0s it wrote are copies
            rewritten += 1
            if old.producer is not None:
                dead.append(old.producer)
        ctx.current_step = "remove dead chains"
        removed = _remove_dead(dead, ctx)
        ctx.current_node = None
        ctx.current_step = None
        return PassResult.of(values_folded=folded, reshapes_simplified=rewritten, nodes_removed=removed)

    def _static_value(self, v: Value, table: Any) -> np.ndarray | None:
        """The value as an array when every element is a known constant of a foldable dtype, else None."""
        vals = table.value_of(v)
        if vals is None or len(vals) > self.max_const_elements:
            return None
        dt = table.dtype_of(v)
        if dt not in _RANGES:
            return None
        sh = table.shape_of(v)
        if sh is None or sh.dims is None or len(sh.dims) > 1:
            return None
        ints = []
        lo, hi = _RANGES[dt]
        for e in vals:
            if e.c is None or not lo <= e.c <= hi:
                return None
            ints.append(e.c)
        arr = np.asarray(ints, dtype=numpy_dtype(dt))
        if not sh.dims:
            if len(ints) != 1:
                return None
            arr = arr.reshape(())
        return arr


def _is_const_copy(n: Node) -> bool:
    """An Identity of a constant (initializer or Constant node): what a folded graph output already is; folding
    it again would only churn."""
    x = n.input(0)
    if n.op_type != "Identity" or x is None:
        return False
    p = x.producer
    return x.is_constant() or (p is not None and p.op_type == "Constant" and _std(p))


def _reshape_target(n: Node, table: Any) -> list[int] | None:
    """A constant target equal to the computed one for every binding, or None to leave the Reshape alone."""
    sh = n.input(1)
    x = n.input(0)
    if sh is None or x is None or sh.is_constant():
        return None
    if sh.producer is not None and sh.producer.op_type == "Constant":
        return None  # already constant; fold-constants turns it into an initializer
    tgt = table.value_of(sh)
    if tgt is None:
        return None
    allowzero = int(n.attr("allowzero", 0))
    if allowzero and all(e.c is None or e.c != 0 for e in tgt):
        # With no literal 0 in the target, allowzero changes nothing (the dynamo exporter sets it on every
        # Reshape): read the target as allowzero = 0, and the rewrite drops the attribute, so that copies apply.
        allowzero = 0
    xs = table.shape_of(x)
    xdims = xs.dims if xs is not None else None
    new: list[int | None] = []
    unresolved: list[int] = []
    for i, e in enumerate(tgt):
        if e.c is not None:
            new.append(e.c)  # the runtime sees this very number: same meaning (0 / -1 included)
        elif not allowzero and xdims is not None and i < len(xdims) and table.equal(xdims[i], e):
            new.append(0)  # copy the input dim: equal to e for every binding (and when e is 0, both copy)
        else:
            unresolved.append(i)
            new.append(None)
    if len(unresolved) > 1:
        return None
    if unresolved:
        i = unresolved[0]
        if any(c is not None and c < 0 for c in new):
            return None  # a second -1 (or an invalid entry) in the target
        # -1 is exact when the product of the other output dims is a known positive constant: then the runtime
        # computes total / product = e_i, and never meets the 0-product it refuses
        for j, c in enumerate(new):
            if j == i:
                continue
            if c == 0:
                if allowzero:
                    return None
                d = xdims[j] if xdims is not None and j < len(xdims) else None
                if d is None or table.canon(d).c is None or table.canon(d).c <= 0:
                    return None
            elif c is None or c <= 0:
                return None
        new[i] = -1
    return [int(c) for c in new]  # type: ignore[arg-type]


def _remove_dead(work: list[Node], ctx: Any) -> int:
    """Remove pure shape nodes left unread by the rewrites, following their inputs (a worklist)."""
    removed = 0
    while work:
        n = work.pop()
        if not n.is_alive or not _std(n) or n.op_type not in _REMOVABLE or n.subgraphs():
            continue
        if any(v.is_used() for v in n.outputs):
            continue
        ctx.current_node = n
        ins = [v for v in n.inputs if v is not None]
        g = n.graph
        assert g is not None
        g.remove(n)
        removed += 1
        for v in ins:
            p = v.producer
            if p is not None and not v.is_used():
                work.append(p)
    return removed
