"""Ranks that the graph forces, and ranks that an op requires of its inputs.

:class:`ForcedRanks` knows a value's rank only when it follows from what cannot be wrong: the declared types of the
main graph's inputs (the runtime checks a fed tensor's rank against them), constant tensors, and the rank rules of
the ops in between. It never reads the declared type of an intermediate value or of a subgraph output: exporters
write those from one traced run, and a branch that the trace did not take may declare a rank it never has (the
silero-vad models declare rank 2 for an If output that has rank 3 when the other branch runs). The symbol table
(:mod:`graphopt.jit.symbols`) fills such gaps from declarations, which is fine for what it is used for but not for
proving that a branch cannot run.

:func:`required_rank` gives the rank an op needs at one input (LSTM's X is 3-D, Gemm's inputs are 2-D, a Conv's X
has the rank of its weight, ...): a run that feeds another rank there fails. :func:`rank_through` carries a rank
through the ops whose output rank follows from one input's (same-rank ops, Unsqueeze/Squeeze of constant axes).
"""

from __future__ import annotations

import numpy as np

from ..ir.constants import constant_value
from ..ir.core import Graph, Model, Node, Value
from ..ir.shapes import TensorType

# output 0 has the rank of input 0
_SAME = frozenset({
    "Identity", "Neg", "Abs", "Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil",
    "Round", "Sign", "Erf", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh",
    "Atanh", "Not", "Cast", "CastLike", "Softmax", "LogSoftmax", "Hardmax", "LeakyRelu", "Elu", "Selu",
    "Celu", "HardSigmoid", "HardSwish", "Mish", "Softplus", "Softsign", "ThresholdedRelu", "Gelu", "Clip",
    "Dropout", "IsNaN", "IsInf", "BatchNormalization", "LayerNormalization", "InstanceNormalization",
    "GroupNormalization", "LpNormalization", "MeanVarianceNormalization", "LRN", "Pad", "Slice", "Transpose",
    "Tile", "CumSum", "Trilu", "ReverseSequence", "Conv", "ConvTranspose", "ConvInteger", "MaxPool",
    "AveragePool", "LpPool", "Resize", "DepthToSpace", "SpaceToDepth", "QuantizeLinear", "DequantizeLinear",
})
# broadcasting: the output has the largest input rank
_BROADCAST = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Sum", "Mean", "Equal", "Less", "Greater",
    "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Where", "BitShift", "PRelu", "BitwiseAnd", "BitwiseOr",
    "BitwiseXor",
})
# through these, a rank needed downstream pins the rank of input 0
_THROUGH = frozenset({"Identity", "Neg", "Abs", "Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Reciprocal",
                      "Floor", "Ceil", "Round", "Sign", "Erf", "Sin", "Cos", "Not", "Cast", "LeakyRelu", "Elu",
                      "Selu", "Softplus", "Gelu", "Clip", "HardSigmoid"})
_RNN_RANKS = {0: 3, 1: 3, 2: 3, 3: 2, 4: 1, 5: 3, 6: 3, 7: 2}  # X, W, R, B, sequence_lens, initial_h, initial_c, P


def _std(n: Node) -> bool:
    return n.domain in ("", "ai.onnx")


def _const_ints(v: Value | None) -> list[int] | None:
    t = constant_value(v)
    if t is None or t.is_sparse or t.size > 64:
        return None
    a = np.asarray(t.numpy())
    if a.dtype.kind not in "iu":
        return None
    return [int(x) for x in a.reshape(-1)]


def axes_of(n: Node, opset: int) -> list[int] | None:
    """The constant axes of an Unsqueeze or Squeeze (an attribute before opset 13, an input since), else None."""
    if opset < 13:
        a = n.attr("axes")
        return [int(x) for x in a] if a is not None and not n.attrs["axes"].ref_attr_name else None
    return _const_ints(n.input(1))


