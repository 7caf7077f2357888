"""Deterministic generators of big, realistic graphs for the benchmarks (never used by tests).

``transformer(nodes)`` stacks encoder blocks shaped like a PyTorch export of a small transformer: LayerNormalization,
Q/K/V projections (MatMul + Add), Reshape/Transpose into heads, scaled dot-product attention with Softmax, an
output projection, residual Adds, a feed-forward block with the erf form of Gelu, and a Shape/Gather/Concat/Reshape
chain as exporters leave for dynamic shapes. 40 nodes per block;
weights are small (``hidden`` x ``hidden`` and ``hidden`` x ``4 hidden`` float32), the batch dim is symbolic,
node names follow torch's ``/layers.N/attn/MatMul`` style, attributes are on Transpose/Softmax/LayerNormalization,
and some values carry value_info, as exporters leave them.

With ``exporter=True`` each block also carries what exporters and tracing leave behind and optimizers remove (49
nodes per block): a second, identical Shape/Gather chain (for CSE), a dead branch (for DCE), a constant subgraph
(Constant nodes and arithmetic on them, for folding) and a Cast chain.

``big_weights(total_bytes)`` writes a model whose initializers live in one external data file of `total_bytes`
bytes without ever holding them in memory (the file is written sparsely; see large_model.py).
``inline_weights(total_bytes)`` writes a small MLP whose weights (`total_bytes` in all) are inline in the .onnx
file, as a model under protobuf's 2 GiB limit is usually saved.
"""

from __future__ import annotations

import math
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
NODES_PER_BLOCK = 40
EXPORTER_EXTRA_NODES = 9


class _Builder:
    def __init__(self, seed: int, hidden: int):
        self.rng = np.random.default_rng(seed)
        self.hidden = hidden
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.value_info: list[onnx.ValueInfoProto] = []
        self.shared: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    def node(self, op: str, inputs: list[str], prefix: str, n_out: int = 1, **attrs: object) -> list[str]:
        name = f"{prefix}/{op}"
        k = self.counts.get(name, 0)
        self.counts[name] = k + 1
        if k:
            name = f"{name}_{k}"  # torch's scheme for a second op of a kind in one module
        outs = [f"{name}_output_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs

    def weight(self, name: str, shape: tuple[int, ...], scale: float = 0.02) -> str:
        arr = (self.rng.standard_normal(shape) * scale).astype(np.float32)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def const_i64(self, key: str, values: list[int]) -> str:
        """Shape-like int64 constants shared by all blocks (exporters dedupe them too)."""
        if key not in self.shared:
            self.inits.append(numpy_helper.from_array(np.array(values, np.int64), key))
            self.shared[key] = key
        return key

    def const_f(self, key: str, value: float) -> str:
        if key not in self.shared:
            self.inits.append(numpy_helper.from_array(np.array(value, np.float32), key))
            self.shared[key] = key
        return key

    def declare(self, name: str, shape: list[object]) -> None:
        self.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))


