"""MatMul + Add -> Gemm, and transposes folded into Gemm's transA / transB.

Gemm computes ``Y = alpha * A' @ B' + beta * C`` with A' = A or A^T (transA), B' likewise, A and B 2-D, and C
unidirectionally broadcast to Y's [M, N]. So, exactly:

* ``Add(MatMul(A, B), C) == Gemm(A, B, C)`` when A is 2-D (MatMul of a higher-rank A batches; a 1-D A drops a
  dim), B is a 2-D constant [K, N], and C broadcasts to [M, N] without enlarging it: rank at most 2, last dim 1
  or N, first dim 1 (or M when M is known). Only float, float16 and double (onnxruntime's CPU Gemm types).
* ``Gemm(Transpose(A), B, ...) == Gemm(A, B, ..., transA = 1 - transA)`` when the Transpose swaps the two axes
  (perm [1, 0], or no perm, on a 2-D input, which Gemm's inputs are); likewise for B and transB.
"""

from __future__ import annotations

from ...ir.builder import Builder
from ...ir.core import Value
from ..pattern import AnyOf, Const, Fail, Match, Pat, Var, describe
from ..rule import RewriteContext, Rule, float_fail, ints_attr
from .common import copy_attrs


class FuseMatMulAdd(Rule):
    name = "fuse-matmul-add"
    summary = "MatMul (2-D A, 2-D constant B) + Add of a constant bias -> Gemm"
    opsets = (7, None)  # Gemm's unidirectional broadcast of C
    pattern = Pat("Add", Pat("MatMul", Var("a"), Const("b"), name="mm"), Const("c"), name="add")

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        a = m["a"]
        r = ctx.rank_of(a)
        if r is None:
            return Fail(f"the rank of A ({a.name!r}) is unknown; Gemm needs a 2-D A")
        if r != 2:
            return Fail(f"A ({a.name!r}) has rank {r}; Gemm needs a 2-D A")
        bt, ct = m.tensor("b"), m.tensor("c")
        if len(bt.shape) != 2:
            return Fail(f"B has rank {len(bt.shape)}; Gemm needs a 2-D B")
        f = float_fail(bt, "B")
        if f is not None:
            return f
        if ct.dtype != bt.dtype:
            return Fail("the bias and B have different element types")
        n = int(bt.shape[1])
        cs = tuple(ct.shape)
        if len(cs) > 2:
            return Fail(f"the bias has rank {len(cs)}: adding it broadcasts the result to a higher rank")
        c2 = (1,) * (2 - len(cs)) + cs
        if c2[1] not in (1, n):
            return Fail(f"the bias has shape {list(cs)}, which does not broadcast to [M, {n}]")
        if c2[0] != 1:
            shape = ctx.shape_of(a)
            mdim = shape[0] if shape is not None else None
            if mdim != c2[0]:
                return Fail(f"the bias has {c2[0]} rows and the number of rows of A is "
                            + ("unknown" if not isinstance(mdim, int) else str(mdim)))
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        return [b.op("Gemm", m["a"], m["b"], m["c"])]


class FuseGemmTranspose(Rule):
    name = "fuse-gemm-transpose"
    summary = "Gemm reading a 2-D Transpose -> Gemm with transA/transB flipped"
    opsets = (7, None)
    pattern = AnyOf(
        Pat("Gemm", Pat("Transpose", Var("a"), name="ta"), Var("b"), allow_extra_inputs=True, name="gemm"),
        Pat("Gemm", Var("a"), Pat("Transpose", Var("b"), name="tb"), allow_extra_inputs=True, name="gemm"),
    )

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        t = m.node("ta") if m.has_node("ta") else m.node("tb")
        perm = ints_attr(t, "perm")
        if perm is not None and perm != [1, 0]:
            return Fail(f"{describe(t)} has perm {perm}, not [1, 0]")
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        g = m.node("gemm")
        key = "transA" if m.has_node("ta") else "transB"
        flipped = 1 - int(g.attr(key, 0))
        attrs = copy_attrs(g, **{key: flipped})
        n = b.node("Gemm", [m["a"], m["b"], *g.inputs[2:]], attrs)
        return [n.output]


RULES = [FuseMatMulAdd, FuseGemmTranspose]