class ForcedRanks:
    """The ranks that a model's graphs force (see the module docs); one walk, outer graphs before inner ones."""

    def __init__(self, model: Model):
        self.opset = model.opset("") or 1
        self.ir_version = model.ir_version
        # a function body's inputs are whatever the call passes: nothing checks them against declared types
        self.trust_inputs = not model.meta.get("function_body")
        self._r: dict[Value, int] = {}
        self._walk(model.graph)

    def of(self, v: Value | None) -> int | None:
        if v is None:
            return None
        r = self._r.get(v)
        if r is not None:
            return r
        t = constant_value(v)
        if t is not None:
            return len(t.shape)
        return None

    def _walk(self, g: Graph) -> None:
        if g.owner is None:
            inits = g.initializers
            for v in g.inputs:
                t = v.type
                if not self.trust_inputs:
                    continue
                if isinstance(t, TensorType) and t.shape is not None:
                    self._r[v] = len(t.shape)  # the runtime checks a fed input's rank
                elif v.name in inits and v.const is not None and self.ir_version < 4:
                    self._r[v] = len(v.const.shape)
            for v in inits.values():
                if v not in self._r and v.is_constant():
                    self._r[v] = len(v.const.shape)  # type: ignore[union-attr]
        else:
            for v in g.initializers.values():
                if v.const is not None:
                    self._r[v] = len(v.const.shape)
        for n in g:
            for sg in n.subgraphs():
                self._walk(sg)
            if _std(n):
                self._node(n)

    def _node(self, n: Node) -> None:
        op = n.op_type
        outs = n.outputs
        if not outs:
            return
        r: int | None = None
        if op in _SAME:
            r = self.of(n.input(0))
        elif op in _BROADCAST:
            rs = [self.of(v) for v in n.inputs if v is not None]
            r = max(rs) if rs and None not in rs else None  # type: ignore[type-var]
        elif op in ("Unsqueeze", "Squeeze"):
            x = self.of(n.input(0))
            axes = axes_of(n, self.opset)
            if x is not None and axes is not None:
                r = x + len(axes) if op == "Unsqueeze" else x - len(axes)
        elif op == "Gather":
            d, i = self.of(n.input(0)), self.of(n.input(1))
            r = d + i - 1 if d is not None and i is not None else None
        elif op in ("GatherElements", "ScatterElements", "ScatterND"):
            r = self.of(n.input(1) if op == "GatherElements" else n.input(0))
        elif op == "Shape":
            r = 1
        elif op == "Size":
            r = 0
        elif op == "Concat":
            r = next((x for x in map(self.of, n.inputs) if x is not None), None)
        elif op in ("Reshape", "ConstantOfShape"):
            s = _const_ints(n.input(1) if op == "Reshape" else n.input(0))
            r = len(s) if s is not None else None
        elif op in ("Flatten", "Gemm"):
            r = 2
        elif op == "MatMul":
            a, b = self.of(n.input(0)), self.of(n.input(1))
            if a is not None and b is not None:
                r = (0 if a == 1 else a - 1) if b == 1 else (b - 1 if a == 1 else max(a, b))
        elif op.startswith("Reduce"):
            a = n.attrs.get("keepdims")
            if a is None or not a.ref_attr_name and int(a.value) == 1:
                r = self.of(n.input(0))  # keepdims (the default): the input's rank
        elif op in ("LSTM", "GRU", "RNN"):
            for i, k in enumerate((4, 3, 3)):
                if i < len(outs):
                    self._r[outs[i]] = k
            return
        elif op == "If":
            subs = n.subgraphs()
            if len(subs) == 2 and all(len(s.outputs) == len(outs) for s in subs):
                for i, o in enumerate(outs):
                    a, b = self.of(subs[0].outputs[i]), self.of(subs[1].outputs[i])
                    if a is not None and a == b:
                        self._r[o] = a
            return
        if r is not None and r >= 0:
            self._r[outs[0]] = r


def required_rank(n: Node, index: int, ranks: ForcedRanks) -> int | None:
    """The rank standard op `n` needs at input `index` (a run that feeds another rank fails), or None when it
    takes any rank or we cannot tell."""
    if not _std(n):
        return None
    op = n.op_type
    if op in ("LSTM", "GRU", "RNN"):
        if op != "LSTM" and index > 5:
            return None
        return _RNN_RANKS.get(index)
    if op == "Gemm" and index in (0, 1):
        return 2
    if op in ("Conv", "ConvTranspose") and index in (0, 1):
        return ranks.of(n.input(1 - index))
    if op == "BatchNormalization" and 1 <= index <= 4:
        return 1
    if op == "Transpose" and index == 0:
        a = n.attrs.get("perm")
        if a is not None and not a.ref_attr_name:
            return len(a.value)
    if op == "Concat":
        return next((ranks.of(v) for i, v in enumerate(n.inputs) if i != index and ranks.of(v) is not None), None)
    return None


def rank_through(n: Node, index: int, rank: int, ranks: ForcedRanks) -> int | None:
    """The rank of `n`'s first output when its input `index` has `rank`, for ops where that follows; else None."""
    if not _std(n) or not n.outputs:
        return None
    op = n.op_type
    if op in _THROUGH and index == 0:
        return rank
    if op in ("Unsqueeze", "Squeeze") and index == 0:
        axes = axes_of(n, ranks.opset)
        if axes is None:
            return None
        return rank + len(axes) if op == "Unsqueeze" else rank - len(axes)
    if op in _BROADCAST:
        others = [ranks.of(v) for i, v in enumerate(n.inputs) if i != index and v is not None]
        if None in others:
            return None
        return max([rank, *others])  # type: ignore[type-var]
    return None


def live_nodes(g: Graph) -> set[Node]:
    """The nodes of `g` that its outputs depend on (reads inside their subgraphs included): each runs whenever
    `g` runs."""
    live: set[Node] = set()
    stack: list[Value] = list(g.outputs)
    seen: set[Value] = set()
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        p = v.producer
        if p is None or p.graph is not g or p in live:
            continue
        live.add(p)
        stack.extend(x for x in p.inputs if x is not None)
        if p.subgraphs():
            stack.extend(p.implicit_inputs())
    return live

