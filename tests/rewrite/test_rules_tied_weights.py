"""MatMul(A, Transpose(W)) -> Gemm(transB=1) (tied language-model heads), and Gemm + Add -> Gemm with C."""

from __future__ import annotations

import numpy as np
import pytest

from graphopt.testing import count_ops, from_text, run_pass

from .util import check_fuses, check_not_fused

N, K = 12, 8  # vocabulary x hidden of the tied table


def table(rng: np.random.Generator, dtype: type = np.float32, shape: tuple[int, ...] = (N, K)) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def head_text(a_dims: str, out_dims: str, *, opset: int = 17, t: str = "float", perm: str = "<perm = [1, 0]>",
              w_ref: str = "w") -> str:
    """A tied head: `emb = Gather(w, ids)` reads the table directly, `y = MatMul(a, Transpose(w))` transposed."""
    return f"""
<ir_version: 8, opset_import: ["" : {opset}]>
g ({t}[{a_dims}] a, int64[B, S] ids) => ({t}[{out_dims}] y, {t}[B, S, {K}] emb) {{
  emb = Gather (w, ids)
  wt = Transpose {perm} ({w_ref})
  y = MatMul (a, wt)
}}
"""


IDS_BIND = [{"B": 1, "S": 3, "M": 2}, {"B": 3, "S": 5, "M": 4}]


def test_2d_head_becomes_gemm_trans_b(rng: np.random.Generator) -> None:
    m = check_fuses(head_text(f"M, {K}", f"M, {N}"), {"w": table(rng)}, "matmul-transposed-const",
                    {"Gather": 1, "Gemm": 1}, bindings=IDS_BIND)
    gemm = next(n for n in m.graph if n.op_type == "Gemm")
    assert gemm.attr("transB") == 1 and gemm.input(1).name == "w"  # the table itself, stored once
    assert list(m.graph.initializers) == ["w"]


def test_batched_head_stores_the_table_transposed_once(rng: np.random.Generator) -> None:
    m = check_fuses(head_text(f"B, S, {K}", f"B, S, {N}"), {"w": table(rng)}, "matmul-transposed-const",
                    {"Gather": 1, "Transpose": 1, "MatMul": 1}, bindings=IDS_BIND)
    gather = next(n for n in m.graph if n.op_type == "Gather")
    wt = gather.input(0)
    assert tuple(wt.const.shape) == (K, N) and not m.graph.initializers["w"].is_used()  # dce drops W
    assert gather.attr("axis") == 1 and gather.input(0) is wt
    assert next(n for n in m.graph if n.op_type == "Transpose").attr("perm") == [1, 2, 0]


def test_batched_head_scalar_and_vector_lookups(rng: np.random.Generator) -> None:
    text = head_text(f"B, S, {K}", f"B, S, {N}").replace("int64[B, S] ids)", "int64[B, S] ids, int64 one, int64[S] v)")
    text = text.replace("emb) {", f"emb, float[{K}] e0, float[S, {K}] e1) {{")
    text = text.replace("emb = Gather (w, ids)", "emb = Gather (w, ids)\n  e0 = Gather (w, one)\n  e1 = Gather (w, v)")
    check_fuses(text, {"w": table(rng)}, "matmul-transposed-const", {"Gather": 3, "Transpose": 2, "MatMul": 1},
                bindings=IDS_BIND)


def test_batched_head_with_symbolic_dims_reshapes_to_gemm(rng: np.random.Generator) -> None:
    # W is also read by something other than a Gather: it cannot be stored transposed, Gemm reads it via transB
    text = head_text(f"B, S, {K}", f"B, S, {N}").replace("emb = Gather (w, ids)", "emb = Gather (w, ids)\n"
                                                              "  wn = Mul (w, w)").replace(
        "emb) {", f"emb, float[{N}, {K}] wn) {{")
    m = check_fuses(text, {"w": table(rng)}, "matmul-transposed-const",
                    {"Gather": 1, "Mul": 1, "Reshape": 2, "Gemm": 1, "Shape": 1, "Concat": 1}, bindings=IDS_BIND)
    shape = next(n for n in m.graph if n.op_type == "Shape")
    assert (shape.attr("start"), shape.attr("end")) == (0, 2)
    assert next(iter(m.graph.initializers)) == "w"


def gemm_form_text(a_dims: str, out_dims: str, **kw: object) -> str:
    """A head whose table is read by nothing else (fold-constants would fold it; the rule alone uses Gemm)."""
    text = head_text(a_dims, out_dims, **kw)  # type: ignore[arg-type]
    return text.replace("  emb = Gather (w, ids)\n", "  emb = Gather (w2, ids)\n")


