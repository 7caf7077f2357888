"""Reshape round trips: merge leading axes, transpose the rest, split them again -> one Transpose; reshape, apply
an element-wise op, reshape back -> the element-wise op.

torch's dynamo exporter decomposes ``scaled_dot_product_attention`` with ``k.transpose(-2, -1)`` on 3-D views::

    r1  = Reshape(k, Concat([-1], Shape(k)[-2:-1], [D]))        # [B, H, S, D] -> [B*H, S, D]
    t   = Transpose(r1, perm=[0, 2, 1])                         # [B*H, D, S]
    out = Reshape(t, Concat(Shape(k)[:-2], [D], Shape(k)[-2:-1]))  # [B, H, D, S]

eight nodes per attention layer for what is ``Transpose(k, perm=[0, 1, 3, 2])``. In general, for x of shape
[d_0, ..., d_{k-1}, e_1, ..., e_m]:

    Reshape(Transpose(Reshape(x, [P, e_1, ..., e_m]), perm=[0, p_1, ..., p_m]), [d_0, ..., d_{k-1}, e_p1, ..., e_pm])
      == Transpose(x, perm=[0, ..., k-1, k-1+p_1, ..., k-1+p_m])

because the first Reshape only merges the k leading axes into one (C order keeps each [e_1..e_m] block whole, the
block of (i_0, ..., i_{k-1}) at flat index P-major), the Transpose keeps axis 0 and permutes inside each block, and
the second Reshape splits axis 0 back into the same k axes. The shapes are read from the shape symbols:
the first Reshape's output must end with x's trailing m dims (its leading dim is then the product P, element counts
being equal), and the last Reshape's output must be x's k leading dims followed by the permuted trailing dims, all
provably equal (same static size or same symbol), except that one dim may be unknown (a -1 in the target) when
every other one is a static positive size: equal element counts then make it the wanted dim. The target
computations (Shape/Slice/Concat) become dead and go with dead-code elimination; a following or preceding Transpose
composes with the new one (eliminate-noops).

``reshape-elementwise-reshape``: ``Reshape(U(Reshape(y, t1)), t2) == U(y)`` for a unary element-wise op U (Gelu,
Relu, Tanh, ...; no axis, output shaped like its input) when the result's shape is provably y's (the dims compared
as above, one -1 next to static sizes allowed): U commutes with Reshape, and two Reshapes that end in the starting
shape leave every element in place. GPT-2's dynamo export runs its MLP activation on a [B, S, 4H] view between two
2-D Gemms.
"""

from __future__ import annotations

from typing import Any

from ...ir.builder import Builder
from ...ir.core import Node, Value
from ..pattern import Fail, Match, Pat, Var, describe
from ..rule import RewriteContext, Rule, ints_attr


def _reshape_dims(ctx: RewriteContext, node: Node) -> tuple[Any, ...] | None:
    """The output dims of a Reshape: from the shape symbols, completed from the target's symbolic value where they
    are unknown (a positive entry is that size, 0 copies the input dim unless allowzero, -1 stays unknown)."""
    s = ctx.shape_of(node.output)
    if s is not None and all(d is not None for d in s):
        return s
    table = getattr(ctx.jit, "symbols", None)
    try:
        tgt = table.value_of(node.input(1)) if table is not None else None
    except Exception:  # noqa: BLE001 - symbols are an optional aid; a failure there means "unknown"
        tgt = None
    if tgt is None or (s is not None and len(s) != len(tgt)):
        return s
    xs = ctx.shape_of(node.input(0))
    copy = not int(node.attr("allowzero", 0))
    out: list[Any] = []
    for i, e in enumerate(tgt):
        e = table.canon(e)
        known = s[i] if s is not None else None
        if known is not None:
            out.append(known)
        elif e.c is None:
            out.append(str(e))
        elif e.c > 0:
            out.append(int(e.c))
        elif e.c == 0 and copy and xs is not None and i < len(xs):
            out.append(xs[i])
        else:
            out.append(None)
    return tuple(out)


def _same(a: Any, b: Any) -> bool:
    """Provably equal dims: the same static size or the same symbol (None is unknown, equal to nothing)."""
    return a is not None and b is not None and a == b