def _block(b: _Builder, x: str, i: int, heads: int, seq: int, exporter: bool = False) -> str:
    h = b.hidden
    d = h // heads
    p = f"/layers.{i}"
    ln1 = b.node("LayerNormalization", [x, b.weight(f"layers.{i}.ln1.weight", (h,), 1.0),
                                        b.weight(f"layers.{i}.ln1.bias", (h,))], f"{p}/ln1", axis=-1, epsilon=1e-5)[0]
    b.declare(ln1, ["batch", seq, h])
    heads_shape = b.const_i64("shape_heads", [0, 0, heads, d])
    qkv = []
    for nm in ("q", "k", "v"):
        mm = b.node("MatMul", [ln1, b.weight(f"layers.{i}.attn.{nm}.weight", (h, h))], f"{p}/attn/{nm}_proj")[0]
        ad = b.node("Add", [mm, b.weight(f"layers.{i}.attn.{nm}.bias", (h,))], f"{p}/attn/{nm}_proj")[0]
        rs = b.node("Reshape", [ad, heads_shape], f"{p}/attn/{nm}")[0]
        perm = [0, 2, 3, 1] if nm == "k" else [0, 2, 1, 3]
        qkv.append(b.node("Transpose", [rs], f"{p}/attn/{nm}", perm=perm)[0])
    q, k, v = qkv
    scores = b.node("MatMul", [q, k], f"{p}/attn/scores")[0]
    scaled = b.node("Div", [scores, b.const_f("attn_scale", math.sqrt(d))], f"{p}/attn")[0]
    masked = b.node("Add", [scaled, "attention_bias"], f"{p}/attn/mask")[0]
    probs = b.node("Softmax", [masked], f"{p}/attn", axis=-1)[0]
    b.declare(probs, ["batch", heads, seq, seq])
    ctx = b.node("MatMul", [probs, v], f"{p}/attn/context")[0]
    ctx_t = b.node("Transpose", [ctx], f"{p}/attn/context", perm=[0, 2, 1, 3])[0]
    merged = b.node("Reshape", [ctx_t, b.const_i64("shape_merge", [0, 0, h])], f"{p}/attn/context")[0]
    o = b.node("MatMul", [merged, b.weight(f"layers.{i}.attn.out.weight", (h, h))], f"{p}/attn/out_proj")[0]
    o = b.node("Add", [o, b.weight(f"layers.{i}.attn.out.bias", (h,))], f"{p}/attn/out_proj")[0]
    r1 = b.node("Add", [x, o], f"{p}/residual1")[0]
    b.declare(r1, ["batch", seq, h])
    ln2 = b.node("LayerNormalization", [r1, b.weight(f"layers.{i}.ln2.weight", (h,), 1.0),
                                        b.weight(f"layers.{i}.ln2.bias", (h,))], f"{p}/ln2", axis=-1, epsilon=1e-5)[0]
    f1 = b.node("MatMul", [ln2, b.weight(f"layers.{i}.ffn.fc1.weight", (h, 4 * h))], f"{p}/ffn/fc1")[0]
    f1 = b.node("Add", [f1, b.weight(f"layers.{i}.ffn.fc1.bias", (4 * h,))], f"{p}/ffn/fc1")[0]
    # Gelu, erf form, as torch exports it below opset 20: x * 0.5 * (1 + erf(x / sqrt(2)))
    g1 = b.node("Div", [f1, b.const_f("sqrt2", math.sqrt(2.0))], f"{p}/ffn/act")[0]
    g2 = b.node("Erf", [g1], f"{p}/ffn/act")[0]
    g3 = b.node("Add", [g2, b.const_f("one", 1.0)], f"{p}/ffn/act")[0]
    g4 = b.node("Mul", [f1, g3], f"{p}/ffn/act")[0]
    g5 = b.node("Mul", [g4, b.const_f("half", 0.5)], f"{p}/ffn/act")[0]
    f2 = b.node("MatMul", [g5, b.weight(f"layers.{i}.ffn.fc2.weight", (4 * h, h))], f"{p}/ffn/fc2")[0]
    f2 = b.node("Add", [f2, b.weight(f"layers.{i}.ffn.fc2.bias", (h,))], f"{p}/ffn/fc2")[0]
    # a Shape/Gather/Unsqueeze/Concat chain as exporters leave for dynamic reshapes
    shp = b.node("Shape", [f2], f"{p}/ffn/shape")[0]
    bt = b.node("Gather", [shp, b.const_i64("idx0", [0])], f"{p}/ffn/shape", axis=0)[0]
    sq = b.node("Gather", [shp, b.const_i64("idx1", [1])], f"{p}/ffn/shape", axis=0)[0]
    new_shape = b.node("Concat", [bt, sq, b.const_i64("hid", [h])], f"{p}/ffn/shape", axis=0)[0]
    f2r = b.node("Reshape", [f2, new_shape], f"{p}/ffn/out")[0]
    drop = b.node("Identity", [f2r], f"{p}/ffn/dropout")[0]
    if exporter:
        # tracing leftovers: the same Shape/Gather again (CSE), a branch nothing reads (DCE), the residual scale
        # computed from Constant nodes (folding), a Cast round trip through float64 (a lossless Cast chain)
        shp2 = b.node("Shape", [f2], f"{p}/ffn/shape2")[0]
        b.node("Gather", [shp2, b.const_i64("idx0", [0])], f"{p}/ffn/shape2", axis=0)
        b.node("Sqrt", [b.node("Abs", [ln2], f"{p}/unused")[0]], f"{p}/unused")
        k = b.node("Constant", [], f"{p}/scale", value=numpy_helper.from_array(np.array(2.0, np.float32), "k"))[0]
        kk = b.node("Mul", [k, b.const_f("half", 0.5)], f"{p}/scale")[0]
        drop = b.node("Mul", [drop, kk], f"{p}/scale")[0]
        c64 = b.node("Cast", [drop], f"{p}/cast", to=TensorProto.DOUBLE)[0]
        drop = b.node("Cast", [c64], f"{p}/cast", to=TensorProto.FLOAT)[0]
    out = b.node("Add", [r1, drop], f"{p}/residual2")[0]
    b.declare(out, ["batch", seq, h])
    return out