def test_batched_head_static_dims_constant_target(rng: np.random.Generator) -> None:
    m = check_fuses(gemm_form_text(f"2, 3, {K}", f"2, 3, {N}"), {"w": table(rng), "w2": table(rng)},
                    "matmul-transposed-const", {"Gather": 1, "Reshape": 2, "Gemm": 1}, bindings=IDS_BIND)
    last = [n for n in m.graph if n.op_type == "Reshape"][-1]
    assert last.input(1).const.numpy().tolist() == [2, 3, N]


def test_batched_head_opset_13_slices_the_shape(rng: np.random.Generator) -> None:
    check_fuses(gemm_form_text(f"B, S, {K}", f"B, S, {N}", opset=13), {"w": table(rng), "w2": table(rng)},
                "matmul-transposed-const", {"Gather": 1, "Reshape": 2, "Gemm": 1, "Shape": 1, "Slice": 1, "Concat": 1},
                bindings=IDS_BIND)


def test_batched_head_gather_indices_of_unknown_rank_use_gemm(rng: np.random.Generator) -> None:
    # Squeeze without axes drops every dim of size 1: the rank of its output is unknown
    text = head_text(f"B, S, {K}", f"B, S, {N}").replace("int64[B, S] ids)", "int64[B, S] i0)")
    text = text.replace("emb = Gather (w, ids)", "ids = Squeeze (i0)\n  emb = Gather (w, ids)")
    check_fuses(text, {"w": table(rng)}, "matmul-transposed-const",
                {"Squeeze": 1, "Reshape": 2, "Gather": 1, "Gemm": 1, "Shape": 1, "Concat": 1},
                bindings=[{"B": 2, "S": 3}])


def test_float16_head(rng: np.random.Generator) -> None:
    check_fuses(head_text(f"B, S, {K}", f"B, S, {N}", t="float16"), {"w": table(rng, np.float16)},
                "matmul-transposed-const", {"Gather": 1, "Transpose": 1, "MatMul": 1},
                bindings=IDS_BIND, rtol=1e-2, atol=1e-2)


def test_in_the_o2_pipeline_the_table_is_stored_once(rng: np.random.Generator) -> None:
    # A [64, 256] table is bigger than fold-constants may duplicate; the head must still lose its Transpose.
    w = table(rng, shape=(64, 256))
    text = head_text("B, S, 256", "B, S, 64").replace(f"[B, S, {K}] emb", "[B, S, 256] emb")
    m = from_text(text, {"w": w})
    run_pass(m, "fold-constants")
    assert "Transpose" in count_ops(m)  # the size guard keeps the copy out ...
    run_pass(m, "fuse")
    run_pass(m, "dce")
    ops = count_ops(m)
    assert dict(ops) == {"Gather": 1, "Transpose": 1, "MatMul": 1}  # ... the table is transposed once, stored
    (wt,) = m.graph.initializers.values()
    assert tuple(wt.const.shape) == (256, 64)
    assert sum(v.const.nbytes for v in m.graph.initializers.values() if v.const is not None) < w.nbytes + 1024


# ---------------------------------------------------------------------------------------------------------------
# one negative test per precondition
# ---------------------------------------------------------------------------------------------------------------
def test_not_a_swap_of_two_axes(rng: np.random.Generator) -> None:
    text = head_text(f"B, {K}, {N}", f"B, {K}, {K}", perm="<perm = [0, 1]>")
    check_not_fused(text, {"w": table(rng, shape=(N, K))}, "matmul-transposed-const", "not [1, 0]")


def test_weight_not_2d(rng: np.random.Generator) -> None:
    text = f"""
<ir_version: 8, opset_import: ["" : 17]>
g (float[2, 3, {K}] a) => (float[{N}, 3, 3] y) {{
  wt = Transpose <perm = [2, 1, 0]> (w)
  y = MatMul (a, wt)
}}
"""
    check_not_fused(text, {"w": table(rng, shape=(3, K, N))}, "matmul-transposed-const", "rank 3")


def test_integer_weight(rng: np.random.Generator) -> None:
    text = head_text(f"M, {K}", f"M, {N}", t="int32")
    check_not_fused(text, {"w": (table(rng) * 4).astype(np.int32)}, "matmul-transposed-const", "element type 6")


