"""A MatMul that reads a transposed constant reads the constant itself, through Gemm's transB.

Tied language-model heads (GPT-2, Llama with tied embeddings, Whisper's decoder, T5, BART) compute the logits as
``MatMul(h, Transpose(W))``, where the same ``W`` [N, K] (vocabulary x hidden) is the embedding table read by
``Gather``. Folding the Transpose would store a second copy of the table (the fold pass's size guard refuses it);
leaving it recomputes the transposed table on every run. Gemm reads its B operand transposed (``transB = 1``), so:

* ``MatMul(A, Transpose(W)) == Gemm(A, W, transB=1)`` when A is 2-D [M, K] and W is a 2-D constant [N, K]
  transposed by perm [1, 0] (or no perm): both compute ``Y[m, n] = sum_k A[m, k] * W[n, k]``.
* For A of rank r > 2 [d_0, ..., d_{r-2}, K] whose table is otherwise read only by Gathers on axis 0 (the tied
  embedding), the table is stored once, transposed: ``W' = W^T`` [K, N] replaces W. The head becomes
  ``MatMul(A, W')`` and each embedding lookup ``Gather(W, idx)`` becomes ``Transpose(Gather(W', idx, axis=1),
  perm=[1, ..., q, 0])`` (q = rank of idx): ``Gather(W', idx, axis=1)[k, i...] = W'[k, idx[i...]] =
  W[idx[i...], k]``, so the Transpose gives exactly ``Gather(W, idx)[i..., k]``. The per-run Transpose of the
  whole table becomes one of the gathered rows only ([..., K], tiny next to [N, K]); the node count stays the
  original's, and the file keeps one table.
* Otherwise, for A of rank r > 2, MatMul treats the leading dims as a batch of independent rows against the one
  2-D B, so row order is all that matters and::

      MatMul(A, Transpose(W)) == Reshape(Gemm(Reshape(A, [-1, K]), W, transB=1), [d_0, ..., d_{r-2}, N])

  exactly: the first Reshape lists the rows of A in C order (``-1`` is their count, exact since K > 0), Gemm maps
  each row, the second Reshape regroups them. The target is a constant when every leading dim is a known nonzero
  size, else ``Concat(Shape(A)[0 : r-1], [N])`` (``Shape`` with start/end from opset 15, a Slice of it before).

Measured with onnxruntime 1.32 (1 thread) on a [50257, 192] table and A [4, 4, 192]: the original takes 38 ms per
run with graph optimizations off (the Transpose dominates), the Reshape/Gemm/Reshape form 8.8 ms, MatMul with the
table stored transposed 8.4 ms; with all optimizations on, all take ~8.5 ms (onnxruntime folds the Transpose itself
when it creates the session, storing the copy in memory). ``Einsum("bsk,nk->bsn")``, one node, takes 48 ms at
either level and is not used. The transposed-table form is preferred for its node count (the Reshape/Gemm form
adds three shape nodes).

``gather-transposed-twin`` stores a table once when the exporter stored it twice: TorchScript exports of tied
heads keep the embedding table W [N, K] for the Gather and a folded copy ``C = W^T`` [K, N] for the MatMul. When
every reader of W is a Gather on axis 0 and some constant C equals W^T element for element (same type and
shape [K, N]), each ``Gather(W, idx)`` becomes ``Transpose(Gather(C, idx, axis=1), perm=[1, ..., q, 0])`` (the
identity shown above) and W is left unread for dead-code elimination: the file loses one copy of the table, each
lookup gains a transpose of its few gathered rows. Candidate twins are found through an index of the main graph's
2-D initializers by (type, shape), built once per fuse run, and compared element for element.

``fuse-gemm-bias`` then folds a bias added to a Gemm without C into C: ``Add(Gemm(A, B), c) == Gemm(A, B, c)``
when the Gemm has no C and beta = 1 (beta scales C), c is a float constant (Add gives it Gemm's type), and c broadcasts
unidirectionally to Y's [M, N] without enlarging it (rank at most 2, last dim 1 or N, first dim 1 or M).
"""

from __future__ import annotations

import numpy as np

from ...ir.builder import Builder
from ...ir.core import Node, Value
from ...ir.tensors import Tensor
from ..pattern import Const, Fail, Match, Pat, Var, describe
from ..rule import RewriteContext, Rule, float_fail, ints_attr
from .common import copy_attrs


