"""Conv whose weight is a known fill (or per-output-channel) value, followed by BatchNormalization or a per-channel
Mul / Add -> one Conv, without storing the weight.

Models whose weights are made at load time (``ConstantOfShape`` of a constant shape, see :mod:`.known`) keep their
convolutions in a form fuse-conv-bn cannot touch: folding the weight would store it in full. But a weight that
varies only along its output channels, ``W[m, ...] = w[m]`` (a fill has ``w[m] = v`` for every m), stays such a
weight when each output channel is scaled, so the folded weight needs only M numbers:

    Conv(x, W) -> BatchNormalization:   W'[m] = w[m] * s[m],  b' = (b - mean) * s + beta,  s = gamma / sqrt(var + eps)
    Conv(x, W) * c  (c per channel):    W'[m] = w[m] * c[m],  b' = b * c
    Conv(x, W) + c  (c per channel):    W' = W (the same value), b' = b + c

(b = 0 when the conv has no bias; eps is BatchNormalization's ``epsilon``, 1e-5 when absent.) The new weight is
``ConstantOfShape(shape, value=w'[0])`` when every w'[m] is equal after rounding to the weight's type, else
``Expand(w'[M, 1, ..., 1], shape)``; ``shape`` is the old fill's own shape constant when there is one. The new bias
is a stored constant of M numbers. Numbers are computed in float64 and rounded once to the weight's type.

The old weight is never changed: another Conv reading it keeps it, and dead-code elimination removes it when
nothing does. A stored-constant weight is accepted too when a BN parameter, the per-channel constant or the bias
is a fill (fuse-conv-bn / fuse-conv-mul / fuse-conv-add take the all-stored case); it is then scaled in full, as
those rules do, and only when no other node reads it (the old tensor would stay for that reader).

BatchNormalization must be in inference mode (``training_mode`` = 0; ``spatial`` = 1 before opset 9) with only
its first output used. Rules in this family need ConstantOfShape, so opset 9 or later.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ...ir.builder import Builder
from ...ir.core import Node, Value
from ...ir.shapes import TensorType
from ...ir.tensors import DataType, Tensor
from ..pattern import Fail, Match, Opt, Pat, Var, const_tensor, describe
from ..rule import RewriteContext, Rule, shared_fail, to_dtype
from .common import copy_attrs
from .known import DEFAULT_MAX_ELEMENTS, Known, channel_vector, known_value

# The most numbers a rewrite of this family stores per new tensor (M output channels; 64 KiB of float32).
DEFAULT_MAX_STORED_ELEMENTS = 1 << 14


def bn_mode_fail(bn: Node, ctx: RewriteContext) -> Fail | None:
    """Why `bn` is not an inference-mode BatchNormalization with per-channel parameters, or None."""
    if int(bn.attr("training_mode", 0) or 0) != 0:
        return Fail(f"{describe(bn)} is in training mode")
    if ctx.opset < 9 and int(bn.attr("spatial", 1)) != 1:
        return Fail(f"{describe(bn)} has spatial=0 (per-activation parameters)")
    return None


def bn_params(m: Match, ctx: RewriteContext, cap: int, channels: int | None = None
              ) -> tuple[dict[str, Known], int] | Fail:
    """The four BatchNormalization parameters bound as scale/bias/mean/var, known, float, each of shape [C]."""
    out: dict[str, Known] = {}
    for k in ("scale", "bias", "mean", "var"):
        got = known_value(m[k], ctx.opset, cap)
        if isinstance(got, Fail):
            return Fail(f"BatchNormalization {k}: {got.reason}")
        if not got.is_float:
            return Fail(f"BatchNormalization {k} has element type {got.dtype}; the rule folds float, float16 and "
                        "double only")
        if len(got.shape) != 1 or (channels is not None and got.shape[0] != channels):
            want = f"[{channels}]" if channels is not None else "[C]"
            return Fail(f"BatchNormalization {k} has shape {list(got.shape)}, expected {want}")
        if channels is None:
            channels = got.shape[0]
        out[k] = got
    assert channels is not None
    return out, channels


def bn_scale(bn: Node, params: dict[str, Known]) -> np.ndarray:
    """s = scale / sqrt(var + epsilon), float64: BatchNormalization's per-channel multiplier."""
    eps = float(bn.attr("epsilon", float(np.float32(1e-5))))
    var = params["var"].along(0)
    scale = params["scale"].along(0)
    assert var is not None and scale is not None
    return scale / np.sqrt(var + eps)


def _weight_fail(k: Known | Fail, conv: Node) -> Fail | None:
    if isinstance(k, Fail):
        return Fail(f"the weight of {describe(conv)}: {k.reason}")
    if not k.is_float:
        return Fail(f"the weight of {describe(conv)} has element type {k.dtype}; the rule folds float, float16 and "
                    "double only")
    if len(k.shape) < 3:
        return Fail(f"the weight of {describe(conv)} has rank {len(k.shape)}")
    return None


