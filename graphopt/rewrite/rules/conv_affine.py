"""Conv followed by a per-output-channel Add or Mul -> one Conv.

A convolution's output channel m is ``z[:, m] = conv(x, W[m]) + b[m]``. With a constant c that varies only along
the channel axis (shape [M, 1, ..., 1], [1, M, 1, ..., 1], [1] or a scalar, broadcasting without enlarging the
output)::

    z + c  = conv(x, W) + (b + c)                    (the weight is unchanged and reused)
    z * c  = conv(x, W * c[m]) + b * c               (linearity of the convolution in W)

The Add form applies to Conv and ConvTranspose (whose bias is per output channel too); the Mul form to Conv and
ConvTranspose, scaling W along the output-channel axis (axis 0 for Conv, axis 1 within each group's block for
ConvTranspose). The Mul form does not fire when the weight is read by another node (the scaled weight is a new
tensor). Folded numbers are computed in float64 and rounded once to the weight's type.
"""

from __future__ import annotations


from ...ir.builder import Builder
from ...ir.core import Value
from ..pattern import Const, Fail, Match, Opt, Pat, Var, describe
from ..rule import RewriteContext, Rule, float_fail, shared_fail, to_dtype
from .common import conv_bias, conv_out_channels, copy_attrs, per_channel, scale_out_channels

_CONVS = ("Conv", "ConvTranspose")


def _conv_pattern(op: str) -> Pat:
    return Pat(op, Pat(_CONVS, Var("x"), Const("w"), Opt(Const("b")), name="conv"), Const("c"), name="affine")


class _ConvAffine(Rule):
    op = "Add"

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        conv = m.node("conv")
        w = m.tensor("w")
        f = float_fail(w, "the conv weight")
        if f is not None:
            return f
        c = m.tensor("c")
        if c.dtype != w.dtype:
            return Fail(f"the constant has element type {c.dtype}, the weight {w.dtype}")
        if len(w.shape) < 3:
            return Fail(f"the weight of {describe(conv)} has rank {len(w.shape)}")
        group = int(conv.attr("group", 1))
        if conv.op_type == "ConvTranspose" and w.shape[0] % group:
            return Fail(f"{describe(conv)}: weight channels {w.shape[0]} not divisible by group {group}")
        ch = conv_out_channels(conv.op_type, tuple(w.shape), group)
        vec = per_channel(c, len(w.shape), ch, "the constant")
        if isinstance(vec, Fail):
            return vec
        bias = conv_bias(m, ch)
        if isinstance(bias, Fail):
            return bias
        if self.op == "Add":
            m.data["b"] = to_dtype(bias + vec, w)
        else:
            f = shared_fail(m["w"], conv, "the conv weight")
            if f is not None:
                return f
            m.data["w"] = to_dtype(scale_out_channels(conv.op_type, w.numpy(), vec, group), w)
            if "b" in m.values:
                m.data["b"] = to_dtype(bias * vec, w)
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        conv = m.node("conv")
        base = m["w"].name or "w"
        w = b.const(m.data["w"], prefix=base + "_scaled") if "w" in m.data else m["w"]
        inputs = [m["x"], w]
        if "b" in m.data:
            inputs.append(b.const(m.data["b"], prefix=base + "_bias"))
        n = b.node(conv.op_type, inputs, copy_attrs(conv))
        return [n.output]


class FuseConvAdd(_ConvAffine):
    name = "fuse-conv-add"
    summary = "Conv + Add of a per-channel constant -> Conv with bias"
    op = "Add"
    opsets = (7, None)  # multidirectional broadcasting of Add
    pattern = _conv_pattern("Add")


class FuseConvMul(_ConvAffine):
    name = "fuse-conv-mul"
    summary = "Conv + Mul by a per-channel constant -> Conv with scaled weight and bias"
    op = "Mul"
    opsets = (7, None)
    pattern = _conv_pattern("Mul")


RULES = [FuseConvAdd, FuseConvMul]
