"""Helpers shared by the rule families (not a family itself)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ir.core import Node, Value
from ...ir.tensors import Tensor
from ..pattern import Fail
from ..rule import RewriteContext


def copy_attrs(node: Node, **overrides: Any) -> dict[str, Any]:
    """The node's attributes as Python values, with `overrides` applied (an override of None drops it)."""
    out: dict[str, Any] = {}
    for name, a in node.attrs.items():
        out[name] = a.value
    for k, v in overrides.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def per_channel(t: Tensor, out_rank: int, channels: int, what: str) -> np.ndarray | Fail:
    """The per-output-channel vector (length `channels`, float64) that a constant `t` broadcast against an
    [N, C, spatial...] tensor of rank `out_rank` amounts to, or why it is not one.

    Accepted shapes: scalars, [1], [C, 1, ..., 1], [1, C, 1, ..., 1] and anything else that broadcasts only along
    the channel axis without enlarging the output (rank at most `out_rank`, every other dim 1).
    """
    shape = tuple(t.shape)
    if len(shape) > out_rank:
        return Fail(f"{what} has rank {len(shape)} > {out_rank}: adding it would change the output's rank")
    full = (1,) * (out_rank - len(shape)) + shape
    for i, d in enumerate(full):
        if i == 1:
            if d not in (1, channels):
                return Fail(f"{what} has {d} values along the channel axis, the conv has {channels} channels")
        elif d != 1:
            return Fail(f"{what} has shape {list(shape)}: it varies along axis {i}, not only along the channels")
    vec = np.asarray(t.numpy(), dtype=np.float64).reshape(-1)
    return np.broadcast_to(vec, (channels,)).copy() if vec.size == 1 else vec.copy()


def conv_out_channels(op: str, w_shape: tuple[int, ...], group: int) -> int:
    """Output channels of Conv (W is [M, C/g, k...]) or ConvTranspose (W is [C, M/g, k...])."""
    return int(w_shape[0]) if op == "Conv" else int(w_shape[1]) * group


def scale_out_channels(op: str, w: np.ndarray, s: np.ndarray, group: int) -> np.ndarray:
    """W with output channel m multiplied by s[m], for Conv or ConvTranspose weights (float64 result)."""
    w64 = np.asarray(w, dtype=np.float64)
    k = w64.ndim - 2
    if op == "Conv":
        return w64 * s.reshape((-1,) + (1,) * (k + 1))
    # ConvTranspose: W is [C_in, M/g, k...]; output channel g*(M/g)+j reads W[g*(C_in/g)+i, j]
    cin, mg = w64.shape[0], w64.shape[1]
    wg = w64.reshape((group, cin // group, mg) + w64.shape[2:])
    sg = s.reshape((group, 1, mg) + (1,) * k)
    return (wg * sg).reshape(w64.shape)


def scalar_rank_fail(t: Tensor, x: Value, ctx: RewriteContext, what: str) -> Fail | None:
    """A Fail when broadcasting the one-element constant `t` against `x` could change x's shape (its rank exceeds
    x's, or x's rank is unknown and `t` is not a 0-d scalar)."""
    nd = len(t.shape)
    if nd == 0:
        return None
    r = ctx.rank_of(x)
    if r is None:
        return Fail(f"{what} has rank {nd} and the rank of {x.name!r} is unknown (broadcasting could change the "
                    "output shape)")
    if nd > r:
        return Fail(f"{what} has rank {nd} > rank {r} of {x.name!r}: broadcasting changes the output shape")
    return None


def const_ints(t: Tensor | None) -> list[int] | None:
    if t is None:
        return None
    return [int(v) for v in np.asarray(t.numpy()).reshape(-1)]


def conv_bias(m: Any, channels: int) -> np.ndarray | Fail:
    """The matched conv's constant bias `b` as float64 (zeros when the conv has none), or a Fail when its shape is
    not [channels]."""
    if "b" not in m.values:
        return np.zeros(channels)
    bt = m.tensor("b")
    if tuple(bt.shape) != (channels,):
        return Fail(f"the conv bias has shape {list(bt.shape)}, expected [{channels}]")
    return np.asarray(bt.numpy(), dtype=np.float64)