def _bias(m: Match, ctx: RewriteContext, k_w: Known, cap: int) -> tuple[np.ndarray, bool] | Fail:
    """The conv's bias (zeros when absent), and whether it is stored (or absent)."""
    ch = k_w.shape[0]
    if "b" not in m.values:
        return np.zeros(ch), True
    kb = known_value(m["b"], ctx.opset, cap)
    if isinstance(kb, Fail):
        return Fail(f"the conv bias: {kb.reason}")
    if kb.shape != (ch,):
        return Fail(f"the conv bias has shape {list(kb.shape)}, expected [{ch}]")
    vec = kb.along(0)
    assert vec is not None
    return vec, kb.stored


def plan_weight(m: Match, k_w: Known, scale: np.ndarray, conv: Node, *, stored_others: bool) -> Fail | None:
    """Leave in ``m.data`` how to build the weight scaled by `scale` per output channel (or why it cannot be)."""
    if k_w.stored:
        if stored_others:
            return Fail("the weight and the other operands are stored constants (the plain rule's case)")
        f = shared_fail(m["w"], conv, "the conv weight")
        if f is not None:
            return f
        w64 = np.asarray(k_w.base, dtype=np.float64)
        m.data["w"] = to_dtype(w64 * scale.reshape((-1,) + (1,) * (w64.ndim - 1)), k_w.dtype)
        return None
    vec = k_w.along(0)
    if vec is None:
        return Fail(f"the weight of {describe(conv)} varies along more than its output channels (the folded "
                    "weight would be stored in full)")
    new = to_dtype(vec * scale, k_w.dtype)
    bits = new.view(f"u{new.itemsize}")
    if new.size and np.all(bits == bits[0]):  # bit-equal: -0.0 and 0.0 stay apart
        m.data["fill"] = new[:1]
    else:
        m.data["wvec"] = new.reshape((-1,) + (1,) * (len(k_w.shape) - 1))
    m.data["shape"] = _shape_source(m["w"], k_w.shape)
    m.data["wtype"] = (k_w.dtype, k_w.shape)
    return None


def _shape_source(w: Value, shape: tuple[int, ...]) -> Value | None:
    """An existing int64 constant holding `shape` that the weight's own chain reads (the fill's shape, or an
    Expand's), to reuse instead of storing a new one; None when there is none."""
    seen = 0
    v: Value | None = w
    while v is not None and v.producer is not None and seen < 32:
        p = v.producer
        if p.op_type in ("ConstantOfShape", "Expand"):
            s = p.input(0) if p.op_type == "ConstantOfShape" else p.input(1)
            t = const_tensor(s)
            if t is not None and t.dtype == DataType.INT64 and len(t.shape) == 1 and \
                    [int(x) for x in t.numpy()] == list(shape):
                return s
            return None
        if p.op_type not in ("Identity", "Unsqueeze", "Squeeze", "Reshape"):
            return None
        v = p.input(0)
        seen += 1
    return None


def build_weight(m: Match, b: Builder) -> Value:
    """The weight planned by :func:`plan_weight`."""
    base = m["w"].name or "w"
    if "w" in m.data:
        return b.const(m.data["w"], prefix=base + "_scaled")
    dtype, shape = m.data["wtype"]
    shape_v = m.data["shape"]
    if shape_v is None:
        shape_v = b.const(np.asarray(shape, dtype=np.int64), prefix=base + "_shape")
    if "fill" in m.data:
        out = b.op("ConstantOfShape", shape_v, value=Tensor.from_numpy(m.data["fill"]))
    else:
        out = b.op("Expand", b.const(m.data["wvec"], prefix=base + "_channels"), shape_v)
    out.type = TensorType(dtype, shape)
    return out


class _FillRule(Rule):
    opsets = (9, None)
    # transient work: the most elements a known value may be materialized to while checking
    max_elements: ClassVar[int] = DEFAULT_MAX_ELEMENTS
    # file growth: the most numbers one new tensor (bias, per-channel weight factors) may hold
    max_stored_elements: ClassVar[int] = DEFAULT_MAX_STORED_ELEMENTS

    def _stored_cap_fail(self, channels: int) -> Fail | None:
        if channels > self.max_stored_elements:
            return Fail(f"{channels} channels: the folded per-channel tensors would exceed "
                        f"{self.max_stored_elements} elements")
        return None


def _conv_pat() -> Pat:
    return Pat("Conv", Var("x"), Var("w"), Opt(Var("b")), name="conv")