def _split_back(got: list[Any], want: list[Any]) -> bool:
    """`got` is provably `want`: every dim equal, or all but one unknown dim (a -1 in the target) equal to static
    positive sizes, in which case equal element counts make the unknown one the wanted dim too."""
    unknown = [i for i, d in enumerate(got) if d is None]
    if len(unknown) > 1:
        return False
    for i, (a, b) in enumerate(zip(got, want)):
        if i in unknown:
            continue
        if not _same(a, b) or (unknown and not (isinstance(a, int) and a > 0)):
            return False
    return True


class ReshapeTransposeReshape(Rule):
    name = "reshape-transpose-reshape"
    summary = "Reshape merging leading axes + Transpose of the rest + Reshape splitting them -> one Transpose"
    opsets = (5, None)  # Reshape with a shape input
    pattern = Pat("Reshape", Pat("Transpose", Pat("Reshape", Var("x"), Var("t1"), allow_extra_inputs=True, name="r1"),
                                 name="tr"), Var("t2"), allow_extra_inputs=True, name="r2")

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        xs = ctx.shape_of(m["x"])
        s1 = _reshape_dims(ctx, m.node("r1"))
        s2 = _reshape_dims(ctx, m.node("r2"))
        if xs is None or s1 is None or s2 is None:
            which = "x" if xs is None else ("the merged view" if s1 is None else "the result")
            return Fail(f"the shape of {which} is unknown")
        rank_m = len(s1) - 1  # trailing axes kept by the first Reshape
        k = len(xs) - rank_m  # leading axes it merges
        if rank_m < 1 or k < 1:
            return Fail(f"the first Reshape ({list(xs)} -> {list(s1)}) does not merge leading axes")
        if not all(_same(a, b) for a, b in zip(xs[k:], s1[1:])):
            return Fail(f"the first Reshape ({list(xs)} -> {list(s1)}) changes more than the leading axes")
        tr = m.node("tr")
        perm = ints_attr(tr, "perm")
        if perm is None:
            perm = list(range(rank_m, -1, -1))
        if perm[0] != 0:
            return Fail(f"{describe(tr)} moves the merged axis (perm {perm})")
        want = [*xs[:k], *(xs[k - 1 + p] for p in perm[1:])]
        if len(s2) != len(want) or not _split_back(list(s2), want):
            return Fail(f"the last Reshape gives {list(s2)}, not the split-back shape {want}")
        m.data["perm"] = [*range(k), *(k - 1 + p for p in perm[1:])]
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        return [b.op("Transpose", m["x"], perm=m.data["perm"])]


# Unary ops applied element by element (no axis, no shape of their own): they commute with any Reshape.
_ELEMENTWISE = ("Relu", "Sigmoid", "Tanh", "Erf", "Gelu", "Exp", "Log", "Neg", "Abs", "Sqrt", "Reciprocal",
                "LeakyRelu", "Elu", "Selu", "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Celu", "Mish", "Sin",
                "Cos", "Floor", "Ceil", "Round", "Sign", "Not", "Identity")


class ReshapeElementwiseReshape(Rule):
    name = "reshape-elementwise-reshape"
    summary = "Reshape of an element-wise op of a Reshape, back to the first input's shape -> the element-wise op"
    opsets = (5, None)
    pattern = Pat("Reshape", Pat(_ELEMENTWISE, Pat("Reshape", Var("y"), Var("t1"), allow_extra_inputs=True,
                                                     name="r1"), allow_extra_inputs=True, name="op"),
                  Var("t2"), allow_extra_inputs=True, name="r2")

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        ys = ctx.shape_of(m["y"])
        out = _reshape_dims(ctx, m.node("r2"))
        if ys is None or out is None:
            return Fail("the shape of " + ("the input" if ys is None else "the result") + " is unknown")
        if len(ys) != len(out) or not _split_back(list(out), list(ys)):
            return Fail(f"the last Reshape gives {list(out)}, not the input's shape {list(ys)}")
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        op = m.node("op")
        n = b.node(op.op_type, [m["y"], *op.inputs[1:]], {k: a.value for k, a in op.attrs.items()},
                   domain=op.domain)
        return [n.output]


RULES = [ReshapeTransposeReshape, ReshapeElementwiseReshape]