class MatMulTransposedConst(Rule):
    name = "matmul-transposed-const"
    summary = ("MatMul(A, Transpose(constant W)) -> Gemm(A, W, transB=1); batched A: W stored transposed once "
               "(its Gathers read columns), or Reshape to 2-D and back")
    opsets = (11, None)  # Gemm's C is optional from opset 11
    pattern = Pat("MatMul", Var("a"), Pat("Transpose", Const("w"), name="t"), name="mm")

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        t = m.node("t")
        w = m.tensor("w")
        if len(w.shape) != 2:
            return Fail(f"the transposed constant has rank {len(w.shape)}; Gemm reads a 2-D B")
        perm = ints_attr(t, "perm")
        if perm is not None and perm != [1, 0]:
            return Fail(f"{describe(t)} has perm {perm}, not [1, 0]")
        f = float_fail(w, "W")
        if f is not None:
            return f
        n, k = (int(d) for d in w.shape)
        if k == 0:
            return Fail("W has no columns (K = 0): reshaping A to [-1, K] would be ambiguous")
        a = m["a"]
        shape = ctx.shape_of(a)
        rank = len(shape) if shape is not None else ctx.rank_of(a)
        if rank is None:
            return Fail(f"the rank of A ({a.name!r}) is unknown")
        if rank < 2:
            return Fail(f"A ({a.name!r}) has rank {rank}; MatMul of a vector drops a dim that Gemm keeps")
        lead = tuple(shape[:-1]) if shape is not None else None
        m.data["gathers"] = _table_gathers(m["w"], t, ctx) if rank > 2 else None
        m.data["rank"] = rank
        m.data["n"], m.data["k"] = n, k
        m.data["lead"] = list(lead) if lead is not None and all(isinstance(d, int) and d > 0 for d in lead) \
            else None
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        a, w = m["a"], m["w"]
        rank, n, k = m.data["rank"], m.data["n"], m.data["k"]
        if rank == 2:
            return [b.op("Gemm", a, w, transB=1)]
        if m.data["gathers"]:
            return [b.op("MatMul", a, _store_transposed(m, b))]
        rows = b.op("Reshape", a, b.const(np.array([-1, k], np.int64), prefix="rows_shape"))
        y2 = b.op("Gemm", rows, w, transB=1)
        if m.data["lead"] is not None:
            target = b.const(np.array([*m.data["lead"], n], np.int64), prefix="logits_shape")
        else:
            if b.graph.model is not None and (b.graph.model.opset("") or 0) >= 15:
                lead = b.op("Shape", a, start=0, end=rank - 1)
            else:
                lead = b.op("Slice", b.op("Shape", a), b.const(np.array([0], np.int64), prefix="starts"),
                            b.const(np.array([rank - 1], np.int64), prefix="ends"))
            target = b.node("Concat", [lead, b.const(np.array([n], np.int64), prefix="n")], {"axis": 0}).output
        return [b.op("Reshape", y2, target)]


class FuseGemmBias(Rule):
    name = "fuse-gemm-bias"
    summary = "Gemm without C + Add of a constant bias -> Gemm with C"
    opsets = (11, None)
    pattern = Pat("Add", Pat("Gemm", Var("a"), Var("b"), name="gemm"), Const("c"), name="add")

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        g = m.node("gemm")
        beta = float(g.attr("beta", 1.0))
        if beta != 1.0:
            return Fail(f"{describe(g)} has beta {beta}: it would scale the bias")
        ct = m.tensor("c")
        f = float_fail(ct, "the bias")  # Add makes it the Gemm's own type
        if f is not None:
            return f
        cs = tuple(ct.shape)
        if len(cs) > 2:
            return Fail(f"the bias has rank {len(cs)}: adding it broadcasts the result to a higher rank")
        c2 = (1,) * (2 - len(cs)) + cs
        ncols = _gemm_dim(ctx, m["b"], 0 if int(g.attr("transB", 0)) else 1)
        if c2[1] != 1 and c2[1] != ncols:
            return Fail(f"the bias has shape {list(cs)} and Gemm's N is "
                        + (str(ncols) if ncols is not None else "unknown"))
        if c2[0] != 1:
            mrows = _gemm_dim(ctx, m["a"], 1 if int(g.attr("transA", 0)) else 0)
            if mrows != c2[0]:
                return Fail(f"the bias has {c2[0]} rows and Gemm's M is "
                            + (str(mrows) if mrows is not None else "unknown"))
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        g = m.node("gemm")
        return [b.node("Gemm", [m["a"], m["b"], m["c"]], copy_attrs(g)).output]