class FuseConvBatchNormFill(_FillRule):
    name = "fuse-conv-bn-fill"
    summary = ("Conv with a fill (ConstantOfShape) weight + BatchNormalization -> Conv reading a per-channel "
               "weight (ConstantOfShape or Expand of M numbers)")
    pattern = Pat("BatchNormalization", _conv_pat(), Var("scale"), Var("bias"), Var("mean"), Var("var"), name="bn")

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        bn, conv = m.node("bn"), m.node("conv")
        f = bn_mode_fail(bn, ctx)
        if f is not None:
            return f
        k_w = known_value(m["w"], ctx.opset, self.max_elements)
        f = _weight_fail(k_w, conv)
        if f is not None:
            return f
        assert isinstance(k_w, Known)
        ch = k_w.shape[0]
        f = self._stored_cap_fail(ch)
        if f is not None:
            return f
        got = bn_params(m, ctx, self.max_elements, ch)
        if isinstance(got, Fail):
            return got
        params, _ = got
        bias = _bias(m, ctx, k_w, self.max_elements)
        if isinstance(bias, Fail):
            return bias
        b_vec, b_stored = bias
        stored_others = b_stored and all(p.stored for p in params.values())
        s = bn_scale(bn, params)
        f = plan_weight(m, k_w, s, conv, stored_others=stored_others)
        if f is not None:
            return f
        mean, beta = params["mean"].along(0), params["bias"].along(0)
        assert mean is not None and beta is not None
        m.data["b"] = to_dtype((b_vec - mean) * s + beta, k_w.dtype)
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        conv = m.node("conv")
        w = build_weight(m, b)
        bias = b.const(m.data["b"], prefix=(m["w"].name or "w") + "_bn_bias")
        return [b.node("Conv", [m["x"], w, bias], copy_attrs(conv)).output]


class _ConvAffineFill(_FillRule):
    op: ClassVar[str] = "Mul"

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        conv, node = m.node("conv"), m.node("affine")
        k_c = known_value(m["c"], ctx.opset, self.max_elements)
        if isinstance(k_c, Fail):
            return Fail(f"the other operand of {describe(node)}: {k_c.reason}")
        k_w = known_value(m["w"], ctx.opset, self.max_elements)
        if self.op == "Add" and isinstance(k_w, Fail):
            # the weight is kept as it is: only its shape matters
            k_w = _declared(m["w"], ctx)
        f = _weight_fail(k_w, conv)
        if f is not None:
            return f
        assert isinstance(k_w, Known)
        if k_c.dtype != k_w.dtype:
            return Fail(f"the constant has element type {k_c.dtype}, the weight {k_w.dtype}")
        ch = k_w.shape[0]
        f = self._stored_cap_fail(ch)
        if f is not None:
            return f
        vec = channel_vector(k_c, len(k_w.shape), ch, "the constant")
        if isinstance(vec, Fail):
            return vec
        bias = _bias(m, ctx, k_w, self.max_elements)
        if isinstance(bias, Fail):
            return bias
        b_vec, b_stored = bias
        if self.op == "Add":
            if k_c.stored and b_stored and k_w.stored:
                return Fail("the weight, bias and constant are stored constants (fuse-conv-add's case)")
            m.data["b"] = to_dtype(b_vec + vec, k_w.dtype)
            return None
        f = plan_weight(m, k_w, vec, conv, stored_others=k_c.stored and b_stored)
        if f is not None:
            return f
        if "b" in m.values:
            m.data["b"] = to_dtype(b_vec * vec, k_w.dtype)
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        conv = m.node("conv")
        base = m["w"].name or "w"
        w = m["w"] if self.op == "Add" else build_weight(m, b)
        inputs = [m["x"], w]
        if "b" in m.data:
            inputs.append(b.const(m.data["b"], prefix=base + "_bias"))
        return [b.node("Conv", inputs, copy_attrs(conv)).output]


def _declared(w: Value, ctx: RewriteContext) -> Known | Fail:
    """A stand-in Known with the weight's declared static shape and type (its numbers are not used)."""
    shape = ctx.shape_of(w)
    dtype = ctx.dtype_of(w)
    if shape is None or not all(isinstance(d, int) for d in shape) or dtype is None:
        return Fail(f"{w.name!r} is not a known constant and its static shape is unknown")
    return Known(np.zeros((1,) * len(shape)), tuple(shape), dtype, stored=False)


class FuseConvMulFill(_ConvAffineFill):
    name = "fuse-conv-mul-fill"
    summary = "Conv + Mul by a per-channel fill, or Conv with a fill weight + per-channel Mul -> Conv"
    op = "Mul"
    pattern = Pat("Mul", _conv_pat(), Var("c"), name="affine")


class FuseConvAddFill(_ConvAffineFill):
    name = "fuse-conv-add-fill"
    summary = "Conv + Add of a per-channel fill, or Conv with a fill weight + per-channel Add -> Conv with bias"
    op = "Add"
    pattern = Pat("Add", _conv_pat(), Var("c"), name="affine")


RULES = [FuseConvBatchNormFill, FuseConvMulFill, FuseConvAddFill]
