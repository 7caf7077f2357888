"""Symbolic inference through each op's shape rule (subgraphs included), checked against onnxruntime on random
shape programs; and the rule registry."""

from __future__ import annotations


import numpy as np
import onnx
import pytest

from graphopt.ir import serde
from graphopt.jit.symbols import SymbolTable, SymExpr
from graphopt.testing import from_text, to_proto

S = SymExpr.symbol
C = SymExpr.const
b, s, h = S("batch"), S("seq"), S("heads")

from ._helpers import HDR, I64, _out, _table


# ------------------------------------------------------------------------------------------------------------------
# inference through each op
# ------------------------------------------------------------------------------------------------------------------

OPS = [
    # (body, output, expected shape, expected value or None)
    ("o = Shape(x)", "o", "[3]", ["batch", "seq", "768"]),
    ("o = Shape<start=1>(x)", "o", "[2]", ["seq", "768"]),
    ("o = Shape<start=-2, end=-1>(x)", "o", "[1]", ["seq"]),
    ("o = Size(x)", "o", "[]", ["768*batch*seq"]),
    ("sh = Shape(x)  o = Gather<axis=0>(sh, i1)", "o", "[]", ["seq"]),
    ("sh = Shape(x)  o = Gather<axis=0>(sh, a1)", "o", "[1]", ["seq"]),
    ("sh = Shape(x)  o = Slice(sh, a0, m1)", "o", "[2]", ["batch", "seq"]),
    ("sh = Shape(x)  o = Concat<axis=0>(sh, k)", "o", "[5]", ["batch", "seq", "768", "12", "64"]),
    ("sh = Shape(x)  g = Gather<axis=0>(sh, i0)  o = Unsqueeze(g, a0)", "o", "[1]", ["batch"]),
    ("sh = Shape(x)  g = Gather<axis=0>(sh, a0)  o = Squeeze(g, a0)", "o", "[]", ["batch"]),
    ("sh = Shape(x)  o = Cast<to=6>(sh)", "o", "[3]", ["batch", "seq", "768"]),
    ("sh = Shape(x)  o = Cast<to=9>(sh)", "o", "[3]", None),
    ("sh = Shape(x)  g = Gather<axis=0>(sh, i1)  o = Add(g, i1)", "o", "[]", ["seq+1"]),
    ("sh = Shape(x)  o = Sub(sh, a1)", "o", "[3]", ["batch-1", "seq-1", "767"]),
    ("sh = Shape(x)  g0 = Gather<axis=0>(sh, i0)  g1 = Gather<axis=0>(sh, i1)  o = Mul(g0, g1)", "o", "[]",
     ["batch*seq"]),
    ("sh = Shape(x)  g = Gather<axis=0>(sh, i1)  p = Add(g, i1)  o = Div(p, two)", "o", "[]", ["(seq+1)//2"]),
    ("sh = Shape(x)  o = Div(sh, k2)", "o", "[3]", ["batch//2", "seq//2", "384"]),
    ("sh = Shape(x)  o = Mod(sh, k2)", "o", "[3]", ["batch%2", "seq%2", "0"]),
    ("sh = Shape(x)  g = Gather<axis=0>(sh, i1)  o = Range(i0, g, i1)", "o", "[seq]", None),
    ("o = Range(i0, i2, i1)", "o", "[2]", ["0", "1"]),
    ("sh = Shape(x)  s2 = Slice(sh, a0, m1)  c = Concat<axis=0>(s2, k)  o = Reshape(x, c)", "o",
     "[batch, seq, 12, 64]", None),
    ("c = Concat<axis=0>(z0, m1)  o = Reshape(x, c)", "o", "[batch, 768*seq]", None),
    ("c = Concat<axis=0>(m1, k)  o = Reshape(x, c)", "o", "[batch*seq, 12, 64]", None),
    ("c = Concat<axis=0>(z0, z0, k)  o = Reshape<allowzero=1>(x, c)", "o", "[0, 0, 12, 64]", None),
    ("sh = Shape(x)  o = ConstantOfShape<value=int64[1] {5}>(sh)", "o", "[batch, seq, 768]", None),
    ("o = ConstantOfShape<value=int64[1] {5}>(two1)", "o", "[2]", ["5", "5"]),
    ("sh = Shape(x)  o = Equal(sh, k768)", "o", "[3]", None),
    ("sh = Shape(x)  s2 = Slice(sh, i2x, big)  o = Equal(s2, k768)", "o", "[1]", ["1"]),
    ("sh = Shape(x)  o = Equal(sh, m1)", "o", "[3]", ["0", "0", "0"]),
    ("sh = Shape(x)  e = Equal(sh, m1)  o = Where(e, a1, sh)", "o", "[3]", ["batch", "seq", "768"]),
    ("sh = Shape(x)  o = Identity(sh)", "o", "[3]", ["batch", "seq", "768"]),
    ("o = Constant<value_ints=[3, 4]>()", "o", "[2]", ["3", "4"]),
    ("sh = Shape(x)  g = Gather<axis=0>(sh, i1)  p = Add(g, i1)  o = Max(g, p)", "o", "[]", ["seq+1"]),
    ("sh = Shape(x)  g = Gather<axis=0>(sh, i1)  p = Add(g, i1)  o = Min(g, p)", "o", "[]", ["seq"]),
    ("sh = Shape(x)  g0 = Gather<axis=0>(sh, i0)  g1 = Gather<axis=0>(sh, i1)  o = Min(g0, g1)", "o", "[]",
     None),
    ("sh = Shape(x)  o = Neg(sh)", "o", "[3]", ["-batch", "-seq", "-768"]),
    ("sh = Shape(x)  n = Neg(sh)  o = Abs(n)", "o", "[3]", ["batch", "seq", "768"]),
    ("sh = Shape(x)  o = Expand(x, sh)", "o", "[batch, seq, 768]", None),
    ("o = Expand(i1, two1)", "o", "[2]", ["1", "1"]),
    ("o = Expand(a1, one1)", "o", "[1]", ["1"]),
    ("o = Expand(x, k3)", "o", "[batch, 2, 768]", None),  # seq must be 1 or 2: the output has 2
    ("o = Tile(x, k3)", "o", "[batch, 2*seq, 768]", None),
    ("o = Transpose<perm=[1, 0, 2]>(x)", "o", "[seq, batch, 768]", None),
    ("o = Softmax<axis=-1>(x)", "o", "[batch, seq, 768]", None),
    ("o = Relu(x)", "o", "[batch, seq, 768]", None),
    ("o = MatMul(x, w)", "o", "[batch, seq, 16]", None),
    ("r = ReduceSum<keepdims=0>(x, a1)  o = Gemm<transB=1>(r, wt)", "o", "[batch, 16]", None),
    ("o = ReduceSum(x, a1)", "o", "[batch, 1, 768]", None),
    ("o = ReduceMean<axes=[0, 1], keepdims=0>(x)", "o", "[768]", None),
    ("o = Flatten<axis=2>(x)", "o", "[batch*seq, 768]", None),
    ("o1, o2 = Split<axis=2, num_outputs=2>(x)", "o2", "[batch, seq, 384]", None),
    ("sh = Shape(x)  o = Gather<axis=1>(x, sh)", "o", "[batch, 3, 768]", None),
    ("o = Pad(x, pads)", "o", "[batch+1, seq+2, 768]", None),
    # seq-1 would be wrong for seq == 0 (the result is 0): unknown, not seq-1
    ("o = Slice(x, a1, big, a1)", "o", "[batch, unk, 768]", None),
    ("o = Slice(x, m1, big, a1)", "o", "[batch, unk, 768]", None),
    ("o = Slice(x, a0, m1, a1)", "o", "[batch, unk, 768]", None),
    ("o = Slice(x, a0, big, a2, k2)", "o", "[batch, seq, 384]", None),
    ("o = Slice(x, a0, big, a1, k2)", "o", "[batch, (seq+1)//2, 768]", None),
    ("o = Slice(x, a0, big, a1)", "o", "[batch, seq, 768]", None),
    ("o = Slice(x, a0, two1, a1)", "o", "[batch, unk, 768]", None),
    ("o1, o2 = TopK<axis=1>(x, two1)", "o2", "[batch, 2, 768]", None),
]


