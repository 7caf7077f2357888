"""Conv / ConvTranspose followed by an inference BatchNormalization -> one Conv with folded weight and bias.

BatchNormalization in inference mode is a per-channel affine map::

    y[n, c, ...] = (z[n, c, ...] - mean[c]) * s[c] + beta[c],   s = gamma / sqrt(var + eps)

and a convolution is linear in its weight, with a per-output-channel bias: ``z = conv(x, W) + b``. Hence::

    y = conv(x, W') + b'     with  W'[m, ...] = W[m, ...] * s[m],   b' = (b - mean) * s + beta

(b = 0 when the conv has no bias). For ConvTranspose, W is [C_in, M/group, k...] and output channel
``g * (M/group) + j`` reads ``W[g * (C_in/group) + i, j]``, so the scale goes along axis 1 of each group's block.

The folded numbers are computed in float64 and rounded once to the weight's type. The rule needs constant BN
parameters and a constant conv weight (and bias, if any) and does not fire when the weight is read by another node:
the folded weight is a new tensor and the old one would stay for that reader, doubling its storage.
BatchNormalization must be in inference mode: ``training_mode`` = 0 (opset 14+), ``spatial`` = 1 (before opset 9,
where spatial = 0 means per-activation parameters), and only its first output used. Opsets before 7 (the
``is_test`` / ``consumed_inputs`` era) are not covered.
"""

from __future__ import annotations

import numpy as np

from ...ir.builder import Builder
from ...ir.core import Value
from ..pattern import Const, Fail, Match, Opt, Pat, Var, describe
from ..rule import RewriteContext, Rule, float_fail, shared_fail, to_dtype
from .common import conv_bias, conv_out_channels, copy_attrs, scale_out_channels


def _bn_pattern(op: str) -> Pat:
    return Pat("BatchNormalization",
               Pat(op, Var("x"), Const("w"), Opt(Const("b")), name="conv"),
               Const("scale"), Const("bias"), Const("mean"), Const("var"), name="bn")


class FuseConvBatchNorm(Rule):
    name = "fuse-conv-bn"
    summary = "Conv + inference BatchNormalization -> Conv with folded weight and bias"
    opsets = (7, None)
    conv_op = "Conv"
    pattern = _bn_pattern("Conv")

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        bn, conv = m.node("bn"), m.node("conv")
        if int(bn.attr("training_mode", 0) or 0) != 0:
            return Fail(f"{describe(bn)} is in training mode")
        if ctx.opset < 9 and int(bn.attr("spatial", 1)) != 1:
            return Fail(f"{describe(bn)} has spatial=0 (per-activation parameters)")
        w = m.tensor("w")
        f = float_fail(w, "the conv weight")
        if f is not None:
            return f
        if len(w.shape) < 3:
            return Fail(f"the weight of {describe(conv)} has rank {len(w.shape)}")
        f = shared_fail(m["w"], conv, "the conv weight")
        if f is not None:
            return f
        group = int(conv.attr("group", 1))
        if self.conv_op == "ConvTranspose" and w.shape[0] % group:
            return Fail(f"{describe(conv)}: weight channels {w.shape[0]} not divisible by group {group}")
        ch = conv_out_channels(self.conv_op, tuple(w.shape), group)
        params = {}
        for k in ("scale", "bias", "mean", "var"):
            t = m.tensor(k)
            if tuple(t.shape) != (ch,):
                return Fail(f"BatchNormalization {k} has shape {list(t.shape)}, expected [{ch}]")
            f = float_fail(t, f"BatchNormalization {k}")
            if f is not None:
                return f
            params[k] = np.asarray(t.numpy(), dtype=np.float64)
        bias = conv_bias(m, ch)
        if isinstance(bias, Fail):
            return bias
        eps = float(bn.attr("epsilon", 1e-5))
        s = params["scale"] / np.sqrt(params["var"] + eps)
        m.data["w"] = to_dtype(scale_out_channels(self.conv_op, w.numpy(), s, group), w)
        m.data["b"] = to_dtype((bias - params["mean"]) * s + params["bias"], w)
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        conv = m.node("conv")
        w = b.const(m.data["w"], prefix=(m["w"].name or "w") + "_bn")
        bias = b.const(m.data["b"], prefix=(m["w"].name or "w") + "_bn_bias")
        n = b.node(self.conv_op, [m["x"], w, bias], copy_attrs(conv))
        return [n.output]


class FuseConvTransposeBatchNorm(FuseConvBatchNorm):
    name = "fuse-convtranspose-bn"
    summary = "ConvTranspose + inference BatchNormalization -> ConvTranspose with folded weight and bias"
    conv_op = "ConvTranspose"
    pattern = _bn_pattern("ConvTranspose")


RULES = [FuseConvBatchNorm, FuseConvTransposeBatchNorm]