def test_rank_of_a_unknown(rng: np.random.Generator) -> None:
    # `a` is a Reshape to a runtime shape of unknown length
    text = head_text(f"M, {K}", f"M, {N}").replace(f"float[M, {K}] a,", f"float[M, {K}] x, int64[R] s,")
    text = text.replace("emb = Gather", "a = Reshape (x, s)\n  emb = Gather")
    check_not_fused(text, {"w": table(rng)}, "matmul-transposed-const", "rank of A")


def test_vector_a(rng: np.random.Generator) -> None:
    check_not_fused(head_text(f"{K}", f"{N}"), {"w": table(rng)}, "matmul-transposed-const", "has rank 1")


def test_empty_hidden_dim(rng: np.random.Generator) -> None:
    text = head_text("B, S, 0", f"B, S, {N}").replace(f"[B, S, {K}] emb", "[B, S, 0] emb")
    check_not_fused(text, {"w": np.zeros((N, 0), np.float32)}, "matmul-transposed-const", "K = 0")


def test_opset_below_11(rng: np.random.Generator) -> None:
    text = head_text(f"M, {K}", f"M, {N}", opset=10)
    check_not_fused(text, {"w": table(rng)}, "matmul-transposed-const", "outside the rule's range")


def test_transpose_read_elsewhere(rng: np.random.Generator) -> None:
    text = head_text(f"M, {K}", f"M, {N}").replace("y = MatMul (a, wt)", "y = MatMul (a, wt)\n  z = Relu (wt)")
    text = text.replace("emb) {", f"emb, float[{K}, {N}] z) {{")
    check_not_fused(text, {"w": table(rng)}, "matmul-transposed-const", "also read by Relu")


# ---------------------------------------------------------------------------------------------------------------
# Gemm + Add -> Gemm with C
# ---------------------------------------------------------------------------------------------------------------
def gemm_add_text(attrs: str = "<transB = 1>", c_dims: str = f"{N}", a_dims: str = f"M, {K}",
                  t: str = "float") -> str:
    return f"""
<ir_version: 8, opset_import: ["" : 17]>
g ({t}[{a_dims}] a) => ({t}[M, {N}] y) {{
  g = Gemm {attrs} (a, w)
  y = Add (g, c)
}}
"""


BIND_M = [{"M": 1}, {"M": 5}]


@pytest.mark.parametrize("c_shape", [(N,), (1, N), (1,), ()])
def test_gemm_bias(rng: np.random.Generator, c_shape: tuple[int, ...]) -> None:
    inits = {"w": table(rng), "c": rng.standard_normal(c_shape).astype(np.float32)}
    m = check_fuses(gemm_add_text(), inits, "fuse-gemm-bias", {"Gemm": 1}, bindings=BIND_M)
    g = next(iter(m.graph))
    assert g.attr("transB") == 1 and g.input(2).name == "c"


def test_gemm_bias_rows_known(rng: np.random.Generator) -> None:
    text = gemm_add_text(a_dims=f"3, {K}", c_dims=f"3, {N}").replace("[M, ", "[3, ")
    inits = {"w": table(rng), "c": rng.standard_normal((3, N)).astype(np.float32)}
    check_fuses(text, inits, "fuse-gemm-bias", {"Gemm": 1})


def test_gemm_bias_beta_not_one(rng: np.random.Generator) -> None:
    inits = {"w": table(rng), "c": rng.standard_normal((N,)).astype(np.float32)}
    check_not_fused(gemm_add_text("<transB = 1, beta = 2.0>"), inits, "fuse-gemm-bias", "beta 2.0")


def test_gemm_bias_enlarges_rank(rng: np.random.Generator) -> None:
    text = gemm_add_text().replace(f"float[M, {N}] y", f"float[2, M, {N}] y")
    inits = {"w": table(rng), "c": rng.standard_normal((2, 1, N)).astype(np.float32)}
    check_not_fused(text, inits, "fuse-gemm-bias", "rank 3")


def test_gemm_bias_wrong_columns(rng: np.random.Generator) -> None:
    text = gemm_add_text()
    inits = {"w": table(rng, shape=(1, K)), "c": rng.standard_normal((N,)).astype(np.float32)}
    check_not_fused(text, inits, "fuse-gemm-bias", "Gemm's N is 1")


def test_gemm_bias_rows_unknown(rng: np.random.Generator) -> None:
    inits = {"w": table(rng), "c": rng.standard_normal((3, N)).astype(np.float32)}
    text = gemm_add_text().replace(f"float[M, {N}] y", f"float[3, {N}] y")
    check_not_fused(text, inits, "fuse-gemm-bias", "Gemm's M is unknown")


