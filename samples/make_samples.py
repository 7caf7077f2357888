"""Build graphopt's sample models (deterministic: same bytes on every run).

    python samples/make_samples.py            # writes samples/*.onnx

Each model is small (well under 1 MB) and full of what exporters leave behind:

* ``cnn.onnx``: Conv + BatchNormalization + Relu blocks, a dead branch, Identity and Dropout no-ops, a constant
  subgraph computing a scale, and a duplicated Relu.
* ``transformer.onnx``: one transformer block with a dynamic batch and sequence length, the
  Shape/Gather/Unsqueeze/Concat/Reshape chains that TorchScript exports emit for multi-head attention, a LayerNorm
  spelled out in primitive ops, an erf-form Gelu, and duplicated shape computations.
* ``if_model.onnx``: an If whose condition is computed from constants (so one branch is dead), with constants
  inside the branches, and a Loop whose body recomputes a constant each iteration.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = 17


def _rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _init(name: str, arr: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.asarray(arr), name)


def _model(graph: onnx.GraphProto, opset: int = OPSET) -> onnx.ModelProto:
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="graphopt-samples",
                          producer_version="1")
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    return m


def make_cnn() -> onnx.ModelProto:
    rng = _rng()
    nodes = []
    inits = []
    x = "image"
    chans = [3, 8, 16, 16]
    for i in range(3):
        cin, cout = chans[i], chans[i + 1]
        w = f"conv{i}.weight"
        inits.append(_init(w, rng.standard_normal((cout, cin, 3, 3)).astype(np.float32) * 0.2))
        bn = [f"bn{i}.{k}" for k in ("scale", "bias", "mean", "var")]
        inits += [
            _init(bn[0], rng.uniform(0.5, 1.5, cout).astype(np.float32)),
            _init(bn[1], rng.standard_normal(cout).astype(np.float32) * 0.1),
            _init(bn[2], rng.standard_normal(cout).astype(np.float32) * 0.1),
            _init(bn[3], rng.uniform(0.5, 2.0, cout).astype(np.float32)),
        ]
        nodes.append(helper.make_node("Conv", [x, w], [f"conv{i}"], name=f"conv{i}", pads=[1, 1, 1, 1],
                                      kernel_shape=[3, 3]))
        nodes.append(helper.make_node("BatchNormalization", [f"conv{i}"] + bn, [f"bn{i}"], name=f"bn{i}",
                                      epsilon=1e-5))
        nodes.append(helper.make_node("Relu", [f"bn{i}"], [f"relu{i}"], name=f"relu{i}"))
        nodes.append(helper.make_node("Identity", [f"relu{i}"], [f"id{i}"], name=f"identity{i}"))
        x = f"id{i}"
    # a dead branch: computed, never used
    nodes.append(helper.make_node("Sigmoid", [x], ["dead_sig"], name="dead_sigmoid"))
    nodes.append(helper.make_node("Mul", ["dead_sig", x], ["dead_mul"], name="dead_mul"))
    # a constant subgraph: scale = sqrt(4) * 0.5 = 1.0, folded away
    inits.append(_init("four", np.array(4.0, np.float32)))
    inits.append(_init("half", np.array(0.5, np.float32)))
    nodes.append(helper.make_node("Sqrt", ["four"], ["two"], name="const_sqrt"))
    nodes.append(helper.make_node("Mul", ["two", "half"], ["scale"], name="const_mul"))
    nodes.append(helper.make_node("Mul", [x, "scale"], ["scaled"], name="apply_scale"))
    nodes.append(helper.make_node("Dropout", ["scaled"], ["dropped"], name="dropout"))
    nodes.append(helper.make_node("GlobalAveragePool", ["dropped"], ["pooled"], name="gap"))
    inits.append(_init("flat_shape", np.array([0, -1], np.int64)))
    nodes.append(helper.make_node("Reshape", ["pooled", "flat_shape"], ["flat"], name="flatten"))
    inits.append(_init("fc.weight", rng.standard_normal((16, 10)).astype(np.float32) * 0.3))
    inits.append(_init("fc.bias", rng.standard_normal(10).astype(np.float32) * 0.1))
    nodes.append(helper.make_node("MatMul", ["flat", "fc.weight"], ["fc_mm"], name="fc_matmul"))
    nodes.append(helper.make_node("Add", ["fc_mm", "fc.bias"], ["fc"], name="fc_add"))
    # duplicated Relu (CSE) feeding two outputs of a Sum
    nodes.append(helper.make_node("Relu", ["fc"], ["r1"], name="relu_a"))
    nodes.append(helper.make_node("Relu", ["fc"], ["r2"], name="relu_b"))
    nodes.append(helper.make_node("Add", ["r1", "r2"], ["logits"], name="sum_relu"))
    g = helper.make_graph(
        nodes, "cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits)
    return _model(g)


def make_transformer() -> onnx.ModelProto:
    rng = _rng()
    d, heads = 32, 4
    hd = d // heads
    nodes = []
    inits = []

    def init(name: str, arr: np.ndarray) -> str:
        inits.append(_init(name, arr))
        return name

    def node(op: str, ins: list[str], out: str, **attrs: object) -> str:
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def const_i64(name: str, vals: list[int]) -> str:
        # exporters emit Constant nodes for these
        nodes.append(helper.make_node("Constant", [], [name], name=name,
                                      value=numpy_helper.from_array(np.array(vals, np.int64), name)))
        return name

    x = "hidden"
    # --- LayerNorm spelled out (TorchScript style) ---
    def layer_norm(inp: str, prefix: str) -> str:
        axes = const_i64(f"{prefix}.axes", [-1])
        mean = node("ReduceMean", [inp], f"{prefix}.mean", axes=[-1])
        cen = node("Sub", [inp, mean], f"{prefix}.centered")
        two = init(f"{prefix}.two", np.array(2.0, np.float32))
        sq = node("Pow", [cen, two], f"{prefix}.sq")
        var = node("ReduceMean", [sq], f"{prefix}.var", axes=[-1])
        eps = init(f"{prefix}.eps", np.array(1e-5, np.float32))
        ve = node("Add", [var, eps], f"{prefix}.var_eps")
        sd = node("Sqrt", [ve], f"{prefix}.std")
        nrm = node("Div", [cen, sd], f"{prefix}.normed")
        g = init(f"{prefix}.gamma", rng.uniform(0.5, 1.5, d).astype(np.float32))
        b = init(f"{prefix}.beta", rng.standard_normal(d).astype(np.float32) * 0.1)
        sc = node("Mul", [nrm, g], f"{prefix}.scaled")
        del axes
        return node("Add", [sc, b], f"{prefix}.out")

    h = layer_norm(x, "ln1")
    # --- shape chains for (batch, seq, heads, hd) ---
    def split_heads(t: str, prefix: str) -> str:
        shp = node("Shape", [t], f"{prefix}.shape")
        i0 = const_i64(f"{prefix}.i0", [0])
        i1 = const_i64(f"{prefix}.i1", [1])
        b = node("Gather", [shp, i0], f"{prefix}.batch", axis=0)
        s = node("Gather", [node("Shape", [t], f"{prefix}.shape2"), i1], f"{prefix}.seq", axis=0)
        tail = const_i64(f"{prefix}.tail", [heads, hd])
        target = node("Concat", [b, s, tail], f"{prefix}.target", axis=0)
        r = node("Reshape", [t, target], f"{prefix}.reshaped")
        return node("Transpose", [r], f"{prefix}.heads", perm=[0, 2, 1, 3])

    def proj(inp: str, prefix: str) -> str:
        w = init(f"{prefix}.weight", rng.standard_normal((d, d)).astype(np.float32) * (d ** -0.5))
        bias = init(f"{prefix}.bias", rng.standard_normal(d).astype(np.float32) * 0.02)
        mm = node("MatMul", [inp, w], f"{prefix}.mm")
        return node("Add", [mm, bias], f"{prefix}.out")

    q = split_heads(proj(h, "q"), "qh")
    k = split_heads(proj(h, "k"), "kh")
    v = split_heads(proj(h, "v"), "vh")
    kt = node("Transpose", [k], "k_t", perm=[0, 1, 3, 2])
    scores = node("MatMul", [q, kt], "scores")
    # scale computed from constants: 1/sqrt(hd)
    hd_c = init("head_dim", np.array(float(hd), np.float32))
    sq = node("Sqrt", [hd_c], "sqrt_hd")
    scaled = node("Div", [scores, sq], "scores_scaled")
    probs = node("Softmax", [scaled], "probs", axis=-1)
    ctxv = node("MatMul", [probs, v], "context")
    ctxt = node("Transpose", [ctxv], "context_t", perm=[0, 2, 1, 3])
    # merge heads: shape chain again (duplicated computation of batch/seq)
    shp = node("Shape", [ctxt], "merge.shape")
    b = node("Gather", [shp, const_i64("merge.i0", [0])], "merge.batch", axis=0)
    s = node("Gather", [shp, const_i64("merge.i1", [1])], "merge.seq", axis=0)
    dd = const_i64("merge.d", [d])
    target = node("Concat", [b, s, dd], "merge.target", axis=0)
    merged = node("Reshape", [ctxt, target], "merged")
    attn = proj(merged, "o")
    res1 = node("Add", [x, attn], "residual1")
    h2 = layer_norm(res1, "ln2")
    up = proj_ff = None
    del up, proj_ff
    w1 = init("ff1.weight", rng.standard_normal((d, 2 * d)).astype(np.float32) * (d ** -0.5))
    b1 = init("ff1.bias", rng.standard_normal(2 * d).astype(np.float32) * 0.02)
    f1 = node("Add", [node("MatMul", [h2, w1], "ff1.mm"), b1], "ff1.out")
    # Gelu, erf form: 0.5 * x * (1 + erf(x / sqrt(2)))
    sqrt2 = init("gelu.sqrt2", np.array(np.sqrt(2.0), np.float32))
    one = init("gelu.one", np.array(1.0, np.float32))
    halfc = init("gelu.half", np.array(0.5, np.float32))
    e = node("Erf", [node("Div", [f1, sqrt2], "gelu.div")], "gelu.erf")
    g1 = node("Mul", [node("Mul", [f1, node("Add", [e, one], "gelu.add")], "gelu.mul1"), halfc], "gelu.out")
    w2 = init("ff2.weight", rng.standard_normal((2 * d, d)).astype(np.float32) * ((2 * d) ** -0.5))
    b2 = init("ff2.bias", rng.standard_normal(d).astype(np.float32) * 0.02)
    f2 = node("Add", [node("MatMul", [g1, w2], "ff2.mm"), b2], "ff2.out")
    out = node("Add", [res1, f2], "residual2")
    nodes.append(helper.make_node("Identity", [out], ["output"], name="output_identity"))
    g = helper.make_graph(
        nodes, "transformer_block",
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "seq", d])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", "seq", d])], inits)
    return _model(g)


def make_if_model() -> onnx.ModelProto:
    rng = _rng()
    w = rng.standard_normal((4, 4)).astype(np.float32)

    def branch(name: str, factor: float) -> onnx.GraphProto:
        c = helper.make_node("Constant", [], [f"{name}_factor"], name=f"{name}_const",
                             value=numpy_helper.from_array(np.array(factor, np.float32), f"{name}_factor"))
        c2 = helper.make_node("Constant", [], [f"{name}_two"], name=f"{name}_const2",
                              value=numpy_helper.from_array(np.array(2.0, np.float32), f"{name}_two"))
        k = helper.make_node("Mul", [f"{name}_factor", f"{name}_two"], [f"{name}_k"], name=f"{name}_k")
        m = helper.make_node("MatMul", ["x", "w"], [f"{name}_mm"], name=f"{name}_mm")
        o = helper.make_node("Mul", [f"{name}_mm", f"{name}_k"], [f"{name}_out"], name=f"{name}_out")
        return helper.make_graph([c, c2, k, m, o], name, [],
                                 [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, None)])

    nodes = [
        # cond = (threshold > 0.5), computed from constants: always true
        helper.make_node("Greater", ["threshold", "half"], ["cond"], name="cond"),
        helper.make_node("If", ["cond"], ["branch_out"], name="if", then_branch=branch("then", 1.5),
                         else_branch=branch("else", -1.0)),
        helper.make_node("Loop", ["trip", "", "branch_out"], ["loop_out"], name="loop",
                         body=_loop_body()),
    ]
    inits = [
        _init("w", w), _init("threshold", np.array(0.75, np.float32)), _init("half", np.array(0.5, np.float32)),
        _init("trip", np.array(3, np.int64)),
    ]
    g = helper.make_graph(nodes, "if_model",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                          [helper.make_tensor_value_info("loop_out", TensorProto.FLOAT, ["n", 4])], inits)
    return _model(g)


def _loop_body() -> onnx.GraphProto:
    nodes = [
        helper.make_node("Identity", ["cond_in"], ["cond_out"], name="body_cond"),
        helper.make_node("Constant", [], ["body_a"], name="body_a",
                         value=numpy_helper.from_array(np.array(0.25, np.float32), "body_a")),
        helper.make_node("Constant", [], ["body_b"], name="body_b",
                         value=numpy_helper.from_array(np.array(0.5, np.float32), "body_b")),
        helper.make_node("Add", ["body_a", "body_b"], ["body_step"], name="body_step"),
        helper.make_node("Mul", ["acc_in", "body_step"], ["acc_scaled"], name="body_mul"),
        helper.make_node("Add", ["acc_scaled", "x"], ["acc_out"], name="body_add"),
    ]
    return helper.make_graph(
        nodes, "loop_body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, None)])


SAMPLES = {"cnn.onnx": make_cnn, "transformer.onnx": make_transformer, "if_model.onnx": make_if_model}


def main(out_dir: str = HERE) -> None:
    for name, fn in SAMPLES.items():
        m = fn()
        path = os.path.join(out_dir, name)
        data = m.SerializeToString()
        with open(path, "wb") as f:
            f.write(data)
        print(f"{path}: {len(data)} bytes, {len(m.graph.node)} nodes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else HERE)
