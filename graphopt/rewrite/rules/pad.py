"""An explicit Pad folded into the padding of the Conv or pooling op that reads it.

Conv, MaxPool and AveragePool take ``pads = [x1_begin, x2_begin, ..., x1_end, x2_end]`` over the spatial axes;
Pad takes ``[d0_begin, ..., d(r-1)_begin, d0_end, ...]`` over all r axes (or over ``axes``, opset 18). When the
Pad is in constant mode, pads nothing on the batch and channel axes and pads by non-negative amounts, then::

    Conv(Pad(x, p, 0))            == Conv(x, pads = pads + p_spatial)                 (zero padding is Conv's own)
    AveragePool(Pad(x, p, 0))     == AveragePool(x, pads = pads + p_spatial, count_include_pad = 1)
    MaxPool(Pad(x, p, -inf))      == MaxPool(x, pads = pads + p_spatial)              (padding never wins a max)

The AveragePool form needs the pool's own padding either absent or already counted (count_include_pad = 1):
padded zeros count in the divisor, which is what count_include_pad = 1 means. The MaxPool form needs the pad value
to be -inf (for integer types: the type's minimum); a zero pad value would win the max over negative inputs.
The ops must not use ``auto_pad``; pools must not use ``ceil_mode`` (a last window hanging past the padding is
handled differently), MaxPool's Indices output must be unused, and every resulting pool pad must stay smaller than
the kernel (onnxruntime refuses larger ones).
"""

from __future__ import annotations

import math

import numpy as np

from ...ir.builder import Builder
from ...ir.core import Node, Value
from ..pattern import Fail, Match, Pat, Var, const_tensor, describe
from ..rule import RewriteContext, Rule, ints_attr
from .common import copy_attrs