def transformer(nodes: int, *, hidden: int = 16, heads: int = 2, seq: int = 8, seed: int = 0,
                exporter: bool = False) -> onnx.ModelProto:
    """A transformer-like model of about `nodes` nodes (a whole number of blocks, at least one); with `exporter`,
    blocks carry the leftovers of an export (see the module docs)."""
    per = NODES_PER_BLOCK + (EXPORTER_EXTRA_NODES if exporter else 0)
    blocks = max(1, round(nodes / per))
    b = _Builder(seed, hidden)
    x = "input_embeds"
    bias_shape = ["batch", 1, seq, seq]
    for i in range(blocks):
        x = _block(b, x, i, heads, seq, exporter)
    y = b.node("LayerNormalization", [x, b.weight("final_ln.weight", (hidden,), 1.0),
                                      b.weight("final_ln.bias", (hidden,))], "/final_ln", axis=-1, epsilon=1e-5)[0]
    b.nodes.append(helper.make_node("Identity", [y], ["last_hidden_state"], name="/output"))
    graph = helper.make_graph(
        b.nodes, "transformer",
        [helper.make_tensor_value_info("input_embeds", TensorProto.FLOAT, ["batch", seq, hidden]),
         helper.make_tensor_value_info("attention_bias", TensorProto.FLOAT, bias_shape)],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", seq, hidden])],
        b.inits, value_info=b.value_info)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="graphopt-bench")
    model.ir_version = 8
    return model


def inline_weights(total_bytes: int, *, layers: int = 16, batch: str = "batch", seed: int = 0) -> onnx.ModelProto:
    """An MLP of `layers` blocks (MatMul, Add bias, Relu, and a Shape/Gather/Concat/Reshape chain on the batch dim)
    whose square float32 weights hold `total_bytes` in all, inline in the model (65 nodes for 16 layers)."""
    rng = np.random.default_rng(seed)
    h = max(1, int(math.sqrt(total_bytes / 4 / layers)))
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    x = "x"
    inits.append(numpy_helper.from_array(np.array([0], np.int64), "idx0"))
    inits.append(numpy_helper.from_array(np.array([h], np.int64), "hid"))
    for i in range(layers):
        w = rng.standard_normal((h, h), dtype=np.float32)
        w *= np.float32(1.0 / math.sqrt(h))
        inits.append(numpy_helper.from_array(w, f"W{i}"))
        inits.append(numpy_helper.from_array(np.zeros(h, np.float32) + np.float32(0.01 * i), f"B{i}"))
        del w
        nodes.append(helper.make_node("MatMul", [x, f"W{i}"], [f"mm{i}"], name=f"/layer{i}/MatMul"))
        nodes.append(helper.make_node("Add", [f"mm{i}", f"B{i}"], [f"add{i}"], name=f"/layer{i}/Add"))
        if i % 4 == 3:  # an exporter's dynamic reshape every fourth layer
            nodes.append(helper.make_node("Shape", [f"add{i}"], [f"shp{i}"], name=f"/layer{i}/Shape"))
            nodes.append(helper.make_node("Gather", [f"shp{i}", "idx0"], [f"bs{i}"], name=f"/layer{i}/Gather",
                                          axis=0))
            nodes.append(helper.make_node("Concat", [f"bs{i}", "hid"], [f"ns{i}"], name=f"/layer{i}/Concat", axis=0))
            nodes.append(helper.make_node("Reshape", [f"add{i}", f"ns{i}"], [f"rs{i}"], name=f"/layer{i}/Reshape"))
            nodes.append(helper.make_node("Relu", [f"rs{i}"], [f"h{i}"], name=f"/layer{i}/Relu"))
        else:
            nodes.append(helper.make_node("Relu", [f"add{i}"], [f"h{i}"], name=f"/layer{i}/Relu"))
        x = f"h{i}"
    nodes.append(helper.make_node("Identity", [x], ["y"], name="/out"))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, h])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, h])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="graphopt-bench")
    model.ir_version = 8
    return model