def test_gemm_bias_integer(rng: np.random.Generator) -> None:
    inits = {"w": (table(rng) * 4).astype(np.int32), "c": np.arange(N, dtype=np.int32)}
    check_not_fused(gemm_add_text(t="int32"), inits, "fuse-gemm-bias", "element type 6")


# ---------------------------------------------------------------------------------------------------------------
# gather-transposed-twin: a table the exporter stored twice (W for Gather, W^T for MatMul) is stored once
# ---------------------------------------------------------------------------------------------------------------
def twin_text(*, extra: str = "", outs: str = "", idx: str = "int64[B, S] ids", gather: str = "Gather (w, ids)") -> str:
    return f"""
<ir_version: 8, opset_import: ["" : 17]>
g (float[B, S, {K}] a, {idx}) => (float[B, S, {N}] y, float[B, S, {K}] emb{outs}) {{
  emb = {gather}
  y = MatMul (a, wt)
  {extra}
}}
"""


def twin_inits(rng: np.random.Generator) -> dict[str, np.ndarray]:
    w = table(rng)
    return {"w": w, "wt": np.ascontiguousarray(w.T)}


def test_twin_table_stored_once(rng: np.random.Generator) -> None:
    m = check_fuses(twin_text(), twin_inits(rng), "gather-transposed-twin", {"Gather": 1, "Transpose": 1, "MatMul": 1},
                    bindings=IDS_BIND)
    g = next(n for n in m.graph if n.op_type == "Gather")
    assert g.input(0).name == "wt" and g.attr("axis") == 1
    run_pass(m, "dce")
    assert list(m.graph.initializers) == ["wt"]


def test_twin_two_lookups_and_a_scalar_one(rng: np.random.Generator) -> None:
    text = twin_text(idx="int64[B, S] ids, int64 i", outs=f", float[{K}] e0, float[B, S, {K}] e1",
                     extra="e0 = Gather (w, i)\n  e1 = Gather (w, ids)")
    m = check_fuses(text, twin_inits(rng), "gather-transposed-twin", {"Gather": 3, "Transpose": 2, "MatMul": 1},
                    bindings=IDS_BIND, fires=3)
    assert not m.graph.initializers["w"].is_used()


def test_twin_table_read_by_something_else(rng: np.random.Generator) -> None:
    text = twin_text(outs=f", float[{N}, {K}] w2", extra="w2 = Mul (w, w)")
    check_not_fused(text, twin_inits(rng), "gather-transposed-twin", "is also read by Mul")


def test_twin_no_transposed_copy(rng: np.random.Generator) -> None:
    inits = twin_inits(rng)
    inits["wt"] = inits["wt"].copy()
    inits["wt"][0, 0] += 1.0  # one element differs
    check_not_fused(twin_text(), inits, "gather-transposed-twin", "no constant holds 'w' transposed")


def test_twin_table_not_2d(rng: np.random.Generator) -> None:
    text = twin_text().replace(f"float[B, S, {K}] emb", f"float[B, S, 2, {K}] emb")
    inits = twin_inits(rng)
    inits["w"] = rng.standard_normal((N, 2, K)).astype(np.float32)
    check_not_fused(text, inits, "gather-transposed-twin", "rank 3, not 2")


def test_twin_table_from_a_constant_node(rng: np.random.Generator) -> None:
    text = twin_text(gather="Gather (wc, ids)").replace(
        "  emb = Gather (wc, ids)", "  wc = Constant <value = float[2, 3] {1, 2, 3, 4, 5, 6}> ()\n  emb = Gather (wc, ids)")
    text = text.replace(f"float[B, S, {K}] emb", "float[B, S, 3] emb")
    check_not_fused(text, twin_inits(rng), "gather-transposed-twin", "is not an initializer")


def test_twin_table_is_a_graph_output(rng: np.random.Generator) -> None:
    text = twin_text(outs=f", float[{N}, {K}] wout", extra="wout = Identity (w)")
    check_not_fused(text, twin_inits(rng), "gather-transposed-twin", "also read by Identity")


def test_twin_indices_of_unknown_rank(rng: np.random.Generator) -> None:
    text = twin_text(idx="int64[B, S] i0", extra="ids = Squeeze (i0)").replace(
        "  emb = Gather (w, ids)\n", "").replace("  ids = Squeeze (i0)", "  ids = Squeeze (i0)\n  emb = Gather (w, ids)")
    check_not_fused(text, twin_inits(rng), "gather-transposed-twin", "rank of the indices is unknown")
