"""Root-mean-square normalization spelled out in primitive ops -> RMSNormalization (opset 23+).

Llama, T5, Mistral, Gemma (every "RMSNorm" / "T5LayerNorm") normalize by the root mean square of the last dims,
without subtracting the mean::

    ms = ReduceMean(Pow(x, 2), axes)           # or x * x; keepdims = 1, axes = the last k axes
    r  = Reciprocal(Sqrt(Add(ms, eps)))        # torch.rsqrt (dynamo); TorchScript writes Div(1, Sqrt(...))
    y  = Mul(Mul(x, r), gamma)                 # or Div(x, Sqrt(...)) * gamma

which is ``RMSNormalization(x, gamma, axis = -k, epsilon = eps)`` by its definition in opset 23
(``Y = X / sqrt(ReduceMean(X^2, axes) + epsilon) * scale``). The conditions are those of ``fuse-layer-norm``
(graphopt/rewrite/rules/layernorm.py): the ReduceMean reduces the last k axes with keepdims = 1; eps, 2 and 1 are
one-element constants that cannot broadcast x to a higher rank; gamma is a constant that broadcasts over the
normalized dims only (materialized at their shape when x's trailing dims are known; otherwise it must have rank k
and no dim of size 1, so that the Mul could only have matched x's dims); float and float16 only (the fused op's
stash_type = 1 computes in float32, which for float16 is at least as accurate and for double would lose
precision).

Models exported below opset 23 keep the decomposed form: the rule fires there only after the user raises the
opset (``--set fuse.target-opset=23``; see graphopt/passes/_opsets.py), and validation checks the result as always.
"""

from __future__ import annotations

from ...ir.builder import Builder
from ...ir.core import Value
from ..pattern import AnyOf, Const, Fail, Match, Pat, Var
from ..rule import RewriteContext, Rule
from .common import scalar_rank_fail
from .layernorm import _reduce_axes, build_normalization, record_normalization


def _pattern() -> Pat:
    x = Var("x")
    sq = AnyOf(Pat("Pow", x, Const("two", 2.0)), Pat("Mul", x, x))
    ms = Pat("ReduceMean", sq, allow_extra_inputs=True, name="mean")
    std = Pat("Sqrt", Pat("Add", ms, Const("eps", scalar=True)))
    normed = AnyOf(
        Pat("Mul", x, Pat("Reciprocal", std)),
        Pat("Mul", x, Pat("Div", Const("one", 1.0), std)),
        Pat("Div", x, std),
    )
    return Pat("Mul", normed, Const("gamma"), name="mul")


class FuseRMSNorm(Rule):
    name = "fuse-rms-norm"
    summary = "Pow/ReduceMean/Add/Sqrt/Reciprocal/Mul/Mul -> RMSNormalization (opset 23+)"
    opsets = (23, None)
    pattern = _pattern()

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        x = m["x"]
        g = m.tensor("gamma")
        dt = ctx.dtype_of(x) or g.dtype
        if dt not in (1, 10):
            return Fail(f"x has element type {dt}; the rule fuses float and float16")
        shape = ctx.shape_of(x)
        rank = len(shape) if shape is not None else ctx.rank_of(x)
        axes = _reduce_axes(m.node("mean"), ctx, rank)
        if isinstance(axes, Fail):
            return axes
        k = len(axes)
        if axes != list(range(-k, 0)):
            return Fail(f"the normalized axes {axes} are not the last {k} axes")
        for c in ("eps", "two", "one"):
            if c in m.tensors:
                f = scalar_rank_fail(m.tensor(c), x, ctx, f"the constant {m[c].name!r}")
                if f is not None:
                    return f
        return record_normalization(m, g, shape, k)

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        return build_normalization(m, b, "RMSNormalization")


RULES = [FuseRMSNorm]
