"""Fuzz graphopt's pipeline with random valid ONNX models, for as long as a maintainer lets it run.

    python benchmarks/fuzz.py --minutes 20 [--seed S] [--out tests/fuzz_regressions] [--preset O2]

Each case is a model drawn by a seeded generator (numpy's Generator; case ``index`` of run ``seed`` is always the
same model, ``--seed S --start I --count 1`` replays it): chains and DAGs of element-wise ops, MatMul/Gemm with
constant weights, Reshape/Transpose/Squeeze/Unsqueeze/Flatten/Concat/Slice/Gather/Shape/Expand round trips, no-op
patterns (Add 0, Mul 1, identity perms, Reshape to the same shape), constant subgraphs, duplicated subexpressions,
fusion patterns spelled exactly (the fusion must fire and keep the outputs) and as near misses (one constant, axis or
shape slightly wrong: it must not fire), If with constant and computed conditions and Loop bodies reading outer
values, symbolic input dims, float32/float16/int32/int64/bool values, several outputs, and outputs that are also
graph inputs, initializers or intermediate values.

A drawn model must pass ``onnx.checker.check_model(full_check=True)``, load in onnxruntime and run for at least one
binding of its symbolic dims; one that does not is a generator bug and is discarded (and counted), never reported.
The oracle is :func:`graphopt.testing.check_pipeline`: the pipeline strictly, the IR verified after every pass,
graphopt's output gate, onnx's checker, onnxruntime's outputs against the original's for two seeds and two dim
bindings, a second run on the result, and the shape symbols against the shapes onnxruntime computes. Models are
checked in a worker process, so a crash or a hang (``--timeout``) of onnxruntime or graphopt is a finding too and
the run goes on.

Every finding is minimized (delta debugging: drop outputs, cut nodes by feeding their outputs in as graph inputs or
exposing their inputs as graph outputs, turn initializers into inputs, while the same class of problem still
reproduces) and saved as ``<out>/<slug>-<seed>-<index>.onnx`` with the problem in a sibling ``.txt``;
tests/test_fuzz_regressions.py runs the oracle over every model there. A finding whose class was already saved in
this run is counted but not minimized again.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INT_MAX = 2**63 - 1
F32, F16, I32, I64, BOOL = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT32, TensorProto.INT64, \
    TensorProto.BOOL
NP = {F32: np.float32, F16: np.float16, I32: np.int32, I64: np.int64, BOOL: np.bool_}
OPSETS = (13, 17, 18, 20, 21, 23)

Dim = int | str
# ops whose outputs onnxruntime computes bit for bit from their inputs, whatever graphopt does around them: only
# values made by these from inputs and constants feed a discontinuous op (Floor, a Cast to an integer or bool, a
# comparison), since a fusion may legitimately move a float result by an ulp, and Floor(1.9999) is not Floor(2.0)
EXACT_OPS = frozenset({"Constant", "Identity", "Relu", "Neg", "Abs", "Transpose", "Reshape", "Squeeze", "Unsqueeze",
                       "Flatten", "Gather", "Slice", "Concat", "Expand", "Split", "Where", "Dropout", "Max", "Min",
                       "Shape", "Cast", "Not", "Greater", "Less", "Equal", "GreaterOrEqual", "Floor", "If", "Loop"})
Shape = tuple[Dim, ...]


@dataclass
class Val:
    name: str
    dtype: int
    shape: Shape | None  # None: unknown (not used where a shape is needed)


@dataclass
class Case:
    """A generated model and what went into it."""

    seed: int
    index: int
    model: onnx.ModelProto
    features: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.seed}-{self.index}"


class Gen:
    """Builds one random valid model. Every feature method adds nodes to the current graph and values to the pool;
    the pool holds values whose dtype and shape are known exactly."""

    def __init__(self, seed: int, index: int):
        self.rng = np.random.default_rng([seed, index])
        r = self.rng
        self.opset = int(r.choice(OPSETS))
        self.fdt = F16 if r.random() < 0.3 else F32
        self.k = 0
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.pool: list[Val] = []
        self.features: list[str] = []
        self.init_vals: list[Val] = []
        self.exact: set[str] = set()

    # ---- naming and building ----------------------------------------------------------------------------------
    def name(self, p: str) -> str:
        self.k += 1
        return f"{p}_{self.k}"

    def node(self, op: str, ins: Sequence[str], n_out: int = 1, domain: str = "", **attrs: Any) -> Any:
        outs = [self.name(op.lower()) for _ in range(n_out)]
        if op in EXACT_OPS and op not in ("If", "Loop") and all(i in self.exact for i in ins if i):
            self.exact.update(outs)
        nm = self.name("n") if self.rng.random() < 0.7 else ""
        self.nodes.append(helper.make_node(op, list(ins), outs, name=nm, domain=domain or None, **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, arr: Any, dtype: int | None = None, *, node: bool | None = None) -> str:
        a = np.asarray(arr, dtype=NP[dtype] if dtype is not None else None)
        if node is None:
            node = self.rng.random() < 0.2
        if node:
            return self.node("Constant", [], value=numpy_helper.from_array(a, self.name("cv")))
        n = self.name("c")
        self.exact.add(n)
        self.inits.append(numpy_helper.from_array(a, n))
        self.init_vals.append(Val(n, helper.np_dtype_to_tensor_dtype(a.dtype), tuple(a.shape)))
        return n

    def ints(self, vals: Sequence[int]) -> str:
        return self.const(np.array(list(vals), np.int64))

    def fconst(self, shape: Sequence[int], scale: float = 1.0, dtype: int | None = None) -> str:
        dt = dtype or self.fdt
        return self.const((self.rng.standard_normal(tuple(shape)) * scale).astype(NP[dt]))

    def scalar(self, v: float, dtype: int | None = None, rank0: bool = True) -> str:
        dt = dtype or self.fdt
        return self.const(np.array(v if rank0 else [v], NP[dt]))

    def add(self, name: str, dtype: int, shape: Shape | None) -> Val:
        v = Val(name, dtype, shape)
        if shape is not None:
            self.pool.append(v)
        return v

    def pick(self, dtype: int | None = None, rank: int | None = None, min_rank: int = 0,
             pred: Callable[[Val], bool] | None = None, exact: bool = False) -> Val | None:
        c = [v for v in self.pool if (dtype is None or v.dtype == dtype) and v.shape is not None
             and (not exact or v.name in self.exact or v.dtype not in (F32, F16))
             and (rank is None or len(v.shape) == rank) and len(v.shape) >= min_rank and (pred is None or pred(v))]
        if not c:
            return None
        # prefer recent values: deeper chains
        w = np.arange(1, len(c) + 1, dtype=np.float64) ** 2
        return c[int(self.rng.choice(len(c), p=w / w.sum()))]

    def partner(self, v: Val) -> Val | None:
        """Another pool value of v's dtype and shape."""
        c = [u for u in self.pool if u.dtype == v.dtype and u.shape == v.shape and u is not v]
        return c[int(self.rng.integers(len(c)))] if c else None

    def static(self, v: Val, axis: int) -> int | None:
        assert v.shape is not None
        d = v.shape[axis]
        return d if isinstance(d, int) else None

    def axes_op(self, op: str, x: str, axes: Sequence[int] | None, keepdims: int | None = None,
                since: int = 18) -> str:
        """Reduce*/Squeeze/Unsqueeze with axes as an attribute before `since`, as an input from then on."""
        kw: dict[str, Any] = {}
        if keepdims is not None:
            kw["keepdims"] = keepdims
        if axes is None:
            return self.node(op, [x], **kw)
        if self.opset >= since:
            return self.node(op, [x, self.ints(axes)], **kw)
        return self.node(op, [x], axes=list(axes), **kw)

    def reduce(self, op: str, x: str, axes: Sequence[int] | None, keepdims: int = 1) -> str:
        return self.axes_op(op, x, axes, keepdims, since=13 if op == "ReduceSum" else 18)

    # ---- the model --------------------------------------------------------------------------------------------
    def setup_inputs(self) -> None:
        r = self.rng
        fam = int(r.choice(3, p=[0.35, 0.4, 0.25]))
        if fam == 0:
            shape: list[Dim] = ["N" if r.random() < 0.7 else int(r.integers(1, 5)), int(r.choice([3, 4, 6]))]
        elif fam == 1:
            shape = ["B" if r.random() < 0.6 else 2, "S" if r.random() < 0.5 else int(r.integers(2, 6)),
                     int(r.choice([4, 6, 8]))]
        else:
            h = int(r.integers(5, 9))
            shape = ["N" if r.random() < 0.6 else 1, int(r.choice([2, 3, 4])), "H" if r.random() < 0.2 else h,
                     h + int(r.integers(0, 2))]
        self.main = tuple(shape)
        for i in range(int(r.integers(1, 4))):
            self.input(f"x{i}", self.fdt, self.main)
        if r.random() < 0.3:
            self.input("ix", I64 if r.random() < 0.5 else I32, self.main)
        if r.random() < 0.2:
            self.input("bx", BOOL, self.main)
        if r.random() < 0.1:  # an input of another dtype and shape, with a dim of its own name
            self.input("y", F32 if self.fdt == F16 else F16, ("M", self.main[-1]))

    def input(self, name: str, dtype: int, shape: Shape) -> None:
        self.inputs.append(helper.make_tensor_value_info(name, dtype, list(shape)))
        self.exact.add(name)
        self.add(name, dtype, shape)

    FEATURES: tuple[tuple[str, float], ...] = (
        ("unary", 3), ("binary", 3), ("binary_const", 2), ("cast", 1.5), ("where", 1), ("int_chain", 1),
        ("matmul", 1.5), ("gemm", 1), ("matmul_add", 1), ("transpose", 1.5), ("reshape", 1.5), ("unsqueeze", 1),
        ("flatten", 0.7), ("concat_slice", 1), ("gather", 0.7), ("shape_chain", 1), ("expand", 0.7),
        ("slice", 0.7), ("noop", 2.5), ("const_sub", 1.5), ("duplicate", 1.5), ("layernorm", 1), ("rmsnorm", 0.8), ("rotary", 0.6),
        ("gelu", 1), ("softmax", 0.8), ("attention", 0.6), ("conv", 1), ("pool", 1), ("pad", 0.6),
        ("reduce_unsqueeze", 0.8), ("div_mul", 0.6), ("if", 1.2), ("loop", 0.8), ("split", 0.5),
    )

    def build(self) -> onnx.ModelProto:
        self.setup_inputs()
        names = [f for f, _ in self.FEATURES]
        boost = {4: ("conv", "pool", "pad", "rotary"), 3: ("attention", "layernorm", "matmul_add")}.get(len(self.main), ())
        w = np.array([x * (4 if f in boost else 1) for f, x in self.FEATURES])
        for _ in range(int(self.rng.integers(2, 12))):
            f = names[int(self.rng.choice(len(names), p=w / w.sum()))]
            before = len(self.nodes)
            getattr(self, "f_" + f)()
            if len(self.nodes) > before:
                self.features.append(f)
        return self.finish()

    def finish(self) -> onnx.ModelProto:
        r = self.rng
        produced = [v for v in self.pool if v.name not in {i.name for i in self.inputs}]
        outs: list[str] = []
        if produced:
            outs.append(produced[-1].name)
            for v in produced[:-1]:
                if r.random() < 0.25 and len(outs) < 4:
                    outs.append(v.name)
        if not outs or r.random() < 0.1:
            outs.append(self.inputs[int(r.integers(len(self.inputs)))].name)
        if self.init_vals and r.random() < 0.1:
            outs.append(self.init_vals[int(r.integers(len(self.init_vals)))].name)
        outs = list(dict.fromkeys(outs))
        r.shuffle(outs)
        # an overridable initializer (IR >= 4: an initializer also listed as an input keeps its default)
        inputs = list(self.inputs)
        if self.init_vals and r.random() < 0.1:
            iv = self.init_vals[int(r.integers(len(self.init_vals)))]
            if iv.name not in outs:
                inputs.append(helper.make_tensor_value_info(iv.name, iv.dtype, list(iv.shape or ())))
        graph = helper.make_graph(self.nodes, "fuzz", inputs, [], self.inits)
        opsets = [helper.make_opsetid("", self.opset)]
        m = helper.make_model(graph, opset_imports=opsets, producer_name="graphopt-fuzz")
        m.ir_version = helper.find_min_ir_version_for(opsets) if r.random() < 0.5 else max(
            helper.find_min_ir_version_for(opsets), min(10, onnx.IR_VERSION))
        types = _types(m)
        for o in outs:
            t = types.get(o)
            if t is None or not t.tensor_type.HasField("shape"):
                continue  # onnx's checker wants a shape (maybe of unknown dims) on every graph output
            vi = onnx.ValueInfoProto(name=o)
            vi.type.CopyFrom(t)
            forget = r.random() < 0.2
            for d in vi.type.tensor_type.shape.dim:
                if d.dim_param.startswith("unk__") or forget:
                    d.Clear()
            m.graph.output.append(vi)
        if not m.graph.output:
            m.graph.output.append(helper.make_tensor_value_info(self.inputs[0].name, self.fdt, list(self.main)))
        if r.random() < 0.3:
            # value_info as exporters leave it: onnx's inference of the intermediate values, right or wrong (onnx
            # sizes a ceil_mode pool without dropping a last window that starts in the padding; onnxruntime drops it)
            outs_set = {o.name for o in m.graph.output}
            for name, t in types.items():
                if name not in outs_set and name not in {i.name for i in m.graph.input} and t.HasField("tensor_type") \
                        and name not in {x.name for x in m.graph.initializer}:
                    vi = onnx.ValueInfoProto(name=name)
                    vi.type.CopyFrom(t)
                    m.graph.value_info.append(vi)
        return m

    # ---- element-wise -----------------------------------------------------------------------------------------
    def f_unary(self) -> None:
        v = self.pick(self.fdt)
        if v is None:
            return
        op = str(self.rng.choice(["Relu", "Sigmoid", "Tanh", "Neg", "Abs", "SqrtAbs", "Exp", "Softsign", "Erf",
                                  "LeakyRelu", "Elu", "HardSigmoid", "Floor", "Reciprocal1", "Sin"]))
        if op == "Floor" and v.name not in self.exact:
            op = "Softsign"
        if op == "SqrtAbs":
            out = self.node("Sqrt", [self.node("Abs", [v.name])])
        elif op == "Exp":
            out = self.node("Exp", [self.node("Tanh", [v.name])])
        elif op == "Reciprocal1":
            out = self.node("Reciprocal", [self.node("Add", [self.node("Abs", [v.name]), self.scalar(1.0)])])
        elif op in ("LeakyRelu", "Elu"):
            out = self.node(op, [v.name], alpha=float(self.rng.choice([0.01, 0.1, 1.0])))
        else:
            out = self.node(op, [v.name])
        self.add(out, v.dtype, v.shape)

    def f_binary(self) -> None:
        v = self.pick(self.fdt)
        if v is None:
            return
        w = self.partner(v)
        if w is None:
            w = self.pick(self.fdt, pred=lambda u: _broadcasts_into(u.shape, v.shape))
            if w is None:
                return
        op = str(self.rng.choice(["Add", "Sub", "Mul", "Max", "Min", "Div", "Pow2"]))
        a, b = (v.name, w.name) if self.rng.random() < 0.5 else (w.name, v.name)
        if op == "Div":
            out = self.node("Div", [v.name, self.node("Add", [self.node("Abs", [w.name]), self.scalar(0.5)])])
        elif op == "Pow2":
            out = self.node("Pow", [v.name, self.scalar(2.0, rank0=self.rng.random() < 0.5)])
        else:
            out = self.node(op, [a, b])
        self.add(out, v.dtype, v.shape)

    def f_binary_const(self) -> None:
        v = self.pick(self.fdt, min_rank=1)
        if v is None:
            return
        assert v.shape is not None
        last = v.shape[-1]
        shapes: list[tuple[int, ...]] = [(), (1,)]
        if isinstance(last, int):
            shapes += [(last,), (1, last)] if len(v.shape) >= 2 else [(last,)]
        shape = shapes[int(self.rng.integers(len(shapes)))]
        c = self.fconst(shape)
        op = str(self.rng.choice(["Add", "Sub", "Mul", "Max", "Min"]))
        out = self.node(op, [v.name, c] if self.rng.random() < 0.6 else [c, v.name])
        self.add(out, v.dtype, v.shape)

    def f_cast(self) -> None:
        v = self.pick(self.fdt)
        if v is None:
            return
        kind = int(self.rng.integers(6))
        if (kind in (1, 3, 5) or (kind == 0 and v.dtype == F32)) and v.name not in self.exact:
            kind = 2
        if kind == 0:  # through the other float type: lossy, must stay
            other = F16 if v.dtype == F32 else F32
            out = self.node("Cast", [self.node("Cast", [v.name], to=other)], to=v.dtype)
        elif kind == 1:  # through an integer: truncation, must stay
            it = I32 if self.rng.random() < 0.5 else I64
            out = self.node("Cast", [self.node("Cast", [self.node("Mul", [v.name, self.scalar(3.0)])], to=it)],
                            to=v.dtype)
        elif kind == 2:  # to its own type: a no-op
            out = self.node("Cast", [v.name], to=v.dtype)
        elif kind == 3:  # to bool and back
            out = self.node("Cast", [self.node("Cast", [v.name], to=BOOL)], to=v.dtype)
        elif kind == 4:  # widen then narrow: exact
            if v.dtype != F16:
                return
            out = self.node("Cast", [self.node("Cast", [v.name], to=F32)], to=F16)
        else:  # CastLike
            if self.opset < 15:
                return
            out = self.node("CastLike", [self.node("Cast", [v.name], to=I64), v.name])
        self.add(out, v.dtype, v.shape)

    def f_where(self) -> None:
        v = self.pick(self.fdt, exact=True)
        if v is None:
            return
        w = self.partner(v) or v
        bools = [u for u in self.pool if u.dtype == BOOL and u.shape == v.shape]
        if bools and self.rng.random() < 0.5:
            cond = bools[0].name
        else:
            op = str(self.rng.choice(["Greater", "Less", "Equal", "GreaterOrEqual"]))
            cond = self.node(op, [v.name, self.scalar(0.0)])
            if self.rng.random() < 0.3:
                cond = self.node("Not", [cond])
            self.add(cond, BOOL, v.shape)
        other = w.name if self.rng.random() < 0.5 else self.scalar(float(self.rng.choice([0.0, 1.0, -2.0])))
        out = self.node("Where", [cond, v.name, other])
        self.add(out, v.dtype, v.shape)

    def f_int_chain(self) -> None:
        v = self.pick(pred=lambda u: u.dtype in (I32, I64))
        if v is None:
            f = self.pick(self.fdt, exact=True)
            if f is None:
                return
            it = I64 if self.rng.random() < 0.5 else I32
            v = self.add(self.node("Cast", [self.node("Mul", [f.name, self.scalar(4.0)])], to=it), it, f.shape)
        dt = v.dtype
        x = v.name
        for _ in range(int(self.rng.integers(1, 4))):
            op = str(self.rng.choice(["Add", "Sub", "Mul", "Div", "Neg", "Abs", "Max", "Mod", "Add0", "Mul1"]))
            if op in ("Neg", "Abs"):
                x = self.node(op, [x])
            elif op in ("Div", "Mod"):
                x = self.node(op, [x, self.const(np.array(int(self.rng.integers(1, 4)), NP[dt]))])
            elif op == "Add0":
                x = self.node("Add", [x, self.const(np.array(0, NP[dt]))])
            elif op == "Mul1":
                x = self.node("Mul", [self.const(np.array([1], NP[dt])), x])
            else:
                x = self.node(op, [x, self.const(np.array(int(self.rng.integers(-3, 4)), NP[dt]))])
            self.add(x, dt, v.shape)
        if self.rng.random() < 0.6:
            self.add(self.node("Cast", [x], to=self.fdt), self.fdt, v.shape)
        if self.rng.random() < 0.3:
            self.add(self.node("Cast", [x], to=I32 if dt == I64 else I64), I32 if dt == I64 else I64, v.shape)

    # ---- linear -----------------------------------------------------------------------------------------------
    def f_matmul(self) -> None:
        v = self.pick(self.fdt, min_rank=1, pred=lambda u: isinstance(u.shape[-1], int))  # type: ignore[index]
        if v is None:
            return
        assert v.shape is not None
        k = int(v.shape[-1])
        n = int(self.rng.choice([k, 2, 5]))
        out = self.node("MatMul", [v.name, self.fconst((k, n), 1 / math.sqrt(max(k, 1)))])
        self.add(out, v.dtype, v.shape[:-1] + (n,))

    def f_gemm(self) -> None:
        v = self.pick(self.fdt, rank=2, pred=lambda u: isinstance(u.shape[1], int))  # type: ignore[index]
        if v is None:
            return
        assert v.shape is not None
        k = int(v.shape[1])
        n = int(self.rng.choice([k, 3]))
        tb = int(self.rng.integers(2))
        w = self.fconst((n, k) if tb else (k, n), 1 / math.sqrt(max(k, 1)))
        a = v.name
        ta = 0
        if self.rng.random() < 0.3:  # Transpose folded into transA
            a, ta = self.node("Transpose", [v.name], perm=[1, 0]), 1
        ins = [a, w]
        r = self.rng.random()
        if r < 0.7:
            ins.append(self.fconst([(n,), (1, n), (), (1,)][int(self.rng.integers(4))]))
        attrs: dict[str, Any] = {"transB": tb, "transA": ta}
        if self.rng.random() < 0.3:
            attrs["alpha"] = float(self.rng.choice([0.5, 2.0]))
        if self.rng.random() < 0.3:
            attrs["beta"] = float(self.rng.choice([0.0, 0.5, 1.0]))
        out = self.node("Gemm", ins, **attrs)
        self.add(out, v.dtype, (v.shape[0], n))

    def f_matmul_add(self) -> None:
        """MatMul + Add: exact (2-D A, constant 2-D B, bias over the last dim: Gemm) or a near miss (a rank-3 A, a
        B computed from the input, a bias that broadcasts over the rows)."""
        v = self.pick(self.fdt, min_rank=2, pred=lambda u: isinstance(u.shape[-1], int))  # type: ignore[index]
        if v is None:
            return
        assert v.shape is not None
        k = int(v.shape[-1])
        n = int(self.rng.choice([k, 3]))
        near = self.rng.random() < 0.5
        b = self.fconst((k, n), 1 / math.sqrt(max(k, 1)))  # k may be 0 (an empty tensor)
        if near and self.rng.random() < 0.5:
            b = self.node("Relu", [b])  # not a stored constant
        mm = self.node("MatMul", [v.name, b])
        bias_shapes: list[tuple[int, ...]] = [(n,), (1, n), (1,)]
        if near and isinstance(v.shape[-2], int):
            bias_shapes = [(int(v.shape[-2]), 1), (int(v.shape[-2]), n)]
        bias = self.fconst(bias_shapes[int(self.rng.integers(len(bias_shapes)))])
        out = self.node("Add", [mm, bias] if self.rng.random() < 0.7 else [bias, mm])
        self.add(out, v.dtype, v.shape[:-1] + (n,))

    # ---- shape round trips ------------------------------------------------------------------------------------
    def f_transpose(self) -> None:
        v = self.pick(min_rank=2)
        if v is None:
            return
        assert v.shape is not None
        r = len(v.shape)
        perm = [int(p) for p in self.rng.permutation(r)]
        kind = int(self.rng.integers(4))
        if kind == 0:  # identity perm: a no-op
            out = self.node("Transpose", [v.name], perm=list(range(r)))
            self.add(out, v.dtype, v.shape)
        elif kind == 1:  # a perm and its inverse, maybe with an element-wise op between
            t = self.node("Transpose", [v.name], perm=perm)
            if v.dtype in (F32, F16) and self.rng.random() < 0.5:
                t = self.node("Relu", [t])
            out = self.node("Transpose", [t], perm=[int(i) for i in np.argsort(perm)])
            self.add(out, v.dtype, v.shape)
        elif kind == 2:  # two perms that compose to a third
            q = [int(p) for p in self.rng.permutation(r)]
            t = self.node("Transpose", [self.node("Transpose", [v.name], perm=perm)], perm=q)
            s1 = tuple(v.shape[p] for p in perm)
            self.add(t, v.dtype, tuple(s1[p] for p in q))
        else:  # no perm: reverse
            out = self.node("Transpose", [v.name])
            self.add(out, v.dtype, tuple(reversed(v.shape)))

    def f_reshape(self) -> None:
        v = self.pick(min_rank=1)
        if v is None:
            return
        assert v.shape is not None
        kind = int(self.rng.integers(5))
        if kind == 0:
            out = self.node("Reshape", [v.name, self.node("Shape", [v.name])])
        elif kind == 1:  # zeros copy the input's dims
            out = self.node("Reshape", [v.name, self.ints([0] * len(v.shape))])
        elif kind == 2 and all(isinstance(d, int) for d in v.shape):
            out = self.node("Reshape", [v.name, self.ints(list(v.shape))])  # type: ignore[arg-type]
        elif kind == 3 and all(isinstance(d, int) for d in v.shape[1:]):
            # [-1, rest...] and back to the input's own shape
            flat = self.node("Reshape", [v.name, self.ints([-1, int(np.prod(v.shape[1:], dtype=np.int64))])])
            if v.dtype in (F32, F16) and self.rng.random() < 0.5:
                flat = self.node("Tanh", [flat])
            out = self.node("Reshape", [flat, self.node("Shape", [v.name])])
        else:  # a -1 in the last place, exact when the others are copied
            tgt = [0] * (len(v.shape) - 1) + [-1]
            out = self.node("Reshape", [v.name, self.ints(tgt)])
        self.add(out, v.dtype, v.shape)

    def f_unsqueeze(self) -> None:
        v = self.pick()
        if v is None:
            return
        assert v.shape is not None
        r = len(v.shape)
        a = int(self.rng.integers(-(r + 1), r + 1))
        u = self.axes_op("Unsqueeze", v.name, [a], since=13)
        pos = a if a >= 0 else a + r + 1
        ushape = v.shape[:pos] + (1,) + v.shape[pos:]
        if v.dtype in (F32, F16) and self.rng.random() < 0.4:
            u = self.node("Sigmoid", [u])
        kind = int(self.rng.integers(3))
        if kind == 0:
            out = self.axes_op("Squeeze", u, [a if self.rng.random() < 0.5 else pos], since=13)
            self.add(out, v.dtype, v.shape)
        elif kind == 1 and not any(d == 1 for d in v.shape):
            out = self.axes_op("Squeeze", u, None, since=13)  # no axes: every 1
            if all(isinstance(d, int) for d in v.shape):
                self.add(out, v.dtype, v.shape)
        else:
            self.add(u, v.dtype, ushape)

    def f_flatten(self) -> None:
        v = self.pick(min_rank=2)
        if v is None:
            return
        assert v.shape is not None
        ax = int(self.rng.integers(0, len(v.shape) + 1))
        f = self.node("Flatten", [v.name], axis=ax)
        out = self.node("Reshape", [f, self.node("Shape", [v.name])])
        self.add(out, v.dtype, v.shape)

    def f_concat_slice(self) -> None:
        v = self.pick(min_rank=1)
        if v is None:
            return
        assert v.shape is not None
        w = self.partner(v) or v
        r = len(v.shape)
        ax = int(self.rng.integers(r))
        c = self.node("Concat", [v.name, w.name], axis=ax if self.rng.random() < 0.5 else ax - r)
        d = v.shape[ax]
        cshape = v.shape[:ax] + ((2 * d if isinstance(d, int) else None),) + v.shape[ax + 1:]
        if isinstance(d, int):
            first = self.rng.random() < 0.5
            starts, ends = ([0], [d]) if first else ([d], [INT_MAX])
            out = self.node("Slice", [c, self.ints(starts), self.ints(ends), self.ints([ax])])
            self.add(out, v.dtype, v.shape)
            if None not in cshape:
                self.add(c, v.dtype, cshape)
        else:  # the end from the input's Shape
            end = self.node("Gather", [self.node("Shape", [v.name]), self.ints([ax])], axis=0)
            out = self.node("Slice", [c, self.ints([0]), end, self.ints([ax])])
            self.add(out, v.dtype, v.shape)
        if self.rng.random() < 0.3:  # Concat of one input: a no-op
            self.add(self.node("Concat", [out], axis=0), v.dtype, v.shape)

    def f_gather(self) -> None:
        v = self.pick(min_rank=1, pred=lambda u: any(isinstance(d, int) and d > 1 for d in u.shape or ()))
        if v is None:
            return
        assert v.shape is not None
        axes = [i for i, d in enumerate(v.shape) if isinstance(d, int) and d > 1]
        ax = axes[int(self.rng.integers(len(axes)))]
        d = int(v.shape[ax])
        kind = int(self.rng.integers(3))
        if kind == 0:  # every index in order: a no-op
            idx = self.ints(list(range(d)))
            self.add(self.node("Gather", [v.name, idx], axis=ax), v.dtype, v.shape)
        elif kind == 1:  # a scalar index drops the axis
            idx = self.const(np.array(int(self.rng.integers(-d, d)), np.int64))
            self.add(self.node("Gather", [v.name, idx], axis=ax), v.dtype, v.shape[:ax] + v.shape[ax + 1:])
        else:
            ids = [int(i) for i in self.rng.integers(-d, d, size=int(self.rng.integers(1, 4)))]
            self.add(self.node("Gather", [v.name, self.ints(ids)], axis=ax), v.dtype,
                     v.shape[:ax] + (len(ids),) + v.shape[ax + 1:])

    def f_shape_chain(self) -> None:
        """The exporter's dynamic reshape: Shape -> Gather -> Unsqueeze -> Concat -> Reshape, and back."""
        v = self.pick(min_rank=2, pred=lambda u: all(isinstance(d, int) for d in u.shape[1:]))  # type: ignore
        if v is None:
            return
        assert v.shape is not None
        shp = self.node("Shape", [v.name])
        if self.rng.random() < 0.5:
            n = self.node("Gather", [shp, self.ints([0])], axis=0)
        else:
            n = self.axes_op("Unsqueeze", self.node("Gather", [shp, self.const(np.array(0, np.int64))], axis=0), [0],
                             since=13)
        rest = int(np.prod(v.shape[1:], dtype=np.int64))
        split = [s for s in (2, 3) if rest % s == 0]
        tail = [split[0], rest // split[0]] if split and self.rng.random() < 0.6 else [rest]
        t1 = self.node("Concat", [n, self.ints(tail)], axis=0)
        mid = self.node("Reshape", [v.name, t1])
        if v.dtype in (F32, F16) and self.rng.random() < 0.5:
            mid = self.node("Relu", [mid])
        self.add(mid, v.dtype, (v.shape[0], *tail))
        if self.rng.random() < 0.5:
            back = self.node("Reshape", [mid, self.node("Shape", [v.name])])
        else:
            sl = self.node("Slice", [self.node("Shape", [v.name]), self.ints([1]), self.ints([INT_MAX])])
            back = self.node("Reshape", [mid, self.node("Concat", [self.ints([-1]), sl], axis=0)])
        self.add(back, v.dtype, v.shape)

    def f_expand(self) -> None:
        v = self.pick(min_rank=1)
        if v is None:
            return
        assert v.shape is not None
        kind = int(self.rng.integers(3))
        if kind == 0:  # to its own shape: a no-op
            out = self.node("Expand", [v.name, self.node("Shape", [v.name])])
        elif kind == 1:  # ones of a rank no larger: a no-op
            out = self.node("Expand", [v.name, self.ints([1] * int(self.rng.integers(1, len(v.shape) + 1)))])
        else:  # a constant broadcast to v's shape, then combined
            if v.dtype not in (F32, F16) or not isinstance(v.shape[-1], int):
                return
            e = self.node("Expand", [self.fconst((int(v.shape[-1]),), dtype=v.dtype), self.node("Shape", [v.name])])
            out = self.node("Add", [v.name, e])
        self.add(out, v.dtype, v.shape)

    def f_slice(self) -> None:
        v = self.pick(min_rank=1)
        if v is None:
            return
        assert v.shape is not None
        r = len(v.shape)
        ax = int(self.rng.integers(r))
        kind = int(self.rng.integers(3))
        if kind == 0:  # the whole axis: a no-op
            out = self.node("Slice", [v.name, self.ints([0]), self.ints([INT_MAX]), self.ints([ax])])
        elif kind == 1:  # reversed twice
            rev = [self.ints([-1]), self.ints([-INT_MAX]), self.ints([ax]), self.ints([-1])]
            out = self.node("Slice", [self.node("Slice", [v.name, *rev]), *rev])
        else:  # reversed once (not a no-op)
            out = self.node("Slice", [v.name, self.ints([-1]), self.ints([-INT_MAX]), self.ints([ax]),
                                      self.ints([-1])])
        self.add(out, v.dtype, v.shape)

    def f_split(self) -> None:
        v = self.pick(min_rank=1, pred=lambda u: any(isinstance(d, int) and d % 2 == 0 for d in u.shape or ()))
        if v is None:
            return
        assert v.shape is not None
        axes = [i for i, d in enumerate(v.shape) if isinstance(d, int) and d % 2 == 0]
        ax = axes[int(self.rng.integers(len(axes)))]
        h = int(v.shape[ax]) // 2
        if self.opset >= 18 and self.rng.random() < 0.5:
            a, b = self.node("Split", [v.name], 2, axis=ax, num_outputs=2)
        else:
            a, b = self.node("Split", [v.name, self.ints([h, h])], 2, axis=ax)
        half = v.shape[:ax] + (h,) + v.shape[ax + 1:]
        self.add(a, v.dtype, half)
        self.add(b, v.dtype, half)
        if self.rng.random() < 0.5:  # and back together
            self.add(self.node("Concat", [a, b], axis=ax), v.dtype, v.shape)

    # ---- no-ops, constants, duplicates ------------------------------------------------------------------------
    def f_noop(self) -> None:
        v = self.pick()
        if v is None:
            return
        assert v.shape is not None
        fl = v.dtype in (F32, F16)
        kind = str(self.rng.choice(["add0", "mul1", "sub0", "div1", "pow1", "identity", "dropout", "near_mul",
                                    "near_add", "enlarge", "and_true"]))
        dt = v.dtype
        shape = v.shape
        if (dt == BOOL) != (kind == "and_true") and kind != "identity":
            return
        if kind in ("add0", "sub0"):
            z = self.const(np.zeros((1,) * int(self.rng.integers(0, len(shape) + 1)), NP[dt]))
            out = self.node("Add" if kind == "add0" else "Sub", [v.name, z] if kind == "sub0" or
                            self.rng.random() < 0.5 else [z, v.name])
        elif kind == "mul1":
            out = self.node("Mul", [v.name, self.const(np.ones((), NP[dt]))])
        elif kind in ("div1", "pow1"):
            if not fl:
                return
            out = self.node("Div" if kind == "div1" else "Pow", [v.name, self.scalar(1.0, dt)])
        elif kind == "identity":
            out = self.node("Identity", [self.node("Identity", [v.name])])
        elif kind == "dropout":
            if not fl:
                return
            out = self.node("Dropout", [v.name])
        elif kind == "near_mul":  # not 1: must stay
            if not fl:
                return
            out = self.node("Mul", [v.name, self.scalar(1.01, dt)])
        elif kind == "near_add":  # adds zero, but of a larger rank: the output grows a dim
            z = self.const(np.zeros((1,) * (len(shape) + 1), NP[dt]))
            out = self.node("Add", [v.name, z])
            shape = (1,) + shape
        elif kind == "enlarge":  # zeros whose broadcasting enlarges the output
            if not fl:
                return
            z = self.const(np.zeros((2,) + (1,) * len(shape), NP[dt]))
            out = self.node("Add", [z, v.name])
            shape = (2,) + shape
        else:
            if dt != BOOL:
                return
            out = self.node("And", [v.name, self.const(np.ones((), np.bool_))])
        self.add(out, dt, shape)

    def f_const_sub(self) -> None:
        """A constant subgraph: arithmetic on constants (Constant nodes, ConstantOfShape, Range) joined to a value."""
        v = self.pick(self.fdt, min_rank=1, pred=lambda u: isinstance(u.shape[-1], int))  # type: ignore[index]
        if v is None:
            return
        assert v.shape is not None
        n = int(v.shape[-1])
        kind = int(self.rng.integers(3))
        if kind == 0:
            c = self.node("Mul", [self.node("Add", [self.fconst((n,)), self.fconst((n,))]), self.scalar(0.5)])
            c = self.node("Sqrt", [self.node("Abs", [c])])
        elif kind == 1:
            c = self.node("ConstantOfShape", [self.ints([n])],
                          value=numpy_helper.from_array(np.array([self.rng.standard_normal()], NP[self.fdt])))
        else:
            rg = self.node("Range", [self.const(np.array(0, np.int64)), self.const(np.array(n, np.int64)),
                                     self.const(np.array(1, np.int64))])
            c = self.node("Cast", [rg], to=self.fdt)
        op = str(self.rng.choice(["Add", "Mul", "Sub"]))
        self.add(self.node(op, [v.name, c]), v.dtype, v.shape)
        if self.rng.random() < 0.3:  # a ConstantOfShape of a computed shape
            f = self.node("ConstantOfShape", [self.node("Shape", [v.name])],
                          value=numpy_helper.from_array(np.array([1.0], NP[self.fdt])))
            self.add(self.node("Mul", [v.name, f]), v.dtype, v.shape)

    def f_duplicate(self) -> None:
        """Copy an existing node (new output names) and join the copies: CSE must merge exact copies only."""
        cands = [n for n in self.nodes if n.op_type not in ("Constant", "If", "Loop") and len(n.output) == 1
                 and any(v.name == n.output[0] for v in self.pool)]
        if not cands:
            return
        n = cands[int(self.rng.integers(len(cands)))]
        v = next(u for u in self.pool if u.name == n.output[0])
        dup = onnx.NodeProto()
        dup.CopyFrom(n)
        dup.output[0] = self.name("dup")
        dup.name = self.name("n") if n.name else ""
        near = self.rng.random() < 0.3 and n.op_type in ("LeakyRelu", "Elu", "Concat", "Transpose", "Gather")
        if near:
            # a near copy: another constant input, a different attribute would change the shape too often
            return
        self.nodes.append(dup)
        if v.dtype in (F32, F16, I32, I64):
            op = "Sub" if self.rng.random() < 0.3 else "Add"
            self.add(self.node(op, [n.output[0], dup.output[0]]), v.dtype, v.shape)
        else:
            self.add(dup.output[0], v.dtype, v.shape)

    # ---- fusion patterns, exact and near misses ---------------------------------------------------------------
    def f_layernorm(self) -> None:
        v = self.pick(self.fdt, min_rank=2, pred=lambda u: isinstance(u.shape[-1], int))  # type: ignore[index]
        if v is None:
            return
        assert v.shape is not None
        r, near = len(v.shape), self.rng.random() < 0.5
        miss = str(self.rng.choice(["axes", "pow4", "eps_vec", "gamma_wide", "sub_rev", "mean_sum"])) if near else ""
        axes = [-1] if self.rng.random() < 0.5 else [r - 1]
        if miss == "axes":
            axes = [-2] if r >= 2 else [-1]
        if self.rng.random() < 0.2 and r >= 3 and isinstance(v.shape[-2], int) and not near:
            axes = [-2, -1]
        d = int(v.shape[-1])
        mean = self.reduce("ReduceMean", v.name, axes)
        diff = self.node("Sub", [mean, v.name] if miss == "sub_rev" else [v.name, mean])
        # the near miss raises to the 4th power, not the 3rd: an odd power makes a negative variance, NaN after Sqrt,
        # and onnxruntime's MaxPool treats NaN differently in padded and unpadded windows (seed 3003 case 3136)
        sq = self.node("Pow", [diff, self.scalar(4.0 if miss == "pow4" else 2.0)]) if self.rng.random() < 0.6 \
            else self.node("Mul", [diff, diff])
        var = self.reduce("ReduceSum" if miss == "mean_sum" else "ReduceMean", sq, axes)
        # eps not tiny: a row of equal values normalizes rounding noise by 1/sqrt(eps), and the fused op's noise
        # differs from the spelled-out form's (1e-5 made a 2e-5 difference out of nothing, seed 1001 case 3360)
        eps = self.fconst((d,), 0.01) if miss == "eps_vec" else self.scalar(float(self.rng.choice([1e-2, 1e-1])))
        if miss == "eps_vec":
            eps = self.node("Abs", [eps])
        den = self.node("Sqrt", [self.node("Add", [var, eps])])
        y = self.node("Div", [diff, den])
        gshape: tuple[int, ...] = (d,)
        if len(axes) == 2:
            gshape = (int(v.shape[-2]), d)
        if miss == "gamma_wide":
            gshape = (2, 1, d)
        gamma = self.fconst(gshape)
        y = self.node("Mul", [y, gamma] if self.rng.random() < 0.7 else [gamma, y])
        if self.rng.random() < 0.7:
            y = self.node("Add", [y, self.fconst((d,))])
        shape = v.shape
        if miss == "gamma_wide":
            shape = _broadcast(v.shape, gshape)
        self.add(y, v.dtype, shape)

    def f_rmsnorm(self) -> None:
        v = self.pick(self.fdt, min_rank=2, pred=lambda u: isinstance(u.shape[-1], int))  # type: ignore[index]
        if v is None:
            return
        assert v.shape is not None
        d = int(v.shape[-1])
        near = self.rng.random() < 0.5
        miss = str(self.rng.choice(["sum", "pow4", "axes", "no_sqrt"])) if near else ""
        sq = self.node("Pow", [v.name, self.scalar(4.0 if miss == "pow4" else 2.0)]) if self.rng.random() < 0.5 \
            else self.node("Mul", [v.name, v.name])
        ms = self.reduce("ReduceSum" if miss == "sum" else "ReduceMean", sq, [-2 if miss == "axes" else -1])
        s = self.node("Add", [ms, self.scalar(float(self.rng.choice([1e-2, 1e-1])))])
        if miss != "no_sqrt":
            s = self.node("Sqrt", [s])
        if self.rng.random() < 0.5:
            y = self.node("Div", [v.name, s])
        else:
            y = self.node("Mul", [v.name, self.node("Reciprocal", [s])])
        y = self.node("Mul", [y, self.fconst((d,))])
        self.add(y, v.dtype, v.shape)

    def f_rotary(self) -> None:
        """Hugging Face's apply_rotary_pos_emb: x * cos + rotate_half(x) * sin, with cos/sin of Concat(f, f)."""
        v = self.pick(self.fdt, rank=4, pred=lambda u: isinstance(u.shape[-1], int)  # type: ignore[index]
                      and u.shape[-1] % 2 == 0)  # type: ignore[index]
        if v is None:
            return
        assert v.shape is not None
        d = int(v.shape[-1])
        x = v.name
        partial = d % 4 == 0 and self.rng.random() < 0.3  # GPT-NeoX/Phi: only x[..., :d/2] rotates
        if partial:
            full, d = x, d // 2
            x = self.node("Slice", [full, self.ints([0]), self.ints([d]), self.ints([-1])])
        h = d // 2
        near = self.rng.random() < 0.4
        miss = str(self.rng.choice(["halves", "swap", "scale_vec"])) if near else ""
        seq = v.shape[2]
        if isinstance(seq, int) and self.rng.random() < 0.5:
            f = self.fconst((1, seq, h))  # constant angles: folding makes the caches constants
        else:  # angles computed at run time, [batch, seq, h]
            half = self.node("Slice", [x, self.ints([0]), self.ints([h]), self.ints([-1])])
            f = self.axes_op("ReduceMean", half, [1], keepdims=0)
        ff = self.node("Concat", [f, self.node("Neg", [f]) if miss == "halves" else f], axis=-1)
        caches = []
        for op in ("Cos", "Sin"):
            c = self.node(op, [ff])
            if miss == "scale_vec":
                c = self.node("Mul", [c, self.fconst((d,))])
            elif self.rng.random() < 0.3:
                c = self.node("Mul", [c, self.scalar(0.8)])
            caches.append(self.axes_op("Unsqueeze", c, [1], since=13))
        lo = self.node("Slice", [x, self.ints([0]), self.ints([h]), self.ints([-1])])
        hi = self.node("Slice", [x, self.ints([h]), self.ints([INT_MAX]), self.ints([-1])])
        if miss == "swap":
            lo, hi = hi, lo
        rot = self.node("Concat", [self.node("Neg", [hi]), lo], axis=-1)
        y = self.node("Add", [self.node("Mul", [x, caches[0]]), self.node("Mul", [rot, caches[1]])])
        if partial:
            rest = self.node("Slice", [full, self.ints([d]), self.ints([INT_MAX]), self.ints([-1])])
            y = self.node("Concat", [y, rest], axis=-1)
        self.add(y, v.dtype, v.shape)

    def f_gelu(self) -> None:
        v = self.pick(self.fdt)
        if v is None:
            return
        x = v.name
        near = self.rng.random() < 0.5
        miss = str(self.rng.choice(["half", "sqrt", "one", "cube"])) if near else ""
        half = self.scalar(0.45 if miss == "half" else 0.5)
        one = self.scalar(2.0 if miss == "one" else 1.0)
        if self.rng.random() < 0.5:  # erf form
            s = math.sqrt(3.0 if miss == "sqrt" else 2.0)
            if self.rng.random() < 0.5:
                z = self.node("Div", [x, self.scalar(s)])
            else:
                z = self.node("Mul", [x, self.scalar(1 / s)])
            h = self.node("Add", [self.node("Erf", [z]), one])
        else:  # tanh form
            cube = self.node("Pow", [x, self.scalar(2.0 if miss == "cube" else 3.0)])
            inner = self.node("Add", [x, self.node("Mul", [self.scalar(0.044715), cube])])
            t = self.node("Tanh", [self.node("Mul", [self.scalar(math.sqrt(2 / math.pi)), inner])])
            h = self.node("Add", [one, t])
        k = int(self.rng.integers(3))
        if k == 0:
            y = self.node("Mul", [self.node("Mul", [x, h]), half])
        elif k == 1:
            y = self.node("Mul", [self.node("Mul", [x, half]), h])
        else:
            y = self.node("Mul", [x, self.node("Mul", [h, half])])
        self.add(y, v.dtype, v.shape)

    def f_softmax(self) -> None:
        v = self.pick(self.fdt, min_rank=1)
        if v is None:
            return
        assert v.shape is not None
        r = len(v.shape)
        ax = -1 if self.rng.random() < 0.6 else int(self.rng.integers(-r, r))
        if self.rng.random() < 0.4:
            self.add(self.node(str(self.rng.choice(["Softmax", "LogSoftmax"])), [v.name], axis=ax), v.dtype, v.shape)
            return
        ax2 = ax if self.rng.random() < 0.7 else (ax + 1) % r  # near miss: sum over another axis
        m = self.reduce("ReduceMax", v.name, [ax])
        e = self.node("Exp", [self.node("Sub", [v.name, m])])
        self.add(self.node("Div", [e, self.reduce("ReduceSum", e, [ax2])]), v.dtype, v.shape)

    def f_attention(self) -> None:
        v = self.pick(self.fdt, rank=3, pred=lambda u: isinstance(u.shape[-1], int))  # type: ignore[index]
        if v is None:
            return
        assert v.shape is not None
        d = int(v.shape[-1])
        q = self.node("MatMul", [v.name, self.fconst((d, d), 1 / math.sqrt(max(d, 1)))])
        k = self.node("MatMul", [v.name, self.fconst((d, d), 1 / math.sqrt(max(d, 1)))])
        val = self.node("MatMul", [v.name, self.fconst((d, d), 1 / math.sqrt(max(d, 1)))])
        kt = self.node("Transpose", [k], perm=[0, 2, 1])
        s = self.node("MatMul", [q, kt])
        sc = self.scalar(1 / math.sqrt(max(d, 1)) if self.rng.random() < 0.7 else 0.3)
        s = self.node("Mul" if self.rng.random() < 0.5 else "Div", [s, sc])
        p = self.node("Softmax", [s], axis=-1 if self.rng.random() < 0.7 else 1)
        self.add(self.node("MatMul", [p, val]), v.dtype, v.shape)

    def _rank4(self) -> Val | None:
        return self.pick(self.fdt, rank=4, pred=lambda u: isinstance(u.shape[1], int))  # type: ignore[index]

    def f_conv(self) -> None:
        v = self._rank4()
        if v is None:
            return
        assert v.shape is not None
        c = int(v.shape[1])
        m = int(self.rng.choice([2, 3]))
        kk = int(self.rng.choice([1, 3]))
        w = self.fconst((m, c, kk, kk), 0.5)
        pad = kk // 2
        ins = [v.name, w] + ([self.fconst((m,))] if self.rng.random() < 0.5 else [])
        y = self.node("Conv", ins, kernel_shape=[kk, kk], pads=[pad] * 4)
        if self.rng.random() < 0.2:  # the weight shared by a second Conv: conv-bn must not fold it
            self.add(self.node("Conv", [v.name, w], pads=[pad] * 4), v.dtype, (v.shape[0], m) + v.shape[2:])
        shape = (v.shape[0], m) + v.shape[2:]
        kind = int(self.rng.integers(4))
        if kind == 0:  # BatchNormalization
            mean, var = self.fconst((m,)), self.node("Abs", [self.fconst((m,))]) if self.rng.random() < 0.2 else \
                self.const((np.abs(self.rng.standard_normal(m)) + 0.5).astype(NP[self.fdt]))
            y = self.node("BatchNormalization", [y, self.fconst((m,)), self.fconst((m,)), mean, var],
                          epsilon=float(self.rng.choice([1e-5, 1e-3])))
        elif kind == 1:  # per-channel Mul/Add, or a near miss along the last axis
            cs = (m, 1, 1) if self.rng.random() < 0.6 else (1, m, 1, 1)
            if self.rng.random() < 0.3 and isinstance(v.shape[3], int):
                cs = (int(v.shape[3]),)
            y = self.node(str(self.rng.choice(["Mul", "Add"])), [y, self.fconst(cs)])
        self.add(y, v.dtype, shape)

    def f_pool(self) -> None:
        v = self._rank4()
        if v is None:
            return
        assert v.shape is not None
        op = str(self.rng.choice(["MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"]))
        if op.startswith("Global"):
            self.add(self.node(op, [v.name]), v.dtype, v.shape[:2] + (1, 1))
            return
        smallest = min([d for d in v.shape[2:] if isinstance(d, int)] or [3])
        k = int(self.rng.integers(1, min(3, smallest) + 1))
        s = int(self.rng.integers(1, 4))
        p = int(self.rng.integers(0, k))
        if any(isinstance(d, str) for d in v.shape[2:]):
            # a symbolic spatial dim is bound to 1 too: keep the window inside the padded input (onnxruntime sizes
            # a pool over an input smaller than its window with C's truncating division, 1 where ONNX says 0)
            p = max(p, k // 2)
        ceil = int(self.rng.random() < 0.5)
        attrs: dict[str, Any] = {"kernel_shape": [k, k], "strides": [s, s], "pads": [p, p, p, p]}
        if ceil:
            attrs["ceil_mode"] = 1
        if op == "AveragePool" and self.rng.random() < 0.5:
            attrs["count_include_pad"] = 1
        if self.rng.random() < 0.15:
            attrs.pop("pads")
            attrs["auto_pad"] = str(self.rng.choice(["SAME_UPPER", "SAME_LOWER", "VALID"]))
            if attrs["auto_pad"] == "VALID" and any(isinstance(d, str) for d in v.shape[2:]):
                attrs["auto_pad"] = "SAME_UPPER"
        y = self.node(op, [v.name], **attrs)
        self.add(y, v.dtype, _pool_shape(v.shape, k, s, p, ceil, attrs.get("auto_pad")))

    def f_pad(self) -> None:
        v = self._rank4()
        if v is None:
            return
        assert v.shape is not None
        near = self.rng.random() < 0.4
        p = int(self.rng.integers(1, 3))
        pads = [0, 0, p, p, 0, 0, p, p]
        if near and self.rng.random() < 0.5:
            pads = [0, 1, p, p, 0, 0, p, p]  # pads the channel axis
        op = str(self.rng.choice(["Conv", "MaxPool", "AveragePool"]))
        val = -np.inf if op == "MaxPool" and not (near and self.rng.random() < 0.5) else 0.0
        mode = "reflect" if near and self.rng.random() < 0.3 else "constant"
        ins = [v.name, self.ints(pads)]
        if mode == "constant":
            ins.append(self.scalar(float(val)))
        x = self.node("Pad", ins, mode=mode)
        c = int(v.shape[1]) + (1 if pads[1] else 0)
        if op == "Conv":
            y = self.node("Conv", [x, self.fconst((2, c, 3, 3), 0.5)])
            oc = 2
        else:
            attrs: dict[str, Any] = {"kernel_shape": [3, 3]}
            if op == "AveragePool" and self.rng.random() < 0.5:
                attrs["count_include_pad"] = 1
            y = self.node(op, [x], **attrs)
            oc = c
        hw = tuple((d + 2 * p - 2) if isinstance(d, int) else None for d in v.shape[2:])
        if None in hw:
            return
        self.add(y, v.dtype, (v.shape[0], oc) + hw)

    def f_reduce_unsqueeze(self) -> None:
        v = self.pick(self.fdt, min_rank=2)
        if v is None:
            return
        assert v.shape is not None
        r = len(v.shape)
        ax = int(self.rng.integers(-r, r))
        op = str(self.rng.choice(["ReduceSum", "ReduceMean", "ReduceMax", "ReduceL2"]))
        red = self.reduce(op, v.name, [ax], keepdims=0)
        pos = ax % r
        uax = ax if self.rng.random() < 0.4 else pos
        if self.rng.random() < 0.3:  # near miss: put it back elsewhere
            uax = (pos + 1) % r
        u = self.axes_op("Unsqueeze", red, [uax], since=13)
        rshape = v.shape[:pos] + v.shape[pos + 1:]
        upos = uax % r
        self.add(u, v.dtype, rshape[:upos] + (1,) + rshape[upos:])

    def f_div_mul(self) -> None:
        v = self.pick(self.fdt)
        if v is None:
            return
        w = self.partner(v) or v
        s = self.node("Sqrt", [self.node("Add", [self.node("Abs", [w.name]), self.scalar(1.0)])])
        one = self.scalar(1.0 if self.rng.random() < 0.7 else 2.0, rank0=self.rng.random() < 0.7)
        rec = self.node("Div", [one, s]) if self.rng.random() < 0.6 else self.node("Reciprocal", [s])
        self.add(self.node("Mul", [v.name, rec] if self.rng.random() < 0.5 else [rec, v.name]), v.dtype, v.shape)

    # ---- control flow -----------------------------------------------------------------------------------------
    def _body(self, fn: Callable[[], tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]],
              name: str) -> onnx.GraphProto:
        saved = self.nodes, self.inits, self.pool, self.init_vals
        self.nodes, self.inits = [], []
        self.pool = [v for v in saved[2]]  # outer values are readable
        self.init_vals = []
        try:
            ins, outs = fn()
            body_nodes, body_inits = self.nodes, self.inits
        finally:
            self.nodes, self.inits, self.pool, self.init_vals = saved
        return helper.make_graph(body_nodes, name, ins, outs, body_inits)

    def _branch(self, v: Val, w: Val) -> tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]:
        """A branch computing a value of v's dtype and shape from outer values (v, w, outer constants)."""
        kind = int(self.rng.integers(5))
        if kind == 0:
            out = self.node("Add", [v.name, self.scalar(0.0)])  # a no-op inside a branch
        elif kind == 1:
            out = self.node("Mul", [self.node("Relu", [w.name]), self.node("Add", [self.scalar(1.0),
                                                                                  self.scalar(2.0)])])
        elif kind == 2:
            out = self.node("Identity", [v.name])
        elif kind == 3:
            t = self.node("Transpose", [v.name], perm=list(range(len(v.shape or ()))))
            out = self.node("Sub", [t, w.name])
        else:
            dup1 = self.node("Tanh", [v.name])
            dup2 = self.node("Tanh", [v.name])
            out = self.node("Add", [dup1, dup2])
        shape = list(v.shape) if self.rng.random() < 0.7 else None
        return [], [helper.make_tensor_value_info(out, v.dtype, shape)]

    def f_if(self) -> None:
        v = self.pick(self.fdt)
        if v is None:
            return
        w = self.partner(v) or v
        kind = int(self.rng.integers(3))
        if kind == 0:  # a constant condition (initializer or Constant node)
            cond = self.const(np.array(bool(self.rng.random() < 0.5)), node=self.rng.random() < 0.5)
        elif kind == 1:  # computed
            if v.name not in self.exact:
                return
            cond = self.node("Greater", [self.reduce("ReduceSum", v.name, None, keepdims=0), self.scalar(0.0)])
        else:  # identical branches
            cond = self.node("Less", [self.reduce("ReduceMax", v.name, None, keepdims=0), self.scalar(0.5)])
        then_g = self._body(lambda: self._branch(v, w), self.name("then"))
        if kind == 2:
            else_g = onnx.GraphProto()
            else_g.CopyFrom(then_g)
            else_g.name = self.name("else")
        else:
            else_g = self._body(lambda: self._branch(w, v), self.name("else"))
        out = self.node("If", [cond], then_branch=then_g, else_branch=else_g)
        self.add(out, v.dtype, v.shape)

    def f_loop(self) -> None:
        v = self.pick(self.fdt)
        if v is None:
            return
        assert v.shape is not None
        trip = int(self.rng.choice([0, 1, 3]))
        scan = self.rng.random() < 0.4

        def body() -> tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]:
            it, cin, acc = self.name("it"), self.name("cond"), self.name("acc")
            ins = [helper.make_tensor_value_info(it, I64, []), helper.make_tensor_value_info(cin, BOOL, []),
                   helper.make_tensor_value_info(acc, v.dtype, list(v.shape or ()))]
            step = self.node("Cast", [it], to=v.dtype)
            nxt = self.node("Add", [self.node("Mul", [v.name, self.scalar(0.5)]), acc])  # reads v from outside
            nxt = self.node("Add", [nxt, step])
            # without a trip count the condition must turn false
            if m:
                cout = self.node("Identity", [cin])
            else:
                cout = self.node("Less", [it, self.const(np.array(2, np.int64))])
            outs = [helper.make_tensor_value_info(cout, BOOL, []),
                    helper.make_tensor_value_info(nxt, v.dtype, list(v.shape or ()))]
            if scan:
                outs.append(helper.make_tensor_value_info(self.node("Relu", [nxt]), v.dtype, None))
            return ins, outs

        m = self.const(np.array(trip, np.int64)) if self.rng.random() < 0.8 else ""
        g = self._body(body, self.name("body"))
        c = self.const(np.array(True)) if (not m or self.rng.random() < 0.5) else ""
        outs = self.node("Loop", [m, c, v.name], 2 if scan else 1, body=g)
        if scan:
            final, sc = outs
            self.add(final, v.dtype, v.shape)
            if m:
                self.add(sc, v.dtype, (trip,) + v.shape)
        else:
            self.add(outs, v.dtype, v.shape)