@pytest.mark.parametrize("body, out, shape, value", OPS, ids=[o[0][-40:] for o in OPS])
def test_inference_through_op(body: str, out: str, shape: str, value: list[str] | None) -> None:
    inits = dict(I64, one1=np.array([1]), a2=np.array([2]), k2=np.array([2]), k768=np.array([768]), two1=np.array([2]), z0=np.array([0]),
                 k3=np.array([1, 2, 1]), i2x=np.array([2]), pads=np.array([0, 1, 0, 1, 1, 0]),
                 w=np.ones((768, 16), np.float32), wt=np.ones((16, 768), np.float32))
    t, m = _table(HDR + f"g (float[batch, seq, 768] x) => (float o_) {{ {body}  o_ = Identity({out}) }}", inits)
    v = _out(m, out)
    got = str(t.shape_of(v))
    if "unk" in shape:
        assert got.replace(" ", "").split(",")[1].startswith("unk_"), got
    else:
        assert got == shape
    val = t.value_of(v)
    if value is None:
        assert val is None
    else:
        assert val is not None and [str(e) for e in val] == value


def test_conv_and_pool_with_symbolic_spatial_dims() -> None:
    t, m = _table(HDR + """g (float[N, 3, H, W] x) => (float y) {
        c = Conv<kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]>(x, w)
        p = MaxPool<kernel_shape=[2, 2], strides=[2, 2]>(c)
        q = AveragePool<kernel_shape=[3, 3], auto_pad="SAME_UPPER", strides=[2, 2]>(x)
        gp = GlobalAveragePool(c)
        y = ReduceSum<keepdims=0>(p) }""", {"w": np.ones((8, 3, 3, 3), np.float32)})
    # (H + 2 - 3)//2 + 1 in canonical form; pooling that by 2 again nests into one floor division
    assert str(t.shape_of(_out(m, "c"))) == "[N, 8, (H+1)//2, (W+1)//2]"
    assert str(t.shape_of(_out(m, "p"))) == "[N, 8, (H+1)//4, (W+1)//4]"
    assert str(t.shape_of(_out(m, "q"))) == "[N, 3, (H+1)//2, (W+1)//2]"
    assert str(t.shape_of(_out(m, "gp"))) == "[N, 8, 1, 1]"
    # the formulas match onnxruntime for several spatial sizes
    for H, W in [(5, 7), (8, 8), (1, 2), (16, 31)]:
        for name in ("c", "p", "q"):
            e = t.shape_of(_out(m, name))
            conv = np.zeros((1, 8, (H + 2 - 3) // 2 + 1, (W + 2 - 3) // 2 + 1))
            expect = {"c": conv.shape, "p": (1, 8, conv.shape[2] // 2, conv.shape[3] // 2),
                      "q": (1, 3, -(-H // 2), -(-W // 2))}[name]
            got = tuple(d.evaluate({"N": 1, "H": H, "W": W}) for d in e.dims)
            assert got == expect, (name, H, W)


def test_unknown_op_never_crashes() -> None:
    m = from_text("""
        <ir_version: 8, opset_import: ["" : 17, "custom.x" : 1]>
        g (float[batch, 4] x) => (float[batch, 4] z) {
          u = custom.x.Mystery(x)
          z2 = Relu(u)
          z = Add(x, x)
        }""")
    t = SymbolTable()
    t.infer(m)
    assert t.shape_of(_out(m, "u")).dims is None  # rank unknown
    assert t.shape_of(_out(m, "z2")).dims is None
    assert str(t.shape_of(_out(m, "z"))) == "[batch, 4]"


def test_malformed_node_falls_back_without_raising() -> None:
    # an out-of-range Gather axis: the rule refuses, onnx's types (none) stand
    t, m = _table(HDR + "g (float[batch, 4] x) => (float z) { o = Gather<axis=5>(x, i0)  z = ReduceSum(o) }", I64)
    assert t.shape_of(_out(m, "o")) is not None


def test_dim_params_in_our_rendering_parse_back() -> None:
    # value_info written by annotate() on a custom op output: "batch*seq" reads back as the expression
    m = from_text("""
        <ir_version: 8, opset_import: ["" : 17, "custom.x" : 1]>
        g (float[batch, seq] x) => (float z) {
          u = custom.x.Flat(x)
          z = ReduceSum<keepdims=0>(u)
        }""")
    mp = to_proto(m)
    mp.graph.value_info.append(onnx.helper.make_tensor_value_info("u", 1, ["batch*seq"]))
    m = serde.from_proto(mp)
    t = SymbolTable()
    t.infer(m)
    assert t.shape_of(_out(m, "u")).dims[0] == b * s


# ------------------------------------------------------------------------------------------------------------------
# subgraphs
# ------------------------------------------------------------------------------------------------------------------
def test_if_branches_inferred_and_merged() -> None:
    t, m = _table(HDR + """g (float[batch, seq] x, bool c) => (float y) {
        y0 = If(c) <then_branch = tb () => (float[batch, seq] o1) {
                        sh = Shape(x)  r = Reshape(x, sh)  o1 = Relu(r) },
                    else_branch = eb () => (float[batch, seq] o2) { o2 = Neg(x) }>
        y = ReduceSum<keepdims=0>(y0) }""")
    assert [str(e) for e in t.value_of(_out(m, "sh"))] == ["batch", "seq"]
    assert str(t.shape_of(_out(m, "r"))) == "[batch, seq]"
    assert str(t.shape_of(_out(m, "y0"))) == "[batch, seq]"


def test_if_branches_that_differ_give_unknown_dims() -> None:
    t, m = _table(HDR + """g (float[batch, seq] x, bool c) => (float y) {
        y0 = If(c) <then_branch = tb () => (float[batch, seq] o1) { o1 = Relu(x) },
                    else_branch = eb () => (float[batch, s2] o2) { o2 = Concat<axis=1>(x, x) }>
        y = ReduceSum<keepdims=0>(y0) }""")
    dims = t.shape_of(_out(m, "y0")).dims
    assert dims[0] == b and dims[1].symbol_name is not None and dims[1] not in (s, 2 * s)


def test_loop_body_inputs_get_fresh_symbols() -> None:
    t, m = _table(HDR + """g (float[batch, 4] x, int64 n) => (float[batch, 4] y) {
        t = Constant<value=bool {1}>()
        y = Loop(n, t, x) <body = bd (int64 i, bool cin, float[?, 4] acc) => (bool cout, float[?, 4] nacc) {
            cout = Identity(cin)
            sh = Shape(acc)
            xs = Shape(x)
            nacc = Add(acc, acc) }> }""")
    body = _out(m, "y").producer.subgraphs()[0]
    acc = body.inputs[2]
    d0 = t.shape_of(acc).dims[0]
    assert d0.symbol_name.startswith("unk_") and d0 != b
    assert str(t.shape_of(body.inputs[0])) == "[]"
    assert [str(e) for e in t.value_of(_out(m, "xs"))] == ["batch", "4"]
    # the body keeps acc's shape, so the final value has the initial shape
    assert str(t.shape_of(_out(m, "y"))) == "[batch, 4]"


def test_scan_body_inputs_come_from_scan_slices() -> None:
    t, m = _table(HDR + """g (float[batch, seq, 8] x, float[batch, 8] s0) => (float[batch, 8] st, float so) {
        st, sc = Scan(s0, x) <num_scan_inputs=1, scan_input_axes=[1], body = bd (float[b, 8] s_in,
              float[b, 8] x_t) => (float[b, 8] s_out, float[b, 8] y_t) { s_out = Add(s_in, x_t)  y_t = Relu(x_t) }>
        so = ReduceSum<keepdims=0>(sc) }""")
    body = _out(m, "st").producer.subgraphs()[0]
    assert str(t.shape_of(body.inputs[1])) == "[batch, 8]"
    assert str(t.shape_of(_out(m, "sc"))) == "[seq, b, 8]" or str(t.shape_of(_out(m, "sc"))).startswith("[seq")


def _random_shape_program(rng: np.random.Generator) -> tuple[str, dict, list[str]]:
    """A random chain of shape arithmetic over Shape(x) for x: [a, b, c]; returns (text, inits, outputs)."""
    lines = ["s = Shape(x)"]
    inits: dict[str, np.ndarray] = {}
    pool: list[tuple[str, int]] = [("s", 3)]  # (name, length; 0 = scalar)
    k = 0

    def const(arr: np.ndarray) -> str:
        nonlocal k
        k += 1
        inits[f"c{k}"] = np.asarray(arr, np.int64)
        return f"c{k}"

    for i in range(12):
        name = f"v{i}"
        src, ln = pool[int(rng.integers(0, len(pool)))]
        op = ["gather", "unsq", "concat", "slice", "arith", "divmod", "minmax", "negabs", "where", "cast",
              "squeeze"][int(rng.integers(0, 11))]
        if op == "gather" and ln > 0:
            idx = int(rng.integers(-ln, ln))
            if rng.random() < 0.5:
                lines.append(f"{name} = Gather<axis=0>({src}, {const(np.array(idx))})")
                pool.append((name, 0))
            else:
                lines.append(f"{name} = Gather<axis=0>({src}, {const(np.array([idx, (idx + 1) % ln]))})")
                pool.append((name, 2))
        elif op == "unsq" and ln == 0:
            lines.append(f"{name} = Unsqueeze({src}, {const(np.array([0]))})")
            pool.append((name, 1))
        elif op == "squeeze" and ln == 1:
            lines.append(f"{name} = Squeeze({src}, {const(np.array([0]))})")
            pool.append((name, 0))
        elif op == "concat" and ln > 0:
            others = [(n, l_) for n, l_ in pool if l_ > 0]
            o, lo = others[int(rng.integers(0, len(others)))]
            lines.append(f"{name} = Concat<axis=0>({src}, {o})")
            pool.append((name, ln + lo))
        elif op == "slice" and ln > 0:
            st = int(rng.integers(-ln - 1, ln + 1))
            en = int(rng.choice([int(rng.integers(-ln - 1, ln + 2)), 2**62, -(2**62)]))
            step = int(rng.choice([1, 1, 2, -1]))
            out = len(range(*slice(st, en, step).indices(ln)))
            if out == 0:
                continue
            lines.append(f"{name} = Slice({src}, {const(np.array([st]))}, {const(np.array([en]))}, "
                         f"{const(np.array([0]))}, {const(np.array([step]))})")
            pool.append((name, out))
        elif op == "arith":
            same = [(n, l_) for n, l_ in pool if l_ == ln or l_ in (0, 1) and ln in (0, 1)]
            o, lo = same[int(rng.integers(0, len(same)))] if rng.random() < 0.6 else (
                const(np.array(int(rng.integers(-3, 5)))), 0)
            f = ["Add", "Sub", "Mul"][int(rng.integers(0, 3))]
            lines.append(f"{name} = {f}({src}, {o})")
            pool.append((name, max(ln, lo)))
        elif op == "divmod":
            f = ["Div", "Mod"][int(rng.integers(0, 2))]
            lines.append(f"{name} = {f}({src}, {const(np.array(int(rng.integers(1, 5))))})")
            pool.append((name, ln))
        elif op == "minmax":
            f = ["Min", "Max"][int(rng.integers(0, 2))]
            lines.append(f"{name} = {f}({src}, {const(np.array(int(rng.integers(0, 6))))})")
            pool.append((name, ln))
        elif op == "negabs":
            f = ["Neg", "Abs"][int(rng.integers(0, 2))]
            lines.append(f"{name} = {f}({src})")
            pool.append((name, ln))
        elif op == "where":
            c = const(np.array(int(rng.integers(-1, 4))))
            lines.append(f"{name}_e = Equal({src}, {c})")
            lines.append(f"{name} = Where({name}_e, {const(np.array(7))}, {src})")
            pool.append((name, ln))
        elif op == "cast":
            lines.append(f"{name}_i = Cast<to=6>({src})")
            lines.append(f"{name} = Cast<to=7>({name}_i)")
            pool.append((name, ln))
    outs = [n for n, _ in pool[-4:]]
    body = "\n".join(lines) + "\n" + "\n".join(f"o{j} = Identity({n})" for j, n in enumerate(outs))
    sig = ", ".join(f"int64 o{j}" for j in range(len(outs)))
    return f"{HDR}g (float[a, b, c] x) => ({sig}) {{\n{body}\n}}", inits, [f"o{j}" for j in range(len(outs))]


def test_symbolic_values_match_onnxruntime_on_random_shape_programs(rng: np.random.Generator) -> None:
    from graphopt.testing import run

    known = 0
    for _ in range(40):
        text, inits, outs = _random_shape_program(rng)
        m = from_text(text, inits)
        mp = to_proto(m)
        for o in mp.graph.output:  # the outputs' ranks vary: leave them untyped but for the dtype
            o.type.tensor_type.ClearField("shape")
        m = serde.from_proto(mp)
        t = SymbolTable()
        t.infer(m)
        vals = [t.value_of(_out(m, o)) for o in outs]
        for binding in ({"a": 2, "b": 3, "c": 5}, {"a": 1, "b": 0, "c": 7}, {"a": 6, "b": 4, "c": 1}):
            x = np.zeros([binding[d] for d in "abc"], np.float32)
            got = run(m, {"x": x})
            for o, v, r in zip(outs, vals, got):
                if v is None:
                    continue
                known += 1
                assert [e.evaluate(binding) for e in v] == np.asarray(r).reshape(-1).tolist(), (text, o, binding)
    assert known > 100  # the inference knows most of these values symbolically
