"""Rules: a pattern, a read-only check, and a rewrite that only builds.

A rule is data (name, level, opset range, pattern) plus two methods:

* ``check(match, ctx) -> Fail | None``: decides whether the match may be rewritten. It must not change the graph;
  it may leave computed results (folded weights, merged attributes) in ``match.data`` for the rewrite.
* ``rewrite(match, builder) -> list[Value]``: builds the replacement with the :class:`~graphopt.ir.Builder`
  (inserted just before the root) and returns the values that replace the root's outputs, in order. It must not
  fail and must not touch existing nodes or initializers: a new tensor is a new constant (``builder.const``),
  and the old one is left for dead-code elimination.

The driver (:mod:`graphopt.rewrite.driver`), not the rule, rejects matches whose intermediate values escape, and
splices the replacement in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..ir.builder import Builder
from ..ir.core import Model, Node, Value
from ..ir.tensors import Tensor
from .pattern import Fail, Match, Pattern, const_tensor, match_pattern

if TYPE_CHECKING:
    from ..jit.context import JitContext

LEVELS = ("portable", "aggressive")

# Unary ops that keep their input's shape, for the cheap rank reasoning below.
_SHAPE_PRESERVING = frozenset({
    "Relu", "Sigmoid", "Tanh", "Erf", "Gelu", "Exp", "Log", "Neg", "Abs", "Sqrt", "Reciprocal", "Softmax",
    "LogSoftmax", "LeakyRelu", "Elu", "Selu", "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Cast",
    "Identity", "Dropout", "Clip", "Floor", "Ceil", "Round", "Sign", "Not", "LayerNormalization",
    "BatchNormalization", "InstanceNormalization", "Celu", "Mish", "Sin", "Cos",
})


class RewriteContext:
    """What a rule's check may consult: the model, its default-domain opset, shapes and constants.

    Shapes come from the value's declared type, else from the JIT context's symbol table, else from a few local
    facts (a Flatten or Gemm output is 2-D, an elementwise op keeps its input's rank ...); None when unknown.
    """

    def __init__(self, model: Model, jit: JitContext | None = None, *, want_reasons: bool = False):
        self.model = model
        self.jit = jit
        self.opset: int = model.opset("") or 1
        # explain wants the precise reason at every candidate; the driver alone is content with the cheap
        # pre-filter's "no"
        self.want_reasons = want_reasons

    def opset_of(self, domain: str) -> int | None:
        return self.model.opset(domain)

    def const(self, v: Value | None) -> Tensor | None:
        return const_tensor(v)

    def shape_of(self, v: Value | None) -> tuple[Any, ...] | None:
        """The value's shape (dims are int, str or None), or None when even the rank is unknown.

        The declared shape (value_info), with every dim that the symbol table derives as a static size from the
        inputs taken from the table instead: a declared size may be wrong (onnx's shape inference of a ceil_mode
        pool whose last window starts past the input: onnxruntime and the operator's own text drop that window),
        and a rule that trusted it would build a node that fails at run time. Declared symbolic dims stay: they
        say which dims are equal where the table may only know an expression (M for B*S). Without a declared
        shape: a constant's, else the table's."""
        if v is None:
            return None
        s = v.shape
        if s is not None:
            if self.jit is not None and v.producer is not None:
                got = self._symbolic_shape(v)
                if got is not None and len(got) == len(s):
                    return tuple(g if g.__class__ is int and g != d else d for g, d in zip(got, s))
            return tuple(s)
        t = const_tensor(v)
        if t is not None:
            return tuple(t.shape)
        return self._symbolic_shape(v)

    def _symbolic_shape(self, v: Value) -> tuple[Any, ...] | None:
        if self.jit is not None:
            try:
                got = self.jit.symbols.shape_of(v)
            except Exception:  # noqa: BLE001 - symbols are an optional aid; a failure there means "unknown"
                got = None
            # a SymbolicShape (dims None = unknown rank) or a plain sequence of dims
            dims = getattr(got, "dims", got)
            if dims is not None:
                try:
                    return tuple(_plain_dim(d) for d in dims)
                except TypeError:
                    return None
        return None

    def rank_of(self, v: Value | None, _depth: int = 0) -> int | None:
        """The value's rank, or None when unknown."""
        s = self.shape_of(v)
        if s is not None:
            return len(s)
        if v is None or v.producer is None or _depth > 16:
            return None
        p = v.producer
        op = p.op_type
        if p.domain not in ("", "ai.onnx") or v.index != 0:
            return None
        if op in ("Flatten", "Gemm"):
            return 2
        if op in _SHAPE_PRESERVING:
            return self.rank_of(p.input(0), _depth + 1)
        if op == "Reshape":
            t = const_tensor(p.input(1))
            return int(t.size) if t is not None else None
        if op in ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Where", "PRelu"):
            ranks = [self.rank_of(x, _depth + 1) for x in p.inputs if x is not None]
            return max(ranks) if ranks and all(r is not None for r in ranks) else None  # type: ignore[type-var]
        if op == "MatMul":
            ra, rb = self.rank_of(p.input(0), _depth + 1), self.rank_of(p.input(1), _depth + 1)
            if ra is None or rb is None:
                return None
            if ra >= 2 and rb >= 2:
                return max(ra, rb)
            return max(ra, rb) - 1
        return None

    def dtype_of(self, v: Value | None) -> int | None:
        if v is None:
            return None
        d = v.dtype
        if d:
            return d
        t = const_tensor(v)
        if t is not None:
            return t.dtype
        if self.jit is not None:
            try:
                d = self.jit.symbols.dtype_of(v)
            except Exception:  # noqa: BLE001 - symbols are an optional aid; a failure there means "unknown"
                d = None
            if d:
                return int(d)
        return None


def _plain_dim(d: Any) -> Any:
    """An int for a static dim, the symbol's text for a symbolic one (equal text = the same symbol)."""
    if d is None or isinstance(d, (int, str)):
        return d
    c = getattr(d, "c", None)  # SymExpr: its constant value, or None when symbolic
    if isinstance(c, int):
        return c
    return str(d)


class Rule:
    """Base class of fusion rules. Subclasses set the class attributes and implement check/rewrite."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    # "portable" (standard ONNX ops, exact) runs at -O2; "aggressive" (runtime-specific ops) only at -O3
    level: ClassVar[str] = "portable"
    # default-domain opset range (inclusive; None = no upper bound) where the ops mean what the rule assumes
    opsets: ClassVar[tuple[int, int | None]] = (1, None)
    # opset imports the replacement needs beyond the model's (e.g. {"com.microsoft": 1}); the driver adds them
    emits: ClassVar[Mapping[str, int]] = {}
    pattern: ClassVar[Pattern | None] = None
    # how many node levels above its root a rule with its own matcher (no pattern) looks: lets the fuse pass's
    # later runs start from what changed (see rewrite.driver.change_seeds); None: unknown, look everywhere
    depth: ClassVar[int | None] = None

    def root_ops(self) -> tuple[str, ...]:
        """The op types of the nodes this rule can be rooted at (the registry indexes rules by them)."""
        if self.pattern is None:
            raise NotImplementedError(f"rule {self.name!r} has no pattern; override root_ops()")
        return self.pattern.root_ops()

    def opset_fail(self, model: Model) -> Fail | None:
        """Why the rule cannot apply to this model at all (opset outside its range), or None."""
        lo, hi = self.opsets
        v = model.opset("")
        if v is None:
            return Fail("the model imports no default-domain opset")
        if v < lo or (hi is not None and v > hi):
            rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            return Fail(f"the model's opset {v} is outside the rule's range ({rng})")
        for dom, ver in self.emits.items():
            have = model.opset(dom)
            if have is not None and have != ver:
                return Fail(f"the model imports {dom} version {have}; the rule emits version {ver}")
        return None

    def match(self, node: Node, ctx: RewriteContext, accept: Any = None) -> Match | Fail:
        """Match the pattern at `node`; `accept(match)` may reject a structural match so that matching goes on to
        the next alternative. Rules with variadic structure override this."""
        assert self.pattern is not None
        if not ctx.want_reasons and not self.pattern._quick(node):
            return Fail(f"{node.op_type} node does not have the shape of the pattern's root", node)
        return match_pattern(self.pattern, node, accept)

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        """Read-only: whether this match may be rewritten (None) or why not."""
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        """Build the replacement; return the values replacing the root's outputs."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<rule {self.name}>"


# ----------------------------------------------------------------------------------------------------------------
# Helpers shared by rule families
# ----------------------------------------------------------------------------------------------------------------
def float_fail(t: Tensor | int | None, what: str) -> Fail | None:
    """A Fail unless `t` (a tensor or an ONNX dtype) is a float type that numpy computes in."""
    dt = t.dtype if isinstance(t, Tensor) else t
    if dt is None:
        return Fail(f"{what}: element type unknown")
    if dt not in (1, 10, 11):  # float, float16, double
        return Fail(f"{what} has element type {dt}; the rule folds float, float16 and double only")
    return None


def shared_fail(v: Value, node: Node, what: str) -> Fail | None:
    """A Fail when `v` is read by a node other than `node` (folding into it would duplicate the tensor)."""
    for u, _ in v.uses():
        if u is not node:
            return Fail(f"{what} {v.name!r} is shared with {u.op_type} {u.name or ''!s}".rstrip()
                        + " (folding would duplicate the tensor)")
    if v.is_graph_output():
        return Fail(f"{what} {v.name!r} is a graph output")
    return None


def ints_attr(node: Node, name: str, default: list[int] | None = None) -> list[int] | None:
    v = node.attr(name, None)
    if v is None:
        return None if default is None else list(default)
    return [int(x) for x in v]


def to_dtype(arr: np.ndarray, like: Tensor | int) -> np.ndarray:
    """`arr` converted to the numpy dtype of an ONNX tensor (or dtype)."""
    from ..ir.tensors import numpy_dtype

    dt = like.dtype if isinstance(like, Tensor) else like
    return np.ascontiguousarray(arr.astype(numpy_dtype(dt)))


def axes_input_or_attr(node: Node, ctx: RewriteContext, input_index: int, since: int) -> tuple[list[int] | None, str]:
    """Axes given as an attribute (opset < `since`) or as a constant input (opset >= `since`).

    Returns (axes, "") — axes None when absent — or (None, reason) when they cannot be read.
    """
    if ctx.opset < since:
        return ints_attr(node, "axes"), ""
    v = node.input(input_index)
    if v is None:
        return None, ""
    t = const_tensor(v)
    if t is None:
        return None, f"the axes of {node.op_type} {node.name!r} are not a constant"
    return [int(x) for x in np.asarray(t.numpy()).reshape(-1)], ""