def _broadcast(a: Shape, b: Sequence[int]) -> Shape:
    r = max(len(a), len(b))
    a2 = (1,) * (r - len(a)) + tuple(a)
    b2 = (1,) * (r - len(b)) + tuple(b)
    return tuple(y if x == 1 else x for x, y in zip(a2, b2))


def _broadcasts_into(u: Shape | None, v: Shape | None) -> bool:
    if u is None or v is None or len(u) > len(v):
        return False
    return all(d == 1 or d == e for d, e in zip(reversed(u), reversed(v)))


def _pool_shape(x: Shape, k: int, s: int, p: int, ceil: int, auto: str | None) -> Shape | None:
    out: list[Dim] = list(x[:2])
    for d in x[2:]:
        if not isinstance(d, int):
            return None
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            out.append(-(-d // s))
        elif auto == "VALID":
            out.append((d - k) // s + 1 if not ceil else -(-(d - k + 1) // s))
        elif ceil:
            o = -(-(d + 2 * p - k) // s) + 1
            if (o - 1) * s >= d + p:
                o -= 1
            out.append(o)
        else:
            out.append((d + 2 * p - k) // s + 1)
    return None if any(isinstance(o, int) and o < 1 for o in out) else tuple(out)


def _types(m: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    """Types of the main graph's values, from onnx's shape inference (empty when it fails)."""
    try:
        inf = onnx.shape_inference.infer_shapes(m, strict_mode=False)
    except Exception:  # noqa: BLE001
        return {}
    out = {vi.name: vi.type for vi in list(inf.graph.value_info) + list(inf.graph.input) + list(inf.graph.output)}
    for t in inf.graph.initializer:
        out.setdefault(t.name, helper.make_tensor_type_proto(t.data_type, list(t.dims)))
    return out


def generate(seed: int, index: int) -> Case:
    """Case `index` of run `seed` (always the same model)."""
    g = Gen(seed, index)
    m = g.build()
    return Case(seed, index, m, g.features)


# ================================================================================================================
# Validity of a generated model, and the oracle, in a worker process
# ================================================================================================================
def invalid_reason(data: bytes) -> str | None:
    """Why a generated model is not valid (None when it is): onnx's full check, an onnxruntime load, a run for
    at least one of the oracle's bindings."""
    from graphopt.testing import default_bindings, random_inputs, session

    m = onnx.ModelProto()
    m.ParseFromString(data)
    try:
        onnx.checker.check_model(m, full_check=True)
    except Exception as e:  # noqa: BLE001
        return f"checker: {str(e).splitlines()[0][:200]}"
    try:
        sess = session(data)
    except Exception as e:  # noqa: BLE001
        return f"onnxruntime load: {str(e).splitlines()[0][:200]}"
    names = {i.name for i in sess.get_inputs()}
    last = ""
    for b in default_bindings(m):
        try:
            sess.run(None, {k: v for k, v in random_inputs(m, b, seed=0).items() if k in names})
            return None
        except Exception as e:  # noqa: BLE001
            last = str(e).splitlines()[0][:200]
    return f"onnxruntime run: {last}"


def _worker(conn: Any, preset: str) -> None:
    import warnings

    warnings.simplefilter("ignore")
    from graphopt.testing import check_pipeline

    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        kind, data = msg
        if kind == "crash":  # for the tests: die as onnxruntime would on a segfault
            os._exit(70)
        try:
            if kind == "valid":
                res: Any = invalid_reason(data)
            else:
                res = check_pipeline(data, preset=preset)
        except Exception as e:  # noqa: BLE001 - the oracle itself raised: report it as a finding
            res = [f"[oracle] {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"]
            if kind == "valid":
                res = f"validity check raised {type(e).__name__}: {e}"
        conn.send(res)


class Sandbox:
    """A worker process that checks models; a crash or hang becomes a ``[crash]`` / ``[timeout]`` problem and the
    worker is restarted."""

    def __init__(self, preset: str = "O2", timeout: float = 120.0):
        self.preset = preset
        self.timeout = timeout
        self.proc: Any = None
        self.conn: Any = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, self.preset), daemon=True)
        self.proc.start()
        child.close()

    def _call(self, kind: str, data: bytes) -> Any:
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.conn.send((kind, data))
        if self.conn.poll(self.timeout):
            try:
                return self.conn.recv()
            except EOFError:
                pass
            self.proc.join(5)
            code = self.proc.exitcode
            self.close()
            return ["[crash] the process checking the model died" + (f" (exit code {code})" if code else "")]
        self.close()
        return [f"[timeout] no verdict within {self.timeout:.0f} s"]

    def valid(self, data: bytes) -> str | None:
        res = self._call("valid", data)
        if isinstance(res, list):  # the validity check itself crashed or hung: not a valid case
            return "validity check: " + res[0]
        return res

    def check(self, data: bytes) -> list[str]:
        return list(self._call("check", data))

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join(5)
        self.proc = None
        self.conn = None


# ================================================================================================================
# Minimization
# ================================================================================================================
def problem_class(problem: str) -> str:
    """What makes two problems the same finding: the bracketed class, and for a failing pass its name and the
    exception's type; for a mismatch or symbols problem, the class alone."""
    m = re.match(r"\[(\w+)\]\s*(.*)", problem, re.DOTALL)
    if not m:
        return "other"
    cls, rest = m.group(1), m.group(2)
    if cls in ("pipeline", "rerun"):
        p = re.search(r"pass '([\w-]+)'", rest)
        exc = re.search(r"\b([A-Z]\w*(?:Error|Exception))\b", rest)
        return "-".join(x for x in (cls, p.group(1) if p else None, exc.group(1) if exc else None) if x)
    return cls


def slug(problem: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", problem_class(problem).lower()).strip("-")
    return s[:40] or "finding"


def _reads(n: onnx.NodeProto) -> set[str]:
    """Names a node reads, its subgraphs' outer reads included (over-approximated by every name they mention)."""
    out = {i for i in n.input if i}
    for a in n.attribute:
        gs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
        for g in gs:
            for sn in g.node:
                out |= _reads(sn)
            out |= {o.name for o in g.output}
    return out


def _dce(m: onnx.ModelProto) -> None:
    """Drop main-graph nodes nothing reads, and initializers and inputs nothing reads (outputs kept)."""
    g = m.graph
    live = {o.name for o in g.output}
    keep = []
    for n in reversed(list(g.node)):
        if any(o in live for o in n.output):
            keep.append(n)
            live |= _reads(n)
    keep.reverse()
    del g.node[:]
    g.node.extend(keep)
    inits = [t for t in g.initializer if t.name in live]
    del g.initializer[:]
    g.initializer.extend(inits)
    ins = [i for i in g.input if i.name in live]
    if ins or not g.input:
        del g.input[:]
        g.input.extend(ins)
    vis = [v for v in g.value_info if v.name in live]
    del g.value_info[:]
    g.value_info.extend(vis)


def _value_type(m: onnx.ModelProto, types: dict[str, onnx.TypeProto], name: str) -> onnx.TypeProto | None:
    t = types.get(name)
    if t is None or not t.HasField("tensor_type") or not t.tensor_type.elem_type:
        return None
    out = onnx.TypeProto()
    out.CopyFrom(t)
    for i, d in enumerate(out.tensor_type.shape.dim):
        if (not d.HasField("dim_value") and not d.dim_param) or d.dim_param.startswith("unk__"):
            d.dim_param = f"d_{name}_{i}"[:60]
    return out


def _candidates(m: onnx.ModelProto) -> list[tuple[str, onnx.ModelProto]]:
    """Smaller variants of `m`, the biggest cuts first."""
    out: list[tuple[str, onnx.ModelProto]] = []
    g = m.graph
    types = _types(m)

    def variant(what: str, fn: Callable[[onnx.ModelProto], bool]) -> None:
        c = onnx.ModelProto()
        c.CopyFrom(m)
        if fn(c) is not False:
            _dce(c)
            if c.SerializeToString() != m.SerializeToString():
                out.append((what, c))

    # drop a graph output (keep one)
    if len(g.output) > 1:
        for i in range(len(g.output)):
            variant(f"drop output {g.output[i].name}", lambda c, i=i: c.graph.output.__delitem__(i))
    # cut a node: its outputs become graph inputs (the earliest nodes first: cuts the most)
    for idx, n in enumerate(g.node):
        def cut(c: onnx.ModelProto, idx: int = idx) -> bool:
            node = c.graph.node[idx]
            new_ins = []
            outs = {o.name for o in c.graph.output}
            for o in node.output:
                if not o:
                    continue
                if o in outs:
                    return False
                t = _value_type(c, types, o)
                if t is None:
                    return False
                vi = onnx.ValueInfoProto(name=o)
                vi.type.CopyFrom(t)
                new_ins.append(vi)
            del c.graph.node[idx]
            c.graph.input.extend(new_ins)
            return True
        variant(f"feed in the outputs of node {idx} ({n.op_type})", cut)
    # expose a node's inputs as outputs in place of its output
    for oi, o in enumerate(g.output):
        prod = next((n for n in g.node if o.name in n.output), None)
        if prod is None:
            continue

        def expose(c: onnx.ModelProto, oi: int = oi, prod: onnx.NodeProto = prod) -> bool:
            have = {x.name for x in c.graph.output}
            new = []
            for i in prod.input:
                if not i or i in have:
                    continue
                t = _value_type(c, types, i)
                if t is None:
                    return False
                vi = onnx.ValueInfoProto(name=i)
                vi.type.CopyFrom(t)
                new.append(vi)
                have.add(i)
            if not new:
                return False
            del c.graph.output[oi]
            for k, vi in enumerate(new):
                c.graph.output.insert(oi + k, vi)
            return True
        variant(f"expose the inputs of {prod.op_type} as outputs", expose)
    # an initializer becomes an input (big ones first)
    inits = sorted(range(len(g.initializer)), key=lambda i: -len(g.initializer[i].SerializeToString()))
    for i in inits:
        t = g.initializer[i]

        def to_input(c: onnx.ModelProto, i: int = i, t: onnx.TensorProto = t) -> None:
            del c.graph.initializer[i]
            c.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        variant(f"initializer {t.name} becomes an input", to_input)
    # forget declared value_info and output shapes
    if len(g.value_info):
        variant("drop value_info", lambda c: c.graph.ClearField("value_info"))
    return out


def _size(m: onnx.ModelProto) -> tuple[int, int]:
    def count(g: onnx.GraphProto) -> int:
        k = len(g.node)
        for n in g.node:
            for a in n.attribute:
                for sg in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                    k += count(sg)
        return k
    return count(m.graph), m.ByteSize()


def minimize(model: onnx.ModelProto, oracle: Callable[[bytes], list[str]], problem: str, *,
             valid: Callable[[bytes], str | None] | None = None, budget_s: float = 300.0,
             log: Callable[[str], None] | None = None) -> tuple[onnx.ModelProto, list[str]]:
    """Delta-debug `model` down while `oracle` still reports a problem of `problem`'s class (and `valid` accepts
    the candidate). Returns the smallest model found and its problems."""
    want = problem_class(problem)
    best = model
    best_problems = [problem]
    t0 = time.monotonic()
    progress = True
    while progress and time.monotonic() - t0 < budget_s:
        progress = False
        for what, cand in _candidates(best):
            if time.monotonic() - t0 > budget_s:
                break
            if _size(cand) >= _size(best):
                continue
            data = cand.SerializeToString()
            if valid is not None and valid(data) is not None:
                continue
            probs = oracle(data)
            same = [p for p in probs if problem_class(p) == want]
            if same:
                best, best_problems = cand, same + [p for p in probs if p not in same]
                progress = True
                if log:
                    log(f"    shrunk: {what} -> {_size(best)[0]} nodes, {_size(best)[1]} bytes")
                break
    return best, best_problems


# ================================================================================================================
# The run
# ================================================================================================================
def save_finding(out_dir: str, case: Case, model: onnx.ModelProto, problems: list[str]) -> str:
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, f"{slug(problems[0])}-{case.seed}-{case.index}")
    with open(stem + ".onnx", "wb") as f:
        f.write(model.SerializeToString())
    with open(stem + ".txt", "w") as f:
        f.write(f"found by benchmarks/fuzz.py: seed {case.seed}, case {case.index} "
                f"(replay: python benchmarks/fuzz.py --seed {case.seed} --start {case.index} --count 1)\n")
        f.write(f"features: {', '.join(case.features)}\n\n")
        f.write("\n".join(problems) + "\n")
    return stem + ".onnx"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0, help="how long to run (default 5)")
    ap.add_argument("--seed", type=int, default=None, help="the run's seed (default: from the clock, printed)")
    ap.add_argument("--start", type=int, default=0, help="the first case index (default 0)")
    ap.add_argument("--count", type=int, default=None, help="stop after this many cases")
    ap.add_argument("--out", default=os.path.join("tests", "fuzz_regressions"), help="where findings go")
    ap.add_argument("--preset", default="O2")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per model before it counts as a hang")
    ap.add_argument("--minimize-seconds", type=float, default=300.0, help="time budget of one minimization")
    ap.add_argument("--no-save", action="store_true", help="report findings, save nothing")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case and why discarded ones were")
    a = ap.parse_args(argv)
    seed = a.seed if a.seed is not None else int(time.time()) % 1_000_000

    def stop(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # `kill PID` ends the run with its summary, as Ctrl-C does
    print(f"fuzz: seed {seed}, preset {a.preset}, {a.minutes:g} minutes, findings to {a.out}", flush=True)
    box = Sandbox(a.preset, a.timeout)
    deadline = time.monotonic() + a.minutes * 60
    n = discarded = findings = 0
    seen: dict[str, str] = {}
    discard_why: dict[str, int] = {}
    index = a.start
    try:
        while time.monotonic() < deadline and (a.count is None or n < a.count):
            case = generate(seed, index)
            index += 1
            n += 1
            data = case.model.SerializeToString()
            why = box.valid(data)
            if why is not None:
                discarded += 1
                key = re.sub(r"[\d_'\"]+", "#", why)[:80]
                discard_why[key] = discard_why.get(key, 0) + 1
                if a.verbose:
                    print(f"  case {case.id}: discarded: {why}", flush=True)
                continue
            if a.verbose:
                print(f"  case {case.id}: {len(case.model.graph.node)} nodes ({', '.join(case.features)})",
                      flush=True)
            problems = box.check(data)
            if not problems:
                continue
            findings += 1
            cls = problem_class(problems[0])
            print(f"FINDING case {case.id} ({', '.join(case.features)}): {problems[0]}", flush=True)
            if cls in seen:
                print(f"    same class as {seen[cls]}: not minimized again", flush=True)
                continue
            small, sp = minimize(case.model, box.check, problems[0], valid=box.valid, budget_s=a.minimize_seconds,
                                 log=lambda s: print(s, flush=True))
            if a.no_save:
                seen[cls] = case.id
                continue
            path = save_finding(a.out, case, small, sp)
            seen[cls] = path
            print(f"    saved {path} ({_size(small)[0]} nodes, {_size(small)[1]} bytes)", flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    finally:
        box.close()
    print(f"fuzz: {n} cases (seed {seed}, indices {a.start}..{index - 1}), {discarded} discarded as invalid, "
          f"{findings} findings, {len(seen)} classes")
    for k, c in sorted(discard_why.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  discarded {c}x: {k}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
