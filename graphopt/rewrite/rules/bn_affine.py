"""BatchNormalization followed by a per-channel Mul or Add -> one BatchNormalization; BatchNormalization parameters
computed by fills -> stored parameters.

Inference BatchNormalization is a per-channel affine map (eps is its ``epsilon``, 1e-5 when absent)::

    y[n, c, ...] = (x[n, c, ...] - mean[c]) / sqrt(var[c] + eps) * scale[c] + bias[c]

so multiplying or adding a value that varies only along the channel axis (shape [C, 1, ..., 1] broadcast over the
[N, C, ...] output, [1, C, 1, ...], [1] or a scalar) stays inside it::

    y * a  = BatchNormalization(x, scale * a, bias * a, mean, var)
    y + a  = BatchNormalization(x, scale, bias + a, mean, var)

(Caffe2's "scale layer" is BatchNormalization -> Mul -> Add: two rewrites.) mean and var are reused as they are,
whatever computes them; the new scale and bias are stored constants of C numbers each, computed in float64 and
rounded once to their own element type. The parameters and the operand may be stored constants or compact known
values (fills, see :mod:`.known`).

fuse-bn-fill-params replaces BatchNormalization parameters that a fill chain computes (ConstantOfShape of a
constant shape, Unsqueeze, ...) with stored constants of C numbers each, so that the chain's nodes become dead
(it fires only when every reader of the chain is a BatchNormalization parameter slot). It fuses nothing: it stores
what fold-constants declined to store (more than its 1 KiB allowance per value), trading C numbers per parameter
for the chain's nodes, so it belongs to the aggressive level (-O3), not to -O2. Stored parameters are left alone,
so a second run changes nothing.

BatchNormalization must be in inference mode (``training_mode`` = 0; ``spatial`` = 1 before opset 9) with only
its first output used; opsets before 7 are not covered.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ...ir.builder import Builder
from ...ir.core import Node, Value
from ..pattern import Fail, Match, Pat, Var, describe
from ..rule import RewriteContext, Rule, to_dtype
from .common import copy_attrs
from .fill import DEFAULT_MAX_STORED_ELEMENTS, bn_mode_fail, bn_params
from .known import DEFAULT_MAX_ELEMENTS, Known, channel_vector, known_value

_PARAMS = ("scale", "bias", "mean", "var")


def _bn_pat() -> Pat:
    return Pat("BatchNormalization", Var("x"), Var("scale"), Var("bias"), Var("mean"), Var("var"), name="bn")


class _BnRule(Rule):
    opsets = (7, None)
    # transient work: the most elements a known value may be materialized to while checking
    max_elements: ClassVar[int] = DEFAULT_MAX_ELEMENTS
    # file growth: the most numbers one new parameter tensor may hold
    max_stored_elements: ClassVar[int] = DEFAULT_MAX_STORED_ELEMENTS

    def _params(self, m: Match, ctx: RewriteContext) -> tuple[dict[str, Known], int] | Fail:
        got = bn_params(m, ctx, self.max_elements)
        if isinstance(got, Fail):
            return got
        params, ch = got
        if ch > self.max_stored_elements:
            return Fail(f"{ch} channels: the new parameters would exceed {self.max_stored_elements} elements each")
        return params, ch


class FuseBatchNormAffine(_BnRule):
    name = "fuse-bn-affine"
    summary = "BatchNormalization + per-channel Mul or Add -> BatchNormalization with new scale and bias"
    pattern = Pat(("Mul", "Add"), _bn_pat(), Var("a"), name="affine")

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        bn, node = m.node("bn"), m.node("affine")
        f = bn_mode_fail(bn, ctx)
        if f is not None:
            return f
        k_a = known_value(m["a"], ctx.opset, self.max_elements)
        if isinstance(k_a, Fail):
            return Fail(f"the other operand of {describe(node)}: {k_a.reason}")
        got = self._params(m, ctx)
        if isinstance(got, Fail):
            return got
        params, ch = got
        x_dtype = ctx.dtype_of(m["x"])
        if x_dtype is not None and k_a.dtype != x_dtype:
            return Fail(f"the operand has element type {k_a.dtype}, the BatchNormalization input {x_dtype}")
        rank = ctx.rank_of(bn.output)
        if rank is None:
            rank = ctx.rank_of(m["x"])
        vec = channel_vector(k_a, rank, ch, f"the other operand of {describe(node)}")
        if isinstance(vec, Fail):
            return vec
        scale, bias = params["scale"].along(0), params["bias"].along(0)
        assert scale is not None and bias is not None
        if node.op_type == "Mul":
            m.data["scale"] = to_dtype(scale * vec, params["scale"].dtype)
            m.data["bias"] = to_dtype(bias * vec, params["bias"].dtype)
        else:
            m.data["bias"] = to_dtype(bias + vec, params["bias"].dtype)
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        bn = m.node("bn")
        base = m["scale"].name or "bn"
        scale = b.const(m.data["scale"], prefix=base + "_scaled") if "scale" in m.data else m["scale"]
        bias = b.const(m.data["bias"], prefix=(m["bias"].name or "bn") + "_shifted")
        n = b.node("BatchNormalization", [m["x"], scale, bias, m["mean"], m["var"]], copy_attrs(bn))
        return [n.output]


class StoreBatchNormFillParams(_BnRule):
    name = "fuse-bn-fill-params"
    summary = ("BatchNormalization reading parameters computed by fills (ConstantOfShape chains) -> the same "
               "BatchNormalization reading stored parameters of C numbers each")
    # not a fusion: it stores numbers fold-constants' size rules refused, for fewer nodes (see the docstring)
    level = "aggressive"
    pattern = _bn_pat()

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        bn = m.node("bn")
        f = bn_mode_fail(bn, ctx)
        if f is not None:
            return f
        got = self._params(m, ctx)
        if isinstance(got, Fail):
            return got
        params, _ = got
        if all(p.stored for p in params.values()):
            return Fail("the parameters are stored constants already")
        for k, p in params.items():
            if p.stored:
                continue
            # Storing pays only if the chain dies: every reader is a BatchNormalization parameter slot, which this
            # rule rewrites in turn. A chain another op reads would stay, and the stored copy would be pure growth.
            v = m[k]
            if v.is_graph_output():
                return Fail(f"BatchNormalization {k} ({v.name!r}) is a graph output")
            for u, i in v.uses():
                if _dead(u):
                    continue  # a reader left dead by an earlier rewrite (dead-code elimination removes it)
                if u.op_type != "BatchNormalization" or i == 0:
                    return Fail(f"BatchNormalization {k} ({v.name!r}) is also read by {describe(u)}; its chain "
                                "would stay, so storing it would only grow the file")
            m.data[k] = np.ascontiguousarray(p.array())
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        bn = m.node("bn")
        ins: list[Value] = [m["x"]]
        stored: dict[str, Value] = {}
        for k in _PARAMS:
            v = m[k]
            if k not in m.data:
                ins.append(v)
            elif v in stored:  # one chain read as several parameters stays one tensor
                ins.append(stored[v])
            else:
                c = b.const(m.data[k], prefix=(v.name or "bn") + "_stored")
                stored[v] = c
                ins.append(c)
        n = b.node("BatchNormalization", ins, copy_attrs(bn))
        return [n.output]


def _dead(node: Node) -> bool:
    """Nothing reads the node's outputs and none is a graph output."""
    return all(not o.is_used() and not o.is_graph_output() for o in node.outputs)


RULES = [FuseBatchNormAffine, StoreBatchNormFillParams]
