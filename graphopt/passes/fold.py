"""fold-constants: evaluate what only depends on constants, once, and store the results as initializers.

What the pass guarantees:

* A value is constant when it is an initializer the caller cannot override (:meth:`Value.is_constant`: from IR
  version 4 on, an initializer listed as a graph input is a default, not a constant), the output of a Constant
  node, or the output of a node folded in this run. Constant nodes become initializers of the main graph (hoisted
  out of If/Loop bodies, which lets the nodes of those bodies fold too).
* Never folded: non-deterministic ops (RandomNormal, RandomUniform, their -Like forms, Multinomial, Bernoulli,
  Dropout in training mode), ops outside the "", "ai.onnx" and "ai.onnx.ml" domains, ops that make sequences,
  optionals or maps, and nodes with subgraphs (an If on a constant condition is simplify-control-flow's job).
* One pass run evaluates everything in ONE onnxruntime session (the constant closure, collected by one
  topological walk over the main graph and its subgraphs), after a numpy fast path has computed the cheap shape
  ops exactly. A batch onnxruntime cannot run is split in halves (never one session per node as the default);
  what it still cannot run is left alone.
* The model file does not blow up. Sizes are decided from dtypes and shapes before anything is evaluated where
  shapes are known (a big ConstantOfShape is never built), and checked again after evaluation. A group of folded
  nodes (nodes linked by the values they pass each other) is kept only when the bytes of the initializers it
  creates are at most the bytes of the constants it frees plus ``free-output-bytes`` per created value, and no
  created value exceeds ``max-output-bytes``. A single op never expands its inputs beyond that allowance either.
* The interface stays: a folded value that is a graph output keeps its name. In the main graph of an IR >= 4
  model the output becomes the initializer itself; elsewhere (subgraph outputs, IR < 4 where every initializer is
  also an input) an Identity reading the initializer keeps the name, and such an Identity is never folded again.
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..ir.builder import add_constant
from ..ir.constants import constant_tensor
from ..ir.core import Graph, Model, Node, Value
from ..ir.shapes import TensorType
from ..ir.tensors import DataType, Tensor, bits_of
from .base import Pass, PassResult, option

if TYPE_CHECKING:
    from ..jit.context import JitContext
    from ._evaluate import Arg

log = logging.getLogger(__name__)

STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})

NONDETERMINISTIC = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                              "Multinomial", "Bernoulli"})

# Ops whose outputs are sequences, optionals or maps (never initializers).
NON_TENSOR_OPS = frozenset({"SequenceConstruct", "SequenceEmpty", "SequenceInsert", "SequenceErase",
                            "SplitToSequence", "Optional", "ZipMap", "CastMap", "DictVectorizer"})

# Ops whose output size depends on input VALUES: folded only when the size can be computed before evaluation.
VALUE_SIZED_OPS = frozenset({"ConstantOfShape", "Expand", "Tile", "Range", "Resize", "Upsample", "Pad", "OneHot",
                             "MelWeightMatrix", "HannWindow", "HammingWindow", "BlackmanWindow", "CenterCropPad",
                             "Col2Im", "MaxUnpool", "Einsum"})

_UNARY = frozenset({"Identity", "Neg", "Abs", "Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Reciprocal",
                    "Floor", "Ceil", "Round", "Erf", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh",
                    "Asinh", "Acosh", "Atanh", "Sign", "Softplus", "Softsign", "HardSigmoid", "Elu", "Selu",
                    "LeakyRelu", "ThresholdedRelu", "HardSwish", "Gelu", "Mish", "Celu", "Not", "IsNaN", "IsInf",
                    "Cast", "BitwiseNot", "Softmax", "LogSoftmax", "Hardmax", "CumSum", "LRN"})
_BROADCAST = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Mod", "And", "Or", "Xor", "Equal", "Less", "Greater",
                        "LessOrEqual", "GreaterOrEqual", "Max", "Min", "Sum", "Mean", "Where", "BitShift",
                        "BitwiseAnd", "BitwiseOr", "BitwiseXor", "PRelu"})
_BOOL_OUT = frozenset({"And", "Or", "Xor", "Not", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
                       "IsNaN", "IsInf"})

FREE_OUTPUT_BYTES = 1024  # fold-constants.free-output-bytes' default

_SMALL_VALUES = 1024  # elements of a shape-like input read to estimate an output size


@dataclass(frozen=True)
class FoldConstants(Pass):
    """Replace nodes whose inputs are all constant by initializers holding their outputs (see module docs)."""

    name: ClassVar[str] = "fold-constants"
    kind: ClassVar[str] = "folding"
    summary: ClassVar[str] = "evaluate constant subgraphs once (one onnxruntime session) and store the results"
    presets: ClassVar[frozenset[str]] = frozenset({"O2", "O3"})

    max_output_bytes: int = option(
        64 << 20, "hard cap on the size of one folded value, checked before evaluation where shapes are known "
                  "(also bounds the memory evaluation may take)")
    free_output_bytes: int = option(
        FREE_OUTPUT_BYTES, "per created initializer, the bytes a fold may add to the model beyond what it frees (shape "
              "tensors and small constants fit; by default also at most 1/32 of the model's size); raise it to "
              "fold constants that grow the file")
    fast_path_elements: int = option(
        1 << 16, "largest tensor (elements) the exact numpy fast path handles; bigger ones go to onnxruntime")

    def run(self, model: Model, ctx: JitContext) -> PassResult:
        return _Folder(self, model, ctx).run()


def _static(shape: Any) -> tuple[int, ...] | None:
    if shape is None or not all(isinstance(d, int) and d >= 0 for d in shape):
        return None
    return tuple(shape)


def _nbytes(dtype: int | None, shape: tuple[int, ...] | None) -> int | None:
    if shape is None:
        return None
    b = bits_of(dtype) if dtype else 64  # unknown dtype: assume the widest common one
    if b == 0:
        return None  # strings: no size before evaluation
    return (math.prod(shape) * b + 7) // 8


def _broadcast(shapes: list[tuple[int, ...] | None]) -> tuple[int, ...] | None:
    if any(s is None for s in shapes):
        return None
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))  # type: ignore[arg-type]
    except ValueError:
        return None


class _Folder:
    """One run of fold-constants over a model."""

    def __init__(self, opts: FoldConstants, model: Model, ctx: JitContext):
        from ._evaluate import BatchEvaluator

        self.o = opts
        self.model = model
        self.ctx = ctx
        self.opset = model.opset("") or 1
        self.evaluator = BatchEvaluator(model)
        # what is known about the constant values of this run
        self.args: dict[Value, Arg] = {}  # numbers known (or loadable): initializers, Constant nodes, results
        self.pending: dict[Value, Node] = {}  # made by a node that onnxruntime will evaluate
        self.est: dict[Value, tuple[int | None, tuple[int, ...] | None]] = {}  # (dtype, shape) of pending values
        self.stored: dict[Value, int] = {}  # constants the model stores: their bytes (what folding may free)
        self.const_nodes: dict[Node, None] = {}  # Constant nodes with a readable tensor, in walk order
        self.closure: list[Node] = []  # foldable nodes, topological order (subgraph nodes after their owner's deps)
        self.fast: set[Node] = set()  # evaluated by the numpy fast path during the walk
        self.kept: set[Node] = set()  # evaluated for their readers but not replaced (see _needs_identity)
        self._name_counts: collections.Counter[str] | None = None  # see _name_is_unique
        self.free = self._free_bytes()

    def _free_bytes(self) -> int:
        """The bytes one created initializer may add: `free-output-bytes`; at its default, also at most 1/32 of
        the model's size (its stored constants plus ~48 bytes a node; at least 64), so that on a tiny model (onnx's
        light CNNs, whose 4 kB build their weights with ConstantOfShape) storing a bias does not grow the file by a
        fifth. A value the user sets is taken as it is."""
        free = self.o.free_output_bytes
        if free != FREE_OUTPUT_BYTES:
            return free
        m = self.model
        size = 48 * m.num_nodes() + sum(v.const.nbytes for v in m.graph.initializers.values() if v.const is not None)
        return min(free, max(64, size // 32))

    # ------------------------------------------------------------------------------------------------------------
    def run(self) -> PassResult:
        ctx = self.ctx
        ctx.current_step = "collect the constant closure"
        self._walk(self.model.graph)
        ctx.current_node = None

        ctx.current_step = "size check before evaluation"
        accepted = self._select(dict.fromkeys(self.closure), evaluated=False)

        ctx.current_step = "evaluate with onnxruntime"
        failed = self._evaluate(accepted)
        if failed:
            accepted = self._drop_unevaluable(accepted, failed)

        ctx.current_step = "size check after evaluation"
        accepted = self._select(accepted, evaluated=True)

        ctx.current_step = "rewrite"
        folded, hoisted, freed, materialized = self._apply(accepted)
        ctx.current_step = None
        changed = bool(folded or hoisted)
        stats = {"folded": folded, "hoisted": hoisted, "initializers_freed": freed,
                 "initializers_created": materialized, "ort_sessions": self.evaluator.sessions,
                 "ort_failed_nodes": len(failed)}
        return PassResult(changed=changed, stats={k: v for k, v in stats.items() if v})

    # -- 1. the walk ---------------------------------------------------------------------------------------------
    def _walk(self, g: Graph) -> None:
        ctx = self.ctx
        args, pending = self.args, self.pending
        for n in g:
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
                ctx.current_node = n
                self._visit_constant(n)
            elif n._subgraphs:
                ctx.current_node = n
                # not folded itself (see the module docs); its bodies may read the constants known so far
                for sg in n._subgraphs:
                    self._walk(sg)
            else:
                for v in n._inputs:  # (most nodes read a value that is not constant: _visit would say so)
                    if v is not None and v._const is None and v not in args and v not in pending:
                        break
                else:
                    ctx.current_node = n
                    self._visit(n)

    def _visit_constant(self, n: Node) -> None:
        t = constant_tensor(n)
        if t is None:  # sparse or unreadable: keep the node, and its readers do not fold
            return
        from ._evaluate import Arg

        v = n.output
        self.args[v] = Arg(tensor=t)
        self.stored[v] = t.nbytes
        self.const_nodes[n] = None

    def _known(self, v: Value) -> bool:
        if v in self.args or v in self.pending:
            return True
        if v.is_constant():
            from ._evaluate import Arg

            t = v.const
            assert t is not None
            self.args[v] = Arg(tensor=t)
            self.stored[v] = t.nbytes
            return True
        return False

    def _visit(self, n: Node) -> None:
        # Keeps nodes reading a value that is not constant (most nodes: decided first, and cheaply).
        args, pending = self.args, self.pending
        for v in n._inputs:
            if v is not None and v._const is None and v not in args and v not in pending:
                return
        # Keeps custom-domain ops (their meaning is unknown) and non-deterministic ops.
        if n.domain not in STANDARD_DOMAINS or n.op_type in NONDETERMINISTIC:
            return
        # Keeps ops that make sequences, optionals or maps: an initializer can only hold a tensor.
        if n.op_type in NON_TENSOR_OPS or n.overload:
            return
        if any(o.type is not None and not isinstance(o.type, TensorType) for o in n.outputs):
            return
        # Keeps nodes reading a value that is not constant.
        if not all(v is None or self._known(v) for v in n.inputs):
            return
        # Keeps dead nodes: evaluating them is wasted work (dce removes them).
        if not any(o.is_used() for o in n.outputs):
            return
        # Keeps Dropout in training mode (random); in inference it is deterministic.
        if n.op_type == "Dropout" and not self._dropout_inference(n):
            return
        # An Identity that stands for a graph output that cannot be an initializer would only be re-created:
        # evaluate it for its readers, never replace it.
        if n.op_type == "Identity" and self._needs_identity(n.output):
            if n.output.num_uses() == 0:
                return
            self.kept.add(n)
        done = self._try_fast(n)
        if done is None:
            self._plan_ort(n)

    def _dropout_inference(self, n: Node) -> bool:
        if self.opset < 7:
            return bool(int(n.attr("is_test", 0)))
        tm = n.input(2)
        if tm is None:
            return True
        a = self.args.get(tm)
        if a is None or a.size != 1:
            return False
        return not bool(np.asarray(a.numpy()).reshape(-1)[0])

    def _needs_identity(self, v: Value) -> bool:
        """Whether some graph lists `v` as an output where an initializer cannot stand in its place (a subgraph,
        or the main graph of an IR < 4 model, whose initializers are graph inputs too)."""
        for g in v.output_graphs():
            if g.owner is not None or self.model.ir_version < 4:
                return True
        return False

    def _try_fast(self, n: Node) -> bool | None:
        """Evaluate `n` with the numpy fast path now: True when done, False when the exact result says no
        (size, or a disagreement with the declared type), None when the fast path does not handle it."""
        from ._evaluate import FAST_OPS, Arg, fast_eval

        if n.domain not in ("", "ai.onnx") or n.op_type not in FAST_OPS:
            return None
        if any(v is not None and v not in self.args for v in n.inputs):
            return None  # an input comes from onnxruntime later
        ins = [None if v is None else self.args[v] for v in n.inputs]
        if n.op_type == "Identity" and len(ins) == 1 and ins[0] is not None:
            outs = [ins[0]]  # the same numbers, whatever their size: nothing to compute or copy
        else:
            res = fast_eval(n, ins, self.opset, self.o.fast_path_elements)
            if res is None or len(res) != len(n.outputs):
                return None
            outs = [Arg(array=r) for r in res]
        # Keeps a node whose result disagrees with its declared type (a wrong declaration: not ours to fix).
        for o, a in zip(n.outputs, outs):
            if not self._consistent(o, a):
                return False
        # Keeps ops that expand their inputs beyond the allowance (the numbers are exact here).
        if not self._size_ok([a.nbytes for a in outs], [a.nbytes if a is not None else 0 for a in ins]):
            return False
        for o, a in zip(n.outputs, outs):
            self.args[o] = a
        self.closure.append(n)
        self.fast.add(n)
        return True

    def _size_ok(self, outs: list[int | None], ins: list[int | None]) -> bool:
        """The per-node pre-check: no output above the hard cap, and no op that grows its inputs by more than the
        per-value allowance (unknown sizes pass; they are checked after evaluation)."""
        known = [b for b in outs if b is not None]
        if any(b > self.o.max_output_bytes for b in known):
            return False
        if len(known) != len(outs) or any(b is None for b in ins):
            return True
        return sum(known) <= sum(ins) + self.free * len(known)  # type: ignore[arg-type]

    def _plan_ort(self, n: Node) -> None:
        est = self._estimate(n)
        out_bytes = [_nbytes(d, s) for d, s in est]
        # Keeps ops whose output size depends on input values we cannot read before evaluation.
        if n.op_type in VALUE_SIZED_OPS and any(b is None for b in out_bytes):
            return
        in_bytes = [self._bytes_of(v) for v in n.inputs if v is not None]
        if not self._size_ok(out_bytes, in_bytes):
            return
        for o, e in zip(n.outputs, est):
            self.pending[o] = n
            self.est[o] = e
        self.closure.append(n)

    def _bytes_of(self, v: Value) -> int | None:
        a = self.args.get(v)
        if a is not None:
            return a.nbytes
        d, s = self.est.get(v, (None, None))
        return _nbytes(d, s)

    # -- size estimates (before evaluation) ----------------------------------------------------------------------
    def _shape(self, v: Value | None) -> tuple[int, ...] | None:
        if v is None:
            return None
        a = self.args.get(v)
        if a is not None:
            return a.shape
        return self.est.get(v, (None, None))[1]

    def _dtype(self, v: Value | None) -> int | None:
        if v is None:
            return None
        a = self.args.get(v)
        if a is not None:
            return a.dtype
        d = self.est.get(v, (None, None))[0]
        return d if d is not None else v.dtype

    def _values(self, v: Value | None) -> list[int] | None:
        """The integer numbers of a small constant input known now, else None."""
        if v is None:
            return None
        a = self.args.get(v)
        if a is None or a.size > _SMALL_VALUES:
            return None
        arr = np.asarray(a.numpy())
        if arr.dtype.kind not in "iu":
            return None
        return [int(x) for x in arr.reshape(-1)]

    def _declared(self, o: Value) -> tuple[int | None, tuple[int, ...] | None]:
        t = o.type
        dtype = t.dtype if isinstance(t, TensorType) and t.dtype else None
        shape = _static(t.shape) if isinstance(t, TensorType) else None
        if shape is None:
            ss = self.ctx.symbols.shape_of(o)
            static = getattr(ss, "static", None) if ss is not None else None
            if callable(static):
                s = static()
                shape = _static(s) if s is not None else None
        return dtype, shape

    def _estimate(self, n: Node) -> list[tuple[int | None, tuple[int, ...] | None]]:
        """(dtype, static shape) of each output, or None parts where unknown before evaluation."""
        out: list[tuple[int | None, tuple[int, ...] | None]] = [self._declared(o) for o in n.outputs]
        if out[0][1] is not None and out[0][0] is not None:
            return out
        d, s = self._infer0(n)
        out[0] = (out[0][0] or d, out[0][1] if out[0][1] is not None else s)
        return out

    def _infer0(self, n: Node) -> tuple[int | None, tuple[int, ...] | None]:
        op = n.op_type
        ins = n.inputs
        x = ins[0] if ins else None
        if op in _UNARY:
            dt = DataType.BOOL if op in _BOOL_OUT else (int(n.attr("to", 0)) or None if op == "Cast"
                                                         else self._dtype(x))
            return dt, self._shape(x)
        if op in _BROADCAST:
            shapes = [self._shape(v) for v in ins if v is not None]
            dt = DataType.BOOL if op in _BOOL_OUT else self._dtype(ins[1] if op == "Where" else x)
            return dt, _broadcast(shapes)
        if op == "ConstantOfShape":
            vals = self._values(x)
            val = n.attr("value", None)
            dt = val.dtype if isinstance(val, Tensor) else DataType.FLOAT
            return dt, (_static(vals) if vals is not None else None)
        if op == "Expand":
            vals = self._values(n.input(1))
            return self._dtype(x), (_broadcast([self._shape(x), tuple(vals)]) if vals is not None else None)
        if op == "Tile":
            vals, s = self._values(n.input(1)), self._shape(x)
            if vals is None or s is None or len(vals) != len(s):
                return self._dtype(x), None
            return self._dtype(x), _static([d * r for d, r in zip(s, vals)])
        if op == "Range":
            return self._dtype(x), self._range_shape(n)
        if op == "Transpose":
            s = self._shape(x)
            perm = n.attr("perm", None)
            if s is None:
                return self._dtype(x), None
            p = list(range(len(s)))[::-1] if perm is None else [int(i) for i in perm]
            if sorted(p) != list(range(len(s))):
                return self._dtype(x), None
            return self._dtype(x), tuple(s[i] for i in p)
        if op in ("Reshape", "Squeeze", "Unsqueeze", "Flatten", "Dropout"):
            s = self._shape(x)  # same number of elements: the shape itself does not matter for sizes
            return self._dtype(x), (None if s is None else (math.prod(s),))
        if op == "Gather":
            s, si = self._shape(x), self._shape(n.input(1))
            if s is None or si is None or not s:
                return self._dtype(x), None
            ax = int(n.attr("axis", 0))
            ax = ax + len(s) if ax < 0 else ax
            return self._dtype(x), (tuple(s[:ax]) + tuple(si) + tuple(s[ax + 1:]) if 0 <= ax < len(s) else None)
        if op == "MatMul":
            a, b = self._shape(x), self._shape(n.input(1))
            if a is None or b is None or not a or not b:
                return self._dtype(x), None
            a2 = (1,) + a if len(a) == 1 else a
            b2 = b + (1,) if len(b) == 1 else b
            batch = _broadcast([a2[:-2], b2[:-2]])
            if batch is None:
                return self._dtype(x), None
            return self._dtype(x), batch + (a2[-2], b2[-1])
        if op == "Gemm":
            a, b = self._shape(x), self._shape(n.input(1))
            if a is None or b is None or len(a) != 2 or len(b) != 2:
                return self._dtype(x), None
            m = a[1] if int(n.attr("transA", 0)) else a[0]
            k = b[0] if int(n.attr("transB", 0)) else b[1]
            return self._dtype(x), (m, k)
        if op == "Concat":
            shapes = [self._shape(v) for v in ins if v is not None]
            if any(s is None for s in shapes) or not shapes:
                return self._dtype(x), None
            return self._dtype(x), (sum(math.prod(s) for s in shapes),)  # type: ignore[arg-type]
        return None, None

    def _range_shape(self, n: Node) -> tuple[int, ...] | None:
        vals = []
        for v in n.inputs[:3]:
            a = self.args.get(v) if v is not None else None
            if a is None or a.size != 1:
                return None
            vals.append(np.asarray(a.numpy()).reshape(-1)[0].item())
        if len(vals) != 3 or vals[2] == 0:
            return None
        start, limit, delta = vals
        try:
            count = max(math.ceil((limit - start) / delta), 0)
        except (OverflowError, ValueError):
            return None
        return (int(count),)

    def _consistent(self, v: Value, a: Arg) -> bool:
        """A result agrees with the value's declared type (a disagreement means a wrong declaration or a wrong
        evaluation: leave the node alone)."""
        t = v.type
        if not isinstance(t, TensorType):
            return True
        if t.dtype and t.dtype != a.dtype:
            return False
        if t.shape is not None:
            if len(t.shape) != len(a.shape):
                return False
            if any(isinstance(d, int) and d != e for d, e in zip(t.shape, a.shape)):
                return False
        return True

    # -- 2. which groups may fold --------------------------------------------------------------------------------
    def _components(self, nodes: dict[Node, None]) -> dict[Node, int]:
        """Union-find over `nodes` linked by the values they pass each other; returns node -> component id
        (ids in first-node order, so that everything downstream is deterministic)."""
        parent: dict[Node, Node] = {n: n for n in nodes}

        def find(a: Node) -> Node:
            while parent[a] is not a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            return a

        for n in nodes:
            for v in n.inputs:
                p = v.producer if v is not None else None
                if p is not None and p in parent:
                    ra, rb = find(n), find(p)
                    if ra is not rb:
                        parent[ra] = rb
        ids: dict[Node, int] = {}
        comp: dict[Node, int] = {}
        for n in nodes:
            r = find(n)
            if r not in ids:
                ids[r] = len(ids)
            comp[n] = ids[r]
        return comp

    def _select(self, nodes: dict[Node, None], *, evaluated: bool) -> dict[Node, None]:
        """The nodes whose groups pass the size rules. Before evaluation, groups with a size still unknown pass
        (they are checked again after); after, every value a group must store has to be computed."""
        if not nodes:
            return nodes
        comp = self._components(nodes)
        members: dict[int, list[Node]] = {}
        for n, c in comp.items():
            members.setdefault(c, []).append(n)
        alive: dict[int, None] = dict.fromkeys(members)
        replaced = {n for n in nodes if n not in self.kept}

        # stored constants read by replaced nodes: which groups read them, and how many of their reads keep them
        # alive (reads by nodes that stay, graph outputs); a stored constant is freed when that count is 0
        readers: dict[Value, dict[int, None]] = {}
        for n in nodes:
            if n in self.kept:
                continue
            for v in n.inputs:
                if v is not None and v in self.stored:
                    readers.setdefault(v, {})[comp[n]] = None
        blocking: dict[Value, int] = {}
        for v in readers:
            blocking[v] = int(v.is_graph_output()) + sum(1 for u, _ in v.uses() if u not in replaced)

        def ok(c: int) -> bool:
            mats = self._materialized(members[c], replaced)
            sizes: list[int] = []
            for v in mats:
                if evaluated:
                    a = self.args.get(v)
                    if a is None:
                        return False  # not computed (its reader failed, or onnxruntime gave no tensor)
                    sizes.append(a.nbytes)
                else:
                    b = self._bytes_of(v)
                    if b is None:
                        continue
                    sizes.append(b)
            if any(b > self.o.max_output_bytes for b in sizes):
                return False
            if not evaluated and len(sizes) != len(mats):
                return True  # decided after evaluation
            credit = 0.0
            for n in members[c]:
                if n in self.kept:
                    continue
                for v in dict.fromkeys(x for x in n.inputs if x is not None and x in readers):
                    if blocking[v] == 0:
                        credit += self.stored[v] / len(readers[v])
            return sum(sizes) <= credit + self.free * len(sizes)

        work = list(alive)
        queued = dict.fromkeys(work)
        while work:
            c = work.pop()
            queued.pop(c, None)
            if c not in alive or ok(c):
                continue
            del alive[c]
            # the rejected group's reads now keep its stored inputs alive; the groups that counted on freeing
            # them are checked again (once per constant: only its first blocking read changes anything)
            for n in members[c]:
                if n in self.kept:
                    continue
                for v in n.inputs:
                    if v is None or v not in readers:
                        continue
                    blocking[v] += 1
                    if blocking[v] != 1:
                        continue
                    for c2 in readers[v]:
                        if c2 in alive and c2 not in queued:
                            queued[c2] = None
                            work.append(c2)
        return {n: None for n in nodes if comp[n] in alive}

    def _materialized(self, group: Iterable[Node], replaced: set[Node]) -> list[Value]:
        """Outputs of the replaced nodes of `group` that something else still reads (or a graph outputs)."""
        out: list[Value] = []
        for n in group:
            if n not in replaced:
                continue
            for o in n.outputs:
                if o.is_graph_output() or any(u not in replaced for u, _ in o.uses()):
                    out.append(o)
        return out

    # -- 3. evaluation -------------------------------------------------------------------------------------------
    def _evaluate(self, accepted: dict[Node, None]) -> list[Node]:
        batch = [n for n in accepted if n not in self.fast]
        if not batch:
            return []
        inputs: dict[Value, Arg] = {}
        produced = {o for n in batch for o in n.outputs}
        for n in batch:
            for v in n.inputs:
                if v is not None and v not in produced and v not in inputs:
                    inputs[v] = self.args[v]
        # request what might have to be stored: values read outside the batch's replaced nodes, graph outputs
        wanted = [o for n in batch for o in n.outputs
                  if o.is_graph_output() or any(u not in accepted or u in self.kept for u, _ in o.uses())]
        results, failed = self.evaluator.run(batch, inputs, wanted)
        from ._evaluate import Arg

        for v, arr in results.items():
            a = Arg(array=arr)
            if self._consistent(v, a):
                self.args[v] = a
        return failed

    def _drop_unevaluable(self, accepted: dict[Node, None], failed: list[Node]) -> dict[Node, None]:
        """Accepted nodes minus the failed ones and everything reading their outputs (transitively)."""
        bad: set[Node] = set(failed)
        out: dict[Node, None] = {}
        for n in accepted:  # topological order: a reader comes after its producer
            if n in bad or any(v is not None and v.producer in bad for v in n.inputs):
                bad.add(n)
                continue
            out[n] = None
        return out

    # -- 4. rewrite ----------------------------------------------------------------------------------------------
    def _apply(self, accepted: dict[Node, None]) -> tuple[int, int, int, int]:
        replaced = {n for n in accepted if n not in self.kept}
        order = [n for n in accepted if n in replaced]
        materialized = 0
        for n in order:
            self.ctx.current_node = n
            for v in self._materialized([n], replaced):
                self._store(v, self.args[v])
                materialized += 1
        # Constant nodes: dead once their readers folded, else hoisted to main-graph initializers
        dead_consts: list[Node] = []
        hoisted = 0
        for c in self.const_nodes:
            self.ctx.current_node = c
            v = c.output
            if not v.is_graph_output() and v.num_uses() and all(u in replaced for u, _ in v.uses()):
                dead_consts.append(c)
                continue
            if not v.is_used() or self._needs_identity(v):
                continue  # unused (dce's job), or the Constant node stands for an output an initializer cannot
            self._store(v, self.args[v])
            dead_consts.append(c)
            hoisted += 1
        # remove, inner graphs first (an inner node may read an outer one being removed)
        by_graph: dict[Graph, list[Node]] = {}
        for n in order + dead_consts:
            assert n.graph is not None
            by_graph.setdefault(n.graph, []).append(n)
        depth: dict[Graph, int] = {}
        for g in by_graph:
            d, h = 0, g
            while h.owner is not None:
                d += 1
                h = h.owner.graph  # type: ignore[assignment]
            depth[g] = d
        for g in sorted(by_graph, key=lambda x: -depth[x]):
            self.ctx.current_node = None
            g.remove(by_graph[g])
        # initializers read only by the folded nodes are dead now
        freed = 0
        seen: dict[Value, None] = {}
        for n in order:
            for v in n.inputs:
                if v is None or v in seen or v.producer is not None or v.const is None:
                    continue
                seen[v] = None
                if v.is_used():
                    continue
                g = v.graph
                assert g is not None
                if g.initializers.get(v.name or "") is not v:
                    continue
                listed = v in g.inputs
                if listed and (g.owner is not None or self.model.ir_version >= 4):
                    continue  # part of a graph's signature: not ours to drop
                g.remove_initializer(v)
                if listed:
                    g.remove_input(v)  # IR < 4: every initializer is listed as a main-graph input too
                freed += 1
        return len(order), hoisted, freed, materialized

    def _name_is_unique(self, name: str) -> bool:
        """Whether no other value of the model carries `name` (the counts are taken once per run, the first time a
        subgraph value is stored; values renamed since then carry fresh names that the counts do not need)."""
        c = self._name_counts
        if c is None:
            c = self._name_counts = collections.Counter()
            for g in self.model.graph.all_graphs():
                inputs = g.inputs
                c.update(v.name for v in inputs if v.name)
                c.update(k for k, v in g.initializers.items() if v not in inputs)
                for n in g:
                    c.update(v.name for v in n.outputs if v.name)
        return c[name] <= 1

    def _store(self, v: Value, a: Arg) -> None:
        """Make an initializer holding `a` stand for `v` everywhere; `v` keeps its readers' view and its name."""
        m = self.model
        g = v.graph
        assert g is not None and v.name is not None
        t = a.tensor()
        main = m.graph
        identity_kept = self._needs_identity(v)
        if identity_kept:
            # some output slot needs an Identity to keep the name: the IR makes it; the constant gets a new name
            init = add_constant(g, t, prefix=v.name)
        elif g is not main and not self._name_is_unique(v.name):
            # a value of a subgraph whose name a sibling subgraph uses too (legal ONNX: sibling scopes): in the
            # main graph the name would be defined twice, so the constant gets a new one
            init = add_constant(g, t, prefix=v.name)
        else:
            name = v.name
            # the initializer takes the folded value's name (readers and declarations stay recognizable)
            v.rename(m.fresh_name(name + "_folded"))
            init = add_constant(g, t, name=name)
            for i, o in enumerate(main.outputs):
                if o is v:
                    main.set_output(i, init)  # IR >= 4: a main-graph output may be an initializer
        v.replace_all_uses_with(init)
