"""What a value always holds: the one place that knows how ONNX spells a constant.

A value is a known constant when it is an initializer the caller cannot override (:meth:`Value.is_constant`) or the
output of a standard-domain Constant node, whose tensor may be given in any of the op's attribute forms.
"""

from __future__ import annotations

import numpy as np

from .core import AttrType, Node, Value
from .tensors import DataType, Tensor


def constant_tensor(node: Node) -> Tensor | None:
    """The tensor a Constant node produces, or None when it is sparse or unreadable."""
    attrs = node.attrs
    if len(attrs) != 1:
        return None
    a = next(iter(attrs.values()))
    if a.ref_attr_name:
        return None
    v = a.value
    if a.name == "value" and a.type == AttrType.TENSOR and isinstance(v, Tensor) and not v.is_sparse:
        return v
    if a.name == "value_float":
        return Tensor.from_numpy(np.array(v, dtype=np.float32))
    if a.name == "value_floats":
        return Tensor.from_numpy(np.array(v, dtype=np.float32).reshape(-1))
    if a.name == "value_int":
        return Tensor.from_numpy(np.array(v, dtype=np.int64))
    if a.name == "value_ints":
        return Tensor.from_numpy(np.array(v, dtype=np.int64).reshape(-1))
    if a.name == "value_string":
        return Tensor.from_numpy(np.array(v, dtype=object), DataType.STRING)
    if a.name == "value_strings":
        return Tensor.from_numpy(np.array(list(v), dtype=object).reshape(-1), DataType.STRING)
    return None


def constant_value(v: Value | None) -> Tensor | None:
    """The tensor `v` always holds (a non-overridable initializer, or a standard Constant node's output), else
    None."""
    if v is None:
        return None
    if v.is_constant():
        return v.const
    p = v.producer
    if p is None or p.op_type != "Constant" or p.domain not in ("", "ai.onnx"):
        return None
    return constant_tensor(p)
