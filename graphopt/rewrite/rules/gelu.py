"""GELU spelled out in primitive ops -> one Gelu (opset 20+).

Exporters (TorchScript before opset 20, Hugging Face's hand-written activations) emit::

    erf form:   0.5 * x * (1 + Erf(x / sqrt(2)))                           == Gelu(x)
    tanh form:  0.5 * x * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))    == Gelu(x, approximate="tanh")

with the three factors of the outer product associated either way ((x * h) * 0.5, (x * 0.5) * h,
x * (h * 0.5)), every commutative Mul/Add in either order, ``x / sqrt(2)`` or ``x * (1/sqrt(2))``, and ``x^3`` as
``Pow(x, 3)`` or ``x * (x * x)``. The constants are matched with a relative tolerance of 1e-3, enough for them to be
stored in float16 (sqrt(2) rounds to 1.4140625 there) and far tighter than any other activation would need.

The constants must be one-element tensors that cannot change the output's shape by broadcasting: 0-d, or of a rank
no larger than x's (when x's rank is unknown only 0-d constants qualify). Gelu computes in x's own type, so float,
float16 and double inputs keep their dtype.
"""

from __future__ import annotations

import math

from ...ir.builder import Builder
from ...ir.core import Value
from ..pattern import AnyOf, Const, Fail, Match, Pat, Pattern, Var
from ..rule import RewriteContext, Rule
from .common import scalar_rank_fail

SQRT2 = math.sqrt(2.0)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
KAPPA = 0.044715

_CONST_NAMES = ("half", "one", "sqrt2", "inv_sqrt2", "beta", "kappa", "three")


def product3(x: Pattern, h: Pattern, half: Pattern) -> AnyOf:
    """x * h * half in any association (each Mul also matches with its inputs swapped)."""
    return AnyOf(
        Pat("Mul", Pat("Mul", x, h), half, name="outer"),
        Pat("Mul", Pat("Mul", x, half), h, name="outer"),
        Pat("Mul", x, Pat("Mul", h, half), name="outer"),
    )


def erf_gelu_pattern() -> AnyOf:
    x = Var("x")
    scaled = AnyOf(Pat("Div", x, Const("sqrt2", SQRT2)), Pat("Mul", x, Const("inv_sqrt2", 1 / SQRT2)))
    h = Pat("Add", Pat("Erf", scaled), Const("one", 1.0))
    return product3(x, h, Const("half", 0.5))


def tanh_gelu_pattern() -> AnyOf:
    x = Var("x")
    cube = AnyOf(Pat("Pow", x, Const("three", 3.0)), Pat("Mul", x, Pat("Mul", x, x)))
    inner = Pat("Add", x, Pat("Mul", cube, Const("kappa", KAPPA)))
    h = Pat("Add", Pat("Tanh", Pat("Mul", inner, Const("beta", SQRT_2_OVER_PI))), Const("one", 1.0))
    return product3(x, h, Const("half", 0.5))


def gelu_check(m: Match, ctx: RewriteContext) -> Fail | None:
    """The shared check: float input and shape-neutral constants."""
    x = m["x"]
    dt = ctx.dtype_of(x)
    if dt is None:
        dt = m.tensor("half").dtype  # Mul's inputs share one type
    if dt not in (1, 10, 11):
        return Fail(f"x has element type {dt}; Gelu takes float, float16 or double")
    for k in _CONST_NAMES:
        if k in m.tensors:
            f = scalar_rank_fail(m.tensor(k), x, ctx, f"the constant {m[k].name!r}")
            if f is not None:
                return f
    return None


class FuseGeluErf(Rule):
    name = "fuse-gelu-erf"
    summary = "0.5 * x * (1 + Erf(x / sqrt(2))) -> Gelu (opset 20+)"
    opsets = (20, None)
    pattern = erf_gelu_pattern()

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        return gelu_check(m, ctx)

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        return [b.op("Gelu", m["x"])]


class FuseGeluTanh(Rule):
    name = "fuse-gelu-tanh"
    summary = "0.5 * x * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 x^3))) -> Gelu(approximate='tanh') (opset 20+)"
    opsets = (20, None)
    pattern = tanh_gelu_pattern()

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        return gelu_check(m, ctx)

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        return [b.op("Gelu", m["x"], approximate="tanh")]


RULES = [FuseGeluErf, FuseGeluTanh]