def read_pad(pad: Node, rank: int | None, ctx: RewriteContext) -> tuple[list[int], float, str] | Fail:
    """(pads over all `rank` axes, pad value, mode) of a Pad node, or why they cannot be read."""
    mode = pad.attr("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if ctx.opset < 11:
        pads = ints_attr(pad, "pads")
        if pads is None:
            return Fail(f"{describe(pad)} has no pads attribute")
        value = float(pad.attr("value", 0.0))
        axes = None
    else:
        t = const_tensor(pad.input(1))
        if t is None:
            return Fail(f"the pads of {describe(pad)} are not a constant")
        pads = [int(v) for v in np.asarray(t.numpy()).reshape(-1)]
        cv = pad.input(2)
        value = 0.0
        if cv is not None:
            ct = const_tensor(cv)
            if ct is None:
                return Fail(f"the pad value of {describe(pad)} is not a constant")
            if ct.size != 1:
                return Fail(f"the pad value of {describe(pad)} is not a scalar")
            value = float(np.asarray(ct.numpy(), dtype=np.float64).reshape(-1)[0])
        axes = None
        if pad.input(3) is not None:
            at = const_tensor(pad.input(3))
            if at is None:
                return Fail(f"the axes of {describe(pad)} are not a constant")
            axes = [int(v) for v in np.asarray(at.numpy()).reshape(-1)]
    if axes is not None:
        if rank is None:
            return Fail(f"{describe(pad)} pads given axes and the input's rank is unknown")
        if len(pads) != 2 * len(axes):
            return Fail(f"{describe(pad)} has {len(pads)} pads for {len(axes)} axes")
        full = [0] * (2 * rank)
        for i, a in enumerate(axes):
            a = a + rank if a < 0 else a
            if not 0 <= a < rank:
                return Fail(f"{describe(pad)} pads axis {axes[i]} of a rank-{rank} input")
            full[a] = pads[i]
            full[rank + a] = pads[len(axes) + i]
        pads = full
    elif rank is not None and len(pads) != 2 * rank:
        return Fail(f"{describe(pad)} has {len(pads)} pads for a rank-{rank} input")
    return pads, value, mode


class _PadInto(Rule):
    opsets = (2, None)

    def _rank(self, m: Match, ctx: RewriteContext) -> int | None:
        raise NotImplementedError

    def _pads(self, m: Match, ctx: RewriteContext, want_value: str) -> list[int] | Fail:
        """Spatial pads (begin..., end...) of the Pad node, checked; `want_value` is "zero" or "lowest"."""
        pad, op = m.node("pad"), m.node("op")
        auto = op.attr("auto_pad", "NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto not in ("NOTSET", ""):
            return Fail(f"{describe(op)} uses auto_pad={auto}")
        rank = self._rank(m, ctx)
        got = read_pad(pad, rank, ctx)
        if isinstance(got, Fail):
            return got
        pads, value, mode = got
        if mode != "constant":
            return Fail(f"{describe(pad)} has mode={mode!r}, not 'constant'")
        if want_value == "zero" and value != 0.0:
            return Fail(f"{describe(pad)} pads with {value:g}, not 0")
        if want_value == "lowest" and not (value == -math.inf or self._is_int_min(m, value, ctx)):
            return Fail(f"{describe(pad)} pads with {value:g}; MaxPool's padding equals -inf")
        r = len(pads) // 2
        if any(p < 0 for p in pads):
            return Fail(f"{describe(pad)} has negative pads (it crops)")
        if pads[0] or pads[1] or pads[r] or pads[r + 1]:
            return Fail(f"{describe(pad)} pads the batch or channel axis")
        k = r - 2
        if k < 1:
            return Fail(f"{describe(pad)} pads a rank-{r} tensor")
        own = ints_attr(op, "pads", [0] * (2 * k))
        assert own is not None
        if len(own) != 2 * k:
            return Fail(f"{describe(op)} has {len(own)} pads for {k} spatial axes")
        return [own[i] + pads[2 + i] for i in range(k)] + [own[k + i] + pads[r + 2 + i] for i in range(k)]

    @staticmethod
    def _is_int_min(m: Match, value: float, ctx: RewriteContext) -> bool:
        dt = ctx.dtype_of(m["x"])
        if dt is None:
            return False
        from ...ir.tensors import numpy_dtype

        npdt = numpy_dtype(dt)
        return npdt.kind in "iu" and value == float(np.iinfo(npdt).min)

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        op = m.node("op")
        attrs = copy_attrs(op, pads=m.data["pads"], **m.data.get("attrs", {}))
        n = b.node(op.op_type, [m["x"], *op.inputs[1:]], attrs)
        return [n.output]


class FusePadConv(_PadInto):
    name = "fuse-pad-conv"
    summary = "Pad (constant 0, spatial only) + Conv -> Conv with larger pads"
    pattern = Pat("Conv", Pat("Pad", Var("x"), allow_extra_inputs=True, name="pad"), Var("w"),
                  allow_extra_inputs=True, name="op")

    def _rank(self, m: Match, ctx: RewriteContext) -> int | None:
        r = ctx.rank_of(m["w"])
        return r if r is not None else ctx.rank_of(m["x"])

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        pads = self._pads(m, ctx, "zero")
        if isinstance(pads, Fail):
            return pads
        m.data["pads"] = pads
        return None


class FusePadPool(_PadInto):
    name = "fuse-pad-pool"
    summary = "Pad + AveragePool (count_include_pad) or MaxPool (-inf pad) -> pool with larger pads"
    pattern = Pat(("AveragePool", "MaxPool"), Pat("Pad", Var("x"), allow_extra_inputs=True, name="pad"),
                  name="op")

    def _rank(self, m: Match, ctx: RewriteContext) -> int | None:
        ks = ints_attr(m.node("op"), "kernel_shape")
        return len(ks) + 2 if ks is not None else None

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        op = m.node("op")
        if int(op.attr("ceil_mode", 0)):
            return Fail(f"{describe(op)} uses ceil_mode")
        ks = ints_attr(op, "kernel_shape")
        if ks is None:
            return Fail(f"{describe(op)} has no kernel_shape")
        is_avg = op.op_type == "AveragePool"
        if is_avg:
            own = ints_attr(op, "pads", [])
            if any(own or []) and not int(op.attr("count_include_pad", 0)):
                return Fail(f"{describe(op)} has its own pads excluded from the average (count_include_pad=0)")
        pads = self._pads(m, ctx, "zero" if is_avg else "lowest")
        if isinstance(pads, Fail):
            return pads
        k = len(ks)
        for i in range(k):
            if pads[i] >= ks[i] or pads[k + i] >= ks[i]:
                return Fail(f"the combined pads {pads} would not be smaller than the kernel {ks}")
        m.data["pads"] = pads
        if is_avg:
            m.data["attrs"] = {"count_include_pad": 1}
        return None


RULES = [FusePadConv, FusePadPool]
