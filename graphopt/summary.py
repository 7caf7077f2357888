"""A model's vital statistics as plain data (for `graphopt inspect` and the report)."""

from __future__ import annotations

import collections
import os
from typing import Any

from .ir.core import Model, Value
from .ir.shapes import TensorType, format_shape
from .ir.tensors import dtype_name


def _type_str(v: Value) -> tuple[str, list[Any] | None]:
    t = v.type
    if isinstance(t, TensorType):
        return dtype_name(t.dtype), (None if t.shape is None else list(t.shape))
    if t is None and v.const is not None:
        return dtype_name(v.const.dtype), list(v.const.shape)
    return (str(t) if t is not None else "?"), None


def _io(v: Value) -> dict[str, Any]:
    dt, shape = _type_str(v)
    return {"name": v.name, "dtype": dt, "shape": shape,
            "shape_str": format_shape(tuple(shape)) if shape is not None else "[*]"}


def summarize(model: Model, *, path: str | None = None) -> dict[str, Any]:
    """Counts and interface of a model; cheap (no tensor is decoded)."""
    g = model.graph
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    n_sub = 0
    graphs = list(g.all_graphs())
    for sg in graphs:
        if sg is not g:
            n_sub += 1
        counts.update((n.domain, n.op_type) for n in sg)
    ops: collections.Counter[str] = collections.Counter()
    for (dom, op), k in counts.items():
        ops[(dom + "::" if dom not in ("", "ai.onnx") else "") + op] += k
    params = 0
    param_bytes = 0
    n_init = 0
    ext_files: dict[str, int] = {}
    ext_tensors = 0
    sizes: dict[tuple[int, tuple[int, ...]], tuple[int, int]] = {}  # (dtype, shape) -> (size, bytes)
    for sg in graphs:
        for v in sg._initializers.values():
            t = v._const
            assert t is not None
            n_init += 1
            key = (t.dtype, t.shape)
            sb = sizes.get(key)
            if sb is None:
                sb = sizes[key] = (t.size, t.nbytes)
            params += sb[0]
            param_bytes += sb[1]
            if not t._sparse and t.is_external:
                ref = t.external
                assert ref is not None
                ext_tensors += 1
                ext_files[ref.location] = ext_files.get(ref.location, 0) + t.nbytes
    init_names = set(g.initializers)
    inputs = [_io(v) for v in g.inputs if v.name not in init_names]
    out = {
        "file": path,
        "file_bytes": os.path.getsize(path) if path and os.path.isfile(path) else None,
        "ir_version": model.ir_version,
        "producer": " ".join(x for x in (model.producer_name, model.producer_version) if x),
        "opsets": {(d or "ai.onnx"): v for d, v in model.opset_imports.items()},
        "inputs": inputs,
        "initializer_inputs": sum(1 for v in g.inputs if v.name in init_names),
        "outputs": [_io(v) for v in g.outputs],
        "nodes": sum(ops.values()),
        "nodes_top_level": len(g),
        "op_types": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "initializers": n_init,
        "parameters": params,
        "parameter_bytes": param_bytes,
        "external_data": {"tensors": ext_tensors, "files": ext_files},
        "subgraphs": n_sub,
        "functions": len(model.functions),
    }
    return out
