"""The built-in fusion rules, one family per module (the math is in each module's docstring).

Registration order is the order in which rules are tried at a node: portable rules first, so that at -O3 a
standard op (Gelu, opset 20) wins over its onnxruntime contrib counterpart.
"""

from __future__ import annotations

from typing import Any

from ..rule import Rule
from . import (bn_affine, conv_affine, conv_bn, div_mul, fill, gelu, gemm, layernorm, ort, pad, reduce,
               reshape_transpose, rmsnorm, rotary, scale_linear, shape_chains, tied_weights)

FAMILIES = (conv_bn, conv_affine, fill, bn_affine, pad, gemm, tied_weights, shape_chains, reshape_transpose, reduce,
            gelu, layernorm, rmsnorm, rotary, div_mul, scale_linear, ort)


def builtin_rules() -> list[Rule]:
    """Fresh instances of every built-in rule, in registration order."""
    return [cls() for fam in FAMILIES for cls in fam.RULES]


def register_builtin_rules(ctx: Any) -> None:
    """Put the built-in rules in `ctx.rules` (a RuleRegistry)."""
    for rule in builtin_rules():
        ctx.rules.register(rule, origin="builtin")


__all__ = ["FAMILIES", "builtin_rules", "register_builtin_rules"]