def _table_gathers(w: Value, t: Node, ctx: RewriteContext) -> list[tuple[Node, int]] | None:
    """The table's other readers when they are all Gathers on axis 0 reading it as their data, with the rank of
    their indices (known); else None."""
    out = []
    for u, i in w.uses():
        if u is t:
            continue
        if u.op_type != "Gather" or u.domain not in ("", "ai.onnx") or i != 0 or int(u.attr("axis", 0)) != 0:
            return None
        r = ctx.rank_of(u.input(1))
        if r is None:
            return None
        out.append((u, r))
    if w.is_graph_output():
        return None
    return out or None


def _store_transposed(m: Match, b: Builder) -> Value:
    """W^T as a new constant; every Gather of W (m.data["gathers"]) redirected to gather columns of W^T and
    transpose the few gathered rows back. The old Gathers are left for dead-code elimination."""
    w = m["w"]
    wt = b.const(Tensor.from_numpy(np.ascontiguousarray(m.array("w").T), m.tensor("w").dtype),
                 prefix=(w.name or "table") + "_t")
    for g, r in m.data["gathers"]:
        assert g.graph is not None
        gb = Builder(g.graph, before=g, name_hint=b.name_hint)
        cols = gb.op("Gather", wt, g.input(1), axis=1)
        rows = cols if r == 0 else gb.op("Transpose", cols, perm=[*range(1, r + 1), 0])
        if g.output.type is not None:
            rows.type = g.output.type
        b.created.extend(gb.created)
        g.output.replace_all_uses_with(rows)
        if not g.output.is_used() and not g.output.is_graph_output():
            g.graph.remove([g])  # dead now; it would keep the untransposed table alive until dce
    return wt


def _gemm_dim(ctx: RewriteContext, v: Value, axis: int) -> int | None:
    s = ctx.shape_of(v)
    if s is None or len(s) != 2 or not isinstance(s[axis], int):
        return None
    return int(s[axis])


class GatherTransposedTwin(Rule):
    name = "gather-transposed-twin"
    summary = "Gather of a table also stored transposed -> Gather of the transposed copy (the table is stored once)"
    pattern = Pat("Gather", Const("w"), Var("idx"), name="g")

    def check(self, m: Match, ctx: RewriteContext) -> Fail | None:
        w = m["w"]
        t = m.tensor("w")
        if len(t.shape) != 2:
            return Fail(f"the table has rank {len(t.shape)}, not 2")
        if not w.is_initializer():
            return Fail(f"{w.name!r} is not an initializer")
        if w.is_graph_output():
            return Fail(f"{w.name!r} is a graph output")
        for u, i in w.uses():
            if u.op_type != "Gather" or u.domain not in ("", "ai.onnx") or i != 0 or \
                    int(u.attr("axis", 0)) not in (0, -2):
                return Fail(f"the table {w.name!r} is also read by {describe(u)}: it would stay")
        r = ctx.rank_of(m["idx"])
        if r is None:
            return Fail("the rank of the indices is unknown")
        twin = _twin(ctx, w, t)
        if twin is None:
            return Fail(f"no constant holds {w.name!r} transposed")
        m.data["twin"], m.data["r"] = twin, r
        return None

    def rewrite(self, m: Match, b: Builder) -> list[Value]:
        r = m.data["r"]
        cols = b.op("Gather", m.data["twin"], m["idx"], axis=1)
        return [cols if r == 0 else b.op("Transpose", cols, perm=[*range(1, r + 1), 0])]


def _twin(ctx: RewriteContext, w: Value, t: Tensor) -> Value | None:
    """A constant initializer of the main graph equal to W^T, or None."""
    index = getattr(ctx, "_tied_twins", None)
    if index is None:  # once per driver run: the main graph's 2-D constant initializers by (type, shape)
        index = {}
        for v in ctx.model.graph.initializers.values():
            c = v.const
            if c is not None and len(c.shape) == 2 and v.is_constant():
                index.setdefault((c.dtype, tuple(int(d) for d in c.shape)), []).append(v)
        ctx._tied_twins = index  # type: ignore[attr-defined]
    n, k = (int(d) for d in t.shape)
    for v in index.get((t.dtype, (k, n)), ()):
        # a rewrite of this run may have dropped it; a twin must still be a constant of the main graph
        if v is w or ctx.model.graph.initializers.get(v.name or "") is not v or not v.is_used():
            continue
        if np.array_equal(v.const.numpy(), np.asarray(t.numpy()).T):
            return v
    return None


RULES = [MatMulTransposedConst, GatherTransposedTwin, FuseGemmBias]
