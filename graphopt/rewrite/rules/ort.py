"""onnxruntime contrib fusions (level "aggressive", -O3 only): ops of the ``com.microsoft`` domain that
onnxruntime's CPU provider runs, for models whose opset predates the standard op.

* ``ort-gelu``: the erf form ``0.5 * x * (1 + Erf(x / sqrt(2)))`` -> ``com.microsoft.Gelu(x)``, the same function.
  float and float16 (the CPU kernel has no double).
* ``ort-fast-gelu``: the tanh form ``0.5 * x * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 x^3)))`` ->
  ``com.microsoft.FastGelu(x)``, which is defined as exactly that formula.
* ``ort-bias-gelu``: ``Gelu(Add(x, bias))`` (com.microsoft Gelu, or the standard Gelu without approximation) with a
  constant 1-D bias -> ``com.microsoft.BiasGelu(x, bias)``, defined as Gelu(x + bias) with the bias along the last
  axis. The bias must not change x's shape: x's last dim must be known to equal the bias length, or (x's shape
  unknown) the bias has more than one element, so that Add's broadcasting could only have matched x's last dim (a
  last dim of 1 would make BiasGelu refuse to run rather than compute something else). float only.
* ``ort-fused-matmul``: ``MatMul(Transpose(A), B)`` where the Transpose swaps the last two axes and keeps the others
  -> ``com.microsoft.FusedMatMul(A, B, transA=1)`` (likewise for B), which multiplies by A's transpose over the
  last two axes. float, float16 and double.

Tolerance: onnxruntime evaluates Erf and Tanh in these kernels with its vectorized approximations (relative error
around 1e-6 in float32), so the results match the unfused graph to that tolerance, not bit for bit.
The rules add the ``com.microsoft`` opset import (version 1) when the model lacks it; a model that imports another
version of that domain is left alone.
"""

from __future__ import annotations

from ...ir.builder import Builder
from ...ir.core import Value
from ..pattern import AnyOf, Const, Fail, Match, Pat, Var, describe
from ..rule import RewriteContext, Rule, ints_attr
from .gelu import erf_gelu_pattern, gelu_check, tanh_gelu_pattern

MS = "com.microsoft"


class _Ort(Rule):
    level = "aggressive"
    emits = {MS: 1}
    opsets = (1, None)


class OrtGelu(_Ort):
    name = "ort-gelu"
    summary = "erf-form GELU -> com.microsoft.Gelu"
    pattern = erf_gelu_pattern()

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        f = gelu_check(m, ctx)
        if f is not None:
            return f
        dt = ctx.dtype_of(m["x"]) or m.tensor("half").dtype
        if dt == 11:
            return Fail("onnxruntime's com.microsoft.Gelu has no double kernel")
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        return [b.op("Gelu", m["x"], domain=MS)]


class OrtFastGelu(_Ort):
    name = "ort-fast-gelu"
    summary = "tanh-form GELU -> com.microsoft.FastGelu"
    pattern = tanh_gelu_pattern()

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        return gelu_check(m, ctx)

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        return [b.op("FastGelu", m["x"], domain=MS)]


class OrtBiasGelu(_Ort):
    name = "ort-bias-gelu"
    summary = "Gelu(x + 1-D constant bias) -> com.microsoft.BiasGelu"
    pattern = AnyOf(
        Pat("Gelu", Pat("Add", Var("x"), Const("bias"), name="add"), domain=MS, name="gelu"),
        Pat("Gelu", Pat("Add", Var("x"), Const("bias"), name="add"), name="gelu",
            attrs={"approximate": lambda v: v in (None, "none")}),
    )

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        bias = m.tensor("bias")
        if bias.dtype != 1:
            return Fail(f"the bias has element type {bias.dtype}; BiasGelu's CPU kernel takes float")
        if len(bias.shape) != 1:
            return Fail(f"the bias has shape {list(bias.shape)}, not 1-D")
        n = int(bias.shape[0])
        shape = ctx.shape_of(m["x"])
        if shape is not None and shape:
            if shape[-1] != n:
                return Fail(f"x's last dim is {shape[-1]}, the bias has {n} elements")
        elif shape is not None:
            return Fail("x is a scalar")
        elif n <= 1:
            return Fail("x's shape is unknown and a one-element bias could broadcast it")
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        return [b.op("BiasGelu", m["x"], m["bias"], domain=MS)]


class OrtFusedMatMul(_Ort):
    name = "ort-fused-matmul"
    summary = "MatMul reading a last-two-axes Transpose -> com.microsoft.FusedMatMul with transA/transB"
    pattern = AnyOf(
        Pat("MatMul", Pat("Transpose", Var("a"), name="ta"), Var("b"), name="mm"),
        Pat("MatMul", Var("a"), Pat("Transpose", Var("b"), name="tb"), name="mm"),
    )

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        t = m.node("ta") if m.has_node("ta") else m.node("tb")
        perm = ints_attr(t, "perm")
        if perm is None:
            r = ctx.rank_of(t.input(0))
            if r != 2:
                return Fail(f"{describe(t)} has no perm and its input's rank is "
                            + ("unknown" if r is None else str(r)))
            perm = [1, 0]
        r = len(perm)
        if r < 2 or perm != list(range(r - 2)) + [r - 1, r - 2]:
            return Fail(f"{describe(t)} has perm {perm}: it does not just swap the last two axes")
        dt = ctx.dtype_of(m["a"]) or ctx.dtype_of(m["b"])
        if dt not in (1, 10, 11):
            return Fail(f"element type {dt}: FusedMatMul's CPU kernel takes float, float16 and double")
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        key = "transA" if m.has_node("ta") else "transB"
        return [b.node("FusedMatMul", [m["a"], m["b"]], {key: 1}, domain=MS).output]


RULES = [OrtGelu, OrtFastGelu, OrtBiasGelu, OrtFusedMatMul]