def chain_with_ifs(nodes: int, *, every: int = 10) -> onnx.ModelProto:
    """A chain of Neg nodes with an If every `every` nodes whose branches read the chain (subgraph-heavy graphs are
    where per-subgraph costs show up: verify, sort, use-def of outer values)."""
    out: list[onnx.NodeProto] = []
    x = "x"
    for i in range(max(1, nodes * every // (every + 3))):
        out.append(helper.make_node("Neg", [x], [f"n{i}"]))
        x = f"n{i}"
        if i % every == 0:
            th = helper.make_graph([helper.make_node("Abs", [x], [f"a{i}"])], f"then{i}", [],
                                   [helper.make_tensor_value_info(f"a{i}", TensorProto.FLOAT, [2])])
            el = helper.make_graph([helper.make_node("Neg", [x], [f"b{i}"])], f"else{i}", [],
                                   [helper.make_tensor_value_info(f"b{i}", TensorProto.FLOAT, [2])])
            out.append(helper.make_node("If", ["c"], [f"i{i}"], then_branch=th, else_branch=el))
    g = helper.make_graph(out, "ifs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                                       helper.make_tensor_value_info("c", TensorProto.BOOL, [1])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, [2])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="graphopt-bench")
    model.ir_version = 8
    return model


def big_weights(folder: str, total_bytes: int, *, tensor_bytes: int = 256 * 2**20, hidden: int = 4096,
                location: str = "weights.bin") -> tuple[str, int, int]:
    """Write `folder`/model.onnx whose float32 weights (``hidden`` columns, about `tensor_bytes` each, `total_bytes`
    in all) live in `folder`/`location`; returns (model path, weight bytes, tensor count).

    The data file is made with ``truncate`` (sparse: no memory, almost no disk) and only a small stripe at the start
    of each tensor is written, with seeded numbers, so that reading a tensor shows real values. The graph chains
    ``y = x @ W_i`` over every weight, each W_i of shape [hidden, cols_i], with x of shape [batch, hidden] and
    a Slice back to `hidden` columns between steps so the chain type-checks.
    """
    rng = np.random.default_rng(0)
    rows = hidden
    cols = max(1, tensor_bytes // (4 * rows))
    per = rows * cols * 4
    count = max(1, -(-total_bytes // per))
    data_path = os.path.join(folder, location)
    inits = []
    with open(data_path, "wb") as f:
        f.truncate(count * per)
        for i in range(count):
            stripe = rng.standard_normal(min(rows * cols, 4096)).astype("<f4")
            f.seek(i * per)
            f.write(stripe.tobytes())
            t = TensorProto()
            t.name = f"W{i}"
            t.data_type = TensorProto.FLOAT
            t.dims.extend([rows, cols])
            t.data_location = TensorProto.EXTERNAL
            for k, v in (("location", location), ("offset", str(i * per)), ("length", str(per))):
                e = t.external_data.add()
                e.key, e.value = k, v
            inits.append(t)
    nodes = []
    x = "x"
    starts = numpy_helper.from_array(np.array([0], np.int64), "starts")
    ends = numpy_helper.from_array(np.array([rows], np.int64), "ends")
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    for i in range(count):
        nodes.append(helper.make_node("MatMul", [x, f"W{i}"], [f"h{i}"], name=f"/layer{i}/MatMul"))
        if cols >= rows:
            nodes.append(helper.make_node("Slice", [f"h{i}", "starts", "ends", "axes"], [f"s{i}"],
                                          name=f"/layer{i}/Slice"))
            x = f"s{i}"
        else:
            x = f"h{i}"
    nodes.append(helper.make_node("Identity", [x], ["y"], name="/out"))
    graph = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", rows])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              inits + [starts, ends, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="graphopt-bench")
    model.ir_version = 8
    path = os.path.join(folder, "model.onnx")
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path, count * per, count
